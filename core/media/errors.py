"""Typed errors raised by the media engine (``core/media``).

Every failure that a user can cause (a moved file, a truncated download, an image too large to
open) is reported as a :class:`MediaError` subclass whose message names the file and says what
went wrong in plain words, so the editor can show it as-is and the CLI can print it.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CorruptMedia",
    "EmptyMedia",
    "FileMissing",
    "ImageTooLarge",
    "MediaError",
    "NoAudioStream",
    "NoVideoStream",
    "RenderCancelled",
    "UnsupportedMedia",
    "WriteFailed",
]


class MediaError(Exception):
    """Base class of all media errors.

    Attributes:
        path: the file concerned (``None`` when the error is not about one file).
        reason: the short explanation, without the file name.
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        self.path: Path | None = Path(path) if path is not None else None
        self.reason = reason
        message = f"{self.path}: {reason}" if self.path is not None else reason
        super().__init__(message)


class FileMissing(MediaError):
    """The file does not exist (moved, renamed or deleted)."""

    def __init__(self, path: str | os.PathLike[str], reason: str = "file not found") -> None:
        super().__init__(path, reason)


class UnsupportedMedia(MediaError):
    """The file exists but is not a format or codec we can read."""


class CorruptMedia(MediaError):
    """The file looks like a media file but cannot be decoded (truncated, damaged)."""


class EmptyMedia(MediaError):
    """The file is empty, or its container holds no frames / samples."""


class NoVideoStream(MediaError):
    """A video operation was asked of a file without a video stream."""


class NoAudioStream(MediaError):
    """An audio operation was asked of a file without an audio stream."""


class ImageTooLarge(MediaError):
    """The image has more pixels than we are willing to decode (decompression-bomb guard)."""


class WriteFailed(MediaError):
    """Writing a media file failed (disk full, unwritable folder, encoder error)."""


class RenderCancelled(MediaError):
    """A timeline export was cancelled; no output file was left behind."""

    def __init__(self, path: str | os.PathLike[str] | None = None, reason: str = "export cancelled") -> None:
        super().__init__(path, reason)
