"""RunContext events/cancel, latent previews and the crash-safe piece store."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from core.generation import PieceFinished, Preview, Progress, RenderCancelled
from models.pipeline_base import (
    PieceStore,
    RunContext,
    encoder_threads_for,
    latent_preview_rgb,
    request_fingerprint,
)


def test_latent_preview_shape_and_range():
    latents = torch.randn(1, 16, 3, 6, 10, generator=torch.Generator().manual_seed(0))
    rgb = latent_preview_rgb(latents)
    assert rgb.shape == (6, 10, 3) and rgb.dtype == np.uint8
    # A latent of all zeros maps to the bias colour, not to black: the factors are really applied.
    zero = latent_preview_rgb(torch.zeros(16, 1, 2, 2))
    assert zero[0, 0].tolist() == [104, 116, 85]


def test_latent_preview_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="16 latent channels"):
        latent_preview_rgb(torch.zeros(4, 1, 2, 2))


def test_latent_preview_is_cheap_at_720p_latent_size():
    # 720p -> 90x160 latents; the budget is 2 ms a step (bench/bench_pipeline_overhead.py measures it),
    # here only a generous bound that still fails if the preview became a decode.
    latents = torch.randn(16, 21, 90, 160)
    latent_preview_rgb(latents)
    start = time.perf_counter()
    for _ in range(10):
        latent_preview_rgb(latents)
    assert (time.perf_counter() - start) / 10 < 0.05


def test_step_emits_progress_then_preview_and_honours_cancel():
    events = []
    cancel = threading.Event()
    ctx = RunContext(events.append, cancel)
    ctx.step(0, 2, 1, 8, torch.zeros(16, 1, 4, 4))
    assert isinstance(events[0], Progress) and events[0].step == 1 and events[0].total_pieces == 2
    assert isinstance(events[1], Preview) and (events[1].width, events[1].height) == (4, 4)
    assert len(events[1].rgb) == 4 * 4 * 3
    cancel.set()
    with pytest.raises(RenderCancelled):
        ctx.step(0, 2, 2, 8)


def test_piece_store_round_trip_and_resume(tmp_path):
    store = PieceStore(tmp_path, request_fingerprint({"seed": 1}), fps=24)
    events = []
    ctx = RunContext(events.append, pieces=store)
    frames = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    ctx.piece_finished(0, 2, frames, {"prefix": torch.arange(6.0)})
    assert isinstance(events[-1], PieceFinished) and events[-1].num_frames == 5
    again = RunContext(pieces=PieceStore(tmp_path, request_fingerprint({"seed": 1}), fps=24))
    piece = again.finished_piece(0)
    assert piece is not None and np.array_equal(piece.frames, frames)
    assert torch.equal(piece.state["prefix"], torch.arange(6.0))
    assert again.finished_piece(1) is None
    assert store.finished_indices() == [0]
    # Another request never sees these pieces.
    assert RunContext(pieces=PieceStore(tmp_path, request_fingerprint({"seed": 2}), fps=24)).finished_piece(0) is None


def test_damaged_piece_is_rendered_again(tmp_path):
    store = PieceStore(tmp_path, "abc", fps=24)
    store.folder.mkdir(parents=True)
    (store.folder / "piece_0000.npy").write_bytes(b"not a numpy file")
    assert store.load(0) is None


def _numbered(first, count):
    from core.media.patterns import numbered_frame

    return np.stack([numbered_frame(first + i, 64, 48) for i in range(count)])


def test_piece_sink_streams_groups_skips_and_limits(tmp_path):
    from core.media.decode import VideoReader
    from core.media.patterns import read_frame_number

    store = PieceStore(tmp_path, "abc", fps=24)
    events = []
    ctx = RunContext(events.append, pieces=store)
    with ctx.begin_piece(3, 5, skip=6, limit=20) as sink:
        for first in range(0, 40, 4):  # groups of four, as the VAE decodes them
            sink.add(_numbered(first, 4))
        frames = sink.finish({"tail": torch.ones(2)})
    assert [read_frame_number(f) for f in frames] == list(range(6, 26))
    assert isinstance(events[-1], PieceFinished) and events[-1].num_frames == 20
    assert events[-1].path == str(store.playable(3))
    with VideoReader(store.playable(3)) as reader:
        assert [read_frame_number(f) for f in reader.iter_frames()] == list(range(6, 26))
    piece = store.load(3)
    assert np.array_equal(piece.frames, frames) and torch.equal(piece.state["tail"], torch.ones(2))


def test_piece_encoder_threads_follow_the_device(tmp_path, monkeypatch):
    from core.media.decode import VideoReader
    from core.media.patterns import read_frame_number

    assert encoder_threads_for("cpu") == 1  # beside a CPU render the model keeps the cores
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert encoder_threads_for("cuda:0") == 4
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert encoder_threads_for("cuda") == 1
    monkeypatch.undo()
    store = PieceStore(tmp_path, "abc", fps=24, encoder_threads=3)
    ctx = RunContext(lambda event: None, pieces=store)
    with ctx.begin_piece(0, 1) as sink:
        assert sink._encoder is not None and sink._encoder.threads == 3
        for first in range(0, 24, 8):
            sink.add(_numbered(first, 8))
        sink.finish()
    with VideoReader(store.playable(0)) as reader:  # a multi-threaded x264 piece decodes to the same frames
        assert [read_frame_number(f) for f in reader.iter_frames()] == list(range(24))


def test_cancel_while_a_piece_decodes_leaves_no_piece_and_no_partial_file(tmp_path):
    store = PieceStore(tmp_path, "abc", fps=24)
    ctx = RunContext(pieces=store)
    with pytest.raises(RenderCancelled), ctx.begin_piece(0, 1) as sink:
        sink.add(_numbered(0, 8))
        raise RenderCancelled("render cancelled")
    assert store.finished_indices() == [] and store.playable(0) is None
    assert sorted(p.name for p in store.folder.iterdir()) == []


def test_encoder_failure_fails_the_piece_instead_of_checkpointing_it(tmp_path):
    store = PieceStore(tmp_path, "abc", fps=24)
    ctx = RunContext(pieces=store)
    with pytest.raises(ValueError, match="differ"), ctx.begin_piece(0, 1) as sink:
        sink.add(_numbered(0, 4))
        sink.add(np.zeros((2, 30, 30, 3), np.uint8))  # a programming error: another size
    # The encoder itself failing (here: the piece folder vanishes under it) fails the piece too.
    with ctx.begin_piece(1, 2) as sink:
        sink._encoder.path = tmp_path / "gone" / "piece.mp4"  # before the first frame opens the file
        sink.add(_numbered(0, 4))
        with pytest.raises(Exception, match="does not exist"):
            sink.finish()
    assert store.finished_indices() == []
    assert not [p for p in store.folder.iterdir() if p.suffix == ".mp4"]


class _Killed(BaseException):
    """Stands for the process being killed at that point: the files stay as they are."""


def test_piece_killed_between_its_files_and_its_marker_is_not_finished(tmp_path, monkeypatch):
    import models.pipeline_base as base

    store = PieceStore(tmp_path, "abc", fps=24)
    events = []
    ctx = RunContext(events.append, pieces=store)
    frames = _numbered(0, 6)
    real_replace = base.os.replace

    def replace(source, target):
        if str(target).endswith("piece_0000.npy"):
            raise _Killed
        real_replace(source, target)

    monkeypatch.setattr(base.os, "replace", replace)
    with pytest.raises(_Killed):
        ctx.piece_finished(0, 1, frames, {"tail": torch.ones(3)})
    monkeypatch.setattr(base.os, "replace", real_replace)
    # Frames, state and MP4 are on disk, the marker is not: the piece is not finished, not announced.
    names = {p.name for p in store.folder.iterdir()}
    assert {"piece_0000.tmp.npy", "piece_0000.state.safetensors", "piece_0000.mp4"} <= names
    assert not any(isinstance(e, PieceFinished) for e in events)
    again = PieceStore(tmp_path, "abc", fps=24)
    assert again.finished_indices() == [] and again.load(0) is None and again.playable(0) is None
    # Rendering it again finishes it with the same frames.
    RunContext(pieces=again).piece_finished(0, 1, frames, {"tail": torch.ones(3)})
    piece = PieceStore(tmp_path, "abc", fps=24).load(0)
    assert piece is not None and np.array_equal(piece.frames, frames)
    assert torch.equal(piece.state["tail"], torch.ones(3))


def test_piece_announced_only_once_every_file_is_there(tmp_path):
    store = PieceStore(tmp_path, "abc", fps=24)
    seen = []

    def emit(event):
        if isinstance(event, PieceFinished):
            state = store.folder / "piece_0002.state.safetensors"
            seen.append((store.finished_indices(), store.playable(event.piece), state.exists()))

    ctx = RunContext(emit, pieces=store)
    with ctx.begin_piece(2, 3) as sink:
        sink.add(_numbered(0, 4))
        sink.add(_numbered(4, 4))
        sink.finish({"tail": torch.zeros(2)})
    assert seen == [([2], store.folder / "piece_0002.mp4", True)]
