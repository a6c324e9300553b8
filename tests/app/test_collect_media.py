"""File ▸ Collect Media… in the editor: the menu action, the whole flow on a small project with real files
(copies, one undo step, save and reopen), an untitled project (save first; renders in untitled.media and the
hint after the first Save As), jobs still waiting, cancel, a failed copy and a full disk.

Questions are answered by replacing the collector's hooks (``ask_save_first``, ``confirm``, ``show_error``);
nothing sleeps: tests wait on the collector's ``ended`` signal.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections import namedtuple
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from app.collect_media import CollectMediaDialog
from app.document import untitled_media_dir
from core.collect_media import collect_files
from tests.app.conftest import wait_idle
from tests.fakes import FakeBackend

Usage = namedtuple("Usage", "total used free")


def _import(qtbot, window, paths) -> list[str]:
    with qtbot.waitSignal(window.doc.editing.import_finished, timeout=15000) as blocker:
        window.doc.editing.import_files([str(p) for p in paths])
    wait_idle(qtbot, window)
    return blocker.args[0]


def _track(window, name: str) -> str:
    return next(t.track_id for t in window.doc.project.tracks if t.name == name)


@pytest.fixture
def footage(media_dir, tmp_path) -> dict[str, Path]:
    """Media outside the project folder: two different files both called clip.mp4, a sound, an image."""
    day1, day2 = tmp_path / "day1", tmp_path / "day2"
    day1.mkdir()
    day2.mkdir()
    files = {
        "clip": day1 / "clip.mp4",
        "other_clip": day2 / "clip.mp4",
        "tone": day1 / "tone.wav",
        "still": day2 / "still.png",
    }
    shutil.copy(media_dir / "clip.mp4", files["clip"])
    shutil.copy(media_dir / "silent.mp4", files["other_clip"])
    shutil.copy(media_dir / "tone.wav", files["tone"])
    shutil.copy(media_dir / "still.png", files["still"])
    return files


@pytest.fixture
def saved(qtbot, window, footage, tmp_path) -> Path:
    """A saved project (in its own folder) using the footage: two clips on the timeline, all in the bin."""
    _import(qtbot, window, footage.values())
    project = window.doc.project
    by_path = {Path(a.path).resolve(): a.asset_id for a in project.assets}
    window.doc.editing.add_clip(by_path[footage["clip"].resolve()], _track(window, "V1"), 0)
    window.doc.editing.add_clip(by_path[footage["tone"].resolve()], _track(window, "A1"), 0)
    target = tmp_path / "film" / "film.srproj"
    target.parent.mkdir()
    assert window.save_to(target)
    return target


def _collect(qtbot, window, outcome: str = "collected", timeout: int = 20000):
    with qtbot.waitSignal(window.collector.ended, timeout=timeout) as blocker:
        window.act_collect.trigger()
    assert blocker.args == [outcome]


def test_the_file_menu_has_collect_media_after_relink(window):
    texts = [a.text() for a in window.file_menu.actions() if not a.isSeparator()]
    assert texts[texts.index("&Relink Missing Media…") + 1] == "&Collect Media…"
    assert window.act_collect.isEnabled()


def test_collect_copies_relinks_in_one_undo_step_and_saves_relative_paths(qtbot, window, footage, saved):
    project = window.doc.project
    originals = {a.asset_id: a.path for a in project.assets}
    plans = []
    window.collector.confirm = lambda plan: plans.append(plan) or True
    _collect(qtbot, window)

    collected = saved.parent / "film.media" / "collected"
    (plan,) = plans
    assert len(plan.items) == 4 and plan.destination == collected.resolve()
    assert sorted(p.name for p in collected.iterdir()) == ["clip-2.mp4", "clip.mp4", "still.png", "tone.wav"]
    for asset in project.assets:
        assert Path(asset.path).parent == collected.resolve()
        assert Path(asset.path).read_bytes() == Path(originals[asset.asset_id]).read_bytes()
    total = sum(p.stat().st_size for p in footage.values())
    from core.model_store import format_bytes

    assert window.statusBar().currentMessage() == (
        f"Collected 4 files ({format_bytes(total)}) into {collected.resolve()}"
    )
    assert window.isWindowModified()  # a save is needed
    assert window.act_undo.text() == "&Undo Collect media"
    assert window.act_collect.isEnabled()

    window.doc.stack.undo()
    assert {a.asset_id: a.path for a in project.assets} == originals
    assert all(p.is_file() for p in collected.iterdir())  # the copies stay
    assert not window.isWindowModified()
    window.doc.stack.redo()
    assert all(Path(a.path).parent == collected.resolve() for a in project.assets)

    assert window.save_to(saved)
    stored = json.loads(saved.read_text())
    assert sorted(a["path"] for a in stored["assets"]) == [
        "film.media/collected/clip-2.mp4",
        "film.media/collected/clip.mp4",
        "film.media/collected/still.png",
        "film.media/collected/tone.wav",
    ]
    for f in footage.values():
        f.unlink()  # the originals can go now: the project opens without them
    assert window.open_project(saved)
    assert window.doc.project.missing_assets() == []
    wait_idle(qtbot, window)

    # Nothing left to collect: a message, no question.
    window.collector.confirm = lambda plan: pytest.fail("asked although nothing is to be collected")
    window.act_collect.trigger()
    assert window.statusBar().currentMessage().startswith("Nothing to collect")


def test_the_dialog_shows_count_size_destination_and_the_list_behind_details(qtbot, window, footage, saved):
    plan = window.collector.plan()
    dialog = CollectMediaDialog(plan, window)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.count_label.text().startswith("<b>4</b>")
    assert "free on that disk" in dialog.size_label.text()
    assert dialog.destination_label.text() == str(plan.destination)
    assert not dialog.details.isVisible()
    dialog.details_button.click()
    assert dialog.details.isVisible()
    assert str(footage["other_clip"].resolve()) in dialog.details.toPlainText()
    assert "clip-2.mp4" in dialog.details.toPlainText()
    assert dialog.details_button.text() == "Hide Details…"


def test_an_untitled_project_is_saved_first_or_not_collected(qtbot, window, footage, tmp_path):
    _import(qtbot, window, [footage["tone"]])
    window.collector.ask_save_first = lambda: False
    window.collector.confirm = lambda plan: pytest.fail("no plan without a saved project")
    window.act_collect.trigger()
    assert window.doc.path is None
    assert "must be saved first" in window.statusBar().currentMessage()

    target = tmp_path / "new" / "first.srproj"
    target.parent.mkdir()
    window.collector.ask_save_first = lambda: True
    window.choose_save_path = lambda: str(target)
    plans = []
    window.collector.confirm = lambda plan: plans.append(plan) or False  # saved, then the user says no
    window.act_collect.trigger()
    assert window.doc.path == target.resolve()
    assert [i.source for i in plans[0].items] == [footage["tone"].resolve()]
    assert not (target.parent / "first.media").exists()


def test_untitled_renders_are_pointed_out_after_save_as_and_waiting_jobs_keep_their_files(
    qtbot, window, footage, tmp_path
):
    from app.render_ui import attach_render_ui

    controller = attach_render_ui(window, lambda: FakeBackend(steps=2))
    controller.ask_resume = lambda jobs: False
    assert controller.media_root() == untitled_media_dir()
    image = _import(qtbot, window, [footage["still"]])[0]
    with qtbot.waitSignal(controller.job_landed, timeout=20000):
        controller.shot_from_references([image], "a lighthouse", duration_s=1, start=0)
    wait_idle(qtbot, window)
    render = next(a for a in window.doc.project.assets if a.asset_id != image)
    assert untitled_media_dir().resolve() in Path(render.path).resolve().parents
    waiting = controller.shot_from_references([image], "a harbour", duration_s=1, start=48)
    controller.pause(waiting.job_id)  # waits in the queue with the still as its reference

    target = tmp_path / "harbour" / "harbour.srproj"
    target.parent.mkdir()
    assert window.save_to(target)
    assert window.statusBar().currentMessage() == (
        "Saved harbour.srproj. It uses 1 file from the untitled project's render folder: "
        "File ▸ Collect Media… copies them beside it."
    )
    assert window.save_to(target)
    assert window.statusBar().currentMessage() == "Saved harbour.srproj"  # said once, after the first save

    plans = []
    window.collector.confirm = lambda plan: plans.append(plan) or True
    _collect(qtbot, window)
    (plan,) = plans
    assert [(i.source.name, i.untitled_render) for i in plan.items] == [(Path(render.path).name, True)]
    assert [s.path for s in plan.in_use] == [footage["still"].resolve()]
    assert "1 left for unfinished renders" in window.statusBar().currentMessage()
    assert window.doc.project.asset(image).path == str(footage["still"].resolve())  # the job's file stays
    new_render_path = window.doc.project.asset(render.asset_id).path
    assert Path(new_render_path).parent == (target.parent / "harbour.media" / "collected").resolve()
    assert waiting.request.reference_images == (str(footage["still"].resolve()),)


def _copy_that_holds_after_one_chunk(copying: threading.Event):
    """A ``copy_files`` that writes 4 kB chunks and, after the first, waits until the collect is cancelled."""

    def copy(plan, progress, cancel, **kwargs):
        def held_progress(done, total):
            progress(done, total)
            if done and not copying.is_set():
                copying.set()
                while not cancel.wait(0.01):  # polls like FakeBackend's pause; ends as soon as cancel is set
                    pass

        return collect_files(plan, held_progress, cancel, chunk_size=4096, **kwargs)

    return copy


def test_cancel_stops_mid_file_and_leaves_the_project_and_the_folder_as_they_were(
    qtbot, window, footage, saved
):
    before = window.doc.project.to_dict()
    copying = threading.Event()
    window.collector.copy_files = _copy_that_holds_after_one_chunk(copying)
    window.collector.confirm = lambda plan: True
    with qtbot.waitSignal(window.collector.ended, timeout=20000) as blocker:
        window.act_collect.trigger()
        qtbot.waitUntil(copying.is_set, timeout=10000)
        assert not window.act_collect.isEnabled()  # one collect at a time
        qtbot.waitUntil(lambda: window.collector.progress_dialog.value() > 0)  # progress reaches the dialog
        cancel_button = window.collector.progress_dialog.findChild(QPushButton)
        assert cancel_button.text() == "Cancel"
        qtbot.mouseClick(cancel_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["cancelled"]
    assert window.doc.project.to_dict() == before
    assert not (saved.parent / "film.media").exists()  # no partial copy, no temporary file
    assert not window.isWindowModified()
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.act_collect.isEnabled()


def test_a_file_that_cannot_be_read_gives_a_clear_error_and_changes_nothing(qtbot, window, footage, saved):
    before = window.doc.project.to_dict()
    errors = []
    window.collector.show_error = errors.append

    def confirm(plan):
        footage["still"].unlink()  # gone between the question and the copy
        return True

    window.collector.confirm = confirm
    _collect(qtbot, window, "failed")
    assert len(errors) == 1 and "still.png" in errors[0] and "Nothing was changed" in errors[0]
    assert window.statusBar().currentMessage().startswith("Collect Media failed:")
    assert window.doc.project.to_dict() == before
    assert not (saved.parent / "film.media" / "collected").exists()
    assert not window.isWindowModified()


def test_a_full_disk_is_refused_before_the_question(qtbot, window, footage, saved):
    errors = []
    window.collector.show_error = errors.append
    window.collector.disk_usage = lambda path: Usage(10**9, 10**9 - 1000, 1000)
    window.collector.confirm = lambda plan: pytest.fail("asked although the copies cannot fit")
    window.act_collect.trigger()
    assert len(errors) == 1 and "free on the disk" in errors[0]
    assert window.statusBar().currentMessage() == errors[0]
    assert window.collector.worker is None
    assert not (saved.parent / "film.media").exists()


def test_closing_the_window_while_collecting_removes_the_copies(qtbot, window, footage, saved):
    copying = threading.Event()
    window.collector.copy_files = _copy_that_holds_after_one_chunk(copying)
    window.collector.confirm = lambda plan: True
    window.act_collect.trigger()
    qtbot.waitUntil(copying.is_set, timeout=10000)
    window.close()  # cancels the copy and waits for its thread (the fixture checks no thread is left)
    assert window.collector.worker is None
    assert not (saved.parent / "film.media").exists()
