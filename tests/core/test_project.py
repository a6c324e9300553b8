"""The project model: lookups, sorted tracks, events, snapshots and the invariant checker; the Signal."""

from __future__ import annotations

import pytest

from core.generation import GenerationRecipe, Task
from core.project import (
    Asset,
    AssetKind,
    Clip,
    Marker,
    Project,
    Track,
    TrackKind,
    UnknownIdError,
    new_id,
    track_accepts,
)
from core.signals import Signal
from tests.fakes import A1, AUDIO, IMAGE, V1, V2, VIDEO, clip, sample_project


def test_signal_connect_emit_disconnect_block() -> None:
    sig = Signal("changed")
    got: list[tuple[object, ...]] = []

    def slot(*args: object) -> None:
        got.append(args)

    sig.connect(slot)
    sig.connect(slot)  # twice is once
    sig.emit(1, "a")
    assert got == [(1, "a")]
    with sig.block():
        sig.emit(2)
    assert got == [(1, "a")]
    sig.disconnect(slot)
    sig.emit(3)
    assert got == [(1, "a")]
    with pytest.raises(ValueError, match="not connected"):
        sig.disconnect(slot)
    with pytest.raises(TypeError):
        sig.connect(42)  # type: ignore[arg-type]


def test_signal_slot_disconnecting_during_emit_does_not_skip_others() -> None:
    sig = Signal()
    calls: list[str] = []

    def first() -> None:
        calls.append("first")
        sig.disconnect(first)

    sig.connect(first)
    sig.connect(lambda: calls.append("second"))
    sig.emit()
    sig.emit()
    assert calls == ["first", "second", "second"]


def test_lookups_and_sorted_tracks() -> None:
    p = sample_project()
    for cid, start in (("c", 50), ("a", 0), ("b", 20)):
        p.insert_clip(clip(cid, start, 10))
    assert [c.clip_id for c in p.clips_on(V1)] == ["a", "b", "c"]
    assert p.clips_on(p.track(V1)) is p.track(V1).clips
    assert p.clip("b").duration == 10 and p.clip("b").end == 30
    assert p.end_frame == 60
    assert p.track(V1).clip_at(25).clip_id == "b"  # type: ignore[union-attr]
    assert p.track(V1).clip_at(30) is None
    assert [c.clip_id for c in p.track(V1).clips_in(5, 21)] == ["a", "b"]
    assert p.track(V1).is_free(30, 50) and not p.track(V1).is_free(29, 50)
    assert [c.clip_id for c in p.clips()] == ["a", "b", "c"]
    p.update_clip("a", start=70)
    assert [c.clip_id for c in p.clips_on(V1)] == ["b", "c", "a"]
    p.update_clip("b", track_id=V2)
    assert [c.clip_id for c in p.clips_on(V2)] == ["b"]
    assert p.check_invariants() == []
    with pytest.raises(UnknownIdError, match="no clip with id 'nope'"):
        p.clip("nope")
    with pytest.raises(UnknownIdError, match="no track"):
        p.track("nope")
    with pytest.raises(UnknownIdError, match="no asset"):
        p.asset("nope")


def test_events_are_emitted_with_old_values() -> None:
    p = sample_project()
    seen: list[tuple[str, object]] = []
    p.clip_added.connect(lambda c: seen.append(("added", c.clip_id)))
    p.clip_changed.connect(lambda c, old: seen.append(("changed", old)))
    p.clip_removed.connect(lambda c: seen.append(("removed", c.track_id)))
    p.track_added.connect(lambda t, i: seen.append(("track", i)))
    p.settings_changed.connect(lambda s, old: seen.append(("settings", old)))
    p.marker_added.connect(lambda m: seen.append(("marker", m.frame)))
    p.asset_changed.connect(lambda a, old: seen.append(("asset", old)))
    p.insert_clip(clip("a", 0, 10))
    p.update_clip("a", start=5, track_id=V2)
    p.update_clip("a", start=5)  # no change, no event
    p.remove_clip("a")
    p.insert_track(Track("t", TrackKind.AUDIO), 1)
    p.update_settings(name="Renamed")
    p.insert_marker(Marker("m", 12, "beat"))
    p.update_asset(IMAGE, role=None)
    assert seen == [
        ("added", "a"),
        ("changed", {"start": 0, "track_id": V1}),
        ("removed", V2),
        ("track", 1),
        ("settings", {"name": "Sample"}),
        ("marker", 12),
        ("asset", {"role": "character"}),
    ]


def test_snapshot_round_trip_with_recipe_and_takes() -> None:
    p = sample_project()
    recipe = GenerationRecipe(Task.REFERENCE_TO_VIDEO, "a hero walks", reference_asset_ids=(IMAGE,), seed=7)
    c = Clip("g", VIDEO, V1, 3, 1, 40, gain_db=-6.0, recipe=recipe, takes=[AUDIO], linked_clip_id=None)
    p.insert_clip(c)
    p.insert_marker(Marker("m2", 30))
    p.insert_marker(Marker("m1", 10))
    data = p.to_dict()
    q = Project.from_dict(data)
    assert q.to_dict() == data
    assert q.clip("g").recipe == recipe
    assert [m.marker_id for m in q.markers] == ["m1", "m2"]
    assert abs(q.clip("g").gain_linear - 0.501) < 1e-3


def test_invariant_checker_finds_overlaps_and_bad_ranges() -> None:
    p = sample_project()
    p.insert_clip(clip("a", 0, 10))
    p.insert_clip(clip("b", 5, 10))  # primitives do not police editing rules; the checker sees it
    p.insert_clip(Clip("c", VIDEO, V2, 0, 90, 120))
    p.insert_clip(clip("d", 0, 10, track=A1, asset=IMAGE))
    problems = "\n".join(p.check_invariants())
    assert "overlaps clip a" in problems
    assert "past the media's 100 frames" in problems
    assert "a image asset on a audio track" in problems


def test_structural_errors() -> None:
    p = sample_project()
    with pytest.raises(ValueError, match="already"):
        p.insert_asset(Asset(VIDEO, AssetKind.VIDEO, "/x", duration_frames=1))
    p.insert_clip(clip("a", 0, 10))
    with pytest.raises(ValueError, match="still holds 1 clips"):
        p.remove_track(V1)
    with pytest.raises(AttributeError):
        p.update_clip("a", colour="red")
    with pytest.raises(UnknownIdError):
        p.update_clip("a", track_id="missing")
    assert p.clip("a").track_id == V1 and p.check_invariants() == []


def test_track_accepts_and_ids() -> None:
    p = sample_project()
    assert track_accepts(TrackKind.VIDEO, p.asset(IMAGE))
    assert track_accepts(TrackKind.AUDIO, p.asset(VIDEO))  # has sound
    assert not track_accepts(TrackKind.VIDEO, p.asset(AUDIO))
    assert len({new_id() for _ in range(100)}) == 100
    assert p.asset_index(AUDIO) == 2
    assert p.track_index(A1) == 2
