"""Golden runner for the ``talking_avatar`` pipeline cases (preview-only and preview + 2 windows).

Loads the case's tiny official-layout checkpoint with the product loader (float32, CPU, the case's
hard-coded tiny sizes), swaps in the case's tiny 480P bucket table and runs the product pipeline on the
case's portrait and WAV. Random draws come from our own seeded CPU generator in the official order (not
injected), so ``pass*.noise`` / ``pass*.motion_noise*`` check the draw order too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.avatar.pipeline import AvatarRequest, TalkingAvatarPipeline, load_components
from models.pipeline_base import RunContext


def run(case_dir: Path, case: dict[str, Any]) -> dict[str, torch.Tensor]:
    # One intra-op thread: ~10x faster on a busy 2-core machine; a measured tolerance variant of the case.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(case_dir, case)
    finally:
        torch.set_num_threads(threads)


def _run(case_dir: Path, case: dict[str, Any]) -> dict[str, torch.Tensor]:
    params = case["parameters"]
    components = load_components(
        case_dir / case["checkpoint"],
        device="cpu",
        dtype=torch.float32,
        sizes=case["hardcoded_size_overrides"],
    )
    pipeline = TalkingAvatarPipeline(
        components, bucket_tables={params["resolution"]: case["bucket_table_override"]}
    )
    request = AvatarRequest(
        portrait=str(case_dir / "inputs" / "portrait.png"),
        audio=str(case_dir / "inputs" / "speech.wav"),
        prompt=params["prompt"],
        resolution=params["resolution"],
        seed=int(params["seed"]),
    )
    chunks: list[np.ndarray] = []
    trace: dict[str, torch.Tensor] = {}
    result = pipeline.generate(request, RunContext(), on_frames=chunks.append, trace=trace)
    frames = np.concatenate(chunks, axis=0)
    count = len(frames)
    means = frames.reshape(count, -1, 3).astype(np.float64).mean(axis=1)
    out: dict[str, torch.Tensor] = {
        **trace,
        "frames.count": torch.tensor(count, dtype=torch.int64),
        "frames.shape": torch.tensor(frames.shape, dtype=torch.int64),
        "frames.mean_rgb": torch.from_numpy(means),
        "fps": torch.tensor(result.fps, dtype=torch.int64),
    }
    start = 0
    for chunk, (first, end) in enumerate(case["derived"]["chunk_output_frames"]):
        assert first == start, "output windows must tile the clip"
        index = torch.tensor([first, (first + end - 1) // 2, end - 1], dtype=torch.int64)
        out[f"frames.chunk{chunk}.sample_index"] = index
        out[f"frames.chunk{chunk}.samples"] = torch.from_numpy(frames[index.numpy()])
        out[f"frames.chunk{chunk}.mean_rgb"] = torch.from_numpy(means[first:end])
        start = end
    return out
