"""Invertible edit commands: every user-visible change to a :class:`core.project.Project` is one of these.

Owns: :class:`Edit` (the base every command derives from), :class:`EditError`, and the commands
(add/remove assets and clips, move, trim, split, lift, ripple delete, insert, overwrite, tracks, gain,
markers, reference roles, relinking, takes, rendered clips, :class:`Compound`).

Contract of every edit:

- ``apply(project)`` makes the change; ``revert(project)`` undoes exactly what the last ``apply`` did.
  ``apply`` → ``revert`` restores an identical ``project.to_dict()``; ``apply`` → ``revert`` → ``apply``
  gives the same state as the first ``apply`` (ids of clips an edit creates are fixed when the edit is
  constructed, or on its first apply, so redo recreates the same ids).
- A failing edit leaves the project untouched: simple edits validate before they mutate; composite
  edits apply their children in order and revert the applied ones before re-raising. The error is an
  :class:`EditError` whose message is written for the user.
- ``label`` is the Edit ▸ Undo text. ``merge_key`` (-1 = never) and ``merge(later)`` fold a drag into one
  undo step: ``app/undo.py`` calls ``earlier.merge(later)`` after ``later`` was applied.

Editing rules enforced here: clips never overlap on a track; ``0 <= in_point < out_point <= asset
duration`` (still images have ``duration_frames = None`` and may be any length); clips start at frame
0 or later; a track shows only assets it accepts (:func:`core.project.track_accepts`); clips on a
locked track cannot be added, removed, moved, trimmed, split or changed, and a locked track cannot be
removed (muting and unlocking stay allowed). Insert and ripple delete act on one track (no sync lock).

Threading: main thread only (edits mutate the project). Must not import: PySide6, torch, diffusers,
``app``, ``models``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.project import (
    MAX_GAIN_DB,
    MIN_GAIN_DB,
    Asset,
    AssetKind,
    Clip,
    Marker,
    Project,
    ReferenceRole,
    Track,
    UnknownIdError,
    new_id,
    track_accepts,
)


class EditError(Exception):
    """An edit that cannot be made; the message says why in the user's words. Nothing was changed."""


class TrimSide(enum.StrEnum):
    HEAD = "head"
    TAIL = "tail"


class Edit:
    """Base of all edits. Subclasses set ``label`` and implement :meth:`apply` and :meth:`revert`."""

    label: ClassVar[str] = "Edit"
    merge_key: ClassVar[int] = -1

    def apply(self, project: Project) -> None:
        raise NotImplementedError

    def revert(self, project: Project) -> None:
        raise NotImplementedError

    def merge(self, later: Edit) -> bool:
        """Absorb ``later`` (already applied after this one) so both undo as one step. Default: no."""
        return False


def _absorb_old_values(first: Any, later: Any) -> None:
    """When ``later`` merges into ``first``, keep ``first``'s recorded old values and add those only
    ``later`` recorded: ``update_*`` returns just the fields it changed, so a first step that changed
    nothing (a drag that starts where the clip is) would otherwise revert to the wrong place."""
    first._old = {**later._old, **first._old}


# -- validation helpers ------------------------------------------------------------------------


def _track_name(track: Track) -> str:
    return f"“{track.name}”" if track.name else f"{track.kind.value} track {track.track_id[:8]}"


def _get_clip(project: Project, clip_id: str) -> Clip:
    try:
        return project.clip(clip_id)
    except UnknownIdError:
        raise EditError("That clip is no longer on the timeline.") from None


def _get_track(project: Project, track_id: str) -> Track:
    try:
        return project.track(track_id)
    except UnknownIdError:
        raise EditError("That track no longer exists.") from None


def _get_asset(project: Project, asset_id: str) -> Asset:
    try:
        return project.asset(asset_id)
    except UnknownIdError:
        raise EditError("That media is no longer in the bin.") from None


def _require_unlocked(track: Track, action: str) -> None:
    if track.locked:
        raise EditError(f"Track {_track_name(track)} is locked: unlock it to {action}.")


def _check_media_range(asset: Asset, in_point: int, out_point: int) -> None:
    if in_point < 0:
        raise EditError(f"Cannot start before the first frame of “{asset.name or asset.path}”.")
    if out_point <= in_point:
        raise EditError("A clip must be at least one frame long.")
    if asset.duration_frames is not None and out_point > asset.duration_frames:
        raise EditError(
            f"“{asset.name or asset.path}” is only {asset.duration_frames} frames long: "
            f"cannot use frames up to {out_point}."
        )


