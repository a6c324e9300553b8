"""Project files as the editor uses them: new, open, save, autosave/recovery, cache folder, export job.

A thin layer over ``core.persistence`` (atomic JSON saves with schema validation, relative media paths,
missing-media detection, autosave files) and ``core.media`` timeline export. It adds only what is the
app's business: where an untitled project's autosave lives, and how an export job is packaged for the
export worker (a frozen snapshot of the project taken on the main thread).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.project import Project, ProjectSettings, Track, TrackKind, new_id

PROJECT_SUFFIX = ".srproj"


def new_project() -> Project:
    """An empty project with the usual tracks: V2 over V1, then A1 and A2."""
    project = Project(ProjectSettings(name="Untitled"))
    for name, kind in (
        ("V2", TrackKind.VIDEO),
        ("V1", TrackKind.VIDEO),
        ("A1", TrackKind.AUDIO),
        ("A2", TrackKind.AUDIO),
    ):
        project.insert_track(Track(new_id(), kind, name))
    return project


def cache_dir(path: Path | None) -> Path | None:
    """The thumbnails/peaks cache folder beside a project file."""
    if path is None:
        return None
    from core.media.waveform import cache_dir_for_project

    return cache_dir_for_project(path)


def _persistence() -> Any:
    from core import persistence

    return persistence


def save(project: Project, path: Path, queue: Any = None) -> Path:
    """Atomic save (also removes the now stale autosave)."""
    return _persistence().save_project(project, path, queue)


def load(path: Path) -> Any:
    """A ``core.persistence.LoadedProject`` (project, render queue, missing media, autosave state)."""
    return _persistence().load_project(path)


def app_data_dir() -> Path:
    """The app's own data folder (untitled autosaves, untitled renders)."""
    from PySide6.QtCore import QStandardPaths

    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(base or Path.home() / ".skyreels-studio")


def untitled_autosave_dir() -> Path:
    return app_data_dir() / "autosave"


def untitled_media_dir() -> Path:
    """``untitled.media``: renders and checkpoints of untitled projects (shared by them)."""
    return app_data_dir() / "untitled.media"


def _autosave_owner(path: Path | None) -> Path:
    """The project path an autosave belongs to (an untitled project gets one in the app's data folder)."""
    if path is not None:
        return path
    return untitled_autosave_dir() / f"untitled-{os.getpid()}{PROJECT_SUFFIX}"


def autosave_path(path: Path | None) -> Path:
    return Path(_persistence().autosave_path(_autosave_owner(path)))


def write_autosave(project: Project, path: Path | None, queue: Any = None) -> Path:
    """Write the autosave backup for ``project`` (saved at ``path``, or untitled)."""
    owner = _autosave_owner(path)
    owner.parent.mkdir(parents=True, exist_ok=True)
    return Path(_persistence().write_autosave(project, owner, queue))


def orphaned_untitled_autosaves() -> list[Path]:
    """Autosaves of untitled projects whose app is no longer running (a crash before the first save)."""
    folder = untitled_autosave_dir()
    if not folder.is_dir():
        return []
    found = []
    for candidate in sorted(
        folder.glob("untitled-*.autosave.json"), key=lambda p: p.stat().st_mtime, reverse=True
    ):
        try:
            pid = int(candidate.name.split("-", 1)[1].split(".", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            found.append(candidate)
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours (PermissionError), or a platform without signals
        return True
    return True


def adopt_untitled_autosave(autosave: Path) -> Any:
    """Load an orphaned untitled autosave and make it this process's untitled autosave."""
    loaded = _persistence().load_recovery(autosave, None)
    target = autosave_path(None)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(autosave, target)
    return loaded


def newer_autosave(path: Path) -> Path | None:
    """The autosave of ``path`` when it is newer than the file (a crash left it), else None."""
    return _persistence().find_recovery(path)


def load_autosave(autosave: Path, path: Path) -> Any:
    return _persistence().load_recovery(autosave, path)


def remove_autosave(path: Path | None) -> None:
    with contextlib.suppress(OSError):
        _persistence().discard_autosave(_autosave_owner(path))


def export_cancelled_types() -> tuple[type[BaseException], ...]:
    from core.media.errors import RenderCancelled

    return (RenderCancelled,)


def export_job(
    project: Project, path: Path, in_out: tuple[int | None, int | None] = (None, None)
) -> Callable[[Callable[[int, int], None], threading.Event], Any]:
    """A job for :class:`app.workers.ExportWorker`: renders a snapshot of the timeline to ``path``.

    The snapshot (``Project.from_dict(project.to_dict())``) is taken here, on the main thread, so later
    edits never reach the running export.
    """
    from core.media import timeline_render

    snapshot = Project.from_dict(project.to_dict())
    start, end = in_out

    def job(progress: Callable[[int, int], None], cancel: threading.Event) -> Any:
        return timeline_render.export_timeline(
            snapshot, path, progress=progress, cancel=cancel, start=start, end=end
        )

    return job
