"""The render queue dock: every job with its progress, live latent preview, errors and controls.

Owns :class:`QtJobListModel` (a Qt list model adapting the live :class:`core.render_queue.RenderQueue`:
core events become row inserts/removes/moves and ``dataChanged``; a drop reorders through the controller),
:class:`JobDelegate` (paints a row: preview thumbnail, label, state, progress bar, step and piece
counters, elapsed and estimate, the error in words), :class:`RenderPanel` (list + buttons + the large
preview of the selected or running job) and :class:`TimelineRenderOverlay` (draws unfinished jobs, with
their latent preview, where their clip will land on the timeline).

Main thread only.
"""

from __future__ import annotations

import contextlib
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QByteArray,
    QEvent,
    QMimeData,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app import theme
from core.render_queue import Job, JobState, RenderQueue

JOB_MIME = "application/x-skyreels-job-id"
JobRole = Qt.ItemDataRole.UserRole + 1

STATE_COLOURS = {
    JobState.QUEUED: QColor("#8d93a0"),
    JobState.RUNNING: QColor("#6fd3ff"),
    JobState.PAUSED: QColor("#e8b53a"),
    JobState.FINISHED: QColor("#6fdc8c"),
    JobState.FAILED: QColor("#ff6b6b"),
    JobState.CANCELLED: QColor("#a0a4ad"),
}


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m}:{s:02d}"
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


def job_summary(job: Job, now: float) -> str:
    """The state line of a job, in words: state, step and piece counters, elapsed and estimate."""
    state = job.state.value.capitalize()
    if job.state is JobState.RUNNING and job.pause_requested:
        state = "Pausing…"
    elif job.state is JobState.RUNNING and job.cancel_requested:
        state = "Cancelling…"
    if job.held:  # rendering in another process (several GPUs): where, instead of "Paused"
        state = job.held
    parts = [state]
    if job.total_steps:
        parts.append(f"step {job.step}/{job.total_steps}")
    if job.total_pieces > 1 or job.last_finished_piece >= 0:
        done = job.last_finished_piece + 1
        parts.append(f"piece {min(job.piece + 1, job.total_pieces)}/{job.total_pieces} ({done} done)")
    if job.started is not None:
        parts.append(f"elapsed {format_seconds(job.elapsed(now))}")
    remaining = job.estimate_remaining(now)
    if remaining is not None:
        parts.append(f"about {format_seconds(remaining)} left")
    return " · ".join(parts)


