"""Test doubles and sample data shared by the test suites.

- :func:`sample_project` builds a small project (two video tracks, one audio track, a video, an image
  and an audio asset) with fixed ids.
- :class:`FakeBackend` implements :class:`core.generation.InferenceBackend` with scripted events (see
  its docstring).

Imports only ``core`` and the standard library, so ``tests/core`` can use it without Qt or torch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.generation import (
    PieceFinished,
    Progress,
    RenderCancelled,
    RenderEvent,
    RenderRequest,
    RenderResult,
    RequestInvalid,
    StatusMessage,
)
from core.project import Asset, AssetKind, Clip, Project, ProjectSettings, ReferenceRole, Track, TrackKind

# -- sample project ----------------------------------------------------------------------------

V1, V2, A1 = "track-v1", "track-v2", "track-a1"
VIDEO, IMAGE, AUDIO = "asset-video", "asset-image", "asset-audio"


def sample_project(media_dir: str | os.PathLike[str] = "/media") -> Project:
    """Two video tracks (V1, V2), one audio track (A1) and three assets; no clips.

    The video asset is 100 frames with sound, the audio asset 240 frames, the image unlimited.
    """
    base = Path(media_dir)
    project = Project(ProjectSettings(name="Sample", fps=24, width=640, height=360))
    project.insert_track(Track(V1, TrackKind.VIDEO, "V1"))
    project.insert_track(Track(V2, TrackKind.VIDEO, "V2"))
    project.insert_track(Track(A1, TrackKind.AUDIO, "A1"))
    project.insert_asset(
        Asset(
            VIDEO,
            AssetKind.VIDEO,
            str(base / "shot.mp4"),
            "shot.mp4",
            duration_frames=100,
            width=640,
            height=360,
            fps=24.0,
            has_audio=True,
            sample_rate=48000,
            channels=2,
        )
    )
    project.insert_asset(
        Asset(
            IMAGE,
            AssetKind.IMAGE,
            str(base / "hero.png"),
            "hero.png",
            width=512,
            height=512,
            role=ReferenceRole.CHARACTER,
        )
    )
    project.insert_asset(
        Asset(
            AUDIO,
            AssetKind.AUDIO,
            str(base / "voice.wav"),
            "voice.wav",
            duration_frames=240,
            sample_rate=48000,
            channels=1,
        )
    )
    return project


def clip(
    clip_id: str, start: int, length: int, track: str = V1, asset: str = VIDEO, in_point: int = 0
) -> Clip:
    """A clip showing ``length`` frames of ``asset`` from ``in_point``, placed at ``start``."""
    return Clip(clip_id, asset, track, start, in_point, in_point + length)


# -- fake inference backend --------------------------------------------------------------------


@dataclass
class FakeBackend:
    """A deterministic :class:`core.generation.InferenceBackend` for tests.

    ``render`` emits, for each piece ``p`` of ``pieces`` and each step ``s`` of ``steps``, a
    ``Progress(s + 1, steps, p, pieces)``, then a ``PieceFinished`` per piece, and returns a
    :class:`RenderResult`. Behaviour on demand:

    - ``fail_at=(piece, step)``: raise ``RuntimeError(fail_message)`` before that step;
      ``invalid_message``: ``validate`` (and ``render``) raise :class:`RequestInvalid`.
    - ``pause_at=(piece, step)``: block before that step until :meth:`release` is called
      (``paused`` is set while it waits, so tests wait on it instead of sleeping). Each render pauses.
    - cancel: the ``cancel`` event is checked before every step; once set, :class:`RenderCancelled`.
      A pause also ends when cancel is set.
    - resume: like the real pipelines, each finished piece leaves a checkpoint in ``request.work_dir``
      (``fake_piece_NNN.done``); a later render of the same request skips checkpointed pieces and
      reports them in ``resumed_pieces``.

    - reassemble: :meth:`reassemble` returns the result of a render whose every piece is checkpointed
      (as if rendered in another process) without running a step, else None; it records the request in
      ``reassembled``, never in ``calls``.

    With ``write_output`` (default) it writes a small real MP4 of numbered frames to
    ``request.output_path`` with ``core.media.writer``. ``calls`` records each request.
    Threading: ``render`` may run on any thread; ``release`` from another.
    """

    steps: int = 3
    pieces: int = 1
    num_frames: int = 9
    fps: int = 24
    width: int = 64
    height: int = 32
    write_output: bool = True
    fail_at: tuple[int, int] | None = None
    fail_message: str = "fake failure"
    invalid_message: str | None = None
    pause_at: tuple[int, int] | None = None
    resumed_pieces: list[int] = field(default_factory=list)
    paused: threading.Event = field(default_factory=threading.Event)
    calls: list[RenderRequest] = field(default_factory=list)
    reassembled: list[RenderRequest] = field(default_factory=list)
    _release: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Let a render blocked at ``pause_at`` continue."""
        self._release.set()

    def validate(self, request: RenderRequest) -> None:
        if self.invalid_message:
            raise RequestInvalid(self.invalid_message)

    @staticmethod
    def _checkpoint(request: RenderRequest, piece: int) -> Path:
        return Path(request.work_dir) / f"fake_piece_{piece:03d}.done"

    def _steps(self, request: RenderRequest) -> Iterator[tuple[int, int]]:
        self.resumed_pieces = []
        for piece in range(self.pieces):
            if self._checkpoint(request, piece).exists():
                self.resumed_pieces.append(piece)
                continue
            for step in range(self.steps):
                yield piece, step

    def render(
        self,
        request: RenderRequest,
        emit: Callable[[RenderEvent], None],
        cancel: threading.Event,
    ) -> RenderResult:
        self.validate(request)
        self.calls.append(request)
        emit(StatusMessage("fake backend starting"))
        for piece, step in self._steps(request):
            if (piece, step) == self.pause_at:
                self.paused.set()
                # Wake on release or cancel; the short timeout only bounds how late a cancel is seen.
                while not self._release.wait(0.01):
                    if cancel.is_set():
                        break
                self._release.clear()  # the next render pauses again
                self.paused.clear()
            if cancel.is_set():
                raise RenderCancelled(f"cancelled at piece {piece}, step {step}")
            if (piece, step) == self.fail_at:
                raise RuntimeError(self.fail_message)
            emit(Progress(step + 1, self.steps, piece, self.pieces))
            if step == self.steps - 1:
                checkpoint = self._checkpoint(request, piece)
                checkpoint.parent.mkdir(parents=True, exist_ok=True)
                checkpoint.write_text("done")
                emit(PieceFinished(piece, self.pieces, str(checkpoint), self.num_frames))
        return self._result(request)

    def reassemble(
        self,
        request: RenderRequest,
        emit: Callable[[RenderEvent], None],
        cancel: threading.Event,
    ) -> RenderResult | None:
        self.reassembled.append(request)
        self.validate(request)
        if cancel.is_set():
            raise RenderCancelled("cancelled before re-assembly")
        if not all(self._checkpoint(request, piece).exists() for piece in range(self.pieces)):
            return None
        emit(StatusMessage("reusing the finished render"))
        return self._result(request)

    def _result(self, request: RenderRequest) -> RenderResult:
        if self.write_output:
            self._write(request.output_path)
        return RenderResult(
            output_path=request.output_path,
            num_frames=self.num_frames * self.pieces,
            fps=self.fps,
            width=self.width,
            height=self.height,
        )

    def write_checkpoints(self, request: RenderRequest) -> None:
        """Leave every piece's checkpoint in ``request.work_dir``, as a render in another process would."""
        for piece in range(self.pieces):
            checkpoint = self._checkpoint(request, piece)
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text("done")

    def _write(self, path: str) -> None:
        """Write a tiny real MP4 (numbered frames) with the project's own writer."""
        from core.media.patterns import numbered_frame
        from core.media.writer import write_video

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        total = self.num_frames * self.pieces
        write_video(path, (numbered_frame(i, self.width, self.height) for i in range(total)), self.fps)
