"""The output MP4 of a render, assembled from its checkpointed pieces without encoding twice.

Every pipeline checkpoints each finished piece (``PieceStore.save``: exact frames plus a playable MP4)
and then hands the same frames to its output. Encoding them again for the output would double the
encoding work of a render; :class:`PieceOutput` instead copies the pieces' H.264 packets into the
output (``core.media.concat``) and adds the audio track. Frames that are not a checkpointed piece
(a render without a work folder) are encoded once, into a part of its own with the same settings.
An audio track known up front (the avatar's speech) is encoded on a background thread while the
frames are generated (:meth:`PieceOutput.start_audio`), so the join at the end only copies packets.

Memory stays flat in the output length: no frames are kept, only file names.

Imports numpy and ``core``; never PySide6 or ``app``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from core.media.concat import IncompatibleParts, concat_videos
from core.media.decode import VideoReader
from core.media.errors import WriteFailed
from core.media.writer import VideoWriter, temp_path_for, write_aac

if TYPE_CHECKING:
    from models.pipeline_base import PieceStore

__all__ = ["PieceOutput"]


class PieceOutput:
    """Collects a render's frames piece by piece and writes the output MP4 once at :meth:`close`.

    Use as a context manager (an exception inside the block aborts; nothing is left behind)::

        with PieceOutput(path, 24, ctx.pieces) as output:
            pipeline(..., on_frames=output.write)
            output.close(audio=speech, audio_rate=16000)   # optional: leaving the block closes too

    Args:
        path: destination MP4 (appears atomically, complete or not at all).
        fps: frame rate of the frames handed to :meth:`write`.
        pieces: the render's piece store, whose playable MP4s are reused; ``None`` encodes everything.
    """

    def __init__(self, path: str | os.PathLike[str], fps: int, pieces: PieceStore | None) -> None:
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self.size = (0, 0)  # (width, height) of the frames handed in
        self.copied_parts = 0  # parts whose packets were reused (for tests and benchmarks)
        self._pieces = pieces
        self._parts: list[Path] = []
        self._own: list[Path] = []  # parts this object encoded (removed when done)
        self._writer: VideoWriter | None = None
        self._done = False
        self._audio: tuple[np.ndarray, int] | None = None
        self._audio_file: Path | None = None
        self._audio_thread: threading.Thread | None = None
        self._audio_failed = False

    # -- writing ----------------------------------------------------------------------------

    def write(self, frames: np.ndarray) -> None:
        """Append uint8 frames ``[n, H, W, 3]`` (a piece the pipeline has just checkpointed, or any)."""
        if self._done:
            raise ValueError(f"output {self.path} is already closed")
        if not len(frames):
            return
        self.size = (int(frames.shape[2]), int(frames.shape[1]))
        playable = self._pieces.playable_for(frames) if self._pieces is not None else None
        if playable is not None:
            self._finish_own_part()
            self._parts.append(playable)
            self.copied_parts += 1
        else:
            if self._writer is None:
                part = temp_path_for(self.path)
                self._writer = VideoWriter(part, self.fps, *self.size)
                self._own.append(part)
                self._parts.append(part)
            for frame in frames:
                self._writer.write_frame(frame)
        self.frames += len(frames)

    def start_audio(self, samples: np.ndarray, rate: int) -> None:
        """Give the output this audio track (float ``[n]`` or ``[n, channels]`` in [-1, 1]) and start
        encoding it to AAC now, on a background thread; :meth:`close` waits for it and copies it in."""
        if self._audio is not None:
            raise ValueError("the output already has an audio track")
        self._audio = (samples, rate)
        self._audio_file = temp_path_for(self.path.with_suffix(".m4a"))
        self._own.append(self._audio_file)
        target = self._audio_file

        def encode() -> None:
            try:
                write_aac(target, samples, rate)
            except Exception:  # close() encodes the samples itself instead
                self._audio_failed = True

        self._audio_thread = threading.Thread(target=encode, name="audio-encoder", daemon=True)
        self._audio_thread.start()

    def close(self, audio: np.ndarray | None = None, audio_rate: int | None = None) -> Path:
        """Write the output (with ``audio`` as an AAC track, if given, or the track given to
        :meth:`start_audio`) and clean up.

        Raises:
            WriteFailed: no frames were written, or the file could not be written (nothing is left).
        """
        if self._done:
            return self.path
        try:
            self._finish_own_part()
            if not self._parts:
                raise WriteFailed(self.path, "no video frames were written")
            track: np.ndarray | Path | None = audio
            if audio is None and self._audio is not None:
                self._join_audio()
                audio, audio_rate = self._audio
                track = audio if self._audio_failed else self._audio_file
            try:
                concat_videos(self._parts, self.path, audio=track, audio_rate=audio_rate)
            except IncompatibleParts:
                # Pieces left by an older version with other encoder settings: decode and encode.
                self._encode_again(audio, audio_rate)
            else:
                if self._pieces is not None and not set(self._parts) & set(self._own):  # exactly the pieces
                    self._pieces.mark_complete({
                        "parts": [part.name for part in self._parts], "frames": self.frames,
                        "width": self.size[0], "height": self.size[1], "fps": self.fps,
                        "audio_rate": audio_rate if audio is not None else None,
                    })
        finally:
            self._done = True
            self._join_audio()
            self._remove_own()
        return self.path

    def abort(self) -> None:
        """Stop; the destination is left untouched and the parts written here are removed."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self._done = True
        self._join_audio()
        self._remove_own()

    def __enter__(self) -> PieceOutput:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    # -- internals --------------------------------------------------------------------------

    def _join_audio(self) -> None:
        if self._audio_thread is not None:
            self._audio_thread.join()
            self._audio_thread = None

    def _finish_own_part(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _encode_again(self, audio: np.ndarray | None, audio_rate: int | None) -> None:
        channels = 1 if audio is None or np.ndim(audio) == 1 else int(np.shape(audio)[1])
        with VideoWriter(
            self.path, self.fps, *self.size, audio_rate=audio_rate if audio is not None else None,
            audio_channels=channels,
        ) as writer:
            for part in self._parts:
                with VideoReader(part) as reader:
                    for frame in reader.iter_frames():
                        writer.write_frame(_padded(frame, self.size))
            if audio is not None:
                writer.write_audio(audio)

    def _remove_own(self) -> None:
        for part in self._own:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        self._own.clear()


def _padded(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Parts are encoded at even sizes; give odd-sized outputs their last column/row back (the writer
    drops it again)."""
    width, height = size
    if frame.shape[1] == width and frame.shape[0] == height:
        return frame
    return np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0)), mode="edge")
