"""The project model: settings, the bin of assets, tracks of clips, markers, and their change events.

Owns: :class:`Project`, :class:`ProjectSettings`, :class:`Asset`, :class:`Clip`, :class:`Track`,
:class:`Marker`, the kind/role enums and :func:`new_id`.

Time is an integer frame count at the project rate (``settings.fps``), never float seconds. Asset
durations (``Asset.duration_frames``) are in project frames too: whoever imports media converts once.

Mutation: every user-visible change goes through an edit in :mod:`core.edits`. The ``insert_*`` /
``remove_*`` / ``update_*`` methods below are the primitive operations edits (and persistence) are built
from: each one changes one thing, keeps tracks sorted and emits one past-tense event. They check
structural facts (unknown ids, duplicate ids) but not editing rules (overlaps, locked tracks, media
bounds): those belong to the edits, which validate before they mutate.

Events (each a :class:`core.signals.Signal` on the project; arguments in brackets):

- ``asset_added(asset)``, ``asset_removed(asset, index)``, ``asset_changed(asset, old)``
- ``clip_added(clip)``, ``clip_removed(clip)``, ``clip_changed(clip, old)``
- ``track_added(track, index)``, ``track_removed(track, index)``, ``track_changed(track, old)``
- ``marker_added(marker)``, ``marker_removed(marker)``
- ``settings_changed(settings, old)``

``old`` is a dict of the changed attribute names to their previous values (for a clip moved across
tracks it contains ``track_id``, so an adapter can find the row it came from). ``clip_removed`` is
emitted after the clip has left its track; ``clip.track_id`` still names the track it was on.

Threading: main thread only.

Must not import: PySide6, torch, diffusers, ``app``, ``models``.
"""

from __future__ import annotations

import bisect
import enum
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from core.generation import GenerationRecipe
from core.signals import Signal

MIN_GAIN_DB = -96.0
"""Lowest clip gain in dB (treated as silence by mixers)."""
MAX_GAIN_DB = 24.0
"""Highest clip gain in dB."""


def new_id() -> str:
    """A fresh explicit id (uuid4 hex, 32 characters)."""
    return uuid.uuid4().hex


class AssetKind(enum.StrEnum):
    VIDEO = "video"
    IMAGE = "image"
    AUDIO = "audio"


class ReferenceRole(enum.StrEnum):
    """What a reference image stands for when it guides a generation."""

    CHARACTER = "character"
    OBJECT = "object"
    BACKGROUND = "background"
    STYLE = "style"


class TrackKind(enum.StrEnum):
    VIDEO = "video"
    AUDIO = "audio"