def _check_placement(track: Track, start: int, end: int, ignore: Sequence[str] = ()) -> None:
    if start < 0:
        raise EditError("A clip cannot start before the beginning of the timeline.")
    ignored = set(ignore)
    blocking = [c for c in track.clips_in(start, end) if c.clip_id not in ignored]
    if blocking:
        b = blocking[0]
        raise EditError(
            f"There is already a clip on track {_track_name(track)} at frames {b.start}–{b.end - 1}; "
            "clips on a track cannot overlap."
        )


def _check_accepts(track: Track, asset: Asset) -> None:
    if not track_accepts(track.kind, asset):
        if asset.kind is AssetKind.VIDEO:
            what = "video without sound" if track.kind.value == "audio" else "video"
        else:
            what = asset.kind.value
        raise EditError(f"A {what} clip cannot go on {track.kind.value} track {_track_name(track)}.")


def _apply_all(project: Project, children: Sequence[Edit]) -> None:
    """Apply children in order; on failure revert those applied (newest first) and re-raise."""
    done: list[Edit] = []
    try:
        for child in children:
            child.apply(project)
            done.append(child)
    except BaseException:
        for child in reversed(done):
            child.revert(project)
        raise


def _revert_all(project: Project, children: Sequence[Edit]) -> None:
    for child in reversed(children):
        child.revert(project)


# -- composites --------------------------------------------------------------------------------


@dataclass
class Compound(Edit):
    """Several edits as one undo step; owns its children (applied in order, reverted in reverse)."""

    label: str  # type: ignore[misc]  # an instance field here: the caller names the step
    children: list[Edit] = field(default_factory=list)

    def apply(self, project: Project) -> None:
        if not self.children:
            raise EditError("Nothing to do.")
        _apply_all(project, self.children)

    def revert(self, project: Project) -> None:
        _revert_all(project, self.children)


class _Planned(Edit):
    """An edit whose children are worked out from the project when it is applied.

    ``plan`` validates what it can and raises :class:`EditError` before anything changes; children that
    still fail roll back. Ids of clips the plan creates come from :meth:`_id`, fixed on the first apply.
    """

    _children: list[Edit]
    _ids: dict[str, str]

    def plan(self, project: Project) -> list[Edit]:
        raise NotImplementedError

    def _id(self, key: str) -> str:
        ids: dict[str, str] = self.__dict__.setdefault("_ids", {})
        if key not in ids:
            ids[key] = new_id()
        return ids[key]

    def apply(self, project: Project) -> None:
        children = self.plan(project)
        _apply_all(project, children)
        self._children = children

    def revert(self, project: Project) -> None:
        _revert_all(project, self._children)


# -- assets ------------------------------------------------------------------------------------


@dataclass
class AddAsset(Edit):
    """Add an asset to the bin (at ``index``, default the end)."""

    asset: Asset
    index: int | None = None
    label: ClassVar[str] = "Import media"

    def apply(self, project: Project) -> None:
        if project.has_asset(self.asset.asset_id):
            raise EditError(f"“{self.asset.name or self.asset.path}” is already in the bin.")
        if self.asset.kind is not AssetKind.IMAGE and self.asset.duration_frames is None:
            raise EditError(f"“{self.asset.name or self.asset.path}” has no known length.")
        project.insert_asset(Asset.from_dict(self.asset.to_dict()), self.index)

    def revert(self, project: Project) -> None:
        project.remove_asset(self.asset.asset_id)


@dataclass
class _RemoveAssetOnly(Edit):
    asset_id: str
    _asset: Asset | None = field(default=None, init=False, repr=False)
    _index: int = field(default=0, init=False, repr=False)

    def apply(self, project: Project) -> None:
        _get_asset(project, self.asset_id)
        self._asset, self._index = project.remove_asset(self.asset_id)

    def revert(self, project: Project) -> None:
        assert self._asset is not None
        project.insert_asset(self._asset, self._index)


@dataclass
class _SetTakes(Edit):
    clip_id: str
    takes: list[str]
    _old: list[str] = field(default_factory=list, init=False, repr=False)

    def apply(self, project: Project) -> None:
        clip = _get_clip(project, self.clip_id)
        self._old = list(clip.takes)
        project.update_clip(self.clip_id, takes=list(self.takes))

    def revert(self, project: Project) -> None:
        project.update_clip(self.clip_id, takes=self._old)


