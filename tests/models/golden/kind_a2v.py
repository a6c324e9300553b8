"""Golden runner for kind ``a2v``: the talking-avatar DiT (CLIP image tokens, audio projection, audio
cross-attention) built from the case config with the official key names, loaded strictly, float32."""

from __future__ import annotations

from typing import Any

import torch

from models.avatar.transformer import AvatarTransformer, AvatarTransformerConfig

# Submodules whose outputs the case records as ``intermediate.<name>``.
HOOKED = (
    "time_projection",
    "patch_embedding",
    "text_embedding",
    "img_emb",
    "audio_proj",
    "blocks.0",
    "blocks.1",
    "head",
)


def run(
    meta: dict[str, Any], weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    clip_dim = inputs["clip_fea"].shape[-1]
    _, _, _, layers, channels = inputs["audio"].shape
    config = AvatarTransformerConfig.from_dict(
        meta["config"], clip_dim=clip_dim, audio_layers=layers, audio_channels=channels
    )
    model = AvatarTransformer(config).float().eval()
    model.load_state_dict({key: value.float() for key, value in weights.items()}, strict=True)

    recorded: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
            recorded[f"intermediate.{name}"] = output.detach().clone()

        return record

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(hook(name)) for name in HOOKED]
    try:
        out = model(
            inputs["x"].float(),
            t=inputs["t"].float(),
            context=inputs["context"].float(),
            clip_features=inputs["clip_fea"].float(),
            y=inputs["y"].float(),
            audio=inputs["audio"].float(),
        )
    finally:
        for handle in handles:
            handle.remove()
    return {"x": out, **recorded}