class UnknownIdError(KeyError):
    """An id that names nothing in the project. ``str()`` gives a readable message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown id"


@dataclass
class ProjectSettings:
    """Project-wide settings. ``fps`` is an integer frame rate; the timeline counts frames at it."""

    name: str = "Untitled"
    fps: int = 24
    width: int = 1280
    height: int = 720
    sample_rate: int = 48000

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "sample_rate": self.sample_rate,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProjectSettings:
        return cls(
            name=str(data.get("name", "Untitled")),
            fps=int(data.get("fps", 24)),
            width=int(data.get("width", 1280)),
            height=int(data.get("height", 720)),
            sample_rate=int(data.get("sample_rate", 48000)),
        )


@dataclass
class Asset:
    """A media file in the bin.

    Attributes:
        path: absolute path in memory (save files store it relative to the project file).
        duration_frames: length in project frames; ``None`` for still images, which may be used for any
            length on the timeline.
        fps: the file's own frame rate (informational; the timeline works at the project rate).
        role: for images used as references: what they stand for (None = not a reference).
        missing: the file was not found when the project was opened (relink to fix).
    """

    asset_id: str
    kind: AssetKind
    path: str
    name: str = ""
    duration_frames: int | None = None
    width: int = 0
    height: int = 0
    fps: float = 0.0
    has_audio: bool = False
    sample_rate: int = 0
    channels: int = 0
    role: ReferenceRole | None = None
    missing: bool = False

    @property
    def is_unlimited(self) -> bool:
        """True when clips of this asset may be any length (still images)."""
        return self.duration_frames is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset_id": self.asset_id,
            "kind": self.kind.value,
            "path": self.path,
            "name": self.name,
            "duration_frames": self.duration_frames,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "has_audio": self.has_audio,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "role": self.role.value if self.role else None,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Asset:
        duration = data.get("duration_frames")
        role = data.get("role")
        return cls(
            asset_id=str(data["asset_id"]),
            kind=AssetKind(data["kind"]),
            path=str(data["path"]),
            name=str(data.get("name", "")),
            duration_frames=None if duration is None else int(duration),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
            fps=float(data.get("fps", 0.0)),
            has_audio=bool(data.get("has_audio", False)),
            sample_rate=int(data.get("sample_rate", 0)),
            channels=int(data.get("channels", 0)),
            role=ReferenceRole(role) if role else None,
            missing=bool(data.get("missing", False)),
        )


@dataclass
class Clip:
    """A use of an asset on a track: frames ``[in_point, out_point)`` of the asset shown from ``start``.

    All times are integer frames at the project rate. ``gain_db`` is the clip's audio level in decibels
    (0 = unity; linear factor ``10 ** (gain_db / 20)``, see :attr:`gain_linear`), clamped by edits to
    ``[MIN_GAIN_DB, MAX_GAIN_DB]``.

    ``recipe`` is set on generated clips so they can be re-rendered identically. ``takes`` lists asset
    ids of alternative renders of this clip (the active one is ``asset_id``). ``linked_clip_id`` ties an
    avatar clip to the audio clip that drives it (and back).
    """

    clip_id: str
    asset_id: str
    track_id: str
    start: int
    in_point: int
    out_point: int
    gain_db: float = 0.0
    recipe: GenerationRecipe | None = None
    takes: list[str] = field(default_factory=list)
    linked_clip_id: str | None = None

    @property
    def duration(self) -> int:
        return self.out_point - self.in_point

    @property
    def end(self) -> int:
        """First frame after the clip (exclusive)."""
        return self.start + self.out_point - self.in_point

    @property
    def gain_linear(self) -> float:
        if self.gain_db <= MIN_GAIN_DB:
            return 0.0
        return float(10.0 ** (self.gain_db / 20.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "clip_id": self.clip_id,
            "asset_id": self.asset_id,
            "track_id": self.track_id,
            "start": self.start,
            "in_point": self.in_point,
            "out_point": self.out_point,
            "gain_db": self.gain_db,
            "recipe": self.recipe.to_json() if self.recipe else None,
            "takes": list(self.takes),
            "linked_clip_id": self.linked_clip_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Clip:
        recipe = data.get("recipe")
        return cls(
            clip_id=str(data["clip_id"]),
            asset_id=str(data["asset_id"]),
            track_id=str(data["track_id"]),
            start=int(data["start"]),
            in_point=int(data["in_point"]),
            out_point=int(data["out_point"]),
            gain_db=float(data.get("gain_db", 0.0)),
            recipe=GenerationRecipe.from_json(recipe) if recipe else None,
            takes=[str(t) for t in data.get("takes", [])],
            linked_clip_id=data.get("linked_clip_id"),
        )

    def copy(self) -> Clip:
        """A detached copy (same id) for undo records."""
        return Clip.from_dict(self.to_dict())


@dataclass
class Track:
    """A video or audio lane. ``clips`` is kept sorted by ``start``; read it, never mutate it."""

    track_id: str
    kind: TrackKind
    name: str = ""
    locked: bool = False
    muted: bool = False
    _clips: list[Clip] = field(default_factory=list, repr=False)
    _starts: list[int] = field(default_factory=list, repr=False)

    @property
    def clips(self) -> Sequence[Clip]:
        return self._clips

    def clip_at(self, frame: int) -> Clip | None:
        """The clip covering ``frame`` on this track, if any."""
        i = bisect.bisect_right(self._starts, frame) - 1
        if i >= 0 and self._clips[i].end > frame:
            return self._clips[i]
        return None

    def clips_in(self, start: int, end: int) -> list[Clip]:
        """Clips intersecting ``[start, end)``, in timeline order."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out: list[Clip] = []
        for clip in self._clips[i:]:
            if clip.start >= end:
                break
            if clip.end > start:
                out.append(clip)
        return out

    def is_free(self, start: int, end: int, ignore: set[str] | frozenset[str] = frozenset()) -> bool:
        """True when no clip (other than those in ``ignore``) intersects ``[start, end)``."""
        return all(c.clip_id in ignore for c in self.clips_in(start, end))

    @property
    def end_frame(self) -> int:
        return max((c.end for c in self._clips), default=0)

    def _insert(self, clip: Clip) -> None:
        i = bisect.bisect_right(self._starts, clip.start)
        self._clips.insert(i, clip)
        self._starts.insert(i, clip.start)

    def _remove(self, clip: Clip) -> None:
        for i, c in enumerate(self._clips):
            if c is clip:
                del self._clips[i]
                del self._starts[i]
                return
        raise UnknownIdError(f"clip {clip.clip_id} is not on track {self.name or self.track_id}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "kind": self.kind.value,
            "name": self.name,
            "locked": self.locked,
            "muted": self.muted,
        }