@dataclass
class RemoveAsset(_Planned):
    """Remove an asset from the bin, with the clips that show it; it also leaves other clips' takes."""

    asset_id: str
    label: ClassVar[str] = "Remove media"

    def plan(self, project: Project) -> list[Edit]:
        _get_asset(project, self.asset_id)
        children: list[Edit] = []
        for clip in project.clips_using(self.asset_id):
            if clip.asset_id == self.asset_id:
                _require_unlocked(project.track(clip.track_id), "remove clips of this media")
                children.append(RemoveClip(clip.clip_id))
            else:
                children.append(_SetTakes(clip.clip_id, [t for t in clip.takes if t != self.asset_id]))
        children.append(_RemoveAssetOnly(self.asset_id))
        return children


@dataclass
class SetAssetRole(Edit):
    """Tag an image asset with the reference role it plays in generations (None clears it)."""

    asset_id: str
    role: ReferenceRole | None
    label: ClassVar[str] = "Set reference role"
    _old: ReferenceRole | None = field(default=None, init=False, repr=False)

    def apply(self, project: Project) -> None:
        asset = _get_asset(project, self.asset_id)
        if self.role is not None and asset.kind is not AssetKind.IMAGE:
            raise EditError("Only images can be references: pick a still image.")
        self._old = asset.role
        project.update_asset(self.asset_id, role=self.role)

    def revert(self, project: Project) -> None:
        project.update_asset(self.asset_id, role=self._old)


@dataclass
class RenameAsset(Edit):
    asset_id: str
    name: str
    label: ClassVar[str] = "Rename media"
    _old: str = field(default="", init=False, repr=False)

    def apply(self, project: Project) -> None:
        self._old = _get_asset(project, self.asset_id).name
        project.update_asset(self.asset_id, name=self.name)

    def revert(self, project: Project) -> None:
        project.update_asset(self.asset_id, name=self._old)


_RELINK_FIELDS = frozenset(
    {"duration_frames", "width", "height", "fps", "has_audio", "sample_rate", "channels", "name"}
)


@dataclass
class RelinkAsset(Edit):
    """Point an asset at a new file (clears ``missing``); ``media`` updates probed properties.

    Refused when the new file is shorter than a clip using it needs, or is of another kind.
    """

    asset_id: str
    path: str
    media: Mapping[str, Any] = field(default_factory=dict)
    label: ClassVar[str] = "Relink media"
    _old: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def apply(self, project: Project) -> None:
        asset = _get_asset(project, self.asset_id)
        unknown = set(self.media) - _RELINK_FIELDS
        if unknown:
            raise EditError(f"Cannot relink: unknown media properties {sorted(unknown)}.")
        changes: dict[str, Any] = {"path": self.path, "missing": False, **self.media}
        duration = changes.get("duration_frames", asset.duration_frames)
        if asset.kind is not AssetKind.IMAGE and duration is None:
            raise EditError("Cannot relink: the new file has no known length.")
        if duration is not None:
            need = max((c.out_point for c in project.clips() if c.asset_id == self.asset_id), default=0)
            if need > duration:
                raise EditError(
                    f"The new file has {duration} frames but clips use up to frame {need}: "
                    "pick the same media or trim those clips first."
                )
        if changes.get("has_audio") is False and any(
            c.asset_id == self.asset_id and project.track(c.track_id).kind.value == "audio"
            for c in project.clips()
        ):
            raise EditError("The new file has no sound but this media is used on an audio track.")
        self._old = project.update_asset(self.asset_id, **changes)

    def revert(self, project: Project) -> None:
        project.update_asset(self.asset_id, **self._old)


# -- clips -------------------------------------------------------------------------------------


@dataclass
class AddClip(Edit):
    """Place a clip on its track where nothing else is."""

    clip: Clip
    label: ClassVar[str] = "Add clip"

    def apply(self, project: Project) -> None:
        clip = self.clip
        if project.has_clip(clip.clip_id):
            raise EditError("That clip is already on the timeline.")
        track = _get_track(project, clip.track_id)
        asset = _get_asset(project, clip.asset_id)
        _require_unlocked(track, "add clips")
        _check_accepts(track, asset)
        _check_media_range(asset, clip.in_point, clip.out_point)
        _check_placement(track, clip.start, clip.end)
        project.insert_clip(clip.copy())

    def revert(self, project: Project) -> None:
        project.remove_clip(self.clip.clip_id)


