"""Save/open, the unsaved-changes asterisk and prompt, recent projects, autosave and crash recovery."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import QMessageBox

from tests.app.conftest import wait_idle


def _add_media(qtbot, win, path: Path) -> str:
    with qtbot.waitSignal(win.doc.editing.import_finished, timeout=15000) as blocker:
        win.doc.editing.import_files([str(path)])
    wait_idle(qtbot, win)
    return blocker.args[0][0]


def _v1(win):
    return next(t for t in win.doc.project.tracks if t.name == "V1")


def test_save_clears_the_asterisk_and_open_restores_the_project(qtbot, window, media_dir, tmp_path):
    asset_id = _add_media(qtbot, window, media_dir / "silent.mp4")
    window.doc.editing.add_clip(asset_id, _v1(window).track_id, 12)
    assert window.isWindowModified()
    assert "[*]" in window.windowTitle()
    target = tmp_path / "film.srproj"
    window.choose_save_path = lambda: str(target)
    window.act_save.trigger()
    assert target.is_file()
    assert not window.isWindowModified()
    assert "film.srproj" in window.windowTitle()
    assert window.prefs.recent_projects()[0] == str(target.resolve())
    before = window.doc.project.to_dict()
    window.new_project()
    assert window.doc.project.clip_count() == 0
    assert window.open_project(target)
    assert window.doc.project.to_dict() == before
    assert not window.isWindowModified()
    wait_idle(qtbot, window)


def test_closing_with_changes_asks_and_cancel_keeps_the_window(qtbot, window, media_dir, tmp_path):
    _add_media(qtbot, window, media_dir / "tone.wav")
    asked = []

    def cancel():
        asked.append(True)
        return QMessageBox.StandardButton.Cancel

    window.ask_save_changes = cancel
    assert not window.maybe_save()
    assert asked
    assert window.doc.project.assets  # nothing was lost
    # Choosing Save writes the file and lets the window go.
    target = tmp_path / "keep.srproj"
    window.choose_save_path = lambda: str(target)
    window.ask_save_changes = lambda: QMessageBox.StandardButton.Save
    assert window.maybe_save()
    assert target.is_file()


def test_a_failed_save_says_why_and_keeps_the_changes(qtbot, window, media_dir, tmp_path):
    _add_media(qtbot, window, media_dir / "tone.wav")
    blocker = tmp_path / "not-a-project.srproj"
    blocker.write_text("precious notes, not a project")
    assert not window.save_to(blocker)
    assert blocker.read_text() == "precious notes, not a project"
    assert window.isWindowModified()
    assert "not-a-project" in window.statusBar().currentMessage()


def test_autosave_after_changes_and_recovery_after_a_crash(qtbot, window, media_dir, tmp_path):
    asset_id = _add_media(qtbot, window, media_dir / "silent.mp4")
    target = tmp_path / "crash.srproj"
    assert window.save_to(target)
    # More work after the save; the autosave timer fires after the burst of changes.
    window.doc.editing.add_clip(asset_id, _v1(window).track_id, 5)
    window.doc.editing.add_marker(20)
    assert window._autosave_timer.isActive()
    window._autosave_timer.setInterval(1)
    window._autosave_timer.start()
    autosave = target.with_name("crash.autosave.json")
    qtbot.waitUntil(autosave.is_file, timeout=5000)
    # Make the autosave clearly newer than the project file, as after a crash.
    stamp = target.stat().st_mtime
    os.utime(autosave, (stamp + 10, stamp + 10))
    expected = window.doc.project.to_dict()
    # "Crash": the first window never saves; a fresh window (a new run of the app) opens the file.
    from app.main_window import MainWindow

    second = MainWindow(window.prefs, output_factory=None)
    second.testing = True
    offered = []

    def accept(path, found):
        offered.append((path, found))
        return True

    second.ask_recover = accept
    try:
        assert second.open_project(target)
        assert offered and offered[0][1] == autosave
        assert second.doc.project.to_dict() == expected
        assert second.isWindowModified(), "recovered work is not saved yet"
        # Saving it makes the file current and the autosave goes away.
        assert second.save()
        assert not autosave.exists()
        assert not second.isWindowModified()
        wait_idle(qtbot, second)
    finally:
        second.ask_save_changes = lambda: QMessageBox.StandardButton.Discard
        second.close()
        second.deleteLater()


def test_declining_recovery_opens_the_saved_file(qtbot, window, media_dir, tmp_path):
    _add_media(qtbot, window, media_dir / "tone.wav")
    target = tmp_path / "saved.srproj"
    assert window.save_to(target)
    saved = window.doc.project.to_dict()
    window.doc.editing.add_marker(3)
    window._on_autosave_timer_timeout()
    autosave = target.with_name("saved.autosave.json")
    stamp = target.stat().st_mtime
    os.utime(autosave, (stamp + 10, stamp + 10))
    window.doc.stack.setClean()
    window.ask_recover = lambda path, found: False
    assert window.open_project(target)
    assert window.doc.project.to_dict() == saved
    assert not window.isWindowModified()


def test_missing_media_is_offline_and_can_be_relinked(qtbot, window, media_dir, tmp_path):
    moved = tmp_path / "moved.wav"
    moved.write_bytes((media_dir / "tone.wav").read_bytes())
    asset_id = _add_media(qtbot, window, moved)
    target = tmp_path / "relink.srproj"
    assert window.save_to(target)
    moved.rename(tmp_path / "elsewhere.wav")
    assert window.open_project(target)
    asset = window.doc.project.asset(asset_id)
    assert asset.missing
    assert "offline" in window.statusBar().currentMessage()
    window.choose_relink_path = lambda name: str(tmp_path / "elsewhere.wav")
    with qtbot.waitSignal(window.doc.project.asset_changed, timeout=10000):
        window.act_relink.trigger()
    assert not window.doc.project.asset(asset_id).missing
    assert window.doc.project.asset(asset_id).path == str((tmp_path / "elsewhere.wav").resolve())
    wait_idle(qtbot, window)


def test_recent_projects_menu_and_preferences_persist(qtbot, window, tmp_path, prefs):
    target = tmp_path / "recent.srproj"
    assert window.save_to(target)
    window._fill_recent_menu()
    titles = [a.text() for a in window.recent_menu.actions()]
    assert "recent.srproj" in titles
    window.act_snap.trigger()
    assert prefs.snapping is False
    prefs.sync()
    from PySide6.QtCore import QSettings

    from app.settings import Preferences

    again = Preferences(QSettings(prefs.settings.fileName(), QSettings.Format.IniFormat))
    assert again.snapping is False
    assert again.recent_projects()[0] == str(target.resolve())


def test_an_untitled_project_left_by_a_crash_is_offered_at_start(qtbot, window, media_dir, tmp_path):
    from app import document

    _add_media(qtbot, window, media_dir / "tone.wav")
    expected = window.doc.project.to_dict()
    # The autosave of an untitled project, as a run with another (now dead) process id left it.
    mine = document.write_autosave(window.doc.project, None)
    orphan = mine.with_name("untitled-999999.autosave.json")
    mine.rename(orphan)
    window.doc.stack.setClean()
    window.new_project()
    asked = []
    window.ask_recover_untitled = lambda path: asked.append(path) or True
    assert window.check_untitled_recovery()
    assert asked == [orphan]
    assert window.doc.project.to_dict() == expected
    assert window.doc.path is None
    assert window.isWindowModified()
    assert not orphan.exists()
    assert document.autosave_path(None).exists()  # now this run's backup, removed when saved
    target = tmp_path / "rescued.srproj"
    assert window.save_to(target)
    assert not document.autosave_path(None).exists()
