"""The program viewer: the timeline's picture at the playhead, transport buttons and timecode.

Owns :class:`FrameProvider` (decodes the picture for a timeline frame in a one-thread pool, newest
request wins, so scrubbing never queues up stale frames) and :class:`ViewerPanel` (the widget).

Main thread only; decoding runs in the provider's worker thread and returns ``QImage``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from app import theme
from app.media_jobs import _Readers, _rgb_to_qimage
from app.playback import PlaybackController
from app.timecode import format_timecode
from app.workers import WorkerPool
from core.project import AssetKind, Project, TrackKind

PREVIEW_MAX = (960, 540)


def picture_source(project: Project, frame: int) -> tuple[str, str, float] | None:
    """(path, kind, seconds into the file) of the topmost visible video clip at ``frame``, or None."""
    fps = project.settings.fps
    # The same rule as core.media.timeline_render: the topmost video track with a clip there wins
    # (muting a track silences it; its pictures still show).
    for track in project.tracks:
        if track.kind is not TrackKind.VIDEO:
            continue
        clip = track.clip_at(frame)
        if clip is None or not project.has_asset(clip.asset_id):
            continue
        asset = project.asset(clip.asset_id)
        if asset.missing:
            return (asset.path, "missing", 0.0)
        return (asset.path, asset.kind.value, float(Fraction(clip.in_point + frame - clip.start, fps)))
    return None


def decode_picture(readers: _Readers, source: tuple[str, str, float], size: tuple[int, int]) -> QImage:
    """Worker function: one picture, scaled here (off the GUI thread) to fit ``size`` exactly."""
    from core.media.images import fit_size, read_image, resize

    path, kind, seconds = source
    if kind == AssetKind.IMAGE.value:
        rgb = read_image(path, max_size=size)
        w, h = fit_size(rgb.shape[1], rgb.shape[0], *size)
        return _rgb_to_qimage(resize(rgb, w, h) if (w, h) != (rgb.shape[1], rgb.shape[0]) else rgb)
    reader = readers.get(path)
    out = fit_size(reader.width, reader.height, *size)
    index = min(reader.frame_count - 1, reader.index_at_time(seconds))
    return _rgb_to_qimage(reader.frame_at(index, size=out))


class FrameProvider(QObject):
    """Pictures for timeline frames, decoded off the GUI thread; the newest request wins.

    Signals:
        frame_ready(int, QImage): the picture for a frame (a null image for black / nothing there).
        failed(str): a picture could not be decoded.
    """

    frame_ready = Signal(int, QImage)
    failed = Signal(str)

    def __init__(self, project: Project, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.pool = WorkerPool(self, max_threads=1)
        self._readers = _Readers(limit=4)
        self._busy = False
        self._pending: int | None = None
        self._closed = False
        self.target_size = PREVIEW_MAX  # the viewer sets its on-screen picture size

    def request(self, frame: int) -> None:
        if self._closed:
            return
        if self._busy:
            self._pending = frame
            return
        source = picture_source(self.project, frame)
        if source is None or source[1] == "missing":
            self.frame_ready.emit(frame, QImage())
            return
        self._busy = True
        self.pool.submit(
            decode_picture,
            self._readers,
            source,
            self.target_size,
            on_done=lambda image, f=frame: self._on_done(f, image),
            on_error=lambda exc, f=frame: self._on_error(f, exc),
        )

    def _next(self) -> None:
        self._busy = False
        if self._pending is not None:
            frame, self._pending = self._pending, None
            self.request(frame)

    def _on_done(self, frame: int, image: QImage) -> None:
        if not self._closed:
            self.frame_ready.emit(frame, image)
        self._next()

    def _on_error(self, frame: int, exc: BaseException) -> None:
        if not self._closed:
            self.failed.emit(str(exc))
            self.frame_ready.emit(frame, QImage())
        self._next()

    def close(self) -> None:
        self._closed = True
        self._pending = None
        self.pool.shutdown()
        self._readers.close()


class _PictureWidget(QWidget):
    """Paints the current picture letterboxed in the project's aspect ratio."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = QImage()
        self.aspect = 16 / 9
        self.message = ""
        self.setMinimumSize(240, 135)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    resized = Signal()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.resized.emit()

    def frame_rect(self) -> QRectF:
        w, h = self.width(), self.height()
        if w / max(1, h) > self.aspect:
            fw, fh = h * self.aspect, h
        else:
            fw, fh = w, w / self.aspect
        return QRectF((w - fw) / 2, (h - fh) / 2, fw, fh)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0d0e10"))
        target = self.frame_rect()
        p.fillRect(target, QColor("#000000"))
        if not self.image.isNull():
            iw, ih = self.image.width(), self.image.height()
            scale = min(target.width() / iw, target.height() / ih)
            if abs(scale - 1.0) < 0.02:
                # Decoded at the on-screen size: a plain copy, no scaling on the GUI thread.
                p.drawImage(
                    QPointF(round(target.center().x() - iw / 2), round(target.center().y() - ih / 2)),
                    self.image,
                )
            else:  # until the next frame arrives at the new size (after a resize)
                dw, dh = iw * scale, ih * scale
                p.drawImage(
                    QRectF(target.center().x() - dw / 2, target.center().y() - dh / 2, dw, dh), self.image
                )
        elif self.message:
            p.setPen(theme.TEXT_DIM)
            p.drawText(target, Qt.AlignmentFlag.AlignCenter, self.message)
        p.end()