class QtJobListModel(QAbstractListModel):
    """Rows of the live render queue: references to its jobs (no copies) in queue order, updated inside
    Qt's begin/end calls. Drops reorder via ``move(job_id, row)``.

    Args:
        queue: the queue to show (:meth:`set_queue` swaps it).
        previews: ``job_id -> (QImage, piece, step)`` (the controller's dict, read on paint).
        move: called to reorder (the controller's ``move``).
    """

    def __init__(self, queue: RenderQueue, previews: dict[str, Any] | None = None, move: Any = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queue: RenderQueue | None = None
        self._rows: list[Job] = []
        self.previews = previews if previews is not None else {}
        self._move = move
        self.set_queue(queue)

    def set_queue(self, queue: RenderQueue) -> None:
        self.beginResetModel()
        if self._queue is not None:
            self.detach()
        self._queue = queue
        # References to the queue's jobs in row order. Core events arrive after the queue changed, but Qt's
        # begin*/end* must bracket the change, so rows follow the queue between those calls.
        self._rows: list[Job] = list(queue.jobs)
        queue.job_added.connect(self._on_queue_job_added)
        queue.job_removed.connect(self._on_queue_job_removed)
        queue.job_changed.connect(self._on_queue_job_changed)
        queue.job_moved.connect(self._on_queue_job_moved)
        self.endResetModel()

    def detach(self) -> None:
        queue = self._queue
        if queue is None:
            return
        for signal, slot in ((queue.job_added, self._on_queue_job_added), (queue.job_removed, self._on_queue_job_removed),
                             (queue.job_changed, self._on_queue_job_changed), (queue.job_moved, self._on_queue_job_moved)):
            with contextlib.suppress(Exception):
                signal.disconnect(slot)

    @property
    def queue(self) -> RenderQueue:
        assert self._queue is not None
        return self._queue

    # core events -> Qt rows
    def _on_queue_job_added(self, job: Job, index: int) -> None:
        self.beginInsertRows(QModelIndex(), index, index)
        self._rows.insert(index, job)
        self.endInsertRows()

    def _on_queue_job_removed(self, job: Job, index: int) -> None:
        self.beginRemoveRows(QModelIndex(), index, index)
        del self._rows[index]
        self.endRemoveRows()

    def _on_queue_job_changed(self, job: Job) -> None:
        self.job_changed(job.job_id)

    def job_changed(self, job_id: str) -> None:
        for row, job in enumerate(self._rows):
            if job.job_id == job_id:
                index = self.index(row, 0)
                self.dataChanged.emit(index, index)
                return

    def _on_queue_job_moved(self, job: Job, old: int, new: int) -> None:
        # Qt's destination is the row *before which* the item goes, in pre-move numbering.
        dest = new + 1 if new > old else new
        if self.beginMoveRows(QModelIndex(), old, old, QModelIndex(), dest):
            self._rows.insert(new, self._rows.pop(old))
            self.endMoveRows()

    # reading
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def job_at(self, row: int) -> Job:
        return self._rows[row]

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        job = self.job_at(index.row())
        if role == Qt.ItemDataRole.DisplayRole:
            return job.label or job.job_id
        if role == Qt.ItemDataRole.ToolTipRole:
            text = f"{job.label}\n{job_summary(job, self.queue.now())}"
            if job.error:
                text += f"\n{job.error}"
            if job.status:
                text += f"\n{job.status}"
            return text
        if role == JobRole:
            return job
        if role == Qt.ItemDataRole.DecorationRole:
            preview = self.previews.get(job.job_id)
            return preview[0] if preview else None
        return None

    # drag to reorder
    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if index.isValid():
            return base | Qt.ItemFlag.ItemIsDragEnabled
        return Qt.ItemFlag.ItemIsDropEnabled

    def mimeTypes(self) -> list[str]:
        return [JOB_MIME]

    def mimeData(self, indexes: Any) -> QMimeData:
        mime = QMimeData()
        ids = [self.job_at(i.row()).job_id for i in indexes if i.isValid()]
        mime.setData(JOB_MIME, QByteArray("\n".join(ids).encode()))
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction

    def canDropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int,
                        parent: QModelIndex | QPersistentModelIndex) -> bool:
        return data.hasFormat(JOB_MIME)

    def dropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int,
                     parent: QModelIndex | QPersistentModelIndex) -> bool:
        if not data.hasFormat(JOB_MIME) or self._move is None:
            return False
        ids = [i for i in bytes(data.data(JOB_MIME).data()).decode().split("\n") if i]
        if row < 0:
            row = parent.row() if parent.isValid() else len(self._rows)
        for job_id in ids:
            with contextlib.suppress(Exception):
                old = self.queue.index(job_id)
                target = row - 1 if old < row else row
                self._move(job_id, target)
                row = self.queue.index(job_id) + 1
        # False: the move is done; the view must not remove the dragged rows itself.
        return False

    def removeRows(self, row: int, count: int, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> bool:  # noqa: B008
        return False  # rows leave only through the queue


ROW_H = 78
THUMB = QSize(104, 58)


class JobDelegate(QStyledItemDelegate):
    """Paints one job: preview thumbnail, label, state line, progress bar and error text."""

    def __init__(self, now: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._now = now

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        job = index.data(JobRole)
        extra = 28 if job is not None and job.error else 0
        return QSize(max(320, option.rect.width()), ROW_H + extra)

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        job: Job | None = index.data(JobRole)
        if job is None:
            return
        r = option.rect
        p.save()
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        p.fillRect(r, QColor("#2d3a4f") if selected else (QColor("#24262d") if index.row() % 2 else QColor("#202228")))
        p.setPen(QPen(theme.BORDER))
        p.drawLine(r.bottomLeft(), r.bottomRight())
        thumb = QRect(r.left() + 6, r.top() + 8, THUMB.width(), THUMB.height())
        p.fillRect(thumb, QColor("#111317"))
        image = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(image, QImage) and not image.isNull():
            scaled = image.scaled(thumb.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            x = thumb.left() + (thumb.width() - scaled.width()) // 2
            y = thumb.top() + (thumb.height() - scaled.height()) // 2
            p.drawImage(x, y, scaled)
        else:
            p.setPen(theme.TEXT_DIM)
            p.drawText(thumb, Qt.AlignmentFlag.AlignCenter, {JobState.FINISHED: "✓", JobState.FAILED: "!",
                                                              JobState.CANCELLED: "×"}.get(job.state, "…"))
        colour = STATE_COLOURS[JobState.RUNNING] if job.held else STATE_COLOURS.get(job.state, theme.TEXT_DIM)
        p.fillRect(QRect(r.left(), r.top(), 3, r.height() - 1), colour)
        left = thumb.right() + 10
        width = r.right() - left - 8
        bold = QFont(option.font)
        bold.setBold(True)
        p.setFont(bold)
        p.setPen(theme.TEXT)
        fm = QFontMetrics(bold)
        p.drawText(QRect(left, r.top() + 6, width, 18), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   fm.elidedText(("◆ " if job.is_preview else "") + (job.label or job.job_id), Qt.TextElideMode.ElideRight, width))
        p.setFont(option.font)
        p.setPen(colour)
        fm2 = QFontMetrics(option.font)
        line = job_summary(job, self._now())
        p.drawText(QRect(left, r.top() + 25, width, 16), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   fm2.elidedText(line, Qt.TextElideMode.ElideRight, width))
        bar = QStyleOptionProgressBar()
        bar.rect = QRect(left, r.top() + 45, width, 12)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(job.fraction * 1000)
        bar.textVisible = False
        bar.state = QStyle.StateFlag.State_Enabled | QStyle.StateFlag.State_Horizontal
        bar.palette = option.palette
        bar.palette.setColor(bar.palette.ColorRole.Highlight, colour)
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, p, option.widget)
        if job.status and job.state is JobState.RUNNING:
            p.setPen(theme.TEXT_DIM)
            p.drawText(QRect(left, r.top() + 59, width, 14), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       fm2.elidedText(job.status, Qt.TextElideMode.ElideRight, width))
        if job.error:
            p.setPen(STATE_COLOURS[JobState.FAILED] if job.state is JobState.FAILED else theme.TEXT_DIM)
            # Up to two lines, word-wrapped; the full text is in the tooltip.
            box = QRect(left, r.top() + 60, width, 2 * fm2.lineSpacing() + 2)
            text = job.error
            if fm2.boundingRect(box, Qt.TextFlag.TextWordWrap, text).height() > box.height():
                while text and fm2.boundingRect(box, Qt.TextFlag.TextWordWrap, text + "…").height() > box.height():
                    text = text[:-4]
                text += "…"
            p.drawText(box, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap, text)
        p.restore()


class RenderPanel(QWidget):
    """The render queue dock's contents: the job list, buttons for the selected job, a large preview.

    Args:
        controller: the :class:`app.render_controller.RenderController` (actions go through it).
    """

    error_shown = Signal(str)

    def __init__(self, controller: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("renderPanel")
        self.controller = controller
        self.model = QtJobListModel(controller.queue, controller.previews, controller.move, self)
        self.view = QListView()
        self.view.setObjectName("renderJobs")
        self.view.setModel(self.model)
        self.view.setItemDelegate(JobDelegate(lambda: self.model.queue.now(), self.view))
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.view.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.view.setDragEnabled(True)
        self.view.setAcceptDrops(True)
        self.view.setDropIndicatorShown(True)
        self.view.setUniformItemSizes(False)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._show_menu)
        self.view.doubleClicked.connect(lambda index: self._guard(lambda: self._on_view_double_clicked(index)))
        self.view.selectionModel().currentChanged.connect(lambda *a: self._update_buttons())
        self.preview = QLabel("No render running")
        self.preview.setObjectName("renderPreview")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumHeight(150)
        self.preview.setMaximumHeight(260)
        self.preview.setStyleSheet("background:#111317; color:#8d93a0; border-radius:3px;")
        self.preview_caption = QLabel("")
        self.preview_caption.setStyleSheet("color:#8d93a0;")
        self.preview_caption.setWordWrap(True)
        self.play_button = QPushButton("▶ Play piece")
        self.play_button.setObjectName("render_play_piece")
        self.play_button.setToolTip("Play the newest finished piece of the selected job (pieces are playable "
                                    "while the rest still renders)")
        self.play_button.clicked.connect(lambda: self._guard(self.play_selected_piece))
        self._player_frames: list[QImage] = []
        self._player_index = 0
        self._player_timer = QTimer(self)
        self._player_timer.timeout.connect(self._on_player_timer_timeout)
        self.playing_piece = ""
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        row.setSpacing(4)
        for key, text, slot in (("pause", "Pause", self.pause_selected), ("resume", "Resume", self.resume_selected),
                                ("cancel", "Cancel", self.cancel_selected), ("retry", "Retry", self.retry_selected),
                                ("remove", "Remove", self.remove_selected), ("clear", "Clear done", self.clear_done)):
            button = QPushButton(text)
            button.setObjectName(f"render_{key}")
            button.clicked.connect(lambda checked=False, s=slot: self._guard(s))
            self.buttons[key] = button
            row.addWidget(button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.preview, 0)
        caption_row = QHBoxLayout()
        caption_row.addWidget(self.preview_caption, 1)
        caption_row.addWidget(self.play_button)
        layout.addLayout(caption_row)
        layout.addLayout(row)
        layout.addWidget(self.view, 1)
        self._tick = QTimer(self, interval=1000)
        self._tick.timeout.connect(self._on_tick_timeout)
        self._tick.start()
        controller.queue_replaced.connect(self._on_controller_queue_replaced)
        controller.preview_changed.connect(self._on_controller_preview_changed)
        controller.piece_ready.connect(lambda *a: self._update_buttons())
        self.model.dataChanged.connect(lambda *a: self._update_buttons())
        self.model.rowsInserted.connect(lambda *a: self._update_buttons())
        self.model.rowsRemoved.connect(lambda *a: self._update_buttons())
        self._update_buttons()

    def sizeHint(self) -> QSize:
        return QSize(420, 600)

    # selection helpers
    def selected_job(self) -> Job | None:
        index = self.view.currentIndex()
        if not index.isValid():
            return None
        return self.model.job_at(index.row())

    def select_job(self, job_id: str) -> None:
        self.view.setCurrentIndex(self.model.index(self.model.queue.index(job_id), 0))

    def _guard(self, slot: Any) -> None:
        try:
            slot()
        except Exception as exc:
            self.controller.message.emit(str(exc))
            self.error_shown.emit(str(exc))

    def _selected_id(self) -> str:
        job = self.selected_job()
        if job is None:
            raise ValueError("Select a job in the render queue first.")
        return job.job_id

    def pause_selected(self) -> None:
        self.controller.pause(self._selected_id())

    def resume_selected(self) -> None:
        self.controller.resume(self._selected_id())

    def cancel_selected(self) -> None:
        self.controller.cancel(self._selected_id())

    def retry_selected(self) -> None:
        self.controller.retry(self._selected_id())

    def remove_selected(self) -> None:
        self.controller.remove(self._selected_id())

    def clear_done(self) -> None:
        self.model.queue.clear_done()

    def _update_buttons(self) -> None:
        job = self.selected_job()
        # A held job renders in another process: only that run's Cancel (above the list) stops it.
        state = job.state if job is not None and not job.held else None
        self.buttons["pause"].setEnabled(state in (JobState.QUEUED, JobState.RUNNING))
        self.buttons["resume"].setEnabled(state is JobState.PAUSED)
        self.buttons["cancel"].setEnabled(state in (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED))
        self.buttons["retry"].setEnabled(state in (JobState.FAILED, JobState.CANCELLED))
        self.buttons["remove"].setEnabled(state is not None and state is not JobState.RUNNING)
        self.buttons["clear"].setEnabled(any(j.is_done for j in self.model.queue.jobs))
        self.play_button.setEnabled(job is not None and bool(job.piece_paths))
        if not self._player_timer.isActive():
            self._show_preview()

    def _on_view_double_clicked(self, index: QModelIndex) -> None:
        job = self.model.job_at(index.row())
        if job.state is JobState.FINISHED:
            self.controller.reveal(job.job_id)
        elif job.piece_paths:
            self.play_selected_piece()

    def _show_menu(self, pos: Any) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        self.view.setCurrentIndex(index)
        menu = QMenu(self)
        for key in ("pause", "resume", "cancel", "retry", "remove"):
            button = self.buttons[key]
            action = menu.addAction(button.text())
            action.setEnabled(button.isEnabled())
            action.triggered.connect(button.click)
        menu.popup(self.view.viewport().mapToGlobal(pos))

    # live updates
    def _on_tick_timeout(self) -> None:
        running = self.model.queue.running()
        if running is not None:
            self.model.job_changed(running.job_id)

    def _on_controller_queue_replaced(self, queue: RenderQueue) -> None:
        self.model.set_queue(queue)
        self._update_buttons()

    def _on_controller_preview_changed(self, job_id: str) -> None:
        self.model.job_changed(job_id)
        if not self._player_timer.isActive():
            self._show_preview()

    # playing finished pieces
    def play_selected_piece(self) -> None:
        job = self.selected_job()
        if job is None or not job.piece_paths:
            raise ValueError("The selected job has no finished piece yet.")
        self.play_piece(job.piece_paths[-1], f"{job.label} — piece {len(job.piece_paths)} (finished)")

    def play_piece(self, path: str, caption: str = "") -> None:
        """Decode a finished piece off the GUI thread, then loop it once in the preview picture."""
        size = self.preview.size()
        self.controller.window.pool.submit(
            _decode_piece, path, (max(64, size.width()), max(64, size.height())),
            on_done=lambda result: self._start_player(path, caption, *result),
            on_error=lambda exc: self.controller.message.emit(f"Cannot play the piece: {exc}"))

    def _start_player(self, path: str, caption: str, frames: list[QImage], fps: float) -> None:
        if not frames:
            return
        self._player_frames, self._player_index = frames, 0
        self.playing_piece = path
        self.preview_caption.setText(caption or path)
        self._player_timer.start(int(1000 / max(1.0, fps)))
        self._on_player_timer_timeout()

    def _on_player_timer_timeout(self) -> None:
        if self._player_index >= len(self._player_frames):
            self._player_timer.stop()
            self._player_frames = []
            self.playing_piece = ""
            self._show_preview()
            return
        from PySide6.QtGui import QPixmap

        self.preview.setPixmap(QPixmap.fromImage(self._player_frames[self._player_index]))
        self._player_index += 1

    def shown_preview_job(self) -> str:
        """The job whose preview the large picture shows ("" for none)."""
        return getattr(self, "_shown_job", "")

    def _show_preview(self) -> None:
        job = self.selected_job()
        if job is None or job.job_id not in self.controller.previews:
            job = self.model.queue.running() or job
        previews = self.controller.previews
        if job is None or job.job_id not in previews:
            self._shown_job = ""
            self.preview.setPixmap(_empty_pixmap())
            queue = self.model.queue
            if queue.running() is not None:
                text = "Waiting for the first preview…"
            elif any(j.held for j in queue.jobs):
                text = "Rendering in separate processes (no live preview there)"
            else:
                text = "No render running"
            self.preview.setText(text)
            self.preview_caption.setText("")
            return
        image, piece, step = previews[job.job_id]
        from PySide6.QtGui import QPixmap

        size = self.preview.size()
        pixmap = QPixmap.fromImage(image).scaled(size, Qt.AspectRatioMode.KeepAspectRatio,
                                                 Qt.TransformationMode.SmoothTransformation)
        self.preview.setPixmap(pixmap)
        self._shown_job = job.job_id
        self.preview_caption.setText(f"{job.label} — latent preview, piece {piece + 1}, step {step}")


def _decode_piece(path: str, box: tuple[int, int]) -> tuple[list[QImage], float]:
    """Worker function: the frames of a finished piece as QImages fitted in ``box`` (at most 10 s)."""
    from core.media.decode import VideoReader

    frames: list[QImage] = []
    with VideoReader(path) as reader:
        fps = float(reader.fps or 24.0)
        limit = min(len(reader), int(fps * 10))
        for rgb in reader.iter_frames(0, limit):
            h, w = rgb.shape[:2]
            image = QImage(rgb.tobytes(), w, h, w * 3, QImage.Format.Format_RGB888).copy()
            frames.append(image.scaled(box[0], box[1], Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.SmoothTransformation))
    return frames, fps


def _empty_pixmap() -> Any:
    from PySide6.QtGui import QPixmap

    return QPixmap()


class TimelineRenderOverlay(QWidget):
    """Draws unfinished jobs where their clip will land on the timeline, with the latent preview.

    A transparent child of the timeline canvas that follows its size; it uses only the timeline's public
    geometry (``x_for_frame``, ``track_top``) and ignores the mouse.
    """

    def __init__(self, timeline: QWidget, controller: Any) -> None:
        super().__init__(timeline)
        self.setObjectName("renderOverlay")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)
        self.timeline = timeline
        self.controller = controller
        self.painted_jobs: list[str] = []
        timeline.installEventFilter(self)
        self.setGeometry(timeline.rect())
        with contextlib.suppress(Exception):
            timeline.view_changed.connect(self.update)
        self.show()
        self.raise_()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        # Only follow the size: the canvas repainting a region repaints this transparent child with it.
        if obj is self.timeline and event.type() == QEvent.Type.Resize:
            self.setGeometry(self.timeline.rect())
        return False

    def paintEvent(self, event: Any) -> None:
        from app import timeline as canvas

        header_w, ruler_h = getattr(canvas, "HEADER_W", 132), getattr(canvas, "RULER_H", 30)
        painted: list[str] = []
        p = QPainter(self)
        p.setClipRect(QRectF(header_w, ruler_h, self.width() - header_w, self.height() - ruler_h))
        font = QFont(self.font())
        font.setPointSizeF(8.0)
        p.setFont(font)
        ctrl = self.controller
        jobs = [j for j in ctrl.queue.jobs if j.state in (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)]
        jobs.sort(key=lambda j: j.state is JobState.RUNNING)  # the running one on top
        for job in jobs:
            try:
                place = ctrl.placeholder(job)
                if place is None:
                    continue
                track_id, start, end = place
                top, h = self.timeline.track_top(track_id)
            except Exception:
                continue
            x0, x1 = self.timeline.x_for_frame(start), self.timeline.x_for_frame(end)
            rect = QRectF(x0, top + 2, max(2.0, x1 - x0), h - 4)
            running = job.state is JobState.RUNNING
            p.fillRect(rect, QColor(20, 22, 28, 215))
            preview = ctrl.previews.get(job.job_id)
            if preview is not None and running:
                image = preview[0]
                target_h = rect.height() - 16
                target_w = target_h * image.width() / max(1, image.height())
                p.save()
                p.setClipRect(rect, Qt.ClipOperation.IntersectClip)  # tiles stop at the clip's end
                x = rect.left()
                while x < rect.right():
                    p.drawImage(QRectF(x, rect.top() + 13, target_w, target_h), image)
                    x += target_w + 1
                p.restore()
            pen = QPen(theme.GENERATED, 1.5, Qt.PenStyle.SolidLine if running else Qt.PenStyle.DashLine)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(rect.adjusted(0.5, 0.5, -0.5, -0.5), 3, 3)
            bar = QRectF(rect.left(), rect.bottom() - 3, rect.width() * job.fraction, 3)
            p.fillRect(bar, theme.GENERATED)
            title = QRectF(rect.left() + 4, rect.top(), rect.width() - 8, 13)
            p.setPen(theme.TEXT)
            state = f"rendering {int(job.fraction * 100)}%" if running else job.state.value
            if job.held:
                state = f"{job.held} {int(job.fraction * 100)}%"
            text = QFontMetrics(font).elidedText(f"{state} · {job.label}", Qt.TextElideMode.ElideRight, int(title.width()))
            p.drawText(title, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
            painted.append(job.job_id)
        p.end()
        self.painted_jobs = painted
