"""File ▸ Collect Media…: copy every media file the project uses into ``<project>.media/collected``.

Owns :class:`MediaCollector` (the flow the window's action runs: save first if untitled, plan, confirm,
copy off the GUI thread with a progress dialog and Cancel, relink as one undo step, one status message),
:class:`CollectMediaDialog` (count, size, destination, and the list behind Show Details) and
:class:`CollectWorker` (a ``QObject`` on its own ``QThread`` running :func:`core.collect_media.collect_files`).
The plan, the copying and the relink edit live in :mod:`core.collect_media`.

User questions go through :meth:`MediaCollector.ask_save_first`, :meth:`MediaCollector.confirm` and
:meth:`MediaCollector.show_error`, which tests replace. Main thread only, except :meth:`CollectWorker.run`.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressDialog,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import document
from app.workers import cancellable_progress, start_worker_thread
from core.collect_media import (
    IN_USE_NOTE,
    CollectCancelled,
    CollectError,
    CollectPlan,
    NotEnoughSpace,
    check_space,
    collect_files,
    plan_collect,
    relink_to_copies,
)
from core.model_store import existing_ancestor, format_bytes
from core.project import Project


def untitled_files(project: Project) -> int:
    """How many of the project's media files are in ``untitled.media``."""
    root = document.untitled_media_dir().resolve()
    files = {Path(a.path).resolve() for a in project.assets}
    return sum(1 for f in files if root in f.parents)


def untitled_hint(project: Project, saved_as: str) -> str:
    """The status line after the first save of a project that uses renders from ``untitled.media``."""
    n = untitled_files(project)
    if not n:
        return ""
    return (
        f"Saved {saved_as}. It uses {n} file{'s' if n != 1 else ''} from the untitled project's render "
        "folder: File ▸ Collect Media… copies them beside it."
    )


class CollectWorker(QObject):
    """Copies a plan's files on its own ``QThread`` (:func:`core.collect_media.collect_files`).

    Signals (delivered to the main thread): ``progress_changed(int done, int total)`` in bytes, only when
    the permille moves (Python ints: sizes pass 2 GB); ``finished(dict mapping)``; ``failed(str message)``;
    ``cancelled()``. Set :attr:`cancel_event` from any thread to stop between chunks.
    """

    progress_changed = Signal(object, object)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, plan: CollectPlan, copy_files: Callable[..., dict[str, str]] = collect_files) -> None:
        super().__init__()
        self.plan = plan
        self._copy_files = copy_files
        self.cancel_event = threading.Event()
        self.thread: QThread | None = None
        self._last = -1

    def start_thread(self) -> QThread:
        self.thread = start_worker_thread(self, "collect-media")
        return self.thread

    def wait(self, timeout_ms: int = 10000) -> bool:
        return True if self.thread is None else self.thread.wait(timeout_ms)

    def _progress(self, done: int, total: int) -> None:
        permille = 1000 * done // total if total else 0
        if permille != self._last:
            self._last = permille
            self.progress_changed.emit(done, total)

    @Slot()
    def run(self) -> None:
        try:
            mapping = self._copy_files(self.plan, self._progress, self.cancel_event)
        except CollectCancelled:
            self.cancelled.emit()
        except CollectError as error:
            self.failed.emit(str(error))
        except Exception as error:  # a bug, not a user error: still report it instead of hanging
            self.failed.emit(f"Collect Media stopped: {error or type(error).__name__}")
        else:
            self.finished.emit(mapping)


