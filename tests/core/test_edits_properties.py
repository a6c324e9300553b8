"""Property tests: random edit sequences keep the model's invariants and undo restores exact snapshots."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.edits import (
    AddClip,
    AddMarker,
    Edit,
    EditError,
    Insert,
    Lift,
    MoveClip,
    MoveMarker,
    Overwrite,
    RemoveClip,
    RemoveMarker,
    RemoveTrack,
    RippleDelete,
    SetClipGain,
    SetTrackLocked,
    SplitAtFrame,
    SplitClip,
    TrimClip,
    TrimSide,
)
from core.project import Clip, Marker, Project, new_id
from tests.fakes import A1, AUDIO, IMAGE, V1, V2, VIDEO, sample_project

FRAMES = st.integers(min_value=-5, max_value=260)
SETTINGS = settings(
    max_examples=int(os.environ.get("SKYREELS_HYPOTHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _new_clip(draw: Any, project: Project) -> Clip:
    track_id = draw(st.sampled_from([t.track_id for t in project.tracks] or [V1]))
    asset_id = draw(st.sampled_from([VIDEO, IMAGE, AUDIO]))
    in_point = draw(st.integers(0, 120))
    length = draw(st.integers(-2, 80))
    return Clip(new_id(), asset_id, track_id, draw(FRAMES), in_point, in_point + length)


def draw_edit(draw: Any, project: Project) -> Edit:
    """Any edit, often invalid: refusals are part of what is tested."""
    clip_ids = [c.clip_id for c in project.clips()] or ["missing"]
    track_ids = [t.track_id for t in project.tracks] or ["missing"]
    marker_ids = [m.marker_id for m in project.markers] or ["missing"]
    some_clip = st.sampled_from(clip_ids)
    kind = draw(st.integers(0, 17))
    if kind <= 2:
        return AddClip(_new_clip(draw, project))
    if kind == 3:
        return RemoveClip(draw(some_clip))
    if kind == 4:
        return MoveClip(draw(some_clip), draw(FRAMES), draw(st.sampled_from([None, *track_ids])))
    if kind == 5:
        return TrimClip(draw(some_clip), draw(st.sampled_from(list(TrimSide))), draw(FRAMES))
    if kind == 6:
        return SplitClip(draw(some_clip), draw(FRAMES))
    if kind == 7:
        return SplitAtFrame(draw(FRAMES))
    if kind == 8:
        return Lift(tuple(draw(st.lists(some_clip, max_size=3))))
    if kind == 9:
        return RippleDelete(tuple(draw(st.lists(some_clip, max_size=3))))
    if kind == 10:
        return Insert(_new_clip(draw, project))
    if kind == 11:
        return Overwrite(_new_clip(draw, project))
    if kind == 12:
        return SetTrackLocked(draw(st.sampled_from(track_ids)), draw(st.booleans()))
    if kind == 13:
        return SetClipGain(draw(some_clip), draw(st.floats(-120, 40)))
    if kind == 14:
        return AddMarker(Marker(new_id(), draw(FRAMES), "m"))
    if kind == 15:
        return MoveMarker(draw(st.sampled_from(marker_ids)), draw(FRAMES))
    if kind == 16:
        return RemoveMarker(draw(st.sampled_from(marker_ids)))
    return RemoveTrack(draw(st.sampled_from([*track_ids, V2])))


@st.composite
def edits(draw: Any, project: Project) -> Edit:
    return draw_edit(draw, project)


def seeded_project() -> Project:
    p = sample_project()
    for edit in (
        AddClip(Clip("a", VIDEO, V1, 0, 0, 30)),
        AddClip(Clip("b", VIDEO, V1, 40, 10, 60)),
        AddClip(Clip("c", IMAGE, V2, 10, 0, 50)),
        AddClip(Clip("d", AUDIO, A1, 0, 0, 120)),
    ):
        edit.apply(p)
    return p


@SETTINGS
@given(st.data())
def test_random_edit_sequences_keep_invariants_and_undo_exactly(data: st.DataObject) -> None:
    project = seeded_project()
    initial = project.to_dict()
    applied: list[tuple[Edit, dict[str, Any]]] = []
    for _ in range(data.draw(st.integers(1, 12), label="length")):
        edit = data.draw(edits(project), label="edit")
        before = project.to_dict()
        try:
            edit.apply(project)
        except EditError as error:
            assert str(error), "refusals carry a message"
            assert project.to_dict() == before, f"refused {edit!r} changed the project"
            continue
        after = project.to_dict()
        assert project.check_invariants() == [], edit
        edit.revert(project)
        assert project.to_dict() == before, f"revert of {edit!r} did not restore the snapshot"
        edit.apply(project)
        assert project.to_dict() == after, f"redo of {edit!r} differs from its first apply"
        applied.append((edit, before))
    for edit, before in reversed(applied):
        edit.revert(project)
        assert project.to_dict() == before
    assert project.to_dict() == initial
    assert project.check_invariants() == []


@SETTINGS
@given(
    start=FRAMES,
    steps=st.lists(FRAMES, min_size=1, max_size=6),
)
# Found in CI: a drag whose first step leaves the clip where it is (b starts at 40) then moves it.
@example(start=40, steps=[30])
def test_a_drag_merges_into_one_step(start: int, steps: list[int]) -> None:
    project = seeded_project()
    before = project.to_dict()
    first: MoveClip | None = None
    for frame in [start, *steps]:
        move = MoveClip("b", frame)
        try:
            move.apply(project)
        except EditError:
            continue  # the view does not push refused moves
        if first is None:
            first = move
        else:
            assert first.merge(move)
    if first is None:
        assert project.to_dict() == before
        return
    final = project.to_dict()
    first.revert(project)
    assert project.to_dict() == before
    first.apply(project)
    assert project.to_dict() == final
