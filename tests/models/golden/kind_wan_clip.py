"""Golden runner for kind ``wan_clip``: the Wan-format XLM-R CLIP vision tower with the avatar's
preprocessing; the full CLIP state dict (visual, textual, log_scale) loads strictly, float32."""

from __future__ import annotations

from typing import Any

import torch

from models.avatar.clip import ClipConfig, load_clip_vision, preprocess

HOOKED = ("patch_embedding", "pre_norm", "transformer.0", "transformer.1")


def run(
    meta: dict[str, Any], weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    config = ClipConfig.from_dict(meta["config"])
    encoder = load_clip_vision({k: v.float() for k, v in weights.items()}, config, dtype=torch.float32)

    recorded: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
            recorded[f"intermediate.{name}"] = output.detach().clone()

        return record

    modules = dict(encoder.visual.named_modules())
    handles = [modules[name].register_forward_hook(hook(name)) for name in HOOKED]
    try:
        videos = inputs["videos"].float()
        features = encoder.encode(videos)
    finally:
        for handle in handles:
            handle.remove()
    return {"features": features, "pixel_values": preprocess(videos, config.image_size), **recorded}
