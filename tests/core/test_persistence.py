"""Save files: round trips, relative paths, migrations, atomic writes, autosave, missing media, bad files."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.edits import AddClip, AddMarker, EditError, RelinkAsset, SetClipGain
from core.generation import GenerationRecipe, PieceFinished, RenderRequest, Task
from core.persistence import (
    CURRENT_VERSION,
    ProjectCorrupt,
    ProjectNotFound,
    ProjectTooNew,
    ProjectWriteError,
    _fast_check,
    _validator,
    autosave_path,
    discard_autosave,
    find_recovery,
    load_autosave,
    load_project,
    load_recovery,
    migrate,
    migrate_1_to_2,
    project_to_data,
    save_project,
    validate,
    write_autosave,
)
from core.project import Clip, Marker, Project
from core.render_queue import JobState, RenderQueue
from tests.core.test_edits_properties import edits, seeded_project
from tests.fakes import A1, AUDIO, IMAGE, V1, VIDEO, clip, sample_project

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "projects"


def touch_media(project: Project) -> None:
    for asset in project.assets:
        Path(asset.path).parent.mkdir(parents=True, exist_ok=True)
        Path(asset.path).write_bytes(b"")


def full_project(folder: Path) -> Project:
    p = sample_project(folder / "media")
    recipe = GenerationRecipe(Task.REFERENCE_TO_VIDEO, "héros — 英雄", reference_asset_ids=(IMAGE,), seed=3)
    AddClip(Clip("g", VIDEO, V1, 0, 0, 50, recipe=recipe, takes=[IMAGE])).apply(p)
    AddClip(clip("s", 60, 500, asset=IMAGE)).apply(p)
    AddClip(clip("v", 0, 200, track=A1, asset=AUDIO)).apply(p)
    SetClipGain("v", -6.5).apply(p)
    AddMarker(Marker("m", 12, "beat")).apply(p)
    touch_media(p)
    return p


def test_round_trip_is_exact_and_paths_are_relative(tmp_path: Path) -> None:
    project = full_project(tmp_path)
    path = save_project(project, tmp_path / "film.srproj")
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["schema_version"] == CURRENT_VERSION
    assert [a["path"] for a in raw["assets"]] == ["media/shot.mp4", "media/hero.png", "media/voice.wav"]
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_project(path)
    assert loaded.project.to_dict() == project.to_dict()
    assert loaded.missing_assets == [] and not loaded.autosave_newer and loaded.migrated_from is None


def test_moving_the_project_folder_keeps_media_links(tmp_path: Path) -> None:
    project = full_project(tmp_path / "a")
    save_project(project, tmp_path / "a" / "film.srproj")
    moved = tmp_path / "projets é 英雄"
    shutil.move(tmp_path / "a", moved)
    loaded = load_project(moved / "film.srproj")
    assert loaded.missing_assets == []
    assert loaded.project.asset(VIDEO).path == str(moved / "media" / "shot.mp4")


def test_missing_media_opens_lists_and_relinks(tmp_path: Path) -> None:
    project = full_project(tmp_path)
    path = save_project(project, tmp_path / "film.srproj")
    (tmp_path / "media" / "shot.mp4").rename(tmp_path / "moved.mp4")
    loaded = load_project(path)
    assert [a.asset_id for a in loaded.missing_assets] == [VIDEO]
    assert loaded.project.asset(VIDEO).missing and loaded.project.clip("g").asset_id == VIDEO
    RelinkAsset(VIDEO, str(tmp_path / "moved.mp4")).apply(loaded.project)
    assert loaded.project.missing_assets() == []
    save_project(loaded.project, path)
    assert load_project(path).missing_assets == []


def test_render_queue_persists_with_relative_paths(tmp_path: Path) -> None:
    project = full_project(tmp_path)
    queue = RenderQueue()
    req = RenderRequest(
        Task.REFERENCE_TO_VIDEO,
        "p",
        output_path=str(tmp_path / "renders" / "o.mp4"),
        work_dir=str(tmp_path / "renders" / "o.work"),
        reference_images=(str(tmp_path / "media" / "hero.png"),),
    )
    queue.submit(req, "g", job_id="j")
    queue.start("j")
    queue.apply_event("j", PieceFinished(0, 2, str(tmp_path / "renders" / "o.work" / "p0.npy"), 10))
    path = save_project(project, tmp_path / "film.srproj", queue)
    job = json.loads(path.read_text(encoding="utf-8"))["render_queue"]["jobs"][0]
    assert job["request"]["output_path"] == "renders/o.mp4"
    assert job["request"]["reference_images"] == ["media/hero.png"]
    loaded = load_project(path)
    assert [j.job_id for j in loaded.resumable_jobs] == ["j"]
    restored = loaded.queue.job("j")
    assert restored.request == req and restored.state is JobState.PAUSED and restored.last_finished_piece == 0


def _extend_of_excerpt(folder: Path, source: str) -> RenderRequest:
    """An extension of a trimmed clip as the editor queues it: the excerpt's source in ``extra``."""
    work = folder / "film.media" / "work" / "x"
    excerpt = {"source": source, "start_frame": 10, "end_frame": 30, "fps": 24}
    return RenderRequest(
        Task.SINGLE_SHOT_EXTENSION,
        "more",
        output_path=str(folder / "film.media" / "renders" / "x.mp4"),
        work_dir=str(work),
        input_video=str(work / "source_excerpt.mp4"),
        extra={"studio": {"mode": "after", "after_clip": "g", "excerpt": excerpt}},
    )


