"""The rotary embedding in token chunks (``models.wan.dit_blocks.apply_rope`` and R2V's
``ChunkedRopeAttnProcessor``): bit-identical to the one-piece computation, and a lower memory peak.

Peaks on the CPU come from the profiler's allocation events (every CPU allocation and free is
reported with its size, so their running sum is the bytes held by tensors); the GPU check measures
``torch.cuda.max_memory_allocated`` at full width and is marked ``gpu``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor2_0
from torch.profiler import ProfilerActivity, profile

import models.avatar.transformer as avatar
import models.extension.transformer as extension
from models.memory import JobSize
from models.r2v.tiny import TINY_TRANSFORMER_CONFIG
from models.r2v.transformer import ChunkedRopeAttnProcessor, R2VTransformer3DModel, build_transformer
from models.wan import dit_blocks
from models.wan.dit_blocks import apply_rope, rope_chunk_tokens, rope_multipliers, rope_table


def one_piece_rope(x: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
    """``apply_rope`` as it was before the chunking (the reference for bit-identity)."""
    b, length, heads, head_dim = x.shape
    tokens = multipliers.shape[0]
    real = torch.float64 if multipliers.dtype == torch.complex128 else torch.float32
    as_complex = torch.view_as_complex(x[:, :tokens].to(real).reshape(b, tokens, heads, head_dim // 2, 2))
    rotated = torch.view_as_real(as_complex * multipliers).flatten(3)
    if tokens < length:
        rotated = torch.cat([rotated, x[:, tokens:].to(real)], dim=1)
    return rotated.float()


def one_piece_rope_call(x: torch.Tensor, multipliers: torch.Tensor, **_: Any) -> torch.Tensor:
    """Drop-in for the models' ``apply_rope(..., dtype=)`` calls: float32 out, the attention casts."""
    return one_piece_rope(x, multipliers)


def multipliers_for(
    frames: int, height: int, width: int, head_dim: int, table_dtype: torch.dtype
) -> torch.Tensor:
    return rope_multipliers(rope_table(head_dim, 64, dtype=table_dtype), [(0, frames)], height, width)


# ---------------------------------------------------------------------------------------------
# apply_rope


