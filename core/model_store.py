"""Where the SkyReels-V3 weights are and whether they are complete.

Owns: the registry of the three official model repositories (README ids and the ids in the official
code), the files each task needs (spec sections 3.2, 4.1, 5.2), folder checks (missing / partial /
ready with the exact missing or damaged files), discovery in the Hugging Face cache and in folders the
user pointed to (a small JSON config), and the resolution of a task to a ready folder for the pipelines.
Getting the files (hub or local-folder sources, progress, resume, disk check, verification,
de-duplication of shared components) is :mod:`core.model_download`.

The spec value ``"tiny"`` (random tiny models for tests and demos) is built by ``models/tiny.py``;
this module only recognises it (:func:`is_tiny`) and never resolves it to files.

Must not import: PySide6, torch, diffusers, transformers, ``app``, ``models``. ``huggingface_hub``
is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import struct
import sys
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.generation import ModelsMissing, Task

TINY_SPEC = "tiny"
GB = 1_000_000_000
MB = 1_000_000
APP_DIR_NAME = "skyreels-studio"
MANIFEST_NAME = ".skyreels/manifest.json"


def is_tiny(spec: str | None) -> bool:
    """True for the spec value handled by ``models/tiny.py`` (never resolved to files here)."""
    return spec is not None and spec.strip().lower() == TINY_SPEC


def format_bytes(n: float | None) -> str:
    """Decimal units, like the Hugging Face website: ``40.5 GB``."""
    if n is None:
        return "?"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest existing parent: where to ask the disk's free space for something that
    is about to be created."""
    path = path.expanduser().absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def download_command(task: Task | str) -> str:
    return f"python main.py models download --task {Task(task).value}"


# ---------------------------------------------------------------------------------------------
# Registry


class Status(enum.StrEnum):
    MISSING = "missing"
    PARTIAL = "partial"
    READY = "ready"


@dataclass(frozen=True)
class Requirement:
    """One required file, or one set of model weights, inside a model folder.

    ``kind == "file"``: ``path`` (or one of ``alternatives``) must exist.
    ``kind == "weights"``: the folder ``path`` ("" = the root) must hold either a
    ``*.safetensors.index.json`` whose listed shards all exist, or (without an index) at least one
    ``*.safetensors`` file, or one of ``alternatives`` (e.g. ``pytorch_model.bin``).
    ``shared`` names a component that other repositories ship byte-identical (de-duplicated on
    download); ``tasks`` limits the requirement to some of the repository's tasks.
    """

    path: str
    component: str
    approx_bytes: int
    kind: str = "file"
    alternatives: tuple[str, ...] = ()
    optional: bool = False
    shared: str | None = None
    tasks: tuple[Task, ...] = ()

    def applies_to(self, task: Task) -> bool:
        return not self.tasks or task in self.tasks

    def label(self) -> str:
        if self.kind == "weights":
            folder = f"{self.path}/" if self.path else ""
            return f"{folder}*.safetensors (all shards listed in the index)"
        if self.alternatives:
            return " or ".join((self.path, *self.alternatives))
        return self.path

    def owns(self, rel_path: str) -> bool:
        """Whether a repository file belongs to this requirement (used to pick files to download)."""
        if self.kind == "file":
            return rel_path in (self.path, *self.alternatives)
        folder, _, name = rel_path.rpartition("/")
        if folder != self.path:
            return False
        return name.endswith((".safetensors", ".safetensors.index.json")) or name in self.alternatives


def _tokenizer(
    folder: str,
    component: str,
    *,
    model_file: str,
    tasks: tuple[Task, ...] = (),
    shared: str | None = None,
    optional: bool = False,
) -> tuple[Requirement, ...]:
    return (
        Requirement(
            f"{folder}/tokenizer_config.json", component, 3_000, tasks=tasks, shared=shared, optional=optional
        ),
        Requirement(
            f"{folder}/tokenizer.json",
            component,
            17 * MB,
            alternatives=(f"{folder}/{model_file}",),
            tasks=tasks,
            shared=shared,
            optional=optional,
        ),
        Requirement(
            f"{folder}/special_tokens_map.json", component, 3_000, optional=True, tasks=tasks, shared=shared
        ),
    )


