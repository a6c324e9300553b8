"""The Wan ``FlowUniPCMultistepScheduler`` used by the extension pipelines (spec section 2.5).

Owns :class:`FlowUniPCMultistepScheduler`: UniPC (predictor UniP-bh2 of order <= 2 plus the UniC
corrector) for flow-matching models, with the Wan sigma grid::

    sched = FlowUniPCMultistepScheduler()                  # official defaults
    sched.set_timesteps(8, device=device, shift=8.0)       # extension: 8 steps at shift 8
    for t in sched.timesteps:
        v = model(latents, t)
        latents = sched.step(v, t, latents).prev_sample

Construction: ``sigmas = 1 - linspace(1, 1/N, N)[::-1]`` in float32, so ``sigma_max`` is
float32(0.999) and ``sigma_min`` 0. ``set_timesteps(n, shift=s)`` spaces ``n + 1`` values from
``sigma_max`` to ``sigma_min`` (float64), drops the last, shifts ``s*x / (1 + (s-1)*x)``, truncates
``x*N`` to int64 timesteps and stores float32 sigmas with a final 0. The step arithmetic runs on
float32 0-d tensors in the same order as the official scheduler, so results agree bit for bit.
``step`` accepts (and ignores) a ``generator`` like the official one. Thresholding and ``solver_p``
(both off in every official pipeline) are not supported.

Also owns :func:`unipc_update` and :func:`apply_unipc_update`, shared with the R2V pipeline's diffusers
UniPC (``models.r2v.scheduler``): the scalar factors of every UniP/UniC update depend only on the sigma
grid, so they are computed once per grid (with the official scalar arithmetic, op for op) and cached
across renders; a step is then the handful of latent-sized ops of the official update, in the same order,
so results stay bit for bit the same (issue 5: ~0.45 ms of Python per step on small latents before).

Imports numpy and torch only. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["FlowUniPCMultistepScheduler", "FlowUniPCOutput", "UniPCUpdate", "apply_unipc_update", "unipc_update"]


@dataclass
class FlowUniPCOutput:
    prev_sample: torch.Tensor


@dataclass(frozen=True)
class UniPCUpdate:
    """The data-independent factors of one UniP (predictor) or UniC (corrector) B(h) update.

    With ``predict_x0`` the update is ``scale_sample * x - scale_m0 * m0 - scale_residual * residual``
    (``sigma_t / sigma_s0``, ``alpha_t * h_phi_1``, ``alpha_t * B_h``; the noise form uses ``alpha_t /
    alpha_s0`` and ``sigma_t``). ``rks`` divide the differences to older model outputs; ``rhos`` weight
    them (None for a first-order predictor); ``rho_last`` weights the corrector's own difference. The
    tensors are shared by every scheduler using the grid: never modify them.
    """

    scale_sample: torch.Tensor
    scale_m0: torch.Tensor
    scale_residual: torch.Tensor
    rks: tuple[torch.Tensor, ...]
    rhos: torch.Tensor | None
    rho_last: torch.Tensor | None


def unipc_update(
    sigmas: torch.Tensor,
    target: int,
    order: int,
    *,
    corrector: bool,
    predict_x0: bool,
    solver_type: str,
    device: torch.device,
    dtype: torch.dtype,
) -> UniPCUpdate:
    """The factors of the update that lands on ``sigmas[target]`` (float32 CPU grid), cached per grid.

    Predictor (UniP): from ``sigmas[target - 1]`` with the model outputs at ``target - 1``, ``target - 2``
    ...; corrector (UniC): refines the sample at ``sigmas[target]`` with the outputs at ``target``,
    ``target - 1`` .... ``device`` and ``dtype`` are the sample's (where the official code builds its
    weights, and solves its linear system)."""
    grid = sigmas.detach().to("cpu", torch.float32).contiguous()
    return _cached_update(grid.numpy().tobytes(), len(grid), target, order, corrector, predict_x0, solver_type,
                          torch.device(device), dtype)


@functools.lru_cache(maxsize=1024)
def _cached_update(
    grid_bytes: bytes,
    length: int,
    target: int,
    order: int,
    corrector: bool,
    predict_x0: bool,
    solver_type: str,
    device: torch.device,
    dtype: torch.dtype,
) -> UniPCUpdate:
    sigmas = torch.frombuffer(bytearray(grid_bytes), dtype=torch.float32, count=length)
    # The official scalar arithmetic, op for op: float32 0-d tensors on the CPU, the weights on `device`.
    # Both updates step from sigmas[target - 1]; the older outputs belong to target - 2, target - 3 ...
    alpha_t, sigma_t, lambda_t = _flow_lambda(sigmas[target])
    alpha_s0, sigma_s0, lambda_s0 = _flow_lambda(sigmas[target - 1])
    h = lambda_t - lambda_s0
    rks = []
    for k in range(1, order):
        _, _, lambda_si = _flow_lambda(sigmas[target - 1 - k])
        rks.append((lambda_si - lambda_s0) / h)
    rk_tensor = torch.tensor([*rks, 1.0], device=device)
    hh = -h if predict_x0 else h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = hh if solver_type == "bh1" else torch.expm1(hh)
    rows, b_list = [], []
    factorial = 1
    for i in range(1, order + 1):
        rows.append(torch.pow(rk_tensor, i - 1))
        b_list.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    r = torch.stack(rows)
    b = torch.tensor(b_list, device=device)
    rhos: torch.Tensor | None
    rho_last: torch.Tensor | None = None
    if corrector:
        if order == 1:
            weights = torch.tensor([0.5], dtype=dtype, device=device)
        else:
            weights = torch.linalg.solve(r, b).to(device).to(dtype)
        rhos, rho_last = weights[:-1], weights[-1]
    elif order == 1:
        rhos = None
    elif order == 2:
        rhos = torch.tensor([0.5], dtype=dtype, device=device)
    else:
        rhos = torch.linalg.solve(r[:-1, :-1], b[:-1]).to(device).to(dtype)
    if predict_x0:
        scales = (sigma_t / sigma_s0, alpha_t * h_phi_1, alpha_t * b_h)
    else:
        scales = (alpha_t / alpha_s0, sigma_t * h_phi_1, sigma_t * b_h)
    return UniPCUpdate(*scales, rks=tuple(rks), rhos=rhos, rho_last=rho_last)


def _flow_lambda(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(alpha, sigma, log(alpha) - log(sigma))`` for a flow sigma."""
    alpha = 1 - sigma
    return alpha, sigma, torch.log(alpha) - torch.log(sigma)


