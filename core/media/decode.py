"""Frame-accurate video decoding: random access by frame index, a decoded-frame cache, and
sequential iteration.

:class:`VideoReader` scans the video stream's packets once when it opens (no decoding, only
demuxing) and sorts their presentation timestamps: frame *N* is the frame with the *N*-th
smallest pts. ``frame_at(N)`` seeks to the last keyframe at or before that pts and decodes
forward until exactly that pts comes out, so the answer never depends on how the container
rounds times; consecutive requests reuse the running decoder instead of seeking again.
Decoded frames are kept in a least-recently-used cache bounded by bytes.

Long files: reading every packet of an hour of camera footage takes seconds, so when the
container carries a complete index (MP4/MOV) of at least :data:`FAST_INDEX_MIN_FRAMES` frames
the timestamps come from that index instead: it lists decode timestamps, and encoders give
presentation timestamps the same values shifted by the reorder delay, which is checked on the
first packets. Should a frame then fail to appear, the reader falls back to the full scan.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from core.media.errors import CorruptMedia, EmptyMedia, NoVideoStream
from core.media.probe import open_container, video_stream

__all__ = ["DEFAULT_CACHE_BYTES", "FAST_INDEX_MIN_FRAMES", "CacheStats", "FrameCache", "VideoReader"]

#: Default decoded-frame cache: about 90 frames of 1280x720 RGB.
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
#: Streams with at least this many frames take their timestamps from the container index
#: (when it has one); below it the full packet scan costs well under a second.
FAST_INDEX_MIN_FRAMES = 3000
#: Packets read to confirm that the container index predicts presentation timestamps.
_INDEX_CHECK_PACKETS = 64


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int
    limit: int


class FrameCache:
    """A thread-safe LRU bounded by the total size in bytes of what it holds.

    Numpy arrays are stored and returned read-only, so a caller cannot change what another
    caller gets later; ``.copy()`` one to draw on it. Other values need an explicit size.
    """

    def __init__(self, limit_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.limit = max(0, int(limit_bytes))
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, nbytes: int | None = None) -> Any:
        """Store ``value`` and return it; values larger than the whole budget are not stored.

        Args:
            key: any hashable key.
            value: a numpy array (made read-only; its size is ``nbytes``) or any object.
            nbytes: the value's size; required for values that are not arrays.
        """
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
            size = int(value.nbytes) if nbytes is None else int(nbytes)
        elif nbytes is None:
            raise ValueError("nbytes is required for values that are not numpy arrays")
        else:
            size = int(nbytes)
        if size > self.limit:
            return value
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.limit:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._items), self._bytes, self.limit)


class VideoReader:
    """Random and sequential access to the frames of one video file.

    Threading: every method may be called from any thread; random access (:meth:`frame_at`)
    is serialised by an internal lock because the decoder is stateful, so for parallel
    decoding open one reader per thread. :meth:`iter_frames` opens its own decoder and does
    not block or disturb random access.

    Returned frames are ``uint8`` RGB ``(height, width, 3)``, rotated for display, and
    read-only (they may be shared through the cache).

    Args:
        path: a video file.
        size: default output size ``(width, height)``; ``None`` keeps the display size.
        cache_bytes: byte budget of the RGB frame cache (0 disables it).
        decoded_bytes: byte budget for decoded (YUV) frames kept from forward decoding, which
            makes stepping backwards within a group of pictures cheap; default half of
            ``cache_bytes`` (0 disables it).
        threads: decoder threads (0 lets FFmpeg choose).
        index: where frame timestamps come from: "scan" reads every packet, "container" uses
            the container's index when it has one (falling back to a scan), "auto" uses the
            index for streams of at least :data:`FAST_INDEX_MIN_FRAMES` frames.

    Raises:
        FileMissing, EmptyMedia, UnsupportedMedia, CorruptMedia: as for :func:`probe`.
        NoVideoStream: the file has no video (audio-only files, for example).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        size: tuple[int, int] | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        decoded_bytes: int | None = None,
        threads: int = 0,
        index: Literal["auto", "scan", "container"] = "auto",
    ) -> None:
        self.path = Path(path)
        self.size = size
        self.cache = FrameCache(cache_bytes)
        self.decoded = FrameCache(cache_bytes // 2 if decoded_bytes is None else decoded_bytes)
        self._pts_to_index: dict[int, int] = {}
        self._threads = threads
        self._lock = threading.RLock()
        self._live: Iterator[Any] | None = None
        self._live_pts: int | None = None
        self._target: int | None = None
        self._closed = False
        self._reformatter = VideoReformatter()
        self._container: Any = open_container(self.path)
        try:
            if video_stream(self._container) is None:
                raise NoVideoStream(self.path, "the file has no video stream")
            self._stream: Any = self._configure(self._container)
            self.time_base: Fraction = Fraction(self._stream.time_base)
            self.index_source = "scan"
            timestamps = self._timestamps_from_index(index) if index != "scan" else None
            if timestamps is not None:
                self.index_source = "container"
            self._set_timestamps(*(timestamps or self._scan()))
            first = self._decode_index(0)
        except BaseException:
            self._container.close()
            raise
        self.rotation = round(-float(getattr(first, "rotation", 0) or 0)) % 360
        w, h = int(first.width), int(first.height)
        self.width, self.height = (h, w) if self.rotation in (90, 270) else (w, h)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: Fraction = Fraction(rate) if rate else self._estimated_rate()

    # -- properties -------------------------------------------------------------------------

    @property
    def frame_count(self) -> int:
        return len(self._pts)

    def __len__(self) -> int:
        return len(self._pts)

    @property
    def duration(self) -> float:
        """Seconds from the first frame's start to the last frame's end."""
        return float(self._seconds[-1] + 1 / self.fps) if len(self._seconds) else 0.0

    @property
    def keyframes(self) -> list[int]:
        """Frame indices of the keyframes."""
        return [self._pts_to_index[int(k)] for k in self._key_pts]

    def time_of(self, index: int) -> float:
        """Presentation time (seconds from the first frame) of frame ``index``."""
        self._check_index(index)
        return float(self._seconds[index])

    def index_at_time(self, seconds: float | Fraction) -> int:
        """The frame on screen at ``seconds`` from the first frame (clamped to the clip)."""
        # A microsecond of slack keeps k/fps landing on frame k despite float rounding.
        i = int(np.searchsorted(self._seconds, float(seconds) + 1e-6, side="right")) - 1
        return min(max(i, 0), len(self._pts) - 1)

    # -- random access ----------------------------------------------------------------------

    def frame_at(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """Frame ``index`` (0-based, presentation order) as read-only RGB.

        Args:
            index: frame number.
            size: output ``(width, height)``; default the reader's ``size`` or display size.

        Raises:
            IndexError: no such frame.
            CorruptMedia: the frame cannot be decoded.
        """
        if self._closed:
            raise ValueError(f"{self.path.name}: the video reader is closed")
        self._check_index(index)
        out_size = self._out_size(size)
        key = (index, out_size)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        with self._lock:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
            frame = self.decoded.get(index)
            if frame is None:
                frame = self._decode_index(index)
            return self.cache.put(key, self._to_rgb(frame, out_size))

    def frame_at_time(self, seconds: float | Fraction, size: tuple[int, int] | None = None) -> np.ndarray:
        """The frame on screen at ``seconds``; see :meth:`frame_at`."""
        return self.frame_at(self.index_at_time(seconds), size)

    # -- sequential access ------------------------------------------------------------------

    def iter_frames(
        self, start: int = 0, end: int | None = None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        """Frames ``start`` .. ``end - 1`` in order, decoded in one pass (not cached).

        A frame that fails to decode inside a damaged file is replaced by the previous good
        one, so the count is always ``end - start``.

        Raises:
            IndexError: ``start``/``end`` outside the clip.
            CorruptMedia: the first frame cannot be decoded.
        """
        end = len(self._pts) if end is None else end
        if not 0 <= start <= end <= len(self._pts):
            raise IndexError(f"{self.path.name}: frames {start}..{end} outside 0..{len(self._pts)}")
        if start == end:
            return
        out_size = self._out_size(size)
        container = open_container(self.path)
        try:
            stream = self._configure(container)
            container.seek(self._key_pts_before(int(self._pts[start])), stream=stream, backward=True)
            expected = start
            previous: np.ndarray | None = None
            reformatter = VideoReformatter()
            for frame in self._decode(container, stream):
                index = self._pts_to_index.get(self._frame_pts(frame))
                if index is None or index < expected:
                    continue
                rgb = self._to_rgb(frame, out_size, reformatter)
                if index > expected and previous is None:
                    raise CorruptMedia(self.path, f"frame {expected} cannot be decoded")
                while expected < min(index, end):
                    assert previous is not None
                    yield previous
                    expected += 1
                if expected >= end:
                    return
                yield rgb
                previous = rgb
                expected += 1
                if expected >= end:
                    return
            if previous is None:
                raise CorruptMedia(self.path, f"frame {expected} cannot be decoded")
            while expected < end:
                yield previous
                expected += 1
        finally:
            container.close()

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the file; later ``frame_at`` calls raise ``ValueError``. Safe to repeat."""
        with self._lock:
            self._closed = True
            self._live = None
            self._container.close()
            self.cache.clear()
            self.decoded.clear()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _configure(self, container: Any) -> Any:
        stream = video_stream(container)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self._threads
        return stream

    def _scan(self) -> tuple[np.ndarray, np.ndarray]:
        """Presentation timestamps of all frames and of the keyframes, sorted."""
        pts: list[int] = []
        keys: list[int] = []
        self._live = None
        try:
            self._container.seek(0)
            for packet in self._container.demux(self._stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    continue
                pts.append(int(stamp))
                if packet.is_keyframe:
                    keys.append(int(stamp))
        except av.FFmpegError as exc:
            if not pts:
                raise CorruptMedia(self.path, f"cannot read the video stream ({exc})") from exc
            # A truncated tail: keep the frames we could index.
        if not pts:
            raise EmptyMedia(self.path, "the video stream has no frames")
        ordered = np.unique(np.asarray(pts, dtype=np.int64))
        if not keys:
            keys = [int(ordered[0])]
        key_arr = np.unique(np.asarray(keys, dtype=np.int64))
        self._container.seek(0)
        return ordered, key_arr

    def _set_timestamps(self, pts: np.ndarray, key_pts: np.ndarray) -> None:
        self._pts, self._key_pts = pts, key_pts
        self._pts_to_index = {int(p): i for i, p in enumerate(pts)}
        self._seconds = (pts - pts[0]).astype(np.float64) * float(self.time_base)

    def _timestamps_from_index(self, mode: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Frame and keyframe pts predicted from the container index, or ``None`` when there
        is no usable index (or, in "auto" mode, the stream is short enough to scan)."""
        try:
            entries = self._stream.index_entries
            count = len(entries)
        except (AttributeError, av.FFmpegError):
            return None
        if count == 0 or (mode == "auto" and count < FAST_INDEX_MIN_FRAMES):
            return None
        # Only an index of every frame will do (Matroska cues, for one, list keyframes only).
        if int(self._stream.frames or 0) != count:
            return None
        dts = np.fromiter((e.timestamp for e in entries if not e.is_discard), np.int64)
        keys = np.fromiter((e.timestamp for e in entries if e.is_keyframe and not e.is_discard), np.int64)
        if len(dts) == 0 or len(np.unique(dts)) != len(dts):
            return None
        # The reorder delay (pts - dts), the same for every frame, read from the first packets.
        delays: set[int] = set()
        seen: list[int] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                if packet.pts is None or packet.dts is None:
                    return None
                if packet.is_keyframe:
                    delays.add(int(packet.pts) - int(packet.dts))
                seen.append(int(packet.pts))
                if len(seen) >= _INDEX_CHECK_PACKETS:
                    break
        except av.FFmpegError:
            return None
        finally:
            self._container.seek(0)
        if len(delays) != 1:
            return None
        delay = delays.pop()
        pts = dts + delay
        known = set(pts[: 2 * _INDEX_CHECK_PACKETS].tolist())
        if not all(p in known for p in seen):
            return None
        return pts, np.unique(keys + delay) if len(keys) else pts[:1].copy()

    def _key_pts_before(self, pts: int) -> int:
        i = int(np.searchsorted(self._key_pts, pts, side="right")) - 1
        return int(self._key_pts[max(i, 0)])

    def _decode(self, container: Any, stream: Any) -> Iterator[Any]:
        try:
            yield from container.decode(stream)
        except av.FFmpegError as exc:
            raise CorruptMedia(self.path, f"video data cannot be decoded ({exc})") from exc

    @staticmethod
    def _frame_pts(frame: Any) -> int:
        stamp = frame.pts if frame.pts is not None else frame.dts
        return int(stamp) if stamp is not None else -1

    def _decode_index(self, index: int) -> Any:
        """Decode frame ``index`` (lock held): continue the running decoder or seek."""
        target = int(self._pts[index])
        k = int(np.searchsorted(self._key_pts, target, side="right")) - 1
        # Keyframes to start from: the nearest one, then (if the frame did not come out, as
        # with open GOPs or damaged data) the one before it, then the very first.
        starts = list(dict.fromkeys(int(self._key_pts[j]) for j in (max(k, 0), max(k - 1, 0), 0)))
        live_pts = self._live_pts
        reuse = self._live is not None and live_pts is not None and starts[0] <= live_pts < target
        for attempt, key in enumerate(starts):
            # Skip non-reference frames only on a fresh seek: when continuing forward (playback,
            # drag scrubbing) every frame is kept in the decoded cache for stepping back. The
            # retries decode everything.
            self._target = target if attempt == 0 and not reuse else None
            if not (reuse and attempt == 0):
                self._seek(key)
            assert self._live is not None
            for frame in self._live:
                stamp = self._frame_pts(frame)
                self._live_pts = stamp
                if self.decoded.limit:
                    decoded_index = self._pts_to_index.get(stamp)
                    if decoded_index is not None:
                        self.decoded.put(decoded_index, frame, _frame_bytes(frame))
                if stamp == target:
                    return frame
                if stamp > target:
                    break
            self._live = None
            self._live_pts = None
        if self.index_source == "container":
            # The index did not predict this file's timestamps: scan the packets and retry.
            self.index_source = "scan"
            self._set_timestamps(*self._scan())
            self.cache.clear()
            self.decoded.clear()
            return self._decode_index(min(index, len(self._pts) - 1))
        raise CorruptMedia(self.path, f"frame {index} cannot be decoded")

    def _seek(self, key_pts: int) -> None:
        self._container.seek(key_pts, stream=self._stream, backward=True, any_frame=False)
        self._live = self._decode_skipping(self._container, self._stream)
        self._live_pts = None

    def _decode_skipping(self, container: Any, stream: Any) -> Iterator[Any]:
        """Decode packet by packet; while heading for ``self._target`` let the decoder skip
        non-reference frames that are shown before it (nothing depends on them, and at 720p
        this saves a third of the work of a seek)."""
        ctx = stream.codec_context
        # Start from a known state: an abandoned earlier generator may not have reset it yet.
        ctx.skip_frame = "DEFAULT"
        skipping = False
        try:
            for packet in container.demux(stream):
                target = self._target
                stamp = packet.pts
                skip = target is not None and stamp is not None and stamp < target and not packet.is_keyframe
                if skip != skipping:
                    ctx.skip_frame = "NONREF" if skip else "DEFAULT"
                    skipping = skip
                yield from packet.decode()
        except av.FFmpegError as exc:
            raise CorruptMedia(self.path, f"video data cannot be decoded ({exc})") from exc
        finally:
            if skipping:
                ctx.skip_frame = "DEFAULT"

    def _out_size(self, size: tuple[int, int] | None) -> tuple[int, int] | None:
        size = size if size is not None else self.size
        if size is None:
            return None
        width, height = int(size[0]), int(size[1])
        if width <= 0 or height <= 0:
            raise ValueError(f"output size must be positive, got {width}x{height}")
        return width, height

    def _to_rgb(self, frame: Any, out_size: tuple[int, int] | None, reformatter: Any = None) -> np.ndarray:
        # A reformatter kept across frames keeps its swscale context: several times cheaper per
        # frame than ``frame.to_ndarray(format=...)``, which builds a new one for every frame.
        # One per thread of decoding (random access holds the lock; each iter_frames has its own).
        reformatter = reformatter or self._reformatter
        rotation = self.rotation
        if out_size is None:
            rgb = reformatter.reformat(frame, format="rgb24").to_ndarray()
        else:
            w, h = out_size if rotation not in (90, 270) else (out_size[1], out_size[0])
            rgb = reformatter.reformat(frame, format="rgb24", width=w, height=h).to_ndarray()
        if rotation:
            rgb = np.rot90(rgb, k=-(rotation // 90))
        return np.ascontiguousarray(rgb)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self._pts):
            raise IndexError(f"{self.path.name}: frame {index} is outside 0..{len(self._pts) - 1}")

    def _estimated_rate(self) -> Fraction:
        if len(self._seconds) > 1 and self._seconds[-1] > 0:
            return Fraction((len(self._seconds) - 1) / self._seconds[-1]).limit_denominator(1001)
        return Fraction(24)


def _frame_bytes(frame: Any) -> int:
    """Memory held by a decoded frame's planes."""
    return sum(int(plane.buffer_size) for plane in frame.planes)
