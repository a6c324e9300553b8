"""Every case listed in the golden ``index.json`` (module cases and pipeline cases), discovered from the
index so any other set in the same format runs too. Folder: ``$SKYREELS_GOLDEN_DIR`` or ../shared/golden.

Module case: build from the case's config, load weights strictly without renaming, run, compare every
primary output (and for the extension model the bf16-free diagnostic) within its tolerance.
Pipeline case: load the case's tiny official-layout checkpoint with the product's loaders, run the real
pipeline with the case's parameters, compare the primary outputs (and every other output produced).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
import torch

from tests.models.golden.compare import assert_matches, load_module_case

REPO = Path(__file__).resolve().parents[2]
GOLDEN_DIR = Path(os.environ.get("SKYREELS_GOLDEN_DIR", REPO.parent / "shared" / "golden")).resolve()
INDEX = json.loads((GOLDEN_DIR / "index.json").read_text()) if (GOLDEN_DIR / "index.json").exists() else None

# Outputs checked on top of the case's primary list.
EXTRA_REQUIRED = {"ext": ["diagnostic.x_without_block_bf16_cast"]}


def primary_outputs(meta: dict) -> list[str]:
    """The case's primary outputs: a top-level list, or (scheduler cases) ``"primary": true`` flags."""
    if "primary_outputs" in meta:
        return list(meta["primary_outputs"])
    return [name for name, spec in meta.get("outputs", {}).items() if isinstance(spec, dict) and spec.get("primary")]


def _module_cases():
    if INDEX is None:
        return [pytest.param(None, id="golden-dir-missing")]
    return [pytest.param(case, id=case["name"]) for case in INDEX["cases"]]


def _pipeline_cases():
    if INDEX is None or "pipelines" not in INDEX:
        return [pytest.param(None, id="no-pipeline-cases")] if INDEX is None else []
    return [pytest.param(case, id=case["name"]) for case in INDEX["pipelines"]["cases"]]


def _compare(actual: dict, expected: dict, tolerances: dict, required: list[str]) -> None:
    """Every required output must be produced, stored and within tolerance; every other produced output
    that the case stores with a tolerance is compared too."""
    for name in required:
        assert name in actual, f"runner did not produce primary output {name!r}"
        assert name in expected and name in tolerances, f"case has no expected value/tolerance for {name!r}"
    for name, value in actual.items():
        if name in expected and name in tolerances:
            assert_matches(name, value, expected[name], tolerances[name])


def _runner(module_name: str):
    try:
        return importlib.import_module(f"tests.models.golden.{module_name}")
    except ModuleNotFoundError as error:
        if error.name == f"tests.models.golden.{module_name}":
            pytest.fail(f"no golden runner tests/models/golden/{module_name}.py for this case")
        raise


@pytest.mark.parametrize("case", _module_cases())
def test_module_case(case):
    assert INDEX is not None, f"golden folder {GOLDEN_DIR} has no index.json (set SKYREELS_GOLDEN_DIR)"
    meta, weights, inputs, expected = load_module_case(GOLDEN_DIR, case)
    runner = _runner(f"kind_{case['kind']}")
    torch.manual_seed(0)
    with torch.no_grad():
        actual = runner.run(meta, weights, inputs)
    tolerances = meta["tolerance"]["per_output"]
    assert primary_outputs(meta), "case lists no primary outputs"
    required = primary_outputs(meta) + EXTRA_REQUIRED.get(case["kind"], [])
    _compare(actual, expected, tolerances, required)


@pytest.mark.parametrize("case", _pipeline_cases())
def test_pipeline_case(case):
    assert INDEX is not None, f"golden folder {GOLDEN_DIR} has no index.json (set SKYREELS_GOLDEN_DIR)"
    from safetensors.torch import load_file

    case_dir = GOLDEN_DIR / INDEX["pipelines"]["dir"] / case["path"]
    spec = json.loads((case_dir / "case.json").read_text())
    expected = load_file(str(case_dir / "expected.safetensors"))
    runner = _runner(f"pipeline_{case['task']}")
    with torch.no_grad():
        actual = runner.run(case_dir, spec)
    tolerances = spec["tolerance"]["per_output"]
    _compare(actual, expected, tolerances, list(spec["primary_outputs"]))
