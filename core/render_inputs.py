"""Inputs a queued render needs written before it runs, and the app's bookkeeping inside a request.

A render of a *trimmed* clip sends the frames the clip shows, not its whole source: the request names
``<work dir>/source_excerpt.mp4`` as ``input_video`` and records what to cut in
``request.extra["studio"]["excerpt"]`` (a :class:`SourceExcerpt`). :func:`prepare_inputs` writes that
file just before the render, on whatever runs it: the editor's render worker, or ``main.py jobs`` on a
render node. The request itself stays a frozen snapshot.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from core.generation import RenderRequest, RequestInvalid

__all__ = ["EXCERPT_NAME", "STUDIO_KEY", "SourceExcerpt", "prepare_inputs"]

STUDIO_KEY = "studio"
"""Key of the app's landing information inside ``RenderRequest.extra`` (ignored by backends)."""

EXCERPT_NAME = "source_excerpt.mp4"
"""File name, inside the job's work dir, of the frames a trimmed source clip shows."""


@dataclasses.dataclass(frozen=True)
class SourceExcerpt:
    """Asset frames ``[start_frame, end_frame)`` (at the project rate ``fps``) of the video at ``source``:
    what a trimmed clip shows. Stored as a dict in ``request.extra["studio"]["excerpt"]``."""

    source: str
    start_frame: int
    end_frame: int
    fps: int


def prepare_inputs(request: RenderRequest, cancel: threading.Event) -> None:
    """Write the input files a request names but that do not exist yet: the excerpt of a trimmed source
    clip (into the job's work dir). Runs on the render worker's thread, before the backend.

    Raises:
        RequestInvalid: the source video cannot be read (moved, deleted, damaged) or the excerpt written.
        core.media.errors.RenderCancelled: ``cancel`` was set meanwhile.
    """
    spec = request.extra.get(STUDIO_KEY, {}).get("excerpt")
    if not spec or request.input_video is None or Path(request.input_video).is_file():
        return
    from core.media.errors import MediaError, RenderCancelled
    from core.media.excerpt import write_excerpt

    excerpt = SourceExcerpt(**spec)
    target = Path(request.input_video)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_excerpt(excerpt.source, target, excerpt.start_frame, excerpt.end_frame, excerpt.fps, cancel=cancel)
    except RenderCancelled:
        raise
    except (MediaError, OSError, ValueError) as exc:
        raise RequestInvalid(f"Cannot cut the clip out of {Path(excerpt.source).name}: {exc}") from exc
