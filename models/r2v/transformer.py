"""The SkyReels-V3 reference-to-video DiT (spec section 3.5).

The official ``SkyReelsA2WanI2v3DModel`` is diffusers 0.34's ``WanTransformer3DModel`` plus a
hand-written block offload. The network, its key names and its numerics are exactly diffusers' (the
golden ``r2v_transformer`` case is reproduced by the stock class), so :class:`R2VTransformer3DModel`
*is* that class: it only adds the official loader's tolerance for stray ``norm_added_q`` keys and the
size presets. Memory features (fp8 storage, block streaming, chunked FFN) are applied from outside
with diffusers hooks by :mod:`models.memory`; no model code is edited for them.

References travel as four extra latent frames after the noisy video frames
(``hidden_states = [B, 16, T + 4, h, w]``); the output covers all ``T + 4`` frames and the pipeline
keeps the first ``T``.

Imports torch and diffusers; never PySide6 or ``app``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from diffusers import WanTransformer3DModel

# Number of reference slots the model was trained with (official MAX_ALLOWED_REF_IMG_LENGTH).
REFERENCE_SLOTS = 4

# Constructor arguments of the full-size (14B) model, diffusers names (spec 2.7 / 3.2).
FULL_SIZE_CONFIG: dict[str, Any] = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": None,
    "added_kv_proj_dim": None,
    "rope_max_seq_len": 1024,
}

# The config fields the constructor understands (anything else in a config.json, such as
# ``_class_name`` or ``_diffusers_version``, is bookkeeping).
CONFIG_FIELDS = (*FULL_SIZE_CONFIG, "pos_embed_seq_len")


class R2VTransformer3DModel(WanTransformer3DModel):
    """diffusers ``WanTransformer3DModel`` as the R2V checkpoint uses it (T2V layout, 16 input
    channels, no image branch).

    Thread contract: a plain ``nn.Module``; use it from one thread at a time (the GPU worker).
    """

    # The official loader ignores these (an I2V-era key some exports carry); so do we.
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = ["norm_added_q"]


def config_from_dict(config: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments from a ``config.json`` / golden ``meta["config"]`` (sizes unchanged)."""
    kwargs = {key: value for key, value in config.items() if key in CONFIG_FIELDS}
    if "patch_size" in kwargs:
        kwargs["patch_size"] = tuple(kwargs["patch_size"])
    if kwargs.get("in_channels", 16) != 16:
        raise ValueError(
            f"R2V transformer config has in_channels={kwargs['in_channels']}; the reference-to-video "
            "model takes 16 (references are extra latent frames, not extra channels)"
        )
    return kwargs


def build_transformer(
    config: dict[str, Any], device: torch.device | str | None = None
) -> R2VTransformer3DModel:
    """A float32 model from ``config`` (random init; load weights afterwards)."""
    kwargs = config_from_dict(config)
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            return R2VTransformer3DModel(**kwargs)
    model = R2VTransformer3DModel(**kwargs)
    return model.to(device) if device is not None else model


def full_size_state_dict() -> dict[str, torch.Tensor]:
    """State dict of the full-size (14B) model built on the meta device (keys, shapes, dtypes only)."""
    return dict(build_transformer(FULL_SIZE_CONFIG, device="meta").state_dict())


def keeps_float32(name: str, model: torch.nn.Module | None = None) -> bool:
    """Whether parameter ``name`` stays float32 when the model runs in bfloat16.

    diffusers keeps every parameter whose dotted path contains one of ``_keep_in_fp32_modules``
    (``time_embedder``, ``scale_shift_table``, ``norm1/2/3``) in float32; the official pipeline loads
    with that rule, and these small tensors carry the modulation maths.
    """
    keep = (model or R2VTransformer3DModel)._keep_in_fp32_modules or []
    parts = name.split(".")
    return any(component in parts for component in keep)
