"""File ▸ Collect Media…: the plan (what is copied where, what is missing or in use), the copying (disk
space, cancel, atomic placement, errors) and the one undoable relink."""

from __future__ import annotations

import errno
import os
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from core import edits
from core.collect_media import (
    IN_USE_NOTE,
    CollectCancelled,
    CollectError,
    NotEnoughSpace,
    collect_files,
    plan_collect,
    relink_to_copies,
)
from core.generation import RenderRequest, Task
from core.model_store import format_bytes
from core.project import Asset, AssetKind, Project, ProjectSettings
from core.render_queue import Job, JobState

Usage = namedtuple("Usage", "total used free")


def _file(path: Path, size: int = 1000, fill: bytes = b"m") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((fill * size)[:size])
    return path


def _project(*paths: Path) -> Project:
    project = Project(ProjectSettings(name="Film"))
    for n, path in enumerate(paths):
        kind = AssetKind.AUDIO if path.suffix == ".wav" else AssetKind.VIDEO
        project.insert_asset(Asset(f"a{n}", kind, str(path), path.name, duration_frames=48))
    return project


def _job(job_id: str, state: JobState, **paths: object) -> Job:
    request = RenderRequest(
        task=Task.REFERENCE_TO_VIDEO,
        prompt="p",
        output_path=f"/nowhere/{job_id}.mp4",
        work_dir=f"/nowhere/work/{job_id}",
        **paths,
    )
    return Job(job_id=job_id, request=request, label=f"Shot {job_id}", state=state)


@pytest.fixture
def film(tmp_path: Path) -> Path:
    """Where the project file is saved (the file itself need not exist for planning)."""
    (tmp_path / "film").mkdir()
    return tmp_path / "film" / "film.srproj"


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_outside_files_are_planned_into_collected_and_files_in_the_folder_stay(tmp_path, film):
    outside = _file(tmp_path / "footage" / "beach.mp4", 1500)
    inside = _file(film.parent / "sound" / "waves.wav", 700)
    render = _file(film.parent / "film.media" / "renders" / "shot_1.mp4", 300)
    plan = plan_collect(_project(outside, inside, render), film)
    assert plan.destination == film.parent.resolve() / "film.media" / "collected"
    assert [(i.source, i.dest.name, i.size, i.asset_ids) for i in plan.items] == [
        (outside.resolve(), "beach.mp4", 1500, ("a0",))
    ]
    assert plan.inside == 2 and plan.total_bytes == 1500
    assert not plan.missing and not plan.in_use
    assert "Copy 1 media file(s) (1.5 kB)" in plan.summary()
    assert "2 file(s) already in the project's folder" in plan.summary()
    assert str(outside.resolve()) in plan.details()
    assert not plan.destination.exists()  # planning writes nothing


def test_renders_in_untitled_media_are_collected_and_named_as_such(tmp_path, film):
    untitled = tmp_path / "data" / "untitled.media"
    render = _file(untitled / "renders" / "lighthouse_1a2b3c4d.mp4", 4000)
    other = _file(tmp_path / "footage" / "beach.mp4")
    plan = plan_collect(_project(render, other), film, untitled_media=untitled)
    assert [(i.dest.name, i.untitled_render) for i in plan.items] == [
        ("lighthouse_1a2b3c4d.mp4", True),
        ("beach.mp4", False),
    ]
    assert plan.untitled_renders == 1
    assert "1 of them are renders kept in the untitled project's folder" in plan.summary()
    assert "render of the untitled project" in plan.details()


