"""The talking avatar's sampler: shifted float timesteps and plain Euler (no scheduler object).

Official recipe (spec 2.5, ``talking_avatar_pipeline.py``): ``linspace(1000, 1, steps)`` in float32, then
0 appended, each value mapped by ``t -> 1000 * shift * u / (1 + (shift - 1) * u)`` with ``u = t / 1000``
(float32 arithmetic, float timesteps fed to the model unrounded). Euler update
``x <- x + (-v) * (t_i - t_{i+1}) / 1000``. Motion latents are re-noised to the next timestep with
``(1 - t/1000) * motion + (t/1000) * noise``.

Must not import: PySide6, ``app``.
"""

from __future__ import annotations

import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_STEPS = 4
DEFAULT_SHIFT = 11.0


def shift_timestep(t: torch.Tensor, shift: float, num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """Map a timestep in [0, num_timesteps] through the flow shift (same float32 operation order)."""
    u = t / num_timesteps
    return shift * u / (1 + (shift - 1) * u) * num_timesteps


def avatar_timesteps(
    steps: int = DEFAULT_STEPS, shift: float = DEFAULT_SHIFT, num_timesteps: int = NUM_TRAIN_TIMESTEPS
) -> torch.Tensor:
    """``steps + 1`` float32 timesteps t_0 .. t_steps (t_steps = 0). For 4 steps at shift 11:
    [1000, 956.5841, 846.5438, 10.8911, 0]."""
    if steps < 1:
        raise ValueError(f"the avatar sampler needs at least one step, got {steps}")
    raw = [*np.linspace(num_timesteps, 1, steps, dtype=np.float32).tolist(), 0.0]
    values = [
        shift_timestep(torch.tensor([value], dtype=torch.float32), shift, num_timesteps) for value in raw
    ]
    return torch.cat(values)


def euler_step(
    latent: torch.Tensor, prediction: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor
) -> torch.Tensor:
    """One Euler step on the flow: the model predicts the velocity from data to noise."""
    dt = (t - t_next) / NUM_TRAIN_TIMESTEPS
    return latent + (-prediction) * dt


def noise_to(original: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Flow-matching forward process at timestep ``t`` (0 = clean, 1000 = pure noise)."""
    s = t.float() / NUM_TRAIN_TIMESTEPS
    return (1 - s) * original + s * noise
