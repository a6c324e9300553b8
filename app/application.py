"""Start-up of the GUI: ``run_gui(argv)`` creates the ``QApplication``, applies the dark theme, opens the
main window (and the project named on the command line) and runs the event loop.

Nothing heavy is imported here or by the window: torch is never imported, and media libraries load in
worker threads on first use, so the window paints quickly (see ``bench/bench_app_startup.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

ORGANISATION = "SkyReels"
APPLICATION = "SkyReels Studio"


def create_application(argv: Sequence[str]) -> QApplication:
    """The ``QApplication`` with names (for QSettings) and the dark theme."""
    from app.theme import apply_dark_theme, icon

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "skyreels-studio", *argv])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    app.setWindowIcon(icon("app"))
    apply_dark_theme(app)
    return app


def run_gui(argv: Sequence[str] | None = None) -> int:
    """Open the editor; ``argv`` may name one project file to open. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    project_path = next((a for a in argv if not a.startswith("-")), None)
    app = create_application([a for a in argv if a.startswith("-")])

    from app.main_window import MainWindow
    from app.settings import Preferences

    window = MainWindow(Preferences(QSettings()))
    window.show()
    if project_path:
        path = Path(project_path)
        if path.exists():
            # Open after the first paint, so a large project never delays the window.
            QTimer.singleShot(0, lambda: window.open_project(path))
        else:
            window.show_message(f"{path} does not exist", 15000)
    return int(app.exec())
