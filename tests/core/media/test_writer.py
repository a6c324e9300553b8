"""VideoWriter / write_video / write_wav: round trips, even sizes, atomicity, errors."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from core.media.audio import load_audio
from core.media.decode import VideoReader
from core.media.errors import WriteFailed
from core.media.patterns import numbered_frame, read_frame_number, sine
from core.media.probe import probe
from core.media.writer import VideoWriter, as_fraction, write_video, write_wav


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def test_numbered_clip_round_trips(numbered_clip: Path) -> None:
    info = probe(numbered_clip)
    assert (info.kind, info.width, info.height, info.frame_count) == ("video", 160, 96, 48)
    assert info.fps == 24
    assert info.has_audio and info.sample_rate == 48000 and info.channels == 1
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")


def test_colours_survive_bt709_round_trip(tmp_path: Path) -> None:
    colours = [(200, 30, 60), (20, 180, 90), (240, 240, 240), (10, 10, 10)]
    frames = [np.full((64, 96, 3), c, np.uint8) for c in colours]
    out = write_video(tmp_path / "c.mp4", frames, 10, crf=10)
    with VideoReader(out) as reader:
        for i, colour in enumerate(colours):
            got = reader.frame_at(i)[32, 48].astype(int)
            assert np.abs(got - colour).max() <= 4, (colour, got)


def test_odd_size_is_cropped_to_even(tmp_path: Path) -> None:
    frames = [numbered_frame(i, 131, 75) for i in range(3)]
    with VideoWriter(tmp_path / "odd.mp4", 24, 131, 75) as writer:
        assert writer.encoded_size == (130, 74)
        for f in frames:
            writer.write_frame(f)
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (130, 74)


def test_exception_inside_block_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "never.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(target, 24, 64, 64) as writer:
        writer.write_frame(np.zeros((64, 64, 3), np.uint8))
        raise RuntimeError("boom")
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_abort_keeps_existing_destination(tmp_path: Path) -> None:
    target = tmp_path / "keep.mp4"
    target.write_bytes(b"previous export")
    writer = VideoWriter(target, 24, 64, 64)
    writer.write_frame(np.zeros((64, 64, 3), np.uint8))
    writer.abort()
    assert target.read_bytes() == b"previous export"
    assert _leftovers(tmp_path) == []


def test_temp_file_lives_beside_destination_until_close(tmp_path: Path) -> None:
    target = tmp_path / "late.mp4"
    with VideoWriter(target, 24, 64, 64) as writer:
        for i in range(60):  # enough for x264's look-ahead to emit packets
            writer.write_frame(numbered_frame(i, 64, 64))
        assert not target.exists()
        assert len(_leftovers(tmp_path)) == 1
    assert target.exists() and _leftovers(tmp_path) == []


def test_no_frames_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(WriteFailed, match="no video frames"), VideoWriter(tmp_path / "e.mp4", 24, 64, 64):
        pass
    assert list(tmp_path.iterdir()) == []


def test_bad_frames_are_rejected_and_writer_stays_usable(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "v.mp4", 24, 64, 48) as writer:
        with pytest.raises(ValueError, match="expects 64x48"):
            writer.write_frame(np.zeros((48, 60, 3), np.uint8))
        with pytest.raises(ValueError, match="uint8"):
            writer.write_frame(np.zeros((48, 64, 3), np.float32))
        with pytest.raises(ValueError, match="without audio"):
            writer.write_audio(np.zeros(100, np.float32))
        writer.write_frame(np.zeros((48, 64, 3), np.uint8))
    assert probe(tmp_path / "v.mp4").frame_count == 1


def test_missing_folder_is_write_failed(tmp_path: Path) -> None:
    with pytest.raises(WriteFailed, match="does not exist") as err:
        VideoWriter(tmp_path / "nope" / "x.mp4", 24, 64, 64)
    assert err.value.path == tmp_path / "nope" / "x.mp4"


def test_stereo_audio_streams_in_pieces(tmp_path: Path) -> None:
    left, right = sine(1.0, 48000, 440), sine(1.0, 48000, 660, 0.25)
    stereo = np.stack([left, right], axis=1)
    with VideoWriter(tmp_path / "s.mp4", 24, 64, 64, audio_rate=48000, audio_channels=2) as writer:
        for i in range(24):
            writer.write_frame(numbered_frame(i, 64, 64))
        for piece in np.array_split(stereo, 7):  # sizes unrelated to the AAC frame size
            writer.write_audio(piece)
    audio = load_audio(tmp_path / "s.mp4")
    assert audio.channels == 2 and len(audio.samples) == 48000
    middle = slice(2048, 46000)  # AAC is lossy and ramps up over its first frame
    rms = np.sqrt(np.mean((audio.samples[middle] - stereo[middle]) ** 2, axis=0))
    assert (rms < 0.02).all(), rms
    with VideoReader(tmp_path / "s.mp4") as reader:
        assert [read_frame_number(reader.frame_at(i)) for i in (0, 11, 23)] == [0, 11, 23]


def test_write_wav_is_16_bit_pcm(tmp_path: Path) -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.5, -2.0], np.float32)
    out = write_wav(tmp_path / "t.wav", samples, 8000)
    with wave.open(str(out)) as handle:
        assert (handle.getnchannels(), handle.getsampwidth(), handle.getframerate()) == (1, 2, 8000)
        pcm = np.frombuffer(handle.readframes(5), "<i2")
    assert pcm.tolist() == [0, 16384, -16384, 32767, -32767]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (24, Fraction(24)),
        (29.97, Fraction(30000, 1001)),
        (23.976, Fraction(24000, 1001)),
        ("25/1", Fraction(25)),
    ],
)
def test_as_fraction(given: float | int | str, expected: Fraction) -> None:
    assert as_fraction(given) == expected


@pytest.mark.parametrize("bad", [0, -5, "abc"])
def test_as_fraction_rejects(bad: float | int | str) -> None:
    with pytest.raises(ValueError, match="frame rate"):
        as_fraction(bad)
