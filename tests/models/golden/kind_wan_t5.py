"""Golden runner for kind ``wan_t5``: the Wan-format UMT5 encoder (``models.wan.t5``)."""

from __future__ import annotations

import torch

from models.wan.t5 import WanT5EncoderModel

# Submodules whose outputs the case records under ``intermediate.<name>``.
HOOKED = ("token_embedding", "blocks.0.pos_embedding", "blocks.0", "blocks.1")


def run(
    meta: dict, weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    model = WanT5EncoderModel(**meta["config"]).eval()
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    captured: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(f"intermediate.{name}", out)
        )
        for name in HOOKED
        if name in modules
    ]
    try:
        ids, mask = inputs["ids"], inputs["mask"]
        encoder_out = model(ids, mask)
    finally:
        for handle in handles:
            handle.remove()
    return {"encoder_out": encoder_out, "context": encoder_out * mask.unsqueeze(-1), **captured}
