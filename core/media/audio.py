"""Audio: decode any file's audio to float32 at a chosen rate and channel count, extract regions
by seconds, convert channels and rates in memory, and mix.

Samples are ``float32`` arrays of shape ``[n, channels]`` in [-1, 1]. Time zero of a file is its
first video frame when it has video (so sound stays in sync with :class:`VideoReader` frame
times), otherwise the start of its audio stream.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from pathlib import Path
from typing import Any

import av
import numpy as np
from scipy.signal import resample_poly

from core.media.errors import CorruptMedia, NoAudioStream
from core.media.probe import open_container, video_stream

_PREROLL = 0.1
"""Seconds decoded before a requested start (covers AAC/MP3 overlap and Opus pre-roll)."""

__all__ = ["AudioData", "AudioMixer", "iter_audio", "load_audio", "mix", "resample", "to_channels"]


@dataclass(frozen=True)
class AudioData:
    """Decoded audio: ``samples`` float32 ``[n, channels]`` at ``rate`` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    def mono(self) -> np.ndarray:
        """The samples mixed down to one channel, shape ``[n]``."""
        return to_channels(self.samples, 1)[:, 0]


def load_audio(
    path: str | os.PathLike[str],
    *,
    rate: int | None = None,
    channels: int | None = None,
    start: float = 0.0,
    end: float | None = None,
) -> AudioData:
    """Decode the first audio stream of an audio or video file.

    Args:
        path: any file FFmpeg reads (wav, mp3, aac, m4a, flac, ogg, mp4, mov, mkv ...).
        rate: output sample rate (default: the file's).
        channels: output channel count (default: the file's).
        start: first second to return (>= 0).
        end: second to stop at (exclusive); default the end of the stream. The result has
            exactly ``round((end - start) * rate)`` samples: silence fills any part the file
            does not cover.

    Returns:
        :class:`AudioData`.

    Raises:
        FileMissing, EmptyMedia, UnsupportedMedia, CorruptMedia: see :func:`probe`.
        NoAudioStream: the file has no audio.
        ValueError: bad rate, channels or range.
    """
    p = Path(path)
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad audio range {start}..{end} seconds")
    if rate is not None and rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if channels is not None and not 1 <= channels <= 8:
        raise ValueError(f"channels must be 1..8, got {channels}")
    container = open_container(p)
    with container:
        if not container.streams.audio:
            raise NoAudioStream(p, "the file has no audio")
        stream: Any = container.streams.audio[0]
        stream.thread_type = "AUTO"
        ctx = stream.codec_context
        out_rate = int(rate or ctx.sample_rate or 48000)
        out_channels = int(channels or ctx.channels or 1)
        tb = Fraction(stream.time_base)
        origin = _origin_seconds(container, stream)
        if end is None:
            stream_seconds = _stream_seconds(container, stream)
            end = max(start, stream_seconds) if stream_seconds else None
        wanted = None if end is None else round((end - start) * out_rate)
        if wanted == 0:
            return AudioData(np.zeros((0, out_channels), np.float32), out_rate)
        if start > _PREROLL:
            # Lapped codecs (AAC, MP3, Opus) need the packets before a point to decode it
            # correctly; start a little early and trim.
            container.seek(int((start - _PREROLL + origin) / tb), stream=stream, backward=True)
        chunks, first_time = _decode(p, container, stream, out_rate, out_channels, start, wanted, origin)
    samples = np.concatenate(chunks) if chunks else np.zeros((0, out_channels), np.float32)
    # Align: the decoded audio starts at first_time; the caller asked for start.
    offset = round(((first_time if first_time is not None else start) - start) * out_rate)
    if offset > 0:
        samples = np.concatenate([np.zeros((offset, out_channels), np.float32), samples])
    elif offset < 0:
        samples = samples[-offset:]
    if wanted is not None:
        if len(samples) < wanted:
            pad = np.zeros((wanted - len(samples), out_channels), np.float32)
            samples = np.concatenate([samples, pad])
        samples = samples[:wanted]
    return AudioData(np.ascontiguousarray(samples, dtype=np.float32), out_rate)


