"""Driving-audio preparation for the talking avatar (spec section 5.4): decode to 16 kHz mono float32,
check the length, normalise the loudness to -23 LUFS, and resample feature sequences in time.

Decoding uses PyAV instead of librosa (not a dependency here). For 16 kHz files this gives exactly what
``librosa.load(path, sr=16000)`` gives (PCM scaled by 1/32768, channels averaged); other rates are
resampled with a polyphase filter (``scipy.signal.resample_poly``) where librosa uses soxr: both are
high-quality band-limited resamplers, the samples differ slightly. See README.md.

Must not import: PySide6, ``app``.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
TARGET_LUFS = -23.0
MIN_SECONDS = 0.4
MAX_SECONDS = 200.0  # official max_frames_num 5000 at 25 fps


class AudioError(ValueError):
    """The driving audio cannot be used; the message is written for the user."""


def _header_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode(path: str, stop_s: float | None = None, refuse_over_s: float | None = None) -> tuple[np.ndarray, int]:
    """First audio stream as float32 [channels, samples] at its own rate, from the start to at least
    ``stop_s`` seconds (everything when None). ``refuse_over_s``: refuse a file whose header says it
    is longer, before decoding any of it (one open of the file: probing it costs milliseconds)."""
    try:
        container = av.open(path)
    except (OSError, av.FFmpegError) as exc:
        raise AudioError(f"cannot read the audio file {os.path.basename(path)}: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise AudioError(f"{os.path.basename(path)} has no audio track")
        stream = container.streams.audio[0]
        if refuse_over_s is not None:
            header = _header_seconds(container, stream)
            if header is not None and header > refuse_over_s:
                check_duration(header)
        rate = stream.codec_context.sample_rate or stream.rate
        channels = stream.codec_context.channels or 1
        layout = stream.codec_context.layout.name if stream.codec_context.layout else None
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                if stop_s is not None and frame.time is not None and frame.time > stop_s + 1.0:
                    break
                for converted in resampler.resample(frame):
                    chunks.append(converted.to_ndarray())
            for converted in resampler.resample(None):
                chunks.append(converted.to_ndarray())
        except av.FFmpegError as exc:
            raise AudioError(f"the audio in {os.path.basename(path)} is damaged: {exc}") from exc
    if not chunks:
        return np.zeros((channels, 0), dtype=np.float32), int(rate)
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False), int(rate)


def audio_seconds(path: str | os.PathLike[str]) -> float:
    """Duration from the container header when it has one (cheap), else by decoding."""
    path = str(path)
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise AudioError(f"{os.path.basename(path)} has no audio track")
            header = _header_seconds(container, container.streams.audio[0])
            if header is not None:
                return header
    except (OSError, av.FFmpegError) as exc:
        raise AudioError(f"cannot read the audio file {os.path.basename(path)}: {exc}") from exc
    samples, rate = _decode(path)
    return samples.shape[1] / rate


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int = SAMPLE_RATE,
    start_s: float | None = None,
    end_s: float | None = None,
    refuse_over_s: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` (channels averaged), optionally cut to
    [start_s, end_s) seconds. ``refuse_over_s``: refuse a file whose header says it is longer, before
    decoding it.

    Raises:
        AudioError: unreadable file, no audio track, or longer than ``refuse_over_s``.
    """
    samples, rate = _decode(str(path), end_s, refuse_over_s)
    mono = samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]
    if rate != sample_rate:
        from scipy.signal import resample_poly

        ratio = Fraction(sample_rate, rate)
        mono = resample_poly(mono.astype(np.float64), ratio.numerator, ratio.denominator).astype(np.float32)
    if start_s is not None or end_s is not None:
        first = max(0, round((start_s or 0.0) * sample_rate))
        last = len(mono) if end_s is None else min(len(mono), round(end_s * sample_rate))
        mono = mono[first:last]
    return np.ascontiguousarray(mono, dtype=np.float32)


def check_duration(seconds: float, max_seconds: float = MAX_SECONDS) -> None:
    """Raise :class:`AudioError` unless ``MIN_SECONDS <= seconds <= max_seconds``."""
    if seconds < MIN_SECONDS:
        raise AudioError(
            f"the audio is {seconds:.2f} s long; the talking avatar needs at least {MIN_SECONDS} s"
        )
    if seconds > max_seconds:
        raise AudioError(
            f"the audio is {seconds:.1f} s long; the talking avatar accepts at most {max_seconds:g} s "
            "(cut a shorter region)"
        )


def loudness_norm(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, lufs: float = TARGET_LUFS) -> np.ndarray:
    """Gain to ``lufs`` integrated loudness (ITU-R BS.1770, pyloudnorm). Returned unchanged when the
    measured loudness is beyond +-100 LUFS (silence measures -inf). No limiter: samples may exceed 1."""
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate)
    loudness = meter.integrated_loudness(audio)
    if abs(loudness) > 100:
        return audio
    return pyloudnorm.normalize.loudness(audio, loudness, lufs)


def linear_interpolation(features: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[B, S, C] -> [B, seq_len, C], linear in time with ``align_corners=True``."""
    resampled = F.interpolate(features.transpose(1, 2), size=seq_len, mode="linear", align_corners=True)
    return resampled.transpose(1, 2)


def video_frames_for(num_samples: int, sample_rate: int = SAMPLE_RATE, fps: int = 25) -> int:
    """Number of video frames the audio drives: ``ceil(seconds * fps)``."""
    return math.ceil(num_samples / sample_rate * fps)