@pytest.mark.parametrize("table_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("x_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("unrotated", [0, 11])
@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_apply_rope_in_chunks_is_bit_identical(
    table_dtype: torch.dtype, x_dtype: torch.dtype, unrotated: int, chunk: int | None
) -> None:
    torch.manual_seed(0)
    multipliers = multipliers_for(3, 6, 10, 16, table_dtype)  # 180 tokens
    x = torch.randn(2, 180 + unrotated, 4, 16).to(x_dtype)
    expected = one_piece_rope(x, multipliers)
    out = apply_rope(x, multipliers, chunk_tokens=chunk)
    assert out.dtype == torch.float32 and out.shape == x.shape and out.is_contiguous()
    assert torch.equal(out, expected)
    # Stored straight in the attention dtype: the same as casting the float32 result afterwards.
    half = apply_rope(x, multipliers, dtype=torch.bfloat16, chunk_tokens=chunk)
    assert half.dtype == torch.bfloat16 and torch.equal(half, expected.to(torch.bfloat16))


@pytest.mark.parametrize("table_dtype", [torch.float32, torch.float64])
def test_apply_rope_chunks_large_inputs_bit_identical(table_dtype: torch.dtype) -> None:
    # Large enough for the CPU kernels to split the work between threads inside each chunk.
    torch.manual_seed(1)
    multipliers = multipliers_for(4, 24, 32, 64, table_dtype)  # 3072 tokens
    x = torch.randn(1, 3072, 8, 64, dtype=torch.bfloat16)
    expected = one_piece_rope(x, multipliers)
    for chunk in (100, 1000, 3071):
        assert torch.equal(apply_rope(x, multipliers, chunk_tokens=chunk), expected)
        assert torch.equal(
            apply_rope(x, multipliers, dtype=torch.bfloat16, chunk_tokens=chunk), expected.bfloat16()
        )


def test_default_chunks_are_bounded() -> None:
    full_size = torch.empty(1, 144_000, 40, 128, device="meta")
    assert rope_chunk_tokens(full_size, 1, torch.float64) == 6553  # 256 MiB of float64 per chunk
    assert rope_chunk_tokens(full_size, 1, torch.float32) == 13107
    assert rope_chunk_tokens(torch.empty(1, 40, 10, 10**8, device="meta"), 1, torch.float64) == 1


def profiled_peak(fn: Callable[[], object]) -> int:
    """Largest number of bytes allocated on the CPU at once while ``fn`` runs (net of what it frees)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),  # type: ignore[union-attr]
        key=lambda e: e.start_ns(),
    )
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak


@pytest.fixture
def small_rope_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Chunks of 64 KiB, so sequences of a few thousand tokens take the chunked path by default."""
    monkeypatch.setattr(dit_blocks, "ROPE_CHUNK_BYTES", 64 * 1024)
    yield 64 * 1024


def test_apply_rope_default_path_chunks_long_sequences(small_rope_chunks: int) -> None:
    torch.manual_seed(2)
    multipliers = multipliers_for(4, 32, 32, 128, torch.float64)  # 4096 tokens
    x = torch.randn(1, 4096, 4, 128, dtype=torch.bfloat16)
    n = x.numel()
    expected = one_piece_rope(x, multipliers)
    assert torch.equal(apply_rope(x, multipliers), expected)
    # One piece: float64 copy 8n + complex128 product 8n + float32 result 4n. In chunks: the result
    # (4n float32, 2n bfloat16) and one chunk's temporaries.
    assert profiled_peak(lambda: one_piece_rope(x, multipliers)) >= 20 * n
    assert profiled_peak(lambda: apply_rope(x, multipliers)) <= 4 * n + 3 * small_rope_chunks
    assert (
        profiled_peak(lambda: apply_rope(x, multipliers, dtype=torch.bfloat16))
        <= 2 * n + 3 * small_rope_chunks
    )


# ---------------------------------------------------------------------------------------------
# R2V: our processor against diffusers'


def stock_and_ours(chunk: int) -> tuple[WanTransformer3DModel, R2VTransformer3DModel]:
    torch.manual_seed(0)
    ours = build_transformer(TINY_TRANSFORMER_CONFIG).eval()
    stock = WanTransformer3DModel(**ours.config).eval()
    stock.load_state_dict(ours.state_dict(), strict=True)
    for block in ours.blocks:
        block.attn1.processor.chunk_tokens = chunk
    return stock, ours


def test_r2v_self_attention_uses_our_processor_and_keeps_the_keys() -> None:
    stock, ours = stock_and_ours(7)
    assert all(isinstance(block.attn1.processor, ChunkedRopeAttnProcessor) for block in ours.blocks)
    assert all(type(block.attn2.processor) is WanAttnProcessor2_0 for block in ours.blocks)
    assert all(type(block.attn1.processor) is WanAttnProcessor2_0 for block in stock.blocks)
    assert list(ours.state_dict()) == list(stock.state_dict())
    rebuilt = R2VTransformer3DModel.from_config(ours.config)  # the stock signature stays visible
    assert dict(rebuilt.config) == dict(ours.config)
    assert isinstance(rebuilt.blocks[0].attn1.processor, ChunkedRopeAttnProcessor)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk", [1, 7, 10_000])
def test_r2v_processor_is_bit_identical_to_diffusers(dtype: torch.dtype, chunk: int) -> None:
    stock, ours = stock_and_ours(chunk)
    stock, ours = stock.to(dtype), ours.to(dtype)
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 16, 3, 8, 12, generator=generator).to(dtype)  # 3 x 4 x 6 = 72 tokens
    text = torch.randn(1, 9, TINY_TRANSFORMER_CONFIG["text_dim"], generator=generator).to(dtype)
    t = torch.tensor([500])
    with torch.no_grad():
        expected = stock(latents, t, text, return_dict=False)[0]
        got = ours(latents, t, text, return_dict=False)[0]
    assert torch.equal(got, expected)