def iter_audio(
    path: str | os.PathLike[str],
    *,
    rate: int | None = None,
    channels: int | None = None,
    block_seconds: float = 10.0,
) -> tuple[int, Iterator[np.ndarray]]:
    """Decode a whole file's audio in blocks, for work that must not hold it all in memory.

    Args:
        path: any file with sound.
        rate, channels: output format (default: the file's).
        block_seconds: roughly how much sound each block holds.

    Returns:
        ``(rate, blocks)``: the output rate and an iterator of float32 ``[n, channels]`` blocks
        that together cover the stream (encoder padding past its end is dropped). The file is
        opened now (so errors about it are raised here) and closed when the iterator ends.

    Raises:
        As :func:`load_audio`, at the call for the file itself; :class:`CorruptMedia` from the
        iterator when nothing at all decodes.
    """
    p = Path(path)
    container = open_container(p)
    try:
        if not container.streams.audio:
            raise NoAudioStream(p, "the file has no audio")
        stream: Any = container.streams.audio[0]
        stream.thread_type = "AUTO"
        out_rate = int(rate or stream.codec_context.sample_rate or 48000)
        out_channels = int(channels or stream.codec_context.channels or 1)
        seconds = _stream_seconds(container, stream)
    except BaseException:
        container.close()
        raise
    total = round(seconds * out_rate) if seconds else None
    block = max(1, round(block_seconds * out_rate))

    def blocks() -> Iterator[np.ndarray]:
        resampler = _resampler(stream, out_rate, out_channels)
        pending: list[np.ndarray] = []
        have = sent = 0
        try:
            for frame in _frames_tolerant(p, container, stream):
                outs = resampler.resample(frame) if frame is not None else resampler.resample(None)
                for out in outs:
                    chunk = _planar_to_samples(out, out_channels)
                    pending.append(chunk)
                    have += len(chunk)
                if have >= block:
                    data = np.concatenate(pending)
                    if total is not None:
                        data = data[: max(0, total - sent)]
                    sent += len(data)
                    pending, have = [], 0
                    if len(data):
                        yield data
            if pending:
                data = np.concatenate(pending)
                if total is not None:
                    data = data[: max(0, total - sent)]
                if len(data):
                    yield data
        finally:
            container.close()

    return out_rate, blocks()


def _frames_tolerant(p: Path, container: Any, stream: Any) -> Iterator[Any]:
    """Decoded frames, then ``None`` (flush the resampler). A damaged tail ends the stream; a
    file where nothing decodes raises :class:`CorruptMedia`."""
    any_frame = False
    try:
        for frame in container.decode(stream):
            any_frame = True
            yield frame
    except av.FFmpegError as exc:
        if not any_frame:
            raise CorruptMedia(p, f"its audio cannot be decoded ({exc})") from exc
    yield None


def _resampler(stream: Any, out_rate: int, out_channels: int) -> Any:
    """Rate and sample-format conversion. Channels are converted by :func:`to_channels`, which
    copies mono to both sides at full level (FFmpeg's upmix would lower it by 3 dB); surround
    sources folded to mono/stereo use FFmpeg's downmix matrix (centre into both sides)."""
    src_channels = int(stream.codec_context.channels or 1)
    if src_channels > 2 and out_channels <= 2:
        layout = "mono" if out_channels == 1 else "stereo"
        return av.AudioResampler(format="flt", layout=layout, rate=out_rate)
    return av.AudioResampler(format="flt", rate=out_rate)


def _origin_seconds(container: Any, stream: Any) -> float:
    for s in (video_stream(container), stream):
        if s is not None and s.start_time is not None:
            return float(s.start_time * s.time_base)
    return 0.0


def _stream_seconds(container: Any, stream: Any) -> float:
    if stream.duration:
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        return float(stream.duration * stream.time_base) + start - _origin_seconds(container, stream)
    return container.duration / av.time_base if container.duration else 0.0


def _decode(
    p: Path,
    container: Any,
    stream: Any,
    out_rate: int,
    out_channels: int,
    start: float,
    wanted: int | None,
    origin: float,
) -> tuple[list[np.ndarray], float | None]:
    """Decode and resample from the current position; stop once ``start + wanted`` is covered."""
    resampler = _resampler(stream, out_rate, out_channels)
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    have = 0
    need = None if wanted is None else wanted
    try:
        for frame in container.decode(stream):
            if first_time is None:
                first_time = float(frame.time) - origin if frame.pts is not None else 0.0
                if need is not None:
                    need += max(0, round((start - first_time) * out_rate))
            for out in resampler.resample(frame):
                chunk = _planar_to_samples(out, out_channels)
                chunks.append(chunk)
                have += len(chunk)
            if need is not None and have >= need:
                return chunks, first_time
        for out in resampler.resample(None):
            chunks.append(_planar_to_samples(out, out_channels))
    except av.FFmpegError as exc:
        if not chunks:
            raise CorruptMedia(p, f"its audio cannot be decoded ({exc})") from exc
        # A damaged tail: keep what decoded; the caller pads with silence.
    return chunks, first_time