class CollectMediaDialog(QDialog):
    """Asks before collecting: how many files, their size, where they go; the list behind Show Details."""

    def __init__(self, plan: CollectPlan, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("collectMediaDialog")
        self.setWindowTitle("Collect Media")
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Copies the media files this project uses from outside its folder into the project's own media "
            "folder and points the project at the copies, so the folder can be moved or archived as a whole."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        renders = (
            f" ({plan.untitled_renders} from the untitled project's renders)" if plan.untitled_renders else ""
        )
        self.count_label = QLabel(f"<b>{len(plan.items)}</b>{renders}")
        self.size_label = QLabel(f"<b>{format_bytes(plan.total_bytes)}</b>{_free_note(plan)}")
        self.destination_label = QLabel(str(plan.destination))
        self.destination_label.setWordWrap(True)
        self.destination_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Files to copy:", self.count_label)
        form.addRow("Size:", self.size_label)
        form.addRow("Into:", self.destination_label)
        layout.addLayout(form)
        notes = ["The originals stay where they are; Edit ▸ Undo points the project back at them."]
        if plan.inside:
            notes.append(f"{plan.inside} file(s) already in the project's folder stay where they are.")
        if plan.missing:
            notes.append(f"{len(plan.missing)} file(s) are missing and cannot be collected (see Details).")
        if plan.in_use:
            notes.append(f"{len(plan.in_use)} file(s) are left in place. {IN_USE_NOTE}")
        self.notes_label = QLabel("<br>".join(notes))
        self.notes_label.setObjectName("collectMediaNotes")
        self.notes_label.setWordWrap(True)
        self.notes_label.setStyleSheet("color:#8d93a0;")
        layout.addWidget(self.notes_label)
        self.details = QPlainTextEdit(plan.details())
        self.details.setObjectName("collectMediaDetails")
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))  # columns line up
        self.details.setMinimumHeight(160)
        self.details.setVisible(False)
        layout.addWidget(self.details, 1)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Collect")
        self.details_button = QPushButton("Show Details…")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self._on_details_button_toggled)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        row = QHBoxLayout()  # Show Details on the left, away from Collect / Cancel
        row.addWidget(self.details_button)
        row.addStretch(1)
        row.addWidget(self.buttons)
        layout.addLayout(row)

    def _on_details_button_toggled(self, shown: bool) -> None:
        self.details.setVisible(shown)
        self.details_button.setText("Hide Details…" if shown else "Show Details…")
        if shown:
            self.resize(max(self.width(), 820), self.height() + 220)
        else:
            self.adjustSize()


def _free_note(plan: CollectPlan) -> str:
    try:
        free = shutil.disk_usage(existing_ancestor(plan.destination)).free
    except OSError:
        return ""
    return f" ({format_bytes(free)} free on that disk)"


