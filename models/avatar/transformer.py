"""Talking-avatar DiT (SkyReels-V3 A2V, "19B"): the Wan2.1 I2V-14B backbone with CLIP image tokens, an
audio projector and one audio cross-attention per block, under the official (original Wan) key names so
the released ``*.safetensors`` shards load with ``strict=True``.

Numerics follow the official ``modules/transformer_a2v.py`` (spec section 5.6): the model computes in the
dtype of its weights (bfloat16 in production, float32 in the golden tests), the sinusoidal timestep
embedding is built in float64 and cast to the weight dtype, layer norms and q/k RMS norms run in float32
and cast back, and the 3-D rotary embedding is applied in float64 (over token chunks of bounded size,
bit-identical to one piece; see :func:`models.wan.dit_blocks.apply_rope`). Attention is full and unmasked.

Single-person only: the official multi-speaker routing (``ref_target_masks`` + attention-map RoPE) is
unreachable with one audio stream and is not implemented; ``ref_target_masks`` is accepted and ignored.

Must not import: PySide6, ``app``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.wan.attention import attention as wan_attention
from models.wan.dit_blocks import (
    AttentionProjections,
    WanDiTSizes,
    apply_rope,
    ffn,
    input_embeddings,
    rope_multipliers,
    rope_table,
    timestep_sinusoid,
    unpatchify,
)

IMAGE_TOKENS = 257  # CLIP ViT-H/14 at 224 px: class token + 16 x 16 patches; hard-wired in the official code
ROPE_POSITIONS = 1024
# Submodules kept in the compute dtype under fp8 storage (small, or precision-sensitive).
LAYERWISE_CASTING_SKIP = (
    "patch_embedding",
    "text_embedding",
    "time_embedding",
    "time_projection",
    "img_emb",
    "audio_proj",
    "norm",
    "head",
)


@dataclass(frozen=True)
class AvatarTransformerConfig(WanDiTSizes):
    """Constructor sizes. Field names are the official ``config.json`` / ``WanModel`` argument names, plus
    the two sizes the official code hard-codes: ``clip_dim`` (``MLPProj(1280, dim)``) and the audio
    projector's input layout ``audio_layers`` x ``audio_channels`` (``AudioProjModel(blocks=12,
    channels=768)``, i.e. the wav2vec2 layer count and width)."""

    model_type: str = "i2v"  # fields redeclared here keep their place in the official order
    in_dim: int = 36
    eps: float = 1e-6
    audio_window: int = 5
    intermediate_dim: int = 512
    output_dim: int = 768
    context_tokens: int = 32
    vae_scale: int = 4
    norm_input_visual: bool = True
    norm_output_audio: bool = True
    clip_dim: int = 1280
    audio_layers: int = 12
    audio_channels: int = 768

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> AvatarTransformerConfig:
        """Build from an official ``config.json`` (unknown keys such as ``_class_name``, ``window_size``,
        ``qk_norm`` and ``cross_attn_norm`` are ignored: the official class fixes them)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in {**data, **overrides}.items() if k in known}
        if "patch_size" in values:
            values["patch_size"] = tuple(values["patch_size"])
        config = cls(**values)
        if config.model_type != "i2v":
            raise ValueError(
                f"the avatar transformer needs model_type 'i2v', the config says {config.model_type!r}"
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full unmasked attention on [B, L, heads, head_dim] tensors (scale 1/sqrt(head_dim)) in the dtype of
    ``v`` (the official kernels take the weight dtype; the self-attention's rotary embedding already
    hands q/k back in it, rounded through float32 as the official float32 rotation then cast does)."""
    return wan_attention(q.to(v.dtype), k.to(v.dtype), v)


class RMSNorm(nn.Module):
    """RMS norm over the last axis computed in float32, cast back, then scaled by a learned weight."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back to the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = False) -> None:
        super().__init__(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class SelfAttention(AttentionProjections):
    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__(dim, num_heads, lambda width: RMSNorm(width, eps=eps))

    def forward(self, x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
        b, s = x.shape[:2]
        shape = (b, s, self.num_heads, self.head_dim)
        # Rotated q/k come back in x's dtype (= v's: attention casts q and k to it), chunk by chunk:
        # the same numbers as rotating to float32 and casting, without full-sequence float32/64 copies.
        q = apply_rope(self.norm_q(self.q(x)).view(shape), rotations, dtype=x.dtype)
        k = apply_rope(self.norm_k(self.k(x)).view(shape), rotations, dtype=x.dtype)
        v = self.v(x).view(shape)
        out = attention(q, k, v).type_as(x)
        return self.o(out.flatten(2))


class ImageTextCrossAttention(SelfAttention):
    """Cross-attention to [image tokens (257) | text tokens]: two attentions sharing q, summed before o."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__(dim, num_heads, eps)
        self.k_img = nn.Linear(dim, dim)
        self.v_img = nn.Linear(dim, dim)
        self.norm_k_img = RMSNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        b = x.shape[0]
        heads = (b, -1, self.num_heads, self.head_dim)
        image, text = context[:, :IMAGE_TOKENS], context[:, IMAGE_TOKENS:]
        q = self.norm_q(self.q(x)).view(heads)
        text_out = attention(q, self.norm_k(self.k(text)).view(heads), self.v(text).view(heads))
        image_out = attention(
            q, self.norm_k_img(self.k_img(image)).view(heads), self.v_img(image).view(heads)
        )
        return self.o(text_out.flatten(2) + image_out.flatten(2))


class AudioCrossAttention(nn.Module):
    """Visual tokens of latent frame f attend to the audio tokens of frame f only (no q/k norm)."""

    def __init__(self, dim: int, audio_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(audio_dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, audio_tokens: torch.Tensor, frames: int) -> torch.Tensor:
        # x: [B, frames * S, dim]; audio_tokens: [B * frames, tokens, audio_dim]
        batch, length, dim = x.shape
        rows = x.reshape(batch * frames, length // frames, dim)
        q = self.q_linear(rows).view(rows.shape[0], rows.shape[1], self.num_heads, self.head_dim)
        kv = self.kv_linear(audio_tokens).view(
            audio_tokens.shape[0], audio_tokens.shape[1], 2, self.num_heads, -1
        )
        out = attention(q, kv[:, :, 0], kv[:, :, 1]).reshape(rows.shape)
        return self.proj(out).reshape(batch, length, dim)


class AvatarBlock(nn.Module):
    def __init__(self, config: AvatarTransformerConfig) -> None:
        super().__init__()
        dim, eps = config.dim, config.eps
        self.norm1 = LayerNorm32(dim, eps)
        self.self_attn = SelfAttention(dim, config.num_heads, eps)
        self.norm3 = LayerNorm32(dim, eps, elementwise_affine=True)
        self.cross_attn = ImageTextCrossAttention(dim, config.num_heads, eps)
        self.norm2 = LayerNorm32(dim, eps)
        self.ffn = ffn(dim, config.ffn_dim)
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.audio_cross_attn = AudioCrossAttention(dim, config.output_dim, config.num_heads)
        self.norm_x = (
            LayerNorm32(dim, eps, elementwise_affine=True) if config.norm_input_visual else nn.Identity()
        )

    def forward(
        self,
        x: torch.Tensor,
        e0: torch.Tensor,
        grid: tuple[int, int, int],
        rotations: torch.Tensor,
        context: torch.Tensor,
        audio_tokens: torch.Tensor,
    ) -> torch.Tensor:
        dtype = x.dtype
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + e0).chunk(6, dim=1)
        x = x + self.self_attn(self.norm1(x) * (1 + scale1) + shift1, rotations) * gate1
        x = x.to(dtype)
        x = x + self.cross_attn(self.norm3(x), context)
        x = x + self.audio_cross_attn(self.norm_x(x), audio_tokens, grid[0])
        x = x + self.ffn(self.norm2(x) * (1 + scale2) + shift2) * gate2
        return x.to(dtype)


class Head(nn.Module):
    def __init__(self, config: AvatarTransformerConfig) -> None:
        super().__init__()
        dim = config.dim
        self.norm = LayerNorm32(dim, config.eps)
        self.head = nn.Linear(dim, math.prod(config.patch_size) * config.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation + e.unsqueeze(1)).chunk(2, dim=1)
        return self.head(self.norm(x) * (1 + scale) + shift)


class ImageProjection(nn.Module):
    """CLIP features [B, 257, clip_dim] -> image context tokens [B, 257, dim] (``img_emb.proj.*``)."""

    def __init__(self, clip_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.LayerNorm(clip_dim),
            nn.Linear(clip_dim, clip_dim),
            nn.GELU(),
            nn.Linear(clip_dim, dim),
            nn.LayerNorm(dim),
        )

    def forward(self, clip_features: torch.Tensor) -> torch.Tensor:
        return self.proj(clip_features)


class AudioProjection(nn.Module):
    """Per-latent-frame audio windows -> ``context_tokens`` audio tokens of width ``output_dim``.

    Frame 0 uses its whole ``audio_window``-entry window (``proj1``); every later latent frame uses a run of
    ``audio_window + vae_scale - 1`` entries gathered from its ``vae_scale`` video frames (``proj1_vf``)."""

    def __init__(self, config: AvatarTransformerConfig) -> None:
        super().__init__()
        per_entry = config.audio_layers * config.audio_channels
        self.context_tokens = config.context_tokens
        self.output_dim = config.output_dim
        self.proj1 = nn.Linear(config.audio_window * per_entry, config.intermediate_dim)
        self.proj1_vf = nn.Linear(
            (config.audio_window + config.vae_scale - 1) * per_entry, config.intermediate_dim
        )
        self.proj2 = nn.Linear(config.intermediate_dim, config.intermediate_dim)
        self.proj3 = nn.Linear(config.intermediate_dim, config.context_tokens * config.output_dim)
        self.norm = nn.LayerNorm(config.output_dim) if config.norm_output_audio else nn.Identity()

    def forward(self, first: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        # first: [B, 1, window, layers, channels]; later: [B, T-1, window_vf, layers, channels]
        batch = first.shape[0]
        first_rows = torch.relu(self.proj1(first.flatten(2)))
        later_rows = torch.relu(self.proj1_vf(later.flatten(2)))
        rows = torch.cat([first_rows, later_rows], dim=1)  # [B, T, intermediate]
        frames = rows.shape[1]
        hidden = torch.relu(self.proj2(rows.reshape(batch * frames, -1)))
        tokens = self.proj3(hidden).reshape(batch * frames, self.context_tokens, self.output_dim)
        return self.norm(tokens).reshape(batch, frames, self.context_tokens, self.output_dim)


def gather_audio_windows(
    audio: torch.Tensor, window: int, vae_scale: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split per-video-frame windows [B, 1 + vae_scale*(T-1), window, layers, channels] into frame 0's
    window and, per later latent frame, the first frame's entries [0..mid], the middle frames' centre
    entry and the last frame's entries [mid..window-1] (a contiguous run of audio positions)."""
    first = audio[:, :1]
    later = audio[:, 1:]
    batch, count = later.shape[:2]
    groups = later.reshape(batch, count // vae_scale, vae_scale, *later.shape[2:])
    mid = window // 2
    parts = [
        groups[:, :, 0, : mid + 1],
        groups[:, :, 1:-1, mid],
        groups[:, :, -1, mid:],
    ]
    return first, torch.cat(parts, dim=2)


class AvatarTransformer(nn.Module):
    """The talking-avatar DiT. Lives on the GPU worker; not thread-safe.

    ``forward(x, t, context, clip_features, y, audio)`` predicts the flow velocity for ONE sample
    (the avatar sampler integrates its negative; see ``models.avatar.schedule``)."""

    def __init__(self, config: AvatarTransformerConfig) -> None:
        super().__init__()
        if config.dim % config.num_heads or (config.dim // config.num_heads) % 2:
            raise ValueError("dim must split into an even head size")
        self.config = config
        dim = config.dim
        self.patch_embedding, self.text_embedding, self.time_embedding, self.time_projection = (
            input_embeddings(config.in_dim, dim, config.patch_size, config.text_dim, config.freq_dim)
        )
        self.blocks = nn.ModuleList([AvatarBlock(config) for _ in range(config.num_layers)])
        self.head = Head(config)
        self.img_emb = ImageProjection(config.clip_dim, dim)
        self.audio_proj = AudioProjection(config)

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (the patch embedding's, which fp8 storage leaves alone)."""
        return self.patch_embedding.weight.dtype

    def enable_layerwise_casting(
        self, storage_dtype: torch.dtype = torch.float8_e4m3fn, compute_dtype: torch.dtype = torch.bfloat16
    ) -> None:
        """Store the blocks' Linear weights in ``storage_dtype`` and upcast each layer to ``compute_dtype``
        for its matmul (diffusers layerwise casting, as ``ModelMixin.enable_layerwise_casting``). The
        embeddings, projectors, norms and head keep ``compute_dtype``. Not numerically neutral."""
        from diffusers.hooks import apply_layerwise_casting

        apply_layerwise_casting(
            self,
            storage_dtype=storage_dtype,
            compute_dtype=compute_dtype,
            skip_modules_pattern=LAYERWISE_CASTING_SKIP,
        )

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        clip_features: torch.Tensor,
        y: torch.Tensor,
        audio: torch.Tensor,
    ) -> torch.Tensor:
        """Args:
            x: [16, T, h, w] noisy latent of one sample.
            t: [1] continuous timestep (0..1000).
            context: [L, text_dim] text states (zero-padded to ``text_len`` here).
            clip_features: [1, 257, clip_dim].
            y: [1, 4 + 16, T, h, w] mask channels and condition latent.
            audio: [1, 1 + vae_scale*(T-1), audio_window, layers, channels] per-video-frame audio windows.

        Returns:
            [1, out_dim, T, h, w] prediction in the weight dtype.
        """
        config = self.config
        dtype = self.dtype
        tokens_in = torch.cat([x.unsqueeze(0).to(dtype), y.to(dtype)], dim=1)

        e = self.time_embedding(timestep_sinusoid(t, config.freq_dim).to(dtype))
        e0 = self.time_projection(e).unflatten(1, (6, config.dim))

        patches = self.patch_embedding(tokens_in)
        grid = (patches.shape[2], patches.shape[3], patches.shape[4])
        hidden = patches.flatten(2).transpose(1, 2)

        if context.shape[0] > config.text_len:
            raise ValueError(
                f"text context has {context.shape[0]} rows, the model takes at most {config.text_len}"
            )
        padded = torch.cat([context, context.new_zeros(config.text_len - context.shape[0], context.shape[1])])
        text = self.text_embedding(padded.unsqueeze(0).to(dtype))
        full_context = torch.cat([self.img_emb(clip_features.to(dtype)), text], dim=1).to(hidden.dtype)

        first, later = gather_audio_windows(audio.to(dtype), config.audio_window, config.vae_scale)
        audio_tokens = self.audio_proj(first, later)  # [1, T, tokens, output_dim]
        audio_tokens = audio_tokens.reshape(-1, config.context_tokens, config.output_dim).to(hidden.dtype)

        # The rotary table is built in float64 on the CPU, then moved (official order of operations).
        table = rope_table(config.head_dim, ROPE_POSITIONS, dtype=torch.float64)
        rotations = rope_multipliers(table, [(0, grid[0])], grid[1], grid[2]).to(hidden.device)
        for block in self.blocks:
            hidden = block(hidden, e0, grid, rotations, full_context, audio_tokens)
        out = self.head(hidden, e)
        return self._unpatchify(out, grid)

    def _unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return unpatchify(tokens[:1, : math.prod(grid)], grid, self.config.patch_size, self.config.out_dim)


def load_avatar_transformer(
    config: AvatarTransformerConfig, state_dict: dict[str, torch.Tensor], dtype: torch.dtype = torch.bfloat16
) -> AvatarTransformer:
    """Build on the meta device and adopt ``state_dict`` strictly (official key names), cast to ``dtype``."""
    with torch.device("meta"):
        model = AvatarTransformer(config)
    model.load_state_dict({k: v.to(dtype) for k, v in state_dict.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def full_size_state_dict() -> dict[str, torch.Tensor]:
    """The full-size (18.9 B) avatar DiT on the meta device: keys, shapes and dtypes of the release."""
    with torch.device("meta"):
        model = AvatarTransformer(AvatarTransformerConfig())
    return dict(model.state_dict())


__all__: Sequence[str] = [
    "AvatarTransformer",
    "AvatarTransformerConfig",
    "full_size_state_dict",
    "gather_audio_windows",
    "load_avatar_transformer",
]
