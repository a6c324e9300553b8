"""Golden runner for kind ``r2v``: the R2V DiT with two reference images and two empty slots."""

from __future__ import annotations

from typing import Any

import torch

from models.r2v.transformer import build_transformer

# Submodules whose outputs the case records as ``intermediate.<name>``.
HOOKED = ("patch_embedding", "condition_embedder", "blocks.0", "blocks.1", "proj_out")


def run(
    meta: dict[str, Any], weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    model = build_transformer(meta["config"]).float().eval()
    model.load_state_dict({key: value.float() for key, value in weights.items()}, strict=True)

    recorded: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: torch.nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, tuple):
                for index, item in enumerate(output):
                    if isinstance(item, torch.Tensor):
                        recorded[f"intermediate.{name}.out{index}"] = item.detach().clone()
            else:
                recorded[f"intermediate.{name}"] = output.detach().clone()

        return record

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(hook(name)) for name in HOOKED if name in modules]
    try:
        sample = model(
            hidden_states=inputs["hidden_states"].float(),
            timestep=inputs["timestep"],
            encoder_hidden_states=inputs["encoder_hidden_states"].float(),
            return_dict=False,
        )[0]
    finally:
        for handle in handles:
            handle.remove()
    return {"sample": sample, **recorded}
