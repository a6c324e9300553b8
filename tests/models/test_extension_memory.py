"""The video extension's memory plan: the planner's choice for a prepared extension job (free device
memory injected, so it runs on a CPU), each plan field carried out on the tiny official-layout
checkpoint with the pipeline's own mechanisms, block offload with prefetch giving the resident frames
bit for bit, the official flags forcing what they always forced, the backend keying its loaded pipeline
by the plan, and the pre-flight estimate planning extensions with their own job size. CUDA-only checks
(the side-stream prefetch, real parking) are marked ``gpu``."""

from __future__ import annotations

import dataclasses
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from core.generation import RenderRequest, Task
from core.media.patterns import numbered_frame
from core.media.writer import write_video
from models import memory
from models.backend import LocalBackend
from models.extension.pipeline import (
    ExtensionMode,
    ExtensionPipeline,
    ExtensionRequest,
    job_size,
    load_components,
    prepare_request,
)
from models.extension.tiny import TINY_BUCKETS, write_tiny_extension_checkpoint
from models.extension.transformer import (
    ExtensionDiTConfig,
    ExtensionTransformer,
    Float8WeightLinear,
    full_size_state_dict,
)
from models.memory import GIB, JobSize, MemoryPlan, Policy, plan_memory

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_extension_checkpoint(tmp_path_factory.mktemp("ext-mem") / "tiny", seed=5)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 16:9 clip (64x36): the 720P bucket is 720x1280, the 480P one 480x848."""
    folder = tmp_path_factory.mktemp("ext-mem-media")
    return Path(write_video(folder / "clip.mp4", (numbered_frame(i, 64, 36) for i in range(40)), 24))


def _render_request(clip: Path, tmp_path: Path, task: Task, duration: int, **changes) -> RenderRequest:
    fields = dict(
        task=task, prompt="the camera follows", output_path=str(tmp_path / "out.mp4"),
        work_dir=str(tmp_path / "work"), input_video=str(clip), duration_s=duration, seed=4, steps=2,
    )  # fmt: skip
    return RenderRequest(**{**fields, **changes})


def _cuda_plan(monkeypatch, request: RenderRequest, free_gib: int, host_gib: int | None = None) -> MemoryPlan:
    """The plan the backend makes for ``request`` on a CUDA card with ``free_gib`` usable (host RAM pinned
    at 16 GiB by conftest unless ``host_gib``). Only the measurements are injected: nothing touches CUDA."""
    monkeypatch.setattr(memory, "free_device_memory", lambda device: free_gib * GIB)
    if host_gib is not None:
        monkeypatch.setattr(memory, "available_host_memory", lambda: host_gib * GIB)
    prepared = prepare_request(ExtensionRequest.from_render_request(request))
    return LocalBackend()._memory_plan(request, torch.device("cuda"), torch.bfloat16, job_size(prepared))


# ---------------------------------------------------------------------------------------------
# Job size and the planner's choice


def test_job_size_counts_the_largest_forward_with_its_condition_latents(clip, tmp_path) -> None:
    def job(task: Task, duration: int, resolution: str) -> memory.JobSize:
        request = _render_request(clip, tmp_path, task, duration, resolution=resolution)
        return job_size(prepare_request(ExtensionRequest.from_render_request(request)))

    # Single shot: 7 condition + 33 new latent frames in every 5 s piece, at any duration.
    assert job(Task.SINGLE_SHOT_EXTENSION, 5, "720P").tokens == 40 * 45 * 80 == 144_000
    assert job(Task.SINGLE_SHOT_EXTENSION, 23, "720P").tokens == 144_000
    assert job(Task.SINGLE_SHOT_EXTENSION, 5, "480P").tokens == 40 * 30 * 53
    # Shot switching: 6d + 1 new latent frames beside the 2d - 1 context frames.
    assert job(Task.SHOT_SWITCHING_EXTENSION, 2, "720P").tokens == (13 + 3) * 45 * 80
    assert job(Task.SHOT_SWITCHING_EXTENSION, 5, "720P").tokens == (31 + 9) * 45 * 80
    full = job(Task.SINGLE_SHOT_EXTENSION, 5, "720P")
    assert (full.frame_height, full.frame_width, full.forwards_per_step) == (720, 1280, 1)
    # The one transformer a mode loads (either folder: same config) is the planner's default size.
    assert full.transformer_params == sum(t.numel() for t in full_size_state_dict().values())


@pytest.mark.parametrize(
    ("task", "resolution", "duration", "free_gib", "host_gib", "expected"),
    [
        # An 80 GB card holds everything; 144,000 tokens always get a chunked FFN.
        (Task.SINGLE_SHOT_EXTENSION, "720P", 5, 80, None, (Policy.GPU_RESIDENT, Policy.CHUNKED_FFN)),
        # 24 GB with the host RAM for the bf16 weights: blocks streamed in bf16, T5 parked on the CPU.
        (Task.SINGLE_SHOT_EXTENSION, "480P", 10, 24, 64, (Policy.PARK_IDLE, Policy.BLOCK_STREAMING)),
        # The same card with 16 GiB of host RAM: fp8 blocks, streamed.
        (
            Task.SINGLE_SHOT_EXTENSION, "480P", 10, 24, None,
            (Policy.PARK_IDLE, Policy.FP8_STORAGE, Policy.BLOCK_STREAMING),
        ),
        # 720P single shot on 24 GB: bf16 blocks streamed too (estimated 19.2 GiB; the H200 measured
        # 17.6 GiB for the transformer with bf16 blocks offloaded, see docs/performance.md).
        (
            Task.SINGLE_SHOT_EXTENSION, "720P", 5, 24, 64,
            (Policy.PARK_IDLE, Policy.BLOCK_STREAMING, Policy.CHUNKED_FFN),
        ),
        # 40 GB: the bf16 transformer fits alone, so T5 and the transformer take turns on the device.
        (Task.SHOT_SWITCHING_EXTENSION, "720P", 2, 40, None, (Policy.PARK_IDLE,)),
        # 12 GB: UMT5-XXL does not fit even alone and runs on the CPU.
        (
            Task.SHOT_SWITCHING_EXTENSION, "720P", 2, 12, 64,
            (Policy.PARK_IDLE, Policy.BLOCK_STREAMING, Policy.TEXT_ENCODER_ON_CPU),
        ),
    ],
)  # fmt: skip
def test_the_backend_plans_an_extension_for_the_free_memory(
    monkeypatch, clip, tmp_path, task, resolution, duration, free_gib, host_gib, expected
) -> None:
    request = _render_request(clip, tmp_path, task, duration, resolution=resolution)
    plan = _cuda_plan(monkeypatch, request, free_gib, host_gib)
    assert plan.policies == expected, plan.describe()
    assert plan.device == "cuda" and plan.compute_dtype == torch.bfloat16
    assert plan.estimated_peak_bytes <= free_gib * GIB
    assert plan.use_stream == plan.block_streaming


def test_the_official_flags_stay_minimums_of_the_plan(monkeypatch, clip, tmp_path) -> None:
    base = partial(_render_request, clip, tmp_path, Task.SHOT_SWITCHING_EXTENSION, 2, resolution="480P")
    low = _cuda_plan(monkeypatch, base(low_vram=True), 80)
    assert {Policy.PARK_IDLE, Policy.FP8_STORAGE, Policy.BLOCK_STREAMING} <= set(low.policies)
    assert _cuda_plan(monkeypatch, base(offload=True), 80).policies == (Policy.PARK_IDLE,)
    assert _cuda_plan(monkeypatch, base(), 80).policies == (Policy.GPU_RESIDENT,)


# ---------------------------------------------------------------------------------------------
# Carrying a plan out on the tiny checkpoint (CPU)


def _load(checkpoint: Path, mode: ExtensionMode = ExtensionMode.SHOT_SWITCHING, **kw):
    return load_components(checkpoint, mode, dtype=torch.float32, **kw)


def _float8_layers(components) -> int:
    return sum(isinstance(m, Float8WeightLinear) for m in components.transformer.modules())


def test_each_plan_field_is_carried_out_by_the_extension(checkpoint) -> None:
    resident = _load(checkpoint, plan=MemoryPlan(device="cpu"))
    assert not resident.offload_text_encoder and not resident.park_transformer
    assert not resident.text_encoder_on_cpu and resident.transformer.block_offload is None
    assert _float8_layers(resident) == 0 and resident.vae.tiling is None
    assert all(block.ffn_chunk_tokens is None for block in resident.transformer.blocks)

    parked = _load(checkpoint, plan=MemoryPlan(device="cpu", park_idle=True))
    assert parked.offload_text_encoder and parked.park_transformer and not parked.text_encoder_on_cpu

    text_on_cpu = _load(checkpoint, plan=MemoryPlan(device="cpu", park_idle=True, text_encoder_on_cpu=True))
    assert text_on_cpu.text_encoder_on_cpu and text_on_cpu.offload_text_encoder
    assert not text_on_cpu.park_transformer  # T5 never visits the device: nothing to make room for

    streamed = _load(checkpoint, plan=MemoryPlan(device="cpu", park_idle=True, block_streaming=True))
    assert streamed.transformer.block_offload == (CPU, CPU) and not streamed.park_transformer
    assert _float8_layers(streamed) == 0  # streamed in the weight dtype: exact
    assert {p.dtype for p in streamed.transformer.parameters()} == {torch.float32}

    fp8 = _load(checkpoint, plan=MemoryPlan(device="cpu", park_idle=True, fp8="layerwise"))
    assert _float8_layers(fp8) == 2 * (8 + 2)  # every Linear of the two blocks
    assert fp8.transformer.block_offload is None and fp8.park_transformer

    chunked = _load(checkpoint, plan=MemoryPlan(device="cpu", ffn_chunk_tokens=3))
    assert [block.ffn_chunk_tokens for block in chunked.transformer.blocks] == [3, 3]

    tiled = _load(checkpoint, plan=MemoryPlan(device="cpu", tiled_vae=True))
    assert tiled.vae.tiling == (256 // 8, 192 // 8)


def _moves(components) -> list[tuple[str, str]]:
    """Record the transformer's and the text encoder's ``to`` calls (they still move)."""
    moves: list[tuple[str, str]] = []
    for name, module in (("transformer", components.transformer), ("t5", components.text_encoder)):
        original = module.to

        def to(device, *args, _name=name, _original=original, **kwargs):
            moves.append((_name, str(device)))
            return _original(device, *args, **kwargs)

        module.to = to
    return moves


def test_a_parked_plan_takes_the_transformer_off_the_device_while_t5_encodes(checkpoint, clip) -> None:
    request = ExtensionRequest(
        ExtensionMode.SHOT_SWITCHING, str(clip), "a tiny test", 2, bucket_table=TINY_BUCKETS, steps=1
    )
    parked = _load(checkpoint, plan=MemoryPlan(device="cpu", park_idle=True))
    moves = _moves(parked)
    pipeline = ExtensionPipeline(parked)
    pipeline(prepare_request(request), decode_last_piece=False)
    assert moves == [("transformer", "cpu"), ("t5", "cpu"), ("t5", "cpu"), ("transformer", "cpu")]
    moves.clear()
    pipeline(prepare_request(request), decode_last_piece=False)  # prompt cached: T5 stays parked
    assert moves == [("transformer", "cpu")]

    on_cpu = _load(checkpoint, plan=MemoryPlan(device="cpu", park_idle=True, text_encoder_on_cpu=True))
    moves = _moves(on_cpu)
    ExtensionPipeline(on_cpu)(prepare_request(request), decode_last_piece=False)
    assert moves == []  # T5 encodes where it is; the transformer stays


# Plans that only change where weights live: the frames are the resident ones bit for bit. (A chunked
# FFN is not among them: on the CPU a 3-token slice can take another BLAS path and round differently.)
EXACT_PLANS = {
    "parked": MemoryPlan(device="cpu", park_idle=True),
    "text encoder on the CPU": MemoryPlan(device="cpu", park_idle=True, text_encoder_on_cpu=True),
    "streamed blocks": MemoryPlan(device="cpu", park_idle=True, block_streaming=True),
}


def _tiny_request(clip: Path, mode: ExtensionMode) -> ExtensionRequest:
    duration = 5 if mode is ExtensionMode.SINGLE_SHOT else 2
    return ExtensionRequest(mode, str(clip), "a tiny test", duration, bucket_table=TINY_BUCKETS, steps=2)


def _generate(checkpoint: Path, clip: Path, mode: ExtensionMode, **load) -> tuple[np.ndarray, dict]:
    trace: dict[str, torch.Tensor] = {}
    pipeline = ExtensionPipeline(_load(checkpoint, mode, **load))
    return pipeline(prepare_request(_tiny_request(clip, mode)), trace=trace).frames, trace


@pytest.fixture(scope="module")
def resident_runs(checkpoint, clip) -> dict[ExtensionMode, tuple[np.ndarray, dict[str, torch.Tensor]]]:
    return {mode: _generate(checkpoint, clip, mode, plan=MemoryPlan(device="cpu")) for mode in ExtensionMode}


@pytest.mark.parametrize(
    ("mode", "name"),
    [(ExtensionMode.SHOT_SWITCHING, name) for name in EXACT_PLANS]
    + [(ExtensionMode.SINGLE_SHOT, "streamed blocks")],
)
def test_numerically_neutral_plans_give_the_resident_frames(
    checkpoint, clip, resident_runs, mode, name
) -> None:
    frames, trace = _generate(checkpoint, clip, mode, plan=EXACT_PLANS[name])
    expected_frames, expected_trace = resident_runs[mode]
    assert frames.shape == expected_frames.shape and np.array_equal(frames, expected_frames)
    assert trace.keys() == expected_trace.keys()
    assert all(torch.equal(trace[key], expected_trace[key]) for key in trace)


def test_fp8_plan_stores_float8_blocks_and_stays_close(checkpoint, clip, resident_runs) -> None:
    mode = ExtensionMode.SHOT_SWITCHING
    frames, _ = _generate(
        checkpoint, clip, mode, plan=MemoryPlan(device="cpu", park_idle=True, fp8="layerwise")
    )
    difference = np.abs(frames.astype(int) - resident_runs[mode][0].astype(int)).mean()
    assert 0 < difference < 8  # fp8 rounding moves pixels a little; the picture stays


def test_the_official_flags_force_what_they_forced(checkpoint, clip) -> None:
    # --low_vram: fp8 blocks uploaded one at a time, T5 offloaded, and (as the official code) an untiled
    # decode: the plan the planner makes for it does not tile (R2V's low-VRAM plan does).
    job = JobSize(tokens=2000, frame_height=64, frame_width=64, low_vram_tiles_vae=False)
    low_plan = plan_memory(8 * GIB, job, device="cpu", low_vram=True, host_free_bytes=None)
    assert low_plan.fp8 and low_plan.block_streaming and not low_plan.tiled_vae
    assert plan_memory(8 * GIB, dataclasses.replace(job, low_vram_tiles_vae=True), device="cpu",
                       low_vram=True, host_free_bytes=None).tiled_vae
    low = _load(checkpoint, low_vram=True, plan=low_plan)
    assert _float8_layers(low) == 20 and low.transformer.block_offload == (CPU, CPU)
    assert low.offload_text_encoder and low.vae.tiling is None
    before = _load(checkpoint, low_vram=True)  # the flag alone: the behaviour before plans
    request = prepare_request(_tiny_request(clip, ExtensionMode.SHOT_SWITCHING))
    traces: list[dict[str, torch.Tensor]] = [{}, {}]
    for components, trace in zip((low, before), traces, strict=True):
        ExtensionPipeline(components)(request, trace=trace, decode_last_piece=False)
    assert torch.equal(traces[0]["chunk0.latents_final"], traces[1]["chunk0.latents_final"])
    # --offload: T5 on the CPU between encodes, also under a resident plan.
    offload = _load(checkpoint, offload=True, plan=MemoryPlan(device="cpu"))
    assert offload.offload_text_encoder and not offload.park_transformer
    assert offload.transformer.block_offload is None and _float8_layers(offload) == 0


# ---------------------------------------------------------------------------------------------
# Block offload with prefetch


def _tiny_dit(layers: int = 3) -> tuple[ExtensionTransformer, tuple]:
    torch.manual_seed(7)
    config = ExtensionDiTConfig(
        dim=32, ffn_dim=64, freq_dim=32, text_dim=24, num_heads=2, num_layers=layers, text_len=8
    )
    model = ExtensionTransformer(config).eval()
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(1, 16, 4, 4, 6, generator=generator)
    t = torch.tensor([[0, 0, 700, 700]])
    return model, (x, t, torch.randn(1, 8, 24, generator=generator))


def _spy_on_uploads(model: ExtensionTransformer) -> list[tuple[str, int]]:
    events: list[tuple[str, int]] = []
    upload, release = model._upload, model._release

    def spy_upload(index, device):
        events.append(("upload", index))
        return upload(index, device)

    def spy_release(index):
        events.append(("release", index))
        release(index)

    model._upload, model._release = spy_upload, spy_release
    return events


def test_block_offload_uploads_one_block_ahead_and_is_exact_on_the_cpu() -> None:
    model, args = _tiny_dit()
    with torch.no_grad():
        plain = model(*args)
        model.enable_block_offload("cpu", "cpu")
        assert model.block_offload == (CPU, CPU) and model._copy_stream is None  # no stream off CUDA
        events = _spy_on_uploads(model)
        offloaded = model(*args)
    assert torch.equal(offloaded, plain)
    # Block i+1 is uploaded once block i has run and block i-1 is released (two blocks at most on the
    # device); after the forward every block is released.
    assert events == [
        ("upload", 0), ("upload", 1), ("release", 0), ("upload", 2), ("release", 1), ("release", 2),
    ]  # fmt: skip


def test_a_cancel_between_blocks_releases_every_uploaded_block() -> None:
    model, args = _tiny_dit()
    model.enable_block_offload("cpu", "cpu")
    events = _spy_on_uploads(model)
    calls = []

    def cancel_at_second_block() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("cancelled")

    with torch.no_grad(), pytest.raises(RuntimeError, match="cancelled"):
        model(*args, between_blocks=cancel_at_second_block)
    uploaded = [i for kind, i in events if kind == "upload"]
    released = [i for kind, i in events if kind == "release"]
    assert sorted(released) == sorted(uploaded) == [0, 1]


# ---------------------------------------------------------------------------------------------
# Backend and estimate


def test_the_backend_keys_its_pipeline_by_the_plan_and_carries_it_out(tmp_path, monkeypatch) -> None:
    clip = Path(write_video(tmp_path / "clip.mp4", (numbered_frame(i, 64, 32) for i in range(30)), 24))
    backend = LocalBackend(tiny_dir=str(tmp_path / "tiny"))

    def render(name: str) -> np.ndarray:
        request = _render_request(
            clip, tmp_path / name, Task.SHOT_SWITCHING_EXTENSION, 2, model="tiny", device="cpu", steps=1
        )
        backend.render(request, lambda event: None, threading.Event())
        return np.load(next((tmp_path / name / "work").rglob("piece_0000.npy")))

    resident = render("resident")
    assert backend._loaded.key[-1] == MemoryPlan(device="cpu", compute_dtype=torch.float32)
    loaded = backend._loaded
    # What a 24 GiB CUDA card with the host RAM for the bf16 weights gets, carried out on the CPU.
    chosen: list[MemoryPlan] = []

    def plan_as_on_a_24_gib_card(request, device, dtype, job):
        chosen.append(plan_memory(24 * GIB, job, device="cpu", compute_dtype=dtype, host_free_bytes=64 * GIB))
        return chosen[-1]

    monkeypatch.setattr(backend, "_memory_plan", plan_as_on_a_24_gib_card)
    streamed = render("streamed")
    assert chosen[0].policies == (Policy.PARK_IDLE, Policy.BLOCK_STREAMING) and chosen[0].reasons
    assert backend._loaded is not loaded  # another plan, another key: loaded again
    assert backend._loaded.key[-1] == dataclasses.replace(chosen[0], estimated_peak_bytes=0, reasons=())
    components = backend._loaded.pipeline.components
    assert components.transformer.block_offload == (CPU, CPU) and components.offload_text_encoder
    assert np.array_equal(streamed, resident)
    again = backend._loaded
    render("streamed-again")
    assert backend._loaded is again  # the same plan: the loaded pipeline is reused


def test_the_estimate_plans_an_extension_like_the_backend(monkeypatch, clip, tmp_path) -> None:
    from models.estimate import estimate

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    monkeypatch.setattr(memory, "free_device_memory", lambda device: 24 * GIB)
    calibration = tmp_path / "cal.json"
    for task, duration in ((Task.SINGLE_SHOT_EXTENSION, 10), (Task.SHOT_SWITCHING_EXTENSION, 3)):
        request = _render_request(clip, tmp_path, task, duration, resolution="720P", model="Skywork/V2V")
        answer = estimate(request, calibration)
        plan = _cuda_plan(monkeypatch, request, 24)  # the 16:9 clip's bucket is the estimate's 720x1280
        assert answer["peak_bytes"] == plan.estimated_peak_bytes
        assert answer["fits"] and "plan: " + ", ".join(p.value for p in plan.policies) in answer["note"]
    # --low_vram: the extension decodes untiled (official); R2V's low-VRAM plan tiles its VAE.
    low = estimate(
        _render_request(clip, tmp_path, Task.SINGLE_SHOT_EXTENSION, 5, low_vram=True, model="Skywork/V2V"),
        calibration,
    )
    assert "fp8_storage" in low["note"] and "tiled_vae" not in low["note"]
    r2v = estimate(
        RenderRequest(
            task=Task.REFERENCE_TO_VIDEO,
            prompt="x",
            output_path="o.mp4",
            work_dir="w",
            duration_s=5,
            low_vram=True,
            model="Skywork/R2V",
        ),
        calibration,
    )
    assert "tiled_vae" in r2v["note"]


# ---------------------------------------------------------------------------------------------
# CUDA (run on a lent GPU)


@pytest.mark.gpu
@needs_cuda
def test_cuda_prefetch_on_a_side_stream_is_exact_and_holds_two_blocks() -> None:
    device = torch.device("cuda")
    torch.manual_seed(9)
    config = ExtensionDiTConfig(
        dim=256, ffn_dim=1024, freq_dim=32, text_dim=24, num_heads=2, num_layers=8, text_len=8
    )
    model = ExtensionTransformer(config).eval().to(torch.bfloat16)
    x = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(1)).to(device)
    t = torch.tensor([[0, 500]], device=device)
    context = torch.randn(1, 8, 24, generator=torch.Generator().manual_seed(2)).to(device)
    resident = ExtensionTransformer(config).eval().to(torch.bfloat16)
    resident.load_state_dict(model.state_dict())
    resident.to(device)
    with torch.no_grad():
        expected = resident(x, t, context)
        del resident
        model.enable_block_offload(device, "cpu")
        assert model._copy_stream is not None
        assert all(p.is_pinned() for hosts in model._host_weights for p in hosts)
        model(x, t, context)  # warm-up: rope table, kernels
        torch.cuda.synchronize()
        block_bytes = sum(p.numel() * p.element_size() for p in model._host_weights[0])
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        streamed = model(x, t, context)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    assert torch.equal(streamed, expected)
    assert peak < 3 * block_bytes, (peak, block_bytes)  # not all eight blocks: the host waits
    assert all(p.device.type == "cpu" for block in model.blocks for p in block.parameters())


@pytest.mark.gpu
@needs_cuda
def test_cuda_plans_are_carried_out_on_the_device(checkpoint, clip) -> None:
    device = torch.device("cuda")
    mode = ExtensionMode.SHOT_SWITCHING
    load = partial(load_components, checkpoint, mode, device=device, dtype=torch.float32)
    runs = {}
    for name, plan in [("resident", MemoryPlan(device="cuda")), *EXACT_PLANS.items()]:
        components = load(plan=dataclasses.replace(plan, device="cuda", use_stream=plan.block_streaming))
        on_device = components.transformer.patch_embedding.weight.device.type
        assert on_device == ("cpu" if components.park_transformer else "cuda"), name
        assert (components.transformer._copy_stream is not None) == plan.block_streaming, name
        runs[name] = ExtensionPipeline(components)(prepare_request(_tiny_request(clip, mode))).frames
        t5_device = components.text_encoder.model.token_embedding.weight.device.type
        assert t5_device == ("cpu" if components.offload_text_encoder else "cuda"), name
        assert components.transformer.patch_embedding.weight.device.type == "cuda", name  # after a render
    for name, frames in runs.items():
        if EXACT_PLANS.get(name, MemoryPlan(device="cuda")).text_encoder_on_cpu:
            # T5 on the CPU rounds differently from T5 on the GPU: close, not bit-identical.
            assert np.abs(frames.astype(int) - runs["resident"].astype(int)).mean() < 1, name
        else:
            assert np.array_equal(frames, runs["resident"]), name


@pytest.mark.gpu
@needs_cuda
def test_cuda_free_memory_counts_what_this_process_holds() -> None:
    # A loaded pipeline and the blocks its last render cached are the next job's: planning sees the card
    # as the first job saw it, so a second take reuses the loaded pipeline with the same plan.
    torch.cuda.empty_cache()
    before_free, _total = torch.cuda.mem_get_info()
    usable = memory.free_device_memory("cuda")
    held = torch.empty(2 * GIB, dtype=torch.uint8, device="cuda")
    assert torch.cuda.mem_get_info()[0] <= before_free - 2 * GIB
    assert abs(memory.free_device_memory("cuda") - usable) < 64 * 2**20
    del held  # cached by the allocator, as a finished render leaves it
    assert abs(memory.free_device_memory("cuda") - usable) < 64 * 2**20
    torch.cuda.empty_cache()
