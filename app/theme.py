"""Dark theme: the Fusion style, a dark ``QPalette`` and ``resources/styles/dark.qss``.

Also the one place that knows where bundled icons live (:func:`icon`). Main thread only.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
ICONS = RESOURCES / "icons"
STYLES = RESOURCES / "styles"

# Colours the custom-painted widgets share with the style sheet.
BACKGROUND = QColor("#1e2026")
PANEL = QColor("#24262d")
BORDER = QColor("#111317")
TEXT = QColor("#e6e9ef")
TEXT_DIM = QColor("#8d93a0")
ACCENT = QColor("#3a6ea5")
PLAYHEAD = QColor("#ff4d4d")
MARKER = QColor("#e8b53a")
VIDEO_CLIP = QColor("#3f6fa8")
AUDIO_CLIP = QColor("#3b8a68")
IMAGE_CLIP = QColor("#7a5fa8")
GENERATED = QColor("#b98cff")
SELECTION = QColor("#ffd24d")
WAVEFORM = QColor("#a9f0cf")
SNAP_LINE = QColor("#6fd3ff")
MISSING = QColor("#a83f3f")


@cache
def icon(name: str) -> QIcon:
    """The bundled SVG icon ``resources/icons/<name>.svg`` (an empty icon if it is missing)."""
    path = ICONS / f"{name}.svg"
    return QIcon(str(path)) if path.exists() else QIcon()


def apply_dark_theme(app: QApplication) -> None:
    """Switch ``app`` to the dark look. Safe to call more than once."""
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#1e2026",
        QPalette.ColorRole.WindowText: "#e6e9ef",
        QPalette.ColorRole.Base: "#15171b",
        QPalette.ColorRole.AlternateBase: "#1d1f25",
        QPalette.ColorRole.ToolTipBase: "#2a2c33",
        QPalette.ColorRole.ToolTipText: "#e6e9ef",
        QPalette.ColorRole.PlaceholderText: "#6b707c",
        QPalette.ColorRole.Text: "#e6e9ef",
        QPalette.ColorRole.Button: "#2f323a",
        QPalette.ColorRole.ButtonText: "#e6e9ef",
        QPalette.ColorRole.BrightText: "#ff6b6b",
        QPalette.ColorRole.Link: "#6fa8e8",
        QPalette.ColorRole.Highlight: "#3a6ea5",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Light: "#3a3d46",
        QPalette.ColorRole.Midlight: "#30333b",
        QPalette.ColorRole.Mid: "#24262d",
        QPalette.ColorRole.Dark: "#15171b",
        QPalette.ColorRole.Shadow: "#000000",
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#666a75"))
    app.setPalette(palette)
    qss = STYLES / "dark.qss"
    if qss.exists():
        app.setStyleSheet(qss.read_text(encoding="utf-8"))
