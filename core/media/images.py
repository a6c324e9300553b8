"""Still images: guarded reading, atomic writing, and frame geometry (scale, fit, letterbox).

Reading goes through Pillow with our own pixel limit (:data:`MAX_IMAGE_PIXELS`), checked from
the header before any pixel is decoded, so a decompression bomb becomes :class:`ImageTooLarge`
instead of an out-of-memory crash. EXIF orientation is applied; alpha is composited over black
(the timeline background). Geometry helpers are shared by thumbnails, the decoder's optional
output size and the timeline compositor.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.media.errors import (
    CorruptMedia,
    EmptyMedia,
    FileMissing,
    ImageTooLarge,
    MediaError,
    UnsupportedMedia,
    WriteFailed,
)
from core.media.writer import temp_path_for

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "check_readable",
    "fit_size",
    "letterbox",
    "open_image_header",
    "read_image",
    "resize",
    "write_image",
]

#: Largest image we decode (a 16k x 8k panorama); larger files raise ImageTooLarge.
MAX_IMAGE_PIXELS = 16384 * 8192
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


def check_readable(path: Path) -> None:
    """Raise the typed error for a path that is missing, a folder, unreadable or empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileMissing(path) from None
    except OSError as exc:
        raise MediaError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if path.is_dir():
        raise UnsupportedMedia(path, "is a folder, not a media file")
    if st.st_size == 0:
        raise EmptyMedia(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise MediaError(path, "cannot read file: permission denied")


def open_image_header(path: str | os.PathLike[str], max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image lazily (header only) and enforce the pixel limit.

    Raises:
        FileMissing, EmptyMedia: missing or empty file.
        UnsupportedMedia: not an image format Pillow knows.
        CorruptMedia: the header is damaged.
        ImageTooLarge: more than ``max_pixels`` pixels.
    """
    p = Path(path)
    check_readable(p)
    try:
        with warnings.catch_warnings():
            # We apply our own limit below; Pillow's global one must not warn or raise first.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(p)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(p, f"image is too large to open safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedMedia(p, "not a recognised image format") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptMedia(p, f"image header is damaged ({exc})") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise EmptyMedia(p, "image has no pixels")
    if width * height > max_pixels:
        image.close()
        raise ImageTooLarge(
            p,
            f"image is {width}x{height} ({width * height / 1e6:.0f} MP), "
            f"more than the {max_pixels / 1e6:.0f} MP we open safely",
        )
    return image


def read_image(
    path: str | os.PathLike[str],
    max_pixels: int = MAX_IMAGE_PIXELS,
    *,
    max_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Decode an image file to ``uint8`` RGB ``(h, w, 3)``.

    Args:
        path: image file.
        max_pixels: decompression-bomb guard (see :data:`MAX_IMAGE_PIXELS`).
        max_size: when given, shrink to fit inside ``(width, height)`` while decoding
            (JPEG decodes at reduced scale directly, which makes thumbnails fast).

    Raises:
        FileMissing, EmptyMedia, UnsupportedMedia, CorruptMedia, ImageTooLarge.
    """
    p = Path(path)
    image = open_image_header(p, max_pixels)
    try:
        with image:
            if max_size is not None:
                image.draft("RGB", max_size)
            image.load()
            oriented = ImageOps.exif_transpose(image) or image
            rgb = _to_rgb(oriented)
    except MediaError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CorruptMedia(p, f"image data is damaged or truncated ({exc})") from exc
    if max_size is not None:
        w, h = fit_size(rgb.shape[1], rgb.shape[0], *max_size)
        if (w, h) != (rgb.shape[1], rgb.shape[0]):
            rgb = resize(rgb, w, h)
    return rgb


def _to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or data.max() > 255 else 255.0
        gray = np.clip(data / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if "A" in mode or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:4]
        # Composite over black: colour * alpha / 255, rounded.
        return ((rgba[..., :3] * alpha + 127) // 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def write_image(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write an RGB (or RGBA) ``uint8`` array atomically; the format follows the extension.

    Raises:
        ValueError: not a uint8 ``(h, w, 3|4)`` array.
        WriteFailed: the file could not be written (nothing is left behind).
    """
    target = Path(path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"images must be uint8 (h, w, 3|4), got {rgb.dtype} {rgb.shape}")
    temp = temp_path_for(target)
    fmt = Image.registered_extensions().get(target.suffix.lower())
    if fmt is None:
        raise WriteFailed(target, f"unknown image extension {target.suffix!r}")
    try:
        image = Image.fromarray(np.ascontiguousarray(rgb), "RGBA" if rgb.shape[2] == 4 else "RGB")
        image.save(temp, format=fmt)
        os.replace(temp, target)
    except (OSError, ValueError) as exc:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise WriteFailed(target, f"could not write image ({exc})") from exc
    return target


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size with ``width:height``'s aspect that fits in the box (at least 1x1)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    scale = min(max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with area averaging when shrinking and bilinear when enlarging."""
    if (rgb.shape[1], rgb.shape[0]) == (width, height):
        return rgb
    shrinking = width * height < rgb.shape[0] * rgb.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(rgb, (width, height), interpolation=interpolation))


def letterbox(rgb: np.ndarray, width: int, height: int, background: int = 0) -> np.ndarray:
    """Scale ``rgb`` to fit ``width`` x ``height`` keeping its aspect, centred on a flat background."""
    src_h, src_w = rgb.shape[:2]
    if (src_w, src_h) == (width, height):
        return rgb
    fit_w, fit_h = fit_size(src_w, src_h, width, height)
    scaled = resize(rgb, fit_w, fit_h)
    out = np.full((height, width, 3), background, dtype=np.uint8)
    x0, y0 = (width - fit_w) // 2, (height - fit_h) // 2
    out[y0 : y0 + fit_h, x0 : x0 + fit_w] = scaled
    return out