def test_excerpt_source_is_relative_in_the_file_and_follows_a_moved_project(tmp_path: Path) -> None:
    project = full_project(tmp_path / "a")
    queue = RenderQueue()
    req = _extend_of_excerpt(tmp_path / "a", str(tmp_path / "a" / "media" / "shot.mp4"))
    queue.submit(req, "g", job_id="x")
    path = save_project(project, tmp_path / "a" / "film.srproj", queue)
    raw = json.loads(path.read_text(encoding="utf-8"))["render_queue"]["jobs"][0]["request"]
    assert raw["extra"]["studio"]["excerpt"]["source"] == "media/shot.mp4"
    assert raw["extra"]["studio"]["mode"] == "after"  # the rest of extra is kept as it was
    assert req.extra["studio"]["excerpt"]["source"] == str(tmp_path / "a" / "media" / "shot.mp4")  # not mutated
    assert load_project(path).queue.job("x").request == req
    moved = tmp_path / "elsewhere" / "projet é"
    moved.parent.mkdir()
    shutil.move(tmp_path / "a", moved)
    restored = load_project(moved / "film.srproj").queue.job("x").request
    assert restored.extra["studio"]["excerpt"] == {
        "source": str(moved / "media" / "shot.mp4"), "start_frame": 10, "end_frame": 30, "fps": 24}
    assert restored.input_video == str(moved / "film.media" / "work" / "x" / "source_excerpt.mp4")
    assert Path(restored.extra["studio"]["excerpt"]["source"]).is_file()


def test_an_absolute_excerpt_source_in_an_older_file_still_loads(tmp_path: Path) -> None:
    project = full_project(tmp_path)
    outside = tmp_path / "outside" / "shot.mp4"
    queue = RenderQueue()
    queue.submit(_extend_of_excerpt(tmp_path, str(tmp_path / "media" / "shot.mp4")), "g", job_id="x")
    path = save_project(project, tmp_path / "film.srproj", queue)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["render_queue"]["jobs"][0]["request"]["extra"]["studio"]["excerpt"]["source"] = str(outside)
    path.write_text(json.dumps(data), encoding="utf-8")
    restored = load_project(path).queue.job("x").request
    assert restored.extra["studio"]["excerpt"]["source"] == str(outside)
    # Requests without the editor's landing information (or with other extras) are left alone.
    queue = RenderQueue()
    plain = RenderRequest(Task.REFERENCE_TO_VIDEO, "p", str(tmp_path / "o.mp4"), str(tmp_path / "w"),
                          extra={"studio": {"excerpt": None}, "other": {"source": "/x"}})
    queue.submit(plain, "g", job_id="p")
    save_project(project, path, queue)
    assert load_project(path).queue.job("p").request == plain


