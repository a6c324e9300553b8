"""Golden runner for the extension DiT module cases (``extension_single_shot``, ``extension_shot_switching``).

Builds :class:`models.extension.transformer.ExtensionTransformer` from the case config, loads the
weights strictly under the official names, and runs the reference call twice: with the between-block
bfloat16 rounding (reference behaviour, ``x``) and without it (``diagnostic.x_without_block_bf16_cast``).
Forward hooks record the intermediates the case stores.
"""

from __future__ import annotations

import torch

from models.extension.transformer import ExtensionDiTConfig, ExtensionTransformer


def run(
    meta: dict, weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    model = ExtensionTransformer(ExtensionDiTConfig.from_dict(meta["config"])).float().eval()
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)

    if "prefix" in inputs:  # shot switching: list input [latents, prefix]
        x: torch.Tensor | list[torch.Tensor] = [inputs["latents"], inputs["prefix"]]
    else:
        x = inputs["x"]
    t, context = inputs["t"], inputs["context"]

    recorded: dict[str, torch.Tensor] = {}
    patch_calls: list[torch.Tensor] = []

    def keep(name: str):
        def hook(_module, _args, output):
            recorded[name] = output.detach().float()

        return hook

    handles = [
        model.patch_embedding.register_forward_hook(lambda _m, _a, out: patch_calls.append(out.detach())),
        model.text_embedding.register_forward_hook(keep("intermediate.text_embedding")),
        model.head.register_forward_hook(keep("intermediate.head")),
    ]
    handles += [
        block.register_forward_hook(keep(f"intermediate.blocks.{i}")) for i, block in enumerate(model.blocks)
    ]
    try:
        out = model(x, t, context)
    finally:
        for handle in handles:
            handle.remove()
    results = dict(recorded)
    results["x"] = out
    if len(patch_calls) == 1:
        results["intermediate.patch_embedding"] = patch_calls[0]
    else:
        for i, value in enumerate(patch_calls):
            results[f"intermediate.patch_embedding.call{i}"] = value
    results["diagnostic.x_without_block_bf16_cast"] = model(x, t, context, round_between_blocks=False)
    return results