def apply_unipc_update(
    update: UniPCUpdate,
    x: torch.Tensor,
    m0: torch.Tensor,
    older: Sequence[torch.Tensor],
    model_t: torch.Tensor | None = None,
) -> torch.Tensor:
    """One update: ``x`` (the sample, or for the corrector the sample before the last predictor) with the
    newest converted model output ``m0``, the ``older`` ones (newest first) and, for the corrector, the
    output ``model_t`` at the predicted sample. Latent ops and their order are the official ones."""
    residual: torch.Tensor | int = 0
    if update.rks:
        stacked = torch.stack([(mi - m0) / rk for mi, rk in zip(older, update.rks, strict=True)], dim=1)
        residual = torch.einsum("k,bkc...->bc...", update.rhos, stacked)
    if model_t is not None:
        assert update.rho_last is not None
        residual = residual + update.rho_last * (model_t - m0)
    out = update.scale_sample * x - update.scale_m0 * m0
    return (out - update.scale_residual * residual).to(x.dtype)


class FlowUniPCMultistepScheduler:
    """Multistep UniPC for flow prediction. One instance per sampling run; not thread-safe.

    Args:
        num_train_timesteps: training steps N (1000).
        solver_order: UniP order (2).
        prediction_type: only ``"flow_prediction"``.
        shift: default sigma shift for :meth:`set_timesteps` (also applied to the training grid).
        use_dynamic_shifting: shift by ``mu`` passed to :meth:`set_timesteps` instead.
        predict_x0: update on the x0 prediction (True) or on the noise prediction.
        solver_type: ``"bh2"`` (default) or ``"bh1"``.
        lower_order_final: lower the order on the final steps.
        disable_corrector: step indices whose following corrector is skipped.
        final_sigmas_type: only ``"zero"``.
    """

    order = 1

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        solver_order: int = 2,
        prediction_type: str = "flow_prediction",
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        predict_x0: bool = True,
        solver_type: str = "bh2",
        lower_order_final: bool = True,
        disable_corrector: Sequence[int] = (),
        final_sigmas_type: str = "zero",
        thresholding: bool = False,
    ) -> None:
        if prediction_type != "flow_prediction":
            raise ValueError(f"prediction_type must be 'flow_prediction', got {prediction_type!r}")
        if solver_type in ("midpoint", "heun", "logrho"):
            solver_type = "bh2"
        if solver_type not in ("bh1", "bh2"):
            raise NotImplementedError(f"solver_type {solver_type!r} is not implemented")
        if final_sigmas_type != "zero":
            raise ValueError(f"final_sigmas_type must be 'zero', got {final_sigmas_type!r}")
        if thresholding:
            raise NotImplementedError("dynamic thresholding is not supported (no official pipeline uses it)")
        if solver_order < 1:
            raise ValueError("solver_order must be >= 1")
        self.num_train_timesteps = num_train_timesteps
        self.solver_order = solver_order
        self.prediction_type = prediction_type
        self.shift = shift
        self.use_dynamic_shifting = use_dynamic_shifting
        self.predict_x0 = predict_x0
        self.solver_type = solver_type
        self.lower_order_final = lower_order_final
        self.disable_corrector = list(disable_corrector)

        alphas = np.linspace(1, 1 / num_train_timesteps, num_train_timesteps)[::-1].copy()
        sigmas = torch.from_numpy(1.0 - alphas).to(torch.float32)
        if not use_dynamic_shifting:
            sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        self.sigmas: torch.Tensor = sigmas
        self.timesteps: torch.Tensor = sigmas * num_train_timesteps
        self.sigma_min = float(sigmas[-1].item())
        self.sigma_max = float(sigmas[0].item())
        self.num_inference_steps: int | None = None
        self._reset_state()
        self._begin_index: int | None = None

    def _reset_state(self) -> None:
        self.model_outputs: list[torch.Tensor | None] = [None] * self.solver_order
        self.timestep_list: list[Any] = [None] * self.solver_order
        self.lower_order_nums = 0
        self.last_sample: torch.Tensor | None = None
        self.this_order = 0
        self._step_index: int | None = None

    # -- schedule -------------------------------------------------------------------------------

    @property
    def step_index(self) -> int | None:
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._begin_index = begin_index

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: Sequence[float] | None = None,
        mu: float | None = None,
        shift: float | None = None,
    ) -> None:
        """Build the sampling grid (see the module docstring) and reset the solver state."""
        if self.use_dynamic_shifting and mu is None:
            raise ValueError("mu is required when use_dynamic_shifting is set")
        if sigmas is None:
            if num_inference_steps is None or num_inference_steps < 1:
                raise ValueError("num_inference_steps must be a positive integer")
            grid = np.linspace(self.sigma_max, self.sigma_min, num_inference_steps + 1).copy()[:-1]
        else:
            grid = np.asarray(sigmas, dtype=np.float64)
        if self.use_dynamic_shifting:
            assert mu is not None
            grid = math.exp(mu) / (math.exp(mu) + (1 / grid - 1) ** 1.0)
        else:
            s = self.shift if shift is None else shift
            grid = s * grid / (1 + (s - 1) * grid)
        timesteps = grid * self.num_train_timesteps
        self.sigmas = torch.from_numpy(np.concatenate([grid, [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(timesteps).to(device=device, dtype=torch.int64)
        self.num_inference_steps = len(timesteps)
        self._reset_state()
        self._begin_index = None

    def index_for_timestep(self, timestep: int | torch.Tensor, schedule: torch.Tensor | None = None) -> int:
        schedule = self.timesteps if schedule is None else schedule
        indices = (schedule == timestep).nonzero()
        if len(indices) == 0:
            raise ValueError(f"timestep {timestep} is not in the schedule {schedule.tolist()}")
        # With a repeated timestep, the official scheduler starts from the second occurrence.
        return int(indices[1 if len(indices) > 1 else 0].item())

    def _init_step_index(self, timestep: int | torch.Tensor) -> None:
        if self._begin_index is None:
            if isinstance(timestep, torch.Tensor):
                timestep = timestep.to(self.timesteps.device)
            self._step_index = self.index_for_timestep(timestep)
        else:
            self._step_index = self._begin_index

    # -- solver ---------------------------------------------------------------------------------

    def _update(self, target: int, order: int, corrector: bool, sample: torch.Tensor) -> UniPCUpdate:
        return unipc_update(self.sigmas, target, order, corrector=corrector, predict_x0=self.predict_x0,
                            solver_type=self.solver_type, device=sample.device, dtype=sample.dtype)

    def _older_outputs(self, order: int) -> list[torch.Tensor]:
        return [self.model_outputs[-(i + 1)] for i in range(1, order)]  # type: ignore[misc]

    def _predict(self, sample: torch.Tensor, order: int) -> torch.Tensor:
        """UniP-B(h): ``sample`` at ``sigmas[i]`` -> sample at ``sigmas[i + 1]``."""
        assert self._step_index is not None
        m0 = self.model_outputs[-1]
        assert m0 is not None
        update = self._update(self._step_index + 1, order, False, sample)
        return apply_unipc_update(update, sample, m0, self._older_outputs(order))

    def _correct(
        self, model_t: torch.Tensor, last_sample: torch.Tensor, this_sample: torch.Tensor, order: int
    ) -> torch.Tensor:
        """UniC-B(h): refine ``this_sample`` with the model output evaluated at it."""
        assert self._step_index is not None
        m0 = self.model_outputs[-1]
        assert m0 is not None
        # The official corrector builds its weights on this_sample's device in last_sample's dtype.
        update = unipc_update(self.sigmas, self._step_index, order, corrector=True, predict_x0=self.predict_x0,
                              solver_type=self.solver_type, device=this_sample.device, dtype=last_sample.dtype)
        return apply_unipc_update(update, last_sample, m0, self._older_outputs(order), model_t)

    def convert_model_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Flow prediction -> x0 prediction (``predict_x0``) or noise prediction."""
        assert self._step_index is not None
        sigma = self.sigmas[self._step_index]
        if self.predict_x0:
            return sample - sigma * model_output
        return sample - (1 - sigma) * model_output

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> FlowUniPCOutput | tuple[torch.Tensor]:
        """Advance ``sample`` from ``timestep`` to the next grid point.

        Raises:
            RuntimeError: :meth:`set_timesteps` was not called.
        """
        del generator  # deterministic solver; accepted for API compatibility
        if self.num_inference_steps is None:
            raise RuntimeError("call set_timesteps() before step()")
        if self._step_index is None:
            self._init_step_index(timestep)
        assert self._step_index is not None
        use_corrector = (
            self._step_index > 0
            and self._step_index - 1 not in self.disable_corrector
            and self.last_sample is not None
        )
        converted = self.convert_model_output(model_output, sample)
        if use_corrector:
            assert self.last_sample is not None
            sample = self._correct(converted, self.last_sample, sample, self.this_order)
        self.model_outputs = [*self.model_outputs[1:], converted]
        self.timestep_list = [*self.timestep_list[1:], timestep]
        if self.lower_order_final:
            order = min(self.solver_order, len(self.timesteps) - self._step_index)
        else:
            order = self.solver_order
        self.this_order = min(order, self.lower_order_nums + 1)
        self.last_sample = sample
        prev_sample = self._predict(sample, self.this_order)
        self.lower_order_nums = min(self.lower_order_nums + 1, self.solver_order)
        self._step_index += 1
        if not return_dict:
            return (prev_sample,)
        return FlowUniPCOutput(prev_sample=prev_sample)

    def scale_model_input(self, sample: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return sample

    def add_noise(self, original: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``(1 - sigma) * original + sigma * noise`` at the given schedule timesteps."""
        sigmas = self.sigmas.to(device=original.device, dtype=original.dtype)
        schedule = self.timesteps.to(original.device)
        timesteps = timesteps.to(original.device)
        if self._begin_index is None:
            indices = [self.index_for_timestep(t, schedule) for t in timesteps]
        else:
            start = self._step_index if self._step_index is not None else self._begin_index
            indices = [start] * timesteps.shape[0]
        sigma = sigmas[indices].flatten()
        while sigma.dim() < original.dim():
            sigma = sigma.unsqueeze(-1)
        return (1 - sigma) * original + sigma * noise

    def __len__(self) -> int:
        return self.num_train_timesteps
