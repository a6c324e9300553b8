"""PieceOutput: the output is the checkpointed pieces' MP4s joined (no second encode), frames exact."""

from __future__ import annotations

import numpy as np
import pytest

from core.media.decode import VideoReader
from core.media.errors import WriteFailed
from core.media.patterns import numbered_frame, read_frame_number
from core.media.probe import probe
from core.media.writer import write_video
from models.pipeline_base import PieceStore
from models.render_output import PieceOutput


def _frames(first: int, count: int, width: int = 96, height: int = 64) -> np.ndarray:
    return np.stack([numbered_frame(first + i, width, height) for i in range(count)])


def _decoded(path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return list(reader.iter_frames())


def test_checkpointed_pieces_are_copied_not_encoded_again(tmp_path):
    store = PieceStore(tmp_path / "work", "abc", fps=24)
    output = PieceOutput(tmp_path / "out.mp4", 24, store)
    pieces = [_frames(0, 30), _frames(30, 17)]
    for index, frames in enumerate(pieces):
        store.save(index, frames)
        output.write(frames)
    path = output.close()

    assert output.copied_parts == 2 and output.frames == 47 and output.size == (96, 64)
    joined = _decoded(path)
    assert [read_frame_number(f) for f in joined] == list(range(47))
    # Exactly the pictures of the piece MP4s: the packets were copied.
    expected = _decoded(store.playable(0)) + _decoded(store.playable(1))
    assert all(np.array_equal(a, b) for a, b in zip(joined, expected, strict=True))
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_resumed_pieces_are_reused_too_and_other_frames_are_encoded_once(tmp_path):
    store = PieceStore(tmp_path / "work", "abc", fps=24)
    store.save(0, _frames(0, 20))
    resumed = PieceStore(tmp_path / "work", "abc", fps=24)  # a new run finds the checkpoint
    output = PieceOutput(tmp_path / "out.mp4", 24, resumed)
    output.write(resumed.load(0).frames)
    output.write(_frames(20, 10))  # not a checkpointed piece
    output.write(_frames(30, 5))
    output.close()
    assert output.copied_parts == 1
    assert [read_frame_number(f) for f in _decoded(tmp_path / "out.mp4")] == list(range(35))
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_frames_that_differ_from_the_last_piece_are_not_mistaken_for_it(tmp_path):
    store = PieceStore(tmp_path / "work", "abc", fps=24)
    frames = _frames(0, 12)
    store.save(0, frames)
    other = frames.copy()
    other[-1] = numbered_frame(99, 96, 64)
    output = PieceOutput(tmp_path / "out.mp4", 24, store)
    output.write(other)
    output.close()
    assert output.copied_parts == 0
    assert read_frame_number(_decoded(tmp_path / "out.mp4")[-1]) == 99


def test_audio_is_muxed_and_pieces_from_other_settings_are_encoded_again(tmp_path):
    store = PieceStore(tmp_path / "work", "abc", fps=25)
    store.save(0, _frames(0, 25))
    # A checkpoint left by an older version with other encoder settings (its codec set-up differs).
    write_video(store.playable(0), _frames(0, 25), 25, crf=30)
    store.save(1, _frames(25, 25))
    output = PieceOutput(tmp_path / "out.mp4", 25, store)
    output.write(store.load(0).frames)
    output.write(store.load(1).frames)
    tone = np.sin(np.arange(32000) / 16000 * 2 * np.pi * 300).astype(np.float32) * 0.3
    output.close(audio=tone, audio_rate=16000)
    info = probe(tmp_path / "out.mp4")
    assert info.frame_count == 50 and info.has_audio and info.sample_rate == 16000
    assert [read_frame_number(f) for f in _decoded(tmp_path / "out.mp4")] == list(range(50))


def test_odd_sizes_survive_the_fallback(tmp_path):
    store = PieceStore(tmp_path / "work", "abc", fps=24)
    store.save(0, _frames(0, 8, 97, 65))
    write_video(store.playable(0), _frames(0, 8, 97, 65), 24, crf=30)
    store.save(1, _frames(8, 8, 97, 65))
    output = PieceOutput(tmp_path / "out.mp4", 24, store)
    output.write(store.load(0).frames)
    output.write(store.load(1).frames)
    output.close()
    info = probe(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frame_count) == (96, 64, 16)


def test_an_error_leaves_no_output_and_no_parts(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), PieceOutput(out, 24, None) as output:
        output.write(_frames(0, 5))
        raise RuntimeError("cancelled")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(WriteFailed):
        PieceOutput(out, 24, None).close()
    assert not out.exists()


def test_audio_encoded_in_the_background_is_copied_in(tmp_path):
    from core.media.audio import load_audio

    store = PieceStore(tmp_path / "work", "abc", fps=25)
    tone = (0.4 * np.sin(np.arange(16000 * 3) / 16000 * 2 * np.pi * 220)).astype(np.float32)
    with PieceOutput(tmp_path / "out.mp4", 25, store) as output:
        output.start_audio(tone, 16000)
        for index in range(3):
            frames = _frames(25 * index, 25)
            store.save(index, frames)
            output.write(frames)
    assert output.copied_parts == 3
    info = probe(tmp_path / "out.mp4")
    assert info.frame_count == 75 and info.has_audio and info.sample_rate == 16000 and info.channels == 1
    assert info.duration == pytest.approx(3.0, abs=0.07)
    samples = load_audio(tmp_path / "out.mp4", rate=16000, channels=1).samples[:, 0]
    assert np.sqrt(np.mean(samples[8000:40000] ** 2)) == pytest.approx(0.4 / np.sqrt(2), rel=0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "work"]


def test_a_cancelled_render_leaves_no_audio_file_behind(tmp_path):
    tone = np.zeros(16000 * 20, np.float32)
    with pytest.raises(RuntimeError), PieceOutput(tmp_path / "out.mp4", 25, None) as output:
        output.start_audio(tone, 16000)
        raise RuntimeError("cancelled")
    assert list(tmp_path.iterdir()) == []
