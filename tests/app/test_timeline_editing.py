"""Bin import, drops onto the timeline, and move/trim/split/lift/ripple with real mouse and key events."""

from __future__ import annotations

import warnings
from pathlib import Path

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.timeline import ASSET_MIME
from core.project import TrackKind
from tests.app.conftest import FPS, VIDEO_FRAMES, wait_idle


def _drop(widget, pos: QPoint, mime: QMimeData) -> None:
    """Deliver enter/move/drop events like a drag from another widget or the file manager."""
    action = Qt.DropAction.CopyAction
    buttons, mods = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    with warnings.catch_warnings():  # PySide marks the only QPoint constructors deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(pos, action, mime, buttons, mods)
        move = QDragMoveEvent(pos, action, mime, buttons, mods)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), "the widget refused the drag"
    QApplication.sendEvent(widget, move)
    QApplication.sendEvent(widget, QDropEvent(QPointF(pos), action, mime, buttons, mods))


def _file_mime(*paths: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def _track(win, name: str):
    return next(t for t in win.doc.project.tracks if t.name == name)


def _import(qtbot, win, *paths: Path) -> list[str]:
    with qtbot.waitSignal(win.doc.editing.import_finished, timeout=15000) as blocker:
        win.doc.editing.import_files([str(p) for p in paths])
    wait_idle(qtbot, win)
    return blocker.args[0]


def _clip_centre(win, clip) -> QPoint:
    return win.doc.timeline.clip_rect(clip).center().toPoint()


def _place(qtbot, win, asset_id: str, track: str, start: int) -> str:
    clip_id = win.doc.editing.add_clip(asset_id, _track(win, track).track_id, start)
    return clip_id


def test_dropping_files_on_the_bin_imports_them(qtbot, window, media_dir):
    view = window.doc.bin.view
    mime = _file_mime(media_dir / "clip.mp4", media_dir / "tone.wav", media_dir / "still.png")
    with qtbot.waitSignal(window.doc.editing.import_finished, timeout=15000) as blocker:
        _drop(view.viewport(), QPoint(40, 40), mime)
    added, errors = blocker.args
    assert errors == []
    assert len(added) == 3
    assets = {a.name: a for a in window.doc.project.assets}
    assert assets["clip.mp4"].duration_frames == VIDEO_FRAMES
    assert assets["clip.mp4"].has_audio
    assert assets["tone.wav"].duration_frames == FPS
    assert assets["still.png"].duration_frames is None
    assert window.doc.bin.model.rowCount() == 3
    assert window.isWindowModified()
    # One undo step removes the whole import.
    window.doc.stack.undo()
    assert window.doc.project.assets == []
    assert window.doc.bin.model.rowCount() == 0
    wait_idle(qtbot, window)


def test_a_file_that_is_not_media_is_refused_with_a_message(qtbot, window, media_dir, tmp_path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video")
    with qtbot.waitSignal(window.doc.editing.import_finished, timeout=15000) as blocker:
        _drop(window.doc.bin.view.viewport(), QPoint(20, 20), _file_mime(bogus, media_dir / "tone.wav"))
    added, errors = blocker.args
    assert len(added) == 1
    assert errors and errors[0][0].endswith("notes.mp4")
    assert "notes.mp4" in window.statusBar().currentMessage()
    wait_idle(qtbot, window)


def test_dragging_an_asset_from_the_bin_onto_a_track_places_a_clip(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "silent.mp4")
    timeline = window.doc.timeline
    v1 = _track(window, "V1")
    top, h = timeline.track_top(v1.track_id)
    x = int(timeline.x_for_frame(30))
    mime = window.doc.bin.model.mimeData([window.doc.bin.model.index(0)])
    assert bytes(mime.data(ASSET_MIME).data()).decode() == asset_id
    _drop(timeline, QPoint(x, top + h // 2), mime)
    clips = list(window.doc.project.clips_on(v1))
    assert len(clips) == 1
    assert clips[0].asset_id == asset_id
    assert clips[0].start == 30
    assert timeline.selected == {clips[0].clip_id}


def test_dropping_a_file_on_the_timeline_imports_and_places_it(qtbot, window, media_dir):
    timeline = window.doc.timeline
    v1 = _track(window, "V1")
    top, h = timeline.track_top(v1.track_id)
    with qtbot.waitSignal(window.doc.editing.clips_placed, timeout=15000):
        _drop(
            timeline,
            QPoint(int(timeline.x_for_frame(0)) + 2, top + h // 2),
            _file_mime(media_dir / "clip.mp4"),
        )
    wait_idle(qtbot, window)
    video = list(window.doc.project.clips_on(v1))
    assert len(video) == 1 and video[0].duration == VIDEO_FRAMES
    # A video keeps its own sound on the video track (the export mixes it): no duplicate audio clip.
    assert list(window.doc.project.clips_on(_track(window, "A1"))) == []
    assert len(window.doc.project.assets) == 1


def test_move_by_dragging_then_undo_and_redo(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "silent.mp4")
    clip_id = _place(qtbot, window, asset_id, "V1", 0)
    timeline = window.doc.timeline
    timeline.snapping = False
    clip = window.doc.project.clip(clip_id)
    start = _clip_centre(window, clip)
    dx = int(20 * timeline.px_per_frame)
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(timeline, start + QPoint(dx // 2, 0))
    qtbot.mouseMove(timeline, start + QPoint(dx, 0))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=start + QPoint(dx, 0))
    assert window.doc.project.clip(clip_id).start == 20
    assert window.act_undo.text() == "&Undo Move clip"
    timeline.setFocus()
    qtbot.keyClick(timeline, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.doc.project.clip(clip_id).start == 0
    qtbot.keyClick(
        timeline, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    assert window.doc.project.clip(clip_id).start == 20


def test_move_across_tracks_by_dragging(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "silent.mp4")
    clip_id = _place(qtbot, window, asset_id, "V1", 10)
    timeline = window.doc.timeline
    timeline.snapping = False
    v2 = _track(window, "V2")
    start = _clip_centre(window, window.doc.project.clip(clip_id))
    top, h = timeline.track_top(v2.track_id)
    target = QPoint(start.x(), top + h // 2)
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(timeline, QPoint(start.x(), (start.y() + target.y()) // 2))
    qtbot.mouseMove(timeline, target)
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=target)
    clip = window.doc.project.clip(clip_id)
    assert clip.track_id == v2.track_id
    assert clip.start == 10


def test_a_move_onto_another_clip_is_refused_and_explained(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "silent.mp4")
    first = _place(qtbot, window, asset_id, "V1", 0)
    _place(qtbot, window, asset_id, "V1", 40)
    timeline = window.doc.timeline
    timeline.snapping = False
    before = window.doc.project.to_dict()
    start = _clip_centre(window, window.doc.project.clip(first))
    dx = int(30 * timeline.px_per_frame)
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(timeline, start + QPoint(dx, 0))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=start + QPoint(dx, 0))
    assert window.doc.project.to_dict() == before
    assert window.statusBar().currentMessage()


def test_trim_both_edges_by_dragging(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "silent.mp4")
    clip_id = _place(qtbot, window, asset_id, "V1", 0)
    timeline = window.doc.timeline
    timeline.snapping = False
    ppf = timeline.px_per_frame
    rect = timeline.clip_rect(window.doc.project.clip(clip_id))
    y = int(rect.center().y())
    right = QPoint(int(rect.right()) - 1, y)
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=right)
    qtbot.mouseMove(timeline, right - QPoint(int(4 * ppf), 0))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=right - QPoint(int(4 * ppf), 0))
    clip = window.doc.project.clip(clip_id)
    assert (clip.start, clip.in_point, clip.out_point) == (0, 0, 20)
    left = QPoint(int(timeline.x_for_frame(0)) + 1, y)
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=left)
    qtbot.mouseMove(timeline, left + QPoint(int(5 * ppf), 0))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=left + QPoint(int(5 * ppf), 0))
    clip = window.doc.project.clip(clip_id)
    assert (clip.start, clip.in_point, clip.out_point) == (5, 5, 20)
    window.doc.stack.undo()
    window.doc.stack.undo()
    clip = window.doc.project.clip(clip_id)
    assert (clip.start, clip.in_point, clip.out_point) == (0, 0, 24)


def test_trim_snaps_to_the_playhead(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "silent.mp4")
    clip_id = _place(qtbot, window, asset_id, "V1", 0)
    timeline = window.doc.timeline
    timeline.snapping = True
    window.doc.playback.seek(17)
    rect = timeline.clip_rect(window.doc.project.clip(clip_id))
    right = QPoint(int(rect.right()) - 1, int(rect.center().y()))
    near = QPoint(int(timeline.x_for_frame(17)) + 3, right.y())  # 3 px off the playhead
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=right)
    qtbot.mouseMove(timeline, near)
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=near)
    assert window.doc.project.clip(clip_id).end == 17


def test_split_lift_and_ripple_delete_with_keys(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "silent.mp4")
    a = _place(qtbot, window, asset_id, "V1", 0)
    b = _place(qtbot, window, asset_id, "V1", 24)
    timeline = window.doc.timeline
    project = window.doc.project
    v1 = _track(window, "V1")
    window.activateWindow()
    timeline.setFocus()
    # S splits the clip under the playhead.
    window.doc.playback.seek(10)
    qtbot.keyClick(timeline, Qt.Key.Key_S)
    clips = list(project.clips_on(v1))
    assert [(c.start, c.end) for c in clips] == [(0, 10), (10, 24), (24, 48)]
    # Click the middle piece, Delete lifts it (gap stays).
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=_clip_centre(window, clips[1]))
    assert timeline.selected == {clips[1].clip_id}
    qtbot.keyClick(timeline, Qt.Key.Key_Delete)
    assert [(c.start, c.end) for c in project.clips_on(v1)] == [(0, 10), (24, 48)]
    # Undo, then Shift+Delete ripple-deletes it: the clip after it closes the gap.
    qtbot.keyClick(timeline, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    middle = next(c for c in project.clips_on(v1) if c.start == 10)
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=_clip_centre(window, middle))
    qtbot.keyClick(timeline, Qt.Key.Key_Delete, Qt.KeyboardModifier.ShiftModifier)
    assert [(c.start, c.end) for c in project.clips_on(v1)] == [(0, 10), (10, 34)]
    assert project.clip(b).start == 10
    assert project.check_invariants() == []
    assert project.has_clip(a)


def test_multi_select_with_ctrl_click_and_marquee(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "silent.mp4")
    a = _place(qtbot, window, asset_id, "V1", 0)
    b = _place(qtbot, window, asset_id, "V1", 30)
    c = _place(qtbot, window, asset_id, "V2", 60)
    timeline = window.doc.timeline
    project = window.doc.project
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=_clip_centre(window, project.clip(a)))
    qtbot.mouseClick(
        timeline,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ControlModifier,
        pos=_clip_centre(window, project.clip(c)),
    )
    assert timeline.selected == {a, c}
    # Rubber band from empty space across the V1 clips selects both of them.
    v1 = _track(window, "V1")
    top, h = timeline.track_top(v1.track_id)
    y = top + h // 2
    empty = QPoint(int(timeline.x_for_frame(90)), y)
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=empty)
    qtbot.mouseMove(timeline, QPoint(int(timeline.x_for_frame(40)), y + 2))
    qtbot.mouseMove(timeline, QPoint(int(timeline.x_for_frame(2)), y + 4))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=QPoint(int(timeline.x_for_frame(2)), y + 4))
    assert timeline.selected == {a, b}
    # Moving a multi-selection moves both clips as one undo step.
    timeline.snapping = False
    start = _clip_centre(window, project.clip(a))
    dx = int(5 * timeline.px_per_frame)
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(timeline, start + QPoint(dx, 0))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=start + QPoint(dx, 0))
    assert (project.clip(a).start, project.clip(b).start) == (5, 35)
    window.doc.stack.undo()
    assert (project.clip(a).start, project.clip(b).start) == (0, 30)


