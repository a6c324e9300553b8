"""Project files: JSON save and load, schema validation, migrations, autosave, missing media.

Owns: :func:`save_project`, :func:`load_project`, :func:`write_autosave`, :func:`load_autosave`,
:func:`discard_autosave`, :func:`autosave_path`, :func:`find_recovery`, :func:`load_recovery`, :func:`migrate` and the ``migrate_<n>_to_<n+1>``
steps, :func:`atomic_write_text`, :class:`LoadedProject` and the :class:`ProjectFileError` family.

The file: UTF-8 JSON with an integer ``"schema_version"`` (:data:`CURRENT_VERSION`), validated against
``resources/schema/project.schema.json`` after migration. Older files are migrated in memory by small
pure functions applied in sequence (the file on disk is left as it is until the user saves). Media
paths (asset paths and the paths inside queued render requests, including the source of a trimmed
clip's excerpt in ``extra["studio"]["excerpt"]``) are stored relative to the project file's folder with
``/`` separators, and are absolute in memory; a path on another drive stays absolute. An absolute path
in a file (older files stored excerpt sources that way) is read as it is.

Versions:

- 1: settings, assets, tracks with clips (no markers, no takes, no render queue).
- 2: adds ``markers``, clip ``takes`` and the ``render_queue`` (see :func:`migrate_1_to_2`).

Safety: writes are atomic (``<file>.tmp``, flush, fsync, ``os.replace``, fsync of the folder). A file
that cannot be read (bad JSON, fails the schema, breaks the model's rules) or that comes from a newer
version raises a :class:`ProjectFileError` subclass with a message for the user, and :func:`save_project`
refuses to replace such a file. The autosave lives beside the project as ``<stem>.autosave.json``;
:func:`load_project` says when it is newer than the project so the UI can offer recovery.

Must not import: PySide6, torch, diffusers, ``app``, ``models``.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from core.project import Asset, Project
from core.render_queue import RenderQueue

CURRENT_VERSION = 2
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "resources" / "schema" / "project.schema.json"
AUTOSAVE_SUFFIX = ".autosave.json"
APP_NAME = "SkyReels Studio"

_REQUEST_PATH_FIELDS = ("output_path", "work_dir", "input_video", "input_image", "input_audio")
_EXTRA_PATH_FIELDS = (("studio", "excerpt", "source"),)
"""Paths inside ``RenderRequest.extra`` (keys from its root) stored like the request's own paths: the
source video of a trimmed clip's excerpt that the editor cuts before an extension runs."""


# -- errors ------------------------------------------------------------------------------------


class ProjectFileError(Exception):
    """A project file that cannot be opened or written. ``str()`` is a message for the user."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(message)
        self.path = Path(path)


class ProjectNotFound(ProjectFileError):
    """The file does not exist (or is not a file)."""


class ProjectCorrupt(ProjectFileError):
    """The file is not valid JSON, fails the schema, or breaks the model's rules."""


class ProjectTooNew(ProjectFileError):
    """The file was written by a newer version of the app (a higher schema version)."""

    def __init__(self, path: str | os.PathLike[str], message: str, version: int) -> None:
        super().__init__(path, message)
        self.version = version


class ProjectWriteError(ProjectFileError):
    """Saving failed; the previous file (if any) is unchanged."""


# -- migrations --------------------------------------------------------------------------------


def migrate_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 adds timeline markers, alternative takes on clips and the saved render queue."""
    out = dict(data)
    out["tracks"] = [
        {**track, "clips": [{**clip, "takes": []} for clip in track.get("clips", [])]}
        for track in data.get("tracks", [])
    ]
    out["markers"] = []
    out["render_queue"] = None
    out["schema_version"] = 2
    return out


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: migrate_1_to_2}
"""``MIGRATIONS[v]`` turns a version ``v`` document into version ``v + 1``."""


def migrate(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Bring a document up to :data:`CURRENT_VERSION`.

    Returns:
        The migrated document (a new dict; ``data`` is not modified) and the version it started at.

    Raises:
        ValueError: ``schema_version`` is missing, not an integer, or below 1.
        ProjectTooNew is not raised here: callers compare the version first.
    """
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"schema_version must be a whole number from 1, found {version!r}")
    start = version
    while version < CURRENT_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
        if data.get("schema_version") != version:
            raise AssertionError(f"migration to {version} did not set schema_version")
    return data, start


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema


