"""Golden runner for kind ``flow_unipc``: the Wan FlowUniPC scheduler (``models.wan.scheduler``)."""

from __future__ import annotations

import torch

from models.wan.scheduler import FlowUniPCMultistepScheduler


def run(
    meta: dict, weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    assert not weights, "the scheduler case has no weights"
    # The scheduler cases flag primary outputs per output ("primary": true) instead of a top-level
    # "primary_outputs" list; derive the list from those flags so the harness checks all of them.
    meta.setdefault(
        "primary_outputs", [name for name, spec in meta["outputs"].items() if spec.get("primary")]
    )
    out: dict[str, torch.Tensor] = {}
    for steps, shift in meta["config"]["grid"]:
        tag = f"s{steps}_shift{int(shift) if float(shift).is_integer() else shift}"
        sched = FlowUniPCMultistepScheduler()
        sched.set_timesteps(int(steps), device="cpu", shift=float(shift))
        sample = inputs[f"{tag}.sample"]
        model_outputs = inputs[f"{tag}.model_outputs"]
        samples = []
        for i, t in enumerate(sched.timesteps):
            sample = sched.step(model_outputs[i], t, sample, return_dict=False)[0]
            samples.append(sample)
        out[f"{tag}.timesteps"] = sched.timesteps
        out[f"{tag}.sigmas"] = sched.sigmas
        out[f"{tag}.samples"] = torch.stack(samples)
    return out