def test_markers_lock_and_mute(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "silent.mp4")
    clip_id = _place(qtbot, window, asset_id, "V1", 0)
    timeline = window.doc.timeline
    project = window.doc.project
    window.doc.playback.seek(12)
    timeline.setFocus()
    qtbot.keyClick(timeline, Qt.Key.Key_M)
    assert [m.frame for m in project.markers] == [12]
    # Lock V1 with its header button: a drag then changes nothing and says why.
    v1 = _track(window, "V1")
    top, h = timeline.track_top(v1.track_id)
    lock = timeline.header_buttons(v1, top, h)["lock"].center().toPoint()
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=lock)
    assert v1.locked
    timeline.snapping = False
    start = _clip_centre(window, project.clip(clip_id))
    qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(timeline, start + QPoint(40, 0))
    qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=start + QPoint(40, 0))
    assert project.clip(clip_id).start == 0
    assert "locked" in window.statusBar().currentMessage().lower()
    mute = timeline.header_buttons(v1, top, h)["mute"].center().toPoint()
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=mute)
    assert v1.muted


def test_audio_region_by_dragging_on_a_waveform_and_clip_level(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "tone.wav")
    clip_id = _place(qtbot, window, asset_id, "A1", 0)
    timeline = window.doc.timeline
    timeline.set_zoom(20.0, anchor_x=timeline.x_for_frame(0))
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.doc.media.has_peaks(asset_id), timeout=10000)
    rect = timeline.clip_rect(window.doc.project.clip(clip_id))
    y = int(rect.bottom()) - 8
    a = QPoint(int(timeline.x_for_frame(4)) + 2, y)
    b = QPoint(int(timeline.x_for_frame(16)) + 2, y)
    with qtbot.waitSignal(timeline.audio_region_selected) as blocker:
        qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=a)
        qtbot.mouseMove(timeline, b)
        qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=b)
    assert blocker.args == [clip_id, 4, 16]
    assert window.doc.project.clip(clip_id).start == 0  # a region drag never moves the clip
    # The inspector edits the clip's level through the undo stack.
    gain = window.doc.inspector.gain
    assert gain is not None
    gain.setValue(-6.0)
    assert window.doc.project.clip(clip_id).gain_db == -6.0
    window.doc.stack.undo()
    assert window.doc.project.clip(clip_id).gain_db == 0.0