@dataclass(frozen=True)
class ModelRepo:
    """One official model repository: its ids, the tasks it serves and the files they need."""

    key: str
    title: str
    repo_id: str  # the README (public) id, preferred
    aliases: tuple[str, ...]  # the ids in the official code (HF redirects renamed repos)
    tasks: tuple[Task, ...]
    layout: str
    requirements: tuple[Requirement, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.repo_id, *self.aliases)

    def requirements_for(self, task: Task | None = None) -> tuple[Requirement, ...]:
        return tuple(r for r in self.requirements if task is None or r.applies_to(task))

    def approx_bytes(self, task: Task | None = None) -> int:
        return sum(r.approx_bytes for r in self.requirements_for(task))

    def folder_names(self) -> tuple[str, ...]:
        """Names a local copy is usually given (``SkyReels-V3-R2V-14B``, ``models--Skywork--…``)."""
        names = []
        for repo_id in self.ids:
            names.append(repo_id.split("/")[-1].lower())
            names.append("models--" + repo_id.replace("/", "--").lower())
        return tuple(names)


_EXT = (Task.SINGLE_SHOT_EXTENSION, Task.SHOT_SWITCHING_EXTENSION)
_WAN_T5 = Requirement(
    "models_t5_umt5-xxl-enc-bf16.pth",
    "text encoder (UMT5-XXL, Wan format)",
    11_360 * MB,
    shared="wan-umt5-xxl",
)
_WAN_VAE = Requirement("Wan2.1_VAE.pth", "VAE (Wan2.1)", 508 * MB, shared="wan2.1-vae")
_UMT5_TOKENIZER = _tokenizer(
    "google/umt5-xxl", "T5 tokenizer", model_file="spiece.model", shared="umt5-xxl-tokenizer"
)

REPOS: tuple[ModelRepo, ...] = (
    ModelRepo(
        key="r2v",
        title="Reference to video (R2V 14B)",
        repo_id="Skywork/SkyReels-V3-R2V-14B",
        aliases=("Skywork/SkyReels-V3-Reference2Video",),
        tasks=(Task.REFERENCE_TO_VIDEO,),
        layout="diffusers pipeline folder",
        requirements=(
            Requirement("model_index.json", "pipeline index", 1_000),
            Requirement("scheduler/scheduler_config.json", "scheduler", 1_000),
            Requirement("transformer/config.json", "transformer", 1_000),
            Requirement("transformer", "transformer (14B)", 28_600 * MB, kind="weights"),
            Requirement("vae/config.json", "VAE", 1_000),
            Requirement("vae", "VAE", 508 * MB, kind="weights"),
            Requirement("text_encoder/config.json", "text encoder (UMT5-XXL)", 1_000),
            Requirement("text_encoder", "text encoder (UMT5-XXL)", 11_400 * MB, kind="weights"),
            *_tokenizer("tokenizer", "tokenizer", model_file="spiece.model"),
        ),
    ),
    ModelRepo(
        key="extension",
        title="Video extension and shot switching (V2V 14B)",
        repo_id="Skywork/SkyReels-V3-V2V-14B",
        aliases=("Skywork/SkyReels-V3-Video-Extension",),
        tasks=_EXT,
        layout="original Wan format",
        requirements=(
            Requirement(
                "transformer/config.json",
                "single-shot transformer",
                1_000,
                tasks=(Task.SINGLE_SHOT_EXTENSION,),
            ),
            Requirement(
                "transformer",
                "single-shot transformer (14B)",
                28_600 * MB,
                kind="weights",
                tasks=(Task.SINGLE_SHOT_EXTENSION,),
            ),
            Requirement(
                "shot_transformer/config.json",
                "shot-switching transformer",
                1_000,
                tasks=(Task.SHOT_SWITCHING_EXTENSION,),
            ),
            Requirement(
                "shot_transformer",
                "shot-switching transformer (14B)",
                28_600 * MB,
                kind="weights",
                tasks=(Task.SHOT_SWITCHING_EXTENSION,),
            ),
            _WAN_VAE,
            _WAN_T5,
            *_UMT5_TOKENIZER,
        ),
    ),
    ModelRepo(
        key="avatar",
        title="Talking avatar (A2V 19B)",
        repo_id="Skywork/SkyReels-V3-A2V-19B",
        aliases=("Skywork/SkyReels-V3-TalkingAvatar",),
        tasks=(Task.TALKING_AVATAR,),
        layout="original Wan format, flat",
        requirements=(
            Requirement("config.json", "avatar transformer", 1_000),
            Requirement("", "avatar transformer (19B)", 37_800 * MB, kind="weights"),
            _WAN_VAE,
            _WAN_T5,
            *_UMT5_TOKENIZER,
            Requirement(
                "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
                "image encoder (CLIP ViT-H/14)",
                4_770 * MB,
            ),
            # The official code loads this tokenizer but never uses it: reported, never blocking.
            *_tokenizer(
                "xlm-roberta-large",
                "CLIP text tokenizer (unused)",
                model_file="sentencepiece.bpe.model",
                optional=True,
            ),
            Requirement("chinese-wav2vec2-base/config.json", "audio encoder (wav2vec2)", 2_000),
            Requirement("chinese-wav2vec2-base/preprocessor_config.json", "audio encoder (wav2vec2)", 1_000),
            Requirement(
                "chinese-wav2vec2-base",
                "audio encoder (wav2vec2)",
                380 * MB,
                kind="weights",
                alternatives=("pytorch_model.bin",),
            ),
        ),
    ),
)


