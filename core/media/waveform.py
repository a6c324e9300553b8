"""Waveform peak pyramids: min/max envelopes at several zoom levels, built in one numpy pass
and cached on disk beside the project.

Level 0 holds the min and max of every :data:`BASE_BUCKET` samples (all channels together);
each further level folds :data:`FANOUT` buckets of the level below. ``peaks(start, end, n)``
picks the coarsest level that still has at least four buckets per column and reduces it to
exactly ``n`` columns, so drawing cost depends on the widget width, not the file length.

Disk cache: ``<project>.cache/peaks/<key>.npz`` where the key hashes the media file's absolute
path, size and modification time: editing or replacing the file invalidates it.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.media.audio import iter_audio
from core.media.writer import temp_path_for

__all__ = [
    "BASE_BUCKET",
    "FANOUT",
    "PeakPyramid",
    "build_peaks",
    "build_peaks_from_blocks",
    "cache_dir_for_project",
    "load_or_build_peaks",
]

BASE_BUCKET = 64
"""Samples per level-0 bucket (750 columns per second at 48 kHz: deeper than any timeline zoom)."""
FANOUT = 4
"""Buckets of one level folded into one bucket of the next."""
_FORMAT_VERSION = 1
_MIN_BUCKETS_PER_COLUMN = 4


@dataclass(frozen=True)
class PeakPyramid:
    """Min/max envelopes of a sound at several resolutions.

    Attributes:
        rate: sample rate of the analysed audio.
        length: number of samples analysed.
        mins, maxs: one float32 array per level; level ``k`` has buckets of
            ``BASE_BUCKET * FANOUT**k`` samples.
    """

    rate: int
    length: int
    mins: tuple[np.ndarray, ...]
    maxs: tuple[np.ndarray, ...]

    @property
    def duration(self) -> float:
        return self.length / self.rate

    def bucket_size(self, level: int) -> int:
        return BASE_BUCKET * FANOUT**level

    def peaks(self, start_s: float, end_s: float, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
        """Envelope of ``[start_s, end_s)`` as ``n_columns`` (min, max) pairs.

        Columns outside the sound are 0. When a column is narrower than a level-0 bucket the
        bucket's values are repeated.

        Returns:
            ``(mins, maxs)``, float32 arrays of length ``n_columns``.
        """
        if n_columns <= 0 or end_s <= start_s:
            empty = np.zeros(max(n_columns, 0), np.float32)
            return empty, empty.copy()
        per_column = (end_s - start_s) * self.rate / n_columns
        level = 0
        # At least _MIN_BUCKETS_PER_COLUMN buckets per column keeps column edges within a
        # quarter column of the exact sample range.
        while (
            level + 1 < len(self.mins) and self.bucket_size(level + 1) * _MIN_BUCKETS_PER_COLUMN <= per_column
        ):
            level += 1
        size = self.bucket_size(level)
        mins, maxs = self.mins[level], self.maxs[level]
        # Bucket boundaries of each column at this level.
        edges = (start_s * self.rate + np.arange(n_columns + 1) * per_column) / size
        lo = np.floor(edges[:-1]).astype(np.int64)
        hi = np.maximum(np.ceil(edges[1:]).astype(np.int64), lo + 1)
        out_min = np.zeros(n_columns, np.float32)
        out_max = np.zeros(n_columns, np.float32)
        samples_at = start_s * self.rate + np.arange(n_columns + 1) * per_column
        inside = (samples_at[1:] > 0) & (samples_at[:-1] < self.length) & (hi > 0) & (lo < len(mins))
        if not inside.any():
            return out_min, out_max
        lo_c = np.clip(lo, 0, len(mins) - 1)
        hi_c = np.clip(hi, 1, len(mins))
        if per_column <= size:
            # At most a bucket or two per column: take the bucket under each column start.
            out_min[inside] = mins[lo_c[inside]]
            out_max[inside] = maxs[lo_c[inside]]
            return out_min, out_max
        # Several buckets per column: one vectorised reduceat over the columns' bucket runs.
        idx = np.flatnonzero(inside)
        starts = lo_c[idx]
        stops = hi_c[idx]
        out_min[idx] = _reduce_runs(np.minimum, mins, starts, stops)
        out_max[idx] = _reduce_runs(np.maximum, maxs, starts, stops)
        return out_min, out_max

    def save(self, path: Path) -> None:
        """Write the pyramid atomically as .npz."""
        arrays = {f"min{k}": m for k, m in enumerate(self.mins)}
        arrays.update({f"max{k}": m for k, m in enumerate(self.maxs)})
        meta = np.array([_FORMAT_VERSION, self.rate, self.length, len(self.mins)], dtype=np.int64)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = temp_path_for(path)
        try:
            with open(temp, "wb") as handle:
                np.savez(handle, meta=meta, **arrays)
            os.replace(temp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    @classmethod
    def load(cls, path: Path) -> PeakPyramid | None:
        """Read a saved pyramid; ``None`` if missing, damaged or of another format version."""
        try:
            with np.load(path) as data:
                version, rate, length, levels = (int(v) for v in data["meta"])
                if version != _FORMAT_VERSION:
                    return None
                mins = tuple(np.asarray(data[f"min{k}"], np.float32) for k in range(levels))
                maxs = tuple(np.asarray(data[f"max{k}"], np.float32) for k in range(levels))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
            return None
        return cls(rate=rate, length=length, mins=mins, maxs=maxs)


def _reduce_runs(op: np.ufunc, values: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Reduce each column's buckets: column ``i`` takes ``[starts[i], starts[i+1])`` (the last one
    ``[starts[-1], stops[-1])``), so a bucket split between two columns counts once."""
    first = int(starts[0])
    window = values[first : int(stops[-1])]
    return np.asarray(op.reduceat(window, starts - first), np.float32)


