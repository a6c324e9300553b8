"""Downloading the SkyReels-V3 weights: from the Hugging Face hub or from a local folder.

Owns: the download sources (:class:`HubSource`, :class:`LocalFolderSource` and the :class:`Source`
protocol), what they describe and report (:class:`RemoteFile`, :class:`RepoListing`,
:class:`DownloadProgress`, :class:`DownloadResult`), the download errors, and :func:`download` itself:
the choice of files a task needs, a disk space check before starting, per-file and total progress,
resume, the child-process transfer of big files (so a cancel stops them at once), verification of what
arrived, the download record (manifest) and de-duplication of the components the extension and avatar
repositories share (Wan VAE, Wan UMT5-XXL encoder and its tokenizer).

The registry, folder checks and discovery it relies on live in :mod:`core.model_store`.

Must not import: PySide6, torch, diffusers, transformers, ``app``, ``models``. ``huggingface_hub``
is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.generation import Task
from core.model_store import (
    MANIFEST_NAME,
    MB,
    FolderReport,
    ModelRepo,
    StoreConfig,
    check_folder,
    download_command,
    existing_ancestor,
    expected_from_cache_blob,
    file_problem,
    find_repo,
    format_bytes,
    hub_cache_dir,
    hub_offline,
    locate,
    read_manifest,
    repo_for_task,
    sha256_file,
)

PARTIAL_DIR = ".skyreels/partial"


class DownloadError(RuntimeError):
    """A download that cannot go on; the message says why and what to do."""


class NotEnoughDiskSpace(DownloadError):
    """Raised before any byte is written when the destination lacks room for what is still missing."""


class DownloadCancelled(Exception):
    """The cancel event was set; partial files stay so the next run resumes them."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository as the source describes it (sha256 for LFS files, git id otherwise)."""

    path: str
    size: int | None
    sha256: str | None = None
    blob_id: str | None = None


@dataclass(frozen=True)
class RepoListing:
    repo_id: str
    revision: str
    files: tuple[RemoteFile, ...]


@dataclass(frozen=True)
class DownloadProgress:
    """Reported after every chunk. ``phase``: plan, download, link, verify, skip, done."""

    phase: str
    file: str
    file_index: int
    file_count: int
    file_done: int
    file_total: int | None
    done_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    report: FolderReport
    fetched_bytes: int
    linked_files: tuple[str, ...]
    skipped_files: tuple[str, ...]


class Source(Protocol):
    """Where files come from: the Hugging Face hub, or a local folder acting as a mirror."""

    name: str

    def list_files(self, repo_id: str, revision: str | None) -> RepoListing: ...

    def partial_bytes(
        self, listing: RepoListing, remote: RemoteFile, target: Path | None, cache: Path
    ) -> int: ...

    def fetch(
        self,
        listing: RepoListing,
        remote: RemoteFile,
        target: Path | None,
        cache: Path,
        on_bytes: Callable[[int], None],
        cancel: threading.Event,
    ) -> Path:
        """Bring one file to ``target/<path>`` (a folder) or into the hub cache (``target`` None)."""
        ...


def _walk_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in (".skyreels", ".cache", ".git"))
        for name in sorted(filenames):
            yield Path(dirpath) / name


