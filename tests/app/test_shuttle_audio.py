"""Sound while shuttling: the controller's output at 2x, 4x and backwards (driven through a fake output
stream, so the consumed samples are the clock). The stretch alone: tests/core/media/test_stretch.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app import playback as playback_module
from tests.app.conftest import FPS, RATE, wait_idle
from tests.core.media.test_stretch import dominant_frequency, tone

FRAME_SAMPLES = RATE // FPS  # output samples of one frame duration


def chirp(seconds: float, f0: float, f1: float) -> np.ndarray:
    frequency = np.linspace(f0, f1, round(seconds * RATE))
    return (0.5 * np.sin(2 * np.pi * np.cumsum(frequency) / RATE)).astype(np.float32)


def last_sound(samples: np.ndarray, threshold: float = 0.05) -> int:
    loud = np.flatnonzero(np.abs(samples).max(axis=1) > threshold)
    return int(loud[-1]) + 1 if len(loud) else 0


# -- the controller -------------------------------------------------------------------------------


def _place_audio(qtbot, window, path: Path, start: int = 0) -> str:
    with qtbot.waitSignal(window.doc.editing.import_finished, timeout=15000) as blocker:
        window.doc.editing.import_files([str(path)])
    wait_idle(qtbot, window)
    track_id = next(t for t in window.doc.project.tracks if t.name == "A1").track_id
    return window.doc.editing.add_clip(blocker.args[0][0], track_id, start)


def _write(tmp_path: Path, name: str, mono: np.ndarray) -> Path:
    from core.media.writer import write_wav

    return write_wav(tmp_path / name, mono, RATE)


def _wait_for_sound(qtbot, playback) -> None:
    qtbot.waitUntil(lambda: playback._buffer is not None and len(playback._buffer) > 0, timeout=10000)


def _play(qtbot, playback, output_factory, speed: int):
    """Start playback at ``speed`` and wait for its first sound; the audio stream the device pulls from."""
    playback.play(speed)
    stream = output_factory.streams[0]
    _wait_for_sound(qtbot, playback)
    return stream


def _pump_frames(qtbot, playback, stream, count: int, step: int) -> list[np.ndarray]:
    """Pull one frame duration of sound ``count`` times; the playhead moves ``step`` frames each time."""
    pulled = []
    for _ in range(count):
        before = playback.position
        pulled.append(stream.pump(FRAME_SAMPLES))
        qtbot.waitUntil(lambda before=before: playback.position == before + step, timeout=2000)
    return pulled


def test_shuttle_at_2x_plays_the_tone_at_its_pitch_in_half_the_time(qtbot, window, tmp_path, output_factory):
    _place_audio(qtbot, window, _write(tmp_path, "a440.wav", tone(2.0, 440.0)))
    playback = window.doc.playback
    stream = _play(qtbot, playback, output_factory, 2)
    assert playback.position == 0
    # The picture moves 2 frames for each frame duration of samples the device took.
    pulled = _pump_frames(qtbot, playback, stream, 6, 2)
    assert playback.position == 12
    # The rest in one pull (no tick in between): the 2 s tone lasts 1 s of output.
    pulled.append(stream.pump(RATE))
    out = np.concatenate(pulled)
    assert abs(last_sound(out) - RATE) < 0.02 * RATE
    assert dominant_frequency(out[RATE // 10 : 9 * RATE // 10]) == pytest.approx(440.0, rel=0.03)
    qtbot.waitUntil(lambda: not playback.playing, timeout=3000)
    assert playback.position == 48  # stopped at the end of the two-second timeline
    wait_idle(qtbot, window)


def test_shuttle_at_4x_is_a_quarter_as_long(qtbot, window, tmp_path, output_factory):
    _place_audio(qtbot, window, _write(tmp_path, "a440.wav", tone(2.0, 440.0)))
    playback = window.doc.playback
    stream = _play(qtbot, playback, output_factory, 4)
    out = stream.pump(RATE)
    assert abs(last_sound(out) - RATE // 2) < 0.02 * RATE
    assert dominant_frequency(out[RATE // 20 : 9 * RATE // 20]) == pytest.approx(440.0, rel=0.03)
    qtbot.waitUntil(lambda: not playback.playing, timeout=3000)
    assert playback.position == 48
    wait_idle(qtbot, window)


@pytest.mark.parametrize("speed", [-1, -2])
def test_reverse_shuttle_plays_the_mix_backwards(qtbot, window, tmp_path, output_factory, speed):
    # A chirp rising from 300 to 1500 Hz over two seconds is heard falling, and the playhead goes back.
    _place_audio(qtbot, window, _write(tmp_path, "chirp.wav", chirp(2.0, 300.0, 1500.0)))
    playback = window.doc.playback
    playback.seek(48)
    stream = _play(qtbot, playback, output_factory, speed)
    pulled = _pump_frames(qtbot, playback, stream, 4, speed)
    assert playback.position == 48 + 4 * speed
    duration = 2 * RATE // -speed
    pulled.append(stream.pump(duration + RATE // 2))
    out = np.concatenate(pulled)
    assert abs(last_sound(out) - duration) < 0.02 * RATE
    quarter = duration // 4
    # Output 1/16..1/4 of the way is timeline 1.875..1.5 s (1425..1200 Hz); 3/4..15/16 is 0.5..0.125 s
    # (600..375 Hz).
    early = dominant_frequency(out[quarter // 4 : quarter])
    late = dominant_frequency(out[3 * quarter : 3 * quarter + 3 * quarter // 4])
    assert 1150 < early < 1450
    assert 350 < late < 650
    qtbot.waitUntil(lambda: not playback.playing, timeout=3000)
    assert playback.position == 0
    wait_idle(qtbot, window)


def test_changing_speed_while_playing_goes_on_from_the_playhead(qtbot, window, tmp_path, output_factory):
    # Steps of pitch mark the timeline: 0-1 s 400 Hz, 1-2 s 800 Hz, 2-3 s 1200 Hz.
    marks = np.concatenate([tone(1.0, 400.0), tone(1.0, 800.0), tone(1.0, 1200.0)])
    _place_audio(qtbot, window, _write(tmp_path, "steps.wav", marks))
    playback = window.doc.playback
    stream = _play(qtbot, playback, output_factory, 1)
    stream.pump(3 * RATE // 4)
    qtbot.waitUntil(lambda: playback.position == 18, timeout=2000)
    playback.shuttle(1)  # L again: 2x from the playhead (0.75 s)
    assert playback.speed == 2 and playback.playing
    _wait_for_sound(qtbot, playback)
    assert playback.position == 18
    out = stream.pump(RATE // 2)  # timeline 0.75 .. 1.75 s
    qtbot.waitUntil(lambda: playback.position == 18 + 24, timeout=2000)
    # 1 s of the timeline comes 0.125 s after the switch: 400 Hz before, 800 Hz after.
    assert dominant_frequency(out[: RATE // 10]) == pytest.approx(400.0, rel=0.03)
    assert dominant_frequency(out[RATE // 6 : RATE // 2]) == pytest.approx(800.0, rel=0.03)
    # And backwards from where it is now (1.75 s): 800 Hz, then 400 Hz after 0.75 s of output.
    playback.shuttle(-1)
    assert playback.speed == -1
    _wait_for_sound(qtbot, playback)
    assert playback.position == 42
    out = stream.pump(RATE)
    assert dominant_frequency(out[: RATE // 2]) == pytest.approx(800.0, rel=0.03)
    assert dominant_frequency(out[4 * RATE // 5 :]) == pytest.approx(400.0, rel=0.03)
    playback.pause()
    wait_idle(qtbot, window)


def test_long_shuttles_are_mixed_in_pieces_that_join_without_a_click(
    qtbot, window, tmp_path, output_factory, monkeypatch
):
    monkeypatch.setattr(playback_module, "FIRST_MIX_SECONDS", 0.2)
    monkeypatch.setattr(playback_module, "MIX_SECONDS", 0.3)
    monkeypatch.setattr(playback_module, "MIX_AHEAD_SECONDS", 0.15)
    _place_audio(qtbot, window, _write(tmp_path, "a440.wav", tone(3.0, 440.0)))
    playback = window.doc.playback
    placed = []
    real_place = playback._place_mix
    monkeypatch.setattr(
        playback, "_place_mix", lambda first, samples: (placed.append(first), real_place(first, samples))
    )
    stream = _play(qtbot, playback, output_factory, 2)
    pulled = []
    for _ in range(24):  # 1.2 s of output in 50 ms pulls, each followed by ticks and the next mix
        pulled.append(stream.pump(RATE // 20))
        qtbot.wait(2 * playback_module.TICK_MS)
        qtbot.waitUntil(lambda: not playback._mix_pending, timeout=5000)
    out = np.concatenate(pulled)[:, 0]
    assert len(placed) >= 4 and placed[0] == 0
    ideal_step = 0.5 * 2 * np.pi * 440.0 / RATE
    assert np.abs(np.diff(out)).max() < 1.1 * ideal_step  # no click, no gap at the joins
    rms = np.sqrt((out[: len(out) // 480 * 480].reshape(-1, 480) ** 2).mean(axis=1))
    assert rms.min() > 0.3
    assert dominant_frequency(out) == pytest.approx(440.0, rel=0.03)
    assert playback.position == 48 + 9  # 1.2 s at 2x: 2.4 s of timeline
    playback.pause()
    wait_idle(qtbot, window)


def test_an_edit_while_shuttling_remixes_the_sound(qtbot, window, tmp_path, output_factory):
    clip_id = _place_audio(qtbot, window, _write(tmp_path, "a440.wav", tone(3.0, 440.0)))
    playback = window.doc.playback
    stream = _play(qtbot, playback, output_factory, 2)
    assert np.abs(stream.pump(4800)).max() > 0.4
    track_id = window.doc.project.clip(clip_id).track_id
    window.doc.editing.set_track_muted(track_id, True)
    qtbot.waitUntil(lambda: playback._buffer is not None and len(playback._buffer) == 0, timeout=10000)
    assert np.abs(stream.pump(4800)).max() == 0.0
    assert playback.speed == 2
    playback.pause()
    wait_idle(qtbot, window)


def test_shuttle_sound_stops_at_the_loop_end(qtbot, window, tmp_path, output_factory):
    _place_audio(qtbot, window, _write(tmp_path, "a440.wav", tone(2.0, 440.0)))
    playback = window.doc.playback
    playback.loop_end = 24  # one second of timeline: a quarter second of sound at 4x
    stream = _play(qtbot, playback, output_factory, 4)
    out = stream.pump(RATE // 2)
    assert abs(last_sound(out) - RATE // 4) < 0.02 * RATE
    qtbot.waitUntil(lambda: not playback.playing, timeout=3000)
    assert playback.position == 24
    wait_idle(qtbot, window)
