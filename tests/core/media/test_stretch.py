"""time_stretch: 2x/4x with the pitch kept, no clicks at grain joins, events at their compressed times."""

from __future__ import annotations

import numpy as np
import pytest

from core.media.stretch import time_stretch

RATE = 48000


def dominant_frequency(samples: np.ndarray, rate: int = RATE) -> float:
    """The strongest frequency of a mono or stereo signal (FFT peak, interpolated between bins)."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)), n=8 * len(mono)))
    return float(np.argmax(spectrum)) * rate / (8 * len(mono))


def stereo(mono: np.ndarray) -> np.ndarray:
    return np.stack([mono, mono], axis=1).astype(np.float32)


def tone(seconds: float, frequency: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.mark.parametrize("speed", [2, 4])
def test_time_stretch_keeps_the_pitch_and_shortens_by_the_speed(speed):
    source = stereo(tone(2.0, 440.0))
    out = time_stretch(source, len(source) // speed, RATE)
    assert out.shape == (len(source) // speed, 2)
    assert dominant_frequency(out) == pytest.approx(440.0, rel=0.03)
    # No clicks at grain joins: the steepest step is that of the tone itself (a click would jump).
    ideal_step = 0.5 * 2 * np.pi * 440.0 / RATE
    assert np.abs(np.diff(out[:, 0])).max() < 1.1 * ideal_step
    # The level stays (overlapping windows sum to one): 10 ms RMS between 0.33 and 0.37 (0.354 ideal).
    rms = np.sqrt((out[: len(out) // 480 * 480, 0].reshape(-1, 480) ** 2).mean(axis=1))
    assert rms.min() > 0.33 and rms.max() < 0.37


def test_time_stretch_keeps_events_in_order_at_their_compressed_times():
    # Three 100 ms bursts of different pitch at 0.2 s, 0.9 s and 1.5 s: at 2x they come at half the time.
    source = np.zeros(2 * RATE, np.float32)
    for start, frequency in ((0.2, 300.0), (0.9, 600.0), (1.5, 1200.0)):
        i = round(start * RATE)
        source[i : i + RATE // 10] = tone(0.1, frequency)
    out = time_stretch(stereo(source), RATE, RATE)[:, 0]
    for start, frequency in ((0.1, 300.0), (0.45, 600.0), (0.75, 1200.0)):
        i = round(start * RATE)
        burst = out[i + 240 : i + RATE // 20 - 240]  # the middle of the 50 ms burst
        assert np.abs(burst).max() > 0.4
        assert dominant_frequency(burst) == pytest.approx(frequency, rel=0.05)
        assert np.abs(out[i - 1200 : i - 600]).max() < 0.01  # silence just before it
