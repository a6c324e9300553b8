"""Every edit: what it does, that undo/redo restore exact snapshots, merging, and refusals that change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from core.edits import (
    AddAsset,
    AddClip,
    AddMarker,
    AddRenderedClip,
    AddTrack,
    Compound,
    Edit,
    EditError,
    Insert,
    Lift,
    MoveClip,
    MoveMarker,
    Overwrite,
    RelinkAsset,
    RemoveAsset,
    RemoveClip,
    RemoveMarker,
    RemoveTrack,
    RenameTrack,
    RippleDelete,
    SetAssetRole,
    SetClipGain,
    SetClipTake,
    SetProjectSettings,
    SetTrackLocked,
    SetTrackMuted,
    SplitAtFrame,
    SplitClip,
    TrimClip,
    TrimSide,
)
from core.generation import GenerationRecipe, Task
from core.project import MIN_GAIN_DB, Asset, AssetKind, Clip, Marker, Project, ReferenceRole, Track, TrackKind
from core.snapping import snap_clip_start, snap_frame, snap_targets
from tests.fakes import A1, AUDIO, IMAGE, V1, V2, VIDEO, clip, sample_project


def check(project: Project, edit: Edit) -> dict[str, Any]:
    """Apply, revert, apply: snapshots must match exactly; invariants hold; returns the after-snapshot."""
    before = project.to_dict()
    edit.apply(project)
    after = project.to_dict()
    assert project.check_invariants() == []
    edit.revert(project)
    assert project.to_dict() == before
    edit.apply(project)
    assert project.to_dict() == after
    return after


def refused(project: Project, edit: Edit, match: str) -> None:
    before = project.to_dict()
    with pytest.raises(EditError, match=match):
        edit.apply(project)
    assert project.to_dict() == before


def spans(project: Project, track: str = V1) -> list[tuple[str, int, int, int]]:
    return [(c.clip_id, c.start, c.in_point, c.out_point) for c in project.clips_on(track)]


@pytest.fixture
def project() -> Project:
    p = sample_project()
    AddClip(clip("a", 0, 20)).apply(p)
    AddClip(clip("b", 30, 20, in_point=10)).apply(p)
    AddClip(clip("c", 60, 10)).apply(p)
    return p


def test_add_and_remove_clip(project: Project) -> None:
    check(project, AddClip(clip("d", 80, 5)))
    check(project, RemoveClip("b"))
    assert not project.has_clip("b")
    refused(project, AddClip(clip("e", 10, 30)), "already a clip on track “V1” at frames 0–19")
    refused(project, AddClip(clip("e", 100, 20, in_point=90)), "only 100 frames long")
    refused(project, AddClip(clip("e", 100, 10, asset=AUDIO)), "audio clip cannot go on video track")
    refused(project, AddClip(clip("e", -1, 1)), "before the beginning")
    refused(project, AddClip(clip("e", 200, 0)), "at least one frame")
    refused(project, RemoveClip("zzz"), "no longer on the timeline")


def test_images_may_be_any_length(project: Project) -> None:
    check(project, AddClip(clip("still", 0, 100_000, track=V2, asset=IMAGE)))
    check(project, TrimClip("still", TrimSide.TAIL, 250_000))
    assert project.clip("still").duration == 250_000


def test_move_within_and_across_tracks_and_merge(project: Project) -> None:
    after = check(project, MoveClip("a", 100))
    assert spans(Project.from_dict(after))[-1] == ("a", 100, 0, 20)
    check(project, MoveClip("b", 5, V2))
    assert spans(project, V2) == [("b", 5, 10, 30)]
    refused(project, MoveClip("c", 95), "at frames 100–119")
    check(project, MoveClip("c", 0, A1))  # video with sound may sit on an audio track
    refused(project, MoveClip("c", 0, "nope"), "track no longer exists")


def test_move_drag_merges_into_one_undo_step(project: Project) -> None:
    before = project.to_dict()
    first = MoveClip("c", 61)
    first.apply(project)
    for x in (62, 70, 90):
        later = MoveClip("c", x)
        later.apply(project)
        assert first.merge(later)
    assert not first.merge(MoveClip("a", 5))
    assert not first.merge(TrimClip("c", TrimSide.HEAD, 91))
    assert project.clip("c").start == 90
    first.revert(project)
    assert project.to_dict() == before
    first.apply(project)
    assert project.clip("c").start == 90


def test_trim_head_and_tail(project: Project) -> None:
    check(project, TrimClip("b", TrimSide.HEAD, 25))
    assert spans(project)[1] == ("b", 25, 5, 30)
    check(project, TrimClip("b", "tail", 55))  # type: ignore[arg-type]
    assert spans(project)[1] == ("b", 25, 5, 35)
    refused(project, TrimClip("b", TrimSide.TAIL, 61), "at frames 60–69")
    refused(project, TrimClip("a", TrimSide.HEAD, -1), "before the first frame")
    refused(project, TrimClip("c", TrimSide.TAIL, 60), "at least one frame")
    refused(project, TrimClip("c", TrimSide.TAIL, 200), "only 100 frames long")
    t = TrimClip("c", TrimSide.TAIL, 65)
    t.apply(project)
    later = TrimClip("c", TrimSide.TAIL, 68)
    later.apply(project)
    assert t.merge(later) and project.clip("c").end == 68
    assert not t.merge(TrimClip("c", TrimSide.HEAD, 61))


def test_split_clip_and_split_at_frame(project: Project) -> None:
    split = SplitClip("b", 40, new_clip_id="b2")
    check(project, split)
    assert spans(project)[1:3] == [("b", 30, 10, 20), ("b2", 40, 20, 30)]
    refused(project, SplitClip("a", 0), "Split inside a clip")
    refused(project, SplitClip("a", 20), "Split inside a clip")
    AddClip(clip("x", 0, 50, track=A1, asset=AUDIO)).apply(project)
    every = SplitAtFrame(10)
    check(project, every)
    assert [c.end for c in project.clips_on(A1)] == [10, 50]
    first_ids = {c.clip_id for c in project.clips()}
    every.revert(project)
    every.apply(project)
    assert {c.clip_id for c in project.clips()} == first_ids  # redo recreates the same ids
    refused(project, SplitAtFrame(55), "no clip under the playhead")


def test_lift_and_ripple_delete(project: Project) -> None:
    check(project, Lift(("b",)))
    assert spans(project) == [("a", 0, 0, 20), ("c", 60, 0, 10)]
    p = sample_project()
    for cid, start in (("a", 0), ("b", 30), ("c", 60), ("d", 90)):
        AddClip(clip(cid, start, 20)).apply(p)
    AddClip(clip("v2", 70, 10, track=V2)).apply(p)
    check(p, RippleDelete(("a", "c")))
    assert spans(p) == [("b", 10, 0, 20), ("d", 50, 0, 20)]
    assert spans(p, V2) == [("v2", 70, 0, 10)]  # other tracks do not move
    refused(p, RippleDelete(()), "Select one or more clips")
    refused(p, Lift(("b", "zzz")), "no longer on the timeline")


def test_insert_pushes_later_clips_and_splits_the_one_under(project: Project) -> None:
    check(project, Insert(clip("n", 30, 5, asset=IMAGE)))
    assert spans(project) == [("a", 0, 0, 20), ("n", 30, 0, 5), ("b", 35, 10, 30), ("c", 65, 0, 10)]
    p = sample_project()
    AddClip(clip("a", 0, 20)).apply(p)
    AddClip(clip("b", 20, 10)).apply(p)
    check(p, Insert(clip("n", 5, 10, asset=IMAGE)))
    (a, n, right, b) = spans(p)
    assert a == ("a", 0, 0, 5) and n == ("n", 5, 0, 10)
    assert right[1:] == (15, 5, 20) and b == ("b", 30, 0, 10)
    refused(p, Insert(clip("m", 0, 500)), "only 100 frames long")


def test_overwrite_cuts_what_it_covers(project: Project) -> None:
    # covers the tail of a, all of b, the head of c
    check(project, Overwrite(clip("o", 15, 50, asset=IMAGE)))
    assert spans(project) == [("a", 0, 0, 15), ("o", 15, 0, 50), ("c", 65, 5, 10)]
    p = sample_project()
    AddClip(clip("long", 0, 90)).apply(p)
    check(p, Overwrite(clip("o", 30, 10, asset=IMAGE)))
    (left, o, right) = spans(p)
    assert left == ("long", 0, 0, 30) and o == ("o", 30, 0, 10) and right[1:] == (40, 40, 90)


def test_locked_tracks_refuse_edits(project: Project) -> None:
    check(project, SetTrackLocked(V1, True))
    for edit in (
        AddClip(clip("z", 200, 5)),
        RemoveClip("a"),
        MoveClip("a", 100),
        MoveClip("a", 100, V2),
        TrimClip("a", TrimSide.TAIL, 10),
        SplitClip("a", 10),
        SplitAtFrame(10, (V1,)),
        Lift(("a",)),
        RippleDelete(("a",)),
        Insert(clip("z", 0, 5)),
        Overwrite(clip("z", 0, 5)),
        SetClipGain("a", -3.0),
        RemoveTrack(V1),
        RemoveAsset(VIDEO),
    ):
        refused(project, edit, "“V1” is locked")
    AddClip(clip("m", 0, 5, track=V2)).apply(project)
    refused(project, MoveClip("m", 100, V1), "locked: unlock it to move clips onto it")
    check(project, SetTrackMuted(V1, True))  # muting a locked track is fine
    refused(project, SplitAtFrame(10), "no clip under the playhead")  # locked tracks are skipped
    check(project, SetTrackLocked(V1, False))
    check(project, MoveClip("a", 100))


def test_tracks_add_remove_rename(project: Project) -> None:
    check(project, AddTrack(Track("v3", TrackKind.VIDEO, "V3"), index=0))
    assert project.tracks[0].track_id == "v3"
    check(project, RemoveTrack(V1))
    assert not project.has_clip("a") and not project.has_track(V1)
    check(project, RenameTrack(V2, "B-roll"))
    refused(project, AddTrack(Track(V2, TrackKind.VIDEO)), "already in the project")


def test_gain_is_clamped_and_merges(project: Project) -> None:
    check(project, SetClipGain("a", -500.0))
    assert project.clip("a").gain_db == MIN_GAIN_DB and project.clip("a").gain_linear == 0.0
    g = SetClipGain("b", -1.0)
    g.apply(project)
    later = SetClipGain("b", -2.5)
    later.apply(project)
    assert g.merge(later)
    g.revert(project)
    assert project.clip("b").gain_db == 0.0
    refused(project, SetClipGain("b", float("nan")), "number of decibels")


def test_markers(project: Project) -> None:
    check(project, AddMarker(Marker("m1", 40, "beat")))
    check(project, AddMarker(Marker("m0", 10)))
    assert [m.marker_id for m in project.markers] == ["m0", "m1"]
    move = MoveMarker("m0", 50)
    check(project, move)
    assert [m.marker_id for m in project.markers] == ["m1", "m0"]
    check(project, RemoveMarker("m1"))
    refused(project, RemoveMarker("m1"), "no longer on the timeline")
    refused(project, AddMarker(Marker("neg", -1)), "before the beginning")


def test_assets_roles_relink_remove(project: Project) -> None:
    new = Asset("new", AssetKind.IMAGE, "/media/b.png", "b.png")
    check(project, AddAsset(new, index=0))
    assert project.assets[0].asset_id == "new"
    refused(project, AddAsset(new), "already in the bin")
    refused(project, AddAsset(Asset("v", AssetKind.VIDEO, "/v.mp4")), "no known length")
    check(project, SetAssetRole("new", ReferenceRole.STYLE))
    refused(project, SetAssetRole(VIDEO, ReferenceRole.STYLE), "Only images")
    project.update_asset(VIDEO, missing=True)
    check(project, RelinkAsset(VIDEO, "/elsewhere/shot.mp4", {"duration_frames": 120}))
    assert project.asset(VIDEO).path == "/elsewhere/shot.mp4" and not project.asset(VIDEO).missing
    refused(project, RelinkAsset(VIDEO, "/short.mp4", {"duration_frames": 25}), "clips use up to frame 30")
    after = check(project, RemoveAsset(VIDEO))
    assert after["tracks"][0]["clips"] == []


def test_takes_and_rendered_clips(project: Project) -> None:
    recipe = GenerationRecipe(Task.REFERENCE_TO_VIDEO, "hero walks", reference_asset_ids=(IMAGE,))
    render = Asset("r1", AssetKind.VIDEO, "/renders/r1.mp4", "r1.mp4", duration_frames=121)
    landed = Clip("g1", "r1", V2, 0, 0, 121, recipe=recipe)
    check(project, AddRenderedClip(render, landed))
    assert project.clip("g1").recipe == recipe
    take = Asset("r2", AssetKind.VIDEO, "/renders/r2.mp4", "r2.mp4", duration_frames=100)
    check(project, AddRenderedClip(take, take_of="g1"))
    g1 = project.clip("g1")
    assert g1.asset_id == "r2" and g1.takes == ["r1"] and g1.out_point == 100
    check(project, SetClipTake("g1", "r1"))
    assert project.clip("g1").asset_id == "r1" and project.clip("g1").takes == ["r2"]
    refused(project, SetClipTake("g1", VIDEO), "not a take")
    # removing a take's asset drops it from the takes list (and undo brings it back)
    check(project, RemoveAsset("r2"))
    assert project.clip("g1").takes == []
    # a render that lands where something is refuses and leaves the bin as it was
    refused(
        project,
        AddRenderedClip(
            Asset("r3", AssetKind.VIDEO, "/r3.mp4", duration_frames=5), Clip("g3", "r3", V1, 0, 0, 5)
        ),
        "already a clip",
    )
    assert not project.has_asset("r3")
    rippled = AddRenderedClip(
        Asset("r3", AssetKind.VIDEO, "/r3.mp4", duration_frames=5), Clip("g3", "r3", V1, 0, 0, 5), ripple=True
    )
    check(project, rippled)
    assert spans(project)[:2] == [("g3", 0, 0, 5), ("a", 5, 0, 20)]


def test_avatar_link_is_two_way_and_removal_unlinks(project: Project) -> None:
    AddClip(clip("voice", 0, 48, track=A1, asset=AUDIO)).apply(project)
    avatar = Asset("av", AssetKind.VIDEO, "/renders/av.mp4", duration_frames=48, has_audio=True)
    check(project, AddRenderedClip(avatar, Clip("avc", "av", V2, 0, 0, 48), link_to="voice"))
    assert project.clip("voice").linked_clip_id == "avc" and project.clip("avc").linked_clip_id == "voice"
    check(project, RemoveClip("avc"))
    assert project.clip("voice").linked_clip_id is None


def test_compound_rolls_back_when_a_child_fails(project: Project) -> None:
    ok = Compound("Two moves", [MoveClip("a", 100), MoveClip("c", 120)])
    check(project, ok)
    assert ok.label == "Two moves"
    bad = Compound("Bad", [MoveClip("b", 0), MoveClip("a", 0)])  # second overlaps the first
    refused(project, bad, "already a clip")
    refused(project, Compound("Empty"), "Nothing to do")


def test_project_settings(project: Project) -> None:
    check(project, SetProjectSettings({"name": "Film", "width": 1920, "height": 1080}))
    refused(project, SetProjectSettings({"fps": 30}), "only change while the timeline is empty")
    refused(project, SetProjectSettings({"width": 0}), "positive whole number")
    refused(project, SetProjectSettings({"colour": 1}), "Unknown project settings")
    empty = sample_project()
    check(empty, SetProjectSettings({"fps": 30}))


def test_labels_are_user_text() -> None:
    assert MoveClip.label == "Move clip" and RippleDelete.label == "Ripple delete"
    assert TrimClip.merge_key != MoveClip.merge_key != SetClipGain.merge_key
    assert SetTrackLocked(V1, False).label == "Unlock track" and SetTrackMuted(V1, True).label == "Mute track"
    assert Compound("Paste", []).label == "Paste" and SplitAtFrame(3).label == "Split"


def test_snapping(project: Project) -> None:
    AddMarker(Marker("m", 44)).apply(project)
    targets = snap_targets(project, playhead=77, exclude_clip_ids={"c"})
    assert {0, 20, 30, 50, 44, 77} <= set(targets) and 60 not in targets
    assert snap_frame(42, targets, tolerance=3) == 44
    assert snap_frame(47, targets, tolerance=2) == 47  # nothing within 2 frames
    assert snap_frame(52, targets, tolerance=3) == 50
    assert snap_frame(25, targets, tolerance=5) == 20  # tie between 20 and 30 goes to the earlier
    # a dragged clip snaps by whichever edge is nearer: tail 47+5=52 -> 50 (pull 2) beats head 47 -> 44 (pull 3)
    assert snap_clip_start(47, 5, targets, tolerance=4) == 45
    assert snap_clip_start(43, 10, targets, tolerance=2) == 44  # head pull 1 beats tail 53 -> 50 (3)
    assert snap_clip_start(1, 100, targets, tolerance=0) == 1
    assert snap_clip_start(2, 3, [0, 4], tolerance=5) == 1  # tail to 4 (pull 1) rather than head to 0 (2)
    assert snap_clip_start(3, 50, [0], tolerance=5) == 0


def test_markers_sharing_a_frame_come_back_in_their_order():
    # Found by hypothesis: undo must put a marker back where it was among markers at the same frame.
    project = sample_project()
    AddMarker(Marker("first", 0)).apply(project)
    AddMarker(Marker("second", 0)).apply(project)
    before = project.to_dict()
    remove = RemoveMarker("first")
    remove.apply(project)
    remove.revert(project)
    assert project.to_dict() == before
    move = MoveMarker("first", 30)
    move.apply(project)
    move.revert(project)
    assert project.to_dict() == before
