"""concat_videos: parts joined by copying packets give exactly the frames of the parts, in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.media.audio import load_audio
from core.media.concat import IncompatibleParts, concat_videos
from core.media.decode import VideoReader
from core.media.errors import WriteFailed
from core.media.patterns import numbered_frame, read_frame_number
from core.media.probe import probe
from core.media.writer import VideoWriter, write_video


def _part(folder: Path, name: str, first: int, count: int, **options) -> Path:
    frames = [numbered_frame(first + i, 96, 64) for i in range(count)]
    return write_video(folder / name, frames, 24, **options)


def _decoded(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return [reader.frame_at(i) for i in range(reader.frame_count)]


def test_parts_play_back_to_back_with_identical_pictures(tmp_path: Path) -> None:
    lengths = [29, 12, 40]  # odd lengths: each part ends mid-GOP
    parts, start = [], 0
    for i, count in enumerate(lengths):
        parts.append(_part(tmp_path, f"p{i}.mp4", start, count))
        start += count
    out = concat_videos(parts, tmp_path / "out.mp4")

    info = probe(out)
    assert info.frame_count == sum(lengths) and info.fps == 24 and not info.has_audio
    assert info.duration == pytest.approx(sum(lengths) / 24, abs=1e-3)
    joined = _decoded(out)
    assert [read_frame_number(f) for f in joined] == list(range(sum(lengths)))
    # Packets are copied, so the decoded pictures are exactly the parts' pictures.
    expected = [frame for part in parts for frame in _decoded(part)]
    assert all(np.array_equal(a, b) for a, b in zip(joined, expected, strict=True))
    # Random access across the joins lands on the right frame.
    with VideoReader(out) as reader:
        for index in (80, 0, 29, 28, 41, 40, 55):
            assert read_frame_number(reader.frame_at(index)) == index


def test_audio_is_added_with_the_joined_length(tmp_path: Path) -> None:
    parts = [_part(tmp_path, "a.mp4", 0, 25), _part(tmp_path, "b.mp4", 25, 25)]
    t = np.arange(16000 * 2) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = concat_videos(parts, tmp_path / "out.mp4", audio=tone, audio_rate=16000)

    info = probe(out)
    assert info.frame_count == 50 and info.has_audio and info.sample_rate == 16000 and info.channels == 1
    samples = load_audio(out, rate=16000, channels=1).samples[:, 0]
    assert abs(len(samples) - len(tone)) <= 1024
    # The tone survives AAC: compare the level over the middle second.
    middle = samples[8000:24000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_single_part_without_audio_is_copied(tmp_path: Path) -> None:
    part = _part(tmp_path, "only.mp4", 0, 10)
    out = concat_videos([part], tmp_path / "out.mp4")
    assert out.read_bytes() == part.read_bytes()


def test_differently_encoded_parts_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    a = _part(tmp_path, "a.mp4", 0, 10)
    with VideoWriter(tmp_path / "b.mp4", 24, 128, 64) as writer:  # another size
        for i in range(10):
            writer.write_frame(numbered_frame(i, 128, 64))
    with pytest.raises(IncompatibleParts):
        concat_videos([a, tmp_path / "b.mp4"], tmp_path / "out.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]


def test_missing_or_damaged_part_is_a_write_failure_and_leaves_nothing(tmp_path: Path) -> None:
    a = _part(tmp_path, "a.mp4", 0, 10)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    for bad in (tmp_path / "missing.mp4", broken):
        with pytest.raises(WriteFailed):
            concat_videos([a, bad], tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_no_parts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        concat_videos([], tmp_path / "out.mp4")
