"""Media writers: streaming H.264/AAC MP4 (``VideoWriter``), one-shot helpers and WAV.

This module owns every file the application *writes* as media: generation results, timeline
exports and the media that tests generate for themselves. Writes are atomic: data goes to a
hidden temporary file in the destination folder and is renamed over the destination only when
the file has been closed successfully; on error or :meth:`VideoWriter.abort` the temporary file
is removed, so a reader never sees a half-written file.

Video is H.264 (libx264) yuv420p, tagged and converted as BT.709 limited range; audio is AAC.
yuv420p needs even dimensions: an odd width or height is rounded *down* to even and each frame
loses its last column/row (see :attr:`VideoWriter.encoded_size`).

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import wave
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from av.video.reformatter import Colorspace, VideoReformatter

from core.media.errors import WriteFailed

__all__ = [
    "DEFAULT_CRF",
    "AudioTrack",
    "VideoWriter",
    "as_fraction",
    "atomic_file",
    "temp_path_for",
    "write_aac",
    "write_video",
    "write_wav",
]

DEFAULT_CRF = 18
#: Container format chosen from the destination's extension (default mp4).
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# BT.709 code points (ITU-T H.273) for colour primaries, transfer and matrix; range 1 = limited.
_BT709 = 1
_LIMITED_RANGE = 1


def as_fraction(fps: float | int | Fraction | str) -> Fraction:
    """Return a frame rate as an exact ``Fraction`` (23.976 -> 24000/1001, 25 -> 25).

    Raises:
        ValueError: the rate is not a positive finite number.
    """
    try:
        rate = Fraction(fps) if not isinstance(fps, float) else Fraction(fps).limit_denominator(1001)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
        raise ValueError(f"frame rate {fps!r} is not a number") from exc
    # Common NTSC rates written as decimals: 23.976, 29.97, 59.94 -> n*1000/1001.
    for base in (24, 30, 48, 60, 120):
        ntsc = Fraction(base * 1000, 1001)
        if rate != ntsc and abs(float(rate) - float(ntsc)) < 0.0006:
            rate = ntsc
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {fps!r}")
    return rate


def temp_path_for(path: Path) -> Path:
    """A hidden, unique temporary name in ``path``'s folder with the same extension."""
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")


def _even(value: int) -> int:
    return value - (value % 2)


class AudioTrack:
    """An AAC track of an open output container: takes float samples of any length, encodes them in
    the codec's frame size. Shared by :class:`VideoWriter` and :func:`core.media.concat.concat_videos`.

    Args:
        container: a PyAV output container the header of which is not written yet.
        rate: sample rate in Hz.
        channels: 1 (mono) or 2 (stereo).
        bitrate: AAC bitrate in bits per second.
    """

    def __init__(self, container: Any, rate: int, channels: int, bitrate: int) -> None:
        if channels not in (1, 2):
            raise ValueError(f"audio must have 1 or 2 channels, got {channels}")
        self.rate = int(rate)
        self.channels = channels
        self.samples_written = 0
        self._container = container
        self._layout = "mono" if channels == 1 else "stereo"
        self._stream: Any = container.add_stream("aac", rate=self.rate, layout=self._layout)
        self._stream.codec_context.time_base = Fraction(1, self.rate)
        self._stream.bit_rate = bitrate
        self._pending = np.zeros((0, channels), dtype=np.float32)

    def write(self, samples: np.ndarray) -> None:
        """Append samples ``[n]`` (mono, duplicated to stereo if needed) or ``[n, channels]`` in [-1, 1]
        (louder values are clipped).

        Raises:
            ValueError: wrong channel count.
            WriteFailed: the encoder failed.
        """
        data = np.asarray(samples, dtype=np.float32)
        if data.ndim == 1:
            data = np.repeat(data[:, None], self.channels, axis=1)
        if data.ndim != 2 or data.shape[1] != self.channels:
            raise ValueError(f"audio must be [n] or [n, {self.channels}], got shape {data.shape}")
        data = np.clip(np.nan_to_num(data), -1.0, 1.0)
        if len(self._pending):
            data = np.concatenate([self._pending, data])
        size = self._stream.codec_context.frame_size or 1024
        whole = len(data) - len(data) % size
        for start in range(0, whole, size):
            self._encode_chunk(data[start : start + size])
        self._pending = data[whole:]

    def close(self) -> None:
        """Encode what is pending and flush the encoder."""
        if len(self._pending):
            self._encode_chunk(self._pending)
            self._pending = self._pending[:0]
        self._encode(None)

    def _encode_chunk(self, chunk: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk.T), format="fltp", layout=self._layout)
        frame.sample_rate = self.rate
        frame.pts = self.samples_written
        frame.time_base = Fraction(1, self.rate)
        self._encode(frame)
        self.samples_written += len(chunk)

    def _encode(self, frame: Any) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            raise WriteFailed(Path(str(self._container.name)), f"encoding the audio failed ({exc})") from exc


