"""Time stretching with the pitch kept (WSOLA), for sound while the viewer shuttles at 2x/4x.

Pure numpy: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GRAIN_SECONDS", "time_stretch"]

GRAIN_SECONDS = 0.04  # time-stretch grain (a few pitch periods of a voice)


def time_stretch(
    samples: np.ndarray, out_len: int, rate: int, lead: np.ndarray | None = None, context: int = 0
) -> np.ndarray:
    """``samples`` (float32 ``[n, channels]``) played in ``out_len`` samples with the pitch kept (WSOLA).

    Output grain ``k`` (a Hann window of ``GRAIN_SECONDS``, hop half of it) is centred on output sample
    ``k * hop`` and is cut from the input near ``k * hop * n / out_len``: within a quarter grain of that,
    at the offset whose waveform best matches the natural continuation of the grain before (cross
    correlation of the mono sum, first at about 12 kHz, then refined at full rate). Overlapping halves of
    the periodic Hann window sum to one, so the level stays and joins are smooth.

    ``lead``: what was played just before and will be cross-faded with the start of the result (the tail
    of the piece before); the first grain is then cut where it best continues that, not at random phase.
    ``context``: ``samples`` has that many extra samples of real sound at each end, around the stretch to
    play; grains at the edges reach into them (otherwise they read silence, and the edges fade).
    """
    x = np.asarray(samples, np.float32)
    if x.ndim == 1:
        x = x[:, None]
    n_in, channels = x.shape
    n_in -= 2 * context
    if out_len <= 0:
        return np.zeros((0, channels), np.float32)
    if n_in == out_len:
        return x[context : context + n_in].copy()
    if n_in <= 0:
        return np.zeros((out_len, channels), np.float32)
    grain = max(64, int(rate * GRAIN_SECONDS) // 2 * 2)
    hop = grain // 2
    tolerance = hop // 2
    ratio = n_in / out_len
    step = max(1, rate // 12000)  # decimation of the coarse search
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(grain) / grain)).astype(np.float32)
    pad_front = hop + tolerance + step
    pad_back = grain + tolerance + 2 * step + int(np.ceil(ratio * hop)) + hop
    padded = np.zeros((n_in + pad_front + pad_back, channels), np.float32)
    first, stop = max(0, context - pad_front), min(len(x), context + n_in + pad_back)
    padded[pad_front - context + first : pad_front - context + stop] = x[first:stop]
    mono = padded.mean(axis=1)
    coarse = mono[: len(mono) // step * step].reshape(-1, step).mean(axis=1)
    coarse_grain = grain // step
    coarse_span = 2 * tolerance // step
    count = out_len // hop + 2
    out = np.zeros(((count + 1) * hop + grain, channels), np.float32)
    weight = np.zeros(len(out), np.float32)
    previous = -1
    for k in range(count):
        nominal = pad_front + round(k * hop * ratio) - hop  # first input sample of grain k, unaligned
        if previous < 0 and (lead is None or len(lead) == 0):
            position = nominal
        elif previous < 0:
            wanted = np.asarray(lead, np.float32).reshape(len(lead), -1).mean(axis=1)[:grain]
            low = nominal - tolerance + hop  # output 0 is the middle of grain 0
            segment = mono[low : low + len(wanted) + 2 * tolerance]
            position = low - hop + int(np.argmax(np.correlate(segment, wanted, "valid")))
        else:
            target = previous + hop  # where the grain before would have gone on
            low = nominal - tolerance
            template = coarse[target // step : target // step + coarse_grain]
            first = low // step
            segment = coarse[first : first + coarse_grain + coarse_span]
            best = (first + int(np.argmax(np.correlate(segment, template, "valid")))) * step
            candidates = range(max(low, best - step), min(nominal + tolerance, best + step) + 1)
            wanted = mono[target : target + grain]
            scores = [float(np.dot(mono[c : c + grain], wanted)) for c in candidates]
            position = candidates[int(np.argmax(scores))]
        start = k * hop  # output index (shifted by hop: grain k is centred on output k * hop)
        out[start : start + grain] += padded[position : position + grain] * window[:, None]
        weight[start : start + grain] += window
        previous = position
    result = out[hop : hop + out_len] / np.maximum(weight[hop : hop + out_len], 1e-3)[:, None]
    return result.astype(np.float32)
