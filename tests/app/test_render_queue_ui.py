"""The render queue in the editor with the scripted FakeBackend: queue dock, cancel, pause/resume,
reorder by drag, supersede, failure messages, resume after a crash, closing while rendering, and the
timeline overlay / latent preview.

Nothing sleeps: tests wait on the controller's signals, the fake's ``paused`` event or queue states.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtWidgets import QDialogButtonBox

from core.generation import ModelsMissing, OutOfMemory, Preview, Progress, RenderRequest, RequestInvalid
from core.project import AssetKind, TrackKind
from core.render_queue import JobState
from tests.app.conftest import wait_idle
from tests.fakes import FakeBackend


@dataclass
class PreviewFake(FakeBackend):
    """FakeBackend that also sends a small latent preview after every step."""

    def render(self, request, emit, cancel):
        def emit_with_preview(event):
            emit(event)
            if isinstance(event, Progress):
                emit(Preview(event.piece, event.step, 8, 4, bytes([220, 60, 40]) * 32))

        return super().render(request, emit_with_preview, cancel)


@dataclass
class RaisingFake(FakeBackend):
    """FakeBackend that raises ``error`` from render (once) when set."""

    error: BaseException | None = None

    def render(self, request, emit, cancel):
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return super().render(request, emit, cancel)


@pytest.fixture
def fake():
    return PreviewFake(steps=3)


@pytest.fixture
def studio(window, qtbot, media_dir, tmp_path, fake):
    """A saved project with an image, a video and a sound in the bin; the video on V1, the sound on A1."""
    from app.render_ui import attach_render_ui

    window.save_to(tmp_path / "film.srproj")
    controller = attach_render_ui(window, lambda: fake)
    controller.ask_resume = lambda jobs: True
    doc = window.doc
    doc.editing.import_files([str(media_dir / n) for n in ("still.png", "clip.mp4", "tone.wav")])
    wait_idle(qtbot, window)
    project = doc.project
    by_kind = {a.kind: a for a in project.assets}
    v1 = next(t for t in project.tracks if t.name == "V1")
    a1 = next(t for t in project.tracks if t.name == "A1")
    doc.editing.add_clip(by_kind[AssetKind.VIDEO].asset_id, v1.track_id, 0)
    doc.editing.add_clip(by_kind[AssetKind.AUDIO].asset_id, a1.track_id, 0)
    window.save()
    controller.ids = {  # type: ignore[attr-defined]
        "image": by_kind[AssetKind.IMAGE].asset_id,
        "video_clip": next(iter(v1.clips)).clip_id,
        "audio_clip": next(iter(a1.clips)).clip_id,
        "v1": v1.track_id,
    }
    return controller


def _land(qtbot, controller, timeout=15000):
    with qtbot.waitSignal(controller.job_landed, timeout=timeout) as blocker:
        pass
    return blocker.args


def _wait_state(qtbot, job, state, timeout=10000):
    qtbot.waitUntil(lambda: job.state is state, timeout=timeout)


def test_shot_from_references_via_menu_dialog_lands_and_undo_removes_it(window, qtbot, studio, fake):
    ui = studio.ui
    menu_titles = [a.text() for a in window.menuBar().actions()]
    assert "&Generate" in menu_titles
    assert menu_titles.index("&Generate") == menu_titles.index("&Help") - 1
    window.doc.playback.seek(60)
    ui.actions["shot"].trigger()
    dialog = ui.dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.error_label.text() == "Pick at least one reference image."
    dialog.references.item(0).setCheckState(Qt.CheckState.Checked)
    dialog.prompt.setPlainText("a lighthouse at dusk")
    dialog.duration.setValue(2)
    dialog.draft.setChecked(True)
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)
    job_id, clip_id = _land(qtbot, studio)
    project = window.doc.project
    clip = project.clip(clip_id)
    assert clip.start == 60
    assert clip.recipe.prompt == "a lighthouse at dusk" and clip.recipe.reference_asset_ids == (studio.ids["image"],)
    request = fake.calls[-1]
    assert request.reference_images == (project.asset(studio.ids["image"]).path,)
    assert request.duration_s == 2 and request.quality.value == "draft"
    # Files live under the project's media folder.
    media = (Path(window.doc.path).parent / "film.media").resolve()
    assert Path(request.output_path).resolve().is_relative_to(media / "renders")
    assert Path(request.work_dir).resolve().is_relative_to(media / "work")
    assert studio.queue.job(job_id).state is JobState.FINISHED
    assert window.doc.timeline.selected == {clip_id}
    assert window.doc.stack.undoText() == "Add rendered clip"
    window.doc.stack.undo()
    assert not project.has_clip(clip_id)
    assert Path(request.output_path).exists()  # undo removes the clip, not the GPU work
    window.doc.stack.redo()
    assert project.clip(clip_id).start == 60


def test_keyboard_shortcut_opens_dialog_and_estimate_uses_injected_estimator(window, qtbot, studio):
    asked = []

    def estimator(request: RenderRequest) -> dict:
        # A plain mapping: the models layer answers without importing app types.
        asked.append(request)
        return {"seconds": 125, "fits": False, "peak_bytes": 30 * 2**30, "available_bytes": 24 * 2**30}

    studio.ui.estimator = estimator
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    dialog = studio.ui.dialog
    assert dialog is not None and dialog.mode == "shot"
    text = dialog.estimate_label.text()
    assert "About 2 min 05 s" in text and "does NOT fit" in text and "30.0 GiB" in text
    dialog.resolution.setCurrentText("480P")
    assert asked[-1].resolution == "480P"
    dialog.reject()


def test_cancel_running_job_leaves_timeline_unchanged(window, qtbot, studio, fake):
    fake.pause_at = (0, 1)
    clips_before = window.doc.project.clip_count()
    job = studio.shot_from_references([studio.ids["image"]], "cancel me", duration_s=1)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    assert job.state is JobState.RUNNING
    panel = studio.ui.panel
    panel.select_job(job.job_id)
    qtbot.mouseClick(panel.buttons["cancel"], Qt.MouseButton.LeftButton)
    _wait_state(qtbot, job, JobState.CANCELLED)
    assert window.doc.project.clip_count() == clips_before
    assert "cancelled" in window.statusBar().currentMessage()
    # Retry runs it again (and it lands this time).
    fake.pause_at = None
    qtbot.mouseClick(panel.buttons["retry"], Qt.MouseButton.LeftButton)
    _land(qtbot, studio)
    assert job.state is JobState.FINISHED


def test_pause_and_resume_continue_from_the_last_finished_piece(window, qtbot, studio, fake):
    fake.pieces = 2
    fake.pause_at = (1, 0)
    job = studio.extend(studio.ids["video_clip"], "keep walking", duration_s=10)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    qtbot.waitUntil(lambda: job.last_finished_piece == 0)
    studio.pause(job.job_id)
    _wait_state(qtbot, job, JobState.PAUSED)
    assert studio.idle
    fake.pause_at = None
    studio.resume(job.job_id)
    _, clip_id = _land(qtbot, studio)
    assert fake.resumed_pieces == [0]
    source = window.doc.project.clip(studio.ids["video_clip"])
    clip = window.doc.project.clip(clip_id)
    assert (clip.track_id, clip.start) == (source.track_id, source.end)
    assert clip.recipe.source_clip_id == source.clip_id


def test_reorder_by_drag_changes_what_runs_next(window, qtbot, studio, fake):
    fake.pause_at = (0, 0)
    first = studio.shot_from_references([studio.ids["image"]], "first", duration_s=1)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    second = studio.shot_from_references([studio.ids["image"]], "second", duration_s=1, start=200)
    third = studio.shot_from_references([studio.ids["image"]], "third", duration_s=1, start=400)
    model = studio.ui.panel.model
    assert [model.job_at(r).label for r in range(3)] == ["Shot: first", "Shot: second", "Shot: third"]
    # What the list view does on a drop: the third row dropped above the second.
    mime = model.mimeData([model.index(2, 0)])
    model.dropMimeData(mime, Qt.DropAction.MoveAction, 1, 0, QModelIndex())
    assert [j.job_id for j in studio.queue.jobs] == [first.job_id, third.job_id, second.job_id]
    assert [model.job_at(r).label for r in range(3)] == ["Shot: first", "Shot: third", "Shot: second"]
    fake.pause_at = None
    fake.release()
    qtbot.waitUntil(lambda: second.state is JobState.FINISHED and studio.idle, timeout=20000)
    assert [r.prompt for r in fake.calls] == ["first", "third", "second"]


def test_newer_preview_supersedes_the_running_one_and_lands_as_a_take(window, qtbot, studio, fake):
    job = studio.shot_from_references([studio.ids["image"]], "hero shot", duration_s=1)
    _, clip_id = _land(qtbot, studio)
    fake.pause_at = (0, 1)
    old = studio.request_preview(clip_id)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    fake.pause_at = None
    new = studio.request_preview(clip_id)
    assert old.superseded_by == new.job_id
    _wait_state(qtbot, old, JobState.CANCELLED)
    _, landed = _land(qtbot, studio)
    assert landed == clip_id
    clip = window.doc.project.clip(clip_id)
    assert len(clip.takes) == 1  # the first render became a take, the preview is active
    assert new.state is JobState.FINISHED and job.state is JobState.FINISHED


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("disk on fire"), "The render failed: disk on fire"),
        (RequestInvalid("Add at least one reference image (up to 4)."), "Add at least one reference image (up to 4)."),
        (ModelsMissing("The reference-to-video model is not downloaded: Models ▸ Model Weights…"),
         "The reference-to-video model is not downloaded: Models ▸ Model Weights…"),
        (OutOfMemory("The GPU ran out of memory: try the draft preset."), "The GPU ran out of memory: try the draft preset."),
    ],
)
def test_failures_reach_the_user_in_words(window, qtbot, studio, error, expected):
    from app.render_panel import job_summary

    studio.worker._backend = RaisingFake(error=error)  # the worker keeps one backend; swap in a raising one
    job = studio.shot_from_references([studio.ids["image"]], "doomed", duration_s=1)
    _wait_state(qtbot, job, JobState.FAILED)
    assert job.error == expected
    assert expected in window.statusBar().currentMessage()
    panel = studio.ui.panel
    panel.select_job(job.job_id)
    assert panel.buttons["retry"].isEnabled() and not panel.buttons["cancel"].isEnabled()
    assert expected in panel.model.data(panel.model.index(0, 0), Qt.ItemDataRole.ToolTipRole)
    assert job_summary(job, studio.queue.now()).startswith("Failed")
    # Nothing lost: retry succeeds.
    panel.retry_selected()
    _land(qtbot, studio)


def test_fake_failure_mid_render_keeps_finished_pieces(window, qtbot, studio, fake):
    fake.pieces, fake.fail_at, fake.fail_message = 2, (1, 1), "the fake broke"
    job = studio.extend(studio.ids["video_clip"], "longer", duration_s=10)
    _wait_state(qtbot, job, JobState.FAILED)
    assert job.error == "The render failed: the fake broke"
    assert job.last_finished_piece == 0 and len(job.piece_paths) == 1
    fake.fail_at = None
    studio.retry(job.job_id)
    _land(qtbot, studio)
    assert fake.resumed_pieces == [0]


def test_live_preview_in_panel_and_on_the_timeline(window, qtbot, studio, fake):
    fake.pause_at = (0, 2)
    window.doc.playback.seek(100)
    job = studio.shot_from_references([studio.ids["image"]], "glowing", duration_s=1)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    qtbot.waitUntil(lambda: job.job_id in studio.previews and studio.previews[job.job_id][2] == 2)
    panel = studio.ui.panel
    qtbot.waitUntil(lambda: panel.shown_preview_job() == job.job_id)
    assert not panel.preview.pixmap().isNull()
    assert "step 2" in panel.preview_caption.text()
    overlay = studio.ui.overlay
    assert overlay.geometry() == window.doc.timeline.rect()
    overlay.repaint()
    assert overlay.painted_jobs == [job.job_id]
    track_id, start, _end = studio.placeholder(job)
    assert start == 100 and window.doc.project.track(track_id).kind is TrackKind.VIDEO
    # The panel's text counters.
    from app.render_panel import job_summary

    summary = job_summary(job, studio.queue.now())
    assert summary.startswith("Running") and "step 2/3" in summary and "elapsed" in summary
    fake.pause_at = None
    fake.release()
    _land(qtbot, studio)
    overlay.repaint()
    assert overlay.painted_jobs == []


def test_resume_after_a_crash_from_the_last_finished_piece(window, qtbot, studio, fake, tmp_path):
    fake.pieces = 2
    fake.pause_at = (1, 0)
    job = studio.extend(studio.ids["video_clip"], "crash test", duration_s=10)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    qtbot.waitUntil(lambda: job.last_finished_piece == 0)
    # The queue is on disk with the project (the file: nothing else was unsaved). Copy it as a crash would
    # leave it, then stop this render.
    project_file = Path(window.doc.path)
    saved = json.loads(project_file.read_text())
    saved_job = saved["render_queue"]["jobs"][0]
    assert saved_job["state"] == "paused" and saved_job["last_finished_piece"] == 0
    crashed = project_file.with_name("crashed.srproj")
    shutil.copy(project_file, crashed)
    studio.pause(job.job_id)
    _wait_state(qtbot, job, JobState.PAUSED)
    fake.pause_at = None
    offered = []
    studio.ask_resume = lambda jobs: offered.append([j.job_id for j in jobs]) or True
    assert window.open_project(crashed)
    qtbot.waitUntil(lambda: offered == [[job.job_id]])
    _, clip_id = _land(qtbot, studio)
    assert fake.resumed_pieces == [0]
    assert window.doc.project.clip(clip_id).recipe.prompt == "crash test"


def test_declined_resume_keeps_jobs_paused(window, qtbot, studio, fake):
    fake.pause_at = (0, 0)
    job = studio.shot_from_references([studio.ids["image"]], "later", duration_s=1)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    path = window.doc.path
    studio.ask_resume = lambda jobs: False
    window.new_project()
    _wait_state(qtbot, job, JobState.PAUSED)  # switching documents pauses the old project's render
    qtbot.waitUntil(lambda: studio.queue is window.doc.queue)
    assert window.open_project(path)
    qtbot.waitUntil(lambda: studio.queue is window.doc.queue)
    [again] = studio.queue.jobs
    assert again.state is JobState.PAUSED and studio.idle
    assert "kept paused" in window.statusBar().currentMessage()


def test_closing_the_window_pauses_the_render_and_keeps_the_queue(window, qtbot, studio, fake):
    from app.workers import live_threads

    fake.pause_at = (0, 1)
    job = studio.shot_from_references([studio.ids["image"]], "interrupted", duration_s=1)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    path = Path(window.doc.path)
    assert window.close()
    assert not live_threads()
    data = json.loads(path.read_text())
    [saved] = data["render_queue"]["jobs"]
    assert saved["job_id"] == job.job_id and saved["state"] == "paused"


def test_job_list_model_passes_the_model_tester_through_adds_moves_and_removes(window, qtbot, qtmodeltester, studio,
                                                                                 fake):
    model = studio.ui.panel.model
    fake.pause_at = (0, 0)
    jobs = [studio.shot_from_references([studio.ids["image"]], f"take {i}", duration_s=1, start=200 * i)
            for i in range(3)]
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    qtmodeltester.check(model, force_py=True)
    studio.move(jobs[2].job_id, 1)
    studio.cancel(jobs[1].job_id)
    studio.remove(jobs[1].job_id)
    assert [model.job_at(r).job_id for r in range(model.rowCount())] == [jobs[0].job_id, jobs[2].job_id]
    qtmodeltester.check(model, force_py=True)
    fake.pause_at = None
    fake.release()
    qtbot.waitUntil(lambda: jobs[2].state is JobState.FINISHED and studio.idle, timeout=20000)


def test_double_click_a_finished_job_reveals_its_clip(window, qtbot, studio):
    job = studio.shot_from_references([studio.ids["image"]], "reveal me", duration_s=1, start=150)
    _, clip_id = _land(qtbot, studio)
    window.doc.timeline.set_selection(set())
    window.doc.playback.seek(0)
    view = studio.ui.panel.view
    index = studio.ui.panel.model.index(studio.queue.index(job.job_id), 0)
    view.scrollTo(index)
    centre = view.visualRect(index).center()

    def double_click():  # as Qt sees a real one: press, release, double-click, release
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
        qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
        qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=centre)

    double_click()
    assert window.doc.timeline.selected == {clip_id}
    assert window.doc.playback.position == 150
    window.doc.stack.undo()
    double_click()  # the clip is gone: a message, not a crash
    assert "not on the timeline" in window.statusBar().currentMessage()


def test_generate_menu_and_show_queue(window, qtbot, studio):
    menu = studio.ui.menu
    texts = [a.text() for a in menu.actions() if not a.isSeparator()]
    assert texts == ["&Shot from References…", "&Extend Clip…", "&Cut to…", "&Avatar from Audio Region…",
                     "&Re-render (new seed)", "Draft &Preview of Clip", "&Final Render of Clip", "Show Render &Queue",
                     "Render Waiting Jobs on All &GPUs…", "Send Waiting Jobs to a Render &Farm…",
                     "Clean Up Render F&iles…"]
    studio.ui.dock.hide()
    studio.ui.actions["queue"].trigger()
    assert studio.ui.dock.isVisible()


def test_waiting_jobs_go_to_a_render_farm_and_are_paused_here(window, qtbot, studio, fake, tmp_path):
    import json

    from core.generation import RenderRequest

    fake.pause_at = (0, 0)  # the first job holds the worker, so the later ones wait in the queue
    running = studio.extend(studio.ids["video_clip"], "keep walking", duration_s=5)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    waiting = [studio.extend(studio.ids["video_clip"], f"take {n}", duration_s=5) for n in (1, 2)]
    farm = tmp_path / "farm"
    studio.ui.choose_farm_folder = lambda: str(farm)
    studio.ui.actions["farm"].trigger()
    # The waiting jobs are written, the running one stays here.
    assert sorted(p.name for p in farm.iterdir()) == sorted([f"{j.job_id}.json" for j in waiting] + ["tasks.txt"])
    assert len((farm / "tasks.txt").read_text().splitlines()) == 2
    request = RenderRequest.from_json(json.loads((farm / f"{waiting[0].job_id}.json").read_text())["request"])
    assert request.prompt == "take 1" and request.work_dir == waiting[0].request.work_dir
    assert all(job.state is JobState.PAUSED for job in waiting) and running.state is JobState.RUNNING
    studio.cancel(running.job_id)
    fake.pause_at = None
    _wait_state(qtbot, running, JobState.CANCELLED)


def test_sending_to_a_farm_needs_waiting_jobs(window, qtbot, studio):
    messages = []
    studio.message.connect(messages.append)
    studio.ui.choose_farm_folder = lambda: pytest.fail("no folder is asked for without jobs")
    studio.ui.actions["farm"].trigger()
    assert messages and "No waiting jobs" in messages[-1]


# -- untitled projects and moved projects -----------------------------------------------------------


def _dead_pid() -> int:
    """The id of a process that has ended (as a crashed app's would be)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


@pytest.fixture
def untitled(window, qtbot, media_dir, fake):
    """An untitled (never saved) project with an image in the bin and nothing left to save on its stack."""
    from app.render_ui import attach_render_ui

    assert window.doc.path is None
    controller = attach_render_ui(window, lambda: fake)
    controller.ask_resume = lambda jobs: True
    window.doc.editing.import_files([str(media_dir / "still.png")])
    wait_idle(qtbot, window)
    window.doc.stack.setClean()
    controller.image = window.doc.project.assets[0].asset_id  # type: ignore[attr-defined]
    assert not window.is_modified()
    return controller


def test_an_untitled_projects_queue_comes_back_with_crash_recovery_paused(window, qtbot, untitled, fake):
    from app import document
    from core.persistence import AUTOSAVE_SUFFIX

    fake.pause_at = (0, 0)
    job = untitled.shot_from_references([untitled.image], "before the first save", duration_s=1)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    assert Path(job.request.work_dir).is_relative_to(untitled.media_root())
    assert window.is_modified()  # its queue is unsaved work: closing or a new project asks first
    autosave = document.autosave_path(None)
    [saved] = json.loads(autosave.read_text())["render_queue"]["jobs"]
    assert saved["job_id"] == job.job_id and saved["state"] == "paused"  # as a restart finds it
    # A crash leaves that autosave behind, under the id of a process that is gone.
    crashed = autosave.with_name(f"untitled-{_dead_pid()}{AUTOSAVE_SUFFIX}")
    shutil.copy(autosave, crashed)
    untitled.pause(job.job_id)
    _wait_state(qtbot, job, JobState.PAUSED)
    window.new_project()  # the test answers Discard: this run's own backup goes
    qtbot.waitUntil(lambda: untitled.queue is window.doc.queue)
    assert not autosave.exists() and not window.is_modified()
    # The next start offers the untitled project back, its unfinished render paused and offered for resume.
    fake.pause_at = None
    offered = []
    untitled.ask_resume = lambda jobs: offered.append([(j.job_id, j.state) for j in jobs]) or False
    window.ask_recover_untitled = lambda path: path == crashed
    assert window.check_untitled_recovery()
    qtbot.waitUntil(lambda: untitled.queue is window.doc.queue)
    assert window.doc.path is None
    qtbot.waitUntil(lambda: offered == [[(job.job_id, JobState.PAUSED)]])
    [again] = untitled.queue.jobs
    assert again.request == job.request and again.state is JobState.PAUSED and untitled.idle
    untitled.resume(again.job_id)
    _, clip_id = _land(qtbot, untitled)
    assert window.doc.project.clip(clip_id).recipe.prompt == "before the first save"


def test_save_as_of_an_untitled_project_keeps_its_queue_and_the_running_render(window, qtbot, untitled, fake,
                                                                               tmp_path):
    from app import document

    fake.pause_at = (0, 1)
    running = untitled.shot_from_references([untitled.image], "running during save as", duration_s=1)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    waiting = untitled.shot_from_references([untitled.image], "waiting", duration_s=1)
    untitled.pause(waiting.job_id)
    untitled_media = untitled.media_root()
    assert Path(running.request.output_path).is_relative_to(untitled_media)
    assert window.is_modified()  # the queue is what there is to save
    path = tmp_path / "saved" / "film.srproj"
    path.parent.mkdir()
    assert window.save_to(path)
    assert not window.is_modified()
    assert not document.autosave_path(None).exists()
    saved = json.loads(path.read_text())["render_queue"]["jobs"]
    assert [j["job_id"] for j in saved] == [running.job_id, waiting.job_id]
    # The running render goes on where it started and lands from there.
    fake.pause_at = None
    fake.release()
    _, clip_id = _land(qtbot, untitled)
    project = window.doc.project
    assert project.asset(project.clip(clip_id).asset_id).path == running.request.output_path
    assert Path(running.request.output_path).is_file()
    # Jobs submitted after the save use the project's media folder.
    later = untitled.shot_from_references([untitled.image], "after the save", duration_s=1)
    untitled.pause(later.job_id)
    assert Path(later.request.work_dir).is_relative_to(path.with_name("film.media"))
    assert window.save()
    untitled.ask_resume = lambda jobs: False
    assert window.open_project(path)
    qtbot.waitUntil(lambda: untitled.queue is window.doc.queue)
    jobs = {j.job_id: j for j in untitled.queue.jobs}
    done = jobs[running.job_id]
    assert done.state is JobState.FINISHED and done.result.output_path == running.request.output_path
    assert Path(done.result.output_path).is_file()
    assert jobs[waiting.job_id].request == waiting.request and jobs[waiting.job_id].state is JobState.PAUSED
    assert jobs[later.job_id].request == later.request
    assert not window.doc.project.missing_assets()


def test_a_queued_extend_of_a_trimmed_clip_follows_the_project_to_another_folder(window, qtbot, fake, media_dir,
                                                                                 tmp_path):
    from app.render_controller import EXCERPT_NAME, STUDIO_KEY
    from app.render_ui import attach_render_ui

    first = tmp_path / "first"
    (first / "media").mkdir(parents=True)
    shutil.copy(media_dir / "clip.mp4", first / "media" / "clip.mp4")
    window.save_to(first / "film.srproj")
    controller = attach_render_ui(window, lambda: fake)
    doc = window.doc
    doc.editing.import_files([str(first / "media" / "clip.mp4")])
    wait_idle(qtbot, window)
    v1 = next(t for t in doc.project.tracks if t.name == "V1")
    doc.editing.add_clip(doc.project.assets[0].asset_id, v1.track_id, 0)
    clip_id = next(iter(v1.clips)).clip_id
    doc.editing.trim_clip(clip_id, "head", 10)
    doc.editing.trim_clip(clip_id, "tail", 30)
    job = controller.extend(clip_id, "from the trimmed clip", duration_s=1)
    controller.pause(job.job_id)  # still waiting: its excerpt is not cut yet
    assert job.state is JobState.PAUSED and not Path(job.request.input_video).exists()
    assert window.save()
    # The project folder moves (project file and media together); the old one is gone.
    moved = tmp_path / "moved é"
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    controller.ask_resume = lambda jobs: True
    assert window.open_project(moved / "film.srproj")
    qtbot.waitUntil(lambda: controller.queue is window.doc.queue)
    [again] = controller.queue.jobs
    assert again.request.extra[STUDIO_KEY]["excerpt"]["source"] == str(moved / "media" / "clip.mp4")
    assert again.request.input_video == str(moved / "film.media" / "work" / job.job_id / EXCERPT_NAME)
    _, landed = _land(qtbot, controller)
    assert fake.calls[-1].input_video == again.request.input_video and Path(again.request.input_video).is_file()
    assert window.doc.project.clip(landed).start == window.doc.project.clip(clip_id).end


def test_clean_up_render_files_frees_finished_checkpoints_and_keeps_resumable_ones(window, qtbot, studio, fake):
    messages = []
    studio.message.connect(messages.append)
    done = studio.extend(studio.ids["video_clip"], "keep walking", duration_s=5)
    _land(qtbot, studio)
    assert done.state is JobState.FINISHED and any(Path(done.request.work_dir).iterdir())
    fake.pause_at = (0, 0)  # the next job holds the worker, so the one after it waits and can be paused
    running = studio.extend(studio.ids["video_clip"], "take 1", duration_s=5)
    qtbot.waitUntil(fake.paused.is_set, timeout=10000)
    waiting = studio.extend(studio.ids["video_clip"], "take 2", duration_s=5)
    studio.pause(waiting.job_id)
    Path(waiting.request.work_dir).mkdir(parents=True, exist_ok=True)
    (Path(waiting.request.work_dir) / "piece_0000.npy").write_bytes(b"frames")  # resumable: must stay
    orphan = studio.media_root() / "work" / "removed-job"
    orphan.mkdir(parents=True)
    (orphan / "piece_0000.npy").write_bytes(b"x" * 2_000_000)
    asked = []
    studio.ui.confirm_cleanup = lambda text, details: asked.append((text, details)) or False  # Cancel: none go
    studio.ui.actions["cleanup"].trigger()
    assert len(asked) == 1 and "2.0 MB" in asked[0][0] and orphan.is_dir()
    lines = asked[0][1].splitlines()  # each folder with its size and why, the largest first
    assert len(lines) == 2 and str(orphan) in lines[0] and "no longer in the render queue" in lines[0]
    assert done.request.work_dir in lines[1] and "finished" in lines[1]
    studio.ui.confirm_cleanup = lambda text, details: True
    studio.ui.actions["cleanup"].trigger()
    assert not orphan.exists() and not Path(done.request.work_dir).exists()
    assert Path(done.request.output_path).is_file()  # the landed clip's file stays
    assert (Path(waiting.request.work_dir) / "piece_0000.npy").is_file()
    assert messages[-1].startswith("Freed 2.0 MB")
    studio.ui.actions["cleanup"].trigger()  # nothing left to clean: says so, asks nothing
    assert "No render files to clean up" in messages[-1]
    studio.cancel(running.job_id)
    fake.pause_at = None
    _wait_state(qtbot, running, JobState.CANCELLED)


def test_a_full_disk_is_told_in_its_own_words():
    from app.render_worker import user_message
    from core.generation import DiskFull

    text = "Not enough disk space for this render: it needs about 3.2 GB …"
    assert user_message(DiskFull(text)) == text
    assert user_message(OSError("boom")).startswith("The render failed")
