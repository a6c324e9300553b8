"""Thumbnails, waveform peaks and media probing for the editor, computed in worker threads.

Owns :class:`MediaCache` (what the bin and the timeline paint from) and :func:`asset_from_info` (turns a
``core.media.probe.MediaInfo`` into a bin :class:`core.project.Asset`, converting lengths to project frames).

The GUI thread only reads what is already cached: a paint that needs a thumbnail that is not there yet
draws the nearest one it has and asks for the exact one; requests are batched and handed to the pool,
and :attr:`MediaCache.updated` fires (coalesced) when results land. Worker functions are module-level
and get plain data only (paths, numbers); they return ``QImage``/numpy, never touch widgets.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from app.workers import WorkerPool
from core.project import Asset, AssetKind, new_id

THUMB_HEIGHT = 72
POSTER_SIZE = (160, 90)
FIRST_PASS_THUMBS = 24
MAX_EXACT_PER_BATCH = 24


def asset_from_info(info: Any, project_fps: int, asset_id: str | None = None) -> Asset:
    """A bin asset for a probed file; video/audio lengths become project frames (at least 1)."""
    kind = AssetKind(info.kind)
    duration: int | None
    if kind is AssetKind.IMAGE:
        duration = None
    else:
        duration = max(
            1,
            math.floor(
                Fraction(info.duration).limit_denominator(1_000_000) * project_fps + Fraction(1, 1000)
            ),
        )
        if kind is AssetKind.VIDEO and info.fps:
            # Prefer the exact frame count: frames * project_fps / file_fps.
            exact = Fraction(info.frame_count) * project_fps / Fraction(info.fps)
            duration = max(1, math.floor(exact + Fraction(1, 1000)))
    path = Path(info.path)
    return Asset(
        asset_id=asset_id or new_id(),
        kind=kind,
        path=str(path.resolve()),
        name=path.name,
        duration_frames=duration,
        width=int(info.width),
        height=int(info.height),
        fps=float(info.fps) if info.fps else 0.0,
        has_audio=bool(info.has_audio),
        sample_rate=int(info.sample_rate),
        channels=int(info.channels),
    )


def probe_file(path: str) -> Any:
    """Worker function: probe one file (raises a ``core.media.errors.MediaError`` with a user message)."""
    from core.media.probe import probe

    return probe(path)


def _rgb_to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class _Readers:
    """A few open ``VideoReader`` objects shared by worker threads (each reader locks itself)."""

    def __init__(self, limit: int = 6) -> None:
        self._lock = threading.Lock()
        self._readers: OrderedDict[str, Any] = OrderedDict()
        self._limit = limit

    def get(self, path: str) -> Any:
        with self._lock:
            reader = self._readers.get(path)
            if reader is not None:
                self._readers.move_to_end(path)
                return reader
        from core.media.decode import VideoReader

        reader = VideoReader(path, cache_bytes=16 * 1024 * 1024)
        with self._lock:
            existing = self._readers.get(path)
            if existing is not None:
                reader.close()
                return existing
            self._readers[path] = reader
            while len(self._readers) > self._limit:
                _, old = self._readers.popitem(last=False)
                old.close()
        return reader

    def close(self) -> None:
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()


def make_thumbnails(
    readers: _Readers,
    path: str,
    kind: str,
    project_fps: int,
    frames: list[int],
    height: int,
    cancel: threading.Event | None = None,
) -> dict[int, QImage]:
    """Worker function: thumbnails ``height`` pixels high for project frames ``frames`` of a file."""
    if kind == AssetKind.IMAGE.value:
        from core.media.images import read_image

        rgb = read_image(path, max_size=(4 * height, height))
        image = _rgb_to_qimage(rgb)
        return {0: image}
    from core.media.thumbnails import filmstrip

    reader = readers.get(path)
    indices = [min(reader.frame_count - 1, reader.index_at_time(Fraction(f, project_fps))) for f in frames]
    if cancel is not None and cancel.is_set():
        return {}
    pictures = filmstrip(reader, indices, height)
    return {f: _rgb_to_qimage(rgb) for f, rgb in zip(frames, pictures, strict=True)}


def compute_peaks(path: str, cache_dir: str | None) -> Any:
    """Worker function: the waveform peak pyramid of a file (from core/media, cached beside the project)."""
    from core.media.waveform import load_or_build_peaks

    return load_or_build_peaks(path, cache_dir)


def make_poster(path: str, cache_dir: str | None) -> QImage:
    """Worker function: the bin picture of a file (a frame, the image, or a drawn waveform)."""
    from core.media.thumbnails import thumbnail

    return _rgb_to_qimage(thumbnail(path, POSTER_SIZE, cache_dir=cache_dir))


class _AssetThumbs:
    def __init__(self) -> None:
        self.frames: list[int] = []  # sorted
        self.images: dict[int, QImage] = {}
        self.failed = False

    def add(self, images: dict[int, QImage]) -> None:
        for frame, image in images.items():
            if frame not in self.images:
                bisect.insort(self.frames, frame)
            self.images[frame] = image

    def nearest(self, frame: int) -> tuple[int, QImage] | None:
        if not self.frames:
            return None
        i = bisect.bisect_left(self.frames, frame)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self.frames):
                f = self.frames[j]
                if best is None or abs(f - frame) < abs(best - frame):
                    best = f
        return best, self.images[best]


class MediaCache(QObject):
    """Thumbnails and waveform peaks per asset, filled in the background. Main thread only.

    Signals:
        updated(): new thumbnails or peaks are available (coalesced; repaint what shows them).
        failed(str): a file could not be read (message for the status bar).
    """

    updated = Signal()
    failed = Signal(str)
    poster_ready = Signal(str)

    def __init__(
        self, pool: WorkerPool, fps: int = 24, cache_dir: str | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._pool = pool
        self.fps = fps
        self.cache_dir = cache_dir
        self._readers = _Readers()
        self._thumbs: dict[str, _AssetThumbs] = {}
        self._peaks: dict[str, Any] = {}
        self._peaks_requested: set[str] = set()
        self._posters: dict[str, QImage | None] = {}
        self._wanted: dict[str, tuple[Asset, set[int]]] = {}
        self._in_flight: dict[str, set[int]] = {}
        self._closed = False
        self._emit_timer = QTimer(self, singleShot=True, interval=30)
        self._emit_timer.timeout.connect(self.updated)
        self._flush_timer = QTimer(self, singleShot=True, interval=40)
        self._flush_timer.timeout.connect(self._flush_wanted)

    def close(self) -> None:
        """Stop asking for work and drop cached readers (the pool itself is shut down by its owner)."""
        self._closed = True
        self._emit_timer.stop()
        self._flush_timer.stop()
        self._wanted.clear()

    def release_readers(self) -> None:
        self._readers.close()

    def _notify(self) -> None:
        if not self._closed and not self._emit_timer.isActive():
            self._emit_timer.start()

    def forget(self, asset_id: str) -> None:
        """Drop what is cached for an asset (after a relink)."""
        self._thumbs.pop(asset_id, None)
        self._posters.pop(asset_id, None)
        self._peaks.pop(asset_id, None)
        self._peaks_requested.discard(asset_id)
        self._in_flight.pop(asset_id, None)

    # -- requests ---------------------------------------------------------------------------------

    def request_asset(self, asset: Asset) -> None:
        """Start the first pass for an asset: a strip of thumbnails for pictures, peaks for sound files.

        A video's own peaks are computed only when something asks to draw them (:meth:`peaks`).
        """
        if self._closed or asset.missing:
            return
        if asset.kind in (AssetKind.VIDEO, AssetKind.IMAGE) and asset.asset_id not in self._thumbs:
            self._thumbs[asset.asset_id] = _AssetThumbs()
            if asset.kind is AssetKind.IMAGE:
                frames = [0]
            else:
                n = max(1, asset.duration_frames or 1)
                count = min(FIRST_PASS_THUMBS, n)
                frames = sorted({int(i * n / count) for i in range(count)})
            self._submit_thumbs(asset, frames)
        if asset.kind is AssetKind.AUDIO:
            self._request_peaks(asset)

    def _request_peaks(self, asset: Asset) -> None:
        if self._closed or asset.missing or not (asset.kind is AssetKind.AUDIO or asset.has_audio):
            return
        if asset.asset_id not in self._peaks_requested:
            self._peaks_requested.add(asset.asset_id)
            self._pool.submit(
                compute_peaks,
                asset.path,
                self.cache_dir,
                on_done=lambda peaks, a=asset.asset_id: self._on_peaks_done(a, peaks),
                on_error=lambda exc, a=asset: self._on_failed(a, exc),
            )

    def _submit_thumbs(self, asset: Asset, frames: list[int]) -> None:
        self._in_flight.setdefault(asset.asset_id, set()).update(frames)
        self._pool.submit(
            make_thumbnails,
            self._readers,
            asset.path,
            asset.kind.value,
            self.fps,
            frames,
            THUMB_HEIGHT,
            on_done=lambda images, a=asset.asset_id, f=frames: self._on_thumbs_done(a, f, images),
            on_error=lambda exc, a=asset: self._on_failed(a, exc),
        )

    def _on_thumbs_done(self, asset_id: str, frames: list[int], images: dict[int, QImage]) -> None:
        flight = self._in_flight.get(asset_id)
        if flight is not None:
            flight.difference_update(frames)
        thumbs = self._thumbs.get(asset_id)
        if thumbs is not None:
            thumbs.add(images)
            self._notify()

    def _on_peaks_done(self, asset_id: str, peaks: Any) -> None:
        if asset_id in self._peaks_requested:
            self._peaks[asset_id] = peaks
            self._notify()

    def _on_failed(self, asset: Asset, exc: BaseException) -> None:
        thumbs = self._thumbs.get(asset.asset_id)
        if thumbs is not None:
            thumbs.failed = True
        self._in_flight.pop(asset.asset_id, None)
        if not self._closed:
            self.failed.emit(f"Cannot read {asset.name}: {exc}")

    def _flush_wanted(self) -> None:
        wanted, self._wanted = self._wanted, {}
        for asset, frames in wanted.values():
            frames = sorted(frames)
            if len(frames) > MAX_EXACT_PER_BATCH:
                step = len(frames) / MAX_EXACT_PER_BATCH
                frames = [frames[int(i * step)] for i in range(MAX_EXACT_PER_BATCH)]
            self._submit_thumbs(asset, frames)

    # -- reads from paint -------------------------------------------------------------------------

    def thumbnail(self, asset: Asset, frame: int, tolerance: int | None = None) -> QImage | None:
        """The thumbnail nearest to project frame ``frame``; asks for a closer one when it is too far.

        ``tolerance`` (frames) is how far off a thumbnail may be before a closer one is requested
        (default: a quarter second).
        """
        thumbs = self._thumbs.get(asset.asset_id)
        if thumbs is None:
            self.request_asset(asset)
            return None
        if asset.kind is AssetKind.IMAGE:
            return thumbs.images.get(0)
        found = thumbs.nearest(frame)
        tolerance = max(0, self.fps // 4) if tolerance is None else tolerance
        too_far = found is None or abs(found[0] - frame) > tolerance
        asked = frame in self._in_flight.get(asset.asset_id, set())
        if too_far and not asked and not thumbs.failed and not self._closed:
            entry = self._wanted.setdefault(asset.asset_id, (asset, set()))
            entry[1].add(int(frame))
            if not self._flush_timer.isActive():
                self._flush_timer.start()
        return found[1] if found else None

    def poster(self, asset: Asset) -> QImage | None:
        """The bin picture of an asset (None until the worker made it, or when it cannot be read)."""
        if asset.asset_id in self._posters:
            return self._posters[asset.asset_id]
        if self._closed or asset.missing:
            return None
        self._posters[asset.asset_id] = None
        self._pool.submit(
            make_poster,
            asset.path,
            self.cache_dir,
            on_done=lambda image, a=asset.asset_id: self._on_poster_done(a, image),
            on_error=lambda exc, a=asset: self._on_failed(a, exc),
        )
        return None

    def _on_poster_done(self, asset_id: str, image: QImage) -> None:
        if asset_id in self._posters:
            self._posters[asset_id] = image
            self.poster_ready.emit(asset_id)
            self._notify()

    def has_peaks(self, asset_id: str) -> bool:
        return asset_id in self._peaks

    def peaks(self, asset: Asset, t0: float, t1: float, columns: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(min, max) per pixel column for seconds ``[t0, t1)`` of the asset's sound, or None (not yet)."""
        pyramid = self._peaks.get(asset.asset_id)
        if pyramid is None:
            self._request_peaks(asset)
            return None
        return pyramid_columns(pyramid, t0, t1, columns)


def pyramid_columns(pyramid: Any, t0: float, t1: float, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (min, max) from a ``core.media.waveform.PeakPyramid`` (it picks the level)."""
    return pyramid.peaks(t0, t1, columns)
