"""Full-size transformers with random weights: seconds per step and peak memory under each memory policy,
against the all-in-VRAM policy (issue 4). Prints, does not assert.

Three DiTs (``--model``):

* ``r2v`` (default): the 14.3 B reference-to-video model (diffusers layout). One forward of ``--frames``
  pixel frames plus the four reference slots (720P, 121 frames: 126 000 tokens).
* ``extension``: the 14.3 B video-extension DiT (Wan key names). One forward of the first single-shot
  piece of 5 s: 7 clean condition latents (25 frames) then 33 noisy latents, timesteps ``t [1, 40]`` per
  latent frame (0 on the condition), text ``[1, 512, 4096]``; 144 000 tokens at 720P. ``--frames N``
  replaces the 33 noisy latents by ``(N - 1) // 4 + 1``.
* ``avatar``: the 18.9 B talking-avatar DiT. One window forward: 81 frames (21 latent frames), its default
  bucket: 720P for a 16:9 frame, 720x1280 (75 600 tokens; a 9:16 portrait gets 1280x720, same count),
  noise ``[16, 21, h, w]``, ``y [1, 20, 21, h, w]`` (mask + condition latents), CLIP ``[1, 257, 1280]``,
  text ``[512, 4096]``, wav2vec2 windows ``[1, 81, 5, 12, 768]``, a float timestep ``[1]``.

Meant for a lent GPU (random bf16 weights: ~29 GB for the 14B models, ~38 GB for the avatar); on a CPU
it runs as a smoke test of the same code path, with a narrow model for speed (the tests do this):

    python bench/bench_full_size.py --device cuda                      # r2v, 720P, 81 frames, 40 layers
    python bench/bench_full_size.py --model extension --device cuda    # 720P, the 5 s piece
    python bench/bench_full_size.py --model avatar --device cuda --policies gpu_resident,planned_24GiB
    python bench/bench_full_size.py --model avatar --device cpu --layers 1 --size 64x64 --frames 5 \\
        --steps 1 --dim 256                                            # smoke test, seconds

Policies of r2v and the avatar (``models.memory`` plans, applied with ``apply_transformer_policies`` as
their pipelines do): gpu_resident (bf16, everything on the device), fp8_storage (layerwise fp8 weights),
block_streaming (group offloading with a prefetch stream), chunked_ffn, fp8 + block streaming, and
planned_24GiB: what ``models.memory.plan_memory`` picks for a card with 24 GiB free (its transformer
part). The extension's own mechanisms (its pipeline does not use ``models.memory``): gpu_resident,
block_offload (``enable_block_offload``: bf16 blocks on pinned host memory, uploaded per block),
low_vram (the official ``--low_vram``: ``quantize_blocks_float8`` then the block offload) and
ffn_chunked (``set_ffn_chunking``). Each line gives the estimate that ``models.memory.JobSize`` makes
for the policy beside the measured peak (for the extension, the policy's ``models.memory`` equivalent).

Each policy builds the model afresh, on the meta device and then ``to_empty`` on the compute device, with
N(0, 0.02) weights drawn there (seconds on a GPU) and, for the policies that keep weights on the CPU,
moved there (the bench prints how much host RAM that takes before it starts). The warm-up forward runs on
one latent frame (plus R2V's reference slots), so only the timed forward pays the full sequence.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.memory import (
    DEFAULT_FFN_CHUNK_TOKENS,
    GIB,
    JobSize,
    MemoryPlan,
    apply_transformer_policies,
    available_host_memory,
    plan_memory,
)

MODELS = ("r2v", "extension", "avatar")
FULL_DIM = 5120
HEAD_DIM = 128
FFN_RATIO = 13824 / FULL_DIM  # ffn_dim of the 14B family per unit of width


@dataclasses.dataclass
class Workload:
    """One model's side of the benchmark: how to build it, how to carry out a policy, its inputs.

    ``build`` returns a fresh model with random weights on the compute device; ``carry_out`` applies a
    policy to it; ``warm_up`` and ``forward`` run one forward on a short and on the full sequence.
    """

    title: str
    tokens: int
    job: JobSize
    policies: dict[str, MemoryPlan]
    build: Callable[[], nn.Module]
    carry_out: Callable[[nn.Module, MemoryPlan], None]
    warm_up: Callable[[nn.Module], Any]
    forward: Callable[[nn.Module], Any]


# ---------------------------------------------------------------------------------------------
# Shared pieces


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def random_weights(
    meta_model: nn.Module,
    dtype: torch.dtype,
    device: str,
    rebuild: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """``meta_model`` materialised on ``device`` in ``dtype`` with N(0, 0.02) weights drawn there.

    ``rebuild`` re-creates what the constructor computed (rotary tables...): ``to_empty`` leaves such
    buffers uninitialised, so any buffer that ``rebuild`` did not replace is an error.
    """
    model = meta_model.to(dtype).to_empty(device=device)
    empty = list(model.buffers())  # kept alive, so their ids stay unique during the check
    if rebuild is not None:
        rebuild(model)
    stale = [name for name, buffer in model.named_buffers() if any(buffer is old for old in empty)]
    if stale:
        raise RuntimeError(f"buffers computed at construction were not rebuilt after to_empty: {stale}")
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    return model.eval()


def narrow_sizes(dim: int) -> tuple[int, int]:
    """(heads, ffn_dim) of a model ``dim`` wide with the 14B family's head size and FFN ratio."""
    if dim % HEAD_DIM:
        raise SystemExit(f"--dim must be a multiple of {HEAD_DIM}, got {dim}")
    return dim // HEAD_DIM, round(dim * FFN_RATIO)