def _planar_to_samples(frame: Any, channels: int) -> np.ndarray:
    """A packed ``flt`` frame as ``[n, channels]`` float32."""
    have = max(1, len(frame.layout.channels))
    return to_channels(frame.to_ndarray().reshape(-1, have), channels)


def to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """Convert ``[n]`` or ``[n, c]`` samples to ``[n, channels]``.

    Mono is copied to every channel; more channels down to mono are averaged; other changes
    keep the first channels or repeat the last one.
    """
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 1:
        data = data[:, None]
    have = data.shape[1]
    if have == channels:
        return data
    if channels == 1:
        return data.mean(axis=1, keepdims=True, dtype=np.float32)
    if have == 1:
        return np.repeat(data, channels, axis=1)
    if have > channels:
        return np.ascontiguousarray(data[:, :channels])
    return np.concatenate([data, np.repeat(data[:, -1:], channels - have, axis=1)], axis=1)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Change the sample rate of in-memory audio (polyphase filter; axis 0 is time)."""
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} -> {dst_rate}")
    data = np.asarray(samples, dtype=np.float32)
    if src_rate == dst_rate or len(data) == 0:
        return data
    g = gcd(src_rate, dst_rate)
    out = resample_poly(data, dst_rate // g, src_rate // g, axis=0)
    return np.asarray(out, dtype=np.float32)


class AudioMixer:
    """Sums sources into one buffer of ``length`` samples x ``channels``, then clips.

    Args:
        length: output length in samples.
        channels: output channels.
    """

    def __init__(self, length: int, channels: int = 2) -> None:
        if length < 0 or channels < 1:
            raise ValueError(f"bad mixer size {length} x {channels}")
        self.buffer = np.zeros((length, channels), dtype=np.float32)

    def add(self, samples: np.ndarray, offset: int = 0, gain: float = 1.0) -> None:
        """Add ``samples`` (``[n]`` or ``[n, c]``) times ``gain`` starting at sample ``offset``;
        parts outside the buffer are dropped."""
        if gain == 0.0:
            return
        data = to_channels(samples, self.buffer.shape[1])
        begin, stop = max(offset, 0), min(offset + len(data), len(self.buffer))
        if begin >= stop:
            return
        part = data[begin - offset : stop - offset]
        if gain == 1.0:
            self.buffer[begin:stop] += part
        else:
            self.buffer[begin:stop] += part * np.float32(gain)

    def result(self) -> np.ndarray:
        """The mix, clipped to [-1, 1]."""
        return np.clip(self.buffer, -1.0, 1.0)


def mix(
    sources: Sequence[np.ndarray] | Iterable[np.ndarray],
    gains: Sequence[float] | None = None,
    *,
    channels: int | None = None,
    length: int | None = None,
) -> np.ndarray:
    """Sum sources (all starting at sample 0) with per-source gains and clip to [-1, 1].

    Args:
        sources: arrays ``[n]`` or ``[n, c]``; shorter ones are padded with silence.
        gains: linear gains, one per source (default 1.0 each).
        channels: output channels (default: the most any source has).
        length: output length (default: the longest source).

    Returns:
        float32 ``[length, channels]``.
    """
    items = [np.asarray(s, dtype=np.float32) for s in sources]
    if gains is not None and len(gains) != len(items):
        raise ValueError(f"{len(gains)} gains for {len(items)} sources")
    out_channels = channels or max((1 if s.ndim == 1 else s.shape[1] for s in items), default=1)
    out_length = length if length is not None else max((len(s) for s in items), default=0)
    mixer = AudioMixer(out_length, out_channels)
    for i, source in enumerate(items):
        mixer.add(source, 0, 1.0 if gains is None else float(gains[i]))
    return mixer.result()
