"""File ▸ Collect Media…: copy every media file a saved project uses into its own folder.

A project refers to its media wherever they are: clips imported from anywhere on disk, and the renders of
a project that was untitled when they were made, which stay in the app's shared ``untitled.media`` folder
(see :mod:`app.render_controller`). Collecting copies each such file to ``<project>.media/collected/`` and
points the project at the copies, so the project folder can be moved to another machine or archived, and
nothing in ``untitled.media`` is needed by it any more.

Two steps, both pure functions of their inputs:

- :func:`plan_collect` looks at every asset in the bin (clips on the timeline, alternative takes,
  reference images and the audio of avatars are all bin assets) and returns a :class:`CollectPlan`:
  which files live outside the project's folder, where each copy goes (readable names, clashes resolved
  with a ``-2``, ``-3``… suffix, one copy per file however many assets use it), their total size, the
  files that are missing (listed; they cannot be collected) and the files an unfinished render job
  still uses (left where they are: a job keeps the paths it was queued with).
- :func:`collect_files` carries the plan out: it checks the free disk space first, copies each file in
  chunks to a temporary name in the destination folder, syncs it to disk and renames it into place
  without ever replacing a different file, reports progress in bytes, and can be cancelled between
  files and between chunks. On cancel or error the copies it made are removed, so nothing partial is
  left behind. It returns the mapping old path → new path.

:func:`relink_to_copies` then builds the one undoable edit that points the assets at the copies (a
:class:`core.edits.Compound` of :class:`core.edits.RelinkAsset`); undoing it points them back at the
originals, and the copies stay on disk.

Threading: :func:`plan_collect` and :func:`relink_to_copies` read the project (main thread);
:func:`collect_files` only reads the frozen plan and may run on any thread.

Must not import: PySide6, torch, diffusers, ``app``, ``models``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core import edits
from core.model_store import existing_ancestor, format_bytes
from core.project import Asset, Project
from core.render_queue import UNFINISHED, Job

__all__ = [
    "COLLECTED_FOLDER",
    "COLLECT_LABEL",
    "IN_USE_NOTE",
    "CollectCancelled",
    "CollectError",
    "CollectItem",
    "CollectPlan",
    "NotEnoughSpace",
    "SkippedFile",
    "check_space",
    "collect_files",
    "collected_folder",
    "media_root",
    "plan_collect",
    "relink_to_copies",
]

COLLECTED_FOLDER = "collected"
"""Sub-folder of ``<project>.media`` that receives the copies."""
COLLECT_LABEL = "Collect media"
"""The Edit ▸ Undo text of the relink step."""
CHUNK_BYTES = 8 * 1024 * 1024
"""Copy in pieces of this size: cancel and progress act between them (a 10 GB file is 1200 pieces)."""
RESERVE_BYTES = 16 * 1024 * 1024
"""Left free after the copies, so the project file and its autosave can still be written."""
MTIME_SLACK_NS = 2_000_000_000
"""FAT and some network disks store modification times to 2 s."""
IN_USE_NOTE = (
    "A render job that is running or waiting keeps the file paths it was queued with, so the files it "
    "uses stay where they are and the project keeps pointing at them. Collect again once the job has "
    "finished."
)


class CollectError(Exception):
    """Collecting failed; the message is for the user. The project was not changed."""


class NotEnoughSpace(CollectError):
    """The copies would not fit on the destination's disk (nothing was copied)."""

    def __init__(self, message: str, needed: int, free: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.free = free


class CollectCancelled(Exception):
    """The user cancelled; the copies made so far were removed."""


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class CollectItem:
    """One file to copy.

    Attributes:
        source: the file as it is now (links resolved).
        dest: where its copy goes, under ``<project>.media/collected/``.
        size: bytes.
        asset_ids: the bin assets that use it (one copy serves them all).
        names: those assets' names, for people.
        untitled_render: it lives in the untitled project's shared ``untitled.media`` folder.
        existing: ``dest`` already holds a file of the same size and modification time (an earlier collect
            whose relink was undone): :func:`collect_files` reuses it after comparing it byte by byte.
    """

    source: Path
    dest: Path
    size: int
    asset_ids: tuple[str, ...]
    names: tuple[str, ...]
    untitled_render: bool = False
    existing: bool = False


@dataclass(frozen=True)
class SkippedFile:
    """A file the plan leaves alone, the assets using it, and why (for people)."""

    path: Path
    asset_ids: tuple[str, ...]
    names: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class CollectPlan:
    """What :func:`collect_files` will do for a project saved at ``project_path``.

    Attributes:
        destination: ``<project>.media/collected``.
        items: files to copy, in bin order.
        missing: files that do not exist (or are not files): they cannot be collected.
        in_use: files an unfinished render job uses: left where they are (see :data:`IN_USE_NOTE`).
        inside: how many files are already in the project's folder (they move with it).
    """

    project_path: Path
    destination: Path
    items: tuple[CollectItem, ...] = ()
    missing: tuple[SkippedFile, ...] = ()
    in_use: tuple[SkippedFile, ...] = ()
    inside: int = 0

    @property
    def total_bytes(self) -> int:
        """Bytes to copy (files already collected earlier are not copied again)."""
        return sum(item.size for item in self.items if not item.existing)

    @property
    def untitled_renders(self) -> int:
        return sum(1 for item in self.items if item.untitled_render)

    def summary(self) -> str:
        """One paragraph for the confirmation dialog."""
        if not self.items:
            text = "Every media file this project uses is already in its folder: there is nothing to collect."
        else:
            text = (
                f"Copy {len(self.items)} media file(s) ({format_bytes(self.total_bytes)}) into "
                f"{self.destination} and point the project at the copies?"
            )
            if self.untitled_renders:
                text += f" {self.untitled_renders} of them are renders kept in the untitled project's folder."
            text += " The originals stay where they are; Edit ▸ Undo points the project back at them."
        if self.inside:
            text += f"\n\n{self.inside} file(s) already in the project's folder stay where they are."
        if self.missing:
            text += f"\n\n{len(self.missing)} file(s) are missing and cannot be collected (see Details)."
        if self.in_use:
            text += f"\n\n{len(self.in_use)} file(s) are used by render jobs that have not finished: {IN_USE_NOTE}"
        return text

    def details(self) -> str:
        """Every file, one per line (for a fixed-width font): the copy's name, size and source; then what is
        missing and what a job uses, with the media that use them."""
        lines: list[str] = []
        if self.items:
            lines.append(f"Copied into {self.destination}:")
            width = min(max(len(item.dest.name) for item in self.items), 40)
            for item in self.items:
                note = "  (already there)" if item.existing else ""
                note += "  (render of the untitled project)" if item.untitled_render else ""
                size = format_bytes(item.size)
                lines.append(f"  {item.dest.name:<{width}s}  {size:>8s}  from {item.source}{note}")
        for title, skipped in (("Missing (not collected):", self.missing), ("Left in place:", self.in_use)):
            if skipped:
                lines.append("")
                lines.append(title)
                for s in skipped:
                    names = ", ".join(f"“{n}”" for n in s.names)
                    lines.append(f"  {s.path}  ({s.reason}; used by {names})")
        return "\n".join(lines)


# -- planning ----------------------------------------------------------------------------------------


def media_root(project_path: str | os.PathLike[str]) -> Path:
    """``<project>.media`` beside the project file (where its renders and collected media live)."""
    path = Path(project_path)
    return path.with_name(path.stem + ".media")


def collected_folder(project_path: str | os.PathLike[str]) -> Path:
    return media_root(project_path) / COLLECTED_FOLDER


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _key(path: str | os.PathLike[str]) -> str:
    """One spelling per file: links resolved, case folded where the platform ignores case."""
    return os.path.normcase(os.fspath(_real(path)))


def _is_under(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or below it (both resolved)."""
    target = os.path.normcase(os.fspath(folder))
    return any(os.path.normcase(os.fspath(p)) == target for p in (path, *path.parents))


def _job_paths(job: Job) -> list[str]:
    from core.persistence import request_paths  # not at import: the app loads this module at start-up

    return request_paths(job.request.to_json())


def _looks_copied(candidate: Path, source_stat: os.stat_result) -> bool:
    try:
        st = candidate.stat()
    except OSError:
        return False
    return (
        candidate.is_file()
        and not candidate.is_symlink()
        and st.st_size == source_stat.st_size
        and abs(st.st_mtime_ns - source_stat.st_mtime_ns) <= MTIME_SLACK_NS
    )


def _numbered(name: str, n: int) -> str:
    if n == 1:
        return name
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension (or a name like ".profile")
        return f"{name}-{n}"
    return f"{stem}-{n}{dot}{ext}"


def plan_collect(
    project: Project,
    project_path: str | os.PathLike[str],
    jobs: Iterable[Job] = (),
    untitled_media: str | os.PathLike[str] | None = None,
) -> CollectPlan:
    """Work out what collecting the media of ``project`` (saved at ``project_path``) would copy.

    Args:
        project: the open project (read only).
        project_path: its file; copies go to ``<stem>.media/collected/`` beside it.
        jobs: its render queue; files an unfinished (queued, running, paused) job uses are left in place.
        untitled_media: the app's shared ``untitled.media`` folder, so its renders can be named as such.

    Returns:
        The plan (nothing on disk is changed).
    """
    project_file = _real(project_path)
    folder = project_file.parent
    destination = collected_folder(project_file)
    untitled = _real(untitled_media) if untitled_media else None
    in_use: dict[str, list[str]] = {}
    for job in jobs:
        if job.state in UNFINISHED:
            for path in _job_paths(job):
                in_use.setdefault(_key(path), []).append(job.label or job.job_id[:8])

    # Group the assets by file, in bin order.
    groups: dict[str, list[Asset]] = {}
    for asset in project.assets:
        groups.setdefault(_key(asset.path), []).append(asset)

    items: list[CollectItem] = []
    missing: list[SkippedFile] = []
    busy: list[SkippedFile] = []
    inside = 0
    taken: set[str] = set()
    try:
        present = {name.casefold(): name for name in os.listdir(destination)}
    except OSError:
        present = {}
    for assets in groups.values():
        ids = tuple(a.asset_id for a in assets)
        names = tuple(a.name or Path(a.path).name for a in assets)
        source = _real(assets[0].path)
        if _is_under(source, folder):
            inside += 1
            continue
        try:
            st = source.stat()
            is_file = source.is_file()
        except OSError:
            st, is_file = None, False
        if st is None or not is_file:
            missing.append(SkippedFile(source, ids, names, "not found" if st is None else "not a file"))
            continue
        jobs_using = in_use.get(_key(source))
        if jobs_using:
            labels = ", ".join(dict.fromkeys(jobs_using))
            busy.append(SkippedFile(source, ids, names, f"used by the unfinished render job(s) {labels}"))
            continue
        dest, existing = _free_name(destination, source.name, taken, present, st)
        items.append(
            CollectItem(
                source=source,
                dest=dest,
                size=st.st_size,
                asset_ids=ids,
                names=names,
                untitled_render=untitled is not None and _is_under(source, untitled),
                existing=existing,
            )
        )
    return CollectPlan(project_file, destination, tuple(items), tuple(missing), tuple(busy), inside)


def _free_name(
    folder: Path, name: str, taken: set[str], present: dict[str, str], source_stat: os.stat_result
) -> tuple[Path, bool]:
    """The first of ``name``, ``name-2``, … that no other item took and no file in ``folder`` holds (or
    whose file looks like an earlier copy of the source: returned with ``True``).

    Names are compared case-insensitively (``present`` maps the folded names of the folder's files to
    their names): on macOS and Windows disks ``Clip.mp4`` and ``clip.mp4`` are one file.
    """
    n = 1
    while True:
        candidate = _numbered(name, n)
        folded = candidate.casefold()
        n += 1
        if folded in taken:
            continue
        path = folder / candidate
        if folded in present:
            if present[folded] == candidate and _looks_copied(path, source_stat):
                taken.add(folded)
                return path, True
            continue
        taken.add(folded)
        return path, False


# -- copying -------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """What one :func:`collect_files` call made, so a cancel or an error can take it back."""

    created: list[Path] = field(default_factory=list)
    temp: Path | None = None
    folders: list[Path] = field(default_factory=list)  # made by this run, innermost first

    def undo(self) -> None:
        for path in [*([self.temp] if self.temp else []), *reversed(self.created)]:
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in self.folders:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
        self.temp = None
        self.created.clear()
        self.folders.clear()


def check_space(plan: CollectPlan, disk_usage: Callable[[str], Any] = shutil.disk_usage) -> None:
    """Raise :class:`NotEnoughSpace` when the copies would not fit on the destination's disk."""
    needed = plan.total_bytes
    if needed <= 0:
        return
    where = existing_ancestor(plan.destination)
    free = int(disk_usage(os.fspath(where)).free)
    if needed + RESERVE_BYTES > free:
        raise NotEnoughSpace(
            f"Collecting needs {format_bytes(needed)} but only {format_bytes(free)} is free on the disk of "
            f"{where}. Free some space (Generate ▸ Clean Up Render Files… may help) and try again. "
            "Nothing was copied.",
            needed,
            free,
        )


def _same_content(a: Path, b: Path, cancel: CancelToken | None) -> bool:
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                if cancel is not None and cancel.is_set():
                    raise CollectCancelled()
                x, y = fa.read(CHUNK_BYTES), fb.read(CHUNK_BYTES)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def _fsync_folder(folder: Path) -> None:
    from core.persistence import fsync_dir

    with contextlib.suppress(OSError):
        fsync_dir(folder)


def _place(temp: Path, dest: Path) -> bool:
    """Give the finished temporary file its final name unless ``dest`` exists (then False; ``temp`` stays).

    ``os.rename`` would silently replace ``dest`` on POSIX, so a hard link claims the name (it fails when
    the name is taken), then the temporary name goes. Disks without hard links (FAT, some network shares)
    fall back to a check and a rename; Windows' rename refuses an existing name by itself.
    """
    if os.name == "nt":
        try:
            os.rename(temp, dest)
        except FileExistsError:
            return False
        return True
    try:
        os.link(temp, dest)
    except FileExistsError:
        return False
    except OSError:
        if os.path.lexists(dest):
            return False
        os.rename(temp, dest)
        return True
    os.unlink(temp)
    return True


def _copy_one(
    item: CollectItem,
    dest: Path,
    run: _Run,
    cancel: CancelToken | None,
    on_chunk: Callable[[int], None],
    chunk_size: int,
) -> Path:
    """Copy ``item.source`` to ``dest`` (or the next free ``-N`` name); returns where it landed."""
    folder = dest.parent
    temp = folder / f".{dest.name}.{uuid.uuid4().hex[:8]}.part"
    run.temp = temp
    with open(item.source, "rb") as src, open(temp, "xb") as out:
        while True:
            if cancel is not None and cancel.is_set():
                raise CollectCancelled()
            chunk = src.read(chunk_size)
            if not chunk:
                break
            out.write(chunk)
            on_chunk(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    with contextlib.suppress(OSError):
        shutil.copystat(item.source, temp)  # keep the modification time: a later collect recognises the copy
    n = 1
    target = dest
    while not _place(temp, target):
        n += 1
        target = dest.with_name(_numbered(dest.name, n))
    run.temp = None
    run.created.append(target)
    _fsync_folder(folder)
    return target


def _describe(error: OSError, item: CollectItem) -> str:
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return f"The disk filled up while copying “{item.source.name}” to {item.dest.parent}."
    if isinstance(error, PermissionError):
        return (
            f"Cannot read or write “{item.source.name}”: permission denied ({error.filename or item.source})."
        )
    if isinstance(error, FileNotFoundError) and not item.source.exists():
        return f"“{item.source}” disappeared while collecting."
    return f"Could not copy “{item.source.name}”: {error.strerror or error}."


def collect_files(
    plan: CollectPlan,
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelToken | None = None,
    *,
    chunk_size: int = CHUNK_BYTES,
    disk_usage: Callable[[str], Any] = shutil.disk_usage,
) -> dict[str, str]:
    """Copy the plan's files into its destination folder.

    Each file is written to a hidden temporary name in the destination folder, synced to disk and then
    renamed into place; an existing file is never replaced (the copy takes the next free ``-N`` name
    instead), and a file the plan found already collected is reused once it compares equal byte by byte.

    Args:
        plan: from :func:`plan_collect`.
        progress: ``progress(bytes_done, bytes_total)``, called from this thread after every chunk.
        cancel: checked before every file and every chunk.
        chunk_size: bytes per read/write.
        disk_usage: ``shutil.disk_usage`` (tests pass a full disk).

    Returns:
        ``{old path: new path}`` (the files' resolved paths) for every file of the plan now in the folder.

    Raises:
        NotEnoughSpace: before anything is copied, when the copies would not fit.
        CollectError: a file could not be read or written (disk full, permission); the copies made so far
            are removed.
        CollectCancelled: ``cancel`` was set; the copies made so far are removed.
    """
    check_space(plan, disk_usage)
    total = plan.total_bytes
    done = 0

    def report(n: int) -> None:
        nonlocal done, total
        done += n
        total = max(total, done)
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)
    mapping: dict[str, str] = {}
    run = _Run()
    item: CollectItem | None = None
    try:
        if plan.items:
            run.folders = [p for p in (plan.destination, *plan.destination.parents) if not p.exists()]
            plan.destination.mkdir(parents=True, exist_ok=True)
        for item in plan.items:
            if cancel is not None and cancel.is_set():
                raise CollectCancelled()
            dest = item.dest
            if item.existing:
                if _same_content(item.source, dest, cancel):
                    mapping[str(item.source)] = str(dest)
                    continue
                total += item.size  # not the same file after all: copy it under another name
                dest = dest.with_name(_numbered(dest.name, 2))
            mapping[str(item.source)] = str(_copy_one(item, dest, run, cancel, report, chunk_size))
    except CollectCancelled:
        run.undo()
        raise
    except OSError as error:
        run.undo()
        if item is None:
            message = f"Cannot create {plan.destination}: {error.strerror or error}."
        else:
            message = _describe(error, item) + " Nothing was changed: the copies made so far were removed."
        raise CollectError(message) from error
    except BaseException:
        run.undo()
        raise
    return mapping


# -- pointing the project at the copies -----------------------------------------------------------------


def relink_to_copies(project: Project, plan: CollectPlan, mapping: dict[str, str]) -> edits.Compound:
    """The one undoable edit that points the plan's assets at their copies.

    Assets removed meanwhile, or pointed at another file since the plan was made, are left out.

    Raises:
        EditError: no asset of the plan can be pointed at a copy.
    """
    children: list[edits.Edit] = []
    for item in plan.items:
        new = mapping.get(str(item.source))
        if new is None:
            continue
        for asset_id in item.asset_ids:
            if project.has_asset(asset_id) and _key(project.asset(asset_id).path) == _key(item.source):
                children.append(edits.RelinkAsset(asset_id, new))
    if not children:
        raise edits.EditError("Nothing to point at the collected copies: the media changed meanwhile.")
    return edits.Compound(COLLECT_LABEL, children)