@dataclass
class RemoveClip(Edit):
    """Take a clip off the timeline (its linked partner forgets the link until undo)."""

    clip_id: str
    label: ClassVar[str] = "Remove clip"
    _clip: Clip | None = field(default=None, init=False, repr=False)
    _partner: str | None = field(default=None, init=False, repr=False)

    def apply(self, project: Project) -> None:
        clip = _get_clip(project, self.clip_id)
        _require_unlocked(project.track(clip.track_id), "remove clips")
        partner = clip.linked_clip_id
        self._partner = None
        if partner and project.has_clip(partner) and project.clip(partner).linked_clip_id == self.clip_id:
            self._partner = partner
            project.update_clip(partner, linked_clip_id=None)
        self._clip = project.remove_clip(self.clip_id).copy()

    def revert(self, project: Project) -> None:
        assert self._clip is not None
        project.insert_clip(self._clip.copy())
        if self._partner:
            project.update_clip(self._partner, linked_clip_id=self.clip_id)


@dataclass
class MoveClip(Edit):
    """Move a clip to ``new_start`` on its track or on ``new_track_id``. Merges while dragging."""

    clip_id: str
    new_start: int
    new_track_id: str | None = None
    label: ClassVar[str] = "Move clip"
    merge_key: ClassVar[int] = 1
    _old: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def apply(self, project: Project) -> None:
        clip = _get_clip(project, self.clip_id)
        source = project.track(clip.track_id)
        target = _get_track(project, self.new_track_id) if self.new_track_id else source
        _require_unlocked(source, "move its clips")
        _require_unlocked(target, "move clips onto it")
        if target is not source:
            _check_accepts(target, project.asset(clip.asset_id))
        _check_placement(target, self.new_start, self.new_start + clip.duration, ignore=[clip.clip_id])
        self._old = project.update_clip(self.clip_id, start=self.new_start, track_id=target.track_id)

    def revert(self, project: Project) -> None:
        project.update_clip(self.clip_id, **self._old)

    def merge(self, later: Edit) -> bool:
        if not isinstance(later, MoveClip) or later.clip_id != self.clip_id:
            return False
        self.new_start = later.new_start
        self.new_track_id = later.new_track_id or self.new_track_id
        _absorb_old_values(self, later)
        return True


@dataclass
class TrimClip(Edit):
    """Move a clip's head (first frame) or tail (frame after its last) to timeline frame ``frame``.

    The media under the clip stays put: a head trim changes ``start`` and ``in_point`` together; a tail
    trim changes ``out_point``. Merges while dragging the same edge.
    """

    clip_id: str
    side: TrimSide
    frame: int
    label: ClassVar[str] = "Trim clip"
    merge_key: ClassVar[int] = 2
    _old: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.side = TrimSide(self.side)

    def changes(self, clip: Clip) -> dict[str, int]:
        if self.side is TrimSide.HEAD:
            delta = self.frame - clip.start
            return {"start": self.frame, "in_point": clip.in_point + delta}
        return {"out_point": clip.out_point + self.frame - clip.end}

    def apply(self, project: Project) -> None:
        clip = _get_clip(project, self.clip_id)
        track = project.track(clip.track_id)
        _require_unlocked(track, "trim its clips")
        changes = self.changes(clip)
        in_point = changes.get("in_point", clip.in_point)
        out_point = changes.get("out_point", clip.out_point)
        start = changes.get("start", clip.start)
        _check_media_range(project.asset(clip.asset_id), in_point, out_point)
        _check_placement(track, start, start + out_point - in_point, ignore=[clip.clip_id])
        self._old = project.update_clip(self.clip_id, **changes)

    def revert(self, project: Project) -> None:
        project.update_clip(self.clip_id, **self._old)

    def merge(self, later: Edit) -> bool:
        if not isinstance(later, TrimClip) or (later.clip_id, later.side) != (self.clip_id, self.side):
            return False
        self.frame = later.frame
        _absorb_old_values(self, later)
        return True


