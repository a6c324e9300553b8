"""Thumbnails: small pictures of assets for the bin and frame strips for timeline clips.

``thumbnail(path, max_size)`` works for every asset kind: a video frame, a shrunken image (JPEG
decodes at reduced scale directly), or a drawn waveform for audio. With a project cache folder
it is stored as ``<project>.cache/thumbs/<key>.png`` keyed by path, size and modification time.
``filmstrip`` decodes several frames of one clip at a fixed height for timeline strips.

Call from worker threads (decoding takes milliseconds to seconds); the results are plain
``uint8`` RGB arrays that the app turns into ``QImage`` itself.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.media.audio import load_audio
from core.media.decode import VideoReader
from core.media.errors import MediaError
from core.media.images import fit_size, read_image, write_image
from core.media.probe import MediaInfo, probe
from core.media.waveform import build_peaks

__all__ = ["DEFAULT_THUMB_SIZE", "filmstrip", "thumbnail", "waveform_image"]

DEFAULT_THUMB_SIZE = (160, 90)
_WAVE_RGB = (110, 190, 255)
_WAVE_BACKGROUND = 28


def thumbnail(
    path: str | os.PathLike[str],
    max_size: tuple[int, int] = DEFAULT_THUMB_SIZE,
    *,
    at_seconds: float | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    info: MediaInfo | None = None,
) -> np.ndarray:
    """A picture of the asset at most ``max_size`` (width, height), aspect kept.

    Args:
        path: video, image or audio file.
        max_size: bounding box.
        at_seconds: for video, the moment to show (default: a third in, at most 1 s, which
            skips black lead-ins).
        cache_dir: the project's cache folder; ``None`` disables the disk cache.
        info: a previous :func:`probe` result, to skip probing again.

    Raises:
        The typed errors of :func:`probe` (missing, corrupt, unsupported ...).
    """
    p = Path(path)
    target = None
    if cache_dir is not None:
        with contextlib.suppress(OSError):
            key = _cache_key(p, max_size, at_seconds)
            target = Path(cache_dir) / "thumbs" / f"{key}.png"
            if target.is_file():
                with contextlib.suppress(MediaError):
                    return read_image(target)
    media = info if info is not None else probe(p)
    if media.kind == "image":
        rgb = read_image(p, max_size=max_size)
    elif media.kind == "video":
        with VideoReader(p, cache_bytes=0) as reader:
            w, h = fit_size(reader.width, reader.height, *max_size)
            when = at_seconds if at_seconds is not None else min(1.0, reader.duration / 3)
            rgb = np.array(reader.frame_at(reader.index_at_time(when), size=(w, h)))
    else:
        rgb = waveform_image(p, max_size)
    if target is not None:
        with contextlib.suppress(OSError, MediaError):
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, rgb)
    return rgb


def waveform_image(path: str | os.PathLike[str], size: tuple[int, int] = DEFAULT_THUMB_SIZE) -> np.ndarray:
    """A drawn min/max waveform of a file's audio, ``size`` (width, height)."""
    width, height = size
    audio = load_audio(path, rate=8000, channels=1)  # plenty for a picture, and fast
    pyramid = build_peaks(audio.samples, audio.rate)
    mins, maxs = pyramid.peaks(0.0, max(pyramid.duration, 1e-6), width)
    image = np.full((height, width, 3), _WAVE_BACKGROUND, np.uint8)
    mid = (height - 1) / 2
    top = np.clip(np.round(mid - maxs * mid), 0, height - 1).astype(int)
    bottom = np.clip(np.round(mid - mins * mid), 0, height - 1).astype(int)
    rows = np.arange(height)[:, None]
    mask = (rows >= top[None, :]) & (rows <= bottom[None, :])
    image[mask] = _WAVE_RGB
    return image


def filmstrip(
    source: str | os.PathLike[str] | VideoReader,
    indices: Sequence[int],
    height: int,
) -> list[np.ndarray]:
    """Frames ``indices`` of a video, each scaled to ``height`` pixels high (aspect kept).

    Pass an open :class:`VideoReader` to share its cache with the viewer; frames are decoded in
    ascending order whatever order ``indices`` has, so one forward pass serves a whole strip.
    """
    if height <= 0:
        raise ValueError(f"strip height must be positive, got {height}")
    own = not isinstance(source, VideoReader)
    reader = VideoReader(source) if not isinstance(source, VideoReader) else source
    try:
        width = max(1, round(reader.width * height / reader.height))
        decoded = {i: reader.frame_at(i, size=(width, height)) for i in sorted(set(indices))}
        return [decoded[i] for i in indices]
    finally:
        if own:
            reader.close()


def _cache_key(path: Path, max_size: tuple[int, int], at_seconds: float | None) -> str:
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{max_size}|{at_seconds}"
    return hashlib.sha1(ident.encode("utf-8")).hexdigest()
