"""Bin thumbnails for every asset kind, the disk cache, and timeline filmstrips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.media.decode import VideoReader
from core.media.errors import FileMissing
from core.media.patterns import read_frame_number
from core.media.thumbnails import filmstrip, thumbnail, waveform_image
from tests.core.media.conftest import FLAT_RGB


def test_video_thumbnail_fits_and_picks_a_moment(numbered_clip: Path) -> None:
    pic = thumbnail(numbered_clip, (160, 160))
    assert pic.shape == (96, 160, 3)
    assert read_frame_number(pic) == 16  # a third into 2 s (at most 1 s): frame 16 at 24 fps
    assert read_frame_number(thumbnail(numbered_clip, (160, 160), at_seconds=0.25)) == 6
    assert thumbnail(numbered_clip, (80, 80)).shape == (48, 80, 3)


def test_image_thumbnail(flat_png: Path) -> None:
    pic = thumbnail(flat_png, (32, 32))
    assert pic.shape == (24, 32, 3) and (pic == FLAT_RGB).all()


def test_audio_thumbnail_is_a_waveform(sine_wav: Path) -> None:
    pic = thumbnail(sine_wav, (100, 40))
    assert pic.shape == (40, 100, 3)
    lit = (pic != pic[0, 0]).any(axis=2)
    # A 0.5-amplitude tone fills about the middle half of every column.
    assert lit[20].all() and not lit[0].any() and not lit[-1].any()
    assert waveform_image(sine_wav, (10, 8)).shape == (8, 10, 3)


def test_disk_cache(numbered_clip: Path, tmp_path: Path) -> None:
    first = thumbnail(numbered_clip, (80, 80), cache_dir=tmp_path)
    (entry,) = (tmp_path / "thumbs").iterdir()
    assert entry.suffix == ".png"
    assert np.array_equal(thumbnail(numbered_clip, (80, 80), cache_dir=tmp_path), first)
    thumbnail(numbered_clip, (40, 40), cache_dir=tmp_path)  # another size, another entry
    assert len(list((tmp_path / "thumbs").iterdir())) == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileMissing):
        thumbnail(tmp_path / "gone.mp4")


def test_filmstrip(numbered_clip: Path) -> None:
    strip = filmstrip(numbered_clip, [30, 2, 17, 2], height=96)
    assert [read_frame_number(f) for f in strip] == [30, 2, 17, 2]
    assert all(f.shape == (96, 160, 3) for f in strip)
    with VideoReader(numbered_clip) as reader:
        small = filmstrip(reader, [5], height=48)
        assert small[0].shape == (48, 80, 3)
        assert reader.cache.stats().entries == 1  # shared with the caller's reader
