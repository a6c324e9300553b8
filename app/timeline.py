"""The timeline: a custom-painted view of the project's tracks, clips, markers and playhead.

Owns :class:`QtTimelineView` (the painted canvas and its mouse/keyboard gestures) and
:class:`TimelinePanel` (canvas + toolbar + scroll bar). The view never mutates the project: every gesture
ends in one call on the :class:`app.editing.EditingController`, which pushes core edits on the undo stack.
While a drag is in progress only ghost outlines move; the edit lands on release (one undo step).

Thumbnails and waveforms come from :class:`app.media_jobs.MediaCache`, which computes them in worker
threads and announces when more are ready; painting only reads what is already cached.

Main thread only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QMimeData, QPointF, QRect, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import (
    QCursor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QFont,
    QKeyEvent,
    QMouseEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QScrollBar,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.timecode import format_timecode
from app.timeline_paint import CLIP_TITLE_H, HEADER_W, RULER_H, TRACK_H, TimelinePainter
from core.project import AssetKind, Clip, Project, Track, TrackKind, track_accepts
from core.snapping import snap_targets

ASSET_MIME = "application/x-skyreels-asset-ids"

EDGE_GRAB_PX = 6
DRAG_THRESHOLD_PX = 4
SNAP_PX = 8
MIN_PX_PER_FRAME = 0.02
MAX_PX_PER_FRAME = 40.0


@dataclass
class _Drag:
    """State of one mouse gesture between press and release."""

    mode: str  # "scrub" | "move" | "trim_left" | "trim_right" | "marquee" | "region" | "pending"
    press_pos: QPointF
    press_frame: int
    clip_id: str | None = None
    started: bool = False
    delta_frames: int = 0
    delta_tracks: int = 0
    trim_frame: int = 0
    snap_frame: int | None = None
    marquee: QRectF | None = None
    region: tuple[int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class QtTimelineView(TimelinePainter, QWidget):
    """Painted tracks, clips, ruler, markers and playhead; turns gestures into editing calls.

    Signals:
        playhead_scrubbed(int): the user moved the playhead (ruler click/drag, or frame-step keys).
        selection_changed(): the set of selected clips changed.
        audio_region_selected(str, int, int): a region was dragged on an audio clip's waveform
            (clip id, timeline start frame, end frame exclusive).
        view_changed(): zoom or scroll changed (the panel syncs its scroll bar).
        message(str): a short status-bar message (refused edits, hints).
    """

    playhead_scrubbed = Signal(int)
    selection_changed = Signal()
    audio_region_selected = Signal(str, int, int)
    view_changed = Signal()
    message = Signal(str)

    def __init__(
        self, project: Project, editing: Any, media: Any = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("timeline")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setAcceptDrops(True)
        self.setMinimumHeight(RULER_H + 2 * 56)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._project = project
        self._editing = editing
        self._media = media
        self.px_per_frame = 4.0
        self.scroll_px = 0.0
        self.scroll_y = 0.0
        self.playhead = 0
        self.in_point: int | None = None
        self.out_point: int | None = None
        self.snapping = True
        self.selected: set[str] = set()
        self.audio_region: tuple[str, int, int] | None = None
        self._drag: _Drag | None = None
        self._drop_preview: tuple[str, int, int] | None = None  # (track_id, start, length)
        self._scaled_cache: dict[tuple[int, int, int], Any] = {}
        self._font = QFont(self.font())
        self._font.setPointSizeF(8.0)
        self._mono = QFont("monospace")
        self._mono.setStyleHint(QFont.StyleHint.Monospace)
        self._mono.setPointSizeF(7.5)
        # Repaints from bursts of model events or worker results coalesce into one per event-loop pass.
        self._repaint_timer = QTimer(self, singleShot=True, interval=0)
        self._repaint_timer.timeout.connect(self.update)
        self._connect_project(project)
        if media is not None:
            media.updated.connect(self._schedule_repaint)

    # -- project wiring ---------------------------------------------------------------------------

    def _connect_project(self, project: Project) -> None:
        self._subscriptions = [
            (project.clip_added, self._on_project_clip_added),
            (project.clip_removed, self._on_project_clip_removed),
            (project.clip_changed, self._on_project_changed),
            (project.track_added, self._on_project_tracks_changed),
            (project.track_removed, self._on_project_tracks_changed),
            (project.track_changed, self._on_project_changed),
            (project.marker_added, self._on_project_changed),
            (project.marker_removed, self._on_project_changed),
            (project.asset_changed, self._on_project_changed),
            (project.settings_changed, self._on_project_changed),
        ]
        for signal, slot in self._subscriptions:
            signal.connect(slot)

    def detach(self) -> None:
        """Stop listening to the project (call before the project is dropped)."""
        for signal, slot in self._subscriptions:
            if signal.is_connected(slot):
                signal.disconnect(slot)
        self._subscriptions = []

    def _on_project_clip_added(self, clip: Clip) -> None:
        self._request_media_for(clip)
        self._schedule_repaint()

    def _on_project_clip_removed(self, clip: Clip) -> None:
        if clip.clip_id in self.selected:
            self.selected.discard(clip.clip_id)
            self.selection_changed.emit()
        if self.audio_region and self.audio_region[0] == clip.clip_id:
            self.audio_region = None
        self._schedule_repaint()

    def _on_project_changed(self, *args: Any) -> None:
        self._schedule_repaint()

    def _on_project_tracks_changed(self, *args: Any) -> None:
        self.updateGeometry()
        self.view_changed.emit()  # the vertical scroll range changed
        self._schedule_repaint()

    def _schedule_repaint(self, *args: Any) -> None:
        if not self._repaint_timer.isActive():
            self._repaint_timer.start()

    def _request_media_for(self, clip: Clip) -> None:
        if self._media is None or not self._project.has_asset(clip.asset_id):
            return
        self._media.request_asset(self._project.asset(clip.asset_id))

    @property
    def project(self) -> Project:
        return self._project

    # -- geometry ---------------------------------------------------------------------------------

    def fps(self) -> int:
        return self._project.settings.fps

    def x_for_frame(self, frame: float) -> float:
        return HEADER_W + frame * self.px_per_frame - self.scroll_px

    def frame_at_x(self, x: float) -> int:
        return max(0, math.floor((x - HEADER_W + self.scroll_px) / self.px_per_frame + 0.5))

    def _frame_at_x_floor(self, x: float) -> int:
        return max(0, math.floor((x - HEADER_W + self.scroll_px) / self.px_per_frame))

    def track_rows(self) -> list[tuple[Track, int, int]]:
        """(track, top y, height) for every track, top to bottom."""
        rows = []
        y = RULER_H - int(self.scroll_y)
        for track in self._project.tracks:
            h = TRACK_H[track.kind]
            rows.append((track, y, h))
            y += h
        return rows

    def track_at_y(self, y: float) -> Track | None:
        if y < RULER_H:
            return None
        for track, top, h in self.track_rows():
            if top <= y < top + h:
                return track
        return None

    def track_top(self, track_id: str) -> tuple[int, int]:
        for track, top, h in self.track_rows():
            if track.track_id == track_id:
                return top, h
        raise KeyError(track_id)

    def clip_rect(
        self, clip: Clip, start: int | None = None, end: int | None = None, track_id: str | None = None
    ) -> QRectF:
        top, h = self.track_top(track_id or clip.track_id)
        s = clip.start if start is None else start
        e = clip.end if end is None else end
        x0, x1 = self.x_for_frame(s), self.x_for_frame(e)
        return QRectF(x0, top + 2, max(1.0, x1 - x0), h - 4)

    def clip_at(self, pos: QPointF) -> Clip | None:
        track = self.track_at_y(pos.y())
        if track is None or pos.x() < HEADER_W:
            return None
        # Use the unrounded frame so a click inside a 1-frame-wide clip still hits it.
        frame = (pos.x() - HEADER_W + self.scroll_px) / self.px_per_frame
        return track.clip_at(math.floor(frame))

    def sizeHint(self) -> QSize:
        return QSize(900, RULER_H + sum(TRACK_H[t.kind] for t in self._project.tracks) + 8)

    def content_width_px(self) -> float:
        end = max(self._project.end_frame, self.playhead, 10 * self.fps())
        return end * self.px_per_frame + 0.5 * max(1, self.width() - HEADER_W)

    # -- zoom and scroll --------------------------------------------------------------------------

    def set_zoom(self, px_per_frame: float, anchor_x: float | None = None) -> None:
        """Zoom keeping the frame under ``anchor_x`` (default: the playhead) where it is on screen."""
        px_per_frame = min(MAX_PX_PER_FRAME, max(MIN_PX_PER_FRAME, px_per_frame))
        if anchor_x is None:
            anchor_x = self.x_for_frame(self.playhead)
            if not HEADER_W <= anchor_x <= self.width():
                anchor_x = HEADER_W
        anchor_frame = (anchor_x - HEADER_W + self.scroll_px) / self.px_per_frame
        self.px_per_frame = px_per_frame
        self.scroll_px = max(0.0, anchor_frame * px_per_frame - (anchor_x - HEADER_W))
        self.view_changed.emit()
        self.update()

    def zoom_in(self) -> None:
        self.set_zoom(self.px_per_frame * 1.5)

    def zoom_out(self) -> None:
        self.set_zoom(self.px_per_frame / 1.5)

    def zoom_to_fit(self) -> None:
        end = max(self._project.end_frame, 1)
        available = max(50, self.width() - HEADER_W - 20)
        self.scroll_px = 0.0
        self.set_zoom(available / end, anchor_x=HEADER_W)
        self.scroll_px = 0.0
        self.view_changed.emit()

    def set_scroll(self, px: float) -> None:
        self.scroll_px = max(0.0, float(px))
        self.view_changed.emit()
        self.update()

    def content_height_px(self) -> int:
        return sum(TRACK_H[t.kind] for t in self._project.tracks)

    def max_scroll_y(self) -> int:
        return max(0, self.content_height_px() - (self.height() - RULER_H))

    def set_scroll_y(self, px: float) -> None:
        self.scroll_y = float(min(max(0.0, px), self.max_scroll_y()))
        self.view_changed.emit()
        self.update()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if self.scroll_y > self.max_scroll_y():
            self.scroll_y = float(self.max_scroll_y())
        self.view_changed.emit()

    def ensure_frame_visible(self, frame: int) -> None:
        """Page the view when the playhead leaves it (as editors do during playback)."""
        x = self.x_for_frame(frame)
        if x < HEADER_W or x > self.width() - 10:
            self.set_scroll(max(0.0, frame * self.px_per_frame - 0.1 * (self.width() - HEADER_W)))

    # -- state from outside -----------------------------------------------------------------------

    def set_playhead(self, frame: int) -> None:
        frame = max(0, int(frame))
        if frame != self.playhead:
            old_x = self.x_for_frame(self.playhead)
            self.playhead = frame
            new_x = self.x_for_frame(frame)
            # Repaint only the two thin strips the playhead left and entered (cheap during playback).
            for x in (old_x, new_x):
                self.update(QRect(int(x) - 8, 0, 17, self.height()))

    def set_in_out(self, in_point: int | None, out_point: int | None) -> None:
        self.in_point, self.out_point = in_point, out_point
        self.update()

    def set_selection(self, clip_ids: set[str] | list[str]) -> None:
        new = {c for c in clip_ids if self._project.has_clip(c)}
        if new != self.selected:
            self.selected = new
            self.selection_changed.emit()
            self.update()

    def select_all(self) -> None:
        self.set_selection({c.clip_id for c in self._project.clips()})

    # -- snapping ---------------------------------------------------------------------------------

    def snap_targets(self, exclude: set[str] | frozenset[str] = frozenset()) -> list[int]:
        """Clip edges, playhead and markers (``core.snapping``), plus the in/out points."""
        targets = snap_targets(self._project, self.playhead, exclude)
        extra = [f for f in (self.in_point, self.out_point) if f is not None]
        return sorted(set(targets).union(extra)) if extra else targets

    def snap(
        self, frames: list[int], exclude: set[str] | frozenset[str] = frozenset()
    ) -> tuple[int, int | None]:
        """Offset to add to ``frames`` so the nearest of them lands on a snap target within SNAP_PX.

        Returns (offset, target frame or None).
        """
        if not self.snapping:
            return 0, None
        tolerance = SNAP_PX / self.px_per_frame
        best: tuple[float, int, int] | None = None
        for target in self.snap_targets(exclude):
            for f in frames:
                distance = abs(target - f)
                if distance <= tolerance and (best is None or distance < best[0]):
                    best = (distance, target - f, target)
        if best is None:
            return 0, None
        return best[1], best[2]

    # -- mouse ------------------------------------------------------------------------------------

    def _hit_edge(self, clip: Clip, pos: QPointF) -> str | None:
        rect = self.clip_rect(clip)
        grab = min(EDGE_GRAB_PX, rect.width() / 3)
        if abs(pos.x() - rect.left()) <= grab:
            return "trim_left"
        if abs(pos.x() - rect.right()) <= grab:
            return "trim_right"
        return None

    def _is_waveform_body(self, clip: Clip, pos: QPointF) -> bool:
        track = self._project.track(clip.track_id)
        return track.kind is TrackKind.AUDIO and pos.y() > self.clip_rect(clip).top() + CLIP_TITLE_H

    def mousePressEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        if event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        frame = self.frame_at_x(pos.x())
        if pos.y() < RULER_H and pos.x() >= HEADER_W:
            self._drag = _Drag("scrub", pos, frame, started=True)
            self._scrub_to(frame)
            return
        if pos.x() < HEADER_W:
            self._header_click(pos)
            return
        clip = self.clip_at(pos)
        modifiers = event.modifiers()
        toggle = bool(modifiers & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier))
        if clip is None:
            if not toggle:
                self.set_selection(set())
            self._drag = _Drag("marquee", pos, frame, extra={"base": set(self.selected)})
            return
        track = self._project.track(clip.track_id)
        edge = self._hit_edge(clip, pos)
        if edge and not toggle:
            self.set_selection({clip.clip_id})
            self._drag = _Drag(
                edge,
                pos,
                frame,
                clip_id=clip.clip_id,
                trim_frame=clip.start if edge == "trim_left" else clip.end,
            )
            if track.locked:
                self._drag = None
                self.message.emit(f"Track {track.name} is locked: unlock it to trim")
            return
        if (
            self._is_waveform_body(clip, pos)
            and not (modifiers & Qt.KeyboardModifier.AltModifier)
            and not toggle
        ):
            self.set_selection({clip.clip_id})
            self._drag = _Drag("region", pos, frame, clip_id=clip.clip_id)
            return
        if toggle:
            sel = set(self.selected)
            sel.symmetric_difference_update({clip.clip_id})
            self.set_selection(sel)
        elif clip.clip_id not in self.selected:
            self.set_selection({clip.clip_id})
        if clip.clip_id in self.selected:
            self._drag = _Drag("move", pos, frame, clip_id=clip.clip_id)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        drag = self._drag
        if drag is None:
            self._update_cursor(pos)
            return
        if not drag.started:
            if (pos - drag.press_pos).manhattanLength() < DRAG_THRESHOLD_PX:
                return
            drag.started = True
        frame = self.frame_at_x(pos.x())
        if drag.mode == "scrub":
            self._scrub_to(frame)
            return
        if drag.mode == "move":
            self._update_move(drag, pos)
        elif drag.mode in ("trim_left", "trim_right"):
            self._update_trim(drag, frame)
        elif drag.mode == "marquee":
            drag.marquee = QRectF(drag.press_pos, pos).normalized()
            self._update_marquee(drag)
        elif drag.mode == "region":
            clip = self._project.clip(drag.clip_id)
            a, b = sorted((drag.press_frame, frame))
            a, b = max(a, clip.start), min(max(b, a + 1), clip.end)
            drag.region = (a, b)
            self.audio_region = (clip.clip_id, a, b)
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        drag, self._drag = self._drag, None
        if drag is None or event.button() != Qt.MouseButton.LeftButton:
            return
        try:
            if not drag.started:
                if drag.mode == "region":
                    self.audio_region = None
                return
            if drag.mode == "move":
                moves = [
                    (cid, tid, start)
                    for cid, tid, start in self._ghost_moves(drag)
                    if (tid, start) != (self._project.clip(cid).track_id, self._project.clip(cid).start)
                ]
                if moves:
                    self._call_edit(self._editing.move_clips, moves)
            elif drag.mode in ("trim_left", "trim_right") and drag.clip_id:
                clip = self._project.clip(drag.clip_id)
                current = clip.start if drag.mode == "trim_left" else clip.end
                if drag.trim_frame != current:
                    self._call_edit(
                        self._editing.trim_clip,
                        drag.clip_id,
                        "left" if drag.mode == "trim_left" else "right",
                        drag.trim_frame,
                    )
            elif drag.mode == "region" and drag.region is not None and drag.clip_id:
                self.audio_region_selected.emit(drag.clip_id, drag.region[0], drag.region[1])
        finally:
            self.update()

    def _call_edit(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # an edit refused: the project is unchanged; say why
            self.message.emit(str(exc))
            return None

    def marker_at(self, pos: QPointF) -> Any:
        if pos.y() >= RULER_H or pos.x() < HEADER_W:
            return None
        for marker in self._project.markers:
            if abs(self.x_for_frame(marker.frame) - pos.x()) <= 5:
                return marker
        return None

    def _update_cursor(self, pos: QPointF) -> None:
        marker = self.marker_at(pos)
        tip = f"{marker.name} — {format_timecode(marker.frame, self.fps())}" if marker is not None else ""
        if tip != self.toolTip():
            self.setToolTip(tip)
        shape = Qt.CursorShape.ArrowCursor
        if pos.x() >= HEADER_W and pos.y() >= RULER_H:
            clip = self.clip_at(pos)
            if clip is not None:
                if self._hit_edge(clip, pos):
                    shape = Qt.CursorShape.SizeHorCursor
                elif self._is_waveform_body(clip, pos):
                    shape = Qt.CursorShape.IBeamCursor
                else:
                    shape = Qt.CursorShape.OpenHandCursor
        self.setCursor(QCursor(shape))

    def _scrub_to(self, frame: int) -> None:
        self.set_playhead(frame)
        self.playhead_scrubbed.emit(self.playhead)
        self.update(QRect(0, 0, HEADER_W, RULER_H))

    def _movable_tracks(self, kind: TrackKind) -> list[Track]:
        return [t for t in self._project.tracks if t.kind is kind]

    def _update_move(self, drag: _Drag, pos: QPointF) -> None:
        anchor = self._project.clip(drag.clip_id)
        raw_delta = round((pos.x() - drag.press_pos.x()) / self.px_per_frame)
        selected = [self._project.clip(c) for c in self.selected if self._project.has_clip(c)]
        min_start = min(c.start for c in selected)
        raw_delta = max(raw_delta, -min_start)
        edges = []
        for c in selected:
            edges += [c.start + raw_delta, c.end + raw_delta]
        offset, target = self.snap(edges, exclude=set(self.selected))
        drag.delta_frames = max(raw_delta + offset, -min_start)
        drag.snap_frame = target if raw_delta + offset >= -min_start else None
        # Track change: by rows of the same kind as the anchor clip's track.
        anchor_track = self._project.track(anchor.track_id)
        over = self.track_at_y(pos.y())
        same_kind = self._movable_tracks(anchor_track.kind)
        if over is not None and over.kind is anchor_track.kind:
            drag.delta_tracks = same_kind.index(over) - same_kind.index(anchor_track)
        elif over is None or over.kind is not anchor_track.kind:
            drag.delta_tracks = drag.delta_tracks  # keep the last valid row
        self.setCursor(QCursor(Qt.CursorShape.ClosedHandCursor))

    def _ghost_moves(self, drag: _Drag | None = None) -> list[tuple[str, str, int]]:
        drag = drag or self._drag
        if drag is None:
            return []
        out = []
        for clip_id in sorted(self.selected):
            if not self._project.has_clip(clip_id):
                continue
            clip = self._project.clip(clip_id)
            track = self._project.track(clip.track_id)
            same_kind = self._movable_tracks(track.kind)
            index = same_kind.index(track) + drag.delta_tracks
            index = min(max(index, 0), len(same_kind) - 1)
            out.append((clip_id, same_kind[index].track_id, clip.start + drag.delta_frames))
        return out

    def _update_trim(self, drag: _Drag, frame: int) -> None:
        clip = self._project.clip(drag.clip_id)
        asset = self._project.asset(clip.asset_id) if self._project.has_asset(clip.asset_id) else None
        track = self._project.track(clip.track_id)
        offset, target = self.snap([frame], exclude={clip.clip_id})
        frame += offset
        drag.snap_frame = target
        # Neighbours and media bounds limit the trim (the edit validates again).
        others = [c for c in track.clips if c.clip_id != clip.clip_id]
        if drag.mode == "trim_left":
            prev_end = max((c.end for c in others if c.end <= clip.start), default=0)
            lowest = max(prev_end, clip.start - clip.in_point)  # the media has no frames before 0
            frame = min(max(frame, lowest), clip.end - 1)
        else:
            next_start = min((c.start for c in others if c.start >= clip.end), default=10**9)
            highest = next_start
            if asset is not None and not asset.is_unlimited and asset.duration_frames is not None:
                highest = min(highest, clip.start + asset.duration_frames - clip.in_point)
            frame = max(min(frame, highest), clip.start + 1)
        if frame != drag.snap_frame:
            drag.snap_frame = None if target is None or frame != target else target
        drag.trim_frame = frame

    def _update_marquee(self, drag: _Drag) -> None:
        rect = drag.marquee
        chosen = set(drag.extra.get("base", set()))
        for track, top, h in self.track_rows():
            if top + h < rect.top() or top > rect.bottom():
                continue
            f0 = self._frame_at_x_floor(rect.left())
            f1 = self._frame_at_x_floor(rect.right()) + 1
            for clip in track.clips_in(f0, f1):
                chosen.add(clip.clip_id)
        self.set_selection(chosen)

    def _header_click(self, pos: QPointF) -> None:
        for track, top, h in self.track_rows():
            if not top <= pos.y() < top + h:
                continue
            buttons = self.header_buttons(track, top, h)
            if buttons["lock"].contains(pos):
                self._call_edit(self._editing.set_track_locked, track.track_id, not track.locked)
            elif buttons["mute"].contains(pos):
                self._call_edit(self._editing.set_track_muted, track.track_id, not track.muted)
            return

    def contextMenuEvent(self, event: Any) -> None:
        pos = QPointF(event.pos())
        clip = self.clip_at(pos)
        menu = QMenu(self)
        if clip is not None:
            if clip.clip_id not in self.selected:
                self.set_selection({clip.clip_id})
            ids = sorted(self.selected)
            frame = self.frame_at_x(pos.x())
            menu.addAction(
                theme.icon("split"), "Split Here", lambda: self._call_edit(self._editing.split_at, frame, ids)
            )
            menu.addAction("Lift", lambda: self._call_edit(self._editing.lift, ids))
            menu.addAction("Ripple Delete", lambda: self._call_edit(self._editing.ripple_delete, ids))
            if self._project.track(clip.track_id).kind is TrackKind.AUDIO:
                level = menu.addMenu("Level")
                for db in (6.0, 3.0, 0.0, -3.0, -6.0, -12.0):
                    level.addAction(
                        f"{db:+.0f} dB",
                        lambda d=db: [self._call_edit(self._editing.set_clip_gain, c, d, False) for c in ids],
                    )
            menu.addSeparator()
            menu.addAction("Move Playhead to Clip Start", lambda: self._scrub_to(clip.start))
        else:
            frame = self.frame_at_x(pos.x())
            menu.addAction("Move Playhead Here", lambda: self._scrub_to(frame))
            menu.addAction(
                theme.icon("marker"),
                "Add Marker Here",
                lambda: self._call_edit(self._editing.add_marker, frame),
            )
            marker = self.marker_at(pos)
            if marker is not None:
                menu.addAction(
                    "Remove Marker", lambda: self._call_edit(self._editing.remove_marker_near, marker.frame)
                )
        menu.exec(event.globalPos())

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        clip = self.clip_at(event.position())
        if clip is not None:
            self._scrub_to(clip.start)

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta()
        steps = (delta.y() or delta.x()) / 120.0
        modifiers = event.modifiers()
        if modifiers & Qt.KeyboardModifier.ControlModifier:
            self.set_zoom(self.px_per_frame * (1.25**steps), anchor_x=event.position().x())
        elif modifiers & Qt.KeyboardModifier.ShiftModifier:
            self.set_scroll_y(self.scroll_y - steps * 40)
        else:
            self.set_scroll(self.scroll_px - steps * 80)
        event.accept()

    # -- drag and drop from the bin and the file manager ---------------------------------------------

    def _drop_assets(self, mime: QMimeData) -> list[Any]:
        if mime.hasFormat(ASSET_MIME):
            ids = bytes(mime.data(ASSET_MIME).data()).decode().split()
            return [self._project.asset(i) for i in ids if self._project.has_asset(i)]
        return []

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasFormat(ASSET_MIME) or event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        pos = event.position()
        assets = self._drop_assets(event.mimeData())
        track = self.track_at_y(pos.y())
        if assets and track is not None:
            asset = assets[0]
            length = self._default_length(asset)
            start = self.frame_at_x(pos.x())
            offset, _ = self.snap([start, start + length])
            start = max(0, start + offset)
            target = self._target_track(track, asset)
            self._drop_preview = (target.track_id, start, length) if target else None
        else:
            self._drop_preview = None
        event.acceptProposedAction()
        self.update()

    def dragLeaveEvent(self, event: Any) -> None:
        self._drop_preview = None
        self.update()

    def dropEvent(self, event: QDropEvent) -> None:
        pos = event.position()
        preview, self._drop_preview = self._drop_preview, None
        mime = event.mimeData()
        track = self.track_at_y(pos.y())
        start = self.frame_at_x(pos.x())
        if preview is not None:
            start = preview[1]
        event.acceptProposedAction()
        if mime.hasFormat(ASSET_MIME):
            assets = self._drop_assets(mime)
            self._place_assets(assets, track, start)
        elif mime.hasUrls():
            paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            self._call_edit(self._editing.import_and_place, paths, track.track_id if track else None, start)
        self.update()

    def _default_length(self, asset: Any) -> int:
        if asset.duration_frames is None:
            return 5 * self.fps()
        return max(1, int(asset.duration_frames))

    def _target_track(self, track: Track, asset: Any) -> Track | None:
        if track_accepts(track.kind, asset) and not (
            track.kind is TrackKind.AUDIO and asset.kind is AssetKind.VIDEO
        ):
            return track
        wanted = TrackKind.AUDIO if asset.kind is AssetKind.AUDIO else TrackKind.VIDEO
        for candidate in self._project.tracks:
            if candidate.kind is wanted and not candidate.locked:
                return candidate
        return None

    def _place_assets(self, assets: list[Any], track: Track | None, start: int) -> None:
        for asset in assets:
            target = self._target_track(track, asset) if track is not None else None
            if target is None:
                self.message.emit(
                    f"No {('audio' if asset.kind is AssetKind.AUDIO else 'video')} track can take {asset.name}"
                )
                continue
            clip_id = self._call_edit(
                self._editing.add_clip, asset.asset_id, target.track_id, start, self._default_length(asset)
            )
            if clip_id:
                start += self._project.clip(clip_id).duration
                self.set_selection({clip_id})

    # -- keys (the few that are local to the timeline; global ones are window actions) -------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            if self._drag is not None:
                self._drag = None
                self.update()
            else:
                self.set_selection(set())
                self.audio_region = None
                self.update()
            return
        super().keyPressEvent(event)


class TimelinePanel(QWidget):
    """The timeline canvas with its small toolbar (snapping, zoom) and a horizontal scroll bar."""

    def __init__(self, view: QtTimelineView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        bar = QWidget(self)
        bar.setObjectName("timelineBar")
        row = QHBoxLayout(bar)
        row.setContentsMargins(6, 2, 6, 2)
        title = QLabel("Timeline")
        title.setObjectName("panelTitle")
        row.addWidget(title)
        row.addStretch(1)
        self.snap_button = QToolButton(bar)
        self.snap_button.setIcon(theme.icon("snap"))
        self.snap_button.setCheckable(True)
        self.snap_button.setChecked(view.snapping)
        self.snap_button.setToolTip("Snapping (N): clip edges, playhead, markers")
        self.snap_button.toggled.connect(self._on_snap_toggled)
        row.addWidget(self.snap_button)
        zoom_out = QToolButton(bar)
        zoom_out.setIcon(theme.icon("zoom-out"))
        zoom_out.setToolTip("Zoom out (-)")
        zoom_out.clicked.connect(view.zoom_out)
        row.addWidget(zoom_out)
        self.zoom_slider = QSlider(Qt.Orientation.Horizontal, bar)
        self.zoom_slider.setRange(0, 1000)
        self.zoom_slider.setFixedWidth(140)
        self.zoom_slider.setToolTip("Zoom")
        self.zoom_slider.valueChanged.connect(self._on_zoom_slider_moved)
        row.addWidget(self.zoom_slider)
        zoom_in = QToolButton(bar)
        zoom_in.setIcon(theme.icon("zoom-in"))
        zoom_in.setToolTip("Zoom in (+)")
        zoom_in.clicked.connect(view.zoom_in)
        row.addWidget(zoom_in)
        self.scrollbar = QScrollBar(Qt.Orientation.Horizontal, self)
        self.scrollbar.valueChanged.connect(self._on_scrollbar_moved)
        self.vscrollbar = QScrollBar(Qt.Orientation.Vertical, self)
        self.vscrollbar.valueChanged.connect(self._on_vscrollbar_moved)
        middle = QHBoxLayout()
        middle.setContentsMargins(0, 0, 0, 0)
        middle.setSpacing(0)
        middle.addWidget(view, 1)
        middle.addWidget(self.vscrollbar)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(bar)
        layout.addLayout(middle, 1)
        layout.addWidget(self.scrollbar)
        view.view_changed.connect(self._sync_from_view)
        self._syncing = False
        self._sync_from_view()

    def _on_snap_toggled(self, on: bool) -> None:
        self.view.snapping = on

    @staticmethod
    def _zoom_to_slider(ppf: float) -> int:
        span = math.log(MAX_PX_PER_FRAME / MIN_PX_PER_FRAME)
        return round(1000 * math.log(ppf / MIN_PX_PER_FRAME) / span)

    @staticmethod
    def _slider_to_zoom(value: int) -> float:
        span = math.log(MAX_PX_PER_FRAME / MIN_PX_PER_FRAME)
        return MIN_PX_PER_FRAME * math.exp(span * value / 1000)

    def _on_zoom_slider_moved(self, value: int) -> None:
        if not self._syncing:
            self.view.set_zoom(self._slider_to_zoom(value))

    def _on_scrollbar_moved(self, value: int) -> None:
        if not self._syncing:
            self.view.set_scroll(value)

    def _on_vscrollbar_moved(self, value: int) -> None:
        if not self._syncing:
            self.view.set_scroll_y(value)

    def _sync_from_view(self) -> None:
        self._syncing = True
        try:
            view = self.view
            self.zoom_slider.setValue(self._zoom_to_slider(view.px_per_frame))
            page = max(1, view.width() - HEADER_W)
            self.scrollbar.setPageStep(page)
            self.scrollbar.setSingleStep(40)
            self.scrollbar.setRange(0, int(max(0.0, view.content_width_px() - page, view.scroll_px)))
            self.scrollbar.setValue(int(view.scroll_px))
            vmax = view.max_scroll_y()
            self.vscrollbar.setVisible(vmax > 0)
            self.vscrollbar.setPageStep(max(1, view.height() - RULER_H))
            self.vscrollbar.setRange(0, vmax)
            self.vscrollbar.setValue(int(view.scroll_y))
        finally:
            self._syncing = False

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._sync_from_view()