def repo_for_task(task: Task | str) -> ModelRepo:
    task = Task(task)
    for repo in REPOS:
        if task in repo.tasks:
            return repo
    raise KeyError(task)  # pragma: no cover - every Task has a repository


def find_repo(name: str) -> ModelRepo | None:
    """A registry entry from a repo id, an alias, a bare repo name or a registry key (any case)."""
    wanted = name.strip().strip("/").lower()
    for repo in REPOS:
        if wanted == repo.key or wanted in (i.lower() for i in repo.ids):
            return repo
        if wanted in (i.split("/")[-1].lower() for i in repo.ids):
            return repo
    return None


def _looks_like_repo_id(spec: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", spec) is not None and not spec.startswith(".")


# ---------------------------------------------------------------------------------------------
# Checking a folder


@dataclass(frozen=True)
class FileProblem:
    path: str
    reason: str


@dataclass(frozen=True)
class FolderReport:
    """What a folder holds for one task. ``missing``/``corrupt`` are exact relative paths."""

    task: Task
    path: Path
    status: Status
    missing: tuple[str, ...] = ()
    corrupt: tuple[FileProblem, ...] = ()
    optional_missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    present_bytes: int = 0
    approx_missing_bytes: int = 0

    @property
    def ready(self) -> bool:
        return self.status is Status.READY

    def lines(self) -> list[str]:
        """Human-readable details, one problem per line (empty when ready and clean)."""
        out = [f"missing: {m}" for m in self.missing]
        out += [f"damaged: {p.path} ({p.reason})" for p in self.corrupt]
        out += [f"not needed, missing (fine): {m}" for m in self.optional_missing]
        out += [
            f"unexpected: {u} (an extra *.safetensors next to an index; delete it, the official loader "
            f"would load it too)"
            for u in self.unexpected
        ]
        return out


def file_problem(path: Path, expected: dict[str, Any] | None = None, *, deep: bool = False) -> str | None:
    """Cheap structural check of one weight/config file; ``None`` when it looks intact.

    Truncated downloads are the usual damage: a safetensors header promises more bytes than the file
    has, a zip-format ``.pth`` loses its central directory, a JSON file stops mid-way.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if expected and expected.get("size") is not None and size != expected["size"]:
        return f"size {size} bytes, expected {expected['size']}"
    if size == 0:
        return "empty file"
    name = path.name
    try:
        if name.endswith(".safetensors"):
            with path.open("rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                if header_len > size - 8 or header_len > 100 * MB:
                    return "safetensors header is cut off (file truncated)"
                header = json.loads(f.read(header_len))
            end = max(
                (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0
            )
            if 8 + header_len + end != size:
                return f"truncated: {size} bytes on disk, the header describes {8 + header_len + end}"
        elif name.endswith(".json"):
            data = json.loads(path.read_text(encoding="utf-8"))
            if name.endswith(".index.json") and not isinstance(data.get("weight_map"), dict):
                return "index has no weight_map"
        elif name.endswith((".pth", ".bin", ".pt")):
            with path.open("rb") as f:
                head = f.read(2)
            if head[:1] == b"\x80":
                pass  # legacy (pre-zip) torch pickle format: nothing cheap to check
            elif not zipfile.is_zipfile(path):
                return "not a complete torch checkpoint (zip directory missing: file truncated)"
            else:
                with zipfile.ZipFile(path) as zf:
                    for info in zf.infolist():
                        if info.header_offset + info.compress_size > size:
                            return "truncated: an entry extends past the end of the file"
    except (ValueError, KeyError, TypeError, struct.error, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if deep and expected and expected.get("sha256"):
        digest = sha256_file(path)
        if digest != expected["sha256"]:
            return f"sha256 {digest[:12]}… differs from the expected {expected['sha256'][:12]}…"
    return None


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            h.update(chunk)
            done += len(chunk)
            if on_bytes:
                on_bytes(done)
    return h.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The record ``download`` writes next to the files (sizes and sha256 of what arrived), or ``{}``."""
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def expected_from_cache_blob(path: Path) -> dict[str, Any] | None:
    """In the hub cache a snapshot file links to ``blobs/<sha256>`` (LFS) or ``blobs/<git sha1>``."""
    if not path.is_symlink():
        return None
    blob = path.resolve().name
    if re.fullmatch(r"[0-9a-f]{64}", blob):
        return {"sha256": blob}
    return None


def _check_weights(
    folder: Path,
    req: Requirement,
    rel: str,
    manifest: dict[str, Any],
    deep: bool,
) -> tuple[list[str], list[FileProblem], list[str], list[Path]]:
    """Returns (missing, corrupt, unexpected, present files) for a weights requirement."""
    missing: list[str] = []
    corrupt: list[FileProblem] = []
    unexpected: list[str] = []
    present: list[Path] = []
    prefix = f"{rel}/" if rel else ""
    indexes = sorted(folder.glob("*.safetensors.index.json")) if folder.is_dir() else []
    shards = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    files: dict[str, dict[str, Any]] = manifest.get("files", {})
    if indexes:
        index = indexes[0]
        present.append(index)
        problem = file_problem(index, files.get(prefix + index.name), deep=deep)
        if problem:
            return missing, [FileProblem(prefix + index.name, problem)], unexpected, present
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        listed = sorted(set(weight_map.values()))
        for name in listed:
            shard = folder / name
            if not shard.is_file():
                missing.append(prefix + name)
                continue
            present.append(shard)
            problem = file_problem(shard, files.get(prefix + name), deep=deep)
            if problem:
                corrupt.append(FileProblem(prefix + name, problem))
        unexpected = [prefix + s.name for s in shards if s.name not in listed]
        return missing, corrupt, unexpected, present
    if shards:
        for shard in shards:
            present.append(shard)
            problem = file_problem(shard, files.get(prefix + shard.name), deep=deep)
            if problem:
                corrupt.append(FileProblem(prefix + shard.name, problem))
        return missing, corrupt, unexpected, present
    for alt in req.alternatives:
        candidate = folder / alt
        if candidate.is_file():
            present.append(candidate)
            problem = file_problem(candidate, files.get(prefix + alt), deep=deep)
            if problem:
                corrupt.append(FileProblem(prefix + alt, problem))
            return missing, corrupt, unexpected, present
    stem = "model" if rel in ("text_encoder", "chinese-wav2vec2-base") else "diffusion_pytorch_model"
    missing.append(f"{prefix}{stem}.safetensors (or {stem}.safetensors.index.json with all its shards)")
    return missing, corrupt, unexpected, present


def check_folder(task: Task | str, path: str | os.PathLike[str], *, deep: bool = False) -> FolderReport:
    """Check a model folder for one task.

    Args:
        task: the generation task (``Task`` or its value).
        path: the folder (a repository snapshot or local copy).
        deep: also hash files against the sha256 recorded at download time (slow: reads every byte).

    Returns:
        A :class:`FolderReport`: ``ready`` when every required file is present and intact, ``missing``
        when none is, ``partial`` otherwise, with the exact relative paths at fault.
    """
    task = Task(task)
    root = Path(path).expanduser()
    repo = repo_for_task(task)
    if not root.is_dir():
        missing = tuple(r.label() for r in repo.requirements_for(task) if not r.optional)
        return FolderReport(
            task, root, Status.MISSING, missing=missing, approx_missing_bytes=repo.approx_bytes(task)
        )
    manifest = read_manifest(root)
    files: dict[str, dict[str, Any]] = manifest.get("files", {})
    missing: list[str] = []
    corrupt: list[FileProblem] = []
    optional_missing: list[str] = []
    unexpected: list[str] = []
    present_bytes = 0
    found_any = False
    missing_bytes = 0
    for req in repo.requirements_for(task):
        if req.kind == "weights":
            known = manifest if files else _cache_manifest(root, req)
            m, c, u, present = _check_weights(
                root / req.path if req.path else root, req, req.path, known, deep
            )
        else:
            m, c, u, present = [], [], [], []
            for candidate in (req.path, *req.alternatives):
                p = root / candidate
                if p.is_file():
                    present.append(p)
                    expected = files.get(candidate) or expected_from_cache_blob(p)
                    problem = file_problem(p, expected, deep=deep)
                    if problem:
                        c.append(FileProblem(candidate, problem))
                    break
            else:
                m.append(req.label())
        found_any = found_any or bool(present)
        present_bytes += sum(p.stat().st_size for p in present if p.exists())
        if req.optional:
            optional_missing += m
            continue
        if m or c:
            missing_bytes += req.approx_bytes if not present else 0
        missing += m
        corrupt += c
        unexpected += u
    if not missing and not corrupt:
        status = Status.READY
    elif found_any:
        status = Status.PARTIAL
    else:
        status = Status.MISSING
    return FolderReport(
        task,
        root,
        status,
        tuple(missing),
        tuple(corrupt),
        tuple(optional_missing),
        tuple(unexpected),
        present_bytes,
        missing_bytes,
    )


def _cache_manifest(root: Path, req: Requirement) -> dict[str, Any]:
    """Expected sha256 for weights inside a hub-cache snapshot, read from the blob names."""
    folder = root / req.path if req.path else root
    files: dict[str, dict[str, Any]] = {}
    if folder.is_dir():
        for p in folder.iterdir():
            expected = expected_from_cache_blob(p)
            if expected:
                files[f"{req.path}/{p.name}" if req.path else p.name] = expected
    return {"files": files}


# ---------------------------------------------------------------------------------------------
# Where to look: the user's config and the Hugging Face cache


def user_config_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData/Roaming") / "SkyReels Studio"
    if sys.platform == "darwin":
        return Path.home() / "Library/Application Support/SkyReels Studio"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / APP_DIR_NAME


def default_config_path() -> Path:
    """``SKYREELS_MODELS_CONFIG`` overrides the per-user ``models.json``."""
    override = os.environ.get("SKYREELS_MODELS_CONFIG")
    return Path(override) if override else user_config_dir() / "models.json"


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (HF_HUB_CACHE, HF_HOME)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class StoreConfig:
    """The user's model folders (``models.json``); written atomically."""

    path: Path
    folders: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> StoreConfig:
        cfg_path = Path(path) if path is not None else default_config_path()
        try:
            data = json.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(cfg_path)
        except (OSError, ValueError):
            # A damaged config must not stop the app: start empty, the next save rewrites it.
            return cls(cfg_path)
        folders = [str(f) for f in data.get("folders", []) if isinstance(f, str)]
        return cls(cfg_path, folders)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": 1, "folders": self.folders}, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)

    def remember(self, folder: str | os.PathLike[str]) -> bool:
        value = str(Path(folder).expanduser().resolve())
        if value in self.folders:
            return False
        self.folders.append(value)
        self.save()
        return True

    def forget(self, folder: str | os.PathLike[str]) -> bool:
        value = str(Path(folder).expanduser().resolve())
        if value not in self.folders:
            return False
        self.folders.remove(value)
        self.save()
        return True


def cache_snapshots(repo_ids: Iterable[str], cache_dir: Path | None = None) -> list[tuple[str, Path]]:
    """Snapshot folders of the given repos in the hub cache, the ``main`` ref first. No network."""
    cache = Path(cache_dir) if cache_dir else hub_cache_dir()
    if not cache.is_dir():
        return []
    wanted = {"models--" + r.replace("/", "--").lower(): r for r in repo_ids}
    found: list[tuple[str, Path]] = []
    for entry in sorted(cache.iterdir()):
        repo_id = wanted.get(entry.name.lower())
        if repo_id is None or not (entry / "snapshots").is_dir():
            continue
        actual_id = entry.name[len("models--") :].replace("--", "/", 1)
        main_snapshot: Path | None = None
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(actual_id, "config.json", cache_dir=cache) or try_to_load_from_cache(
                actual_id, "model_index.json", cache_dir=cache
            )
            if isinstance(hit, str):
                main_snapshot = Path(hit).parent
        except ImportError:  # pragma: no cover - huggingface_hub is a dependency
            pass
        ref = entry / "refs" / "main"
        if main_snapshot is None and ref.is_file():
            candidate = entry / "snapshots" / ref.read_text().strip()
            main_snapshot = candidate if candidate.is_dir() else None
        snapshots = sorted(
            (p for p in (entry / "snapshots").iterdir() if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        if main_snapshot is not None:
            snapshots = [main_snapshot, *[s for s in snapshots if s != main_snapshot]]
        found += [(actual_id, s) for s in snapshots]
    return found


def guess_repo(folder: str | os.PathLike[str]) -> ModelRepo | None:
    """Which repository a folder holds: its download record, its name, then its layout."""
    root = Path(folder)
    recorded = read_manifest(root).get("repo_id")
    if isinstance(recorded, str) and find_repo(recorded):
        return find_repo(recorded)
    for part in (root.name, *(p.name for p in root.parents[:3])):
        for repo in REPOS:
            if part.lower() in repo.folder_names():
                return repo
    if (root / "model_index.json").is_file():
        return find_repo("r2v")
    if (root / "chinese-wav2vec2-base").is_dir() or (
        (root / "config.json").is_file() and any(root.glob("models_clip_*.pth"))
    ):
        return find_repo("avatar")
    if (root / "shot_transformer").is_dir() or (
        (root / "transformer").is_dir() and (root / _WAN_VAE.path).is_file()
    ):
        return find_repo("extension")
    return None


def _candidate_folders(repo: ModelRepo, folder: Path) -> list[Path]:
    """A folder the user named may be the model folder itself or hold it under a usual name."""
    folder = folder.expanduser()
    if not folder.is_dir():
        return []
    out = [folder]
    names = repo.folder_names()
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            if child.name.lower().startswith("models--"):
                out += [s for s in sorted((child / "snapshots").glob("*")) if s.is_dir()]
            else:
                out.append(child)
    return out


@dataclass(frozen=True)
class ModelLocation:
    """The answer of :func:`locate`: the best folder found (or none) and everything looked at."""

    task: Task
    spec: str | None
    repo: ModelRepo
    path: Path | None
    origin: str  # "folder", "config", "hub-cache", "tiny" or "none"
    report: FolderReport | None
    looked_at: tuple[FolderReport, ...] = ()

    @property
    def status(self) -> Status:
        if self.origin == "tiny":
            return Status.READY
        return self.report.status if self.report else Status.MISSING

    @property
    def is_tiny(self) -> bool:
        return self.origin == "tiny"


def _rank(report: FolderReport) -> tuple[int, int]:
    order = {Status.READY: 0, Status.PARTIAL: 1, Status.MISSING: 2}
    return order[report.status], len(report.missing) + len(report.corrupt)


def locate(
    task: Task | str,
    spec: str | None = None,
    extra_dirs: Sequence[str | os.PathLike[str]] = (),
    *,
    config_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ModelLocation:
    """Find the model folder for a task without touching the network.

    Args:
        task: the generation task.
        spec: a local folder, a Hugging Face repo id (README or code id), ``"tiny"`` (returned as is,
            for ``models/tiny.py``), or ``None`` for the defaults.
        extra_dirs: more folders to search (each may be a model folder or contain one).
        config_path: the user's ``models.json`` (default: :func:`default_config_path`).
        cache_dir: the hub cache (default: from HF_HUB_CACHE / HF_HOME).

    Returns:
        A :class:`ModelLocation`; ``path`` is the best candidate (ready first, then the most complete).
    """
    task = Task(task)
    repo = repo_for_task(task)
    spec = spec.strip() or None if spec else None  # a request's empty model field means the defaults
    if is_tiny(spec):
        return ModelLocation(task, spec, repo, None, "tiny", None)
    cache = Path(cache_dir) if cache_dir else None
    candidates: list[tuple[str, Path]] = []
    if spec and (Path(spec).expanduser().exists() or not _looks_like_repo_id(spec)):
        candidates += [("folder", p) for p in _candidate_folders(repo, Path(spec))] or [
            ("folder", Path(spec))
        ]
    elif spec:
        known = find_repo(spec)
        ids = (spec, *[i for i in known.ids if i.lower() != spec.lower()]) if known else (spec,)
        candidates += [("hub-cache", p) for _, p in cache_snapshots(ids, cache)]
    else:
        config = StoreConfig.load(config_path)
        for origin, folders in (("folder", extra_dirs), ("config", config.folders)):
            for folder in folders:
                candidates += [
                    (origin, p)
                    for p in _candidate_folders(repo, Path(folder))
                    if guess_repo(p) in (repo, None)  # another model's folder is no candidate
                ]
        candidates += [("hub-cache", p) for _, p in cache_snapshots(repo.ids, cache)]
    reports: list[tuple[str, FolderReport]] = []
    seen: set[Path] = set()
    for origin, path in candidates:
        key = path.resolve() if path.exists() else path
        if key in seen:
            continue
        seen.add(key)
        reports.append((origin, check_folder(task, path)))
    useful = [(o, r) for o, r in reports if r.status is not Status.MISSING]
    looked = tuple(r for _, r in reports)
    if not useful:
        return ModelLocation(
            task, spec, repo, None, "none", reports[0][1] if spec and reports else None, looked
        )
    origin, best = min(useful, key=lambda item: _rank(item[1]))
    return ModelLocation(task, spec, repo, best.path, origin, best, looked)


def missing_message(location: ModelLocation) -> str:
    """The text of :class:`ModelsMissing`: what is missing, where we looked and the command to fix it."""
    task, repo = location.task, location.repo
    lines = [f"The {repo.title} weights for '{task.value}' are not ready on this machine."]
    report = location.report
    holds = guess_repo(report.path) if report is not None else None
    if report is not None and holds is not None and holds is not repo:
        lines.append(
            f"Folder {report.path} holds the {holds.title} model ({holds.repo_id}), not {repo.repo_id}."
        )
    elif report is not None and report.status is not Status.MISSING:
        lines.append(f"Folder {report.path} is {report.status.value}:")
        lines += [f"  - {line}" for line in report.lines() if not line.startswith("not needed")]
    else:
        if location.spec:
            lines.append(f"Nothing usable at '{location.spec}'.")
        lines.append(
            "Required files: " + ", ".join(r.label() for r in repo.requirements_for(task) if not r.optional)
        )
    others = [r for r in location.looked_at if report is None or r.path != report.path]
    if others:
        lines.append("Also looked in: " + "; ".join(f"{r.path} ({r.status.value})" for r in others))
    elif not location.looked_at:
        lines.append(
            f"Looked in the Hugging Face cache ({hub_cache_dir()}) and the folders in "
            f"{default_config_path()}: no copy of {' or '.join(repo.ids)}."
        )
    lines.append(f"Get them (about {format_bytes(repo.approx_bytes(task))}): {download_command(task)}")
    lines.append(
        f"Or use a copy you already have: python main.py models locate --task {task.value} "
        f"/path/to/folder --remember"
    )
    return "\n".join(lines)


def resolve_for_pipeline(
    task: Task | str,
    spec: str | None = None,
    *,
    extra_dirs: Sequence[str | os.PathLike[str]] = (),
    config_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The ready model folder for a task, for the pipelines to load.

    Raises:
        ModelsMissing: listing exactly which files are missing or damaged and the command to get them.
        ValueError: for ``"tiny"``, which the pipelines build themselves (``models/tiny.py``) and must
            check with :func:`is_tiny` before calling this.
    """
    if is_tiny(spec):
        raise ValueError("spec 'tiny' is built by models/tiny.py: check core.model_store.is_tiny(spec) first")
    location = locate(task, spec, extra_dirs, config_path=config_path, cache_dir=cache_dir)
    if location.status is not Status.READY or location.path is None:
        raise ModelsMissing(missing_message(location))
    return location.path


def verify(
    task: Task | str,
    spec: str | None = None,
    *,
    deep: bool = True,
    config_path: str | os.PathLike[str] | None = None,
) -> FolderReport:
    """Check the located folder of a task, hashing files against the download record when ``deep``."""
    location = locate(task, spec, config_path=config_path)
    if location.path is None:
        raise ModelsMissing(missing_message(location))
    return check_folder(task, location.path, deep=deep)


def task_overview(config_path: str | os.PathLike[str] | None = None) -> list[ModelLocation]:
    """One :class:`ModelLocation` per task (for ``models list`` and the app's model manager)."""
    return [locate(task, config_path=config_path) for task in Task]


def shared_components() -> dict[str, list[str]]:
    """Component key -> the repositories shipping it (stored once on disk by ``model_download``)."""
    out: dict[str, list[str]] = {}
    for repo in REPOS:
        for req in repo.requirements:
            if req.shared and repo.repo_id not in out.setdefault(req.shared, []):
                out[req.shared].append(repo.repo_id)
    return out
