"""Comparison rules of the golden vectors (see ../shared/golden/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file


def load_module_case(golden_dir: Path, case: dict[str, Any]) -> tuple[dict, dict, dict, dict]:
    stem = golden_dir / case["file"].removesuffix(".safetensors")
    tensors = load_file(str(stem) + ".safetensors")
    meta = json.loads(Path(str(stem) + ".json").read_text())
    part: dict[str, dict[str, torch.Tensor]] = {"weights": {}, "inputs": {}, "outputs": {}}
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        part[prefix][name] = value
    return meta, part["weights"], part["inputs"], part["outputs"]


def assert_matches(name: str, actual: Any, expected: torch.Tensor, tol: dict[str, Any]) -> None:
    """Compare one output under the golden rule for its dtype; raise AssertionError naming it."""
    actual_t = actual if isinstance(actual, torch.Tensor) else torch.as_tensor(actual)
    actual_t = actual_t.detach().cpu()
    assert tuple(actual_t.shape) == tuple(expected.shape), (
        f"{name}: shape {tuple(actual_t.shape)} != expected {tuple(expected.shape)}"
    )
    if expected.dtype == torch.uint8:
        diff = (actual_t.to(torch.int16) - expected.to(torch.int16)).abs()
        worst = int(diff.max()) if diff.numel() else 0
        fraction = float((diff > 0).float().mean()) if diff.numel() else 0.0
        assert worst <= tol["atol"], f"{name}: max |diff| {worst} levels > atol {tol['atol']}"
        limit = tol.get("max_fraction_differing", 1.0)
        assert fraction <= limit, f"{name}: {fraction:.4%} of elements differ > allowed {limit:.4%}"
    elif not expected.dtype.is_floating_point:
        assert torch.equal(actual_t.to(expected.dtype), expected), f"{name}: integers differ"
    else:
        torch.testing.assert_close(
            actual_t.to(expected.dtype), expected, atol=tol["atol"], rtol=tol["rtol"],
            msg=lambda m: f"{name}: {m}",
        )
