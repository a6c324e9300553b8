"""Audio decoding, resampling, region extraction, channel conversion and mixing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.media.audio import AudioMixer, iter_audio, load_audio, mix, resample, to_channels
from core.media.errors import NoAudioStream
from core.media.patterns import sine


def _lag(got: np.ndarray, ref: np.ndarray, at: int, span: int = 1000, search: int = 300) -> int:
    """Offset (samples) at which ``got`` best matches ``ref`` starting near ``at``."""
    errors = {
        lag: float(np.abs(got[100 : 100 + span] - ref[at + lag + 100 : at + lag + 100 + span]).mean())
        for lag in range(-search, search + 1)
        if at + lag >= 0
    }
    return min(errors, key=lambda k: errors[k])


def test_wav_decodes_exactly(sine_wav: Path) -> None:
    audio = load_audio(sine_wav)
    assert audio.rate == 48000 and audio.samples.shape == (48000, 1) and audio.samples.dtype == np.float32
    assert np.abs(audio.samples[:, 0] - sine(1.0, 48000)).max() < 1e-4


def test_region_is_sample_aligned(noise_wav: tuple[Path, np.ndarray]) -> None:
    path, ref = noise_wav
    part = load_audio(path, start=0.25, end=0.5)
    assert part.samples.shape == (12000, 2)
    assert np.abs(part.samples - ref[12000:24000]).max() < 1e-4


def test_region_past_the_end_is_padded_with_silence(noise_wav: tuple[Path, np.ndarray]) -> None:
    path, ref = noise_wav
    part = load_audio(path, start=0.9, end=1.2)
    assert part.samples.shape == (14400, 2)
    assert np.abs(part.samples[:4800] - ref[43200:]).max() < 1e-4
    assert (part.samples[4800:] == 0).all()


def test_resampled_region_stays_aligned(noise_wav: tuple[Path, np.ndarray]) -> None:
    path, ref = noise_wav
    part = load_audio(path, rate=16000, channels=1, start=0.5, end=0.75)
    assert part.samples.shape == (4000, 1) and part.rate == 16000
    ref16 = resample(ref.mean(axis=1), 48000, 16000)
    assert _lag(part.samples[:, 0], ref16, 8000, span=500, search=50) == 0


def test_video_soundtrack_in_sync(numbered_clip: Path) -> None:
    audio = load_audio(numbered_clip, rate=48000)
    assert audio.channels == 1
    assert len(audio.samples) == 48000  # the encoder's padding is trimmed to the stream's length
    part = load_audio(numbered_clip, start=0.5, end=0.6)
    ref = sine(1.0, 48000)
    rms = float(np.sqrt(np.mean((part.samples[:, 0] - ref[24000:28800]) ** 2)))
    assert rms < 0.01


def test_stereo_from_mono(sine_wav: Path) -> None:
    audio = load_audio(sine_wav, channels=2)
    assert audio.samples.shape == (48000, 2)
    assert np.allclose(audio.samples[:, 0], audio.samples[:, 1], atol=1e-3)
    assert audio.samples.max() == pytest.approx(0.5, abs=1e-3)  # full level on both sides
    assert audio.mono().shape == (48000,)


def test_no_audio_stream(silent_clip: Path) -> None:
    with pytest.raises(NoAudioStream, match=r"silent\.mp4"):
        load_audio(silent_clip)


def test_bad_arguments(sine_wav: Path) -> None:
    with pytest.raises(ValueError, match="range"):
        load_audio(sine_wav, start=0.5, end=0.2)
    with pytest.raises(ValueError, match="channels"):
        load_audio(sine_wav, channels=9)


def test_to_channels() -> None:
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    assert to_channels(stereo, 1)[:, 0].tolist() == [0.5, 0.5]
    assert to_channels(np.array([0.25], np.float32), 2).tolist() == [[0.25, 0.25]]


def test_resample_keeps_a_tone() -> None:
    tone = sine(1.0, 48000, 440)
    out = resample(tone, 48000, 16000)
    assert len(out) == 16000
    assert np.abs(out[200:-200] - sine(1.0, 16000, 440)[200:-200]).max() < 0.01


def test_mix_sums_with_gains_and_clips() -> None:
    a = np.full(4, 0.5, np.float32)
    b = np.full((2, 2), 0.75, np.float32)
    out = mix([a, b], [1.0, 0.5])
    assert out.shape == (4, 2)
    assert out[:, 0].tolist() == [0.875, 0.875, 0.5, 0.5]
    assert mix([a, a, a]).max() == 1.0  # clipped


def test_mixer_offsets_drop_what_falls_outside() -> None:
    mixer = AudioMixer(5, 1)
    mixer.add(np.ones(3, np.float32), offset=-1, gain=0.5)
    mixer.add(np.ones(3, np.float32), offset=4)
    mixer.add(np.ones(3, np.float32), offset=2, gain=0.0)
    assert mixer.result()[:, 0].tolist() == [0.5, 0.5, 0.0, 0.0, 1.0]


def test_iter_audio_blocks_add_up_to_load_audio(
    numbered_clip: Path, noise_wav: tuple[Path, np.ndarray]
) -> None:
    for path in (numbered_clip, noise_wav[0]):
        rate, blocks = iter_audio(path, rate=16000, block_seconds=0.1)
        parts = list(blocks)
        assert rate == 16000 and len(parts) > 5
        whole = load_audio(path, rate=16000).samples
        joined = np.concatenate(parts)
        assert joined.shape == whole.shape
        assert np.abs(joined - whole).max() < 1e-5


def test_iter_audio_reports_file_problems_at_once(silent_clip: Path) -> None:
    with pytest.raises(NoAudioStream):
        iter_audio(silent_clip)
