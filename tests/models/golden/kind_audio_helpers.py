"""Golden runner for kind ``audio_helpers``: feature resampling to video rate and -23 LUFS loudness."""

from __future__ import annotations

from typing import Any

import torch

from models.avatar.audio import linear_interpolation, loudness_norm


def run(
    meta: dict[str, Any], weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    out = {}
    for length in meta["config"]["interp_lengths"]:
        out[f"linear_interpolation_{length}"] = linear_interpolation(inputs["features"].float(), int(length))
    normalised = loudness_norm(inputs["loudness_audio"].float().numpy(), 16000, -23.0)
    out["loudness_norm"] = torch.from_numpy(normalised)
    return out
