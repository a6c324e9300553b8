"""The UMT5-XXL text encoder in the Wan ``models_t5_umt5-xxl-enc-bf16.pth`` key format (spec 2.2).

Owns :class:`WanT5EncoderModel` (the network: ``token_embedding``, ``blocks.{i}.{norm1,attn,norm2,ffn,
pos_embedding}``, ``norm``; no biases) and :class:`WanT5Encoder`, what the extension and avatar
pipelines call:

* ``WanT5Encoder.from_pth(pth, tokenizer_dir, device, dtype, text_len=512)``: sizes are read from the
  file's tensor shapes (so tiny test checkpoints load with the same code), loaded strictly.
* ``encode(prompts) -> Tensor [B, text_len, dim]``: exactly the official ``T5EncoderModel.encode``:
  encoder output times the attention mask (padded positions exactly zero), in the model dtype.
* ``encode_trimmed(prompts) -> list[Tensor [L_i, dim]]``: the same, each row cut to its token count.
* ``tokenize(prompts) -> (ids, mask)``.
* Memory: ``from_pth(..., fp8=True)`` / ``enable_fp8_storage()`` keep the Linear weights in
  float8_e4m3fn (upcast per layer); ``execution_device`` for weights streamed by offload hooks.

Numerics follow the official module: RMS norm with the variance in float32 (result cast back to the
weight dtype when that is half precision), no attention scaling, per-layer relative position bias
plus the dtype minimum on padded keys, softmax in float32, gated FFN ``fc2(fc1(x) * gelu_tanh(gate(x)))``.

Imports torch (transformers via the tokenizer). Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.wan.loading import PathLike, load_state_dict_file, load_strict, meta_state_dict
from models.wan.tokenizer import TEXT_LEN, WanTokenizer

__all__ = [
    "FULL_SIZE_CONFIG",
    "WanT5Encoder",
    "WanT5EncoderModel",
    "config_from_state_dict",
    "full_size_state_dict",
]

# umt5_xxl(encoder_only=True) as the official code builds it (no config file carries these).
FULL_SIZE_CONFIG: dict[str, Any] = {
    "vocab_size": 256384,
    "dim": 4096,
    "dim_attn": 4096,
    "dim_ffn": 10240,
    "num_heads": 64,
    "encoder_layers": 24,
    "num_buckets": 32,
    "shared_pos": False,
}

# Largest relative distance with its own log-spaced bucket.
MAX_DISTANCE = 128


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GELUTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _gelu_tanh(x)


class T5RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)
        if self.weight.dtype in (torch.float16, torch.bfloat16):
            x = x.type_as(self.weight)
        return self.weight * x


class RelativePositionBias(nn.Module):
    """Bidirectional T5 relative-position buckets -> per-head bias ``[1, heads, Lq, Lk]``."""

    def __init__(self, num_buckets: int, num_heads: int, max_distance: int = MAX_DISTANCE) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def buckets(self, lq: int, lk: int, device: torch.device) -> torch.Tensor:
        rel = torch.arange(lk, device=device).unsqueeze(0) - torch.arange(lq, device=device).unsqueeze(1)
        half = self.num_buckets // 2
        base = (rel > 0).long() * half
        dist = rel.abs()
        exact = half // 2
        # Same float32 op order as the reference so bucket boundaries agree; distance 0 gives -inf
        # here but is taken from the exact branch.
        log_part = torch.log(dist.float() / exact) / math.log(self.max_distance / exact) * (half - exact)
        large = (exact + log_part.long()).clamp(max=half - 1)
        return base + torch.where(dist < exact, dist, large)

    def forward(self, lq: int, lk: int) -> torch.Tensor:
        idx = self.buckets(lq, lk, self.embedding.weight.device)
        return self.embedding(idx).permute(2, 0, 1).unsqueeze(0).contiguous()


class T5SelfAttention(nn.Module):
    def __init__(self, dim: int, dim_attn: int, num_heads: int) -> None:
        super().__init__()
        if dim_attn % num_heads:
            raise ValueError(f"dim_attn {dim_attn} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim_attn // num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, pos_bias: torch.Tensor | None
    ) -> torch.Tensor:
        b, n, c = x.shape[0], self.num_heads, self.head_dim
        q = self.q(x).view(b, -1, n, c)
        k = self.k(x).view(b, -1, n, c)
        v = self.v(x).view(b, -1, n, c)
        bias = x.new_zeros(b, n, q.shape[1], k.shape[1])
        if pos_bias is not None:
            bias = bias + pos_bias
        if mask is not None:
            bias = bias.masked_fill(mask.view(b, 1, 1, -1) == 0, torch.finfo(x.dtype).min)
        # T5 does not scale the logits.
        logits = torch.einsum("binc,bjnc->bnij", q, k) + bias
        weights = F.softmax(logits.float(), dim=-1).type_as(logits)
        out = torch.einsum("bnij,bjnc->binc", weights, v)
        return self.o(out.reshape(b, -1, n * c))


class T5FeedForward(nn.Module):
    def __init__(self, dim: int, dim_ffn: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), GELUTanh())
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


def _fp16_clamp(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float16 and torch.isinf(x).any():
        limit = torch.finfo(x.dtype).max - 1000
        x = x.clamp(min=-limit, max=limit)
    return x


class T5Block(nn.Module):
    def __init__(
        self, dim: int, dim_attn: int, dim_ffn: int, num_heads: int, num_buckets: int, shared_pos: bool
    ) -> None:
        super().__init__()
        self.norm1 = T5RMSNorm(dim)
        self.attn = T5SelfAttention(dim, dim_attn, num_heads)
        self.norm2 = T5RMSNorm(dim)
        self.ffn = T5FeedForward(dim, dim_ffn)
        self.pos_embedding = None if shared_pos else RelativePositionBias(num_buckets, num_heads)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, pos_bias: torch.Tensor | None
    ) -> torch.Tensor:
        if self.pos_embedding is not None:
            pos_bias = self.pos_embedding(x.shape[1], x.shape[1])
        x = _fp16_clamp(x + self.attn(self.norm1(x), mask, pos_bias))
        return _fp16_clamp(x + self.ffn(self.norm2(x)))


class WanT5EncoderModel(nn.Module):
    """Encoder-only UMT5 with Wan key names. Arguments are the official ``umt5_xxl`` kwargs.

    Dropout is left out: the model only runs in inference, where it is inactive.
    """

    def __init__(
        self,
        vocab_size: int = 256384,
        dim: int = 4096,
        dim_attn: int = 4096,
        dim_ffn: int = 10240,
        num_heads: int = 64,
        encoder_layers: int = 24,
        num_buckets: int = 32,
        shared_pos: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        del dropout  # accepted for config compatibility; inference only
        self.dim = dim
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embedding = RelativePositionBias(num_buckets, num_heads) if shared_pos else None
        self.blocks = nn.ModuleList(
            T5Block(dim, dim_attn, dim_ffn, num_heads, num_buckets, shared_pos) for _ in range(encoder_layers)
        )
        self.norm = T5RMSNorm(dim)

    def enable_layerwise_casting(
        self, storage_dtype: torch.dtype = torch.float8_e4m3fn, compute_dtype: torch.dtype = torch.bfloat16
    ) -> None:
        """Store the Linear weights in ``storage_dtype``, upcast per layer to ``compute_dtype``.

        Same contract as diffusers' ``ModelMixin.enable_layerwise_casting`` (which ``models.memory``
        calls for fp8 storage). Norms, the embedding table and the position-bias tables keep their
        dtype; they are tiny or (the embedding) indexed rather than multiplied.
        """
        from diffusers.hooks import apply_layerwise_casting

        apply_layerwise_casting(
            self,
            storage_dtype=storage_dtype,
            compute_dtype=compute_dtype,
            skip_modules_pattern=("norm", "pos_embedding", "token_embedding"),
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``ids [B, L]`` (+ ``mask [B, L]``, 1 = token) -> final states ``[B, L, dim]`` (padding not zeroed)."""
        x = self.token_embedding(ids)
        pos_bias = self.pos_embedding(x.shape[1], x.shape[1]) if self.pos_embedding is not None else None
        for block in self.blocks:
            x = block(x, mask, pos_bias)
        return self.norm(x)


