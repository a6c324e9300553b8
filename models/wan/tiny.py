"""Tiny checkpoint writers for the Wan-format shared files (tests, demos, the tiny model factory).

Owns :func:`write_tiny_wan_vae` (a ``Wan2.1_VAE.pth``: float32 state dict, base width 4),
:func:`write_tiny_wan_t5` (a ``models_t5_umt5-xxl-enc-bf16.pth``: bfloat16 encoder state dict, width
32, plus a ``google/umt5-xxl``-style tokenizer folder) and :func:`write_tiny_umt5_tokenizer`. The files
have the official layouts and key names and the sizes of the golden pipeline checkpoints, so the
product's loaders (:meth:`models.wan.vae.WanVAE.from_pth`, :meth:`models.wan.t5.WanT5Encoder.from_pth`)
read them exactly like real weights. Weights are random but seeded (same seed, same bytes).

The tokenizer is a small unigram model (``tokenizers``): NFKC, Metaspace, ``<pad>``=0, ``</s>``=1,
``<unk>``=2, a trailing ``</s>``, saved as a ``T5TokenizerFast`` folder that ``AutoTokenizer`` loads.

Imports torch, tokenizers, transformers. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from models.wan.loading import PathLike
from models.wan.t5 import WanT5EncoderModel
from models.wan.vae import FULL_SIZE_CONFIG, WanVAEModel

T = TypeVar("T")

__all__ = [
    "TINY_T5_CONFIG",
    "TINY_VAE_CONFIG",
    "seeded",
    "write_tiny_umt5_tokenizer",
    "write_tiny_wan_t5",
    "write_tiny_wan_vae",
    "write_wan_shared_files",
]

# File names of the shared components in the official extension / avatar layouts.
VAE_FILE = "Wan2.1_VAE.pth"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_DIR = "google/umt5-xxl"

# The released layout (``models.wan.vae.FULL_SIZE_CONFIG``) at a base width of 4 instead of 96.
TINY_VAE_CONFIG: dict[str, Any] = {**copy.deepcopy(FULL_SIZE_CONFIG), "dim": 4}

# The embedding table is a bit larger than the tokenizer vocabulary, as in the real UMT5.
TINY_T5_CONFIG: dict[str, Any] = {
    "vocab_size": 384,
    "dim": 32,
    "dim_attn": 32,
    "dim_ffn": 64,
    "num_heads": 4,
    "encoder_layers": 2,
    "num_buckets": 32,
    "shared_pos": False,
}

# Frequent English pieces so prompts tokenize into a few dozen ids rather than one per letter.
_COMMON_PIECES = [
    "▁the",
    "▁a",
    "▁an",
    "▁is",
    "▁are",
    "▁of",
    "▁and",
    "▁in",
    "▁on",
    "▁with",
    "▁to",
    "▁his",
    "▁her",
    "▁man",
    "▁woman",
    "▁person",
    "▁talking",
    "▁walk",
    "▁making",
    "▁way",
    "▁forward",
    "▁slowly",
    "▁white",
    "▁up",
    "▁it",
    "▁at",
    "▁by",
    "▁camera",
    "▁video",
    "▁light",
    "▁red",
    "▁blue",
    "ing",
    "ed",
    "er",
    "es",
    "ly",
    "ion",
    "tion",
    "s",
    "▁s",
    "▁t",
    "▁w",
    "▁m",
    "▁c",
    "▁p",
    "▁b",
    "▁f",
    "▁d",
    "▁h",
    "▁l",
    "▁r",
    "▁g",
    "▁e",
    "▁o",
    "▁i",
    "th",
    "he",
    "in",
    "er",
    "an",
    "re",
    "on",
]


def seeded(build: Callable[[], T], seed: int) -> T:
    """``build()`` under ``torch.manual_seed(seed)``, leaving the caller's global CPU RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _seeded_state(build: Callable[[], torch.nn.Module], seed: int) -> dict[str, torch.Tensor]:
    model = seeded(build, seed)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def write_tiny_wan_vae(path: PathLike, seed: int = 0, config: dict[str, Any] | None = None) -> Path:
    """Write a tiny ``Wan2.1_VAE.pth`` (float32 state dict, official keys). Returns the path.

    The output head is scaled down so decoded pixels of random latents mostly stay inside [-1, 1].
    """
    cfg = dict(TINY_VAE_CONFIG if config is None else config)
    state = _seeded_state(lambda: WanVAEModel(**cfg), seed)
    for key in ("decoder.head.2.weight", "decoder.head.2.bias"):
        state[key] = state[key] * 0.1
    # Values exactly representable in bfloat16, like the golden files (exact under any cast).
    state = {k: v.to(torch.bfloat16).to(torch.float32) for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_tiny_umt5_tokenizer(folder: PathLike, model_max_length: int = 512) -> Path:
    """Write a small UMT5-style unigram tokenizer folder (``T5TokenizerFast``). Returns the folder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces: list[str] = ["▁"]
    for ch in string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation:
        if ch not in pieces:
            pieces.append(ch)
    pieces += [p for p in _COMMON_PIECES if p not in pieces]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    # Longer pieces get better scores, so the unigram model prefers them over letter sequences.
    vocab += [(p, -10.0 + 2.0 * len(p.lstrip("▁")) - 0.001 * i) for i, p in enumerate(pieces)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    fast = T5TokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_ids=0,
        additional_special_tokens=[],
        model_max_length=model_max_length,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


def write_tiny_wan_t5(
    pth_path: PathLike, tokenizer_dir: PathLike, seed: int = 0, config: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write a tiny ``models_t5_umt5-xxl-enc-bf16.pth`` (bfloat16) and its tokenizer folder.

    Returns:
        ``(pth_path, tokenizer_dir)``.
    """
    cfg = dict(TINY_T5_CONFIG if config is None else config)
    state = _seeded_state(lambda: WanT5EncoderModel(**cfg), seed)
    state = {k: v.to(torch.bfloat16) for k, v in state.items()}
    pth = Path(pth_path)
    pth.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, pth)
    folder = write_tiny_umt5_tokenizer(tokenizer_dir)
    return pth, folder


def write_wan_shared_files(root: PathLike, seed: int = 0) -> int:
    """Write the tiny VAE, T5 and tokenizer under their official names into ``root``.

    ``root/Wan2.1_VAE.pth`` (seed ``seed``), ``root/models_t5_umt5-xxl-enc-bf16.pth`` (seed
    ``seed + 1``) and ``root/google/umt5-xxl/``, the layout the extension and avatar repos share.

    Returns:
        The T5 width (the DiT's ``text_dim`` for these files).
    """
    root = Path(root)
    write_tiny_wan_vae(root / VAE_FILE, seed=seed)
    write_tiny_wan_t5(root / T5_FILE, root / TOKENIZER_DIR, seed=seed + 1)
    return int(TINY_T5_CONFIG["dim"])
