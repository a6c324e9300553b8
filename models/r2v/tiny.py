"""A complete tiny R2V checkpoint in the official diffusers folder layout, made from a seed.

Used by tests, the ``tiny`` model choice (CPU demo) and benchmarks: same files and key names as the
real ``Skywork/SkyReels-V3-R2V-14B`` folder (``model_index.json``, ``tokenizer/``, ``text_encoder/``,
``transformer/``, ``vae/``, ``scheduler/``), sizes small enough that a whole render takes well under
a second per step on a CPU. Weights are random; outputs are noise-like pictures.

:data:`TINY_BUCKET_TABLES` keeps the official bucket keys with frame sizes shrunk ~20x, so the
selection code runs unchanged on tiny frames.

Imports torch, diffusers, transformers and tokenizers; never PySide6 or ``app``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from models.buckets import ASPECT_RATIO_CONFIG, round_down_16

TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 2,
    "attention_head_dim": 32,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 32,
    "ffn_dim": 128,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}

TINY_TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_decoder_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "dropout_rate": 0.0,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "gated-gelu",
    "is_encoder_decoder": True,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "eos_token_id": 1,
    "decoder_start_token_id": 0,
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 4,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
    "latents_mean": [
        -0.7571,
        -0.7089,
        -0.9113,
        0.1075,
        -0.1745,
        0.9653,
        -0.1517,
        1.5508,
        0.4134,
        -0.0715,
        0.5517,
        -0.3632,
        -0.1922,
        -0.9497,
        0.2503,
        -0.2921,
    ],
    "latents_std": [
        2.8184,
        1.4541,
        2.3275,
        2.6558,
        1.2196,
        1.7708,
        2.6052,
        2.0743,
        3.2687,
        2.1526,
        2.8652,
        1.5579,
        1.6382,
        1.1253,
        2.8251,
        1.916,
    ],
}

# Official keys, sizes divided by 20 (then the usual round-down to 16 applies; never below 16).
TINY_BUCKET_TABLES: dict[str, dict[str, tuple[int, int]]] = {
    resolution: {key: (max(16, h // 20), max(16, w // 20)) for key, (h, w) in table.items()}
    for resolution, table in ASPECT_RATIO_CONFIG.items()
}

MODEL_INDEX = {
    "_class_name": "WanPipeline",
    "_diffusers_version": "0.34.0",
    "scheduler": ["diffusers", "UniPCMultistepScheduler"],
    "text_encoder": ["transformers", "UMT5EncoderModel"],
    "tokenizer": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _save_tokenizer(folder: Path) -> int:
    """The shared tiny UMT5-style tokenizer (``<pad>``=0, ``</s>``=1, ``<unk>``=2, trailing ``</s>``);
    returns its vocabulary size (the text encoder's embedding table is a bit larger, as in the real model)."""
    from transformers import AutoTokenizer

    from models.wan.tiny import write_tiny_umt5_tokenizer

    write_tiny_umt5_tokenizer(folder)
    return len(AutoTokenizer.from_pretrained(str(folder)))


def write_tiny_checkpoint(root: str | Path, seed: int = 0) -> Path:
    """Write a complete tiny R2V folder at ``root`` (created; existing files are overwritten).

    The same ``seed`` always gives the same weights.
    """
    from diffusers import AutoencoderKLWan
    from transformers import UMT5Config, UMT5EncoderModel

    from models.r2v.pipeline import make_scheduler
    from models.r2v.transformer import build_transformer

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_json(root / "model_index.json", MODEL_INDEX)

    vocab = _save_tokenizer(root / "tokenizer")

    torch.manual_seed(seed)
    config = UMT5Config(vocab_size=vocab + 8, **TINY_TEXT_ENCODER_CONFIG)
    encoder = UMT5EncoderModel(config).eval().to(torch.bfloat16)
    encoder.save_pretrained(str(root / "text_encoder"), safe_serialization=True)

    torch.manual_seed(seed + 1)
    transformer = build_transformer(TINY_TRANSFORMER_CONFIG)
    _write_json(
        root / "transformer" / "config.json",
        {"_class_name": "WanTransformer3DModel", "_diffusers_version": "0.34.0", **TINY_TRANSFORMER_CONFIG},
    )
    save_file(
        {k: v.detach().to(torch.bfloat16).contiguous() for k, v in transformer.state_dict().items()},
        str(root / "transformer" / "diffusion_pytorch_model.safetensors"),
    )

    torch.manual_seed(seed + 2)
    vae = AutoencoderKLWan(**TINY_VAE_CONFIG)
    _write_json(
        root / "vae" / "config.json",
        {"_class_name": "AutoencoderKLWan", "_diffusers_version": "0.34.0", **TINY_VAE_CONFIG},
    )
    save_file(
        {k: v.detach().float().contiguous() for k, v in vae.state_dict().items()},
        str(root / "vae" / "diffusion_pytorch_model.safetensors"),
    )

    make_scheduler().save_config(str(root / "scheduler"))
    return root


def tiny_bucket_size(resolution: str, key: str) -> tuple[int, int]:
    """(height, width) the tiny table gives for ``key`` after rounding (handy in tests)."""
    height, width = TINY_BUCKET_TABLES[resolution][key]
    return round_down_16(height), round_down_16(width)
