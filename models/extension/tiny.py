"""Tiny random-weight video-extension checkpoint in the official layout (spec 4.1), for tests and the
``tiny`` model of the CLI.

Writes ``transformer/`` and ``shot_transformer/`` (``config.json``, bfloat16 weights split over
``diffusion_pytorch_model-0000{1,2}-of-00002.safetensors`` and the ``.safetensors.index.json``), plus
the shared Wan VAE, Wan T5 and tokenizer files through :mod:`models.wan.tiny`. The result loads with
:func:`models.extension.pipeline.load_components` exactly as a real download does.

Imports torch and safetensors. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.extension.transformer import ExtensionDiTConfig, ExtensionTransformer

SHARD_NAMES = (
    "diffusion_pytorch_model-00001-of-00002.safetensors",
    "diffusion_pytorch_model-00002-of-00002.safetensors",
)
INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"

# Small buckets (official keys, 16-pixel multiples): one or two latent tokens per frame, so a
# whole tiny render takes seconds on a CPU.
TINY_BUCKETS: dict[str, tuple[int, int]] = {"0.56": (16, 32), "1.00": (16, 16), "1.78": (32, 16)}


def tiny_transformer_config(text_dim: int) -> ExtensionDiTConfig:
    return ExtensionDiTConfig(
        model_type="t2v",
        text_len=512,
        in_dim=16,
        dim=32,
        ffn_dim=64,
        freq_dim=32,
        text_dim=text_dim,
        out_dim=16,
        num_heads=2,
        num_layers=2,
    )


def _config_json(config: ExtensionDiTConfig) -> dict[str, Any]:
    data: dict[str, Any] = {"_class_name": "WanModel", "_diffusers_version": "0.34.0"}
    for key in (
        "model_type",
        "text_len",
        "in_dim",
        "dim",
        "ffn_dim",
        "freq_dim",
        "out_dim",
        "num_heads",
        "num_layers",
        "eps",
        "text_dim",
    ):
        data[key] = getattr(config, key)
    return data


def write_transformer_folder(folder: Path, config: ExtensionDiTConfig, seed: int) -> None:
    """One DiT folder: config, two bfloat16 shards, index."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = ExtensionTransformer(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("modulation"):
                param.normal_(0.0, 0.5)
            elif "norm" in name and name.endswith("weight"):
                param.uniform_(0.8, 1.2)
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    keys = sorted(state)
    split = len(keys) // 2
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for shard, part in zip(SHARD_NAMES, (keys[:split], keys[split:]), strict=True):
        save_file({k: state[k] for k in part}, str(folder / shard), metadata={"format": "pt"})
        weight_map.update({k: shard for k in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (folder / INDEX_NAME).write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    (folder / "config.json").write_text(json.dumps(_config_json(config), indent=2))


def write_tiny_extension_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """Write a complete tiny extension checkpoint into ``folder`` (created) and return it.

    Returns:
        The folder, loadable with :func:`models.extension.pipeline.load_components` (``sizes`` not
        needed: every tiny size is in a config file or readable from the tensor shapes).
    """
    from models.wan import tiny as wan_tiny

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    text_dim = wan_tiny.write_wan_shared_files(root, seed=seed)
    config = tiny_transformer_config(text_dim)
    write_transformer_folder(root / "transformer", config, seed + 1)
    write_transformer_folder(root / "shot_transformer", config, seed + 2)
    return root