def test_autosave_is_offered_when_newer_and_removed_by_save(tmp_path: Path) -> None:
    project = full_project(tmp_path)
    path = save_project(project, tmp_path / "film.srproj")
    SetClipGain("g", -12.0).apply(project)
    side = write_autosave(project, path)
    assert side == autosave_path(path) == tmp_path / "film.autosave.json"
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # the project file is older than its autosave
    loaded = load_project(path)
    assert loaded.autosave_newer and loaded.autosave == side
    assert loaded.project.clip("g").gain_db == 0.0  # the file itself is unchanged
    assert find_recovery(path) == side
    recovered = load_autosave(path)
    assert recovered.from_autosave and recovered.path == path
    assert load_recovery(side).project.to_dict() == project.to_dict()
    assert recovered.project.to_dict() == project.to_dict()
    save_project(recovered.project, path)
    assert not side.exists()
    write_autosave(project, path)
    discard_autosave(path)
    assert not side.exists() and not load_project(path).autosave_newer and find_recovery(path) is None


def test_corrupt_file_raises_and_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "film.srproj"
    path.write_text('{"schema_version": 2, "settings": ', encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(ProjectCorrupt, match=r"damaged \(invalid JSON at line 1") as info:
        load_project(path)
    assert info.value.path == path
    with pytest.raises(ProjectWriteError, match="not a readable project"):
        save_project(sample_project(), path)
    assert path.read_bytes() == before
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ProjectCorrupt, match="not UTF-8"):
        load_project(path)
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ProjectCorrupt, match="no schema_version"):
        load_project(path)


def test_schema_and_rule_violations_name_the_place(tmp_path: Path) -> None:
    project = full_project(tmp_path)
    path = save_project(project, tmp_path / "film.srproj")
    good = json.loads(path.read_text(encoding="utf-8"))

    bad = json.loads(json.dumps(good))
    bad["tracks"][0]["clips"][0]["start"] = -4
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ProjectCorrupt, match=r"at \$\.tracks\[0\]\.clips\[0\]\.start: -4 is less than"):
        load_project(path)

    overlap = json.loads(json.dumps(good))
    overlap["tracks"][0]["clips"][1]["start"] = 10
    path.write_text(json.dumps(overlap), encoding="utf-8")
    with pytest.raises(ProjectCorrupt, match="overlaps clip g"):
        load_project(path)

    version = json.loads(json.dumps(good))
    version["schema_version"] = "two"
    path.write_text(json.dumps(version), encoding="utf-8")
    with pytest.raises(ProjectCorrupt, match="schema_version must be a whole number"):
        load_project(path)


def test_newer_version_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "film.srproj"
    path.write_text(json.dumps({"schema_version": CURRENT_VERSION + 5, "future": True}), encoding="utf-8")
    before = path.read_bytes()
    with pytest.raises(ProjectTooNew, match="newer SkyReels Studio") as info:
        load_project(path)
    assert info.value.version == CURRENT_VERSION + 5
    with pytest.raises(ProjectTooNew, match="not replaced"):
        save_project(sample_project(), path)
    assert path.read_bytes() == before


