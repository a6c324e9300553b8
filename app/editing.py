"""Turns the editor's gestures and commands into core edits pushed on the undo stack.

Owns :class:`EditingController`: the bin, the timeline and the window's actions call it; it builds the
``core.edits`` objects (validation lives there) and pushes them through :class:`app.undo.UndoController`.
Importing files probes them in worker threads first, then lands the whole batch as one undo step.

Main thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.media_jobs import asset_from_info, probe_file
from app.undo import UndoController
from app.workers import WorkerPool
from core import edits
from core.project import (
    AssetKind,
    Clip,
    Marker,
    Project,
    ReferenceRole,
    Track,
    TrackKind,
    new_id,
    track_accepts,
)

DEFAULT_STILL_SECONDS = 5


class EditingController(QObject):
    """The one place the UI changes the project. Main thread only.

    Signals:
        message(str): status-bar text (refused edits, import results).
        import_finished(list, list): asset ids added, and ``(path, message)`` for files that failed.
        clips_placed(list): ids of clips an import or drop placed on the timeline.
    """

    message = Signal(str)
    import_finished = Signal(list, list)
    clips_placed = Signal(list)

    def __init__(
        self, project: Project, undo: UndoController, pool: WorkerPool, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.project = project
        self.undo = undo
        self.pool = pool
        self._imports_pending = 0

    def push(self, edit: Any, merge: bool = False) -> None:
        self.undo.push(edit, merge=merge)

    # -- import -----------------------------------------------------------------------------------

    @property
    def imports_pending(self) -> int:
        return self._imports_pending

    def import_files(
        self,
        paths: Sequence[str],
        place: tuple[str | None, int] | None = None,
        on_done: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Probe ``paths`` in the background, then add them to the bin as one undo step.

        With ``place=(track_id, start)`` the new assets are also placed on the timeline from ``start``
        (on ``track_id`` when it accepts them, otherwise on the first track that does).
        """
        paths = [str(p) for p in paths if p]
        if not paths:
            return
        results: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        remaining = [len(paths)]
        self._imports_pending += 1

        def _one_done(path: str, info: Any = None, error: BaseException | None = None) -> None:
            if error is not None:
                errors.append((path, str(error)))
            else:
                results[path] = info
            remaining[0] -= 1
            if remaining[0] == 0:
                self._imports_pending -= 1
                self._land_import([results[p] for p in paths if p in results], errors, place, on_done)

        for path in paths:
            self.pool.submit(
                probe_file,
                path,
                on_done=lambda info, p=path: _one_done(p, info),
                on_error=lambda exc, p=path: _one_done(p, error=exc),
            )

    def _land_import(
        self,
        infos: list[Any],
        errors: list[tuple[str, str]],
        place: tuple[str | None, int] | None,
        on_done: Callable[[list[str]], None] | None,
    ) -> None:
        fps = self.project.settings.fps
        known = {Path(a.path).resolve() for a in self.project.assets}
        assets = []
        for info in infos:
            if Path(info.path).resolve() in known:
                # Already in the bin: reuse it (a second drop of the same file places it again).
                continue
            assets.append(asset_from_info(info, fps))
        children: list[edits.Edit] = [edits.AddAsset(a) for a in assets]
        placed: list[str] = []
        if place is not None:
            track_id, start = place
            by_path = {Path(a.path).resolve(): a for a in [*self.project.assets, *assets]}
            for info in infos:
                asset = by_path.get(Path(info.path).resolve())
                if asset is None:
                    continue
                clip_edits = self._placement_edits(
                    asset, track_id, start, [e for e in children if isinstance(e, edits.AddClip)]
                )
                if not clip_edits:
                    errors.append((str(info.path), "no free track can take it"))
                    continue
                children.extend(clip_edits)
                placed.extend(e.clip.clip_id for e in clip_edits)
                start += clip_edits[0].clip.duration
        added_ids = [a.asset_id for a in assets]
        if children:
            label = f"Import {len(assets)} file{'s' if len(assets) != 1 else ''}" if assets else "Add clip"
            try:
                self.push(edits.Compound(label, children))
            except Exception as exc:
                errors.append(("", str(exc)))
                added_ids, placed = [], []
        if errors:
            text = "; ".join(f"{Path(p).name}: {m}" if p else m for p, m in errors)
            self.message.emit(f"Could not import {text}")
        elif added_ids:
            self.message.emit(f"Imported {len(added_ids)} file{'s' if len(added_ids) != 1 else ''}")
        elif infos and not placed:
            self.message.emit("Already in the bin: nothing new to import")
        self.import_finished.emit(added_ids, errors)
        if placed:
            self.clips_placed.emit(placed)
        if on_done is not None:
            on_done(added_ids)

    def import_and_place(self, paths: Sequence[str], track_id: str | None, start: int) -> None:
        self.import_files(paths, place=(track_id, start))

    # -- clips ------------------------------------------------------------------------------------

    def default_length(self, asset: Any) -> int:
        if asset.duration_frames is None:
            return DEFAULT_STILL_SECONDS * self.project.settings.fps
        return max(1, int(asset.duration_frames))

    def _free_track(
        self,
        kind: TrackKind,
        asset: Any,
        start: int,
        length: int,
        preferred: str | None,
        pending: Sequence[edits.AddClip],
    ) -> Track | None:
        tracks = [
            t for t in self.project.tracks if t.kind is kind and not t.locked and track_accepts(t.kind, asset)
        ]
        if preferred is not None:
            tracks.sort(key=lambda t: t.track_id != preferred)

        def free(track: Track) -> bool:
            if not track.is_free(start, start + length):
                return False
            return all(
                not (
                    p.clip.track_id == track.track_id and p.clip.start < start + length and start < p.clip.end
                )
                for p in pending
            )

        for track in tracks:
            if free(track):
                return track
        return None

    def _placement_edits(
        self, asset: Any, track_id: str | None, start: int, pending: Sequence[edits.AddClip] = ()
    ) -> list[edits.AddClip]:
        """AddClip edits for putting ``asset`` at ``start``: pictures (a video's with its own sound) on a
        video track, sound files on an audio track; ``track_id`` first when it is free and fits."""
        length = self.default_length(asset)
        primary = TrackKind.AUDIO if asset.kind is AssetKind.AUDIO else TrackKind.VIDEO
        track = self._free_track(primary, asset, start, length, track_id, pending)
        if track is None:
            return []
        return [edits.AddClip(Clip(new_id(), asset.asset_id, track.track_id, start, 0, length))]

    def add_clip(self, asset_id: str, track_id: str, start: int, length: int | None = None) -> str:
        """Place an asset at ``start`` (on ``track_id`` if free); returns the new clip's id."""
        asset = self.project.asset(asset_id)
        placements = self._placement_edits(asset, track_id, start)
        if not placements:
            raise edits.EditError(f"There is no room for “{asset.name}” at that point on an unlocked track.")
        if length is not None and asset.duration_frames is None:
            for p in placements:
                p.clip.out_point = p.clip.in_point + length
        self.push(placements[0] if len(placements) == 1 else edits.Compound("Add clip", list(placements)))
        return placements[0].clip.clip_id

    def move_clips(self, moves: Sequence[tuple[str, str, int]]) -> None:
        """Move clips: ``(clip_id, track_id, new_start)`` each, as one undo step."""
        if not moves:
            return
        delta = sum(start - self.project.clip(cid).start for cid, _, start in moves)
        # Move in an order where no clip lands on a selected clip that has not moved yet.
        ordered = sorted(moves, key=lambda m: self.project.clip(m[0]).start, reverse=delta > 0)
        children = [
            edits.MoveClip(cid, start, tid if tid != self.project.clip(cid).track_id else None)
            for cid, tid, start in ordered
        ]
        self.push(
            children[0] if len(children) == 1 else edits.Compound(f"Move {len(children)} clips", children)
        )

    def trim_clip(self, clip_id: str, side: str, frame: int) -> None:
        trim_side = edits.TrimSide.HEAD if side in ("left", "head") else edits.TrimSide.TAIL
        self.push(edits.TrimClip(clip_id, trim_side, int(frame)))

    def split_at(self, frame: int, clip_ids: Sequence[str] = ()) -> None:
        """Split at ``frame``: the selected clips under it, or every unlocked track when none is."""
        track_ids = None
        if clip_ids:
            under = [self.project.clip(c) for c in clip_ids if self.project.has_clip(c)]
            under = [c for c in under if c.start < frame < c.end]
            if under:
                track_ids = tuple(dict.fromkeys(c.track_id for c in under))
        self.push(edits.SplitAtFrame(int(frame), track_ids))

    def lift(self, clip_ids: Sequence[str]) -> None:
        self.push(edits.Lift(tuple(clip_ids)))

    def ripple_delete(self, clip_ids: Sequence[str]) -> None:
        self.push(edits.RippleDelete(tuple(clip_ids)))

    def set_clip_gain(self, clip_id: str, gain_db: float, merge: bool = True) -> None:
        self.push(edits.SetClipGain(clip_id, float(gain_db)), merge=merge)

    # -- tracks and markers -------------------------------------------------------------------------

    def set_track_locked(self, track_id: str, locked: bool) -> None:
        self.push(edits.SetTrackLocked(track_id, locked))

    def set_track_muted(self, track_id: str, muted: bool) -> None:
        self.push(edits.SetTrackMuted(track_id, muted))

    def add_track(self, kind: TrackKind) -> None:
        same = [t for t in self.project.tracks if t.kind is kind]
        prefix = "V" if kind is TrackKind.VIDEO else "A"
        name = f"{prefix}{len(same) + 1}"
        if kind is TrackKind.VIDEO:
            # New video tracks go above the others (V2 over V1), audio ones at the bottom.
            first_video = next((i for i, t in enumerate(self.project.tracks) if t.kind is TrackKind.VIDEO), 0)
            index: int | None = first_video
        else:
            index = None
        self.push(edits.AddTrack(Track(new_id(), kind, name), index))

    def add_marker(self, frame: int, name: str = "") -> None:
        if any(m.frame == frame for m in self.project.markers):
            raise edits.EditError("There is already a marker at the playhead.")
        self.push(
            edits.AddMarker(Marker(new_id(), int(frame), name or f"Marker {len(self.project.markers) + 1}"))
        )

    def remove_marker_near(self, frame: int, tolerance: int = 0) -> None:
        near = [m for m in self.project.markers if abs(m.frame - frame) <= tolerance]
        if not near:
            raise edits.EditError("There is no marker at the playhead.")
        self.push(edits.RemoveMarker(near[0].marker_id))

    # -- assets -----------------------------------------------------------------------------------

    def set_asset_role(self, asset_id: str, role: ReferenceRole | None) -> None:
        self.push(edits.SetAssetRole(asset_id, role))

    def rename_asset(self, asset_id: str, name: str) -> None:
        self.push(edits.RenameAsset(asset_id, name))

    def remove_assets(self, asset_ids: Sequence[str]) -> None:
        children: list[edits.Edit] = [edits.RemoveAsset(a) for a in asset_ids]
        if children:
            self.push(children[0] if len(children) == 1 else edits.Compound("Remove media", children))

    def relink_asset(
        self, asset_id: str, new_path: str, on_done: Callable[[bool], None] | None = None
    ) -> None:
        """Point a (missing) asset at another file, after probing it in the background."""
        asset = self.project.asset(asset_id)

        def _probed(info: Any) -> None:
            fresh = asset_from_info(info, self.project.settings.fps)
            try:
                if fresh.kind is not asset.kind:
                    raise edits.EditError(
                        f"the new file is {fresh.kind.value}, the media was {asset.kind.value}"
                    )
                media = {
                    k: getattr(fresh, k)
                    for k in (
                        "duration_frames",
                        "width",
                        "height",
                        "fps",
                        "has_audio",
                        "sample_rate",
                        "channels",
                    )
                }
                self.push(edits.RelinkAsset(asset_id, fresh.path, media))
            except Exception as exc:
                self.message.emit(f"Cannot relink {asset.name}: {exc}")
                if on_done:
                    on_done(False)
                return
            self.message.emit(f"Relinked {asset.name}")
            if on_done:
                on_done(True)

        def _failed(exc: BaseException) -> None:
            self.message.emit(f"Cannot relink {asset.name}: {exc}")
            if on_done:
                on_done(False)

        self.pool.submit(probe_file, new_path, on_done=_probed, on_error=_failed)