@dataclass
class Marker:
    """A named point on the timeline."""

    marker_id: str
    frame: int
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"marker_id": self.marker_id, "frame": self.frame, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Marker:
        return cls(marker_id=str(data["marker_id"]), frame=int(data["frame"]), name=str(data.get("name", "")))


_CLIP_FIELDS = frozenset(f.name for f in fields(Clip)) - {"clip_id"}
_ASSET_FIELDS = frozenset(f.name for f in fields(Asset)) - {"asset_id"}
_TRACK_FIELDS = frozenset({"name", "locked", "muted"})
_SETTINGS_FIELDS = frozenset(f.name for f in fields(ProjectSettings))


class Project:
    """Settings, the bin, tracks (top to bottom in list order), markers, and the events they emit.

    Threading: main thread only. See the module docstring for the events and the mutation rules.
    """

    def __init__(self, settings: ProjectSettings | None = None) -> None:
        self.settings = settings or ProjectSettings()
        self._assets: dict[str, Asset] = {}
        self._tracks: list[Track] = []
        self._track_index: dict[str, Track] = {}
        self._clips: dict[str, Clip] = {}
        self._markers: list[Marker] = []

        self.asset_added = Signal("asset_added")
        self.asset_removed = Signal("asset_removed")
        self.asset_changed = Signal("asset_changed")
        self.clip_added = Signal("clip_added")
        self.clip_removed = Signal("clip_removed")
        self.clip_changed = Signal("clip_changed")
        self.track_added = Signal("track_added")
        self.track_removed = Signal("track_removed")
        self.track_changed = Signal("track_changed")
        self.marker_added = Signal("marker_added")
        self.marker_removed = Signal("marker_removed")
        self.settings_changed = Signal("settings_changed")

    def __repr__(self) -> str:
        return (
            f"<Project {self.settings.name!r} {len(self._assets)} assets, {len(self._tracks)} tracks, "
            f"{len(self._clips)} clips>"
        )

    # -- lookups ---------------------------------------------------------------------------------

    @property
    def assets(self) -> list[Asset]:
        """Bin assets in insertion order (a new list)."""
        return list(self._assets.values())

    @property
    def tracks(self) -> Sequence[Track]:
        """Tracks top to bottom; read it, never mutate it."""
        return self._tracks

    @property
    def markers(self) -> Sequence[Marker]:
        """Markers sorted by frame; read it, never mutate it."""
        return self._markers

    def clips(self) -> Iterator[Clip]:
        """Every clip, track by track in timeline order."""
        for track in self._tracks:
            yield from track.clips

    def clips_on(self, track: Track | str) -> Sequence[Clip]:
        """Clips of a track (object or id), sorted by start."""
        return (self.track(track) if isinstance(track, str) else track).clips

    def clip_count(self) -> int:
        return len(self._clips)

    def asset(self, asset_id: str) -> Asset:
        try:
            return self._assets[asset_id]
        except KeyError:
            raise UnknownIdError(f"no asset with id {asset_id!r} in the project") from None

    def clip(self, clip_id: str) -> Clip:
        try:
            return self._clips[clip_id]
        except KeyError:
            raise UnknownIdError(f"no clip with id {clip_id!r} on the timeline") from None

    def track(self, track_id: str) -> Track:
        try:
            return self._track_index[track_id]
        except KeyError:
            raise UnknownIdError(f"no track with id {track_id!r} in the project") from None

    def marker(self, marker_id: str) -> Marker:
        for m in self._markers:
            if m.marker_id == marker_id:
                return m
        raise UnknownIdError(f"no marker with id {marker_id!r} in the project")

    def has_asset(self, asset_id: str) -> bool:
        return asset_id in self._assets

    def has_clip(self, clip_id: str) -> bool:
        return clip_id in self._clips

    def has_track(self, track_id: str) -> bool:
        return track_id in self._track_index

    def track_index(self, track_id: str) -> int:
        return self._tracks.index(self.track(track_id))

    def asset_index(self, asset_id: str) -> int:
        self.asset(asset_id)
        return list(self._assets).index(asset_id)

    def clips_using(self, asset_id: str) -> list[Clip]:
        """Clips whose active asset or one of whose takes is ``asset_id``."""
        return [c for c in self.clips() if c.asset_id == asset_id or asset_id in c.takes]

    def missing_assets(self) -> list[Asset]:
        return [a for a in self._assets.values() if a.missing]

    @property
    def end_frame(self) -> int:
        """First frame after the last clip (0 for an empty timeline)."""
        return max((t.end_frame for t in self._tracks), default=0)

    def duration_seconds(self) -> float:
        """Timeline length in seconds (for display only; edits work in frames)."""
        return self.end_frame / self.settings.fps

    # -- primitive mutations (for core.edits and core.persistence only) ---------------------------

    def insert_asset(self, asset: Asset, index: int | None = None) -> None:
        if asset.asset_id in self._assets:
            raise ValueError(f"an asset with id {asset.asset_id!r} is already in the project")
        if index is None or index >= len(self._assets):
            self._assets[asset.asset_id] = asset
        else:
            items = list(self._assets.items())
            items.insert(index, (asset.asset_id, asset))
            self._assets = dict(items)
        self.asset_added.emit(asset)

    def remove_asset(self, asset_id: str) -> tuple[Asset, int]:
        """Remove an asset; returns it and its bin index (for re-insertion)."""
        index = self.asset_index(asset_id)
        asset = self._assets.pop(asset_id)
        self.asset_removed.emit(asset, index)
        return asset, index

    def update_asset(self, asset_id: str, **changes: Any) -> dict[str, Any]:
        """Set asset attributes; returns the previous values of those that changed."""
        asset = self.asset(asset_id)
        old = _apply_changes(asset, changes, _ASSET_FIELDS, "asset")
        if old:
            self.asset_changed.emit(asset, old)
        return old

    def insert_track(self, track: Track, index: int | None = None) -> None:
        if track.track_id in self._track_index:
            raise ValueError(f"a track with id {track.track_id!r} is already in the project")
        if track.clips:
            raise ValueError("insert an empty track, then its clips")
        if index is None or index > len(self._tracks):
            index = len(self._tracks)
        self._tracks.insert(index, track)
        self._track_index[track.track_id] = track
        self.track_added.emit(track, index)

    def remove_track(self, track_id: str) -> tuple[Track, int]:
        """Remove an empty track; returns it and its index."""
        track = self.track(track_id)
        if track.clips:
            raise ValueError(f"track {track.name or track_id} still holds {len(track.clips)} clips")
        index = self._tracks.index(track)
        del self._tracks[index]
        del self._track_index[track_id]
        self.track_removed.emit(track, index)
        return track, index

    def update_track(self, track_id: str, **changes: Any) -> dict[str, Any]:
        track = self.track(track_id)
        old = _apply_changes(track, changes, _TRACK_FIELDS, "track")
        if old:
            self.track_changed.emit(track, old)
        return old

    def insert_clip(self, clip: Clip) -> None:
        """Put a clip on its track (``clip.track_id``), keeping the track sorted."""
        if clip.clip_id in self._clips:
            raise ValueError(f"a clip with id {clip.clip_id!r} is already on the timeline")
        track = self.track(clip.track_id)
        track._insert(clip)
        self._clips[clip.clip_id] = clip
        self.clip_added.emit(clip)

    def remove_clip(self, clip_id: str) -> Clip:
        clip = self.clip(clip_id)
        self.track(clip.track_id)._remove(clip)
        del self._clips[clip_id]
        self.clip_removed.emit(clip)
        return clip

    def update_clip(self, clip_id: str, **changes: Any) -> dict[str, Any]:
        """Set clip attributes (``track_id`` moves it across tracks); returns the previous values."""
        clip = self.clip(clip_id)
        unknown = set(changes) - _CLIP_FIELDS
        if unknown:
            raise AttributeError(f"clips have no attribute(s) {sorted(unknown)}")
        if "track_id" in changes:
            self.track(changes["track_id"])  # raise before mutating
        old_track = self.track(clip.track_id)
        resort = "start" in changes or "track_id" in changes
        if resort:
            old_track._remove(clip)
        try:
            old = _apply_changes(clip, changes, _CLIP_FIELDS, "clip")
        finally:
            if resort:
                self.track(clip.track_id)._insert(clip)
        if old:
            self.clip_changed.emit(clip, old)
        return old

    def marker_index(self, marker_id: str) -> int:
        """Position of a marker in the sorted list (markers at the same frame keep their order)."""
        return self._markers.index(self.marker(marker_id))

    def insert_marker(self, marker: Marker, index: int | None = None) -> None:
        """Insert keeping markers sorted by frame: after those at the same frame, or at ``index`` (undo
        puts a marker back exactly where it was among markers sharing its frame)."""
        if any(m.marker_id == marker.marker_id for m in self._markers):
            raise ValueError(f"a marker with id {marker.marker_id!r} is already in the project")
        frames = [m.frame for m in self._markers]
        if index is None:
            i = bisect.bisect_right(frames, marker.frame)
        else:
            if not 0 <= index <= len(frames) or (index > 0 and frames[index - 1] > marker.frame) or (
                index < len(frames) and frames[index] < marker.frame
            ):
                raise ValueError(f"inserting marker {marker.marker_id!r} at {index} would break the frame order")
            i = index
        self._markers.insert(i, marker)
        self.marker_added.emit(marker)

    def remove_marker(self, marker_id: str) -> Marker:
        marker = self.marker(marker_id)
        self._markers.remove(marker)
        self.marker_removed.emit(marker)
        return marker

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        old = _apply_changes(self.settings, changes, _SETTINGS_FIELDS, "settings")
        if old:
            self.settings_changed.emit(self.settings, old)
        return old

    # -- snapshots and invariants ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole project as plain JSON-compatible data (absolute paths, no schema version).

        Two projects with equal ``to_dict()`` are the same project: tests compare snapshots with it.
        """
        return {
            "settings": self.settings.to_dict(),
            "assets": [a.to_dict() for a in self._assets.values()],
            "tracks": [{**t.to_dict(), "clips": [c.to_dict() for c in t.clips]} for t in self._tracks],
            "markers": [m.to_dict() for m in self._markers],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Project:
        """Build a project from :meth:`to_dict` data (no events are observed: nobody listens yet)."""
        project = cls(ProjectSettings.from_dict(data.get("settings", {})))
        for a in data.get("assets", []):
            project.insert_asset(Asset.from_dict(a))
        for t in data.get("tracks", []):
            track = Track(
                track_id=str(t["track_id"]),
                kind=TrackKind(t["kind"]),
                name=str(t.get("name", "")),
                locked=bool(t.get("locked", False)),
                muted=bool(t.get("muted", False)),
            )
            project.insert_track(track)
            for c in t.get("clips", []):
                clip = Clip.from_dict({**c, "track_id": track.track_id})
                project.insert_clip(clip)
        for m in data.get("markers", []):
            project.insert_marker(Marker.from_dict(m))
        return project

    def check_invariants(self) -> list[str]:
        """Problems with the model's rules, in words (empty when all hold).

        Rules: clips on a track never overlap; ``0 <= in_point < out_point <= asset duration`` (still
        images have no upper bound); every clip names an existing asset and track of a kind that can
        show it; clip ids are unique; tracks are sorted.
        """
        problems: list[str] = []
        seen: set[str] = set()
        for track in self._tracks:
            prev: Clip | None = None
            for clip in track.clips:
                label = f"clip {clip.clip_id} on track {track.name or track.track_id}"
                if clip.clip_id in seen:
                    problems.append(f"{label}: duplicate id")
                seen.add(clip.clip_id)
                if clip.track_id != track.track_id:
                    problems.append(f"{label}: says it is on track {clip.track_id}")
                if self._clips.get(clip.clip_id) is not clip:
                    problems.append(f"{label}: not in the clip index")
                if clip.start < 0:
                    problems.append(f"{label}: starts before frame 0 ({clip.start})")
                if not 0 <= clip.in_point < clip.out_point:
                    problems.append(f"{label}: bad in/out {clip.in_point}..{clip.out_point}")
                asset = self._assets.get(clip.asset_id)
                if asset is None:
                    problems.append(f"{label}: unknown asset {clip.asset_id}")
                else:
                    if asset.duration_frames is not None and clip.out_point > asset.duration_frames:
                        problems.append(
                            f"{label}: out point {clip.out_point} past the media's {asset.duration_frames} frames"
                        )
                    if not track_accepts(track.kind, asset):
                        problems.append(f"{label}: a {asset.kind.value} asset on a {track.kind.value} track")
                if prev is not None:
                    if prev.start > clip.start:
                        problems.append(f"{label}: track not sorted")
                    if prev.end > clip.start:
                        problems.append(f"{label}: overlaps clip {prev.clip_id}")
                prev = clip
        if seen != set(self._clips):
            problems.append(f"clip index out of step with tracks: {sorted(set(self._clips) ^ seen)}")
        frames = [m.frame for m in self._markers]
        if frames != sorted(frames):
            problems.append("markers not sorted by frame")
        return problems


def track_accepts(kind: TrackKind, asset: Asset) -> bool:
    """Video tracks show video and image assets; audio tracks play audio assets and videos with sound."""
    if kind is TrackKind.VIDEO:
        return asset.kind in (AssetKind.VIDEO, AssetKind.IMAGE)
    return asset.kind is AssetKind.AUDIO or (asset.kind is AssetKind.VIDEO and asset.has_audio)


def _apply_changes(obj: Any, changes: dict[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    unknown = set(changes) - allowed
    if unknown:
        raise AttributeError(f"{what} has no settable attribute(s) {sorted(unknown)}")
    old: dict[str, Any] = {}
    for name, value in changes.items():
        current = getattr(obj, name)
        if current != value or type(current) is not type(value):
            if isinstance(current, list):
                current = list(current)
            old[name] = current
            setattr(obj, name, list(value) if isinstance(value, list) else value)
    return old
