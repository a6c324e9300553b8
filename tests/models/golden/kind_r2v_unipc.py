"""Golden runner for kind ``r2v_unipc``: the R2V pipeline's diffusers UniPC scheduler."""

from __future__ import annotations

from typing import Any

import torch

from models.r2v.pipeline import make_scheduler


def run(
    meta: dict[str, Any], weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    assert not weights, "a scheduler case carries no weights"
    flow_shift = float(meta["config"]["scheduler_config"]["flow_shift"])
    results: dict[str, torch.Tensor] = {}
    for steps in meta["config"]["steps"]:
        tag = f"s{steps}"
        scheduler = make_scheduler(flow_shift)
        scheduler.set_timesteps(steps, device="cpu")
        sample = inputs[f"{tag}.sample"].float()
        model_outputs = inputs[f"{tag}.model_outputs"].float()
        samples = []
        for index, timestep in enumerate(scheduler.timesteps):
            sample = scheduler.step(model_outputs[index], timestep, sample, return_dict=False)[0]
            samples.append(sample)
        results[f"{tag}.timesteps"] = scheduler.timesteps.clone()
        results[f"{tag}.sigmas"] = scheduler.sigmas.clone()
        results[f"{tag}.samples"] = torch.stack(samples)
    return results
