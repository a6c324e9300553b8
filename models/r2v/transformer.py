"""The SkyReels-V3 reference-to-video DiT (spec section 3.5).

The official ``SkyReelsA2WanI2v3DModel`` is diffusers 0.34's ``WanTransformer3DModel`` plus a
hand-written block offload. The network, its key names and its numerics are exactly diffusers' (the
golden ``r2v_transformer`` case is reproduced by the stock class), so :class:`R2VTransformer3DModel`
*is* that class: it only adds the official loader's tolerance for stray ``norm_added_q`` keys and the
size presets, and gives every block's self-attention :class:`ChunkedRopeAttnProcessor`: diffusers'
Wan processor with the float64 rotary product taken over token chunks of bounded size (bit-identical
output, no full-sequence float64 copies of q and k). Memory features (fp8 storage, block streaming,
chunked FFN) are applied from outside with diffusers hooks by :mod:`models.memory`; no model code is
edited for them.

References travel as four extra latent frames after the noisy video frames
(``hidden_states = [B, 16, T + 4, h, w]``); the output covers all ``T + 4`` frames and the pipeline
keeps the first ``T``.

Imports torch and diffusers; never PySide6 or ``app``.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor2_0

from models.wan.dit_blocks import rope_chunk_tokens, rotate_in_chunks

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


class ChunkedRopeAttnProcessor(WanAttnProcessor2_0):
    """diffusers 0.34's ``WanAttnProcessor2_0`` with the rotary product taken over token chunks.

    The stock processor rotates all of q and k at once in float64 (float32 on MPS): a float64 copy and a
    complex product of the same size per tensor, 2 x 4.8 GiB for 126,000 tokens at width 5120, while q,
    k and v are alive. This one writes the rotation into one result of q's dtype and layout,
    :data:`models.wan.dit_blocks.ROPE_CHUNK_BYTES` of float64 at a time; every other operation is the
    stock one, in the stock order, so the output is bit-identical. Calls it does not cover (no rotary
    embedding, cross-attention, the I2V image branch) go to the stock processor unchanged.

    Holds no weights: setting it changes no state-dict key.
    """

    def __init__(self, chunk_tokens: int | None = None) -> None:
        super().__init__()
        self.chunk_tokens = chunk_tokens  # None: from ROPE_CHUNK_BYTES (tests set it small)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if rotary_emb is None or encoder_hidden_states is not None or attn.add_k_proj is not None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)  # type: ignore[no-any-return]
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        def heads_first(t: torch.Tensor) -> torch.Tensor:  # [B, L, H*D] -> [B, H, L, D] (a view)
            return t.unflatten(2, (attn.heads, -1)).transpose(1, 2)

        query = self._rotate(heads_first(query), rotary_emb)
        key = self._rotate(heads_first(key), rotary_emb)
        out = F.scaled_dot_product_attention(
            query, key, heads_first(value), attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))  # type: ignore[no-any-return]

    def _rotate(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        """``x [B, H, L, D]`` times ``freqs [1, 1, L, D/2]`` in float64 (float32 on MPS), cast to x's dtype."""
        real = torch.float32 if x.device.type == "mps" else torch.float64
        chunk = self.chunk_tokens or rope_chunk_tokens(x, 2, real)
        if x.shape[2] <= chunk:  # one chunk: the stock sequence of operations
            pairs = torch.view_as_complex(x.to(real).unflatten(3, (-1, 2)))
            return torch.view_as_real(pairs * freqs).flatten(3, 4).type_as(x)
        # empty_like keeps x's (heads-first view) strides, which the stock result has too.
        out = torch.empty_like(x)
        return rotate_in_chunks(
            x, freqs, token_dim=2, real=real, out=out, chunk_tokens=chunk, round_to_float32=False
        )


class R2VTransformer3DModel(WanTransformer3DModel):
    """diffusers ``WanTransformer3DModel`` as the R2V checkpoint uses it (T2V layout, 16 input
    channels, no image branch), its self-attention through :class:`ChunkedRopeAttnProcessor`.

    Thread contract: a plain ``nn.Module``; use it from one thread at a time (the GPU worker).
    """

    # The official loader ignores these (an I2V-era key some exports carry); so do we.
    _keys_to_ignore_on_load_unexpected: ClassVar[list[str]] = ["norm_added_q"]

    # ``wraps`` keeps the stock signature visible to diffusers' config machinery (``from_config`` and
    # ``from_pretrained`` read the constructor's parameters), which this override must not hide.
    @functools.wraps(WanTransformer3DModel.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        processor = ChunkedRopeAttnProcessor()
        for block in self.blocks:
            block.attn1.set_processor(processor)


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