def sized_job(job: JobSize, model: nn.Module, layers: int, dim: int) -> JobSize:
    """``job`` with the model's real parameter count, layers and width (for --layers / --dim runs)."""
    return dataclasses.replace(
        job, transformer_params=parameter_count(model), num_layers=layers, dim=dim,
        ffn_dim=narrow_sizes(dim)[1],
    )


def randn(generator: torch.Generator, device: str, dtype: torch.dtype, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator).to(device, dtype)


def memory_plans(device: str, dtype: torch.dtype, job: JobSize) -> dict[str, MemoryPlan]:
    """The ``models.memory`` policies r2v and the avatar are benchmarked under."""
    on_cuda = device.startswith("cuda")
    planned = plan_memory(24 * GIB, job, device=device, compute_dtype=dtype, prefer_torchao=False)
    return {
        "gpu_resident": MemoryPlan(device=device, compute_dtype=dtype),
        "fp8_storage": MemoryPlan(device=device, compute_dtype=dtype, fp8="layerwise"),
        "block_streaming": MemoryPlan(device=device, compute_dtype=dtype, block_streaming=True, use_stream=on_cuda),
        "chunked_ffn": MemoryPlan(device=device, compute_dtype=dtype, ffn_chunk_tokens=8192),
        "fp8+streaming": MemoryPlan(device=device, compute_dtype=dtype, fp8="layerwise", block_streaming=True,
                                    use_stream=on_cuda),
        "planned_24GiB": planned,
    }


def carry_out_plan(model: nn.Module, plan: MemoryPlan) -> None:
    """As the R2V and avatar pipelines do: streamed blocks start on the CPU, then the hooks go on."""
    if plan.block_streaming:
        model.to("cpu")
    apply_transformer_policies(model, plan)


def planned_transformer_bytes(plan: MemoryPlan, job: JobSize) -> int:
    """The part of ``plan.estimated_peak_bytes`` that the transformer's forward accounts for."""
    fp8 = plan.fp8 is not None
    weights = job.transformer_bytes(fp8)
    if plan.block_streaming:
        weights = 2 * job.block_bytes(fp8) + weights // 100
    return weights + job.activation_bytes(plan.ffn_chunk_tokens)


def host_weight_bytes(plan: MemoryPlan, job: JobSize) -> int:
    """Weights a policy keeps in host RAM (the estimate the planner uses; 0 when all stay on the device)."""
    return job.transformer_bytes(plan.fp8 is not None) if plan.block_streaming else 0


def host_rss_bytes() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def frame_size(resolution: str) -> tuple[int, int]:
    """(height, width) of the 16:9 bucket of ``resolution`` (R2V and extension tables)."""
    from models.buckets import select_bucket

    bucket = select_bucket(resolution, aspect="16:9")
    return bucket.height, bucket.width


