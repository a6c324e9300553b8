"""Decoded input files of recent renders, reused while the files are unchanged (issue 5).

Owns :class:`InputCache`. Re-rendering a shot (another seed, the preview and then the final, a retry)
reads the same clip, audio or images again: decoding a clip's tail, or decoding and loudness-normalising
a speech track, costs several milliseconds that a render of a tiny or draft model notices. The cache keys
what was read by the files' identity (path, size, modification time, inode), so an edited or replaced
file is read again. Values are shared between renders: the arrays in a kept value are made read-only, so
a caller that would modify one in place fails at once instead of changing the next render's input.

Imports numpy and PIL only. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = ["InputCache", "read_through"]

T = TypeVar("T")

DEFAULT_MAX_BYTES = 64 * 2**20  # a tiny/draft job's inputs; a long 1080p clip tail is simply read again


class InputCache:
    """What reading functions returned, by key and by the stamps of the files they read; least recently
    used entries go first once ``max_bytes`` (the values' array and image bytes) is exceeded. A value
    larger than ``max_bytes`` is not kept. Thread-safe; the reading itself runs outside the lock."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.hits = 0
        self._entries: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def read(self, key: tuple[Any, ...], paths: Sequence[str | os.PathLike[str]], read: Callable[[], T]) -> T:
        """``read()``, or what it returned before for ``key`` while the files in ``paths`` are unchanged.
        Errors are not cached (a missing file raises from ``read`` every time)."""
        stamps = _stamps(paths)
        if stamps is None:
            return read()
        full_key = (key, stamps)
        with self._lock:
            entry = self._entries.get(full_key)
            if entry is not None:
                self._entries.move_to_end(full_key)
                self.hits += 1
                return entry[0]  # type: ignore[no-any-return]
        value = read()
        size = _nbytes(value)
        if size <= self.max_bytes:
            _freeze(value)
            with self._lock:
                old = self._entries.pop(full_key, None)
                if old is not None:
                    self._bytes -= old[1]
                self._entries[full_key] = (value, size)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    self._bytes -= dropped
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def read_through(
    cache: InputCache | None, key: tuple[Any, ...], paths: Sequence[str | os.PathLike[str]], read: Callable[[], T]
) -> T:
    """``cache.read(...)``, or just ``read()`` without a cache."""
    return read() if cache is None else cache.read(key, paths, read)


def _stamps(paths: Sequence[str | os.PathLike[str]]) -> tuple[Any, ...] | None:
    stamps = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            return None
        stamps.append((os.fspath(path), info.st_size, info.st_mtime_ns, info.st_ino))
    return tuple(stamps)


def _freeze(value: Any) -> None:
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif isinstance(value, tuple | list):
        for item in value:
            _freeze(item)


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, tuple | list):
        return sum(_nbytes(item) for item in value)
    size = getattr(value, "size", None)  # a PIL image: (width, height)
    bands = getattr(value, "getbands", None)
    if isinstance(size, tuple) and len(size) == 2 and callable(bands):
        return int(size[0]) * int(size[1]) * len(bands())
    return 64
