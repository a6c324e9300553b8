"""The cached UniPC steps (``models.r2v.scheduler``, ``models.wan.scheduler``) against diffusers' own
``UniPCMultistepScheduler.step``, bit for bit (``torch.equal``) over whole long schedules."""

from __future__ import annotations

import pytest
import torch
from diffusers import UniPCMultistepScheduler

from models.r2v.pipeline import make_scheduler
from models.r2v.scheduler import CachedUniPCMultistepScheduler
from models.wan.scheduler import FlowUniPCMultistepScheduler, unipc_update

R2V_CONFIG = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "num_train_timesteps": 1000}
SHAPE = (1, 16, 3, 4, 6)


def _run(scheduler, steps_outputs, sample):
    """Step through the scheduler's timesteps; every intermediate sample."""
    samples = []
    for index, timestep in enumerate(scheduler.timesteps):
        sample = scheduler.step(steps_outputs[index], timestep, sample, return_dict=False)[0]
        samples.append(sample)
    return samples


def _inputs(steps: int, seed: int, output_dtype: torch.dtype = torch.float32):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(SHAPE, generator=generator)
    outputs = [torch.randn(SHAPE, generator=generator).to(output_dtype) for _ in range(steps)]
    return sample, outputs


def _assert_same(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert a.dtype == e.dtype, f"step {index}: dtype {a.dtype} != {e.dtype}"
        if torch.isfinite(e).all():
            assert torch.equal(a, e), f"step {index} differs by {(a - e).abs().max().item()}"
        else:  # settings no pipeline uses (bh1, no final lowering) end on NaN in diffusers too
            torch.testing.assert_close(a, e, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize(("steps", "shift"), [(40, 5.0), (50, 5.0), (50, 3.0), (8, 5.0), (1, 5.0), (2, 5.0)])
def test_r2v_scheduler_equals_diffusers_step(steps, shift):
    sample, outputs = _inputs(steps, seed=steps * 10 + int(shift))
    expected_scheduler = UniPCMultistepScheduler(**R2V_CONFIG, flow_shift=shift)
    expected_scheduler.set_timesteps(steps)
    expected = _run(expected_scheduler, outputs, sample.clone())
    for _ in range(2):  # the second run takes every factor from the cache
        scheduler = make_scheduler(shift)
        assert isinstance(scheduler, CachedUniPCMultistepScheduler)
        scheduler.set_timesteps(steps)
        _assert_same(_run(scheduler, outputs, sample.clone()), expected)
        assert scheduler.lower_order_nums == expected_scheduler.lower_order_nums
        assert scheduler.step_index == expected_scheduler.step_index


def test_r2v_scheduler_equals_diffusers_with_bfloat16_outputs_and_other_settings():
    # bf16 model outputs with float32 latents, as on CUDA; then order 3, no final lowering, a corrector
    # switched off, and the bh1 solver.
    settings = [{}, {"solver_order": 3}, {"lower_order_final": False, "disable_corrector": [3, 7]},
                {"solver_type": "bh1"}, {"solver_order": 3, "solver_type": "bh1"}]
    for extra in settings:
        sample, outputs = _inputs(40, seed=7, output_dtype=torch.bfloat16)
        expected_scheduler = UniPCMultistepScheduler(**R2V_CONFIG, flow_shift=5.0, **extra)
        expected_scheduler.set_timesteps(40)
        scheduler = CachedUniPCMultistepScheduler(**R2V_CONFIG, flow_shift=5.0, **extra)
        scheduler.set_timesteps(40)
        _assert_same(_run(scheduler, outputs, sample.clone()), _run(expected_scheduler, outputs, sample.clone()))


def test_r2v_scheduler_other_configurations_use_diffusers_step():
    sample, outputs = _inputs(10, seed=3)
    expected_scheduler = UniPCMultistepScheduler(prediction_type="epsilon")
    expected_scheduler.set_timesteps(10)
    scheduler = CachedUniPCMultistepScheduler(prediction_type="epsilon")
    scheduler.set_timesteps(10)
    _assert_same(_run(scheduler, outputs, sample.clone()), _run(expected_scheduler, outputs, sample.clone()))


def _diffusers_on_grid(grid: FlowUniPCMultistepScheduler, **config) -> UniPCMultistepScheduler:
    """diffusers UniPC (the same update arithmetic as the official Wan FlowUniPC) on the Wan sigma grid."""
    reference = UniPCMultistepScheduler(**R2V_CONFIG, **config)
    reference.set_timesteps(len(grid.timesteps))
    reference.sigmas = grid.sigmas.clone()
    reference.timesteps = grid.timesteps.clone()
    return reference


@pytest.mark.parametrize(("steps", "shift", "config"), [
    (40, 8.0, {}), (50, 5.0, {}), (50, 11.0, {"solver_order": 3}),
    (40, 8.0, {"lower_order_final": False, "disable_corrector": [2]}),
])
def test_flow_unipc_equals_diffusers_step_on_its_grid(steps, shift, config):
    scheduler = FlowUniPCMultistepScheduler(**config)
    scheduler.set_timesteps(steps, shift=shift)
    reference = _diffusers_on_grid(scheduler, **config)
    sample, outputs = _inputs(steps, seed=steps + int(shift))
    _assert_same(_run(scheduler, outputs, sample.clone()), _run(reference, outputs, sample.clone()))


def test_update_factors_are_cached_per_grid():
    first = make_scheduler(5.0)
    first.set_timesteps(8)
    second = make_scheduler(5.0)
    second.set_timesteps(8)
    device, dtype = torch.device("cpu"), torch.float32
    one = unipc_update(first.sigmas, 3, 2, corrector=True, predict_x0=True, solver_type="bh2",
                       device=device, dtype=dtype)
    two = unipc_update(second.sigmas, 3, 2, corrector=True, predict_x0=True, solver_type="bh2",
                       device=device, dtype=dtype)
    assert one is two
    other_grid = make_scheduler(3.0)
    other_grid.set_timesteps(8)
    assert unipc_update(other_grid.sigmas, 3, 2, corrector=True, predict_x0=True, solver_type="bh2",
                        device=device, dtype=dtype) is not one
