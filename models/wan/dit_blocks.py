"""Building blocks that the two original-Wan-layout DiTs share exactly: the extension DiT
(:mod:`models.extension.transformer`) and the avatar DiT (:mod:`models.avatar.transformer`).

Owns the common config fields (:class:`WanDiTSizes`), the float64 sinusoidal timestep embedding, the 3-D rotary table, its per-token layout and its
application (in token chunks of bounded size for long sequences, bit-identical to one piece; the R2V
DiT's attention processor uses the same chunking), the attention projections, input embeddings and FFN as the official modules build them (under the official
state-dict names, created in the official order so seeded tiny models keep their weights), and the
final unpatchify. Only what the two models compute identically lives here: their RMS norms, layer
norms, attention dtypes and modulation differ (see each module's docstring) and stay with them. The
rotary precision is the caller's choice: the extension builds its table in float32 like its
reference, the avatar in float64 like its own.

Imports torch only. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class WanDiTSizes:
    """The constructor sizes every original-Wan DiT takes, under the official ``WanModel`` argument
    (``config.json``) names and in their order; the 14B defaults. Each model's config extends it."""

    model_type: str = "t2v"
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    in_dim: int = 16
    dim: int = 5120
    ffn_dim: int = 13824
    freq_dim: int = 256
    text_dim: int = 4096
    out_dim: int = 16
    num_heads: int = 40
    num_layers: int = 40

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[N] -> [N, dim]`` float64 ``[cos, sin]`` embedding with frequencies ``10000^(-i/half)``."""
    half = dim // 2
    position = t.to(torch.float64)
    freqs = torch.pow(10000, -torch.arange(half, dtype=torch.float64, device=t.device).div(half))
    angles = torch.outer(position, freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def rope_table(
    head_dim: int,
    positions: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Complex ``[positions, head_dim/2]`` rotary table: frame, height and width parts side by side.

    Args:
        head_dim: attention head size (even).
        positions: rows of the table (the largest position + 1).
        dtype: ``torch.float32`` gives a complex64 table, ``torch.float64`` a complex128 one.
        device: where the table is built (the arithmetic, not only the storage, happens there).
    """

    def part(size: int) -> torch.Tensor:
        inv = 1.0 / torch.pow(10000, torch.arange(0, size, 2, device=device).to(dtype).div(size))
        angles = torch.outer(torch.arange(positions, device=device).to(dtype), inv)
        return torch.polar(torch.ones_like(angles), angles)

    sixth = head_dim // 6
    return torch.cat([part(head_dim - 4 * sixth), part(2 * sixth), part(2 * sixth)], dim=1)


def rope_multipliers(
    table: torch.Tensor, segments: Sequence[tuple[int, int]], height: int, width: int
) -> torch.Tensor:
    """Per-token complex multipliers ``[L, 1, head_dim/2]`` for frame segments in token order.

    Args:
        table: output of :func:`rope_table`.
        segments: ``(first temporal position, frame count)`` per segment, in token order.
        height, width: token grid (latent size / patch size); spatial positions restart at 0 for
            every segment.
    """
    c = table.shape[1]
    spatial = c // 3
    frame_part, h_part, w_part = table.split([c - 2 * spatial, spatial, spatial], dim=1)
    pieces = []
    for start, frames in segments:
        grid = torch.cat(
            [
                frame_part[start : start + frames].view(frames, 1, 1, -1).expand(frames, height, width, -1),
                h_part[:height].view(1, height, 1, -1).expand(frames, height, width, -1),
                w_part[:width].view(1, 1, width, -1).expand(frames, height, width, -1),
            ],
            dim=-1,
        )
        pieces.append(grid.reshape(frames * height * width, 1, -1))
    return torch.cat(pieces, dim=0)


