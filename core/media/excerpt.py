"""Cut the part of a video that a timeline clip shows out into a file of its own.

Generation continues a *clip*, not the file under it: a clip trimmed to asset frames
``[in_point, out_point)`` must be extended from its out point. :func:`write_excerpt` writes the
file frames those project frames show (the timeline's own mapping,
:func:`core.media.timeline_render.media_frame_index`) to a new MP4 at the file's own rate,
nearly losslessly (x264 CRF 0 by default), so a pipeline reading its last frames sees exactly
the clip's last frames. Video only: the extension pipelines ignore sound.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from core.media.decode import VideoReader
from core.media.errors import RenderCancelled
from core.media.timeline_render import media_frame_index
from core.media.writer import VideoWriter

__all__ = ["EXCERPT_CRF", "excerpt_range", "write_excerpt"]

#: x264 CRF of excerpts: 0 is lossless in x264's 8-bit encoder (the only loss left is the
#: RGB <-> yuv420p rounding of the writer, a level or two).
EXCERPT_CRF = 0


def excerpt_range(reader: VideoReader, start_frame: int, end_frame: int, fps: int) -> tuple[int, int]:
    """The file frames ``[first, stop)`` shown by asset frames ``[start_frame, end_frame)`` at ``fps``.

    Raises:
        ValueError: an empty or negative range, or a non-positive rate.
    """
    if fps <= 0:
        raise ValueError(f"the project rate must be positive, got {fps}")
    if not 0 <= start_frame < end_frame:
        raise ValueError(f"the frames {start_frame}..{end_frame} are not a range of a clip")
    first = media_frame_index(reader, start_frame, fps)
    last = media_frame_index(reader, end_frame - 1, fps)
    return first, last + 1


def write_excerpt(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    start_frame: int,
    end_frame: int,
    fps: int,
    *,
    crf: int = EXCERPT_CRF,
    cancel: threading.Event | None = None,
) -> Path:
    """Write the frames of ``src`` that asset frames ``[start_frame, end_frame)`` show to ``dst``.

    Args:
        src: the source video.
        dst: the destination .mp4 (written atomically; its folder must exist).
        start_frame, end_frame: the clip's ``in_point`` / ``out_point``: frames at the project
            rate ``fps``, as :class:`core.project.Clip` stores them.
        fps: the project rate those frames count at.
        crf: x264 quality (default lossless).
        cancel: when set, writing stops within a frame and raises :class:`RenderCancelled`.

    Returns:
        ``dst``. It holds every file frame from the one shown at ``start_frame`` to the one
        shown at ``end_frame - 1``, at the file's own rate (so when the rates match, exactly
        the file frames ``start_frame .. end_frame - 1``).

    Raises:
        ValueError: an empty range or a bad rate.
        MediaError: ``src`` cannot be read or ``dst`` cannot be written (nothing is left behind).
        RenderCancelled: ``cancel`` was set; no file is left behind.
    """
    out = Path(dst)
    with VideoReader(src, cache_bytes=0) as reader:
        first, stop = excerpt_range(reader, start_frame, end_frame, fps)
        writer = VideoWriter(out, reader.fps, reader.width, reader.height, crf=crf, preset="veryfast")
        try:
            for frame in reader.iter_frames(first, stop):
                if cancel is not None and cancel.is_set():
                    raise RenderCancelled(out, "cutting the clip out was cancelled")
                writer.write_frame(frame)
        except BaseException:
            writer.abort()
            raise
        return writer.close()