class LocalFolderSource:
    """A folder (USB disk, network share, another machine's download) used as the download source.

    ``folders`` is one folder served for any repo id, or a mapping from repo id to folder. Copies go
    through ``<target>/.skyreels/partial/<path>.part``, so an interrupted copy resumes where it stopped.
    """

    name = "local folder"

    def __init__(
        self,
        folders: str | os.PathLike[str] | dict[str, str | os.PathLike[str]],
        *,
        chunk_size: int = 4 * 1024 * 1024,
    ) -> None:
        self._folders = (
            {k.lower(): Path(v) for k, v in folders.items()} if isinstance(folders, dict) else Path(folders)
        )
        self.chunk_size = chunk_size
        self.bytes_read = 0

    def _root(self, repo_id: str) -> Path:
        if isinstance(self._folders, Path):
            return self._folders
        repo = find_repo(repo_id)
        for rid in (repo_id, *(repo.ids if repo else ())):
            if rid.lower() in self._folders:
                return self._folders[rid.lower()]
        raise DownloadError(f"The local source has no folder for {repo_id}.")

    def list_files(self, repo_id: str, revision: str | None) -> RepoListing:
        root = self._root(repo_id)
        if not root.is_dir():
            raise DownloadError(f"Source folder {root} does not exist.")
        known = read_manifest(root).get("files", {})
        files = []
        for p in _walk_files(root):
            rel = p.relative_to(root).as_posix()
            files.append(RemoteFile(rel, p.stat().st_size, known.get(rel, {}).get("sha256")))
        return RepoListing(repo_id, revision or "local", tuple(files))

    def sha256(self, listing: RepoListing, remote: RemoteFile) -> str:
        return remote.sha256 or sha256_file(self._root(listing.repo_id) / remote.path)

    def _partial(self, remote: RemoteFile, target: Path) -> Path:
        return target / PARTIAL_DIR / (remote.path + ".part")

    def partial_bytes(
        self, listing: RepoListing, remote: RemoteFile, target: Path | None, cache: Path
    ) -> int:
        if target is None:
            return 0
        part = self._partial(remote, target)
        return part.stat().st_size if part.is_file() else 0

    def fetch(
        self,
        listing: RepoListing,
        remote: RemoteFile,
        target: Path | None,
        cache: Path,
        on_bytes: Callable[[int], None],
        cancel: threading.Event,
    ) -> Path:
        if target is None:
            raise DownloadError(
                "A local source copies into a folder, not into the Hugging Face cache: "
                "add --local-dir FOLDER."
            )
        src = self._root(listing.repo_id) / remote.path
        part = self._partial(remote, target)
        part.parent.mkdir(parents=True, exist_ok=True)
        offset = part.stat().st_size if part.is_file() else 0
        if remote.size is not None and offset > remote.size:
            part.unlink()
            offset = 0
        with src.open("rb") as fin, part.open("ab") as fout:
            fin.seek(offset)
            done = offset
            on_bytes(done)
            while True:
                if cancel.is_set():
                    raise DownloadCancelled(
                        f"cancelled during {remote.path} ({done} bytes kept for resuming)"
                    )
                chunk = fin.read(self.chunk_size)
                if not chunk:
                    break
                fout.write(chunk)
                self.bytes_read += len(chunk)
                done += len(chunk)
                on_bytes(done)
        final = target / remote.path
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, final)
        return final


_HUB_HINTS = {
    "GatedRepoError": "This repository is gated: accept its terms on https://huggingface.co/{repo} while "
    "logged in, then log in here (`huggingface-cli login`, or set HF_TOKEN, or pass --token).",
    "RepositoryNotFoundError": "The hub does not know {repo} (or it is private): check the id, or log in "
    "(`huggingface-cli login` / HF_TOKEN / --token) if you have access.",
    "RevisionNotFoundError": "That revision does not exist in {repo}; leave out --revision for the latest.",
    "EntryNotFoundError": "The file is no longer in {repo}; run the command again to fetch the current list.",
    "LocalEntryNotFoundError": "The hub cannot be reached (offline, or HF_HUB_OFFLINE is set). Connect to the "
    "network, set HF_ENDPOINT to a reachable mirror, or copy the files from another "
    "machine with --from FOLDER.",
    "OfflineModeIsEnabled": "HF_HUB_OFFLINE is set: unset it to download, or use --from FOLDER.",
}


def _hub_message(kind: str, detail: str, repo_id: str) -> str:
    hint = _HUB_HINTS.get(kind)
    if hint is None and ("Connection" in kind or "Timeout" in kind or "NameResolution" in detail):
        hint = _HUB_HINTS["LocalEntryNotFoundError"]
    if hint is None and "Consistency check failed" in detail:
        hint = "The file arrived with the wrong size (network trouble); run the command again to resume."
    first = detail.strip().splitlines()[0] if detail.strip() else kind
    return f"{first}\n{(hint or 'Run the command again to resume.').format(repo=repo_id)}"


def _hub_download(kwargs: dict[str, Any]) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars

    for bar in ("huggingface_hub.http_get", "huggingface_hub.xet_get"):
        disable_progress_bars(bar)  # our caller draws the progress
    return str(hf_hub_download(**kwargs))


