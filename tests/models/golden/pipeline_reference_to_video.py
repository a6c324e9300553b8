"""Golden runner for the ``reference_to_video`` pipeline case.

Loads the case's tiny diffusers-layout checkpoint with the product loader (float32, CPU), swaps in the
case's tiny 480P bucket table, and runs the product pipeline with the case's parameters. Random draws
come from our own seeded CPU generator (not injected), so ``noise.*`` checks the draw order too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.pipeline_base import RunContext
from models.r2v.loading import load_components
from models.r2v.pipeline import R2VRequest, ReferenceToVideoPipeline


def run(case_dir: Path, case: dict[str, Any]) -> dict[str, torch.Tensor]:
    params = case["parameters"]
    components = load_components(case_dir / case["checkpoint"], device="cpu", dtype=torch.float32)
    pipeline = ReferenceToVideoPipeline(
        components, device="cpu", bucket_tables={params["resolution"]: case["bucket_table_override"]}
    )
    refs = tuple(str(path) for path in sorted((case_dir / "inputs").glob("ref_*.png")))
    request = R2VRequest(
        reference_images=refs,
        prompt=params["prompt"],
        duration_s=int(params["duration"]),
        resolution=params["resolution"],
        seed=int(params["seed"]),
    )
    trace: dict[str, torch.Tensor] = {}
    result = pipeline.generate(request, RunContext(), trace=trace)
    frames = result.frames
    count = len(frames)
    index = torch.tensor([0, (count - 1) // 2, count - 1], dtype=torch.int64)
    return {
        **trace,
        "frames.count": torch.tensor(count, dtype=torch.int64),
        "frames.shape": torch.tensor(frames.shape, dtype=torch.int64),
        "frames.mean_rgb": torch.from_numpy(frames.reshape(count, -1, 3).astype(np.float64).mean(axis=1)),
        "frames.chunk0.sample_index": index,
        "frames.chunk0.samples": torch.from_numpy(frames[index.numpy()]),
        "fps": torch.tensor(result.fps, dtype=torch.int64),
    }
