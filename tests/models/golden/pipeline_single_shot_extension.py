"""Golden runner for the single-shot extension pipeline cases (``single_shot_extension``,
``single_shot_extension_two_chunks``); :func:`run_extension_case` serves shot switching too.

Loads the case's official-layout checkpoint with the product loader, runs the real pipeline with the
case's parameters and bucket table (noise from the seeded CPU generator, as the case's ``rng`` says),
and returns the primary outputs, the intermediates the pipeline traces, and the
``diagnostic.no_block_bf16_cast.*`` outputs of a second run with the between-block rounding off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.extension.pipeline import (
    ExtensionMode,
    ExtensionPipeline,
    ExtensionRequest,
    load_components,
    prepare_request,
)


def _frame_outputs(frames: np.ndarray, plan) -> dict[str, torch.Tensor]:
    means = torch.from_numpy(frames.astype(np.float64).mean(axis=(1, 2)))
    out = {"frames.mean_rgb": means}
    out["frames.count"] = torch.tensor(len(frames), dtype=torch.int64)
    out["frames.shape"] = torch.tensor(frames.shape, dtype=torch.int64)
    out["fps"] = torch.tensor(24, dtype=torch.int64)
    start = 0
    for piece in plan:
        n = piece.output_frames
        index = [start, start + (n - 1) // 2, start + n - 1]
        out[f"frames.chunk{piece.index}.sample_index"] = torch.tensor(index, dtype=torch.int64)
        out[f"frames.chunk{piece.index}.samples"] = torch.from_numpy(frames[index])
        out[f"frames.chunk{piece.index}.mean_rgb"] = means[start : start + n]
        start += n
    return out


def run_extension_case(case_dir: Path, case: dict, mode: ExtensionMode) -> dict[str, torch.Tensor]:
    params = case["parameters"]
    components = load_components(
        (case_dir / case["checkpoint"]).resolve(),
        mode,
        device="cpu",
        dtype=torch.float32,
        sizes=case["hardcoded_size_overrides"],
    )
    request = ExtensionRequest(
        mode=mode,
        input_video=str(case_dir / "inputs" / "input_video.mp4"),
        prompt=params["prompt"],
        duration_s=int(params["duration"]),
        resolution=params["resolution"],
        seed=int(params["seed"]),
        bucket_table={k: tuple(v) for k, v in case["bucket_table_override"].items()},
    )
    prepared = prepare_request(request)
    pipeline = ExtensionPipeline(components)

    trace: dict[str, torch.Tensor] = {}
    result = pipeline(prepared, trace=trace)
    outputs = dict(trace)
    outputs.update(_frame_outputs(result.frames, prepared.plan))
    tokens = getattr(components.text_encoder, "tokenize", None)
    if tokens is not None:
        ids, mask = tokens([prepared.prompt])
        outputs["text.input_ids"] = ids.to(torch.int64)
        outputs["text.attention_mask"] = mask.to(torch.int64)

    # Diagnostic: the same run without the between-block rounding. For single shot the last piece's
    # VAE decode is skipped (its frame means are not a primary output and that decode, with the 7
    # condition latents as context, dominates the CPU time); the shot-switch decode is cheap.
    components.transformer.round_between_blocks = False
    diagnostic: dict[str, torch.Tensor] = {}
    cheap = mode is ExtensionMode.SHOT_SWITCHING
    plain = pipeline(prepared, trace=diagnostic, decode_last_piece=cheap)
    prefix = "diagnostic.no_block_bf16_cast."
    for piece in prepared.plan:
        outputs[f"{prefix}chunk{piece.index}.latents_final"] = diagnostic[f"chunk{piece.index}.latents_final"]
    if cheap:
        outputs[f"{prefix}frames.mean_rgb"] = _frame_outputs(plain.frames, prepared.plan)["frames.mean_rgb"]
    return outputs


def run(case_dir: Path, case: dict) -> dict[str, torch.Tensor]:
    return run_extension_case(Path(case_dir), case, ExtensionMode.SINGLE_SHOT)