# ---------------------------------------------------------------------------------------------
# The three models


def r2v_workload(args: argparse.Namespace, device: str, dtype: torch.dtype) -> Workload:
    from models.r2v.transformer import FULL_SIZE_CONFIG, REFERENCE_SLOTS, build_transformer

    heads, ffn_dim = narrow_sizes(args.dim)
    config = dict(FULL_SIZE_CONFIG, num_layers=args.layers, num_attention_heads=heads, ffn_dim=ffn_dim)

    def meta_model() -> nn.Module:
        return build_transformer(config, device="meta")

    def rebuild(model: nn.Module) -> None:
        # The rotary tables are buffers computed at construction: build them again off the meta device.
        model.rope = type(model.rope)(config["attention_head_dim"], tuple(config["patch_size"]),
                                      config["rope_max_seq_len"]).to(device)

    height, width = args.size or frame_size(args.resolution)
    frames = args.frames or 81
    latent_frames = (frames - 1) // 4 + 1 + REFERENCE_SLOTS
    job = sized_job(JobSize.r2v(height, width, frames), meta_model(), args.layers, args.dim)
    generator = torch.Generator().manual_seed(1)
    latents = randn(generator, device, dtype, 1, 16, latent_frames, height // 8, width // 8)
    warm_latents = latents[:, :, : REFERENCE_SLOTS + 1].contiguous()
    context = randn(generator, device, dtype, 1, 512, 4096)
    timestep = torch.tensor([500], device=device)
    return Workload(
        title=f"R2V transformer, {height}x{width}, {frames} frames",
        tokens=job.tokens,
        job=job,
        policies=memory_plans(device, dtype, job),
        build=lambda: random_weights(meta_model(), dtype, device, rebuild),
        carry_out=carry_out_plan,
        warm_up=lambda model: model(warm_latents, timestep, context, return_dict=False),
        forward=lambda model: model(latents, timestep, context, return_dict=False),
    )


def extension_workload(args: argparse.Namespace, device: str, dtype: torch.dtype) -> Workload:
    from models.extension.pipeline import PIECE_SECONDS, plan_single_shot
    from models.extension.transformer import FULL_SIZE_CONFIG, build_transformer, quantize_blocks_float8

    heads, ffn_dim = narrow_sizes(args.dim)
    config = dataclasses.replace(FULL_SIZE_CONFIG, num_layers=args.layers, dim=args.dim, num_heads=heads,
                                 ffn_dim=ffn_dim)

    def meta_model() -> nn.Module:
        # No buffers: the rotary table is built per device on the first forward (its cache starts empty).
        return build_transformer(config, "meta")

    def carry_out(model: nn.Module, plan: MemoryPlan) -> None:
        if plan.fp8:
            quantize_blocks_float8(model)  # type: ignore[arg-type]
        if plan.block_streaming:
            model.enable_block_offload(plan.device, "cpu")  # type: ignore[operator]
        if plan.ffn_chunk_tokens:
            model.set_ffn_chunking(plan.ffn_chunk_tokens)  # type: ignore[operator]

    piece = plan_single_shot(PIECE_SECONDS)[0]
    condition = piece.condition_latents
    noisy = (args.frames - 1) // 4 + 1 if args.frames else piece.latent_frames
    total = condition + noisy
    height, width = args.size or frame_size(args.resolution)
    job = sized_job(JobSize(tokens=total * (height // 16) * (width // 16), frame_height=height,
                            frame_width=width), meta_model(), args.layers, args.dim)
    generator = torch.Generator().manual_seed(1)
    # float32 latents as the pipeline passes them (clean condition latents, then the noisy ones)
    x = randn(generator, device, torch.float32, 1, config.in_dim, total, height // 8, width // 8)
    t = torch.full((1, total), 500, dtype=torch.int64, device=device)
    t[:, :condition] = 0  # the clean condition frames
    context = randn(generator, device, dtype, 1, config.text_len, config.text_dim)
    warm_x, warm_t = x[:, :, :1].contiguous(), t[:, :1].contiguous()
    # The extension's own mechanisms, under the models.memory plan that stands for each (estimates).
    policies = {
        "gpu_resident": MemoryPlan(device=device, compute_dtype=dtype),
        "block_offload": MemoryPlan(device=device, compute_dtype=dtype, block_streaming=True),
        "low_vram": MemoryPlan(device=device, compute_dtype=dtype, fp8="float8_weight_only", block_streaming=True),
        "ffn_chunked": MemoryPlan(device=device, compute_dtype=dtype, ffn_chunk_tokens=DEFAULT_FFN_CHUNK_TOKENS),
    }
    return Workload(
        title=f"extension transformer, {height}x{width}, {condition} condition + {noisy} noisy latent frames",
        tokens=job.tokens,
        job=job,
        policies=policies,
        build=lambda: random_weights(meta_model(), dtype, device),
        carry_out=carry_out,
        warm_up=lambda model: model(warm_x, warm_t, context),
        forward=lambda model: model(x, t, context),
    )


def avatar_workload(args: argparse.Namespace, device: str, dtype: torch.dtype) -> Workload:
    import numpy as np
    from PIL import Image

    from models.avatar.pipeline import BUCKETS, VAE_STRIDE, WINDOW, AvatarInputs, AvatarRequest, job_size
    from models.avatar.pipeline import select_bucket as avatar_bucket
    from models.avatar.transformer import IMAGE_TOKENS, AvatarTransformer, AvatarTransformerConfig

    if args.resolution not in BUCKETS:
        raise SystemExit(f"the avatar has {' and '.join(BUCKETS)} buckets only, not {args.resolution}")
    heads, ffn_dim = narrow_sizes(args.dim)
    config = AvatarTransformerConfig(num_layers=args.layers, dim=args.dim, num_heads=heads, ffn_dim=ffn_dim)

    def meta_model() -> nn.Module:
        # No buffers: the rotary table is built in every forward.
        with torch.device("meta"):
            return AvatarTransformer(config)

    frames = args.frames or WINDOW
    if (frames - 1) % config.vae_scale:
        raise SystemExit(f"the avatar takes 4k+1 frames, got {frames}")
    height, width = args.size or avatar_bucket(1280, 720, BUCKETS[args.resolution])  # a 16:9 frame
    latent_frames = (frames - 1) // VAE_STRIDE[0] + 1
    h, w = height // VAE_STRIDE[1], width // VAE_STRIDE[2]
    # The pipeline's own JobSize for a portrait of this size, so planned_24GiB is what a render gets.
    request = AvatarRequest(portrait="portrait.png", audio="voice.wav", prompt="", resolution=args.resolution)
    inputs = AvatarInputs(portrait=Image.new("RGB", (width, height)), speech=np.zeros(0, np.float32))
    job = job_size(request, inputs, bucket_tables={args.resolution: {"1.00": (height, width)}})
    job = dataclasses.replace(job, tokens=latent_frames * (height // 16) * (width // 16))
    job = sized_job(job, meta_model(), args.layers, args.dim)
    generator = torch.Generator().manual_seed(1)
    latent = randn(generator, device, torch.float32, 16, latent_frames, h, w)  # noise is float32
    y = randn(generator, device, dtype, 1, config.in_dim - 16, latent_frames, h, w)
    clip_features = randn(generator, device, dtype, 1, IMAGE_TOKENS, config.clip_dim)
    context = randn(generator, device, dtype, config.text_len, config.text_dim)
    audio = randn(generator, device, dtype, 1, frames, config.audio_window, config.audio_layers,
                  config.audio_channels)
    t = torch.tensor([500.0], device=device)
    warm = (latent[:, :1].contiguous(), y[:, :, :1].contiguous(), audio[:, :1].contiguous())
    return Workload(
        title=f"avatar transformer, {height}x{width}, {frames} frames ({latent_frames} latent)",
        tokens=job.tokens,
        job=job,
        policies=memory_plans(device, dtype, job),
        build=lambda: random_weights(meta_model(), dtype, device),
        carry_out=carry_out_plan,
        warm_up=lambda model: model(warm[0], t, context, clip_features, warm[1], warm[2]),
        forward=lambda model: model(latent, t, context, clip_features, y, audio),
    )


WORKLOADS: dict[str, Callable[[argparse.Namespace, str, torch.dtype], Workload]] = {
    "r2v": r2v_workload,
    "extension": extension_workload,
    "avatar": avatar_workload,
}


# ---------------------------------------------------------------------------------------------
# Measuring


def measure(workload: Workload, name: str, plan: MemoryPlan, device: str, steps: int,
            baseline: float | None) -> float | None:
    """Build, carry out ``plan``, warm up, time ``steps`` forwards and print one line; returns s/step."""
    on_cuda = device.startswith("cuda")
    host = host_weight_bytes(plan, workload.job)
    if host:
        available = available_host_memory()
        print(f"{name}: keeps ≈ {host / GIB:.1f} GiB of weights in host RAM"
              + (f" ({available / GIB:.1f} GiB available)" if available is not None else ""))
    started = time.perf_counter()
    model = workload.build()
    per_step = None
    try:
        workload.carry_out(model, plan)
        setup = time.perf_counter() - started
        rss = host_rss_bytes()
        if on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            workload.warm_up(model)  # short sequence
            if on_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                workload.forward(model)
            if on_cuda:
                torch.cuda.synchronize()
        per_step = (time.perf_counter() - start) / steps
        peak = torch.cuda.max_memory_allocated(device) / GIB if on_cuda else float("nan")
        estimate = planned_transformer_bytes(plan, workload.job) / GIB
        print(f"{name:16s} {per_step:8.2f} s/step  x{per_step / (baseline or per_step):4.2f}  "
              f"peak VRAM {peak:6.1f} GiB (estimated {estimate:5.1f} GiB; set-up {setup:5.1f} s"
              + (f"; host RSS {rss / GIB:5.1f} GiB" if host and rss is not None else "") + ")")
    except torch.cuda.OutOfMemoryError:
        print(f"{name:16s} out of memory")
    del model
    gc.collect()
    if on_cuda:
        torch.cuda.empty_cache()
    return per_step


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default="r2v", choices=MODELS)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--resolution", default="720P", choices=["480P", "540P", "720P"],
                        help="r2v and extension: the 16:9 bucket; avatar (480P/720P): the bucket of a 16:9 frame")
    parser.add_argument("--frames", type=int,
                        help="pixel frames, 4k+1 (default: r2v 81, avatar 81 = one window; extension: the 5 s "
                             "piece, else (N-1)//4+1 noisy latents after the 7 condition latents)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", help="HxW instead of the resolution's size (CPU smoke tests)")
    parser.add_argument("--dim", type=int, default=FULL_DIM,
                        help=f"model width (default the full {FULL_DIM}; narrower for CPU smoke tests)")
    parser.add_argument("--policies", default="all", help="comma-separated subset of the policy names")
    args = parser.parse_args(argv)
    args.size = tuple(int(v) for v in args.size.split("x")) if args.size else None
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    device = args.device
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run it on a GPU machine, or the CPU smoke test "
                 "(--device cpu --layers 1 --size 64x64 --frames 5 --steps 1 --dim 256)")
    dtype = torch.bfloat16 if on_cuda else torch.float32
    workload = WORKLOADS[args.model](args, device, dtype)
    available = available_host_memory()
    print(f"{workload.title}, {args.layers} layers -> {workload.tokens} tokens, "
          f"{workload.job.transformer_params / 1e6:,.0f} M parameters, {dtype}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if on_cuda else "")
          + (f"; host RAM available {available / GIB:.1f} GiB" if available is not None else ""))
    chosen = workload.policies
    if "planned_24GiB" in chosen:
        print(f"planned_24GiB = {chosen['planned_24GiB'].describe()}")
    if args.policies != "all":
        unknown = set(args.policies.split(",")) - set(chosen)
        if unknown:
            sys.exit(f"unknown policies for {args.model}: {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(chosen)}")
        chosen = {name: chosen[name] for name in args.policies.split(",")}
    baseline = None
    for name, plan in chosen.items():
        per_step = measure(workload, name, plan, device, args.steps, baseline)
        baseline = baseline or per_step


if __name__ == "__main__":
    main()