def test_new_tracks_come_from_the_timeline_menu(qtbot, window):
    before = [t.kind for t in window.doc.project.tracks]
    window.act_add_video_track.trigger()
    window.act_add_audio_track.trigger()
    kinds = [t.kind for t in window.doc.project.tracks]
    assert kinds.count(TrackKind.VIDEO) == before.count(TrackKind.VIDEO) + 1
    assert kinds[0] is TrackKind.VIDEO and kinds[-1] is TrackKind.AUDIO


def test_many_tracks_scroll_vertically_and_stay_clickable(qtbot, window, media_dir):
    (asset_id,) = _import(qtbot, window, media_dir / "tone.wav")
    for _ in range(6):
        window.act_add_audio_track.trigger()
    panel = window.doc.timeline_panel
    timeline = window.doc.timeline
    window.main_splitter.setSizes([700, 260])
    qtbot.waitUntil(lambda: panel.vscrollbar.isVisible(), timeout=3000)
    last = window.doc.project.tracks[-1]
    clip_id = window.doc.editing.add_clip(asset_id, last.track_id, 0)
    panel.vscrollbar.setValue(panel.vscrollbar.maximum())
    top, h = timeline.track_top(last.track_id)
    assert top + h <= timeline.height() + 1, "the bottom track is scrolled into view"
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=QPoint(int(timeline.x_for_frame(3)), top + 8))
    assert timeline.selected == {clip_id}
    wait_idle(qtbot, window)