@dataclass
class SplitClip(Edit):
    """Cut a clip in two at timeline ``frame``; the right part is a new clip ``new_clip_id``."""

    clip_id: str
    frame: int
    new_clip_id: str = field(default_factory=new_id)
    label: ClassVar[str] = "Split clip"
    _old_out: int = field(default=0, init=False, repr=False)

    def apply(self, project: Project) -> None:
        clip = _get_clip(project, self.clip_id)
        _require_unlocked(project.track(clip.track_id), "split its clips")
        if not clip.start < self.frame < clip.end:
            raise EditError("Split inside a clip: the playhead is on its first frame or outside it.")
        if project.has_clip(self.new_clip_id):
            raise EditError("That split was already made.")
        cut = clip.in_point + self.frame - clip.start
        right = clip.copy()
        right.clip_id = self.new_clip_id
        right.start = self.frame
        right.in_point = cut
        right.linked_clip_id = None
        self._old_out = clip.out_point
        project.update_clip(self.clip_id, out_point=cut)
        project.insert_clip(right)

    def revert(self, project: Project) -> None:
        project.remove_clip(self.new_clip_id)
        project.update_clip(self.clip_id, out_point=self._old_out)


@dataclass
class SplitAtFrame(_Planned):
    """Split every clip under ``frame`` on the given tracks (default: all unlocked tracks)."""

    frame: int
    track_ids: tuple[str, ...] | None = None
    label: ClassVar[str] = "Split"

    def plan(self, project: Project) -> list[Edit]:
        if self.track_ids is None:
            tracks = [t for t in project.tracks if not t.locked]
        else:
            tracks = [_get_track(project, tid) for tid in self.track_ids]
            for track in tracks:
                _require_unlocked(track, "split its clips")
        children: list[Edit] = []
        for track in tracks:
            clip = track.clip_at(self.frame)
            if clip is not None and clip.start < self.frame:
                children.append(SplitClip(clip.clip_id, self.frame, self._id(clip.clip_id)))
        if not children:
            raise EditError("There is no clip under the playhead to split.")
        return children


def _distinct(clip_ids: Sequence[str]) -> list[str]:
    if not clip_ids:
        raise EditError("Select one or more clips first.")
    return list(dict.fromkeys(clip_ids))


@dataclass
class Lift(_Planned):
    """Remove clips and leave gaps where they were."""

    clip_ids: tuple[str, ...]
    label: ClassVar[str] = "Lift"

    def plan(self, project: Project) -> list[Edit]:
        ids = _distinct(self.clip_ids)
        for cid in ids:
            _require_unlocked(project.track(_get_clip(project, cid).track_id), "remove clips")
        return [RemoveClip(cid) for cid in ids]


@dataclass
class RippleDelete(_Planned):
    """Remove clips and close the gaps: later clips on the same track move left by what was removed."""

    clip_ids: tuple[str, ...]
    label: ClassVar[str] = "Ripple delete"

    def plan(self, project: Project) -> list[Edit]:
        ids = _distinct(self.clip_ids)
        by_track: dict[str, list[Clip]] = {}
        for cid in ids:
            clip = _get_clip(project, cid)
            by_track.setdefault(clip.track_id, []).append(clip)
        removes: list[Edit] = []
        moves: list[Edit] = []
        for track_id, removed in by_track.items():
            track = project.track(track_id)
            _require_unlocked(track, "ripple delete its clips")
            gone = {c.clip_id for c in removed}
            removes.extend(RemoveClip(c.clip_id) for c in removed)
            for clip in track.clips:  # ascending start: each clip moves into space already free
                if clip.clip_id in gone:
                    continue
                shift = sum(c.duration for c in removed if c.end <= clip.start)
                if shift:
                    moves.append(MoveClip(clip.clip_id, clip.start - shift))
        return removes + moves


@dataclass
class Insert(_Planned):
    """Put ``clip`` on its track at ``clip.start``, pushing later clips right by its length.

    A clip under the insertion point is split there first (its right part gets a fixed new id).
    """

    clip: Clip
    label: ClassVar[str] = "Insert clip"

    def plan(self, project: Project) -> list[Edit]:
        clip = self.clip
        track = _get_track(project, clip.track_id)
        asset = _get_asset(project, clip.asset_id)
        _require_unlocked(track, "insert clips")
        _check_accepts(track, asset)
        _check_media_range(asset, clip.in_point, clip.out_point)
        if clip.start < 0:
            raise EditError("A clip cannot start before the beginning of the timeline.")
        if project.has_clip(clip.clip_id):
            raise EditError("That clip is already on the timeline.")
        children: list[Edit] = []
        to_move = [(c.clip_id, c.start) for c in track.clips if c.start >= clip.start]
        under = track.clip_at(clip.start)
        if under is not None and under.start < clip.start:
            split_id = self._id("split")
            children.append(SplitClip(under.clip_id, clip.start, split_id))
            to_move.insert(0, (split_id, clip.start))
        for clip_id, start in reversed(to_move):  # right to left: each moves into free space
            children.append(MoveClip(clip_id, start + clip.duration))
        children.append(AddClip(clip))
        return children