@cache
def _validator() -> Any:
    schema = _schema()
    return jsonschema.validators.validator_for(schema)(schema)


@cache
def _fast_check() -> Callable[[Any], bool] | None:
    try:
        return _SchemaCompiler(_schema()).compile(_schema())
    except _Unsupported:
        return None


def validate(data: dict[str, Any]) -> None:
    """Check a current-version document against the JSON schema.

    A checker compiled from the same schema file (:class:`_SchemaCompiler`) answers "valid" quickly;
    jsonschema is the reference and runs when that checker finds a problem (for the message) or cannot
    compile the schema. ``tests/core/test_persistence.py`` checks both agree on valid and damaged files.

    Raises:
        jsonschema.ValidationError: the first problem found (its ``json_path`` says where).
    """
    fast = _fast_check()
    if fast is not None and fast(data):
        return
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        raise error


class _Unsupported(Exception):
    pass


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    "integer": lambda v: _is_number(v) and float(v).is_integer(),
}


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers (``True != 1``), ``1 == 1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if a != b:
        return False
    return type(a) is type(b) or (_is_number(a) and _is_number(b))


class _SchemaCompiler:
    """Turns the subset of JSON Schema our project schema uses into nested closures returning a bool.

    jsonschema walks the schema for every value (about 0.3 s for a 1000-clip project); the closures do
    the same checks in a few milliseconds. Any keyword outside the subset raises :class:`_Unsupported`
    and :func:`validate` falls back to jsonschema alone.
    """

    _IGNORED = frozenset({"$schema", "$id", "title", "description", "$defs", "$comment"})

    def __init__(self, root: dict[str, Any]) -> None:
        self._defs: dict[str, Any] = root.get("$defs", {})
        self._compiled: dict[str, Callable[[Any], bool]] = {}

    def _ref(self, ref: str) -> Callable[[Any], bool]:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self._defs:
            raise _Unsupported(ref)
        name = ref[len(prefix) :]
        if name not in self._compiled:
            holder: list[Callable[[Any], bool]] = []
            self._compiled[name] = lambda v: holder[0](v)  # allows recursive definitions
            holder.append(self.compile(self._defs[name]))
            self._compiled[name] = holder[0]
        return self._compiled[name]

    def compile(self, node: Any) -> Callable[[Any], bool]:
        if node is True or node == {}:
            return lambda v: True
        if not isinstance(node, dict):
            raise _Unsupported(repr(node))
        checks: list[Callable[[Any], bool]] = []
        for key, arg in node.items():
            if key in self._IGNORED:
                continue
            checks.append(self._keyword(key, arg, node))
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(check(v) for check in checks)

    def _keyword(self, key: str, arg: Any, node: dict[str, Any]) -> Callable[[Any], bool]:
        if key == "$ref":
            return self._ref(arg)
        if key == "type":
            kinds = [arg] if isinstance(arg, str) else list(arg)
            tests = [_TYPE_CHECKS[k] for k in kinds]
            return lambda v: any(t(v) for t in tests)
        if key == "const":
            return lambda v: _json_equal(v, arg)
        if key == "enum":
            return lambda v: any(_json_equal(v, option) for option in arg)
        if key == "required":
            return lambda v: not isinstance(v, dict) or all(name in v for name in arg)
        if key == "properties":
            props = {name: self.compile(sub) for name, sub in arg.items()}
            return lambda v: (
                not isinstance(v, dict)
                or all(props[name](value) for name, value in v.items() if name in props)
            )
        if key == "additionalProperties":
            if arg is not False or "patternProperties" in node:
                raise _Unsupported(key)
            allowed = frozenset(node.get("properties", {}))
            return lambda v: not isinstance(v, dict) or allowed.issuperset(v)
        if key == "items":
            item = self.compile(arg)
            return lambda v: not isinstance(v, list) or all(item(x) for x in v)
        if key == "anyOf":
            branches = [self.compile(sub) for sub in arg]
            return lambda v: any(b(v) for b in branches)
        if key == "minimum":
            return lambda v: not _is_number(v) or v >= arg
        if key == "maximum":
            return lambda v: not _is_number(v) or v <= arg
        if key == "exclusiveMinimum":
            return lambda v: not _is_number(v) or v > arg
        if key == "minLength":
            return lambda v: not isinstance(v, str) or len(v) >= arg
        raise _Unsupported(key)


