"""Render checkpoints that nothing needs any more (Generate ▸ Clean Up Render Files…).

A job's work folder holds the exact frames of its finished pieces as uncompressed ``.npy`` files (about
330 MB for 5 s of 720P), their playable MP4s and the state a resume needs. They let a killed render
resume, and they let a render done by another process or a render node be joined later. Once nothing
can use them, they are only disk space:

- **a finished job whose output file exists**: the output is what the timeline plays, and a finished
  job is never resumed;
- **a folder under the saved project's ``<project>.media/work/`` that belongs to no job in the queue**:
  the job was removed or cleared, and only the queue can resume a job.

Everything else is kept: unfinished, failed and cancelled jobs (they can be resumed or retried), a
finished job whose output is missing (joining its pieces again is the way back), and anything that a job
in the queue still points into. An untitled project's media folder is shared by the jobs that untitled
sessions started before their projects were saved, so only its queue's finished jobs are considered.

Pure Python: no Qt, no torch.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from core.render_queue import Job, JobState

__all__ = ["CleanupItem", "folder_size", "remove_render_files", "render_files_to_clean"]


@dataclass(frozen=True)
class CleanupItem:
    """A work folder that can go, its size in bytes, and why (for people)."""

    path: Path
    size: int
    reason: str


def folder_size(path: Path) -> int:
    """Bytes of the regular files below ``path`` (links are not followed)."""
    total = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def render_files_to_clean(jobs: Iterable[Job], project_media_root: Path | None = None) -> list[CleanupItem]:
    """The work folders nothing needs (see the module docstring), largest first.

    Args:
        jobs: the project's render queue.
        project_media_root: ``<project>.media`` of a saved project, whose ``work/`` folder holds only this
            project's jobs; None for an untitled project.
    """
    jobs = list(jobs)
    in_use: list[Path] = []
    candidates: dict[Path, str] = {}
    for job in jobs:
        if not job.request.work_dir:
            continue
        work = _resolved(job.request.work_dir)
        output = job.request.output_path
        if job.state is JobState.FINISHED and not job.held and output and Path(output).is_file():
            candidates[work] = f"finished: {job.label or job.job_id}"
        else:
            in_use.append(work)
    if project_media_root is not None:
        root = Path(project_media_root) / "work"
        try:
            folders = [entry for entry in root.iterdir() if entry.is_dir() and not entry.is_symlink()]
        except OSError:
            folders = []
        for folder in folders:
            candidates.setdefault(_resolved(folder), "no longer in the render queue")
    items = []
    for folder, reason in candidates.items():
        if not folder.is_dir():
            continue
        # Never a folder that an unfinished job points into (or that contains such a job's folder).
        if any(used == folder or folder in used.parents or used in folder.parents for used in in_use):
            continue
        items.append(CleanupItem(folder, folder_size(folder), reason))
    return sorted(items, key=lambda item: (-item.size, str(item.path)))


def remove_render_files(items: Iterable[CleanupItem]) -> tuple[int, list[str]]:
    """Delete the folders; returns the bytes freed and a message per folder that could not be removed."""
    freed, errors = 0, []
    for item in items:
        try:
            shutil.rmtree(item.path)
        except FileNotFoundError:
            continue
        except OSError as error:
            errors.append(f"{item.path}: {error.strerror or error}")
            continue
        freed += item.size
    return freed, errors