# The rotation runs over the token axis in chunks whose real-precision copy of the input is at most this
# many bytes (6,553 tokens of a 5120-wide float64 q/k, 13,107 in float32). Each chunk briefly holds
# that copy, the complex product of the same size and, for a float64 product going to a half dtype,
# its float32 rounding: about 640 MiB at most, against 2 x 5.5 GiB for 144,000 tokens in one piece.
ROPE_CHUNK_BYTES = 256 * 1024**2


def rope_chunk_tokens(x: torch.Tensor, token_dim: int, real: torch.dtype) -> int:
    """Tokens per chunk of :func:`rotate_in_chunks`: as many as keep one ``real`` copy of a chunk of
    ``x`` within :data:`ROPE_CHUNK_BYTES` (at least one)."""
    per_token = x.numel() // max(x.shape[token_dim], 1) * (torch.finfo(real).bits // 8)
    return max(1, ROPE_CHUNK_BYTES // max(per_token, 1))


def rotate_in_chunks(
    x: torch.Tensor,
    multipliers: torch.Tensor,
    *,
    token_dim: int,
    real: torch.dtype,
    out: torch.Tensor,
    chunk_tokens: int,
    round_to_float32: bool,
    rotated_tokens: int | None = None,
) -> torch.Tensor:
    """Write the rotary product of ``x`` into ``out``, ``chunk_tokens`` tokens at a time.

    Per element this is exactly ``view_as_real(view_as_complex(x.to(real)) * multipliers)`` stored in
    ``out.dtype``; chunking the token axis changes which tensor an element sits in, not its arithmetic,
    so the result is bit-identical to the one-piece product.

    Args:
        x: ``[..., tokens, ..., d]`` with the token axis at ``token_dim`` and (re, im) pairs on the last.
        multipliers: complex, broadcastable against ``x``'s complex view, token axis aligned with
            ``token_dim`` (counted from the right).
        token_dim: the token axis of ``x`` (non-negative).
        real: precision of the product (float32 or float64).
        out: tensor of ``x``'s shape written in place (its dtype is the result's).
        chunk_tokens: tokens per chunk.
        round_to_float32: round a float64 product to float32 before storing it in a non-float32
            ``out`` (our DiTs return float32 rotations that attention then casts: two roundings);
            otherwise the product is cast to ``out.dtype`` directly (diffusers' ``type_as``).
        rotated_tokens: tokens covered by ``multipliers``; the ones after them are copied unrotated
            (through ``real``, as the product is). Default: all of them.

    Returns:
        ``out``.
    """
    length = x.shape[token_dim]
    rotated_tokens = length if rotated_tokens is None else rotated_tokens
    multiplier_dim = token_dim - (x.dim() - multipliers.dim())
    double_rounding = round_to_float32 and real == torch.float64 and out.dtype != torch.float32

    def store(start: int, values: torch.Tensor) -> None:
        if double_rounding:
            values = values.float()
        out.narrow(token_dim, start, values.shape[token_dim]).copy_(values)

    for start in range(0, length, chunk_tokens):
        stop = min(start + chunk_tokens, length)
        if start < rotated_tokens:
            end = min(stop, rotated_tokens)
            part = x.narrow(token_dim, start, end - start).to(real)
            as_complex = torch.view_as_complex(part.unflatten(-1, (-1, 2)))
            product = as_complex * multipliers.narrow(multiplier_dim, start, end - start)
            store(start, torch.view_as_real(product).flatten(-2))
            del part, as_complex, product
        if stop > rotated_tokens:
            first = max(start, rotated_tokens)
            store(first, x.narrow(token_dim, first, stop - first).to(real))
    return out


def apply_rope(
    x: torch.Tensor,
    multipliers: torch.Tensor,
    *,
    dtype: torch.dtype = torch.float32,
    chunk_tokens: int | None = None,
) -> torch.Tensor:
    """Rotate ``[B, L, heads, d]`` by :func:`rope_multipliers` output.

    The product is computed in the table's precision (float32 for complex64, float64 for
    complex128) and rounded to float32. Tokens past the multipliers' length, if any, pass unrotated.

    Long sequences are rotated in chunks of the token axis written into one preallocated result
    (:data:`ROPE_CHUNK_BYTES` per chunk), so no full-sequence float32/float64 copy of ``x`` or of the
    complex product ever exists; the numbers are bit-identical to the one-piece computation, which
    short sequences (one chunk) still take unchanged.

    Args:
        x: queries or keys ``[B, L, heads, d]``.
        multipliers: ``[tokens, 1, d/2]`` complex, ``tokens <= L``.
        dtype: the result's dtype. The float32 rotation is cast to it chunk by chunk, which equals
            ``apply_rope(x, multipliers).to(dtype)`` bit for bit without a float32 copy of the whole
            result (callers pass the dtype their attention casts q and k to).
        chunk_tokens: tokens per chunk (default: from :data:`ROPE_CHUNK_BYTES`; tests set it small).

    Returns:
        ``[B, L, heads, d]`` in ``dtype``.
    """
    b, length, heads, head_dim = x.shape
    tokens = multipliers.shape[0]
    real = torch.float64 if multipliers.dtype == torch.complex128 else torch.float32
    chunk = chunk_tokens or rope_chunk_tokens(x, 1, real)
    if length <= chunk:
        as_complex = torch.view_as_complex(x[:, :tokens].to(real).reshape(b, tokens, heads, head_dim // 2, 2))
        rotated = torch.view_as_real(as_complex * multipliers).flatten(3)
        if tokens < length:
            rotated = torch.cat([rotated, x[:, tokens:].to(real)], dim=1)
        return rotated.float().to(dtype)
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    return rotate_in_chunks(
        x,
        multipliers,
        token_dim=1,
        real=real,
        out=out,
        chunk_tokens=chunk,
        round_to_float32=True,
        rotated_tokens=tokens,
    )


class AttentionProjections(nn.Module):
    """The ``q``, ``k``, ``v``, ``o`` projections (``dim -> dim``) and the ``norm_q`` / ``norm_k``
    q/k norms of a Wan attention layer, created in the official order. Subclasses add ``forward``.

    Args:
        dim: model width.
        num_heads: attention heads (``dim`` splits evenly).
        qk_norm: builds a q/k norm of width ``dim`` (each model has its own RMS norm); None for none.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: Callable[[int], nn.Module] | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q: nn.Module = qk_norm(dim) if qk_norm is not None else nn.Identity()
        self.norm_k: nn.Module = qk_norm(dim) if qk_norm is not None else nn.Identity()


def ffn(dim: int, ffn_dim: int) -> nn.Sequential:
    """The block FFN (``ffn.0`` / ``ffn.2``): Linear, tanh-GELU, Linear."""
    return nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))


def input_embeddings(
    in_dim: int, dim: int, patch_size: Sequence[int], text_dim: int, freq_dim: int
) -> tuple[nn.Conv3d, nn.Sequential, nn.Sequential, nn.Sequential]:
    """``patch_embedding``, ``text_embedding``, ``time_embedding``, ``time_projection`` of a Wan DiT,
    created in this order (assign them to attributes of those names, in this order)."""
    patch = tuple(patch_size)
    patch_embedding = nn.Conv3d(in_dim, dim, kernel_size=patch, stride=patch)
    text_embedding = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
    time_embedding = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
    time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
    return patch_embedding, text_embedding, time_embedding, time_projection


def unpatchify(
    x: torch.Tensor, grid: tuple[int, int, int], patch_size: Sequence[int], channels: int
) -> torch.Tensor:
    """``[B, f*h*w, p*q*r*C] -> [B, C, f*p, h*q, w*r]``."""
    b = x.shape[0]
    x = x.reshape(b, *grid, *patch_size, channels)
    x = torch.einsum("bfhwpqrc->bcfphqwr", x)
    return x.reshape(b, channels, *(g * s for g, s in zip(grid, patch_size, strict=True)))
