"""The R2V sampler: diffusers' ``UniPCMultistepScheduler`` with its step arithmetic cached per sigma grid.

Owns :class:`CachedUniPCMultistepScheduler`. The official R2V wrapper samples with diffusers UniPC (flow
prediction, flow sigmas, order 2, bh2, corrector on). diffusers rebuilds the scalar factors of every
update (logs, ``expm1``, a 2x2 ``torch.linalg.solve``, small tensors made from Python lists) at every
step, ~0.45 ms of Python per step on small latents (issue 5). Those factors depend only on the sigma
grid, so this subclass takes them from :func:`models.wan.scheduler.unipc_update` (computed once per grid,
with the same scalar arithmetic) and runs the same latent ops in the same order: results are bit for bit
diffusers' (tests/models/test_schedulers.py compares whole schedules with ``torch.equal``).

Configurations outside the R2V one (another prediction type, thresholding, ``solver_p``) fall back to
diffusers' own ``step``.

Imports torch and diffusers; never PySide6 or ``app``.
"""

from __future__ import annotations

import torch
from diffusers import UniPCMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerOutput

from models.wan.scheduler import UniPCUpdate, apply_unipc_update, unipc_update

__all__ = ["CachedUniPCMultistepScheduler"]


class CachedUniPCMultistepScheduler(UniPCMultistepScheduler):  # type: ignore[misc]
    """diffusers UniPC with cached update factors (see the module docstring). One instance per sampling
    run, like its parent; not thread-safe. The cached factors are shared read-only across instances."""

    def _cached_path(self) -> bool:
        config = self.config
        return bool(
            config.prediction_type == "flow_prediction"
            and self.predict_x0
            and not config.thresholding
            and self.solver_p is None
            and config.solver_type in ("bh1", "bh2")
        )

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        """diffusers' ``step`` (same state changes, same results) with the factors from the cache."""
        if not self._cached_path():
            return super().step(model_output, timestep, sample, return_dict=return_dict)  # type: ignore[no-any-return]
        if self.num_inference_steps is None:
            raise ValueError(
                "Number of inference steps is 'None', you need to run 'set_timesteps' after creating the scheduler"
            )
        if self._step_index is None:
            self._init_step_index(timestep)
        index: int = self._step_index
        solver_order: int = self.config.solver_order
        use_corrector = index > 0 and index - 1 not in self.disable_corrector and self.last_sample is not None
        # Flow prediction -> x0 prediction, as convert_model_output does.
        converted = sample - self.sigmas[index] * model_output
        if use_corrector:
            order = self.this_order
            update = self._update(index, order, True, sample, self.last_sample.dtype)
            sample = apply_unipc_update(update, self.last_sample, self.model_outputs[-1], self._older(order), converted)
        for i in range(solver_order - 1):
            self.model_outputs[i] = self.model_outputs[i + 1]
            self.timestep_list[i] = self.timestep_list[i + 1]
        self.model_outputs[-1] = converted
        self.timestep_list[-1] = timestep
        if self.config.lower_order_final:
            this_order = min(solver_order, len(self.timesteps) - index)
        else:
            this_order = solver_order
        self.this_order = min(this_order, self.lower_order_nums + 1)  # warm-up of the multistep
        assert self.this_order > 0
        self.last_sample = sample
        update = self._update(index + 1, self.this_order, False, sample, sample.dtype)
        prev_sample = apply_unipc_update(update, sample, converted, self._older(self.this_order))
        if self.lower_order_nums < solver_order:
            self.lower_order_nums += 1
        self._step_index = index + 1
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)

    def _update(self, target: int, order: int, corrector: bool, sample: torch.Tensor, dtype: torch.dtype) -> UniPCUpdate:
        return unipc_update(self.sigmas, target, order, corrector=corrector, predict_x0=True,
                            solver_type=self.config.solver_type, device=sample.device, dtype=dtype)

    def _older(self, order: int) -> list[torch.Tensor]:
        return [self.model_outputs[-(i + 1)] for i in range(1, order)]