def shuttle_text(speed: int) -> str:
    """What the viewer shows for a playback speed: nothing at 1x or stopped, else "2x", "◀ 1x", ..."""
    if speed in (0, 1):
        return ""
    return f"{'◀ ' if speed < 0 else ''}{abs(speed)}x"


class ViewerPanel(QWidget):
    """Program monitor: picture, transport buttons, timecode / duration."""

    def __init__(
        self,
        project: Project,
        playback: PlaybackController,
        frames: FrameProvider,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.project = project
        self.playback = playback
        self.frames = frames
        self._shown_frame = -1
        title = QLabel("Program")
        title.setObjectName("panelTitle")
        self.picture = _PictureWidget(self)
        self.picture.message = "Import media (File ▸ Import or drag files in) and drop it on the timeline"
        self.timecode = QLabel("00:00:00:00")
        self.timecode.setObjectName("timecode")
        self.duration = QLabel("")
        self.duration.setObjectName("viewerMessage")
        # The shuttle speed while it is not plain 1x playback (J/K/L): "2x", "4x", "◀ 1x", ...
        self.speed = QLabel("")
        self.speed.setObjectName("timecode")
        self.speed.setToolTip("Shuttle speed (J / K / L)")
        self.play_button = self._button("play", "Play / pause (Space)", playback.toggle_play)
        bar = QHBoxLayout()
        bar.setContentsMargins(6, 2, 6, 4)
        bar.addWidget(self.timecode)
        bar.addWidget(self.speed)
        bar.addStretch(1)
        bar.addWidget(self._button("goto", "Go to start (Home)", lambda: playback.seek(0)))
        bar.addWidget(self._button("step-back", "Previous frame (Left)", lambda: playback.step(-1)))
        bar.addWidget(self.play_button)
        bar.addWidget(self._button("step-forward", "Next frame (Right)", lambda: playback.step(1)))
        bar.addStretch(1)
        bar.addWidget(self.duration)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(title)
        layout.addWidget(self.picture, 1)
        layout.addLayout(bar)
        playback.position_changed.connect(self._on_playback_position_changed)
        playback.state_changed.connect(self._on_playback_state_changed)
        frames.frame_ready.connect(self._on_frames_frame_ready)
        self.picture.resized.connect(self._on_picture_resized)
        self._update_aspect()
        self.refresh()

    def _button(self, icon: str, tip: str, slot: Any) -> QToolButton:
        button = QToolButton(self)
        button.setIcon(theme.icon(icon))
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.clicked.connect(slot)
        return button

    def _update_aspect(self) -> None:
        s = self.project.settings
        self.picture.aspect = s.width / max(1, s.height)
        self._update_target_size()

    def _update_target_size(self) -> None:
        rect = self.picture.frame_rect()
        self.frames.target_size = (max(16, int(rect.width())), max(16, int(rect.height())))

    def _on_picture_resized(self) -> None:
        old = self.frames.target_size
        self._update_target_size()
        if self.frames.target_size != old:
            self.refresh()

    def refresh(self) -> None:
        """Re-show the picture at the playhead (after an edit changed what is there)."""
        self._update_aspect()
        self._shown_frame = -1
        self._show(self.playback.position)

    def _show(self, frame: int) -> None:
        fps = self.project.settings.fps
        self.timecode.setText(format_timecode(frame, fps))
        self.duration.setText(format_timecode(self.project.end_frame, fps))
        if frame != self._shown_frame:
            self._shown_frame = frame
            self.frames.request(frame)

    def _on_playback_position_changed(self, frame: int) -> None:
        self._show(frame)

    def _on_playback_state_changed(self, playing: bool) -> None:
        self.play_button.setIcon(theme.icon("pause" if playing else "play"))
        self.speed.setText(shuttle_text(self.playback.speed if playing else 0))

    def _on_frames_frame_ready(self, frame: int, image: QImage) -> None:
        self.picture.image = image
        if image.isNull() and self.project.clip_count():
            self.picture.message = "" if picture_source(self.project, frame) is None else "Media offline"
        self.picture.update()