@dataclass
class Overwrite(_Planned):
    """Put ``clip`` on its track at ``clip.start``, cutting away whatever it covers."""

    clip: Clip
    label: ClassVar[str] = "Overwrite"

    def plan(self, project: Project) -> list[Edit]:
        clip = self.clip
        track = _get_track(project, clip.track_id)
        asset = _get_asset(project, clip.asset_id)
        _require_unlocked(track, "overwrite its clips")
        _check_accepts(track, asset)
        _check_media_range(asset, clip.in_point, clip.out_point)
        if clip.start < 0:
            raise EditError("A clip cannot start before the beginning of the timeline.")
        if project.has_clip(clip.clip_id):
            raise EditError("That clip is already on the timeline.")
        s, e = clip.start, clip.end
        children: list[Edit] = []
        for other in track.clips_in(s, e):
            if other.start >= s and other.end <= e:
                children.append(RemoveClip(other.clip_id))
            elif other.start < s and other.end > e:
                children.append(SplitClip(other.clip_id, e, self._id("split")))
                children.append(TrimClip(other.clip_id, TrimSide.TAIL, s))
            elif other.start < s:
                children.append(TrimClip(other.clip_id, TrimSide.TAIL, s))
            else:
                children.append(TrimClip(other.clip_id, TrimSide.HEAD, e))
        children.append(AddClip(clip))
        return children


@dataclass
class SetClipGain(Edit):
    """Set a clip's audio level in dB (clamped to ``[MIN_GAIN_DB, MAX_GAIN_DB]``). Merges while dragging."""

    clip_id: str
    gain_db: float
    label: ClassVar[str] = "Change level"
    merge_key: ClassVar[int] = 3
    _old: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def apply(self, project: Project) -> None:
        clip = _get_clip(project, self.clip_id)
        _require_unlocked(project.track(clip.track_id), "change its clips")
        if self.gain_db != self.gain_db:  # NaN
            raise EditError("The level must be a number of decibels.")
        value = float(min(max(self.gain_db, MIN_GAIN_DB), MAX_GAIN_DB))
        self._old = project.update_clip(self.clip_id, gain_db=value)

    def revert(self, project: Project) -> None:
        project.update_clip(self.clip_id, **self._old)

    def merge(self, later: Edit) -> bool:
        if not isinstance(later, SetClipGain) or later.clip_id != self.clip_id:
            return False
        self.gain_db = later.gain_db
        _absorb_old_values(self, later)
        return True


@dataclass
class SetClipTake(Edit):
    """Make ``asset_id`` (one of the clip's takes) the clip's active asset; the old one joins the takes.

    The clip keeps its place and in point; its out point shrinks if the new take is shorter.
    """

    clip_id: str
    asset_id: str
    label: ClassVar[str] = "Switch take"
    _old: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def apply(self, project: Project) -> None:
        clip = _get_clip(project, self.clip_id)
        _require_unlocked(project.track(clip.track_id), "change its clips")
        if self.asset_id not in clip.takes:
            raise EditError("That render is not a take of this clip.")
        asset = _get_asset(project, self.asset_id)
        _check_accepts(project.track(clip.track_id), asset)
        out = clip.out_point
        if asset.duration_frames is not None:
            out = min(out, asset.duration_frames)
        _check_media_range(asset, clip.in_point, out)
        takes = [clip.asset_id if t == self.asset_id else t for t in clip.takes]
        self._old = project.update_clip(self.clip_id, asset_id=self.asset_id, out_point=out, takes=takes)

    def revert(self, project: Project) -> None:
        project.update_clip(self.clip_id, **self._old)


@dataclass
class _SetLink(Edit):
    clip_id: str
    linked_clip_id: str | None
    _old: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def apply(self, project: Project) -> None:
        _get_clip(project, self.clip_id)
        self._old = project.update_clip(self.clip_id, linked_clip_id=self.linked_clip_id)

    def revert(self, project: Project) -> None:
        project.update_clip(self.clip_id, **self._old)


