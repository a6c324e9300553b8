"""Golden runner for kind ``avatar_timesteps``: the avatar's shifted Euler timesteps per (steps, shift)."""

from __future__ import annotations

from typing import Any

import torch

from models.avatar.schedule import avatar_timesteps


def run(
    meta: dict[str, Any], weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    out = {}
    for steps, shift in meta["config"]["grid"]:
        out[f"s{steps}_shift{shift:g}.timesteps"] = avatar_timesteps(int(steps), float(shift))
    return out
