"""Resolution buckets shared by reference-to-video and the video extension (spec section 2.1).

Owns the official ``ASPECT_RATIO_CONFIG`` tables (480P / 540P / 720P; keys are height/width aspect
strings, values the raw (height, width) before rounding) and the bucket selection rule:

* the key whose float value is closest to ``height / width`` of the source wins (ties: first key in
  table order, which is what ``min`` over the dict keys does in the official code);
* both sides are then rounded **down** to a multiple of 16 (``x // 8 // 2 * 2 * 8``).

R2V: the source is the first reference image, unless the user picked an aspect (``"16:9"`` ...), in
which case the bucket closest to that aspect is used (an aspect ``W:H`` means width W, height H, so
``"16:9"`` selects the landscape key ``0.56`` and ``"9:16"`` the portrait key ``1.78``).

Pure Python: no torch import, so ``core``-adjacent callers and the extension pipeline can use it freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Raw official tables: aspect key (height / width, two decimals) -> (height, width) before rounding.
ASPECT_RATIO_CONFIG: dict[str, dict[str, tuple[int, int]]] = {
    "480P": {
        "0.38": (392, 1046),
        "0.43": (420, 980),
        "0.48": (444, 925),
        "0.50": (452, 904),
        "0.53": (466, 880),
        "0.54": (470, 870),
        "0.56": (480, 854),
        "0.62": (506, 810),
        "0.67": (522, 784),
        "0.75": (554, 738),
        "1.00": (640, 640),
        "1.33": (740, 555),
        "1.50": (784, 522),
        "1.78": (854, 480),
        "1.89": (880, 466),
        "2.00": (906, 454),
        "2.08": (924, 444),
    },
    "540P": {
        "0.34": (416, 1216),
        "0.38": (464, 1216),
        "0.40": (464, 1152),
        "0.43": (496, 1152),
        "0.48": (496, 1024),
        "0.50": (512, 1024),
        "0.53": (512, 960),
        "0.57": (544, 960),
        "0.60": (544, 912),
        "0.63": (576, 912),
        "0.67": (576, 864),
        "0.72": (624, 864),
        "0.75": (624, 832),
        "0.79": (656, 832),
        "0.84": (656, 784),
        "0.92": (720, 784),
        "1.00": (720, 720),
        "1.09": (784, 720),
        "1.26": (784, 624),
        "1.33": (832, 624),
        "1.40": (832, 592),
        "1.49": (880, 592),
        "1.62": (880, 544),
        "1.78": (960, 544),
        "1.88": (960, 512),
        "2.00": (1024, 512),
        "2.13": (1024, 480),
    },
    "720P": {
        "0.38": (588, 1568),
        "0.43": (628, 1466),
        "0.48": (666, 1388),
        "0.50": (678, 1356),
        "0.53": (698, 1318),
        "0.54": (706, 1306),
        "0.56": (720, 1280),
        "0.62": (758, 1212),
        "0.67": (784, 1176),
        "0.75": (832, 1110),
        "1.00": (960, 960),
        "1.33": (1108, 832),
        "1.50": (1176, 784),
        "1.78": (1280, 720),
        "1.89": (1320, 698),
        "2.00": (1358, 680),
        "2.08": (1386, 666),
    },
}

RESOLUTIONS: tuple[str, ...] = tuple(ASPECT_RATIO_CONFIG)

# User-facing aspects (width:height) and the height/width ratio each one stands for.
ASPECTS: dict[str, float] = {"1:1": 1.0, "3:4": 4 / 3, "4:3": 3 / 4, "16:9": 9 / 16, "9:16": 16 / 9}

BucketTable = Mapping[str, tuple[int, int] | list[int]]


@dataclass(frozen=True)
class Bucket:
    """A chosen bucket: its table key and the frame size actually generated (multiples of 16)."""

    key: str
    height: int
    width: int


def round_down_16(value: int) -> int:
    """The official rounding: ``value // 8 // 2 * 2 * 8`` (a multiple of 16, never larger)."""
    return int(value) // 8 // 2 * 2 * 8


def closest_key(height: float, width: float, table: BucketTable) -> str:
    """Key of ``table`` closest to ``height / width`` (first key in table order on ties)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    ratio = height / width
    return min(table.keys(), key=lambda key: abs(float(key) - ratio))


def table_for(resolution: str, override: BucketTable | None = None) -> BucketTable:
    """The bucket table of ``resolution`` (``override`` replaces it, as the golden cases do)."""
    if override is not None:
        return override
    if resolution not in ASPECT_RATIO_CONFIG:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    return ASPECT_RATIO_CONFIG[resolution]


def select_bucket(
    resolution: str,
    *,
    image_size: tuple[int, int] | None = None,
    aspect: str | None = None,
    table_override: BucketTable | None = None,
) -> Bucket:
    """Choose the generation size.

    Args:
        resolution: ``"480P"``, ``"540P"`` or ``"720P"``.
        image_size: ``(width, height)`` of the source (R2V: the first reference image; extension:
            the input video frames). Used when ``aspect`` is None.
        aspect: a user-picked aspect from :data:`ASPECTS` (``"16:9"`` ...); it overrides the source.
        table_override: replaces the resolution's table (same keys, other sizes; golden cases).

    Returns:
        The bucket key and the rounded (multiple-of-16) height and width.

    Raises:
        ValueError: unknown resolution or aspect, or neither a source size nor an aspect given.
    """
    table = table_for(resolution, table_override)
    if aspect is not None:
        if aspect not in ASPECTS:
            raise ValueError(f"aspect must be one of {', '.join(ASPECTS)}, got {aspect!r}")
        key = closest_key(ASPECTS[aspect], 1.0, table)
    elif image_size is not None:
        width, height = image_size
        key = closest_key(height, width, table)
    else:
        raise ValueError("select_bucket needs the source image size or an aspect")
    raw_height, raw_width = table[key]
    return Bucket(key=key, height=round_down_16(raw_height), width=round_down_16(raw_width))