class VideoWriter:
    """Streaming MP4 writer (H.264 yuv420p video, optional AAC audio), atomic on close.

    Use as a context manager::

        with VideoWriter(out, fps=24, width=640, height=360, audio_rate=48000) as w:
            for frame in frames:
                w.write_frame(frame)          # uint8 RGB, shape (height, width, 3)
            w.write_audio(samples)            # float32 [n] or [n, channels], in [-1, 1]

    Leaving the block normally closes and publishes the file; an exception inside the block
    aborts and removes the temporary file. One writer is used from one thread at a time.

    Args:
        path: destination file (.mp4, .mov, .m4v or .mkv).
        fps: frame rate (int, float, ``Fraction`` or "30000/1001").
        width, height: size of the frames passed to :meth:`write_frame`; odd sizes are
            encoded one pixel smaller (yuv420p needs even sizes).
        audio_rate: sample rate of the audio track, or ``None`` for no audio.
        audio_channels: 1 (mono) or 2 (stereo).
        crf: x264 constant rate factor (0 lossless .. 51 worst; 18 is visually lossless).
        preset: x264 speed preset.
        keyframe_interval: frames between keyframes. ``None`` picks half a second: files we
            write are edited, and a seek decodes on average half a GOP, so short GOPs keep
            scrubbing fast (about 20% larger than one-second GOPs at the same quality).
        audio_bitrate: AAC bitrate in bits per second.
        threads: encoder threads (0: x264 chooses, about 1.5 per core). A writer running beside other
            work (a render's background piece encoder) uses 1, so it never oversubscribes the CPU.

    Raises:
        ValueError: bad arguments (non-positive size or rate, unsupported channel count).
        WriteFailed: the file cannot be created (missing or unwritable folder).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | int | Fraction | str,
        width: int,
        height: int,
        *,
        audio_rate: int | None = None,
        audio_channels: int = 1,
        crf: int = DEFAULT_CRF,
        preset: str = "veryfast",
        keyframe_interval: int | None = None,
        audio_bitrate: int = 192_000,
        threads: int = 0,
    ) -> None:
        self.path = Path(path)
        self.fps = as_fraction(fps)
        if width < 2 or height < 2:
            raise ValueError(f"video size must be at least 2x2, got {width}x{height}")
        if audio_rate is not None and audio_rate <= 0:
            raise ValueError(f"audio sample rate must be positive, got {audio_rate}")
        if audio_channels not in (1, 2):
            raise ValueError(f"audio must have 1 or 2 channels, got {audio_channels}")
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be between 0 and 51, got {crf}")
        self.width, self.height = int(width), int(height)
        self.encoded_size = (_even(self.width), _even(self.height))
        self.audio_rate = audio_rate
        self.audio_channels = audio_channels
        self.frames_written = 0
        self._closed = False
        fmt = _FORMATS.get(self.path.suffix.lower(), "mp4")
        if not self.path.parent.is_dir():
            raise WriteFailed(self.path, f"folder {self.path.parent} does not exist")
        self._temp = temp_path_for(self.path)
        try:
            # faststart moves the MP4 index to the front on close, so players (and our own
            # probe) start without reading to the end of the file.
            options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
            self._container: Any = av.open(str(self._temp), mode="w", format=fmt, options=options)
        except (OSError, av.FFmpegError) as exc:
            raise WriteFailed(self.path, f"cannot create file ({exc})") from exc
        try:
            gop = keyframe_interval if keyframe_interval is not None else max(1, round(self.fps / 2))
            video: Any = self._container.add_stream("libx264", rate=self.fps)
            video.width, video.height = self.encoded_size
            video.pix_fmt = "yuv420p"
            video.codec_context.time_base = 1 / self.fps
            video.codec_context.gop_size = gop
            video.codec_context.colorspace = _BT709
            video.codec_context.color_primaries = _BT709
            video.codec_context.color_trc = _BT709
            video.codec_context.color_range = _LIMITED_RANGE
            # gop_size caps the distance between keyframes; x264 may add one earlier at a cut.
            video.options = {"crf": str(crf), "preset": preset}
            if threads:
                video.codec_context.thread_count = threads
            self._video = video
            # One reformatter for the whole file: it keeps its swscale context between frames, which
            # makes the RGB -> yuv420p conversion about 5x cheaper than a fresh one per frame.
            self._reformatter = VideoReformatter()
            self._audio = (
                AudioTrack(self._container, audio_rate, audio_channels, audio_bitrate)
                if audio_rate is not None
                else None
            )
        except BaseException:
            self._discard()
            raise

    # -- context manager --------------------------------------------------------------------

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- writing ----------------------------------------------------------------------------

    def write_frame(self, rgb: np.ndarray) -> None:
        """Encode one frame.

        Args:
            rgb: ``uint8`` array of shape ``(height, width, 3)`` as declared at construction.

        Raises:
            ValueError: wrong shape or dtype (the writer stays usable).
            WriteFailed: the encoder or the disk failed (the temporary file is removed).
        """
        self._check_open()
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"frames must be uint8 (height, width, 3) RGB, got {rgb.dtype} {rgb.shape}")
        if rgb.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"frame is {rgb.shape[1]}x{rgb.shape[0]}, writer expects {self.width}x{self.height}"
            )
        w, h = self.encoded_size
        if (w, h) != (self.width, self.height):
            rgb = rgb[:h, :w]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame = self._reformatter.reformat(frame, format="yuv420p", dst_colorspace=Colorspace.ITU709)
        frame.colorspace = _BT709
        frame.color_range = _LIMITED_RANGE
        frame.pts = self.frames_written
        frame.time_base = self._video.codec_context.time_base
        self._encode(self._video, frame)
        self.frames_written += 1

    def write_audio(self, samples: np.ndarray) -> None:
        """Append audio samples.

        Args:
            samples: float array ``[n]`` (mono, duplicated to stereo if needed) or
                ``[n, channels]``, values in [-1, 1] (louder values are clipped).

        Raises:
            ValueError: the writer has no audio track, or the channel count differs.
            WriteFailed: the encoder or the disk failed.
        """
        self._check_open()
        if self._audio is None:
            raise ValueError("this writer was created without audio (pass audio_rate=...)")
        try:
            self._audio.write(samples)
        except WriteFailed:
            self._discard()
            raise

    @property
    def samples_written(self) -> int:
        """Audio samples per channel encoded so far."""
        return self._audio.samples_written if self._audio is not None else 0

    def close(self) -> Path:
        """Flush the encoders, finish the file and move it to its destination.

        Returns:
            The destination path.

        Raises:
            WriteFailed: no frames were written, or finishing the file failed; nothing is left
                behind in either case.
        """
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise WriteFailed(self.path, "no video frames were written")
        try:
            self._encode(self._video, None)
            if self._audio is not None:
                self._audio.close()
            self._container.close()
            self._closed = True
            os.replace(self._temp, self.path)
        except WriteFailed:
            self._discard()
            raise
        except (OSError, av.FFmpegError) as exc:
            self._discard()
            raise WriteFailed(self.path, f"could not finish the file ({exc})") from exc
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file; the destination is left untouched."""
        if not self._closed:
            self._discard()

    # -- internals --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"writer for {self.path} is already closed")

    def _encode(self, stream: Any, frame: Any) -> None:
        try:
            for packet in stream.encode(frame):
                self._container.mux(packet)
        except (OSError, av.FFmpegError) as exc:
            self._discard()
            raise WriteFailed(self.path, f"encoding failed ({exc})") from exc

    def _discard(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._container.close()
        with contextlib.suppress(FileNotFoundError):
            self._temp.unlink()


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: float | int | Fraction | str,
    audio: np.ndarray | None = None,
    audio_rate: int | None = None,
    *,
    crf: int = DEFAULT_CRF,
    keyframe_interval: int | None = None,
) -> Path:
    """Write a whole clip in one call; the size comes from the first frame.

    Args:
        path: destination .mp4.
        frames: uint8 RGB frames ``(h, w, 3)``, all the same size.
        fps: frame rate.
        audio: optional float32 samples ``[n]`` or ``[n, channels]``.
        audio_rate: sample rate of ``audio`` (required with it).
        crf: x264 quality.
        keyframe_interval: frames between keyframes (default half a second).

    Returns:
        The destination path.

    Raises:
        ValueError: no frames, mismatched frame sizes, or audio without ``audio_rate``.
        WriteFailed: the file could not be written (nothing is left behind).
    """
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    channels = 1
    if audio is not None:
        if audio_rate is None:
            raise ValueError("audio_rate is required when audio is given")
        channels = 1 if np.asarray(audio).ndim == 1 else int(np.asarray(audio).shape[1])
    with VideoWriter(
        path,
        fps,
        first.shape[1],
        first.shape[0],
        audio_rate=audio_rate if audio is not None else None,
        audio_channels=channels,
        crf=crf,
        keyframe_interval=keyframe_interval,
    ) as writer:
        writer.write_frame(first)
        for frame in iterator:
            writer.write_frame(frame)
        if audio is not None:
            writer.write_audio(audio)
    return writer.path