def test_r2v_rotation_keeps_the_stock_layout() -> None:
    torch.manual_seed(4)
    flat = torch.randn(2, 50, 2 * 32, dtype=torch.bfloat16)
    heads_first = flat.unflatten(2, (2, -1)).transpose(1, 2)  # as the processor hands it over
    angles = torch.rand(1, 1, 50, 16, dtype=torch.float64)
    freqs = torch.polar(torch.ones_like(angles), angles)
    one_piece = ChunkedRopeAttnProcessor(chunk_tokens=10_000)._rotate(heads_first, freqs)
    chunked = ChunkedRopeAttnProcessor(chunk_tokens=3)._rotate(heads_first, freqs)
    # Same values and the same memory layout (SDPA sees the same strides as with diffusers' processor).
    assert torch.equal(chunked, one_piece) and chunked.stride() == one_piece.stride() == heads_first.stride()
    assert chunked.dtype == torch.bfloat16


# ---------------------------------------------------------------------------------------------
# Whole blocks and forwards: the same numbers, a lower peak, under the planner's estimate

DIM, HEADS, FFN_DIM = 512, 4, 1384  # head size 128 and the 14B models' FFN ratio (13824 / 5120)
FRAMES, GRID_H, GRID_W = 4, 32, 32
TOKENS = FRAMES * GRID_H * GRID_W


