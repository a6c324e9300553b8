"""Synthetic test media: numbered frames that survive lossy compression, and tones.

``numbered_frame(n, w, h)`` draws ``n`` as a row of 16 large black/white blocks (binary, most
significant bit first) over a moving gradient; :func:`read_frame_number` reads it back from a
decoded frame. H.264 at any sane quality keeps blocks of this size clearly black or white, so
tests and benchmarks can check that "frame N is N" after encode, seek and decode.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BITS", "numbered_frame", "read_frame_number", "sine"]

BITS = 16


def _block_geometry(width: int, height: int) -> tuple[int, int, int]:
    """Block width, block height and top row of the number strip."""
    block_w = width // BITS
    block_h = max(4, min(height // 3, block_w))
    return block_w, block_h, (height - block_h) // 2


def numbered_frame(index: int, width: int, height: int) -> np.ndarray:
    """An RGB ``uint8`` frame showing ``index`` (0 .. 65535) as a block code.

    Raises:
        ValueError: the frame is too small to hold the code (width < 64 or height < 12).
    """
    if width < 4 * BITS or height < 12:
        raise ValueError(f"numbered frames need at least {4 * BITS}x12 pixels, got {width}x{height}")
    if not 0 <= index < 2**BITS:
        raise ValueError(f"frame number {index} does not fit in {BITS} bits")
    ys, xs = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), dtype=np.uint8)
    # A gradient that moves with the index gives the encoder real motion to code.
    frame[..., 0] = ((xs + 3 * index) % 256).astype(np.uint8)
    frame[..., 1] = ((ys + 2 * index) % 256).astype(np.uint8)
    frame[..., 2] = 96
    block_w, block_h, top = _block_geometry(width, height)
    for bit in range(BITS):
        on = (index >> (BITS - 1 - bit)) & 1
        frame[top : top + block_h, bit * block_w : (bit + 1) * block_w] = 255 if on else 0
    return frame


def read_frame_number(rgb: np.ndarray) -> int:
    """Read the number drawn by :func:`numbered_frame` from a (decoded) frame of the same size."""
    height, width = rgb.shape[:2]
    block_w, block_h, top = _block_geometry(width, height)
    value = 0
    for bit in range(BITS):
        # Sample the block centre, away from edges where compression smears.
        y0, y1 = top + block_h // 4, top + 3 * block_h // 4
        x0, x1 = bit * block_w + block_w // 4, bit * block_w + 3 * block_w // 4
        level = float(rgb[y0 : y1 + 1, x0 : x1 + 1].mean())
        value = (value << 1) | int(level > 127.5)
    return value


def sine(seconds: float, rate: int, frequency: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """A mono float32 sine tone of ``seconds`` at ``rate``."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