def test_name_clashes_get_readable_suffixes_and_existing_files_are_never_targets(tmp_path, film):
    a = _file(tmp_path / "day1" / "clip.mp4", 100)
    b = _file(tmp_path / "day2" / "clip.mp4", 200)
    c = _file(tmp_path / "day3" / "CLIP.mp4", 300)  # one file with clip.mp4 on case-insensitive disks
    d = _file(tmp_path / "day4" / "notes", 50)  # no extension
    e = _file(tmp_path / "day5" / "notes", 60)
    taken = _file(film.parent / "film.media" / "collected" / "clip-2.mp4", 999, b"x")  # someone's file
    plan = plan_collect(_project(a, b, c, d, e), film)
    assert [i.dest.name for i in plan.items] == ["clip.mp4", "clip-3.mp4", "CLIP-4.mp4", "notes", "notes-2"]
    assert not any(i.existing for i in plan.items)
    mapping = collect_files(plan)
    assert taken.read_bytes() == b"x" * 999  # untouched
    for source, dest in mapping.items():
        assert Path(dest).read_bytes() == Path(source).read_bytes()
    assert len(set(mapping.values())) == 5


def test_one_file_used_by_several_assets_is_copied_once_and_all_of_them_are_relinked(tmp_path, film):
    clip = _file(tmp_path / "footage" / "beach.mp4")
    link = tmp_path / "shortcut.mp4"
    link.symlink_to(clip)
    project = _project(clip, Path(str(tmp_path / "footage" / ".." / "footage" / "beach.mp4")), link)
    plan = plan_collect(project, film)
    assert len(plan.items) == 1
    assert plan.items[0].asset_ids == ("a0", "a1", "a2")
    mapping = collect_files(plan)
    assert _listing(plan.destination) == ["beach.mp4"]
    edit = relink_to_copies(project, plan, mapping)
    edit.apply(project)
    assert {a.path for a in project.assets} == {str(plan.destination / "beach.mp4")}


def test_missing_files_are_listed_and_not_fatal(tmp_path, film):
    here = _file(tmp_path / "footage" / "beach.mp4")
    gone = tmp_path / "footage" / "lost.mp4"
    folder = tmp_path / "footage" / "a-folder.mp4"
    folder.mkdir()
    project = _project(here, gone, folder)
    project.update_asset("a1", missing=True)
    plan = plan_collect(project, film)
    assert [i.source.name for i in plan.items] == ["beach.mp4"]
    assert [(m.path.name, m.asset_ids, m.reason) for m in plan.missing] == [
        ("lost.mp4", ("a1",), "not found"),
        ("a-folder.mp4", ("a2",), "not a file"),
    ]
    assert "2 file(s) are missing" in plan.summary()
    assert "Missing (not collected):" in plan.details()
    mapping = collect_files(plan)
    assert list(mapping) == [str(here.resolve())]


def test_files_of_unfinished_render_jobs_are_left_in_place(tmp_path, film):
    ref = _file(tmp_path / "refs" / "hero.png")
    source = _file(tmp_path / "footage" / "source.mp4")
    excerpt_source = _file(tmp_path / "footage" / "trimmed.mp4")
    done_ref = _file(tmp_path / "refs" / "old.png")
    free = _file(tmp_path / "footage" / "free.mp4")
    jobs = [
        _job("q", JobState.QUEUED, reference_images=(str(ref),)),
        _job("r", JobState.RUNNING, input_video=str(source)),
        _job("p", JobState.PAUSED, extra={"studio": {"excerpt": {"source": str(excerpt_source)}}}),
        _job("f", JobState.FINISHED, reference_images=(str(done_ref),)),
        _job("x", JobState.FAILED, input_video=str(free)),
    ]
    plan = plan_collect(_project(ref, source, excerpt_source, done_ref, free), film, jobs)
    assert [i.source.name for i in plan.items] == ["old.png", "free.mp4"]
    assert [(s.path.name, s.reason) for s in plan.in_use] == [
        ("hero.png", "used by the unfinished render job(s) Shot q"),
        ("source.mp4", "used by the unfinished render job(s) Shot r"),
        ("trimmed.mp4", "used by the unfinished render job(s) Shot p"),
    ]
    assert IN_USE_NOTE in plan.summary()
    assert "Left in place:" in plan.details()


