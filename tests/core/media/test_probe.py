"""probe(): kinds and properties, and a typed, readable error for every kind of bad file."""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from core.media.errors import (
    CorruptMedia,
    EmptyMedia,
    FileMissing,
    ImageTooLarge,
    MediaError,
    UnsupportedMedia,
)
from core.media.images import write_image
from core.media.probe import probe


def test_video(numbered_clip: Path) -> None:
    info = probe(numbered_clip)
    assert info.kind == "video" and info.has_video
    assert info.fps == Fraction(24) and isinstance(info.fps, Fraction)
    assert info.frame_count == 48 and info.duration == pytest.approx(2.0, abs=1e-3)
    assert info.path == numbered_clip


def test_silent_video(silent_clip: Path) -> None:
    info = probe(silent_clip)
    assert info.kind == "video" and not info.has_audio
    assert (info.sample_rate, info.channels, info.audio_codec) == (0, 0, "")


def test_image(flat_png: Path) -> None:
    info = probe(flat_png)
    assert (info.kind, info.width, info.height, info.frame_count, info.fps) == ("image", 64, 48, 1, None)


def test_image_with_a_wrong_extension_is_still_an_image(flat_png: Path, tmp_path: Path) -> None:
    odd = tmp_path / "picture.dat"
    odd.write_bytes(flat_png.read_bytes())
    assert probe(odd).kind == "image"


def test_audio(sine_wav: Path) -> None:
    info = probe(sine_wav)
    assert (info.kind, info.sample_rate, info.channels) == ("audio", 48000, 1)
    assert info.duration == pytest.approx(1.0)
    assert not info.has_video and info.frame_count == 0


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileMissing) as err:
        probe(tmp_path / "gone é.mp4")
    assert "gone é.mp4" in str(err.value) and "not found" in str(err.value)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(EmptyMedia, match="empty"):
        probe(tmp_path / "empty.mp4")


def test_folder(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMedia, match="folder"):
        probe(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_video(numbered_clip: Path, tmp_path: Path, keep: float) -> None:
    data = numbered_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptMedia, match=r"cut\.mp4.*damaged"):
        probe(cut)


def test_random_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(UnsupportedMedia, match="not a recognised"):
        probe(junk)


def test_damaged_png(flat_png: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(flat_png.read_bytes()[:8] + b"\x00" * 64)
    with pytest.raises(MediaError):
        probe(bad)


def test_image_over_our_pixel_limit(flat_png: Path) -> None:
    with pytest.raises(ImageTooLarge, match="64x48"):
        probe(flat_png, max_pixels=1000)


def _png_claiming(width: int, height: int, real: bytes) -> bytes:
    """A real PNG whose header claims another size (a decompression bomb needs no pixels)."""
    ihdr = real[12:16] + struct.pack(">II", width, height) + real[24:29]
    crc = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return real[:8] + real[8:12] + ihdr + crc + real[33:]


def test_decompression_bomb_is_image_too_large(flat_png: Path, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(60000, 60000, flat_png.read_bytes()))
    with pytest.raises(ImageTooLarge, match=r"bomb\.png"):
        probe(bomb)


def test_non_ascii_names(tmp_path: Path) -> None:
    path = write_image(tmp_path / "写真 ☀.png", np.zeros((4, 6, 3), np.uint8))
    assert probe(path).width == 6


def test_cover_art_does_not_make_music_a_video(tmp_path: Path) -> None:
    import av

    from core.media.audio import load_audio
    from core.media.patterns import sine

    path = tmp_path / "song.mp3"
    with av.open(str(path), "w") as container:
        audio = container.add_stream("libmp3lame", rate=44100, layout="mono")
        cover = container.add_stream("png", rate=1)
        cover.width, cover.height, cover.pix_fmt = 32, 32, "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        picture.pts = 0
        for packet in [*cover.encode(picture), *cover.encode(None)]:
            container.mux(packet)
        samples = sine(0.5, 44100)
        step = audio.codec_context.frame_size
        for start in range(0, len(samples), step):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + step], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 44100, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    info = probe(path)
    assert (info.kind, info.has_audio, info.width) == ("audio", True, 0)
    assert len(load_audio(path).samples) == pytest.approx(22050, abs=1200)
