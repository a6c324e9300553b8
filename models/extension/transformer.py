"""The SkyReels-V3 video-extension DiT (official ``modules/transformer.py :: WanModel``, Wan 2.1 T2V-14B
layout under the original Wan key names).

Owns :class:`ExtensionTransformer` and its configuration. What sets it apart from plain Wan 2.1:

* per-frame timesteps ``t [B, F_total]``: every latent frame gets its own six modulation vectors;
* two sequence layouts: a single tensor (single shot: condition latents, then noisy latents along the
  frame axis) or a list ``[noisy, context, ...]`` (shot switching) whose context segments sit at
  rotary frame positions 1024, 1025, ... (table of 2048 positions, float32);
* the residual stream is rounded to bfloat16 at the end of every block, even in a float32 run. That
  rounding is part of the reference; :attr:`ExtensionTransformer.round_between_blocks` switches it off
  for the golden diagnostic only.

Precision follows the reference: in a float32 model everything is float32 apart from that rounding (the
next layer norm then sees a bfloat16 tensor and returns bfloat16, as PyTorch's ``layer_norm`` keeps its
input dtype). For a bfloat16 model :meth:`ExtensionTransformer.forward` runs under bfloat16 autocast like
the reference, with the time embedding and modulation math in float32. The float32 rotary product is
taken over token chunks and stored straight in the attention dtype (bit-identical to rotating all
tokens at once, then casting; :func:`models.wan.dit_blocks.apply_rope`).

Imports torch, ``models.wan.attention`` and ``models.wan.dit_blocks``. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
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

ROPE_POSITIONS = 2048
CONTEXT_ROPE_OFFSET = 1024  # first temporal rotary position of the shot-switching context frames


@dataclass(frozen=True)
class ExtensionDiTConfig(WanDiTSizes):
    """Constructor sizes under the official argument names (``config.json`` of ``transformer/``)."""

    window_size: tuple[int, int] = (-1, -1)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExtensionDiTConfig:
        """Build from a ``config.json`` dict; unknown keys (``_class_name`` ...) are kept in ``extra``.

        Unlike the official loader, ``text_dim`` is honoured when present (the real checkpoints have
        4096 either way; the tiny golden checkpoints need their own value).
        """
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        if "patch_size" in known:
            known["patch_size"] = tuple(int(v) for v in known["patch_size"])
        if "window_size" in known:
            known["window_size"] = tuple(int(v) for v in known["window_size"])
        config = cls(**known, extra={k: v for k, v in data.items() if k not in names})
        config.validate()
        return config

    def validate(self) -> None:
        if self.model_type != "t2v":
            raise ValueError(
                f"extension transformer config has model_type {self.model_type!r}; the extension "
                "pipelines need a 't2v' model (no CLIP image branch)"
            )
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.num_heads} heads of even size")
        if tuple(self.window_size) != (-1, -1):
            raise ValueError("windowed attention is not supported (the official model uses (-1, -1))")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data["patch_size"] = list(self.patch_size)
        data["window_size"] = list(self.window_size)
        return data


FULL_SIZE_CONFIG = ExtensionDiTConfig()


# ---------------------------------------------------------------------------------------------
# Precision helpers (rotary, sinusoid, embeddings and unpatchify are in models.wan.dit_blocks)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Full unmasked attention on ``[B, L, heads, d]``, scale ``1/sqrt(d)``; returns ``[B, L, heads, d]``.

    q/k/v are cast to ``dtype`` (the weight dtype: float32 in parity runs, bfloat16 on the GPU as the
    reference's flash-attention call does). The kernel is the one :mod:`models.wan.attention` selects.
    """
    return wan_attention(q.to(dtype), k.to(dtype), v.to(dtype))


