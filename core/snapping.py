"""Snapping helpers for timeline drags: pull a frame to nearby clip edges, the playhead and markers.

Owns: :func:`snap_targets`, :func:`snap_frame`, :func:`snap_clip_start`. Pure functions over a
:class:`core.project.Project`; the tolerance is in frames (the view converts pixels to frames).

Must not import: PySide6, torch, diffusers, ``app``, ``models``.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Sequence

from core.project import Project


def snap_targets(
    project: Project,
    playhead: int | None = None,
    exclude_clip_ids: Collection[str] = (),
    markers: bool = True,
) -> list[int]:
    """Sorted, distinct frames worth snapping to.

    Args:
        project: the project whose clip edges count.
        playhead: the playhead frame, if it should attract.
        exclude_clip_ids: clips being dragged (their own edges must not attract them).
        markers: include marker frames.

    Returns:
        Frame 0, every clip's start and end (exclusive end = the frame after it), the playhead and
        the markers, sorted ascending without duplicates.
    """
    frames = {0}
    excluded = set(exclude_clip_ids)
    for clip in project.clips():
        if clip.clip_id not in excluded:
            frames.add(clip.start)
            frames.add(clip.end)
    if playhead is not None:
        frames.add(playhead)
    if markers:
        frames.update(m.frame for m in project.markers)
    return sorted(frames)


def _nearest(frame: int, targets: Sequence[int]) -> int | None:
    if not targets:
        return None
    i = bisect.bisect_left(targets, frame)
    candidates = [targets[j] for j in (i - 1, i) if 0 <= j < len(targets)]
    # min() keeps the first of equal distances: the earlier frame wins a tie.
    return min(candidates, key=lambda t: abs(t - frame))


def snap_frame(frame: int, targets: Sequence[int], tolerance: int) -> int:
    """``frame`` moved to the nearest target within ``tolerance`` frames (ties go to the earlier one).

    ``targets`` must be sorted (as :func:`snap_targets` returns them). Returns ``frame`` unchanged when
    no target is close enough.
    """
    nearest = _nearest(frame, targets)
    if nearest is not None and abs(nearest - frame) <= tolerance:
        return nearest
    return frame


def snap_clip_start(start: int, duration: int, targets: Sequence[int], tolerance: int) -> int:
    """The start of a dragged clip after snapping whichever of its edges is closer to a target.

    Both the head (``start``) and the tail (``start + duration``) may snap; the smaller pull wins
    (the head on a tie). The result never goes below frame 0.
    """
    best = start
    best_pull = tolerance + 1
    for edge, offset in ((start, 0), (start + duration, duration)):
        nearest = _nearest(edge, targets)
        if nearest is not None and abs(nearest - edge) < best_pull:
            best_pull = abs(nearest - edge)
            best = nearest - offset
    return max(best, 0)
