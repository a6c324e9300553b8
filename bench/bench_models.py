"""Model benchmark: forward time of our R2V transformer against stock diffusers. Prints figures; not a test.

    .venv/bin/python bench/bench_models.py [--device cpu|cuda] [--repeats 30] [--layers 4]

1. ``models.r2v.transformer.R2VTransformer3DModel`` vs a same-size stock diffusers
   ``WanTransformer3DModel`` (same weights, same inputs: 3 latent frames + 4 reference slots).
   Target: ours / stock <= 1.05.
2. The cost of each memory policy on the same model (``models.memory``): chunked FFN, block streaming
   (group offloading; on the CPU the "device" is the CPU, so this measures hook overhead only), fp8
   storage (layerwise casting), relative to the plain model.

Timings are interleaved (A, B, A, B, ...) and reported as medians, so load from other processes hits
both sides alike. CPU figures on a shared machine are noisy; compare ratios, not absolute numbers, and
use ``--threads 1`` when other processes load the cores (two threads fighting them cost 10x).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffusers import WanTransformer3DModel

from models import memory
from models.r2v.transformer import R2VTransformer3DModel, config_from_dict

BENCH_CONFIG = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 4,
    "attention_head_dim": 32,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 64,
    "freq_dim": 64,
    "ffn_dim": 512,
    "num_layers": 4,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    calls: dict[str, Callable[[], object]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each callable, measured round-robin after two warm-up rounds."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(repeats + 2):
        for name, call in calls.items():
            _sync(device)
            start = time.perf_counter()
            call()
            _sync(device)
            if round_index >= 2:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--layers", type=int, default=BENCH_CONFIG["num_layers"])
    parser.add_argument("--height", type=int, default=16, help="latent height (pixels / 8)")
    parser.add_argument("--width", type=int, default=24, help="latent width (pixels / 8)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = {**BENCH_CONFIG, "num_layers": args.layers}
    kwargs = config_from_dict(config)

    torch.manual_seed(0)
    ours = R2VTransformer3DModel(**kwargs).to(device, dtype).eval()
    stock = WanTransformer3DModel(**kwargs).to(device, dtype).eval()
    stock.load_state_dict(ours.state_dict(), strict=True)

    generator = torch.Generator().manual_seed(1)
    frames = 3 + 4  # generated latent frames + the four reference slots
    inputs = {
        "hidden_states": torch.randn(1, 16, frames, args.height, args.width, generator=generator).to(
            device, dtype
        ),
        "timestep": torch.tensor([892], device=device),
        "encoder_hidden_states": torch.randn(1, 512, config["text_dim"], generator=generator).to(
            device, dtype
        ),
        "return_dict": False,
    }
    tokens = frames * (args.height // 2) * (args.width // 2)

    def forward(model: torch.nn.Module) -> Callable[[], object]:
        def call() -> object:
            with torch.no_grad():
                return model(**inputs)[0]

        return call

    with torch.no_grad():
        same = torch.equal(ours(**inputs)[0], stock(**inputs)[0])
    print(
        f"device {device} ({dtype}), {args.layers} layers, dim {kwargs['num_attention_heads'] * kwargs['attention_head_dim']}, "
        f"{tokens} tokens, 512 text tokens, threads {torch.get_num_threads()}"
    )
    times = interleaved({"ours": forward(ours), "stock": forward(stock)}, args.repeats, device)
    ratio = times["ours"] / times["stock"]
    print(
        f"R2V transformer forward: ours {times['ours'] * 1e3:8.2f} ms   stock diffusers {times['stock'] * 1e3:8.2f} ms   "
        f"ratio {ratio:.3f} (target <= 1.05)   outputs identical: {same}"
    )

    chunked = copy.deepcopy(ours)
    memory.enable_chunked_ffn(chunked, max(1, tokens // 4))
    streamed = copy.deepcopy(ours).cpu()
    memory.enable_block_streaming(streamed, device)
    fp8 = copy.deepcopy(ours)
    memory.enable_fp8_storage(fp8, compute_dtype=dtype)
    policy_times = interleaved(
        {
            "plain": forward(ours),
            "chunked_ffn": forward(chunked),
            "block_streaming": forward(streamed),
            "fp8_storage": forward(fp8),
        },
        args.repeats,
        device,
    )
    for name, seconds in policy_times.items():
        print(f"policy {name:16s} {seconds * 1e3:8.2f} ms   x{seconds / policy_times['plain']:.2f}")


if __name__ == "__main__":
    main()
