"""Image reading/writing and frame geometry helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.media.errors import WriteFailed
from core.media.images import fit_size, letterbox, read_image, resize, write_image
from tests.core.media.conftest import FLAT_RGB


def test_flat_png_round_trip(flat_png: Path) -> None:
    rgb = read_image(flat_png)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert (rgb == FLAT_RGB).all()


def test_max_size_shrinks_keeping_aspect(flat_png: Path) -> None:
    assert read_image(flat_png, max_size=(32, 32)).shape == (24, 32, 3)


def test_alpha_is_composited_over_black(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[0, 0, 3], rgba[0, 1, 3], rgba[1, :, 3] = 255, 0, 128
    rgb = read_image(write_image(tmp_path / "a.png", rgba))
    assert rgb[0, 0].tolist() == [200] * 3 and rgb[0, 1].tolist() == [0] * 3
    assert rgb[1, 0].tolist() == [100] * 3


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    image.save(tmp_path / "rot.jpg", exif=exif)
    assert read_image(tmp_path / "rot.jpg").shape == (30, 10, 3)


def test_sixteen_bit_grayscale(tmp_path: Path) -> None:
    Image.fromarray(np.full((3, 3), 65535, np.uint16)).save(tmp_path / "g16.png")
    assert (read_image(tmp_path / "g16.png") == 255).all()


def test_write_image_rejects_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(WriteFailed, match="extension"):
        write_image(tmp_path / "x.nope", np.zeros((2, 2, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_fit_size() -> None:
    assert fit_size(1920, 1080, 160, 160) == (160, 90)
    assert fit_size(1080, 1920, 160, 90) == (51, 90)
    assert fit_size(1, 1000, 10, 10) == (1, 10)


def test_letterbox_centres_on_black() -> None:
    tall = np.full((100, 50, 3), 255, np.uint8)
    out = letterbox(tall, 200, 100)
    assert out.shape == (100, 200, 3)
    assert (out[:, :75] == 0).all() and (out[:, 125:] == 0).all()
    assert (out[:, 75:125] == 255).all()


def test_resize_area_average() -> None:
    checker = np.indices((4, 4)).sum(axis=0) % 2 * 255
    rgb = np.repeat(checker[..., None], 3, axis=2).astype(np.uint8)
    assert np.abs(resize(rgb, 2, 2).astype(int) - 128).max() <= 1