def test_delete_in_the_bin_removes_media_and_on_the_timeline_lifts(qtbot, window, media_dir):
    project = window.doc.project
    still, tone = _import(qtbot, window, media_dir / "still.png", media_dir / "tone.wav")
    v1 = _track(window, "V1")
    kept = _place(qtbot, window, still, "V1", 0)
    view = window.doc.bin.view
    row = next(r for r in range(view.model().rowCount())
               if view.model().index(r, 0).data(Qt.ItemDataRole.DisplayRole).startswith("tone"))
    view.setCurrentIndex(view.model().index(row, 0))
    view.setFocus()
    qtbot.waitUntil(view.hasFocus)
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert [a.asset_id for a in project.assets] == [still], "Delete in the bin removes the selected media"
    assert project.has_clip(kept), "and leaves the timeline alone"
    window.doc.stack.undo()
    assert {a.asset_id for a in project.assets} == {still, tone}
    # With the timeline focused, Delete lifts the selected clip instead.
    timeline = window.doc.timeline
    clip = project.clip(kept)
    qtbot.mouseClick(timeline, Qt.MouseButton.LeftButton, pos=_clip_centre(window, clip))
    qtbot.keyClick(timeline, Qt.Key.Key_Delete)
    assert list(project.clips_on(v1)) == []
    assert {a.asset_id for a in project.assets} == {still, tone}
    wait_idle(qtbot, window)