def build_peaks(samples: np.ndarray, rate: int, *, min_buckets: int = 64) -> PeakPyramid:
    """Build the pyramid of ``samples`` (``[n]`` or ``[n, channels]``, any float dtype).

    Levels are added until the coarsest has at most ``min_buckets`` buckets.
    """
    return build_peaks_from_blocks([samples], rate, min_buckets=min_buckets)


def build_peaks_from_blocks(blocks: Iterable[np.ndarray], rate: int, *, min_buckets: int = 64) -> PeakPyramid:
    """Build the pyramid from consecutive blocks of samples (any sizes, same channel count),
    so a long file never has to be in memory at once."""
    carry: np.ndarray | None = None
    mins_parts: list[np.ndarray] = []
    maxs_parts: list[np.ndarray] = []
    length = 0
    for block in blocks:
        data = np.asarray(block)
        if data.ndim == 1:
            data = data[:, None]
        data = np.ascontiguousarray(data, dtype=np.float32)
        length += len(data)
        if carry is not None and len(carry):
            data = np.concatenate([carry, data])
        whole = len(data) // BASE_BUCKET
        if whole:
            # Row-major [n, c] as [buckets, BASE_BUCKET * c]: one bucket (all channels) per row.
            body = data[: whole * BASE_BUCKET].reshape(whole, BASE_BUCKET * data.shape[1])
            mins_parts.append(body.min(axis=1))
            maxs_parts.append(body.max(axis=1))
        carry = data[whole * BASE_BUCKET :]
    if carry is not None and len(carry):
        mins_parts.append(np.array([carry.min()], np.float32))
        maxs_parts.append(np.array([carry.max()], np.float32))
    mins: list[np.ndarray] = [
        np.concatenate(mins_parts).astype(np.float32) if mins_parts else np.zeros(0, np.float32)
    ]
    maxs: list[np.ndarray] = [
        np.concatenate(maxs_parts).astype(np.float32) if maxs_parts else np.zeros(0, np.float32)
    ]
    while len(mins[-1]) > min_buckets:
        mins.append(_fold(mins[-1], np.minimum))
        maxs.append(_fold(maxs[-1], np.maximum))
    return PeakPyramid(rate=int(rate), length=int(length), mins=tuple(mins), maxs=tuple(maxs))


def _fold(values: np.ndarray, op: np.ufunc) -> np.ndarray:
    whole = len(values) // FANOUT
    out = op.reduce(values[: whole * FANOUT].reshape(whole, FANOUT), axis=1)
    if len(values) % FANOUT:
        out = np.append(out, op.reduce(values[whole * FANOUT :]))
    return np.asarray(out, np.float32)


def cache_dir_for_project(project_path: str | os.PathLike[str]) -> Path:
    """The cache folder beside a project file: ``film.srproj`` -> ``film.srproj.cache``."""
    p = Path(project_path)
    return p.with_name(p.name + ".cache")


def _cache_key(media: Path) -> str:
    st = media.stat()
    ident = f"{media.resolve()}|{st.st_size}|{st.st_mtime_ns}|v{_FORMAT_VERSION}|b{BASE_BUCKET}"
    return hashlib.sha1(ident.encode("utf-8")).hexdigest()


def load_or_build_peaks(
    media: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
) -> PeakPyramid:
    """Peaks of a media file's audio, from ``cache_dir/peaks`` when fresh, else built and saved.

    Call from a worker thread: decoding a long file takes a moment.

    Args:
        media: audio or video file with sound.
        cache_dir: the project's cache folder (see :func:`cache_dir_for_project`); ``None``
            disables the disk cache.

    Raises:
        The errors of :func:`core.media.audio.load_audio` (missing file, no audio, ...).
        A cache that cannot be written is ignored (the peaks are still returned).
    """
    path = Path(media)
    target = None
    if cache_dir is not None:
        with contextlib.suppress(OSError):
            target = Path(cache_dir) / "peaks" / f"{_cache_key(path)}.npz"
            cached = PeakPyramid.load(target)
            if cached is not None:
                return cached
    rate, blocks = iter_audio(path)
    pyramid = build_peaks_from_blocks(blocks, rate)
    if target is not None:
        with contextlib.suppress(OSError):
            pyramid.save(target)
    return pyramid