class MediaCollector(QObject):
    """Runs File ▸ Collect Media… for the window's open project. Main thread only.

    Signals:
        collected(dict): the copies landed and the project points at them (old path → new path).
        ended(str): the collect is over (``"collected"``, ``"cancelled"``, ``"failed"``).
    """

    collected = Signal(object)
    ended = Signal(str)

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.worker: CollectWorker | None = None
        self.progress_dialog: QProgressDialog | None = None
        self._plan: CollectPlan | None = None
        self._doc: Any = None
        self._stuck: list[CollectWorker] = []
        # What copies the files and measures the disk (tests wrap them: a slower copy, a full disk).
        self.copy_files: Callable[..., dict[str, str]] = collect_files
        self.disk_usage: Callable[[str], Any] = shutil.disk_usage

    @property
    def running(self) -> bool:
        return self.worker is not None

    # -- questions (tests replace these) --------------------------------------------------------------

    def ask_save_first(self) -> bool:
        """An untitled project: offer Save As (the copies go beside the project file)."""
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Collect Media",
            "The project has not been saved yet. Collected media go into a folder beside the project file, "
            "so the project must be saved first.\n\nSave it now?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel,
            self.window,
        )
        box.button(QMessageBox.StandardButton.Save).setText("Save As…")
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        return box.exec() == QMessageBox.StandardButton.Save

    def confirm(self, plan: CollectPlan) -> bool:
        return CollectMediaDialog(plan, self.window).exec() == QDialog.DialogCode.Accepted

    def show_error(self, message: str) -> None:
        if not getattr(self.window, "testing", False):
            QMessageBox.warning(self.window, "Collect Media", message)

    # -- the flow -----------------------------------------------------------------------------------------

    def plan(self) -> CollectPlan:
        doc = self.window.doc
        jobs = doc.queue.jobs if getattr(doc, "queue", None) is not None else ()
        return plan_collect(doc.project, doc.path, jobs, document.untitled_media_dir())

    def start(self) -> CollectWorker | None:
        """The action: returns the running worker, or None when nothing was started."""
        window = self.window
        if self.worker is not None:
            raise ValueError("Media is already being collected.")
        if window.doc.path is None and not (self.ask_save_first() and window.save_as_dialog()):
            window.show_message("Media not collected: the project must be saved first.")
            return None
        plan = self.plan()
        if not plan.items:
            extra = [f"{len(plan.missing)} missing"] if plan.missing else []
            extra += [f"{len(plan.in_use)} used by unfinished renders"] if plan.in_use else []
            window.show_message(
                "Nothing to collect: the project's media are all in its folder"
                + (f" ({', '.join(extra)})." if extra else "."),
                12000,
            )
            return None
        try:
            check_space(plan, self.disk_usage)
        except NotEnoughSpace as error:
            window.show_message(str(error), 20000)
            self.show_error(str(error))
            return None
        if not self.confirm(plan):
            return None
        return self._run(plan)

    def _run(self, plan: CollectPlan) -> CollectWorker:
        window = self.window
        copy, usage = self.copy_files, self.disk_usage  # read here: the worker thread never touches self
        worker = CollectWorker(plan, lambda *args: copy(*args, disk_usage=usage))
        # Cancel sets the worker's event, checked between chunks.
        dialog = cancellable_progress(
            window, "Collect Media", f"Copying {len(plan.items)} file(s) into\n{plan.destination}", 1000,
            worker.cancel_event,
        )
        worker.progress_changed.connect(self._on_worker_progress_changed)
        worker.finished.connect(self._on_worker_finished)
        worker.failed.connect(self._on_worker_failed)
        worker.cancelled.connect(self._on_worker_cancelled)
        self.worker, self.progress_dialog, self._plan, self._doc = worker, dialog, plan, window.doc
        window.act_collect.setEnabled(False)
        worker.start_thread()
        dialog.show()
        return worker

    def _on_worker_progress_changed(self, done: int, total: int) -> None:
        dialog, plan = self.progress_dialog, self._plan
        if dialog is None or plan is None or not total:
            return
        dialog.setLabelText(f"Copying {format_bytes(done)} of {format_bytes(total)} into\n{plan.destination}")
        # Last: a modal QProgressDialog's setValue() processes events, so the worker's end may be handled
        # (and this dialog closed) inside it.
        dialog.setValue(int(1000 * done / total))

    def _end(self, outcome: str) -> None:
        worker, dialog = self.worker, self.progress_dialog
        self.worker, self.progress_dialog = None, None
        if worker is not None:
            if worker.wait(10000):
                worker.deleteLater()
            else:  # never drop a running QThread (Qt aborts); keep it until it ends
                self._stuck.append(worker)
        if dialog is not None:
            dialog.close()
            dialog.deleteLater()
        self.window.act_collect.setEnabled(True)
        self.ended.emit(outcome)

    def _on_worker_finished(self, mapping: dict[str, str]) -> None:
        plan, doc = self._plan, self._doc
        if self.worker is None or plan is None:  # stopped by shutdown(): nothing more to do
            return
        window = self.window
        self._end("collected")
        if doc is not window.doc:
            window.show_message(
                f"Collected {len(mapping)} file(s) into {plan.destination}; the project was closed meanwhile."
            )
            return
        try:
            doc.undo.push(relink_to_copies(doc.project, plan, mapping))
        except Exception as error:
            message = (
                f"The files were copied into {plan.destination}, but the project could not use them: {error}"
            )
            window.show_message(message, 20000)
            self.show_error(message)
            return
        size = format_bytes(sum(item.size for item in plan.items if str(item.source) in mapping))
        text = f"Collected {len(mapping)} file{'s' if len(mapping) != 1 else ''} ({size}) into {plan.destination}"
        left = []
        if plan.missing:
            left.append(f"{len(plan.missing)} missing")
        if plan.in_use:
            left.append(f"{len(plan.in_use)} left for unfinished renders")
        window.show_message(text + (f" ({', '.join(left)})" if left else ""), 20000)
        self.collected.emit(mapping)

    def _on_worker_failed(self, message: str) -> None:
        if self.worker is None:
            return
        self._end("failed")
        self.window.show_message(f"Collect Media failed: {message}", 20000)
        self.show_error(message)

    def _on_worker_cancelled(self) -> None:
        if self.worker is None:
            return
        self._end("cancelled")
        self.window.show_message(
            "Collect Media cancelled: nothing was changed and no copies were left behind."
        )

    def shutdown(self) -> None:
        """Stop a running collect (the window is closing); its copies are removed, the project unchanged."""
        if self.worker is not None:
            self.worker.cancel_event.set()
            self._end("cancelled")
