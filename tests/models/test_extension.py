"""Video extension end to end on the CPU with the tiny official-layout checkpoint
(:mod:`models.extension.tiny`): frame counts, determinism, cancel, resume, refusal of bad input
before any model loads, missing-file reports, the chunk plan and the transition prompts."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core.generation import (
    ModelsMissing,
    PieceFinished,
    Progress,
    RenderCancelled,
    RenderRequest,
    RequestInvalid,
    Task,
    Transition,
)
from core.media.patterns import numbered_frame
from core.media.writer import write_video
from models.extension import pipeline as ext
from models.extension.pipeline import (
    ExtensionMode,
    ExtensionPipeline,
    ExtensionRequest,
    load_components,
    missing_files,
    plan_shot_switching,
    plan_single_shot,
    prepare_request,
    run_extension,
    select_bucket,
)
from models.extension.tiny import TINY_BUCKETS, write_tiny_extension_checkpoint
from models.extension.transitions import compose_prompt
from models.pipeline_base import PieceStore, RunContext, request_fingerprint

# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ext-media")
    clip = write_video(folder / "clip.mp4", (numbered_frame(i, 64, 32) for i in range(30)), 24)
    short = write_video(folder / "short.mp4", (numbered_frame(i, 64, 32) for i in range(12)), 24)
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    return {"clip": Path(clip), "short": Path(short), "broken": broken}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_extension_checkpoint(tmp_path_factory.mktemp("ext-ckpt") / "tiny", seed=3)


@pytest.fixture(scope="module")
def single(checkpoint) -> ExtensionPipeline:
    return ExtensionPipeline(load_components(checkpoint, ExtensionMode.SINGLE_SHOT, dtype=torch.float32))


@pytest.fixture(scope="module")
def shot(checkpoint) -> ExtensionPipeline:
    return ExtensionPipeline(load_components(checkpoint, ExtensionMode.SHOT_SWITCHING, dtype=torch.float32))


def _request(media, mode=ExtensionMode.SINGLE_SHOT, duration=5, **kw) -> ExtensionRequest:
    kw.setdefault("bucket_table", TINY_BUCKETS)
    kw.setdefault("steps", 2)
    return ExtensionRequest(
        mode=mode,
        input_video=str(kw.pop("video", media["clip"])),
        prompt=kw.pop("prompt", "a tiny test"),
        duration_s=duration,
        **kw,
    )


# ---------------------------------------------------------------------------------------------
# planning, buckets, prompts (no model)


@pytest.mark.parametrize(
    ("duration", "latents", "frames"),
    [
        (1, [9], 36), (2, [17], 68), (3, [25], 100), (4, [25], 100), (5, [33], 132), (6, [33, 9], 168),
        (10, [33, 33], 264), (11, [33, 33, 1], 268), (15, [33, 33, 25], 364),
        (20, [33, 33, 25, 33], 496), (25, [33, 33, 25, 33, 33], 628), (30, [33, 33, 25, 33, 33, 25], 728),
    ],
)  # fmt: skip
def test_single_shot_plan_matches_official_table(duration, latents, frames):
    plan = plan_single_shot(duration)
    assert [p.latent_frames for p in plan] == latents
    assert sum(p.output_frames for p in plan) == frames
    assert all((p.latent_frames + p.condition_latents) % 8 == 0 for p in plan)


@pytest.mark.parametrize("duration", [2, 3, 4, 5])
def test_shot_switching_plan(duration):
    (piece,) = plan_shot_switching(duration)
    assert piece.output_frames == 24 * duration + 1
    assert piece.condition_latents == 2 * duration - 1
    assert piece.latent_frames + piece.condition_latents == 8 * duration


def test_bucket_selection_and_rounding():
    assert select_bucket(112, 200, ext.BUCKETS["480P"]) == (480, 848)
    assert select_bucket(720, 720, ext.BUCKETS["720P"]) == (960, 960)
    assert select_bucket(1080, 1920, ext.BUCKETS["540P"]) == (544, 960)


def test_transition_prompts():
    assert compose_prompt("[ZOOM_IN_CUT] a cat", None) == "[ZOOM_IN_CUT] a cat"
    assert compose_prompt("a cat", Transition.CUT_IN) == "[ZOOM_IN_CUT] a cat"
    assert compose_prompt("a cat", Transition.CUT_OUT) == "[ZOOM_OUT_CUT] a cat"
    assert compose_prompt("[ZOOM_OUT_CUT] a cat", Transition.CUT_OUT) == "[ZOOM_OUT_CUT] a cat"
    for transition in (Transition.SHOT_REVERSE_SHOT, Transition.MULTI_ANGLE, Transition.CUT_AWAY):
        text = compose_prompt("a cat", transition)
        assert text.endswith(" a cat") and not text.startswith("[")
    with pytest.raises(RequestInvalid, match="ZOOM_IN_CUT"):
        compose_prompt("[ZOOM_IN_CUT] a cat", Transition.CUT_OUT)


# ---------------------------------------------------------------------------------------------
# refusal before any model loads


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration": 4}, "5 to 30 seconds"),
        ({"duration": 31}, "5 to 30 seconds"),
        ({"mode": ExtensionMode.SHOT_SWITCHING, "duration": 6}, "2, 3, 4, 5 seconds"),
        ({"video": "short"}, "too short to extend"),
        ({"mode": ExtensionMode.SHOT_SWITCHING, "duration": 3, "video": "short"}, "too short to extend"),
        ({"video": "broken"}, "Cannot read"),
        ({"video": "missing"}, "does not exist"),
        ({"transition": Transition.CUT_IN}, "shot switching only"),
        ({"bucket_table": None, "resolution": "1080P"}, "Unknown resolution"),
        ({"steps": 0}, "steps"),
        ({"mode": ExtensionMode.SHOT_SWITCHING, "duration": 2, "prompt": "[ZOOM_IN_CUT] x", "transition": Transition.CUT_OUT}, "Remove the tag"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_before_model_load(media, tmp_path, monkeypatch, change, message):
    def no_loading(*_args, **_kwargs):
        raise AssertionError("a model was loaded for an invalid request")

    monkeypatch.setattr(ext, "load_components", no_loading)
    monkeypatch.setattr(ext, "check_checkpoint", no_loading)
    change = dict(change)
    video = change.pop("video", "clip")
    change["video"] = media.get(video, tmp_path / "nope.mp4")
    request = _request(media, **change)
    with pytest.raises(RequestInvalid, match=message):
        run_extension(request, tmp_path / "no-models")


def test_render_request_translation(media):
    base = RenderRequest(
        task=Task.SINGLE_SHOT_EXTENSION,
        prompt="p",
        output_path="o.mp4",
        work_dir=".",
        input_video=str(media["clip"]),
    )
    assert ExtensionRequest.from_render_request(base).duration_s == 5
    for bad, message in (
        ({"duration_s": 5.5}, "whole seconds"),
        ({"input_video": None}, "no input video"),
        ({"task": Task.REFERENCE_TO_VIDEO}, "not a video-extension task"),
    ):
        data = {**base.to_json(), **bad}
        data["task"] = data["task"].value if isinstance(data["task"], Task) else data["task"]
        with pytest.raises(RequestInvalid, match=message):
            ExtensionRequest.from_render_request(RenderRequest.from_json(data))


def test_missing_files_are_listed_exactly(checkpoint, tmp_path, media):
    partial = tmp_path / "partial"
    shutil.copytree(checkpoint, partial)
    (partial / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    (partial / "Wan2.1_VAE.pth").unlink()
    shutil.rmtree(partial / "shot_transformer")
    assert missing_files(partial, ExtensionMode.SINGLE_SHOT) == [
        "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
        "Wan2.1_VAE.pth",
    ]
    assert missing_files(partial, ExtensionMode.SHOT_SWITCHING) == [
        "shot_transformer/config.json",
        "shot_transformer/*.safetensors",
        "Wan2.1_VAE.pth",
    ]
    assert missing_files(checkpoint, ExtensionMode.SINGLE_SHOT) == []
    with pytest.raises(
        ModelsMissing, match=r"diffusion_pytorch_model-00002-of-00002\.safetensors, Wan2\.1_VAE\.pth"
    ):
        run_extension(_request(media), partial)


# ---------------------------------------------------------------------------------------------
# generation


@pytest.fixture(scope="module")
def six_seconds(single, media, tmp_path_factory):
    """One uninterrupted two-piece single-shot render (shared: decoding dominates the test time)."""
    request = _request(media, duration=6)
    fingerprint = request_fingerprint(request.fingerprint_payload())
    events: list[object] = []
    store = PieceStore(tmp_path_factory.mktemp("ext-full"), fingerprint, 24)
    result = single(prepare_request(request), RunContext(emit=events.append, pieces=store))
    return request, fingerprint, result, events


def test_single_shot_frame_counts_and_events(six_seconds):
    _, _, result, events = six_seconds
    assert result.frames.shape == (168, 16, 32, 3) and result.frames.dtype == np.uint8
    progress = [e for e in events if isinstance(e, Progress)]
    assert [(e.piece, e.step) for e in progress] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(e.total_pieces == 2 and e.total_steps == 2 for e in progress)
    assert [(e.piece, e.num_frames) for e in events if isinstance(e, PieceFinished)] == [(0, 132), (1, 36)]


def test_resume_from_last_finished_piece_equals_uninterrupted(single, six_seconds, tmp_path):
    request, fingerprint, full, _ = six_seconds
    cancel = threading.Event()

    def emit(event):
        if isinstance(event, Progress) and event.piece == 1:
            cancel.set()

    store = PieceStore(tmp_path, fingerprint, 24)
    with pytest.raises(RenderCancelled):
        single(prepare_request(request), RunContext(emit=emit, cancel=cancel, pieces=store))
    assert store.finished_indices() == [0]

    events: list[object] = []
    resumed = single(prepare_request(request), RunContext(emit=events.append, pieces=store))
    assert resumed.resumed_pieces == [0]
    assert {e.piece for e in events if isinstance(e, Progress)} == {1}
    np.testing.assert_array_equal(resumed.frames, full.frames)


class _Killed(BaseException):
    """Stands for the process being killed at that point: the files stay as they are."""


def test_kill_between_a_pieces_files_and_its_marker_resumes_with_identical_frames(
    single, six_seconds, tmp_path, monkeypatch
):
    import models.pipeline_base as base

    request, fingerprint, full, _ = six_seconds
    real_replace = base.os.replace

    def replace(source, target):
        if str(target).endswith("piece_0001.npy"):  # piece 1's frames, state and MP4 are written
            raise _Killed
        real_replace(source, target)

    store = PieceStore(tmp_path, fingerprint, 24)
    monkeypatch.setattr(base.os, "replace", replace)
    with pytest.raises(_Killed):
        single(prepare_request(request), RunContext(pieces=store))
    monkeypatch.setattr(base.os, "replace", real_replace)
    assert store.finished_indices() == [0]

    events: list[object] = []
    resumed = single(prepare_request(request), RunContext(emit=events.append, pieces=store))
    assert resumed.resumed_pieces == [0]
    assert [e.piece for e in events if isinstance(e, PieceFinished)] == [1]
    np.testing.assert_array_equal(resumed.frames, full.frames)
    assert store.finished_indices() == [0, 1]


def test_shot_switching_is_deterministic_and_seeded(shot, media):
    request = _request(media, mode=ExtensionMode.SHOT_SWITCHING, duration=2, transition=Transition.CUT_IN)
    first = shot(prepare_request(request)).frames
    again = shot(prepare_request(request)).frames
    assert first.shape == (49, 16, 32, 3)
    np.testing.assert_array_equal(first, again)
    # Another seed: compare the final latents (no decode needed to see the noise changed).
    traces: list[dict[str, torch.Tensor]] = [{}, {}]
    for seed, trace in zip((42, 7), traces, strict=True):
        other = _request(media, mode=ExtensionMode.SHOT_SWITCHING, duration=2, seed=seed)
        shot(prepare_request(other), trace=trace, decode_last_piece=False)
    assert not torch.equal(traces[0]["chunk0.latents_final"], traces[1]["chunk0.latents_final"])


def test_cancel_within_a_step_skips_decode(single, media, monkeypatch):
    decodes = []
    vae = single.components.vae
    monkeypatch.setattr(vae, "decode", lambda *a, **k: decodes.append(1))
    cancel = threading.Event()
    calls = {"blocks": 0}
    transformer = single.components.transformer
    original = transformer.forward

    def forward(*args, **kwargs):
        check = kwargs["between_blocks"]

        def counting():
            calls["blocks"] += 1
            if calls["blocks"] == 2:  # inside the first step, after the first block
                cancel.set()
            check()

        kwargs["between_blocks"] = counting
        return original(*args, **kwargs)

    monkeypatch.setattr(transformer, "forward", forward)
    events: list[object] = []
    with pytest.raises(RenderCancelled):
        single(prepare_request(_request(media)), RunContext(emit=events.append, cancel=cancel))
    assert calls["blocks"] == 2
    assert not [e for e in events if isinstance(e, Progress | PieceFinished)]
    assert not decodes


# ---------------------------------------------------------------------------------------------
# DiT memory options give the plain policy's numbers


def _tiny_dit_call(seed: int = 0):
    from models.extension.transformer import ExtensionDiTConfig, ExtensionTransformer

    torch.manual_seed(seed)
    config = ExtensionDiTConfig(
        dim=32, ffn_dim=64, freq_dim=32, text_dim=24, num_heads=2, num_layers=2, text_len=8
    )
    model = ExtensionTransformer(config).eval()
    x = [torch.randn(1, 16, 3, 4, 6), torch.randn(1, 16, 2, 4, 6)]
    t = torch.tensor([[700, 700, 700, 0, 0]])
    context = torch.randn(1, 8, 24)
    return model, (x, t, context)


def test_chunked_ffn_and_block_offload_match_plain():
    model, args = _tiny_dit_call()
    with torch.no_grad():
        plain = model(*args)
        model.set_ffn_chunking(5)
        chunked = model(*args)
        model.set_ffn_chunking(None)
        model.enable_block_offload("cpu", "cpu")
        offloaded = model(*args)
        model.disable_block_offload()
        again = model(*args)
    torch.testing.assert_close(chunked, plain, atol=0, rtol=0)
    torch.testing.assert_close(offloaded, plain, atol=0, rtol=0)
    torch.testing.assert_close(again, plain, atol=0, rtol=0)


def test_float8_blocks_equal_plain_model_with_dequantised_weights():
    from models.extension.transformer import Float8WeightLinear, quantize_blocks_float8

    model, args = _tiny_dit_call(1)
    reference, _ = _tiny_dit_call(1)
    assert quantize_blocks_float8(model) == 2 * (8 + 2)
    for (name, layer), (_, plain) in zip(model.named_modules(), reference.named_modules(), strict=True):
        if isinstance(layer, Float8WeightLinear):
            assert layer.qweight.dtype == torch.float8_e4m3fn, name
            plain.weight.data = layer.dequantized_weight()
    with torch.no_grad():
        quantised = model(*args)
        expected = reference(*args)
        model.enable_block_offload("cpu", "cpu")
        offloaded = model(*args)
    torch.testing.assert_close(quantised, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(offloaded, quantised, atol=0, rtol=0)


def test_bfloat16_weights_run_under_autocast_close_to_float32():
    model, args = _tiny_dit_call(2)
    with torch.no_grad():
        full = model(*args)
        half = model.to(torch.bfloat16)(*args)
    assert half.dtype == torch.float32
    assert (half - full).abs().max() < 0.05 * full.abs().max()


def test_low_vram_loading_runs_float8_offloaded_blocks(checkpoint, media):
    from models.extension.transformer import Float8WeightLinear

    components = load_components(checkpoint, ExtensionMode.SHOT_SWITCHING, dtype=torch.float32, low_vram=True)
    assert components.offload_text_encoder
    assert any(isinstance(m, Float8WeightLinear) for m in components.transformer.modules())
    trace: dict[str, torch.Tensor] = {}
    request = _request(media, mode=ExtensionMode.SHOT_SWITCHING, duration=2)
    ExtensionPipeline(components)(prepare_request(request), trace=trace, decode_last_piece=False)
    assert trace["chunk0.latents_final"].shape == (16, 13, 2, 4)
    assert torch.isfinite(trace["chunk0.latents_final"]).all()


def test_injected_noise_replaces_the_seeded_draw(shot, media):
    request = _request(media, mode=ExtensionMode.SHOT_SWITCHING, duration=2)
    stored = torch.full((16, 13, 2, 4), 0.5)
    drawn: list[tuple[int, tuple[int, ...]]] = []

    def noise(piece: int, shape: tuple[int, ...]) -> torch.Tensor:
        drawn.append((piece, shape))
        return stored

    trace: dict[str, torch.Tensor] = {}
    shot(prepare_request(request), noise=noise, trace=trace, decode_last_piece=False)
    assert drawn == [(0, (16, 13, 2, 4))]
    assert torch.equal(trace["chunk0.noise"], stored)
