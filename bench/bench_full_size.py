"""Full-size R2V transformer with random weights: seconds per step and peak memory under each memory
policy, against the all-in-VRAM policy (issue 4). Prints, does not assert.

Meant for a lent GPU (random bf16 weights of the 14B model fit an H100); on a CPU it runs with
``--layers 2 --size 64x64 --frames 5 --steps 1`` as a smoke test of the same code path.

    python bench/bench_full_size.py --device cuda                      # 720P, 81 frames, 40 layers
    python bench/bench_full_size.py --device cpu --layers 2 --size 64x64 --frames 5 --steps 1

Policies: gpu_resident (bf16, everything on the device), fp8_storage (layerwise fp8 weights),
block_streaming (group offloading with a prefetch stream), chunked_ffn, fp8 + block streaming, and
planned_24GiB: what ``models.memory.plan_memory`` picks for a card with 24 GiB free (its transformer
part; the estimate is printed beside the measured peak). Each policy builds the model afresh, with its
random weights drawn on the compute device (seconds on a GPU) and moved to the CPU for the streamed
policies (host RAM needs ~30 GB for 14B bf16). The warm-up forward runs on one latent frame (plus the
reference slots), so only the timed forward pays the full sequence.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.memory import GIB, JobSize, MemoryPlan, apply_transformer_policies, plan_memory
from models.r2v.transformer import FULL_SIZE_CONFIG, REFERENCE_SLOTS, build_transformer

SIZES = {"480P": (480, 848), "540P": (544, 960), "720P": (720, 1280)}


def build(layers: int, dtype: torch.dtype, device: str = "cpu") -> torch.nn.Module:
    """The full-width transformer with ``layers`` blocks and N(0, 0.02) weights drawn on ``device``."""
    config = dict(FULL_SIZE_CONFIG, num_layers=layers)
    with torch.device("meta"):
        model = build_transformer(config, device="meta")
    model = model.to(dtype).to_empty(device=device)
    # The rotary table is a plain tensor computed at construction: build it again off the meta device.
    model.rope = type(model.rope)(config["attention_head_dim"], tuple(config["patch_size"]),
                                  config["rope_max_seq_len"]).to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    return model.eval()


def plans(device: str, dtype: torch.dtype, job: JobSize) -> dict[str, MemoryPlan]:
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


def planned_transformer_bytes(plan: MemoryPlan, job: JobSize) -> int:
    """The part of ``plan.estimated_peak_bytes`` that the transformer's forward accounts for."""
    fp8 = plan.fp8 is not None
    weights = job.transformer_bytes(fp8)
    if plan.block_streaming:
        weights = 2 * job.block_bytes(fp8) + weights // 100
    return weights + job.activation_bytes(plan.ffn_chunk_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--resolution", default="720P", choices=list(SIZES))
    parser.add_argument("--frames", type=int, default=81, help="pixel frames (4k+1)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", help="HxW instead of the resolution's size (CPU smoke tests)")
    parser.add_argument("--policies", default="all", help="comma-separated subset of the policy names")
    args = parser.parse_args()
    device = args.device
    on_cuda = device.startswith("cuda")
    if on_cuda and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: run it on a GPU machine, or the CPU smoke test "
                 "(--device cpu --layers 2 --size 64x64 --frames 5 --steps 1)")
    dtype = torch.bfloat16 if on_cuda else torch.float32
    height, width = (int(v) for v in args.size.split("x")) if args.size else SIZES[args.resolution]
    latent_frames = (args.frames - 1) // 4 + 1 + REFERENCE_SLOTS
    tokens = latent_frames * (height // 16) * (width // 16)
    print(f"R2V transformer, {args.layers} layers, {height}x{width}, {args.frames} frames "
          f"-> {tokens} tokens, {dtype}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if on_cuda else ""))
    job = JobSize.r2v(height, width, args.frames, num_layers=args.layers,
                      transformer_params=14_288_491_584 * args.layers // 40)
    chosen = plans(device, dtype, job)
    print(f"planned_24GiB = {chosen['planned_24GiB'].describe()}")
    if args.policies != "all":
        chosen = {name: chosen[name] for name in args.policies.split(",")}
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, latent_frames, height // 8, width // 8, generator=generator).to(device, dtype)
    warm_latents = latents[:, :, : REFERENCE_SLOTS + 1].contiguous()
    context = torch.randn(1, 512, 4096, generator=generator).to(device, dtype)
    timestep = torch.tensor([500], device=device)
    baseline = None
    for name, plan in chosen.items():
        started = time.perf_counter()
        model = build(args.layers, dtype, device if on_cuda else "cpu")
        if plan.block_streaming:
            model.to("cpu")
        apply_transformer_policies(model, plan)
        setup = time.perf_counter() - started
        if on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            with torch.no_grad():
                model(warm_latents, timestep, context, return_dict=False)  # warm-up, short sequence
                if on_cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(args.steps):
                    model(latents, timestep, context, return_dict=False)
                if on_cuda:
                    torch.cuda.synchronize()
            per_step = (time.perf_counter() - start) / args.steps
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if on_cuda else float("nan")
            baseline = baseline or per_step
            estimate = planned_transformer_bytes(plan, job) / GIB
            print(f"{name:16s} {per_step:8.2f} s/step  x{per_step / baseline:4.2f}  peak VRAM {peak:6.1f} GiB "
                  f"(estimated {estimate:5.1f} GiB; set-up {setup:5.1f} s)")
        except torch.cuda.OutOfMemoryError:
            print(f"{name:16s} out of memory")
        del model
        gc.collect()
        if on_cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