# -- paths -------------------------------------------------------------------------------------


def _to_file_path(path: str, base: Path) -> str:
    """An absolute in-memory path as stored in the file: relative to ``base`` when possible."""
    if not path or not os.path.isabs(path):
        return path
    try:
        rel = os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return path
    return Path(rel).as_posix()


def _from_file_path(path: str, base: Path) -> str:
    if not path:
        return path
    native = path.replace("/", os.sep)
    if os.path.isabs(native):
        return os.path.normpath(native)
    return os.path.normpath(os.path.join(base, native))


def _map_extra_paths(extra: dict[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``extra`` with the paths at :data:`_EXTRA_PATH_FIELDS` converted (the rest shared)."""
    for keys in _EXTRA_PATH_FIELDS:
        parents = [extra]
        for key in keys[:-1]:
            child = parents[-1].get(key)
            if not isinstance(child, dict):
                break
            parents.append(child)
        else:
            value = parents[-1].get(keys[-1])
            if not isinstance(value, str) or not value:
                continue
            node: Any = convert(value)
            for parent, key in zip(reversed(parents), reversed(keys), strict=True):
                node = {**parent, key: node}
            extra = node
    return extra


def _map_request_paths(job: dict[str, Any], convert: Callable[[str], str]) -> dict[str, Any]:
    request = dict(job["request"])
    for key in _REQUEST_PATH_FIELDS:
        if request.get(key):
            request[key] = convert(request[key])
    request["reference_images"] = [convert(p) for p in request.get("reference_images", [])]
    if isinstance(request.get("extra"), dict):
        request["extra"] = _map_extra_paths(request["extra"], convert)
    out = {**job, "request": request}
    out["piece_paths"] = [convert(p) for p in job.get("piece_paths", [])]
    if job.get("result"):
        out["result"] = {**job["result"], "output_path": convert(job["result"]["output_path"])}
    return out


def request_paths(request_data: dict[str, Any]) -> list[str]:
    """Every path a render request (``RenderRequest.to_json()``) names: the fields the project file
    stores relative to the project, so one list decides both."""
    found: list[str] = []
    _map_request_paths({"request": request_data}, lambda path: found.append(path) or path)
    return found


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (nothing to do on Windows)."""
    _fsync_dir(folder)


# -- documents ---------------------------------------------------------------------------------


def project_to_data(
    project: Project, path: str | os.PathLike[str], queue: RenderQueue | None = None
) -> dict[str, Any]:
    """The save-file document for ``project`` written at ``path`` (paths made relative to its folder)."""
    base = Path(os.path.abspath(path)).parent
    data = project.to_dict()
    assets = []
    for asset in data["assets"]:
        asset.pop("missing", None)
        asset["path"] = _to_file_path(asset["path"], base)
        assets.append(asset)
    for track in data["tracks"]:
        for clip in track["clips"]:
            del clip["track_id"]
    doc: dict[str, Any] = {
        "schema_version": CURRENT_VERSION,
        "app": APP_NAME,
        "saved_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "settings": data["settings"],
        "assets": assets,
        "tracks": data["tracks"],
        "markers": data["markers"],
        "render_queue": None,
    }
    if queue is not None:
        q = queue.to_json()
        q["jobs"] = [_map_request_paths(j, lambda p: _to_file_path(p, base)) for j in q["jobs"]]
        doc["render_queue"] = q
    return doc


def project_from_data(data: dict[str, Any], path: str | os.PathLike[str]) -> tuple[Project, RenderQueue]:
    """Build the model from a *current-version, validated* document read from ``path``."""
    base = Path(os.path.abspath(path)).parent
    assets = [{**a, "path": _from_file_path(a["path"], base)} for a in data["assets"]]
    project = Project.from_dict({**data, "assets": assets})
    queue_data = data.get("render_queue")
    if queue_data:
        queue_data = {
            **queue_data,
            "jobs": [_map_request_paths(j, lambda p: _from_file_path(p, base)) for j in queue_data["jobs"]],
        }
    return project, RenderQueue.from_json(queue_data)


# -- files -------------------------------------------------------------------------------------


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves either the old or the new file.

    Writes ``<path>.tmp``, flushes and fsyncs it, renames it over ``path`` and fsyncs the folder.

    Raises:
        OSError: the write failed (the temporary file is removed; ``path`` is untouched).
    """
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows; NTFS journals renames
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def autosave_path(path: str | os.PathLike[str]) -> Path:
    """The autosave sidecar for a project file: ``film.srproj`` → ``film.autosave.json`` beside it."""
    p = Path(path)
    return p.with_name(p.stem + AUTOSAVE_SUFFIX)


def _read_document(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ProjectNotFound(path, f"The project file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ProjectCorrupt(
            path, f"{path.name} is not a SkyReels Studio project (not UTF-8 text)."
        ) from None
    except OSError as error:
        raise ProjectNotFound(path, f"Cannot read {path}: {error.strerror or error}.") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProjectCorrupt(
            path,
            f"{path.name} is damaged (invalid JSON at line {error.lineno}, column {error.colno}). "
            "It was not changed; an autosave beside it may hold your work.",
        ) from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ProjectCorrupt(path, f"{path.name} is not a SkyReels Studio project (no schema_version).")
    return data


def _document_to_model(path: Path, data: dict[str, Any]) -> tuple[Project, RenderQueue, int]:
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > CURRENT_VERSION:
        raise ProjectTooNew(
            path,
            f"{path.name} was saved by a newer SkyReels Studio (file format {version}; this version reads "
            f"up to {CURRENT_VERSION}). Update the app to open it; the file was not changed.",
            version,
        )
    try:
        data, start = migrate(data)
    except ValueError as error:
        raise ProjectCorrupt(path, f"{path.name} is damaged: {error}.") from None
    except (KeyError, TypeError, AttributeError) as error:
        raise ProjectCorrupt(path, f"{path.name} is damaged and could not be upgraded ({error!r}).") from None
    try:
        validate(data)
    except jsonschema.ValidationError as error:
        where = error.json_path
        raise ProjectCorrupt(path, f"{path.name} is damaged: at {where}: {error.message}.") from None
    try:
        project, queue = project_from_data(data, path)
    except (ValueError, KeyError) as error:
        raise ProjectCorrupt(path, f"{path.name} is damaged: {error}.") from None
    problems = project.check_invariants()
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ProjectCorrupt(path, f"{path.name} is damaged: {problems[0]}{more}.")
    return project, queue, start


@dataclass
class LoadedProject:
    """What :func:`load_project` found.

    Attributes:
        project: the model (absolute media paths; ``Asset.missing`` set for files not found).
        queue: the render queue saved with it (unfinished jobs come back paused).
        path: the file it came from (the project file, also when it was loaded from the autosave).
        missing_assets: assets whose file is not on disk; relink them with ``RelinkAsset``.
        autosave_newer: an autosave newer than the project file exists: offer recovery.
        autosave: that autosave's path.
        migrated_from: the file's schema version when it was older than the current one, else None.
        from_autosave: this result was read from the autosave (the project file is unchanged).
    """

    project: Project
    queue: RenderQueue
    path: Path
    missing_assets: list[Asset] = field(default_factory=list)
    autosave_newer: bool = False
    autosave: Path | None = None
    migrated_from: int | None = None
    from_autosave: bool = False

    @property
    def resumable_jobs(self) -> list[Any]:
        """Render jobs that had not finished when the project was saved."""
        return self.queue.resumable()


def _mark_missing(project: Project) -> list[Asset]:
    missing = []
    for asset in project.assets:
        gone = not os.path.exists(asset.path)
        if gone != asset.missing:
            project.update_asset(asset.asset_id, missing=gone)
        if gone:
            missing.append(asset)
    return missing


def _load(path: Path, source: Path, from_autosave: bool) -> LoadedProject:
    project, queue, start = _document_to_model(source, _read_document(source))
    missing = _mark_missing(project)
    return LoadedProject(
        project=project,
        queue=queue,
        path=path,
        missing_assets=missing,
        migrated_from=start if start != CURRENT_VERSION else None,
        from_autosave=from_autosave,
    )


def load_project(path: str | os.PathLike[str]) -> LoadedProject:
    """Open a project file.

    Raises:
        ProjectNotFound: no such file.
        ProjectCorrupt: not JSON, fails the schema or the model's rules (the message says where).
        ProjectTooNew: written by a newer version.
    """
    p = Path(path).absolute()
    result = _load(p, p, from_autosave=False)
    side = autosave_path(p)
    if side.is_file():
        result.autosave = side
        result.autosave_newer = find_recovery(p) is not None
    return result


def load_autosave(path: str | os.PathLike[str]) -> LoadedProject:
    """Open the autosave of the project at ``path`` (recovery); paths resolve as for the project.

    Raises:
        ProjectNotFound / ProjectCorrupt / ProjectTooNew: as for :func:`load_project`.
    """
    p = Path(path).absolute()
    return load_recovery(autosave_path(p), p)


def find_recovery(path: str | os.PathLike[str]) -> Path | None:
    """The autosave of the project file ``path`` when it is newer than the file (a crash left it)."""
    p = Path(path).absolute()
    side = autosave_path(p)
    if not side.is_file():
        return None
    if p.is_file() and side.stat().st_mtime_ns <= p.stat().st_mtime_ns:
        return None
    return side


def load_recovery(
    autosave: str | os.PathLike[str], path: str | os.PathLike[str] | None = None
) -> LoadedProject:
    """Open an autosave file found by :func:`find_recovery` (or an untitled project's backup).

    Relative media paths resolve against the autosave's folder (the project's folder for a sidecar).
    ``result.path`` is ``path`` (the project file the user will save to) or, without it, the autosave.

    Raises:
        ProjectNotFound / ProjectCorrupt / ProjectTooNew: as for :func:`load_project`.
    """
    source = Path(autosave).absolute()
    result = _load(Path(path).absolute() if path is not None else source, source, from_autosave=True)
    result.autosave = source
    return result


def _refuse_to_replace(path: Path) -> None:
    """Saving over a file we could not read would lose it: check what is there first."""
    if not path.exists():
        return
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read())
    except (OSError, ValueError):
        raise ProjectWriteError(
            path, f"{path.name} exists but is not a readable project: it was not replaced. Save elsewhere."
        ) from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int):
        raise ProjectWriteError(
            path, f"{path.name} exists and is not a SkyReels Studio project: not replaced."
        )
    if version > CURRENT_VERSION:
        raise ProjectTooNew(
            path,
            f"{path.name} was saved by a newer SkyReels Studio (format {version}): not replaced. Save elsewhere.",
            version,
        )


def _serialise(project: Project, path: Path, queue: RenderQueue | None) -> str:
    return json.dumps(project_to_data(project, path, queue), ensure_ascii=False, indent=1)


def save_project(project: Project, path: str | os.PathLike[str], queue: RenderQueue | None = None) -> Path:
    """Save atomically to ``path``; removes the now stale autosave. Returns the absolute path.

    Raises:
        ProjectWriteError: the write failed, or ``path`` holds a file that is not a readable project.
        ProjectTooNew: ``path`` holds a project from a newer version (it is never overwritten).
    """
    p = Path(path).absolute()
    _refuse_to_replace(p)
    text = _serialise(project, p, queue)
    try:
        atomic_write_text(p, text)
    except OSError as error:
        raise ProjectWriteError(p, f"Could not save {p}: {error.strerror or error}.") from error
    autosave_path(p).unlink(missing_ok=True)
    return p


def write_autosave(project: Project, path: str | os.PathLike[str], queue: RenderQueue | None = None) -> Path:
    """Write the autosave sidecar of the project file ``path`` (which itself is not touched).

    Raises:
        ProjectWriteError: the autosave could not be written.
    """
    p = Path(path).absolute()
    side = autosave_path(p)
    text = _serialise(project, p, queue)
    try:
        atomic_write_text(side, text)
    except OSError as error:
        raise ProjectWriteError(
            side, f"Could not write the autosave {side}: {error.strerror or error}."
        ) from error
    return side


def discard_autosave(path: str | os.PathLike[str]) -> None:
    """Delete the autosave of the project file ``path`` (after the user declined recovery)."""
    autosave_path(path).unlink(missing_ok=True)
