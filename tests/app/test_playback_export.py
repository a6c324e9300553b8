"""Playback (audio clock drives the playhead; no-device fallback), transport keys, and export from the menu."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from tests.app.conftest import FPS, RATE, VIDEO_FRAMES, wait_idle


def _place_clip(qtbot, win, path: Path, track: str = "V1", start: int = 0) -> str:
    with qtbot.waitSignal(win.doc.editing.import_finished, timeout=15000) as blocker:
        win.doc.editing.import_files([str(path)])
    wait_idle(qtbot, win)
    asset_id = blocker.args[0][0]
    track_id = next(t for t in win.doc.project.tracks if t.name == track).track_id
    return win.doc.editing.add_clip(asset_id, track_id, start)


def test_playback_follows_the_audio_clock(qtbot, window, media_dir, output_factory):
    _place_clip(qtbot, window, media_dir / "clip.mp4")
    playback = window.doc.playback
    timeline = window.doc.timeline
    window.activateWindow()
    timeline.setFocus()
    qtbot.keyClick(timeline, Qt.Key.Key_Space)
    assert playback.playing
    (stream,) = output_factory.streams
    assert stream.started
    # The picture does not move while the sound card has not consumed anything.
    assert playback.position == 0
    # Wait for the mix, then pull half a second of sound: the playhead lands on frame 12.
    qtbot.waitUntil(lambda: playback._buffer is not None and len(playback._buffer) > 0, timeout=10000)
    out = stream.pump(RATE // 2)
    assert np.abs(out).max() > 0.1, "the clip's sound reaches the output"
    qtbot.waitUntil(lambda: timeline.playhead == FPS // 2, timeout=2000)
    assert window.doc.viewer.timecode.text() == "00:00:00:12"
    # Space pauses; the position stays where the clock was.
    qtbot.keyClick(timeline, Qt.Key.Key_Space)
    assert not playback.playing
    assert not stream.started
    assert playback.position == FPS // 2
    wait_idle(qtbot, window)


def test_playback_stops_at_the_end_of_the_timeline(qtbot, window, media_dir, output_factory):
    _place_clip(qtbot, window, media_dir / "silent.mp4")
    playback = window.doc.playback
    playback.play()
    stream = output_factory.streams[0]
    stream.pump(RATE * 2)  # two seconds: past the one-second timeline
    qtbot.waitUntil(lambda: not playback.playing, timeout=3000)
    assert playback.position == 24
    wait_idle(qtbot, window)


def test_without_a_sound_device_the_picture_still_plays(qtbot, window, media_dir):
    def no_device(rate, channels, callback):
        raise OSError("PortAudio library not found")

    window.doc.playback._output_factory = no_device
    _place_clip(qtbot, window, media_dir / "silent.mp4")
    with qtbot.waitSignal(window.doc.playback.message) as blocker:
        window.act_play.trigger()
    assert "PortAudio" in blocker.args[0]
    assert "PortAudio" in window.statusBar().currentMessage()
    # The wall clock drives the playhead instead.
    qtbot.waitUntil(lambda: window.doc.timeline.playhead > 0, timeout=5000)
    window.act_play.trigger()
    assert not window.doc.playback.playing
    wait_idle(qtbot, window)


def test_frame_step_in_out_and_scrub(qtbot, window, media_dir):
    _place_clip(qtbot, window, media_dir / "silent.mp4")
    timeline = window.doc.timeline
    window.activateWindow()
    timeline.setFocus()
    for _ in range(3):
        qtbot.keyClick(timeline, Qt.Key.Key_Right)
    qtbot.keyClick(timeline, Qt.Key.Key_Left)
    assert window.doc.playback.position == 2
    qtbot.keyClick(timeline, Qt.Key.Key_I)
    for _ in range(5):
        qtbot.keyClick(timeline, Qt.Key.Key_Right)
    qtbot.keyClick(timeline, Qt.Key.Key_O)
    assert (timeline.in_point, timeline.out_point) == (2, 8)
    # Dragging on the ruler scrubs the playhead and the viewer follows.
    from PySide6.QtCore import QPoint

    x = int(timeline.x_for_frame(15))
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=QPoint(x, 10))
    qtbot.mouseMove(timeline, QPoint(int(timeline.x_for_frame(18)), 10))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=QPoint(int(timeline.x_for_frame(18)), 10))
    assert window.doc.playback.position == 18
    assert window.doc.viewer.timecode.text() == "00:00:00:18"
    # The viewer shows the decoded picture of that frame.
    qtbot.waitUntil(lambda: not window.doc.viewer.picture.image.isNull(), timeout=10000)
    wait_idle(qtbot, window)


def test_shuttle_keys(qtbot, window, media_dir, output_factory):
    _place_clip(qtbot, window, media_dir / "clip.mp4")
    playback = window.doc.playback
    window.doc.timeline.setFocus()
    speed = window.doc.viewer.speed  # the viewer shows the shuttle speed
    qtbot.keyClick(window.doc.timeline, Qt.Key.Key_L)
    assert playback.playing and playback.speed == 1 and speed.text() == ""
    qtbot.keyClick(window.doc.timeline, Qt.Key.Key_L)
    assert playback.speed == 2 and speed.text() == "2x"
    qtbot.keyClick(window.doc.timeline, Qt.Key.Key_K)
    assert not playback.playing and speed.text() == ""
    playback.seek(30)
    qtbot.keyClick(window.doc.timeline, Qt.Key.Key_J)
    assert playback.speed == -1 and speed.text() == "◀ 1x"
    # Backwards too, the sound card's clock moves the picture.
    output_factory.streams[0].pump(RATE // 4)
    qtbot.waitUntil(lambda: playback.position == 30 - FPS // 4, timeout=5000)
    qtbot.keyClick(window.doc.timeline, Qt.Key.Key_K)
    wait_idle(qtbot, window)


def test_export_from_the_menu_writes_an_mp4(qtbot, window, media_dir, tmp_path):
    _place_clip(qtbot, window, media_dir / "clip.mp4")
    out = tmp_path / "export.mp4"
    window.choose_export_path = lambda: str(out)
    progress = []
    window.act_export.trigger()
    window.export_dialog.setValue = lambda v, orig=window.export_dialog.setValue: (
        progress.append(v),
        orig(v),
    )
    qtbot.waitUntil(lambda: window.export_worker is None, timeout=60000)
    assert window.statusBar().currentMessage().startswith("Exported")
    assert out.is_file()
    assert window.export_worker is None
    assert progress and progress[-1] == 100
    from core.media.probe import probe

    info = probe(out)
    assert info.frame_count == VIDEO_FRAMES
    assert info.has_audio


def test_cancelling_an_export_leaves_no_file(qtbot, window, media_dir, tmp_path, monkeypatch):
    import threading

    from app import document

    _place_clip(qtbot, window, media_dir / "clip.mp4")
    out = tmp_path / "cancelled.mp4"
    # Hold the real export after its first frame until the test has pressed Cancel.
    gate = threading.Event()
    real_job = document.export_job

    def gated_job(project, path, in_out):
        job = real_job(project, path, in_out)

        def run(progress, cancel):
            def held(done, total):
                progress(done, total)
                if done == 1:
                    gate.wait(10)

            return job(held, cancel)

        return run

    monkeypatch.setattr(document, "export_job", gated_job)
    window.start_export(out)
    dialog = window.export_dialog
    # (Waiting on the worker's own signals would run pytest-qt's callback on the worker thread.)
    qtbot.waitUntil(lambda: dialog.value() > 0, timeout=30000)
    cancel_button = next(b for b in dialog.findChildren(QPushButton) if b.text() == "Cancel")
    qtbot.mouseClick(cancel_button, Qt.MouseButton.LeftButton)
    gate.set()
    qtbot.waitUntil(lambda: window.export_worker is None, timeout=30000)
    assert not out.exists()
    assert list(tmp_path.glob("cancelled*")) == []
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.export_worker is None


def test_export_of_an_empty_timeline_is_refused_with_a_message(qtbot, window):
    window.choose_export_path = lambda: "/nonexistent/never.mp4"
    window.act_export.trigger()
    assert window.export_worker is None
    assert "empty" in window.statusBar().currentMessage()


def test_the_picture_waits_for_the_output_latency(qtbot, window, media_dir, output_factory):
    _place_clip(qtbot, window, media_dir / "silent.mp4")
    playback = window.doc.playback
    playback.play()
    stream = output_factory.streams[0]
    stream.latency = 0.25  # what the device reports: a quarter second between callback and speaker
    stream.pump(RATE // 2)
    qtbot.waitUntil(lambda: playback.position == FPS // 4, timeout=2000)
    playback.pause()
    wait_idle(qtbot, window)


def test_an_edit_while_playing_remixes_the_sound(qtbot, window, media_dir, output_factory):
    clip_id = _place_clip(qtbot, window, media_dir / "clip.mp4")
    playback = window.doc.playback
    playback.play()
    stream = output_factory.streams[0]
    qtbot.waitUntil(lambda: playback._buffer is not None and len(playback._buffer) > 0, timeout=10000)
    assert np.abs(stream.pump(4800)).max() > 0.1
    # Muting the clip's track while playing: after the re-mix the output is silent.
    track_id = window.doc.project.clip(clip_id).track_id
    window.doc.editing.set_track_muted(track_id, True)
    qtbot.waitUntil(lambda: playback._buffer is not None and len(playback._buffer) == 0, timeout=10000)
    assert np.abs(stream.pump(4800)).max() == 0.0
    playback.pause()
    wait_idle(qtbot, window)