_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor arguments implied by a Wan T5 state dict's tensor shapes.

    Raises:
        ValueError: the state dict lacks the tensors the sizes are read from.
    """
    try:
        vocab_size, dim = state["token_embedding.weight"].shape
        dim_attn = state["blocks.0.attn.q.weight"].shape[0]
        dim_ffn = state["blocks.0.ffn.fc1.weight"].shape[0]
    except KeyError as error:
        raise ValueError(f"not a Wan T5 encoder state dict: no {error.args[0]!r}") from None
    layers = {int(m.group(1)) for key in state if (m := _BLOCK_KEY.match(key))}
    shared = "pos_embedding.embedding.weight" in state
    pos = state["pos_embedding.embedding.weight" if shared else "blocks.0.pos_embedding.embedding.weight"]
    num_buckets, num_heads = pos.shape
    return {
        "vocab_size": int(vocab_size),
        "dim": int(dim),
        "dim_attn": int(dim_attn),
        "dim_ffn": int(dim_ffn),
        "num_heads": int(num_heads),
        "encoder_layers": max(layers) + 1 if layers else 0,
        "num_buckets": int(num_buckets),
        "shared_pos": shared,
    }


class WanT5Encoder:
    """Tokenizer + encoder, as the pipelines call it. Lives on the GPU worker (or the CPU when parked).

    Offload-friendly: ``model`` may be moved between devices at any time (a placement policy parks it
    on the CPU between prompts); calls run where the weights are, or on ``execution_device`` when set,
    which is what hooks that keep the weights on the CPU and stream ``model.blocks`` in need (e.g.
    ``models.memory.enable_block_streaming(encoder.model, device)``, then
    ``encoder.execution_device = device``). :meth:`enable_fp8_storage` keeps the Linear weights in
    float8 (about half the bfloat16 footprint; not bit-neutral).
    """

    def __init__(self, model: WanT5EncoderModel, tokenizer: WanTokenizer) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.execution_device: torch.device | None = None
        self._compute_dtype: torch.dtype | None = None

    @classmethod
    def from_pth(
        cls,
        pth: PathLike,
        tokenizer_dir: PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.bfloat16,
        text_len: int = TEXT_LEN,
        fp8: bool = False,
    ) -> WanT5Encoder:
        """Load ``models_t5_umt5-xxl-enc-bf16.pth`` (sizes from its shapes) and the tokenizer folder.

        Args:
            pth: the encoder state dict (Wan key names).
            tokenizer_dir: the ``google/umt5-xxl`` folder.
            device: where the weights go.
            dtype: compute dtype (the official pipelines use bfloat16).
            text_len: padded prompt length (512).
            fp8: store the Linear weights in float8_e4m3fn (see :meth:`enable_fp8_storage`).

        Raises:
            StateDictMismatchError: keys or shapes do not fit the encoder.
        """
        state = load_state_dict_file(Path(pth))
        config = config_from_state_dict(state)
        with torch.device("meta"):
            model = WanT5EncoderModel(**config)
        load_strict(model, state, device=device, dtype=dtype, what="Wan UMT5 encoder")
        del state
        encoder = cls(model, WanTokenizer(tokenizer_dir, text_len=text_len))
        if fp8:
            encoder.enable_fp8_storage()
        return encoder

    @property
    def device(self) -> torch.device:
        """Where calls run: ``execution_device`` if set, else the weights' device."""
        if self.execution_device is not None:
            return self.execution_device
        return self.model.token_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (with fp8 storage: the dtype weights are upcast to)."""
        return self._compute_dtype or self.model.norm.weight.dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> WanT5Encoder:
        if dtype is not None and self._compute_dtype is not None:
            raise RuntimeError("cannot change the dtype of an encoder with fp8 storage; reload it instead")
        self.model.to(device=device, dtype=dtype)
        return self

    def enable_fp8_storage(self) -> None:
        """Keep every Linear weight in float8_e4m3fn, upcast layer by layer to the current dtype.

        Halves the bfloat16 footprint of the 5.7B-parameter encoder (11.4 GB -> about 5.8 GB). The
        text features then differ from bfloat16 ones by fp8 rounding (tests bound the deviation).
        """
        if self._compute_dtype is not None:
            return
        compute = self.model.norm.weight.dtype
        self.model.enable_layerwise_casting(torch.float8_e4m3fn, compute)
        self._compute_dtype = compute

    def tokenize(self, prompts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cleaned, padded token ids and mask, int64 ``[B, text_len]``."""
        return self.tokenizer(prompts)

    @torch.no_grad()
    def encode(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """``[B, text_len, dim]`` text features, zero at padded positions, in the model dtype."""
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self.model(ids, mask) * mask.unsqueeze(-1)

    @torch.no_grad()
    def encode_trimmed(self, prompts: str | Sequence[str]) -> list[torch.Tensor]:
        """One ``[L_i, dim]`` tensor per prompt, cut to its real token count (``</s>`` included)."""
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        out = self.model(ids, mask)
        return [row[: int(n)] for row, n in zip(out, mask.sum(dim=1).tolist(), strict=True)]


def full_size_state_dict() -> dict[str, torch.Tensor]:
    """State dict of the released-size encoder built on the meta device (manifest check)."""
    with torch.device("meta"):
        model = WanT5EncoderModel(**FULL_SIZE_CONFIG)
    return meta_state_dict(model)
