"""Models ▸ Model Weights…: where the SkyReels-V3 weights are and how to get them.

Owns :class:`ModelsDialog`. The status of each task comes from ``core.model_store.locate`` run in a
worker thread (it looks through folders and the Hugging Face cache; no network). Main thread only.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTextBrowser, QVBoxLayout, QWidget

from app.workers import WorkerPool
from core.generation import Task

INTRO = """<p>SkyReels Studio generates video with the official <b>SkyReels-V3</b> models. The weights are
large (tens of gigabytes per model) and are not part of the application. Get them once with the command
shown for each task (it downloads from Hugging Face, resumes interrupted downloads and checks what
arrived), or point the app at a folder that already has them:</p>
<pre>python main.py models list
python main.py models download --task reference_to_video
python main.py models locate --add /path/to/folder</pre>
<p>Editing, playback and export work without any model.</p>"""


def model_status_lines() -> list[tuple[str, str, str, str]]:
    """Worker function: (task, status, where, how to get it) per task."""
    from core import model_store

    rows = []
    for task in Task:
        try:
            location = model_store.locate(task)
            status = location.status.value
            where = str(location.path) if location.path else "not found"
        except Exception as exc:  # a broken config file must not hide the other tasks
            status, where = "unknown", str(exc)
        rows.append((task.value, status, where, model_store.download_command(task)))
    return rows


class ModelsDialog(QDialog):
    """Explains how to get the weights and shows, per task, whether they are on this machine."""

    def __init__(self, pool: WorkerPool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Model Weights")
        self.resize(680, 460)
        self.text = QTextBrowser(self)
        self.text.setOpenExternalLinks(True)
        self.status = QLabel("Looking for model folders…", self)
        self.status.setObjectName("viewerMessage")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, Qt.Orientation.Horizontal, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self._rows: list[tuple[str, str, str, str]] | None = None
        self._render()
        pool.submit(model_status_lines, on_done=self._on_status_done, on_error=self._on_status_failed)

    def _render(self) -> None:
        html = INTRO
        if self._rows:
            colours = {"ready": "#7bd88f", "partial": "#e8b53a", "missing": "#ff8a8a"}
            html += (
                "<table cellpadding='4'><tr><th align='left'>Task</th><th align='left'>Status</th>"
                "<th align='left'>Folder</th></tr>"
            )
            for task, status, where, command in self._rows:
                colour = colours.get(status, "#a8adb8")
                html += (
                    f"<tr><td>{task.replace('_', ' ')}</td><td style='color:{colour}'>{status}</td>"
                    f"<td>{where}</td></tr>"
                )
                if status != "ready":
                    html += f"<tr><td></td><td colspan='2'><code>{command}</code></td></tr>"
            html += "</table>"
        self.text.setHtml(html)

    def _on_status_done(self, rows: Any) -> None:
        self._rows = list(rows)
        self.status.setText("")
        self._render()

    def _on_status_failed(self, exc: BaseException) -> None:
        self.status.setText(f"Could not check the model folders: {exc}")