def _hub_child(conn: Any, kwargs: dict[str, Any]) -> None:
    """Runs in a child process so a cancel can stop a transfer mid-file (the partial file stays)."""
    try:
        conn.send(("ok", _hub_download(kwargs)))
    except BaseException as exc:  # everything goes back to the parent as text
        conn.send(("error", type(exc).__name__, str(exc)))


class HubSource:
    """The Hugging Face hub (or the mirror in HF_ENDPOINT) through ``huggingface_hub``.

    Each file is fetched with ``hf_hub_download``, which resumes from its ``.incomplete`` file. Files of
    ``subprocess_min_bytes`` or more are fetched in a child process, so a cancel terminates the
    transfer at once instead of waiting for a 28 GB shard; small files are fetched in this process.
    """

    name = "Hugging Face hub"

    def __init__(
        self,
        token: str | None = None,
        endpoint: str | None = None,
        poll_s: float = 0.25,
        subprocess_min_bytes: int = 100 * MB,
    ) -> None:
        self.token = token
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None
        self.poll_s = poll_s
        self.subprocess_min_bytes = subprocess_min_bytes

    def list_files(self, repo_id: str, revision: str | None) -> RepoListing:
        if hub_offline():
            raise DownloadError(_hub_message("OfflineModeIsEnabled", "HF_HUB_OFFLINE is set.", repo_id))
        from huggingface_hub import HfApi

        try:
            info = HfApi(endpoint=self.endpoint, token=self.token).model_info(
                repo_id, revision=revision, files_metadata=True
            )
        except Exception as exc:
            raise DownloadError(_hub_message(type(exc).__name__, str(exc), repo_id)) from exc
        files = tuple(
            RemoteFile(
                s.rfilename,
                s.size if s.size is not None else (s.lfs.size if s.lfs else None),
                s.lfs.sha256 if s.lfs else None,
                None if s.lfs else s.blob_id,
            )
            for s in info.siblings or ()
        )
        return RepoListing(info.id or repo_id, info.sha or revision or "main", files)

    def _incomplete(
        self, listing: RepoListing, remote: RemoteFile, target: Path | None, cache: Path
    ) -> list[Path]:
        if target is None:
            blobs = cache / ("models--" + listing.repo_id.replace("/", "--")) / "blobs"
            return list(blobs.glob(f"{remote.sha256 or remote.blob_id or '*'}.incomplete"))
        return list((target / ".cache" / "huggingface" / "download").rglob("*.incomplete"))

    def partial_bytes(
        self, listing: RepoListing, remote: RemoteFile, target: Path | None, cache: Path
    ) -> int:
        if target is not None:  # local-dir partials are named by a hash of the path; only cache ones count
            return 0
        return sum(p.stat().st_size for p in self._incomplete(listing, remote, target, cache))

    def fetch(
        self,
        listing: RepoListing,
        remote: RemoteFile,
        target: Path | None,
        cache: Path,
        on_bytes: Callable[[int], None],
        cancel: threading.Event,
    ) -> Path:
        import multiprocessing

        kwargs: dict[str, Any] = {
            "repo_id": listing.repo_id,
            "filename": remote.path,
            "revision": listing.revision,
            "token": self.token,
            "endpoint": self.endpoint,
        }
        kwargs.update({"local_dir": str(target)} if target is not None else {"cache_dir": str(cache)})
        if (remote.size or 0) < self.subprocess_min_bytes:
            if cancel.is_set():
                raise DownloadCancelled(f"cancelled before {remote.path}")
            try:
                path = _hub_download(kwargs)
            except Exception as exc:
                message = _hub_message(type(exc).__name__, str(exc), listing.repo_id)
                raise DownloadError(f"{remote.path}: {message}") from exc
            on_bytes(remote.size or 0)
            return Path(path)
        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_hub_child, args=(sender, kwargs), daemon=True)
        child.start()
        sender.close()
        try:
            while not receiver.poll(self.poll_s):
                if cancel.is_set():
                    child.terminate()
                    raise DownloadCancelled(f"cancelled during {remote.path} (the partial file is kept)")
                if not child.is_alive() and not receiver.poll(0):
                    raise DownloadError(
                        f"The download of {remote.path} stopped (exit code {child.exitcode}); "
                        "run the command again to resume."
                    )
                with contextlib.suppress(OSError):  # the .incomplete file may just have been renamed
                    on_bytes(sum(p.stat().st_size for p in self._incomplete(listing, remote, target, cache)))
            message = receiver.recv()
        finally:  # also on Ctrl+C or a cancel: never leave a transfer running behind our back
            child.join(timeout=5)
            if child.is_alive():
                child.terminate()
                child.join(timeout=5)
            receiver.close()
        if message[0] != "ok":
            raise DownloadError(f"{remote.path}: " + _hub_message(message[1], message[2], listing.repo_id))
        return Path(message[1])


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file (the hub's ``blob_id`` for files not stored in LFS)."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # git's object id, not a security hash
    with path.open("rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def select_files(repo: ModelRepo, task: Task, files: Iterable[RemoteFile]) -> list[RemoteFile]:
    """The repository files a task needs (other tasks' transformers, docs and images are skipped)."""
    reqs = repo.requirements_for(task)
    return [f for f in files if any(r.owns(f.path) for r in reqs)]


def _unmet_requirements(repo: ModelRepo, task: Task, files: Sequence[RemoteFile]) -> list[str]:
    paths = [f.path for f in files]
    unmet = []
    for req in repo.requirements_for(task):
        if req.optional:
            continue
        if req.kind == "weights":
            ok = any(req.owns(p) and not p.endswith(".index.json") for p in paths)
        else:
            ok = any(p in (req.path, *req.alternatives) for p in paths)
        if not ok:
            unmet.append(req.label())
    return unmet


def _known_copies(search_folders: Iterable[Path], cache: Path) -> dict[str, Path]:
    """sha256 -> an existing file with that content (manifests of our folders, hub cache blob names)."""
    copies: dict[str, Path] = {}
    for folder in search_folders:
        for rel, meta in read_manifest(folder).get("files", {}).items():
            p = folder / rel
            if meta.get("sha256") and p.is_file() and not p.is_symlink():
                copies.setdefault(meta["sha256"], p)
    if cache.is_dir():
        for blobs in cache.glob("models--*/blobs"):
            for blob in blobs.iterdir():
                if re.fullmatch(r"[0-9a-f]{64}", blob.name):
                    copies.setdefault(blob.name, blob)
    return copies


def _link(existing: Path, new: Path) -> bool:
    """Hard link (same disk: one copy on disk) or, failing that, a symlink. False when neither works."""
    new.parent.mkdir(parents=True, exist_ok=True)
    if new.exists() or new.is_symlink():
        new.unlink()
    try:
        os.link(existing, new)
        return True
    except OSError:
        pass
    try:
        os.symlink(existing.resolve(), new)
        return True
    except OSError:
        return False


def _write_manifest(
    folder: Path, listing: RepoListing, source: str, entries: dict[str, dict[str, Any]]
) -> None:
    manifest = read_manifest(folder)
    files = manifest.get("files", {}) if manifest.get("repo_id") == listing.repo_id else {}
    files.update(entries)
    data = {
        "version": 1,
        "repo_id": listing.repo_id,
        "revision": listing.revision,
        "source": source,
        "files": dict(sorted(files.items())),
    }
    path = folder / MANIFEST_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def download(
    task: Task | str,
    repo_id: str | None = None,
    target: str | os.PathLike[str] | None = None,
    progress_cb: Callable[[DownloadProgress], None] | None = None,
    cancel_event: threading.Event | None = None,
    token: str | None = None,
    *,
    source: Source | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    verify: bool = True,
    disk_usage: Callable[[str], Any] = shutil.disk_usage,
    link_duplicates: bool = True,
    remember: bool = True,
    config_path: str | os.PathLike[str] | None = None,
) -> DownloadResult:
    """Download the files one task needs, with progress, resume, a disk check and verification.

    Args:
        task: the generation task; only its files are fetched (single-shot skips ``shot_transformer/``).
        repo_id: README or code id (default: the README id of the task's repository).
        target: a local folder to download into; ``None`` uses the Hugging Face cache (HF_HUB_CACHE).
        progress_cb: called with :class:`DownloadProgress` (any thread: the caller's).
        cancel_event: set it to stop; partial files are kept and the next call resumes them.
        token: Hugging Face token for gated repositories (default: HF_TOKEN or the saved login).
        source: where files come from (default :class:`HubSource`; :class:`LocalFolderSource` for a mirror).
        cache_dir: the hub cache (default from the environment).
        revision: branch, tag or commit (default: main).
        verify: check the size and sha256 (or git id) of every file that arrives.
        disk_usage: ``shutil.disk_usage`` (injectable for tests).
        link_duplicates: hard-link files whose content is already on this disk (shared VAE / T5) instead
            of downloading them again.
        remember: add a ``target`` folder to the user's model folders.
        config_path: the user's ``models.json``.

    Returns:
        A :class:`DownloadResult` with the folder and its final :class:`FolderReport`.

    Raises:
        NotEnoughDiskSpace: before anything is written, when the destination is too small.
        DownloadCancelled: when ``cancel_event`` was set.
        DownloadError: source errors (offline, gated, not found) and files that fail verification.
    """
    task = Task(task)
    repo = repo_for_task(task)
    repo_id = repo_id or repo.repo_id
    other = find_repo(repo_id)
    if other is not None and other is not repo:
        raise DownloadError(
            f"{repo_id} holds the {other.title} model, not the one '{task.value}' needs ({repo.repo_id})."
        )
    cancel = cancel_event or threading.Event()
    report = progress_cb or (lambda _p: None)
    source = source if source is not None else HubSource(token=token)
    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    target_dir = Path(target).expanduser().absolute() if target is not None else None

    try:
        listing = source.list_files(repo_id, revision)
    except DownloadError:
        # Offline, or the hub is unreachable: a complete copy already here is all the caller needs.
        have = target_dir if target_dir is not None else locate(task, repo_id, cache_dir=cache).path
        if have is not None and check_folder(task, have).ready:
            return DownloadResult(have, check_folder(task, have), 0, (), ())
        raise
    unmet = _unmet_requirements(repo, task, listing.files)
    if unmet:
        raise DownloadError(
            f"{listing.repo_id} does not contain what '{task.value}' needs: {', '.join(unmet)}. "
            f"Check the repo id (expected {' or '.join(repo.ids)})."
        )
    wanted = select_files(repo, task, listing.files)
    if target_dir is not None:
        dest_root = target_dir
        search = (
            [p for p in target_dir.parent.iterdir() if p.is_dir() and p != target_dir]
            if target_dir.parent.is_dir()
            else []
        )
    else:
        dest_root = cache / ("models--" + listing.repo_id.replace("/", "--")) / "snapshots" / listing.revision
        search = []
    search += [Path(f) for f in StoreConfig.load(config_path).folders]
    manifest_files = read_manifest(dest_root).get("files", {}) if target_dir is not None else {}
    copies = _known_copies(search, cache) if link_duplicates else {}

    # Plan: what is already here, what can be linked, what must be fetched (and how much of it is).
    todo: list[tuple[RemoteFile, str]] = []
    needed = 0
    total = sum(f.size or 0 for f in wanted)
    copy_sizes = {p.stat().st_size for p in copies.values()}
    sha_of = getattr(source, "sha256", None)
    for f in wanted:
        final = dest_root / f.path
        if final.is_file() and (f.size is None or final.stat().st_size == f.size):
            todo.append((f, "present"))
            continue
        if f.sha256 is None and f.size in copy_sizes and callable(sha_of):
            # A same-size file is already on disk: learn this file's hash to see if it is the same.
            f = dataclasses.replace(f, sha256=sha_of(listing, f))
        if f.sha256 and f.sha256 in copies:
            todo.append((f, "link"))
        else:
            todo.append((f, "fetch"))
            in_blobs = (
                target_dir is None
                and f.sha256 is not None
                and (dest_root.parent.parent / "blobs" / f.sha256).is_file()
            )
            if not in_blobs:  # a blob of an older snapshot is reused by hf_hub_download: no new bytes
                needed += max(0, (f.size or 0) - source.partial_bytes(listing, f, target_dir, cache))
    where = existing_ancestor(target_dir if target_dir is not None else cache)
    free = int(disk_usage(str(where)).free)
    headroom = int(needed * 0.02) + 50 * MB if needed else 0
    if needed + headroom > free:
        raise NotEnoughDiskSpace(
            f"Not enough disk space in {where}: '{task.value}' still needs {format_bytes(needed)} "
            f"(+{format_bytes(headroom)} headroom) but only {format_bytes(free)} is free. Free some space, or "
            f"download to a bigger disk with `{download_command(task)} --local-dir /path/on/bigger/disk` "
            f"(or set HF_HUB_CACHE)."
        )

    done = 0
    fetched = 0
    linked: list[str] = []
    skipped: list[str] = []
    entries: dict[str, dict[str, Any]] = {}
    count = len(todo)
    for index, (f, action) in enumerate(todo):
        if cancel.is_set():
            raise DownloadCancelled("cancelled before " + f.path)
        final = dest_root / f.path
        size = f.size or 0

        def emit(
            phase: str,
            file_done: int,
            f: RemoteFile = f,
            index: int = index,
            base: int = done,
            size: int = size,
        ) -> None:
            so_far = base + (size if phase == "verify" else file_done)  # hashing re-reads, it adds nothing
            report(DownloadProgress(phase, f.path, index, count, file_done, f.size, so_far, total))

        blob_linked = False
        if action == "link" and target_dir is None:
            blob = cache / ("models--" + listing.repo_id.replace("/", "--")) / "blobs" / str(f.sha256)
            if not blob.exists() and _link(copies[str(f.sha256)], blob):
                blob_linked = True
                linked.append(f.path)
                emit("link", size)
            action = "fetch"  # hf_hub_download finds the blob and only writes the snapshot pointer
        elif action == "link":
            if _link(copies[str(f.sha256)], final):
                linked.append(f.path)
                emit("link", size)
            else:
                action = "fetch"
        if action == "fetch":
            before = source.partial_bytes(listing, f, target_dir, cache)
            got = source.fetch(listing, f, target_dir, cache, lambda n: emit("download", n), cancel)
            fetched += 0 if blob_linked else max(0, size - before)
            final = got
        elif action == "present":
            skipped.append(f.path)
            emit("skip", size)
        entry: dict[str, Any] = {"size": final.stat().st_size}
        known_sha = manifest_files.get(f.path, {}).get("sha256")
        if known_sha is None and target_dir is None:
            known_sha = (expected_from_cache_blob(final) or {}).get("sha256")  # the blob's name
        if action == "present" and known_sha and f.sha256 in (None, known_sha):
            # Verified when it arrived; re-hashing tens of GB on every run is `models verify`'s job.
            entry["sha256"] = known_sha
        elif verify:
            emit("verify", 0)
            problem = None
            if f.size is not None and final.stat().st_size != f.size:
                problem = f"size {final.stat().st_size} bytes, expected {f.size}"
            else:
                entry["sha256"] = digest = sha256_file(final, lambda n: emit("verify", n))
                if f.sha256 and digest != f.sha256:
                    problem = f"sha256 {digest} differs from the source's {f.sha256}"
                elif not f.sha256 and f.blob_id and git_blob_sha1(final) != f.blob_id:
                    problem = f"git id differs from the source's {f.blob_id}"
                elif not f.sha256 and not f.blob_id:
                    problem = file_problem(final)
            if problem:
                blob = final.resolve()
                final.unlink()
                if blob != final and blob.is_file():
                    blob.unlink()  # a damaged cache blob would otherwise be reused by the next run
                raise DownloadError(
                    f"{f.path} arrived damaged ({problem}); it was removed. Run "
                    f"`{download_command(task)}` again to fetch it anew."
                )
        else:
            entry["sha256"] = known_sha or f.sha256
        entry = {k: v for k, v in entry.items() if v is not None}
        entries[f.path] = entry
        done += size
        emit("done", size)

    if target_dir is None:
        dest_root = _snapshot_root(dest_root, listing, revision, cache)
    else:
        _write_manifest(dest_root, listing, source.name, entries)
        if remember:
            StoreConfig.load(config_path).remember(dest_root)
    return DownloadResult(dest_root, check_folder(task, dest_root), fetched, tuple(linked), tuple(skipped))


def _snapshot_root(root: Path, listing: RepoListing, revision: str | None, cache: Path) -> Path:
    """Point ``refs/<revision>`` at the commit we downloaded (we fetch by commit, which writes no ref)."""
    ref_name = revision or "main"
    if not re.fullmatch(r"[0-9a-f]{40}", ref_name) and root.is_dir():
        ref = cache / ("models--" + listing.repo_id.replace("/", "--")) / "refs" / ref_name
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(listing.revision)
    return root
