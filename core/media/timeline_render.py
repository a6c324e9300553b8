"""Timeline rendering: flatten a project's tracks into frames and mixed audio, and export an MP4.

Rules (the same for the editor's preview and the export):

- Time is project frames. Frame ``n`` of the timeline shows, from the *topmost* video track
  (first in ``project.tracks``) that has a clip covering ``n``, the asset frame at
  ``(clip.in_point + n - clip.start) / fps`` seconds; still images are held for the whole
  clip; everything is letterboxed onto black at the project size. No clip: black.
- Sound is the sum of every audio-track clip and every video-track clip whose video has sound,
  each scaled by ``clip.gain_linear``, clipped to [-1, 1], stereo at the project sample rate.
  A *muted* track contributes no sound (its pictures still show: tracks have one flag, and a
  muted video track is a silent one, not a hidden one).

:func:`export_timeline` streams frames to :class:`core.media.writer.VideoWriter`, reports
progress, and honours a ``threading.Event`` cancel: a cancelled or failed export leaves no file.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.media.audio import AudioMixer, load_audio
from core.media.decode import VideoReader
from core.media.errors import EmptyMedia, FileMissing, MediaError, RenderCancelled
from core.media.images import fit_size, letterbox, read_image
from core.media.writer import DEFAULT_CRF, VideoWriter
from core.project import Asset, AssetKind, Clip, Project, TrackKind

__all__ = ["CHANNELS", "TimelineRenderer", "export_timeline", "media_frame_index"]

CHANNELS = 2
ProgressCallback = Callable[[int, int], None]


def media_frame_index(reader: VideoReader, asset_frame: int, fps: int) -> int:
    """The frame of ``reader``'s file shown at ``asset_frame`` of its asset (project frames at ``fps``).

    A clip shows asset frame ``clip.in_point + n - clip.start`` at timeline frame ``n``; the file's own
    rate may differ from the project's, so the frame on screen is the one at that many seconds.
    """
    return reader.index_at_time(asset_frame / fps)


class TimelineRenderer:
    """Composes timeline frames and mixes timeline audio for one project snapshot.

    Keeps a few :class:`VideoReader` objects and letterboxed stills open between calls, so
    rendering consecutive frames decodes each source frame once. Not thread-safe: use one
    renderer per thread, on a snapshot (``Project.from_dict(project.to_dict())``) when the
    project may change meanwhile.

    Args:
        project: the project (read only).
        size: output ``(width, height)``; default the project size.
        max_open_readers: how many video files stay open at once.
        missing_ok: render black/silence for unreadable media instead of raising.
    """

    def __init__(
        self,
        project: Project,
        *,
        size: tuple[int, int] | None = None,
        max_open_readers: int = 8,
        missing_ok: bool = False,
    ) -> None:
        self.project = project
        settings = project.settings
        self.fps = int(settings.fps)
        self.width, self.height = size if size is not None else (int(settings.width), int(settings.height))
        if self.width <= 0 or self.height <= 0 or self.fps <= 0:
            raise ValueError(f"bad project format {self.width}x{self.height} at {self.fps} fps")
        self.rate = int(settings.sample_rate or 48000)
        self.missing_ok = missing_ok
        self._max_readers = max(1, max_open_readers)
        self._readers: OrderedDict[str, VideoReader] = OrderedDict()
        self._stills: dict[str, np.ndarray] = {}
        self._black = np.zeros((self.height, self.width, 3), np.uint8)
        self._black.setflags(write=False)
        self.problems: list[str] = []

    # -- pictures ---------------------------------------------------------------------------

    def video_clip_at(self, frame: int) -> Clip | None:
        """The clip whose picture frame ``frame`` shows (top video track wins)."""
        for track in self.project.tracks:
            if track.kind is not TrackKind.VIDEO:
                continue
            clip = track.clip_at(frame)
            if clip is not None and self.project.has_asset(clip.asset_id):
                asset = self.project.asset(clip.asset_id)
                if asset.kind in (AssetKind.VIDEO, AssetKind.IMAGE):
                    return clip
        return None

    def frame(self, n: int) -> np.ndarray:
        """Timeline frame ``n`` as ``uint8`` RGB ``(height, width, 3)`` (may be read-only).

        Raises:
            MediaError: a source cannot be read (unless ``missing_ok``).
        """
        clip = self.video_clip_at(n)
        if clip is None:
            return self._black
        asset = self.project.asset(clip.asset_id)
        try:
            if asset.kind is AssetKind.IMAGE:
                return self._still(asset)
            reader = self._reader(asset)
            index = media_frame_index(reader, clip.in_point + n - clip.start, self.fps)
            fit = fit_size(reader.width, reader.height, self.width, self.height)
            picture = reader.frame_at(index, size=fit)
            return letterbox(picture, self.width, self.height)
        except MediaError as exc:
            if not self.missing_ok:
                raise
            self._note(str(exc))
            return self._black

    def _still(self, asset: Asset) -> np.ndarray:
        still = self._stills.get(asset.asset_id)
        if still is None:
            still = letterbox(read_image(asset.path), self.width, self.height)
            still.setflags(write=False)
            self._stills[asset.asset_id] = still
        return still

    def _reader(self, asset: Asset) -> VideoReader:
        reader = self._readers.get(asset.asset_id)
        if reader is not None:
            self._readers.move_to_end(asset.asset_id)
            return reader
        # A small cache: sequential rendering reuses the running decoder, not cached frames.
        reader = VideoReader(asset.path, cache_bytes=8 * self.width * self.height * 3)
        self._readers[asset.asset_id] = reader
        while len(self._readers) > self._max_readers:
            _, old = self._readers.popitem(last=False)
            old.close()
        return reader

    # -- sound ------------------------------------------------------------------------------

    def sample_at(self, frame: int) -> int:
        """First audio sample of timeline frame ``frame`` (exact integer arithmetic)."""
        return frame * self.rate // self.fps

    def has_audio(self, start: int = 0, end: int | None = None) -> bool:
        """True when some unmuted clip in ``[start, end)`` makes sound."""
        end = self.project.end_frame if end is None else end
        return any(True for _ in self._audio_clips(start, end))

    def _audio_clips(self, start: int, end: int) -> list[tuple[Clip, Asset]]:
        found: list[tuple[Clip, Asset]] = []
        for track in self.project.tracks:
            if track.muted:
                continue
            for clip in track.clips_in(start, end):
                if not self.project.has_asset(clip.asset_id) or clip.gain_linear == 0.0:
                    continue
                asset = self.project.asset(clip.asset_id)
                audible = asset.kind is AssetKind.AUDIO or (asset.kind is AssetKind.VIDEO and asset.has_audio)
                if audible and not asset.missing:
                    found.append((clip, asset))
        return found

    def audio(self, start: int, end: int) -> np.ndarray:
        """Mixed sound of timeline frames ``[start, end)``: float32 ``[samples, 2]``.

        Raises:
            MediaError: a source cannot be read (unless ``missing_ok``).
        """
        first, stop = self.sample_at(start), self.sample_at(end)
        mixer = AudioMixer(max(0, stop - first), CHANNELS)
        for clip, asset in self._audio_clips(start, end):
            lo, hi = max(start, clip.start), min(end, clip.end)
            out_first, out_stop = self.sample_at(lo), self.sample_at(hi)
            count = out_stop - out_first
            if count <= 0:
                continue
            source_start = (out_first - self.sample_at(clip.start)) / self.rate + clip.in_point / self.fps
            try:
                data = load_audio(
                    asset.path,
                    rate=self.rate,
                    channels=CHANNELS,
                    start=source_start,
                    end=source_start + count / self.rate,
                ).samples
            except MediaError as exc:
                if not self.missing_ok:
                    raise
                self._note(str(exc))
                continue
            mixer.add(data[:count], out_first - first, clip.gain_linear)
        return mixer.result()

    # -- lifetime ---------------------------------------------------------------------------

    def check_sources(self, start: int, end: int) -> list[str]:
        """Files used in ``[start, end)`` that are missing, as readable lines (empty when fine)."""
        problems: list[str] = []
        seen: set[str] = set()
        for track in self.project.tracks:
            for clip in track.clips_in(start, end):
                if clip.asset_id in seen:
                    continue
                seen.add(clip.asset_id)
                if not self.project.has_asset(clip.asset_id):
                    problems.append(f"clip {clip.clip_id} uses an asset that is not in the bin")
                    continue
                asset = self.project.asset(clip.asset_id)
                if not Path(asset.path).is_file():
                    problems.append(f"{asset.name or Path(asset.path).name}: file not found at {asset.path}")
        return problems

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self._stills.clear()

    def __enter__(self) -> TimelineRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)


def export_timeline(
    project: Project,
    path: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    start: int | None = None,
    end: int | None = None,
    crf: int = DEFAULT_CRF,
    preset: str = "veryfast",
    size: tuple[int, int] | None = None,
    audio: bool = True,
    missing_ok: bool = False,
) -> Path:
    """Render timeline frames ``[start, end)`` (default: all) to an H.264/AAC MP4.

    Args:
        project: the project; pass a snapshot if it may be edited meanwhile.
        path: destination .mp4 (written atomically: it appears only when complete).
        progress: called as ``progress(frames_done, frames_total)`` after every frame, from the
            calling thread.
        cancel: when set, the export stops within a frame and raises :class:`RenderCancelled`.
        start, end: timeline frame range; ``None`` means the timeline's start / end.
        crf: x264 quality.
        preset: x264 speed preset ("ultrafast" .. "veryslow"; slower is smaller at equal quality).
        size: output size; default the project size.
        audio: include the mixed sound (when the range has any).
        missing_ok: render black/silence for unreadable sources instead of failing.

    Returns:
        The destination path.

    Raises:
        EmptyMedia: nothing to export (empty timeline or range).
        FileMissing: a source file is missing (lists all of them), unless ``missing_ok``.
        MediaError: a source cannot be decoded, or the output cannot be written.
        RenderCancelled: ``cancel`` was set; no output file exists.
    """
    out = Path(path)
    first = 0 if start is None else max(0, int(start))
    last = project.end_frame if end is None else int(end)
    total = last - first
    if total <= 0:
        raise EmptyMedia(out, "the timeline is empty: there is nothing to export")
    with TimelineRenderer(project, size=size, missing_ok=missing_ok) as renderer:
        if not missing_ok:
            missing = renderer.check_sources(first, last)
            if missing:
                raise FileMissing(out, "cannot export, media is missing:\n  " + "\n  ".join(missing))
        with_audio = audio and renderer.has_audio(first, last)
        writer = VideoWriter(
            out,
            renderer.fps,
            renderer.width,
            renderer.height,
            audio_rate=renderer.rate if with_audio else None,
            audio_channels=CHANNELS,
            crf=crf,
            preset=preset,
        )
        try:
            # Sound goes in one-second blocks so memory stays flat on long timelines.
            block = renderer.fps
            for block_start in range(first, last, block):
                block_end = min(last, block_start + block)
                if with_audio:
                    writer.write_audio(renderer.audio(block_start, block_end))
                for n in range(block_start, block_end):
                    if cancel is not None and cancel.is_set():
                        raise RenderCancelled(out)
                    writer.write_frame(np.asarray(renderer.frame(n)))
                    if progress is not None:
                        progress(n - first + 1, total)
        except BaseException:
            writer.abort()
            raise
        return writer.close()