def _float32_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A Linear evaluated in float32 whatever the weight dtype (the reference's float32 autocast regions)."""
    bias = layer.bias.float() if layer.bias is not None else None
    return F.linear(x.float(), layer.weight.float(), bias)


def _layer_norm(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The reference's layer norms: in a float32 model the output keeps the input dtype (so the
    bfloat16 residual after a block gives a bfloat16 norm, as PyTorch does); under bfloat16 autocast
    the norm runs in float32 (CUDA autocast's rule, applied here on every device)."""
    if isinstance(layer, nn.Identity):
        return x
    assert isinstance(layer, nn.LayerNorm)
    if torch.is_autocast_enabled(x.device.type):
        x = x.float()
    weight = layer.weight.to(x.dtype) if layer.weight is not None else None
    bias = layer.bias.to(x.dtype) if layer.bias is not None else None
    return F.layer_norm(x, layer.normalized_shape, weight, bias, layer.eps)


def _modulate(normed: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``LN(x)·(1 + scale) + shift`` per frame; ``normed`` is ``[B, F, tokens, C]``, result float32."""
    return normed.float() * (1 + scale) + shift


# ---------------------------------------------------------------------------------------------
# Weight-only float8 (the official --low_vram mode uses torchao's float8_weight_only)

FLOAT8_MAX = 448.0  # largest finite float8_e4m3fn


class Float8WeightLinear(nn.Module):
    """A Linear whose weight is stored as float8 e4m3 with one scale per output channel
    (``amax / 448``), dequantised to the scale dtype for every matmul, like torchao's
    ``float8_weight_only``. Halves the weight memory of bfloat16; the numbers change by the
    quantisation only."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        scale = weight.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FLOAT8_MAX
        self.register_buffer("qweight", (weight.float() / scale).to(torch.float8_e4m3fn))
        self.register_buffer("scale", scale.to(weight.dtype))
        self.bias = linear.bias
        self.in_features = linear.in_features
        self.out_features = linear.out_features

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.scale.dtype

    def dequantized_weight(self) -> torch.Tensor:
        return self.qweight.to(self.scale.dtype) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight(), self.bias)


def _weight_dtype(layer: nn.Module) -> torch.dtype:
    if isinstance(layer, Float8WeightLinear):
        return layer.compute_dtype
    return layer.weight.dtype  # type: ignore[union-attr,return-value]


def _block_tensors(block: nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers of a block (the float8 layers keep their weights in buffers)."""
    return [*block.parameters(), *block.buffers()]


def quantize_blocks_float8(model: ExtensionTransformer) -> int:
    """Replace every Linear inside the transformer blocks (q/k/v/o of both attentions and the FFN:
    ~99 % of the parameters) by :class:`Float8WeightLinear`. Embeddings and head keep their dtype.

    Returns:
        The number of layers converted.
    """
    count = 0
    for block in model.blocks:
        for parent in block.modules():
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear:
                    setattr(parent, name, Float8WeightLinear(child))
                    count += 1
    return count


# ---------------------------------------------------------------------------------------------
# Modules (attribute names are the official state-dict names)


class RMSNorm(nn.Module):
    """RMS norm over the last axis computed in float32; the product with the weight promotes."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        # The weight multiplies in place: the same products, one whole-sequence float32 copy fewer.
        return (x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)).mul_(self.weight)


class SelfAttention(AttentionProjections):
    def __init__(self, dim: int, num_heads: int, eps: float, qk_norm: bool = True) -> None:
        super().__init__(dim, num_heads, (lambda width: RMSNorm(width, eps)) if qk_norm else None)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        b, s = x.shape[:2]
        shape = (b, s, self.num_heads, self.head_dim)
        dtype = _weight_dtype(self.q)
        x = x.to(dtype)
        # The rotation comes back in the attention dtype, chunk by chunk: the same numbers as rotating
        # to float32 and letting _attention cast, without full-sequence float32 copies of q and k.
        q = apply_rope(self.norm_q(self.q(x)).view(shape), rope, dtype=dtype)
        k = apply_rope(self.norm_k(self.k(x)).view(shape), rope, dtype=dtype)
        v = self.v(x).view(shape)
        return self.o(_attention(q, k, v, dtype).flatten(2))


class CrossAttention(SelfAttention):
    """Text cross-attention (T2V: no image keys, no mask, no gate)."""

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        b = x.shape[0]
        q = self.norm_q(self.q(x)).view(b, -1, self.num_heads, self.head_dim)
        k = self.norm_k(self.k(context)).view(b, -1, self.num_heads, self.head_dim)
        v = self.v(context).view(b, -1, self.num_heads, self.head_dim)
        return self.o(_attention(q, k, v, _weight_dtype(self.q)).flatten(2))


class ExtensionBlock(nn.Module):
    def __init__(self, config: ExtensionDiTConfig) -> None:
        super().__init__()
        dim = config.dim
        self.norm1 = nn.LayerNorm(dim, eps=config.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, config.num_heads, config.eps, config.qk_norm)
        self.norm3: nn.Module = (
            nn.LayerNorm(dim, eps=config.eps, elementwise_affine=True)
            if config.cross_attn_norm
            else nn.Identity()
        )
        self.cross_attn = CrossAttention(dim, config.num_heads, config.eps, config.qk_norm)
        self.norm2 = nn.LayerNorm(dim, eps=config.eps, elementwise_affine=False)
        self.ffn = ffn(dim, config.ffn_dim)
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        self.ffn_chunk_tokens: int | None = None  # optional memory saver (same up to float rounding)

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        chunk = self.ffn_chunk_tokens
        if not chunk or x.shape[1] <= chunk:
            return self.ffn(x)
        return torch.cat([self.ffn(part) for part in x.split(chunk, dim=1)], dim=1)

    def forward(
        self,
        x: torch.Tensor,
        e0: torch.Tensor,
        rope: torch.Tensor,
        context: torch.Tensor,
        round_output: bool,
    ) -> torch.Tensor:
        """``x [B, L, C]`` (frame-major tokens), ``e0 [B, F, 6, C]`` float32; returns ``[B, L, C]``."""
        length = x.shape[1]
        frames = e0.shape[1]
        if length % frames:
            raise ValueError(f"{length} tokens do not split evenly into {frames} frames")
        mod = self.modulation.float().unsqueeze(0) + e0  # [B, F, 6, C]
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod[:, :, i : i + 1] for i in range(6))

        def per_frame(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(1, (frames, -1))

        # Residual updates: ``x + y * gate`` as ``(y * gate) + x`` summed into the fresh product (float
        # addition commutes, so the bits are the same) and each branch output dropped as soon as it is
        # added: fewer whole-sequence float32 copies live at once.
        y = self.self_attn(
            _modulate(per_frame(_layer_norm(self.norm1, x)), scale1, shift1).flatten(1, 2), rope
        )
        gated = per_frame(y).float() * gate1
        del y
        x = gated.add_(per_frame(x).float()).flatten(1, 2)
        del gated
        x = x + self.cross_attn(_layer_norm(self.norm3, x), context)
        y = self._ffn(_modulate(per_frame(_layer_norm(self.norm2, x)), scale2, shift2).flatten(1, 2))
        gated = per_frame(y).float() * gate2
        del y
        x = gated.add_(per_frame(x).float()).flatten(1, 2)
        return x.to(torch.bfloat16) if round_output else x


class Head(nn.Module):
    def __init__(self, config: ExtensionDiTConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.dim, eps=config.eps, elementwise_affine=False)
        self.head = nn.Linear(config.dim, math.prod(config.patch_size) * config.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, config.dim) / config.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """``x [B, L, C]``, ``e [B, F, C]`` float32 (unprojected time embedding)."""
        frames = e.shape[1]
        mod = self.modulation.float().unsqueeze(0) + e.unsqueeze(2)  # [B, F, 2, C]
        shift, scale = mod[:, :, 0:1], mod[:, :, 1:2]
        normed = _layer_norm(self.norm, x).unflatten(1, (frames, -1))
        return self.head(_modulate(normed, scale, shift).flatten(1, 2))


class ExtensionTransformer(nn.Module):
    """Video-extension DiT. Lives on the GPU worker; not thread-safe.

    Attributes:
        round_between_blocks: round the residual stream to bfloat16 after each block (reference
            behaviour; False only for the golden diagnostic).
    """

    def __init__(self, config: ExtensionDiTConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = ExtensionDiTConfig.from_dict(overrides)
        elif overrides:
            raise TypeError("pass either a config or keyword sizes, not both")
        config.validate()
        self.config = config
        dim = config.dim
        self.patch_embedding, self.text_embedding, self.time_embedding, self.time_projection = (
            input_embeddings(config.in_dim, dim, config.patch_size, config.text_dim, config.freq_dim)
        )
        self.blocks = nn.ModuleList([ExtensionBlock(config) for _ in range(config.num_layers)])
        self.head = Head(config)
        self.round_between_blocks = True
        self._offload: tuple[torch.device, torch.device] | None = None
        self._host_weights: list[list[torch.Tensor]] = []
        self._copy_stream: torch.cuda.Stream | None = None  # side stream of the block prefetch (CUDA)
        self._rope_cache: dict[torch.device, torch.Tensor] = {}

    # -- options --------------------------------------------------------------------------------

    def set_ffn_chunking(self, tokens: int | None) -> None:
        """Evaluate each FFN over at most ``tokens`` tokens at a time (lower peak memory; the same
        numbers up to float rounding: a short slice may take another matmul kernel)."""
        for block in self.blocks:
            block.ffn_chunk_tokens = tokens  # type: ignore[union-attr]

    def enable_block_offload(
        self, compute_device: torch.device | str, storage_device: torch.device | str = "cpu"
    ) -> None:
        """Keep the blocks' weights on ``storage_device`` and upload each block to ``compute_device``
        only while it runs (the official ``--low_vram`` block offload; numerically neutral).

        Weights are read-only, so a block is released by pointing its parameters back at the host
        copies: nothing is ever copied back. Host copies are pinned for a CUDA compute device, and the
        next block is copied on a side CUDA stream while the current one computes (see
        :meth:`_offloaded_blocks`); on other devices each block is uploaded when it is needed.
        Embeddings and head live on ``compute_device``. Works with bfloat16 and float8 blocks alike.
        """
        compute = torch.device(compute_device)
        storage = torch.device(storage_device)
        self.disable_block_offload()
        for name, child in self.named_children():
            if name != "blocks":
                child.to(compute)
        pin = compute.type == "cuda" and storage.type == "cpu"
        self._host_weights = []
        for block in self.blocks:
            hosts = []
            for param in _block_tensors(block):
                host = param.data.to(storage)
                if pin:
                    host = host.pin_memory()
                param.data = host
                hosts.append(host)
            self._host_weights.append(hosts)
        self._copy_stream = torch.cuda.Stream(compute) if pin else None
        self._offload = (compute, storage)

    def disable_block_offload(self) -> None:
        """Back to all weights on the compute device."""
        if self._offload is not None:
            self.blocks.to(self._offload[0])
        self._offload = None
        self._host_weights = []
        self._copy_stream = None

    @property
    def block_offload(self) -> tuple[torch.device, torch.device] | None:
        """``(compute device, storage device)`` while blocks are offloaded, else None."""
        return self._offload

    def _upload(self, index: int, device: torch.device) -> torch.cuda.Event | None:
        """Point block ``index`` at copies on ``device``. With the side stream the copies are only
        queued there; the returned event marks their end (the compute stream must wait on it)."""
        pairs = zip(_block_tensors(self.blocks[index]), self._host_weights[index], strict=True)
        stream = self._copy_stream
        if stream is None:
            for param, host in pairs:
                param.data = host.to(device, non_blocking=True)
            return None
        with torch.cuda.stream(stream):
            for param, host in pairs:
                param.data = host.to(device, non_blocking=True)  # from pinned memory: asynchronous
            copied = torch.cuda.Event()
            copied.record(stream)
        return copied

    def _release(self, index: int) -> None:
        for param, host in zip(_block_tensors(self.blocks[index]), self._host_weights[index], strict=True):
            param.data = host

    def _offloaded_blocks(
        self,
        hidden: torch.Tensor,
        block_args: tuple[Any, ...],
        between_blocks: Callable[[], None] | None,
    ) -> torch.Tensor:
        """Run the blocks with their weights uploaded one block ahead.

        On CUDA, block i+1 is copied on the side stream while block i computes; the compute stream
        waits on the copy's event before block i+1 starts. Block i-1 is released once the host has
        seen it finish (its event), which also keeps the host at most one block ahead of the GPU: at
        most two blocks' weights are on the device at a time (the planner's estimate). The copies are
        allocated on the side stream and read on the compute stream; releasing them only after that
        event keeps the allocator from handing their memory to the next copy too early. The arithmetic
        is the resident model's: only where the weights come from changes.
        """
        assert self._offload is not None
        compute = self._offload[0]
        on_stream = self._copy_stream is not None
        uploaded = [0]  # blocks whose parameters point at device copies, oldest first
        copied = self._upload(0, compute)
        finished: torch.cuda.Event | None = None  # end of the previous block on the compute stream
        try:
            for index, block in enumerate(self.blocks):
                if between_blocks is not None:
                    between_blocks()
                if copied is not None:
                    torch.cuda.current_stream(compute).wait_event(copied)
                hidden = block(hidden, *block_args)
                if finished is not None:
                    finished.synchronize()  # block index-1 is done: its weights may go
                if len(uploaded) > 1:
                    self._release(uploaded.pop(0))
                if on_stream:
                    finished = torch.cuda.Event()
                    finished.record(torch.cuda.current_stream(compute))
                if index + 1 < len(self.blocks):
                    copied = self._upload(index + 1, compute)
                    uploaded.append(index + 1)
            if finished is not None:
                finished.synchronize()
        except BaseException:
            if on_stream:  # a cancel between blocks: nothing queued may still read what is released
                torch.cuda.synchronize(compute)
            raise
        finally:
            for index in uploaded:
                self._release(index)
        return hidden

    # -- forward --------------------------------------------------------------------------------

    def _rope(self, device: torch.device) -> torch.Tensor:
        table = self._rope_cache.get(device)
        if table is None:
            table = rope_table(self.config.head_dim, ROPE_POSITIONS, dtype=torch.float32, device=device)
            self._rope_cache[device] = table
        return table

    def forward(
        self,
        x: torch.Tensor | Sequence[torch.Tensor],
        t: torch.Tensor,
        context: torch.Tensor,
        *,
        round_between_blocks: bool | None = None,
        between_blocks: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Flow prediction.

        Args:
            x: ``[B, in_dim, F, H, W]`` (condition frames first, then noisy frames; output covers all
                F) or a list ``[noisy [B, in_dim, T, H, W], context segment [B, in_dim, Tc, H, W], ...]``
                (output covers the T noisy frames only).
            t: ``[B, total latent frames]`` int64 timesteps in token order (condition frames: 0).
            context: ``[B, L_text, text_dim]`` masked text-encoder states.
            round_between_blocks: override :attr:`round_between_blocks` for this call.
            between_blocks: called before every block (the pipelines pass their cancel check, so a
                cancel is honoured within a step).

        Returns:
            float32 ``[B, out_dim, F_out, H, W]``.
        """
        weight_dtype = self.patch_embedding.weight.dtype
        if weight_dtype in (torch.bfloat16, torch.float16):
            device_type = self.patch_embedding.weight.device.type
            with torch.autocast(device_type=device_type, dtype=weight_dtype):
                return self._forward(x, t, context, round_between_blocks, between_blocks)
        return self._forward(x, t, context, round_between_blocks, between_blocks)

    def _forward(
        self,
        x: torch.Tensor | Sequence[torch.Tensor],
        t: torch.Tensor,
        context: torch.Tensor,
        round_between_blocks: bool | None,
        between_blocks: Callable[[], None] | None,
    ) -> torch.Tensor:
        cfg = self.config
        round_output = self.round_between_blocks if round_between_blocks is None else round_between_blocks
        weight = self.patch_embedding.weight
        inputs = [x] if isinstance(x, torch.Tensor) else list(x)
        if not inputs:
            raise ValueError("empty input list")
        embedded = [self.patch_embedding(item.to(weight.device)) for item in inputs]
        grid_f, grid_h, grid_w = embedded[0].shape[2:]
        for item in embedded[1:]:
            if tuple(item.shape[3:]) != (grid_h, grid_w):
                raise ValueError("context latents must have the same height and width as the noisy latents")
        if isinstance(x, torch.Tensor):
            segments = [(0, grid_f)]
        else:
            segments = [(0, grid_f)]
            offset = CONTEXT_ROPE_OFFSET
            for item in embedded[1:]:
                segments.append((offset, item.shape[2]))
                offset += item.shape[2]
        tokens = torch.cat([item.flatten(2).transpose(1, 2) for item in embedded], dim=1)
        total_frames = sum(n for _, n in segments)
        batch = tokens.shape[0]
        if tuple(t.shape) != (batch, total_frames):
            raise ValueError(
                f"t must be [batch, latent frames] = {[batch, total_frames]}, got {list(t.shape)}"
            )

        rope = rope_multipliers(self._rope(tokens.device), segments, grid_h, grid_w)

        with torch.autocast(device_type=tokens.device.type, enabled=False):
            sinus = timestep_sinusoid(t.flatten().to(tokens.device), cfg.freq_dim).to(weight.dtype)
            e = _float32_linear(
                self.time_embedding[2], F.silu(_float32_linear(self.time_embedding[0], sinus))
            )
            e0 = _float32_linear(self.time_projection[1], F.silu(e)).unflatten(1, (6, cfg.dim))
            e = e.view(batch, total_frames, cfg.dim)
            e0 = e0.view(batch, total_frames, 6, cfg.dim)

        text = self.text_embedding(context.to(weight.device))

        hidden = tokens
        del tokens, embedded  # the blocks' input is all that is needed of them (a whole-sequence copy each)
        if self._offload is not None:
            hidden = self._offloaded_blocks(hidden, (e0, rope, text, round_output), between_blocks)
        else:
            for block in self.blocks:
                if between_blocks is not None:
                    between_blocks()
                hidden = block(hidden, e0, rope, text, round_output)
        out = self.head(hidden, e)

        if len(segments) > 1:
            out = out[:, : grid_f * grid_h * grid_w]
        return self.unpatchify(out, (grid_f, grid_h, grid_w)).float()

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, f*h*w, p*q*r*C] -> [B, C, f*p, h*q, w*r]``."""
        return unpatchify(x, grid, self.config.patch_size, self.config.out_dim)


def build_transformer(config: ExtensionDiTConfig, device: torch.device | str = "cpu") -> ExtensionTransformer:
    """Construct without initialising weights on ``device`` (``"meta"`` for loading with ``assign``)."""
    with torch.device(device):
        return ExtensionTransformer(config)


def full_size_state_dict() -> dict[str, torch.Tensor]:
    """State dict of the full-size (14B) model on the meta device (manifest check)."""
    return dict(build_transformer(FULL_SIZE_CONFIG, "meta").state_dict())
