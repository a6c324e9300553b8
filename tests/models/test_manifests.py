"""Full-size models built on the meta device have exactly the official checkpoints' keys, shapes and
dtypes (``manifest_*.json`` in the golden folder), so the real 14B/19B files load with ``strict=True``.

Every manifest in the folder must have a builder here; each builder lives next to the model it builds
and returns ``{key: tensor}`` of a freshly constructed full-size module on ``torch.device("meta")``.
"""

from __future__ import annotations

import importlib
import json

import pytest

from tests.models.test_golden import GOLDEN_DIR

BUILDERS = {
    "manifest_r2v_transformer.json": "models.r2v.transformer:full_size_state_dict",
    "manifest_r2v_vae_diffusers.json": "models.r2v.loading:full_size_vae_state_dict",
    "manifest_extension_transformer.json": "models.extension.transformer:full_size_state_dict",
    "manifest_wan_vae.json": "models.wan.vae:full_size_state_dict",
    "manifest_wan_t5_encoder.json": "models.wan.t5:full_size_state_dict",
    "manifest_a2v_transformer.json": "models.avatar.transformer:full_size_state_dict",
    "manifest_wan_clip.json": "models.avatar.clip:full_size_state_dict",
}

# A missing golden folder fails (one param) instead of silently collecting nothing.
MANIFESTS = sorted(path.name for path in GOLDEN_DIR.glob("manifest_*.json")) or ["<no manifests found>"]


@pytest.mark.parametrize("manifest_name", MANIFESTS)
def test_full_size_model_matches_manifest(manifest_name):
    assert (GOLDEN_DIR / manifest_name).exists(), f"no manifest_*.json in {GOLDEN_DIR} (set SKYREELS_GOLDEN_DIR)"
    assert manifest_name in BUILDERS, f"no builder registered for {manifest_name}"
    module_name, function_name = BUILDERS[manifest_name].split(":")
    build = getattr(importlib.import_module(module_name), function_name)
    state = build()
    manifest = json.loads((GOLDEN_DIR / manifest_name).read_text())
    expected = manifest["tensors"]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    assert not missing and not unexpected, (
        f"{manifest_name}: {len(missing)} missing keys (first: {missing[:5]}), "
        f"{len(unexpected)} unexpected keys (first: {unexpected[:5]})"
    )
    wrong = [
        (key, list(tensor.shape), str(tensor.dtype).removeprefix("torch."), expected[key])
        for key, tensor in state.items()
        if list(tensor.shape) != expected[key]["shape"]
        or str(tensor.dtype).removeprefix("torch.") != expected[key]["dtype"]
    ]
    assert not wrong, f"{manifest_name}: {len(wrong)} tensors differ in shape/dtype, first: {wrong[:3]}"
    assert len(state) == manifest["num_tensors"]
    assert sum(t.numel() for t in state.values()) == manifest["num_params"]