def test_missing_file_and_failed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProjectNotFound, match="does not exist"):
        load_project(tmp_path / "nope.srproj")
    with pytest.raises(ProjectWriteError, match="Could not save"):
        save_project(sample_project(), tmp_path / "no-such-folder" / "film.srproj")
    # A write that fails half-way (fault injected at fsync) leaves the previous file intact.
    project = full_project(tmp_path)
    path = save_project(project, tmp_path / "film.srproj")
    before = path.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    SetClipGain("g", 3.0).apply(project)
    with pytest.raises(ProjectWriteError, match="No space left on device"):
        save_project(project, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_v1_example_migrates_validates_and_opens(tmp_path: Path) -> None:
    original = json.loads((EXAMPLES / "v1_example.json").read_text(encoding="utf-8"))
    snapshot = json.dumps(original, sort_keys=True)
    data, start = migrate(original)
    assert start == 1 and data["schema_version"] == CURRENT_VERSION
    assert json.dumps(original, sort_keys=True) == snapshot  # migrations are pure
    validate(data)
    assert migrate_1_to_2(original)["markers"] == []
    shutil.copy(EXAMPLES / "v1_example.json", tmp_path / "old.srproj")
    loaded = load_project(tmp_path / "old.srproj")
    assert loaded.migrated_from == 1
    project = loaded.project
    assert project.clip("c-2").recipe is not None and project.clip("c-2").takes == []
    assert project.track("t-a1").locked and project.clip("c-3").gain_db == -3.0
    assert len(loaded.missing_assets) == 4  # the example's media is not beside the copy
    # saving writes the current version; the old file is only replaced on purpose
    save_project(project, tmp_path / "old.srproj")
    assert json.loads((tmp_path / "old.srproj").read_text())["schema_version"] == CURRENT_VERSION


def test_every_example_validates_after_migration() -> None:
    examples = sorted(EXAMPLES.glob("v*_example.json"))
    assert {p.name for p in examples} >= {"v1_example.json", f"v{CURRENT_VERSION}_example.json"}
    for example in examples:
        loaded = load_project(example)
        assert loaded.project.check_invariants() == []
    v2 = load_project(EXAMPLES / "v2_example.json")
    assert [m.name for m in v2.project.markers] == ["cut to sailor"]
    assert v2.project.clip("c-2").takes == ["a-gen-2"]
    assert [j.job_id for j in v2.resumable_jobs] == ["j-1"]
    assert v2.queue.job("j-1").request.input_video == str(EXAMPLES / "renders" / "shot-1.mp4")


# -- the fast schema check agrees with jsonschema ------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2, 2, allow_nan=False)
    | st.text(max_size=3)
    | st.sampled_from(["video", "audio", "queued", "reference_to_video", "cut_in", "draft", "", "x"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


@pytest.fixture(scope="module")
def valid_documents(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("docs")
    project = full_project(folder)
    queue = RenderQueue()
    queue.submit(
        RenderRequest(Task.TALKING_AVATAR, "p", str(folder / "o.mp4"), str(folder / "w")), job_id="j"
    )
    small = project_to_data(project, folder / "f.srproj", queue)
    v2 = json.loads((EXAMPLES / "v2_example.json").read_text(encoding="utf-8"))
    return [small, v2]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fast_schema_check_agrees_with_jsonschema(
    data: st.DataObject, valid_documents: list[dict[str, Any]]
) -> None:
    fast = _fast_check()
    assert fast is not None, "the project schema uses a keyword the fast checker does not know"
    doc = copy.deepcopy(data.draw(st.sampled_from(valid_documents)))
    for _ in range(data.draw(st.integers(1, 2))):
        path = data.draw(st.sampled_from(_paths(doc)[1:]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = data.draw(JSON_VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][data.draw(st.sampled_from(["extra", "name", "kind", "start"]))] = data.draw(
                JSON_VALUES
            )
    assert fast(doc) == _validator().is_valid(doc)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_reachable_project_saves_and_loads_identically(data: st.DataObject, tmp_path: Path) -> None:
    project = seeded_project()
    for _ in range(data.draw(st.integers(0, 8))):
        with contextlib.suppress(EditError):
            data.draw(edits(project)).apply(project)
    path = save_project(project, tmp_path / "random.srproj")
    assert load_project(path).project.to_dict() == {
        **project.to_dict(),
        "assets": [{**a, "missing": True} for a in project.to_dict()["assets"]],  # /media is not on disk
    }
