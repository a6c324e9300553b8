"""Painting of the timeline: ruler, track headers, lanes, clips with thumbnail strips and waveforms,
markers, drag ghosts and the playhead.

Owns :class:`TimelinePainter`, a mixin of :class:`app.timeline.QtTimelineView` (split out of it to keep each
file about one job), and the layout constants both share. It only reads the project and the view's state,
and the media cache's already computed thumbnails and peaks; it never changes anything. Main thread only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFontMetrics, QPainter, QPainterPath, QPaintEvent, QPen, QPolygonF

from app import theme
from app.timecode import format_timecode, ruler_step
from core.project import AssetKind, Clip, Track, TrackKind

HEADER_W = 132  # track headers on the left
RULER_H = 30  # timecode ruler on top
TRACK_H = {TrackKind.VIDEO: 64, TrackKind.AUDIO: 56}
CLIP_TITLE_H = 15  # a clip's name bar


class TimelinePainter:
    """The ``paintEvent`` of the timeline view and its helpers (mixed into ``QtTimelineView``).

    Reads the view's state: ``_project``, ``_media``, geometry (``x_for_frame``, ``track_rows``,
    ``clip_rect``), selection, playhead, in/out, the current ``_drag`` and its ``_ghost_moves``.
    """

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setFont(self._font)
        clip_region = event.rect()
        painter.fillRect(clip_region, theme.BACKGROUND)
        first = max(0, self._frame_at_x_floor(max(HEADER_W, clip_region.left())) - 1)
        last = self._frame_at_x_floor(clip_region.right()) + 2
        rows = self.track_rows()
        # Tracks scroll vertically under the fixed ruler.
        painter.save()
        painter.setClipRect(QRectF(0, RULER_H, self.width(), self.height() - RULER_H))
        self._paint_lanes(painter, rows, first, last, clip_region)
        self._paint_markers_lines(painter, rows)
        self._paint_ghosts(painter)
        painter.restore()
        self._paint_ruler(painter, first, last)
        self._paint_headers(painter, rows)
        self._paint_playhead(painter)
        painter.end()

    def _paint_lanes(
        self, p: QPainter, rows: list[tuple[Track, int, int]], first: int, last: int, region: QRect
    ) -> None:
        for index, (track, top, h) in enumerate(rows):
            if top > region.bottom() or top + h < region.top():
                continue
            lane = QRectF(HEADER_W, top, self.width() - HEADER_W, h)
            p.fillRect(lane, QColor("#202228") if index % 2 else QColor("#1b1d22"))
            p.setPen(QPen(theme.BORDER))
            p.drawLine(QPointF(HEADER_W, top + h - 0.5), QPointF(self.width(), top + h - 0.5))
            if self._drop_preview and self._drop_preview[0] == track.track_id:
                _, start, length = self._drop_preview
                x0, x1 = self.x_for_frame(start), self.x_for_frame(start + length)
                p.fillRect(QRectF(x0, top + 2, x1 - x0, h - 4), QColor(255, 255, 255, 40))
                p.setPen(QPen(theme.SELECTION, 1, Qt.PenStyle.DashLine))
                p.drawRect(QRectF(x0, top + 2, x1 - x0, h - 4))
            p.save()
            p.setClipRect(lane)
            for clip in track.clips_in(first, last):
                hidden = (
                    self._drag is not None
                    and self._drag.started
                    and self._drag.mode == "move"
                    and clip.clip_id in self.selected
                )
                self._paint_clip(p, track, clip, dimmed=hidden)
            p.restore()
            if track.locked:
                p.fillRect(lane, QBrush(QColor(0, 0, 0, 70), Qt.BrushStyle.BDiagPattern))

    def _clip_colour(self, clip: Clip) -> QColor:
        if not self._project.has_asset(clip.asset_id):
            return theme.MISSING
        asset = self._project.asset(clip.asset_id)
        if asset.missing:
            return theme.MISSING
        if asset.kind is AssetKind.AUDIO:
            return theme.AUDIO_CLIP
        if asset.kind is AssetKind.IMAGE:
            return theme.IMAGE_CLIP
        return theme.VIDEO_CLIP

    def _paint_clip(self, p: QPainter, track: Track, clip: Clip, dimmed: bool = False) -> None:
        rect = self.clip_rect(clip)
        colour = self._clip_colour(clip)
        selected = clip.clip_id in self.selected
        p.save()
        if dimmed:
            p.setOpacity(0.35)
        path = QPainterPath()
        path.addRoundedRect(rect, 3, 3)
        p.fillPath(path, colour.darker(130))
        body = rect.adjusted(0, CLIP_TITLE_H, 0, 0)
        p.setClipPath(path)
        p.setClipRect(rect.adjusted(1, 1, -1, -1), Qt.ClipOperation.IntersectClip)
        asset = self._project.asset(clip.asset_id) if self._project.has_asset(clip.asset_id) else None
        if asset is not None and not asset.missing:
            if track.kind is TrackKind.VIDEO:
                self._paint_thumbnails(p, clip, body, asset)
            else:
                self._paint_waveform(p, clip, body, asset, colour)
        # Title bar with the name, and a badge on generated clips.
        title = QRectF(rect.left(), rect.top(), rect.width(), CLIP_TITLE_H)
        p.fillRect(title, colour)
        name = asset.name if asset is not None else "(missing asset)"
        if asset is not None and asset.missing:
            name = f"⚠ {name} (offline)"
        # Keep the name readable when the clip starts left of the view (as editors do).
        visible_left = max(rect.left(), float(HEADER_W))
        text_left = visible_left + 4
        if clip.recipe is not None:
            badge = QRectF(visible_left + 3, rect.top() + 2, 28, CLIP_TITLE_H - 4)
            if badge.right() < rect.right() - 2:
                p.setBrush(theme.GENERATED)
                p.setPen(Qt.PenStyle.NoPen)
                p.drawRoundedRect(badge, 3, 3)
                p.setPen(QColor("#1b1030"))
                p.setFont(self._mono)
                p.drawText(badge, Qt.AlignmentFlag.AlignCenter, "GEN")
                p.setFont(self._font)
                text_left = badge.right() + 4
        if clip.gain_db != 0.0 and track.kind is TrackKind.AUDIO:
            name = f"{name}  {clip.gain_db:+.1f} dB"
        if rect.right() - text_left > 12:
            p.setPen(QColor("#f2f4f8"))
            fm = QFontMetrics(self._font)
            text = fm.elidedText(name, Qt.TextElideMode.ElideRight, int(rect.right() - text_left - 3))
            p.drawText(
                QRectF(text_left, rect.top(), rect.right() - text_left, CLIP_TITLE_H),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                text,
            )
        if self.audio_region and self.audio_region[0] == clip.clip_id:
            _, r0, r1 = self.audio_region
            x0, x1 = self.x_for_frame(r0), self.x_for_frame(r1)
            region = QRectF(x0, body.top(), max(1.0, x1 - x0), body.height())
            p.fillRect(region, QColor(255, 210, 77, 70))
            p.setPen(QPen(theme.SELECTION, 1))
            p.drawLine(region.topLeft(), region.bottomLeft())
            p.drawLine(region.topRight(), region.bottomRight())
        p.setClipping(False)
        p.setBrush(Qt.BrushStyle.NoBrush)
        if selected:
            p.setPen(QPen(theme.SELECTION, 2))
            p.drawRoundedRect(rect.adjusted(1, 1, -1, -1), 3, 3)
        else:
            p.setPen(QPen(colour.lighter(140), 1))
            p.drawRoundedRect(rect.adjusted(0.5, 0.5, -0.5, -0.5), 3, 3)
        p.restore()

    def _paint_thumbnails(self, p: QPainter, clip: Clip, body: QRectF, asset: Any) -> None:
        if self._media is None or body.height() < 8:
            return
        thumb_h = int(body.height())
        aspect = (asset.width / asset.height) if asset.width and asset.height else 16 / 9
        thumb_w = max(8, round(thumb_h * aspect))
        visible = body.intersected(QRectF(HEADER_W, 0, self.width() - HEADER_W, self.height()))
        if visible.isEmpty():
            return
        # Tile slots are anchored to the clip's left edge so thumbnails don't swim while scrolling.
        first_slot = max(0, int((visible.left() - body.left()) // thumb_w))
        x = body.left() + first_slot * thumb_w
        while x < visible.right():
            centre = x + thumb_w / 2
            frame_in_clip = (centre - body.left()) / self.px_per_frame
            source_frame = clip.in_point + int(min(max(0.0, frame_in_clip), clip.duration - 1))
            image = self._media.thumbnail(asset, source_frame)
            if image is not None:
                p.drawImage(QPointF(x, body.top()), self._scaled(image, int(thumb_w), int(thumb_h)))
            x += thumb_w

    def _scaled(self, image: Any, width: int, height: int) -> Any:
        """``image`` at the strip's size, scaled once and kept (painting unscaled images is cheap)."""
        key = (image.cacheKey(), width, height)
        scaled = self._scaled_cache.get(key)
        if scaled is None:
            scaled = image.scaled(
                max(1, width),
                max(1, height),
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
            if len(self._scaled_cache) > 2000:
                self._scaled_cache.clear()
            self._scaled_cache[key] = scaled
        return scaled

    def _paint_waveform(self, p: QPainter, clip: Clip, body: QRectF, asset: Any, colour: QColor) -> None:
        if self._media is None or body.height() < 6:
            return
        fps = self.fps()
        visible = body.intersected(QRectF(HEADER_W, 0, self.width() - HEADER_W, self.height()))
        if visible.isEmpty():
            return
        x0, x1 = int(visible.left()), math.ceil(visible.right())
        columns = max(1, x1 - x0)
        # Source time (in project frames) at the left edge of each column, then in seconds.
        f0 = clip.in_point + (x0 - body.left()) / self.px_per_frame
        f1 = clip.in_point + (x1 - body.left()) / self.px_per_frame
        peaks = self._media.peaks(asset, f0 / fps, f1 / fps, columns)
        if peaks is None:
            return
        lows, highs = peaks
        n = min(columns, len(lows))
        if n <= 0:
            return
        gain = clip.gain_linear
        mid = body.center().y()
        half = body.height() / 2 - 1
        # One vertical line per pixel column (min..max), computed with numpy and drawn in one call:
        # sharp at every zoom because the peaks come from the pyramid level that fits the column width.
        top = mid - np.clip(np.asarray(highs[:n], np.float64) * gain, -1.0, 1.0) * half
        bottom = mid - np.clip(np.asarray(lows[:n], np.float64) * gain, -1.0, 1.0) * half
        bottom = np.maximum(bottom, top + 1.0)
        xs = x0 + np.arange(n) + 0.5
        muted = self._project.track(clip.track_id).muted
        p.setPen(QPen(theme.TEXT_DIM if muted else theme.WAVEFORM, 1))
        p.drawLines(
            [QLineF(x, a, x, b) for x, a, b in zip(xs.tolist(), top.tolist(), bottom.tolist(), strict=True)]
        )
        p.setPen(QPen(QColor(255, 255, 255, 40), 1))
        p.drawLine(QPointF(visible.left(), mid), QPointF(visible.right(), mid))

    def _paint_ghosts(self, p: QPainter) -> None:
        drag = self._drag
        if drag is None or not drag.started:
            return
        p.save()
        p.setClipRect(QRectF(HEADER_W, RULER_H, self.width() - HEADER_W, self.height() - RULER_H))
        if drag.mode == "move":
            for clip_id, track_id, start in self._ghost_moves():
                clip = self._project.clip(clip_id)
                rect = self.clip_rect(clip, start, start + clip.duration, track_id)
                p.fillRect(rect, QColor(255, 255, 255, 55))
                p.setPen(QPen(theme.SELECTION, 1.5))
                p.drawRect(rect)
        elif drag.mode in ("trim_left", "trim_right") and drag.clip_id:
            clip = self._project.clip(drag.clip_id)
            if drag.mode == "trim_left":
                rect = self.clip_rect(clip, drag.trim_frame, clip.end)
            else:
                rect = self.clip_rect(clip, clip.start, drag.trim_frame)
            p.setPen(QPen(theme.SELECTION, 2))
            p.setBrush(QColor(255, 210, 77, 40))
            p.drawRect(rect)
            tc = format_timecode(drag.trim_frame, self.fps())
            p.setPen(theme.TEXT)
            p.drawText(
                rect.adjusted(4, CLIP_TITLE_H, 0, 0),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
                tc,
            )
        elif drag.mode == "marquee" and drag.marquee is not None:
            p.setPen(QPen(theme.ACCENT.lighter(150), 1, Qt.PenStyle.DashLine))
            p.setBrush(QColor(58, 110, 165, 50))
            p.drawRect(drag.marquee)
        if drag.snap_frame is not None:
            x = self.x_for_frame(drag.snap_frame)
            p.setPen(QPen(theme.SNAP_LINE, 1))
            p.drawLine(QPointF(x, RULER_H), QPointF(x, self.height()))
        p.restore()

    def _paint_markers_lines(self, p: QPainter, rows: list[tuple[Track, int, int]]) -> None:
        if not self._project.markers:
            return
        bottom = rows[-1][1] + rows[-1][2] if rows else self.height()
        pen = QPen(QColor(232, 181, 58, 110), 1, Qt.PenStyle.DashLine)
        p.setPen(pen)
        for marker in self._project.markers:
            x = self.x_for_frame(marker.frame)
            if HEADER_W <= x <= self.width():
                p.drawLine(QPointF(x, RULER_H), QPointF(x, bottom))

    def _paint_ruler(self, p: QPainter, first: int, last: int) -> None:
        fps = self.fps()
        ruler = QRectF(HEADER_W, 0, self.width() - HEADER_W, RULER_H)
        p.fillRect(ruler, theme.PANEL)
        p.save()
        p.setClipRect(ruler)
        if self.in_point is not None or self.out_point is not None:
            a = self.in_point if self.in_point is not None else 0
            b = self.out_point if self.out_point is not None else max(self._project.end_frame, a + 1)
            p.fillRect(
                QRectF(self.x_for_frame(a), RULER_H - 8, self.x_for_frame(b) - self.x_for_frame(a), 8),
                QColor(58, 110, 165, 160),
            )
        major, minor = ruler_step(self.px_per_frame, fps)
        start = (first // minor) * minor
        p.setFont(self._mono)
        for frame in range(start, last + minor, minor):
            x = self.x_for_frame(frame)
            if frame % major == 0:
                p.setPen(QPen(theme.TEXT_DIM, 1))
                p.drawLine(QPointF(x, RULER_H - 12), QPointF(x, RULER_H))
                label = format_timecode(frame, fps)
                p.setPen(theme.TEXT)
                p.drawText(QPointF(x + 3, 12), label)
            else:
                p.setPen(QPen(QColor("#555a66"), 1))
                p.drawLine(QPointF(x, RULER_H - 5), QPointF(x, RULER_H))
        for marker in self._project.markers:
            x = self.x_for_frame(marker.frame)
            poly = QPolygonF(
                [
                    QPointF(x - 5, RULER_H - 14),
                    QPointF(x + 5, RULER_H - 14),
                    QPointF(x + 5, RULER_H - 7),
                    QPointF(x, RULER_H - 2),
                    QPointF(x - 5, RULER_H - 7),
                ]
            )
            p.setBrush(theme.MARKER)
            p.setPen(Qt.PenStyle.NoPen)
            p.drawPolygon(poly)
        p.restore()
        p.setPen(QPen(theme.BORDER))
        p.drawLine(QPointF(HEADER_W, RULER_H - 0.5), QPointF(self.width(), RULER_H - 0.5))

    def header_buttons(self, track: Track, top: int, h: int) -> dict[str, QRectF]:
        """Hit boxes of a track header's lock and mute toggles."""
        y = top + h - 24
        return {"lock": QRectF(HEADER_W - 50, y, 20, 20), "mute": QRectF(HEADER_W - 26, y, 20, 20)}

    def _paint_headers(self, p: QPainter, rows: list[tuple[Track, int, int]]) -> None:
        p.fillRect(QRectF(0, 0, HEADER_W, self.height()), theme.PANEL)
        p.setPen(theme.TEXT)
        p.setFont(self._mono)
        p.drawText(
            QRectF(6, 0, HEADER_W - 8, RULER_H),
            Qt.AlignmentFlag.AlignVCenter,
            format_timecode(self.playhead, self.fps()),
        )
        p.setFont(self._font)
        p.save()
        p.setClipRect(QRectF(0, RULER_H, HEADER_W, self.height() - RULER_H))
        for track, top, h in rows:
            box = QRectF(0, top, HEADER_W, h)
            p.fillRect(
                box.adjusted(0, 0, 0, -1),
                QColor("#2a2c33") if track.kind is TrackKind.VIDEO else QColor("#272a30"),
            )
            stripe = theme.VIDEO_CLIP if track.kind is TrackKind.VIDEO else theme.AUDIO_CLIP
            p.fillRect(QRectF(0, top, 4, h - 1), stripe)
            p.setPen(theme.TEXT)
            p.drawText(
                QRectF(10, top + 4, HEADER_W - 14, 18),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                track.name or track.kind.value,
            )
            buttons = self.header_buttons(track, top, h)
            lock_icon = theme.icon("lock" if track.locked else "unlock")
            mute_name = "mute" if track.muted else "speaker"  # a muted track is silent (pictures still show)
            for key, ic, active in (
                ("lock", lock_icon, track.locked),
                ("mute", theme.icon(mute_name), track.muted),
            ):
                r = buttons[key]
                if active:
                    p.fillRect(r, QColor("#8a3b3b") if key == "mute" else QColor("#6b5a2a"))
                ic.paint(p, r.adjusted(2, 2, -2, -2).toRect())
            p.setPen(QPen(theme.BORDER))
            p.drawLine(QPointF(0, top + h - 0.5), QPointF(HEADER_W, top + h - 0.5))
        p.restore()
        p.setPen(QPen(theme.BORDER))
        p.drawLine(QPointF(HEADER_W - 0.5, 0), QPointF(HEADER_W - 0.5, self.height()))

    def _paint_playhead(self, p: QPainter) -> None:
        x = self.x_for_frame(self.playhead)
        if x < HEADER_W - 1:
            return
        p.setPen(QPen(theme.PLAYHEAD, 1))
        p.drawLine(QPointF(x, RULER_H - 10), QPointF(x, self.height()))
        head = QPolygonF(
            [
                QPointF(x - 6, RULER_H - 16),
                QPointF(x + 6, RULER_H - 16),
                QPointF(x + 6, RULER_H - 8),
                QPointF(x, RULER_H - 2),
                QPointF(x - 6, RULER_H - 8),
            ]
        )
        p.setBrush(theme.PLAYHEAD)
        p.setPen(Qt.PenStyle.NoPen)
        p.drawPolygon(head)