def test_a_disk_too_small_is_refused_before_anything_is_copied(tmp_path, film):
    clip = _file(tmp_path / "footage" / "beach.mp4", 5000)
    plan = plan_collect(_project(clip), film)
    seen: list[str] = []

    def full_disk(path: str) -> Usage:
        seen.append(path)
        return Usage(10**9, 10**9 - 2000, 2000)

    with pytest.raises(NotEnoughSpace) as caught:
        collect_files(plan, disk_usage=full_disk)
    assert caught.value.needed == 5000 and caught.value.free == 2000
    assert format_bytes(5000) in str(caught.value) and format_bytes(2000) in str(caught.value)
    assert "Nothing was copied" in str(caught.value)
    assert seen == [str(film.parent.resolve())]  # the nearest folder that exists
    assert not (film.parent / "film.media").exists()
    # The reserve counts: exactly the file's size free is not enough either.
    with pytest.raises(NotEnoughSpace):
        collect_files(plan, disk_usage=lambda p: Usage(10**9, 0, 5000))
    assert collect_files(plan, disk_usage=lambda p: Usage(10**12, 0, 10**11))


def test_cancel_between_files_removes_the_copies_already_made(tmp_path, film):
    first = _file(tmp_path / "footage" / "one.mp4", 3000)
    second = _file(tmp_path / "footage" / "two.mp4", 3000)
    plan = plan_collect(_project(first, second), film)
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= 3000:  # the first file is complete
            cancel.set()

    with pytest.raises(CollectCancelled):
        collect_files(plan, progress, cancel)
    assert not (film.parent / "film.media").exists()  # copies, temporary files and new folders gone
    assert first.read_bytes() == b"m" * 3000  # originals untouched


def test_cancel_in_the_middle_of_a_big_file_leaves_no_partial_file(tmp_path, film):
    big = _file(tmp_path / "footage" / "big.mp4", 10_000)
    (film.parent / "film.media" / "collected").mkdir(parents=True)  # an earlier collect made the folder
    plan = plan_collect(_project(big), film)
    cancel = threading.Event()
    calls: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done >= 2048:
            cancel.set()

    with pytest.raises(CollectCancelled):
        collect_files(plan, progress, cancel, chunk_size=1024)
    assert calls[-1] == (2048, 10_000)  # stopped after the chunk that saw the cancel
    assert _listing(plan.destination) == []  # no temporary file, no partial copy; the old folder stays


def test_copies_are_complete_atomic_and_keep_the_modification_time(tmp_path, film):
    clip = _file(tmp_path / "footage" / "beach.mp4", 5000, b"0123456789")
    os.utime(clip, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    plan = plan_collect(_project(clip), film)
    progress: list[tuple[int, int]] = []
    mapping = collect_files(plan, lambda d, t: progress.append((d, t)), chunk_size=1024)
    dest = plan.destination / "beach.mp4"
    assert mapping == {str(clip.resolve()): str(dest)}
    assert dest.read_bytes() == clip.read_bytes()
    assert dest.stat().st_mtime_ns == clip.stat().st_mtime_ns
    assert _listing(plan.destination) == ["beach.mp4"]  # no temporary file left
    assert progress[0] == (0, 5000) and progress[-1] == (5000, 5000)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_a_file_that_appears_at_the_destination_after_planning_is_never_replaced(tmp_path, film):
    clip = _file(tmp_path / "footage" / "beach.mp4", 500)
    plan = plan_collect(_project(clip), film)
    intruder = _file(plan.destination / "beach.mp4", 800, b"z")  # written meanwhile by someone else
    mapping = collect_files(plan)
    assert intruder.read_bytes() == b"z" * 800
    assert mapping == {str(clip.resolve()): str(plan.destination / "beach-2.mp4")}
    assert (plan.destination / "beach-2.mp4").read_bytes() == clip.read_bytes()


def test_an_unreadable_file_stops_the_collect_and_removes_what_was_copied(tmp_path, film):
    first = _file(tmp_path / "footage" / "one.mp4")
    second = _file(tmp_path / "footage" / "two.mp4")
    plan = plan_collect(_project(first, second), film)
    second.unlink()  # gone between the plan and the copy
    with pytest.raises(CollectError) as caught:
        collect_files(plan)
    assert "two.mp4" in str(caught.value) and "disappeared" in str(caught.value)
    assert "Nothing was changed" in str(caught.value)
    assert not (film.parent / "film.media").exists()


def test_a_disk_filling_up_mid_copy_is_reported_in_words(tmp_path, film):
    clip = _file(tmp_path / "footage" / "beach.mp4", 4000)
    plan = plan_collect(_project(clip), film)

    def progress(done: int, total: int) -> None:
        if done:  # the write after the first chunk fails as on a full disk
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CollectError) as caught:
        collect_files(plan, progress, chunk_size=1000)
    assert str(caught.value).startswith("The disk filled up while copying “beach.mp4”")
    assert not (film.parent / "film.media").exists()