@dataclass
class AddRenderedClip(_Planned):
    """A finished render lands in the project as one undoable step (undo removes the clip, not the work).

    Adds ``asset`` to the bin, then one of:

    - ``clip`` given: places it (``ripple=True`` inserts, pushing later clips right; otherwise the
      place must be free); ``link_to`` links it with that clip both ways (an avatar and its audio).
    - ``take_of`` given: the render becomes a take of that clip and, with ``activate``, its active one.
    - neither: only the bin gains the asset.
    """

    asset: Asset
    clip: Clip | None = None
    take_of: str | None = None
    activate: bool = True
    ripple: bool = False
    link_to: str | None = None
    label: ClassVar[str] = "Add rendered clip"
    _children: list[Edit] = field(default_factory=list, init=False, repr=False)

    def plan(self, project: Project) -> list[Edit]:
        if self.clip is not None and self.take_of is not None:
            raise EditError("A render lands either as a new clip or as a take, not both.")
        children: list[Edit] = [AddAsset(self.asset)]
        if self.clip is not None:
            if self.clip.asset_id != self.asset.asset_id:
                raise EditError("The rendered clip must show the rendered media.")
            children.append(Insert(self.clip) if self.ripple else AddClip(self.clip))
            if self.link_to is not None:
                _get_clip(project, self.link_to)
                children.append(_SetLink(self.clip.clip_id, self.link_to))
                children.append(_SetLink(self.link_to, self.clip.clip_id))
        elif self.take_of is not None:
            target = _get_clip(project, self.take_of)
            children.append(_SetTakes(target.clip_id, [*target.takes, self.asset.asset_id]))
            if self.activate:
                children.append(SetClipTake(target.clip_id, self.asset.asset_id))
        return children


# -- tracks ------------------------------------------------------------------------------------


@dataclass
class AddTrack(Edit):
    """Add an empty track at ``index`` (default: the bottom)."""

    track: Track
    index: int | None = None
    label: ClassVar[str] = "Add track"

    def apply(self, project: Project) -> None:
        if project.has_track(self.track.track_id):
            raise EditError("That track is already in the project.")
        if self.track.clips:
            raise EditError("A new track must be empty.")
        t = self.track
        project.insert_track(Track(t.track_id, t.kind, t.name, t.locked, t.muted), self.index)

    def revert(self, project: Project) -> None:
        project.remove_track(self.track.track_id)


@dataclass
class _RemoveTrackOnly(Edit):
    track_id: str
    _track: Track | None = field(default=None, init=False, repr=False)
    _index: int = field(default=0, init=False, repr=False)

    def apply(self, project: Project) -> None:
        self._track, self._index = project.remove_track(self.track_id)

    def revert(self, project: Project) -> None:
        assert self._track is not None
        project.insert_track(self._track, self._index)


@dataclass
class RemoveTrack(_Planned):
    """Remove a track with its clips (refused while it is locked)."""

    track_id: str
    label: ClassVar[str] = "Remove track"

    def plan(self, project: Project) -> list[Edit]:
        track = _get_track(project, self.track_id)
        _require_unlocked(track, "remove it")
        children: list[Edit] = [RemoveClip(c.clip_id) for c in track.clips]
        children.append(_RemoveTrackOnly(self.track_id))
        return children


@dataclass
class _SetTrackFlag(Edit):
    track_id: str
    value: bool
    _old: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    attribute: ClassVar[str] = ""

    def apply(self, project: Project) -> None:
        _get_track(project, self.track_id)
        self._old = project.update_track(self.track_id, **{self.attribute: bool(self.value)})

    def revert(self, project: Project) -> None:
        project.update_track(self.track_id, **self._old)


@dataclass
class SetTrackLocked(_SetTrackFlag):
    """Lock (True) or unlock a track: a locked track's clips cannot be edited."""

    attribute: ClassVar[str] = "locked"

    @property
    def label(self) -> str:  # type: ignore[override]
        return "Lock track" if self.value else "Unlock track"


@dataclass
class SetTrackMuted(_SetTrackFlag):
    """Mute (True) or unmute a track (allowed on locked tracks)."""

    attribute: ClassVar[str] = "muted"

    @property
    def label(self) -> str:  # type: ignore[override]
        return "Mute track" if self.value else "Unmute track"


@dataclass
class RenameTrack(Edit):
    track_id: str
    name: str
    label: ClassVar[str] = "Rename track"
    _old: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def apply(self, project: Project) -> None:
        _get_track(project, self.track_id)
        self._old = project.update_track(self.track_id, name=self.name)

    def revert(self, project: Project) -> None:
        project.update_track(self.track_id, **self._old)


