"""Start-up of the GUI: ``run_gui(argv)`` creates the ``QApplication``, applies the dark theme, opens the
main window (and the project named on the command line) and runs the event loop.

Nothing heavy is imported here or by the window: torch is never imported, and media libraries load in
worker threads on first use, so the window paints quickly (see ``bench/bench_app_startup.py``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, QTimer
from PySide6.QtWidgets import QApplication

ORGANISATION = "SkyReels"
APPLICATION = "SkyReels Studio"


def create_application(argv: Sequence[str]) -> QApplication:
    """The ``QApplication`` with names (for QSettings) and the dark theme."""
    from app.qt_compat import guard_none_refcount
    from app.theme import apply_dark_theme, icon

    guard_none_refcount()
    # Worker threads run Python too (decoding glue, export loop): hand the GIL back to the GUI thread
    # within 1 ms instead of CPython's default 5 ms, so painting never queues behind several of them.
    sys.setswitchinterval(0.001)

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "skyreels-studio", *argv])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    app.setWindowIcon(icon("app"))
    apply_dark_theme(app)
    return app


class _FirstPaintProbe(QObject):
    """``--exit-after-paint``: report when the main window first painted, then quit (start-up bench)."""

    def __init__(self, app: QApplication) -> None:
        super().__init__(app)
        self._app = app
        self._done = False

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if not self._done and event.type() == QEvent.Type.Paint:
            self._done = True
            heavy = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
            print(
                f"first-paint {time.perf_counter():.6f} heavy-modules={','.join(heavy) or 'none'}", flush=True
            )
            QTimer.singleShot(0, self._app.quit)
        return False


def announce_missing_models(window: object) -> None:
    """Say in the status bar how to get the weights when no task has its model yet (checked off the GUI
    thread; the editor itself needs no weights)."""
    from app.models_dialog import model_status_lines

    def done(rows: list[tuple[str, str, str, str]]) -> None:
        if not any(status == "ready" for _task, status, _where, _command in rows):
            window.show_message(  # type: ignore[attr-defined]
                "No model weights on this machine yet: Models ▸ Model Weights… shows how to get them. "
                "Editing, playback and export work without them.", 0)

    window.pool.submit(model_status_lines, on_done=done)  # type: ignore[attr-defined]


def run_gui(argv: Sequence[str] | None = None, backend_factory: Callable[[], object] | None = None,
            estimator: Callable[..., object] | None = None) -> int:
    """Open the editor; ``argv`` may name one project file to open. Returns the exit code.

    ``backend_factory`` builds the inference backend on the GPU worker thread (``main.py`` passes the
    local one; torch is imported there, never at start-up); None leaves out the Generate menu and queue.

    ``--exit-after-paint`` prints ``first-paint <perf_counter> heavy-modules=<...>`` when the window has
    painted for the first time and quits (used by ``bench/bench_app_startup.py`` and smoke checks).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    exit_after_paint = "--exit-after-paint" in argv
    argv = [a for a in argv if a != "--exit-after-paint"]
    project_path = next((a for a in argv if not a.startswith("-")), None)
    app = create_application([a for a in argv if a.startswith("-")])

    from app.main_window import MainWindow
    from app.settings import Preferences

    window = MainWindow(Preferences(QSettings()))
    if backend_factory is not None:
        from app.render_ui import attach_render_ui

        window.render_controller = attach_render_ui(window, backend_factory, estimator)
        if not exit_after_paint:
            # Import torch on the worker while the user looks at the window, not at the first render.
            QTimer.singleShot(2000, window.render_controller.warm_up)
    if exit_after_paint:
        window.installEventFilter(_FirstPaintProbe(app))
    window.show()
    if project_path:
        path = Path(project_path)
        if path.exists():
            # Open after the first paint, so a large project never delays the window.
            QTimer.singleShot(0, lambda: window.open_project(path))
        else:
            window.show_message(f"{path} does not exist", 15000)
    elif not exit_after_paint:
        QTimer.singleShot(0, window.check_untitled_recovery)
    if not exit_after_paint:
        QTimer.singleShot(1000, lambda: announce_missing_models(window))
    code = int(app.exec())
    if window.isVisible():  # quit without closing the window (--exit-after-paint): stop its workers
        window.shutdown()
    return code