def test_relink_is_one_undoable_edit_and_undo_points_back_at_the_originals(tmp_path, film):
    a = _file(tmp_path / "footage" / "beach.mp4")
    b = _file(tmp_path / "footage" / "waves.wav")
    project = _project(a, b, _file(film.parent / "local.mp4"))
    before = project.to_dict()
    plan = plan_collect(project, film)
    mapping = collect_files(plan)
    edit = relink_to_copies(project, plan, mapping)
    assert isinstance(edit, edits.Compound) and edit.label == "Collect media"
    edit.apply(project)
    after = project.to_dict()
    assert [x.path for x in project.assets] == [
        str(plan.destination / "beach.mp4"),
        str(plan.destination / "waves.wav"),
        str(film.parent / "local.mp4"),
    ]
    edit.revert(project)
    assert project.to_dict() == before
    edit.apply(project)
    assert project.to_dict() == after
    edit.revert(project)
    assert (plan.destination / "beach.mp4").is_file()  # the copies stay on disk


def test_relink_skips_assets_changed_meanwhile_and_refuses_when_nothing_is_left(tmp_path, film):
    a = _file(tmp_path / "footage" / "beach.mp4")
    other = _file(tmp_path / "footage" / "other.mp4")
    project = _project(a)
    plan = plan_collect(project, film)
    mapping = collect_files(plan)
    project.update_asset("a0", path=str(other))  # relinked elsewhere while copying
    with pytest.raises(edits.EditError):
        relink_to_copies(project, plan, mapping)


def test_a_second_collect_after_undo_reuses_the_identical_copy(tmp_path, film):
    clip = _file(tmp_path / "footage" / "beach.mp4", 3000)
    project = _project(clip)
    first = plan_collect(project, film)
    collect_files(first)
    again = plan_collect(project, film)  # the relink was undone: the project points at the original
    assert again.items[0].existing and again.total_bytes == 0
    assert "(already there)" in again.details()
    assert collect_files(again) == {str(clip.resolve()): str(first.destination / "beach.mp4")}
    assert _listing(first.destination) == ["beach.mp4"]
    # A look-alike (same size and time) with other bytes is not reused: the copy takes another name.
    look_alike = first.destination / "beach.mp4"
    stat = look_alike.stat()
    look_alike.write_bytes(b"q" * 3000)
    os.utime(look_alike, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    third = plan_collect(project, film)
    assert third.items[0].existing
    mapping = collect_files(third)
    assert mapping == {str(clip.resolve()): str(first.destination / "beach-2.mp4")}
    assert look_alike.read_bytes() == b"q" * 3000
    assert (first.destination / "beach-2.mp4").read_bytes() == clip.read_bytes()


def test_nothing_to_collect(tmp_path, film):
    plan = plan_collect(_project(_file(film.parent / "a.mp4")), film)
    assert plan.items == () and plan.total_bytes == 0
    assert "nothing to collect" in plan.summary()
    assert collect_files(plan) == {}
    assert not (film.parent / "film.media").exists()