def extension_forward(dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    torch.manual_seed(5)
    config = extension.ExtensionDiTConfig(
        dim=DIM, num_heads=HEADS, ffn_dim=FFN_DIM, text_dim=64, num_layers=1
    )
    model = extension.build_transformer(config).to(dtype).eval()
    x = torch.randn(1, 16, FRAMES, 2 * GRID_H, 2 * GRID_W)
    t = torch.full((1, FRAMES), 500)
    context = torch.randn(1, 32, 64)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return model(x, t, context)

    return run


def avatar_forward(dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    torch.manual_seed(6)
    config = avatar.AvatarTransformerConfig(
        dim=DIM, num_heads=HEADS, ffn_dim=FFN_DIM, text_dim=64, num_layers=1
    )
    model = avatar.AvatarTransformer(config).to(dtype).eval()
    x = torch.randn(16, FRAMES, 2 * GRID_H, 2 * GRID_W)
    y = torch.randn(1, 20, FRAMES, 2 * GRID_H, 2 * GRID_W)
    clip = torch.randn(1, 257, config.clip_dim)
    audio = torch.randn(1, 1 + config.vae_scale * (FRAMES - 1), config.audio_window, 12, 768)
    context = torch.randn(32, 64)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return model(x, torch.tensor([500.0]), context, clip, y, audio)

    return run


def r2v_forward(dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    torch.manual_seed(7)
    config = {
        **TINY_TRANSFORMER_CONFIG,
        "num_attention_heads": HEADS,
        "attention_head_dim": DIM // HEADS,
        "text_dim": 64,
        "ffn_dim": FFN_DIM,
        "num_layers": 1,
    }
    model = build_transformer(config).to(dtype).eval()
    latents = torch.randn(1, 16, FRAMES, 2 * GRID_H, 2 * GRID_W).to(dtype)
    text = torch.randn(1, 32, 64).to(dtype)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return model(latents, torch.tensor([500]), text, return_dict=False)[0]

    return run


def with_one_piece_rope(monkeypatch: pytest.MonkeyPatch, run: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``run`` with the rotation as it was: float32 out of ``apply_rope``, diffusers' R2V processor."""
    with monkeypatch.context() as patch:
        patch.setattr(extension, "apply_rope", one_piece_rope_call)
        patch.setattr(avatar, "apply_rope", one_piece_rope_call)
        patch.setattr(ChunkedRopeAttnProcessor, "__call__", WanAttnProcessor2_0.__call__)
        return run()


FORWARDS = {"extension": extension_forward, "avatar": avatar_forward, "r2v": r2v_forward}


@pytest.mark.parametrize("model", list(FORWARDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_bit_identical_with_chunked_rope(
    model: str, dtype: torch.dtype, small_rope_chunks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = FORWARDS[model](dtype)
    assert torch.equal(run(), with_one_piece_rope(monkeypatch, run))


# The bfloat16 forward's peak (bytes per element of the tokens x dim stream): at most the estimate's
# count, and the chunked rotation's saving on the two models whose peak was their float64 rotation.
SAVED_PER_ELEMENT = {"extension": 0, "avatar": 8, "r2v": 4}


@pytest.mark.parametrize("model", list(FORWARDS))
def test_forward_peak_drops_and_stays_under_the_estimate(
    model: str, small_rope_chunks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = FORWARDS[model](torch.bfloat16)
    stream = TOKENS * DIM
    before = profiled_peak(lambda: with_one_piece_rope(monkeypatch, run))
    after = profiled_peak(run)
    assert after <= before
    assert before - after >= SAVED_PER_ELEMENT[model] * stream, (before / stream, after / stream)
    job = JobSize(tokens=TOKENS, frame_height=0, frame_width=0, dim=DIM, ffn_dim=FFN_DIM)
    assert after <= job.activation_bytes(), (after / stream, job.activation_bytes() / stream)
    assert after <= job.activation_bytes(ffn_chunk_tokens=1024)


# ---------------------------------------------------------------------------------------------
# GPU: one full-width block, 20,000 tokens

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("model", ["extension", "avatar", "r2v"])
def test_cuda_block_peak_with_chunked_rope(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dim, heads, ffn_dim, frames, grid = 5120, 40, 13824, 5, (50, 80)  # 20,000 tokens
    tokens = frames * grid[0] * grid[1]
    stream = tokens * dim
    device = torch.device("cuda")
    torch.manual_seed(0)
    with torch.device(device):
        x = torch.randn(1, tokens, dim, dtype=torch.bfloat16)
        if model == "extension":
            config = extension.ExtensionDiTConfig(dim=dim, num_heads=heads, ffn_dim=ffn_dim)
            block: torch.nn.Module = extension.ExtensionBlock(config).to(torch.bfloat16)
            e0 = torch.randn(1, frames, 6, dim)
            rope = rope_multipliers(rope_table(dim // heads, 2048, device=device), [(0, frames)], *grid)
            text = torch.randn(1, 512, dim, dtype=torch.bfloat16)

            def forward() -> torch.Tensor:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return block(x, e0, rope, text, True)  # type: ignore[no-any-return]

        elif model == "avatar":
            config_a = avatar.AvatarTransformerConfig(dim=dim, num_heads=heads, ffn_dim=ffn_dim)
            block = avatar.AvatarBlock(config_a).to(torch.bfloat16)
            e0 = torch.randn(1, 6, dim, dtype=torch.bfloat16)
            table = rope_table(dim // heads, 1024, dtype=torch.float64)
            rotations = rope_multipliers(table, [(0, frames)], *grid).to(device)
            context = torch.randn(1, 257 + 512, dim, dtype=torch.bfloat16)
            audio_tokens = torch.randn(frames, 32, 768, dtype=torch.bfloat16)

            def forward() -> torch.Tensor:
                return block(x, e0, (frames, *grid), rotations, context, audio_tokens)  # type: ignore[no-any-return]

        else:
            r2v_config = {
                **TINY_TRANSFORMER_CONFIG,
                "num_attention_heads": heads,
                "attention_head_dim": dim // heads,
                "text_dim": 64,
                "ffn_dim": ffn_dim,
                "num_layers": 1,
            }
            r2v = build_transformer(r2v_config).to(device, torch.bfloat16)
            block = r2v.blocks[0]
            freqs = r2v.rope(torch.empty(1, 16, frames, 2 * grid[0], 2 * grid[1]))
            text = torch.randn(1, 512, dim, dtype=torch.bfloat16)
            temb = torch.randn(1, 6, dim, dtype=torch.bfloat16)

            def forward() -> torch.Tensor:
                return block(x, text, temb, freqs)  # type: ignore[no-any-return]

    block.eval()

    def peak(fn: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            out = fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base, out

    peak(forward)  # warm-up (kernels, workspaces)
    before, old = peak(lambda: with_one_piece_rope(monkeypatch, forward))
    after, new = peak(forward)
    print(
        f"{model}: {before / stream:.1f} -> {after / stream:.1f} bytes per token x dim element "
        f"({before / 2**30:.2f} -> {after / 2**30:.2f} GiB at {tokens} tokens)"
    )
    assert torch.equal(new, old)
    assert before - after >= 0.75 * SAVED_PER_ELEMENT[model] * stream
    assert after + 2 * stream <= JobSize(tokens=tokens, frame_height=0, frame_width=0).activation_bytes()
