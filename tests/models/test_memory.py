"""Memory policies give the plain policy's output on a tiny R2V transformer (CPU), and the planner picks
the expected policies for given device memory sizes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import memory
from models.memory import GIB, JobSize, MemoryPlan, Placement, Policy, plan_memory
from models.r2v.tiny import TINY_BUCKET_TABLES, TINY_TRANSFORMER_CONFIG, write_tiny_checkpoint
from models.r2v.transformer import build_transformer

# fp8 (e4m3, 3 mantissa bits) weight storage: measured relative error of the whole output ~0.7 % on the
# tiny model; a broken cast (wrong scale, wrong dtype) gives errors of order 100 %.
FP8_RELATIVE_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_transformer({**TINY_TRANSFORMER_CONFIG, "num_layers": 3}).eval()


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "hidden_states": torch.randn(1, 16, 7, 4, 6, generator=generator),  # 3 frames + 4 reference slots
        "timestep": torch.tensor([892]),
        "encoder_hidden_states": torch.randn(1, 16, 32, generator=generator),
    }


def _run(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


@pytest.fixture(scope="module")
def plain(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return _run(model, inputs)


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


def test_block_streaming_with_cpu_onload_is_exact(model, inputs, plain) -> None:
    streamed = copy.deepcopy(model)
    memory.enable_block_streaming(streamed, "cpu")
    assert memory.is_streamed(streamed)
    assert torch.equal(_run(streamed, inputs), plain)
    assert torch.equal(_run(streamed, inputs), plain)  # hooks survive repeated forwards


def test_chunked_ffn_matches_and_can_be_removed(model, inputs, plain) -> None:
    chunked = copy.deepcopy(model)
    assert memory.enable_chunked_ffn(chunked, 10) == 3  # 7 * 2 * 3 = 42 tokens -> 5 chunks per FFN
    calls = []
    handle = chunked.blocks[0].ffn.net[0].register_forward_hook(lambda m, a, o: calls.append(a[0].shape[1]))
    output = _run(chunked, inputs)
    handle.remove()
    assert calls == [10, 10, 10, 10, 2]
    torch.testing.assert_close(output, plain, atol=1e-5, rtol=1e-5)
    memory.disable_chunked_ffn(chunked)
    assert torch.equal(_run(chunked, inputs), plain)


def test_fp8_storage_stays_close_and_stores_float8(model, inputs, plain) -> None:
    fp8 = copy.deepcopy(model)
    memory.enable_fp8_storage(fp8, compute_dtype=torch.float32, kind="layerwise")
    assert fp8.blocks[0].ffn.net[2].weight.dtype == torch.float8_e4m3fn
    assert fp8.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
    # diffusers skips the embedders and norms, and keeps the float32 modulation tables.
    assert fp8.patch_embedding.weight.dtype == torch.float32
    assert fp8.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
    assert fp8.scale_shift_table.dtype == torch.float32
    error = _relative_error(_run(fp8, inputs), plain)
    assert 0 < error < FP8_RELATIVE_TOLERANCE


def test_all_transformer_policies_together(model, inputs, plain) -> None:
    combined = copy.deepcopy(model)
    plan = MemoryPlan(
        device="cpu",
        compute_dtype=torch.float32,
        park_idle=True,
        fp8="layerwise",
        block_streaming=True,
        ffn_chunk_tokens=10,
    )
    memory.apply_transformer_policies(combined, plan)
    assert _relative_error(_run(combined, inputs), plain) < FP8_RELATIVE_TOLERANCE


def test_placement_parks_only_when_asked(model, inputs, plain) -> None:
    parked = copy.deepcopy(model)
    placement = Placement("cpu", park_idle=True)
    placement.activate(parked)
    output = _run(parked, inputs)
    placement.park(parked)
    assert torch.equal(output, plain)
    assert placement.moves == [("R2VTransformer3DModel", "cpu"), ("R2VTransformer3DModel", "cpu")]
    resident = Placement("cpu", park_idle=False)
    resident.park(parked)
    assert resident.moves == []


def test_tiled_vae_matches_when_a_frame_fits_one_tile() -> None:
    from diffusers import AutoencoderKLWan

    from models.r2v.tiny import TINY_VAE_CONFIG

    torch.manual_seed(0)
    vae = AutoencoderKLWan(**TINY_VAE_CONFIG).eval()
    z = torch.randn(1, 16, 2, 4, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain_video = vae.decode(z).sample
        memory.apply_vae_policies(vae, MemoryPlan(device="cpu", tiled_vae=True))
        assert vae.use_tiling
        assert torch.equal(vae.decode(z).sample, plain_video)  # 32x48 px fits one 256 px tile
        vae.tile_sample_min_height = vae.tile_sample_min_width = 16  # force real tiling
        vae.tile_sample_stride_height = vae.tile_sample_stride_width = 8
        calls = []
        handle = vae.decoder.register_forward_hook(lambda *args: calls.append(1))
        tiled = vae.decode(z).sample
        handle.remove()
    assert tiled.shape == plain_video.shape
    assert torch.isfinite(tiled).all()
    assert len(calls) > z.shape[2]  # the decoder ran per tile, not once per latent frame


# ---------------------------------------------------------------------------------------------
# Planner

R2V_720P_5S = JobSize.r2v(720, 1280, 121)  # full-size 14B model, 126 000 tokens
R2V_480P_2S = JobSize.r2v(480, 848, 49)


def test_job_size_counts_the_reference_slots() -> None:
    assert R2V_720P_5S.tokens == (31 + 4) * 45 * 80 == 126_000


@pytest.mark.parametrize(
    ("free_gib", "job", "expected"),
    [
        # H200 / H100: everything resident; 126k tokens always get a chunked FFN.
        (140, R2V_720P_5S, (Policy.GPU_RESIDENT, Policy.CHUNKED_FFN)),
        (78, R2V_720P_5S, (Policy.GPU_RESIDENT, Policy.CHUNKED_FFN)),
        (78, R2V_480P_2S, (Policy.GPU_RESIDENT,)),
        # 40-48 GB cards: park the idle models; the long job also needs fp8 weights.
        (40, R2V_480P_2S, (Policy.PARK_IDLE,)),
        (40, R2V_720P_5S, (Policy.PARK_IDLE, Policy.FP8_STORAGE, Policy.CHUNKED_FFN)),
        # 24 GB cards: fp8; the long job streams its blocks too.
        (24, R2V_480P_2S, (Policy.PARK_IDLE, Policy.FP8_STORAGE)),
        (24, R2V_720P_5S, (Policy.PARK_IDLE, Policy.FP8_STORAGE, Policy.BLOCK_STREAMING, Policy.CHUNKED_FFN)),
        # 12 GB cards: streamed blocks, and UMT5-XXL (~11 GB) runs on the CPU.
        (
            12,
            R2V_480P_2S,
            (Policy.PARK_IDLE, Policy.FP8_STORAGE, Policy.BLOCK_STREAMING, Policy.TEXT_ENCODER_ON_CPU),
        ),
        # Too small for 720P / 5 s: the lightest plan, with a warning in its reasons.
        (
            8,
            R2V_720P_5S,
            (
                Policy.PARK_IDLE,
                Policy.FP8_STORAGE,
                Policy.BLOCK_STREAMING,
                Policy.CHUNKED_FFN,
                Policy.TILED_VAE,
                Policy.TEXT_ENCODER_ON_CPU,
            ),
        ),
    ],
)
def test_planner_decisions(free_gib: int, job: JobSize, expected: tuple[Policy, ...]) -> None:
    # The host's RAM is pinned at 16 GiB (tests/models/conftest.py): bf16 weights cannot be streamed.
    plan = plan_memory(free_gib * GIB, job, device="cuda", prefer_torchao=False)
    assert plan.policies == expected, plan.describe()
    fits = plan.estimated_peak_bytes <= free_gib * GIB
    assert fits != ("may not fit" in plan.describe())
    assert plan.use_stream == plan.block_streaming
    assert plan.fp8 in (None, "layerwise")


@pytest.mark.parametrize(
    ("free_gib", "job", "expected"),
    [
        # With the host RAM for the bf16 weights (14B + UMT5-XXL + VAE + headroom, ~46 GB), streaming
        # the blocks in bf16 (official numerics, no measurable slowdown) comes before fp8 storage.
        (24, R2V_720P_5S, (Policy.PARK_IDLE, Policy.BLOCK_STREAMING, Policy.CHUNKED_FFN)),
        (40, R2V_720P_5S, (Policy.PARK_IDLE, Policy.BLOCK_STREAMING, Policy.CHUNKED_FFN)),
        (24, R2V_480P_2S, (Policy.PARK_IDLE, Policy.BLOCK_STREAMING)),
        # Plans that fit without streaming or fp8 are unchanged.
        (78, R2V_720P_5S, (Policy.GPU_RESIDENT, Policy.CHUNKED_FFN)),
        (40, R2V_480P_2S, (Policy.PARK_IDLE,)),
    ],
)
def test_planner_streams_bf16_weights_when_host_ram_holds_them(
    free_gib: int, job: JobSize, expected: tuple[Policy, ...]
) -> None:
    plan = plan_memory(free_gib * GIB, job, device="cuda", prefer_torchao=False, host_free_bytes=64 * GIB)
    assert plan.policies == expected, plan.describe()
    assert plan.fp8 is None and plan.use_stream == plan.block_streaming
    # One GiB short of what the bf16 weights need on the host: fp8 as before.
    needed = job.transformer_bytes() + job.text_encoder_bytes() + job.vae_bytes() + memory.HOST_HEADROOM_BYTES
    short = plan_memory(free_gib * GIB, job, device="cuda", prefer_torchao=False, host_free_bytes=needed - GIB)
    assert short.policies == plan_memory(free_gib * GIB, job, device="cuda", prefer_torchao=False).policies
    # Unknown host memory: never assumed to be enough; the low-VRAM flag still forces fp8.
    assert Policy.FP8_STORAGE in plan_memory(24 * GIB, R2V_720P_5S, host_free_bytes=None).policies
    low = plan_memory(140 * GIB, R2V_480P_2S, low_vram=True, host_free_bytes=256 * GIB)
    assert low.fp8 == "layerwise" and low.block_streaming


def test_planner_honours_the_official_flags_and_unknown_memory() -> None:
    low = plan_memory(140 * GIB, R2V_480P_2S, low_vram=True, prefer_torchao=True)
    assert {Policy.PARK_IDLE, Policy.FP8_STORAGE, Policy.BLOCK_STREAMING, Policy.TILED_VAE} <= set(
        low.policies
    )
    assert low.fp8 == "layerwise"  # streamed blocks always use layerwise casting
    assert plan_memory(40 * GIB, R2V_720P_5S, prefer_torchao=True).fp8 == "torchao"
    offload = plan_memory(140 * GIB, R2V_480P_2S, offload=True)
    assert offload.policies == (Policy.PARK_IDLE,)
    cpu = plan_memory(None, R2V_480P_2S, device="cpu")
    assert cpu.policies == (Policy.GPU_RESIDENT,) and not cpu.use_stream
    assert "unknown" in cpu.describe()


def test_pipeline_runs_under_a_heavy_plan(tmp_path: Path) -> None:
    from models.r2v.pipeline import R2VRequest, load_pipeline

    root = write_tiny_checkpoint(tmp_path / "tiny")
    image = tmp_path / "ref.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(image)
    request = R2VRequest(
        reference_images=(str(image),), prompt="a dog runs", duration_s=1, resolution="480P", steps=2
    )
    plan = MemoryPlan(
        device="cpu",
        compute_dtype=torch.float32,
        park_idle=True,
        fp8="layerwise",
        block_streaming=True,
        ffn_chunk_tokens=4,
        tiled_vae=True,
    )
    heavy = load_pipeline(
        root, device="cpu", dtype=torch.float32, plan=plan, bucket_tables=TINY_BUCKET_TABLES
    )
    plain = load_pipeline(root, device="cpu", dtype=torch.float32, bucket_tables=TINY_BUCKET_TABLES)
    heavy_frames = heavy.generate(request).frames
    plain_frames = plain.generate(request).frames
    assert heavy_frames.shape == plain_frames.shape == (25, 16, 32, 3)
    # fp8 weights move pixels a little; the picture stays the same.
    assert np.abs(heavy_frames.astype(int) - plain_frames.astype(int)).mean() < 8
    moved = [name for name, _ in heavy.placement.moves]
    assert "UMT5EncoderModel" in moved and "R2VTransformer3DModel" not in moved  # streamed, not moved


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_cuda_block_streaming_with_prefetch_stream_is_exact(model, inputs) -> None:
    device = torch.device("cuda")
    resident = copy.deepcopy(model).to(device)
    cuda_inputs = {key: value.to(device) for key, value in inputs.items()}
    expected = _run(resident, cuda_inputs)
    streamed = copy.deepcopy(model)  # stays on the CPU; blocks visit the GPU per forward
    memory.enable_block_streaming(streamed, device, use_stream=True)
    assert streamed.blocks[0].ffn.net[2].weight.device.type == "cpu"
    torch.testing.assert_close(_run(streamed, cuda_inputs), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@needs_cuda
def test_cuda_fp8_storage_in_bfloat16(model, inputs) -> None:
    device = torch.device("cuda")
    plain_bf16 = copy.deepcopy(model).to(device, torch.bfloat16)
    cuda_inputs = {
        key: value.to(device) if key == "timestep" else value.to(device, torch.bfloat16)
        for key, value in inputs.items()
    }
    expected = _run(plain_bf16, cuda_inputs).float()
    fp8 = copy.deepcopy(plain_bf16)
    memory.enable_fp8_storage(fp8, compute_dtype=torch.bfloat16)
    assert fp8.blocks[0].attn1.to_q.weight.dtype == torch.float8_e4m3fn
    assert _relative_error(_run(fp8, cuda_inputs).float(), expected) < FP8_RELATIVE_TOLERANCE
