"""Peak pyramids: exact envelopes against brute force, level choice, disk cache."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.media.patterns import sine
from core.media.waveform import (
    BASE_BUCKET,
    PeakPyramid,
    build_peaks,
    build_peaks_from_blocks,
    cache_dir_for_project,
    load_or_build_peaks,
)
from core.media.writer import write_wav

RATE = 8000


def _extremes(samples: np.ndarray, a: float, b: float) -> tuple[float, float]:
    seg = samples[max(int(np.floor(a)), 0) : max(int(np.ceil(b)), 0)]
    return (float(seg.min()), float(seg.max())) if len(seg) else (0.0, 0.0)


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    rng = np.random.default_rng(5)
    return (rng.standard_normal(RATE * 30) * 0.2).astype(np.float32).clip(-1, 1)


def test_levels(signal: np.ndarray) -> None:
    pyramid = build_peaks(signal, RATE)
    assert len(pyramid.mins[0]) == -(-len(signal) // BASE_BUCKET)
    assert len(pyramid.mins[-1]) <= 64 and len(pyramid.mins) > 3
    assert pyramid.mins[-1].min() == signal.min() and pyramid.maxs[-1].max() == signal.max()


def test_whole_file_extremes_survive_any_width(signal: np.ndarray) -> None:
    pyramid = build_peaks(signal, RATE)
    for n in (1, 7, 100, 3000):
        mins, maxs = pyramid.peaks(0, 30, n)
        assert mins.min() == signal.min() and maxs.max() == signal.max()


@settings(max_examples=40, deadline=None)
@given(start=st.floats(0, 20), span=st.floats(0.01, 10), n=st.integers(2, 300))
def test_columns_are_bounded_by_exact_ranges(signal: np.ndarray, start: float, span: float, n: int) -> None:
    """Each column's envelope lies between the exact envelopes of its sample range shrunk and
    grown by the allowed slack (a quarter column, or one level-0 bucket when zoomed in)."""
    pyramid = build_peaks(signal, RATE)
    mins, maxs = pyramid.peaks(start, start + span, n)
    assert mins.shape == maxs.shape == (n,)
    per_column = span * RATE / n
    slack = max(BASE_BUCKET, per_column / 4)
    for c in range(n):
        a = start * RATE + c * per_column
        b = a + per_column
        outer_min, outer_max = _extremes(signal, a - slack, b + slack)
        assert outer_min <= mins[c] <= maxs[c] <= outer_max
        if b - a > 2 * slack:
            inner_min, inner_max = _extremes(signal, a + slack, b - slack)
            assert mins[c] <= inner_min and maxs[c] >= inner_max


def test_a_spike_shows_in_exactly_one_column() -> None:
    samples = np.zeros(RATE * 10, np.float32)
    samples[RATE * 4 + 123] = 0.9
    pyramid = build_peaks(samples, RATE)
    for n in (10, 200, 999):
        _, maxs = pyramid.peaks(0, 10, n)
        assert np.count_nonzero(maxs) == 1 and maxs.max() == pytest.approx(0.9)


def test_outside_the_sound_is_zero() -> None:
    pyramid = build_peaks(np.full(RATE, 0.5, np.float32), RATE)
    _, maxs = pyramid.peaks(-1, 2, 30)
    assert (maxs[:10] == 0).all() and (maxs[10:20] == 0.5).all() and (maxs[20:] == 0).all()


def test_deep_zoom_repeats_level_zero() -> None:
    pyramid = build_peaks(sine(1.0, RATE), RATE)
    _, maxs = pyramid.peaks(0.1, 0.1 + 64 / RATE, 64)
    assert len(set(maxs.tolist())) <= 2


def test_disk_cache_is_reused_and_invalidated(tmp_path: Path) -> None:
    media = write_wav(tmp_path / "tone.wav", sine(2.0, RATE), RATE)
    cache = cache_dir_for_project(tmp_path / "film.srproj")
    assert cache == tmp_path / "film.srproj.cache"
    first = load_or_build_peaks(media, cache)
    files = list((cache / "peaks").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    again = load_or_build_peaks(media, cache)
    assert all(np.array_equal(a, b) for a, b in zip(first.maxs, again.maxs, strict=True))
    # A changed file gets a new entry.
    write_wav(media, sine(2.0, RATE) * 0.1, RATE)
    os.utime(media, ns=(1, 1))
    changed = load_or_build_peaks(media, cache)
    assert changed.maxs[-1].max() < 0.06
    assert len(list((cache / "peaks").iterdir())) == 2


def test_damaged_cache_file_is_rebuilt(tmp_path: Path) -> None:
    media = write_wav(tmp_path / "tone.wav", sine(1.0, RATE), RATE)
    load_or_build_peaks(media, tmp_path)
    (entry,) = (tmp_path / "peaks").iterdir()
    entry.write_bytes(b"not a zip")
    assert PeakPyramid.load(entry) is None
    assert load_or_build_peaks(media, tmp_path).length == RATE


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, RATE * 30), max_size=8))
def test_blocks_give_the_same_pyramid(signal: np.ndarray, cuts: list[int]) -> None:
    whole = build_peaks(signal, RATE)
    stereo = np.stack([signal, -signal], axis=1)
    edges = [0, *sorted(cuts), len(signal)]
    blocks = [signal[a:b] for a, b in itertools.pairwise(edges)]
    pieces = build_peaks_from_blocks(blocks, RATE)
    assert pieces.length == whole.length
    for a, b in zip(whole.maxs + whole.mins, pieces.maxs + pieces.mins, strict=True):
        assert np.array_equal(a, b)
    both = build_peaks_from_blocks([stereo[a:b] for a, b in itertools.pairwise(edges)], RATE)
    assert np.array_equal(both.maxs[0], np.maximum(whole.maxs[0], -whole.mins[0]))
