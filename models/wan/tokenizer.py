"""Prompt cleaning and tokenisation for the Wan UMT5 text encoder (spec section 2.2).

Owns :func:`clean_prompt` (the official cleaning: ``ftfy.fix_text``, HTML-unescape twice, strip,
collapse every whitespace run to one space) and :class:`WanTokenizer` (the ``google/umt5-xxl/``
folder loaded with ``AutoTokenizer``; ``padding="max_length"``, ``truncation=True``,
``max_length=text_len`` (512), special tokens added, so each prompt ends with ``</s>``).

Imports transformers, ftfy, regex (lazily where heavy). Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from models.wan.loading import PathLike

__all__ = ["TEXT_LEN", "WanTokenizer", "clean_prompt", "collapse_whitespace"]

TEXT_LEN = 512


def collapse_whitespace(text: str) -> str:
    """Replace every run of whitespace by one space and strip the ends (the official ``whitespace_clean``)."""
    # The official code uses the `regex` package; its \s is the Unicode White_Space set, which
    # differs from `re` on a few control characters (U+001C..U+001F), so use the same package.
    import regex

    return str(regex.sub(r"\s+", " ", text)).strip()


def clean_prompt(text: str) -> str:
    """The official prompt cleaning: ftfy, HTML-unescape twice, strip, collapse whitespace."""
    import ftfy

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return collapse_whitespace(text)


class WanTokenizer:
    """The UMT5 tokenizer as the Wan T5 encoder uses it. Thread-safe for concurrent calls.

    Args:
        folder: the ``google/umt5-xxl`` tokenizer folder (any folder ``AutoTokenizer`` loads).
        text_len: padded length (512 in every official pipeline).
        clean: apply :func:`clean_prompt` first (the official ``clean="whitespace"``).
    """

    def __init__(self, folder: PathLike, text_len: int = TEXT_LEN, clean: bool = True) -> None:
        from transformers import AutoTokenizer

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"tokenizer folder not found: {folder}")
        self.folder = folder
        self.text_len = text_len
        self.clean = clean
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(folder))

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.vocab_size)

    def __call__(self, prompts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, each int64 ``[B, text_len]`` (right padded with ``<pad>``)."""
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.clean:
            texts = [clean_prompt(t) for t in texts]
        encoded = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="pt",
        )
        return encoded.input_ids, encoded.attention_mask
