"""Run-wide generated media for the media engine tests, written with our own ``core.media`` writers.

Nothing binary is committed: each session writes a 1 s sine WAV, a flat PNG and a short clip whose
frames show their own number (see :mod:`core.media.patterns`), with a sine soundtrack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.media.images import write_image
from core.media.patterns import numbered_frame, sine
from core.media.writer import write_video, write_wav

CLIP_FRAMES = 48
CLIP_FPS = 24
CLIP_SIZE = (160, 96)
CLIP_GOP = 12
FLAT_RGB = (40, 120, 200)
RATE = 48000


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("média")  # non-ASCII on purpose


@pytest.fixture(scope="session")
def sine_wav(media_dir: Path) -> Path:
    """1 s, 440 Hz, amplitude 0.5, mono, 48 kHz, 16-bit."""
    return write_wav(media_dir / "sine 440.wav", sine(1.0, RATE), RATE)


@pytest.fixture(scope="session")
def flat_png(media_dir: Path) -> Path:
    """64x48 of a single colour (FLAT_RGB)."""
    return write_image(media_dir / "flat.png", np.full((48, 64, 3), FLAT_RGB, np.uint8))


@pytest.fixture(scope="session")
def numbered_clip(media_dir: Path) -> Path:
    """2 s at 24 fps, 160x96, frame N shows N; 1 s mono sine soundtrack; keyframe every 12 frames."""
    frames = (numbered_frame(i, *CLIP_SIZE) for i in range(CLIP_FRAMES))
    return write_video(
        media_dir / "numbered clip ✓.mp4",
        frames,
        CLIP_FPS,
        audio=sine(1.0, RATE),
        audio_rate=RATE,
        keyframe_interval=CLIP_GOP,
    )


@pytest.fixture(scope="session")
def silent_clip(media_dir: Path) -> Path:
    """1 s of numbered frames at 24 fps without audio (default keyframe interval)."""
    return write_video(media_dir / "silent.mp4", (numbered_frame(i, 128, 72) for i in range(24)), 24)


@pytest.fixture(scope="session")
def noise_wav(media_dir: Path) -> tuple[Path, np.ndarray]:
    """1 s of band-limited noise (no periodicity, so misalignment shows), stereo 48 kHz, and its samples."""
    rng = np.random.default_rng(7)
    walk = np.cumsum(rng.standard_normal((RATE, 2)), axis=0)
    walk -= np.apply_along_axis(lambda c: np.convolve(c, np.ones(200) / 200, "same"), 0, walk)
    samples = (0.5 * walk / np.abs(walk).max()).astype(np.float32)
    path = write_wav(media_dir / "noise.wav", samples, RATE)
    return path, np.round(samples * 32767) / 32767