# -- markers and settings ----------------------------------------------------------------------


@dataclass
class AddMarker(Edit):
    marker: Marker
    label: ClassVar[str] = "Add marker"

    def apply(self, project: Project) -> None:
        if self.marker.frame < 0:
            raise EditError("A marker cannot sit before the beginning of the timeline.")
        if any(m.marker_id == self.marker.marker_id for m in project.markers):
            raise EditError("That marker is already on the timeline.")
        project.insert_marker(Marker(self.marker.marker_id, self.marker.frame, self.marker.name))

    def revert(self, project: Project) -> None:
        project.remove_marker(self.marker.marker_id)


@dataclass
class RemoveMarker(Edit):
    marker_id: str
    label: ClassVar[str] = "Remove marker"
    _marker: Marker | None = field(default=None, init=False, repr=False)
    _index: int = field(default=0, init=False, repr=False)

    def apply(self, project: Project) -> None:
        try:
            self._index = project.marker_index(self.marker_id)
            self._marker = project.remove_marker(self.marker_id)
        except UnknownIdError:
            raise EditError("That marker is no longer on the timeline.") from None

    def revert(self, project: Project) -> None:
        assert self._marker is not None
        project.insert_marker(self._marker, self._index)


@dataclass
class MoveMarker(Edit):
    """Move a marker to ``frame`` (re-inserted to keep markers sorted). Merges while dragging."""

    marker_id: str
    frame: int
    label: ClassVar[str] = "Move marker"
    merge_key: ClassVar[int] = 4
    _old: int = field(default=0, init=False, repr=False)
    _old_index: int = field(default=0, init=False, repr=False)

    def apply(self, project: Project) -> None:
        if self.frame < 0:
            raise EditError("A marker cannot sit before the beginning of the timeline.")
        try:
            marker = project.marker(self.marker_id)
        except UnknownIdError:
            raise EditError("That marker is no longer on the timeline.") from None
        self._old = marker.frame
        self._old_index = project.marker_index(self.marker_id)
        project.remove_marker(self.marker_id)
        project.insert_marker(Marker(marker.marker_id, self.frame, marker.name))

    def revert(self, project: Project) -> None:
        marker = project.remove_marker(self.marker_id)
        project.insert_marker(Marker(marker.marker_id, self._old, marker.name), self._old_index)

    def merge(self, later: Edit) -> bool:
        if not isinstance(later, MoveMarker) or later.marker_id != self.marker_id:
            return False
        self.frame = later.frame
        return True


@dataclass
class SetProjectSettings(Edit):
    """Change project settings (name, size, sample rate; fps only while the timeline is empty)."""

    changes: Mapping[str, Any]
    label: ClassVar[str] = "Project settings"
    _old: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def apply(self, project: Project) -> None:
        allowed = {"name", "fps", "width", "height", "sample_rate"}
        unknown = set(self.changes) - allowed
        if unknown:
            raise EditError(f"Unknown project settings: {', '.join(sorted(unknown))}.")
        for key in ("fps", "width", "height", "sample_rate"):
            if key in self.changes and (not isinstance(self.changes[key], int) or self.changes[key] <= 0):
                raise EditError(f"The project {key.replace('_', ' ')} must be a positive whole number.")
        if "fps" in self.changes and self.changes["fps"] != project.settings.fps and project.clip_count():
            raise EditError("The frame rate can only change while the timeline is empty.")
        self._old = project.update_settings(**self.changes)

    def revert(self, project: Project) -> None:
        project.update_settings(**self._old)


__all__ = [
    "AddAsset",
    "AddClip",
    "AddMarker",
    "AddRenderedClip",
    "AddTrack",
    "Compound",
    "Edit",
    "EditError",
    "Insert",
    "Lift",
    "MoveClip",
    "MoveMarker",
    "Overwrite",
    "RelinkAsset",
    "RemoveAsset",
    "RemoveClip",
    "RemoveMarker",
    "RemoveTrack",
    "RenameAsset",
    "RenameTrack",
    "RippleDelete",
    "SetAssetRole",
    "SetClipGain",
    "SetClipTake",
    "SetProjectSettings",
    "SetTrackLocked",
    "SetTrackMuted",
    "SplitAtFrame",
    "SplitClip",
    "TrimClip",
    "TrimSide",
]