def write_aac(
    path: str | os.PathLike[str], samples: np.ndarray, rate: int, *, bitrate: int = 192_000
) -> Path:
    """Write float samples ``[n]`` or ``[n, channels]`` (1 or 2 channels, in [-1, 1]) as AAC in an
    MP4 audio file (.m4a), atomically. :func:`core.media.concat.concat_videos` copies such a track
    into a video without encoding it again.

    Raises:
        ValueError: bad shape or rate.
        WriteFailed: the file could not be written (nothing is left behind).
    """
    target = Path(path)
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    channels = 1 if np.ndim(samples) == 1 else int(np.shape(samples)[1])
    with atomic_file(target, "write the audio") as temp, av.open(str(temp), mode="w", format="mp4") as container:
        track = AudioTrack(container, rate, channels, bitrate)
        track.write(samples)
        track.close()
    return target


@contextlib.contextmanager
def atomic_file(target: Path, doing: str) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``target``; when the block succeeds it is renamed over
    ``target``, otherwise removed. OS and FFmpeg errors become :class:`WriteFailed` ("could not
    <doing> (...)"); anything else (cancel, bad arguments) passes through unchanged."""
    temp = temp_path_for(target)
    try:
        yield temp
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        if isinstance(exc, OSError | av.FFmpegError):
            raise WriteFailed(target, f"could not {doing} ({exc})") from exc
        raise


def write_wav(path: str | os.PathLike[str], samples: np.ndarray, rate: int) -> Path:
    """Write 16-bit PCM WAV atomically.

    Args:
        path: destination .wav.
        samples: float samples ``[n]`` or ``[n, channels]`` in [-1, 1] (clipped).
        rate: sample rate in Hz.

    Returns:
        The destination path.

    Raises:
        ValueError: bad shape or rate.
        WriteFailed: the file could not be written (nothing is left behind).
    """
    target = Path(path)
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or not 1 <= data.shape[1] <= 8:
        raise ValueError(f"samples must be [n] or [n, channels], got shape {np.shape(samples)}")
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    pcm = np.round(np.clip(np.nan_to_num(data), -1.0, 1.0) * 32767.0).astype("<i2")
    temp = temp_path_for(target)
    try:
        with wave.open(str(temp), "wb") as handle:
            handle.setnchannels(data.shape[1])
            handle.setsampwidth(2)
            handle.setframerate(int(rate))
            handle.writeframes(pcm.tobytes())
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise WriteFailed(target, f"could not write WAV ({exc})") from exc
    return target
