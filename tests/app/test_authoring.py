"""Authoring in the editor, from mouse and keyboard to a clip on the timeline: extend (and chains of
extensions), cut-to with the transition picker, avatar from a dragged audio region, re-render as an
alternative take, refusals in words; and the real :class:`models.backend.LocalBackend` on tiny
random-weight checkpoints (CPU, 1-2 steps, 1 s).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QMenu

from core.generation import Task, Transition
from core.project import AssetKind
from core.render_queue import JobState
from tests.app.conftest import wait_idle
from tests.fakes import FakeBackend


def _setup(window, qtbot, media_dir, tmp_path, factory):
    from app.render_ui import attach_render_ui

    window.save_to(tmp_path / "story.srproj")
    controller = attach_render_ui(window, factory)
    doc = window.doc
    doc.editing.import_files([str(media_dir / n) for n in ("still.png", "clip.mp4", "tone.wav")])
    wait_idle(qtbot, window)
    project = doc.project
    kinds = {a.kind: a.asset_id for a in project.assets}
    tracks = {t.name: t.track_id for t in project.tracks}
    video_clip = doc.editing.add_clip(kinds[AssetKind.VIDEO], tracks["V1"], 0)
    audio_clip = doc.editing.add_clip(kinds[AssetKind.AUDIO], tracks["A1"], 0)
    controller.ids = {"image": kinds[AssetKind.IMAGE], "video": video_clip, "audio": audio_clip, **tracks}
    return controller


@pytest.fixture
def fake():
    return FakeBackend(steps=2)


@pytest.fixture
def studio(window, qtbot, media_dir, tmp_path, fake):
    return _setup(window, qtbot, media_dir, tmp_path, lambda: fake)


def _ok(qtbot, dialog):
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)


def _landed(qtbot, controller, timeout=15000):
    with qtbot.waitSignal(controller.job_landed, timeout=timeout) as blocker:
        pass
    return blocker.args[1]


def _clip_centre(window, clip_id) -> QPoint:
    timeline = window.doc.timeline
    return timeline.clip_rect(window.doc.project.clip(clip_id)).center().toPoint()


def _right_click_menu(window, studio, pos: QPoint) -> QMenu:
    """Right-click the timeline; returns the menu it would pop up (popping up grabs the keyboard, which the
    offscreen platform refuses with a warning)."""
    timeline = window.doc.timeline
    shown = []
    studio.ui.popup_menu = lambda menu, global_pos: shown.append((menu, global_pos))
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos, timeline.mapToGlobal(pos))
    QApplication.sendEvent(timeline, event)
    assert len(shown) == 1, "no context menu"
    menu, global_pos = shown[0]
    assert global_pos == timeline.mapToGlobal(pos)
    return menu


def _key(qtbot, window, key, modifiers) -> None:
    """Press a window shortcut like a user (the window must be the active one to receive it)."""
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, key, modifiers)


def _menu_action(menu: QMenu, name: str):
    return next(a for a in menu.actions() if a.objectName() == name)


def test_extend_from_the_context_menu_then_extend_the_extension(window, qtbot, studio, fake):
    project = window.doc.project
    source = project.clip(studio.ids["video"])
    # A clip right after the source is pushed along (the extension is inserted).
    after = window.doc.editing.add_clip(project.clip(studio.ids["video"]).asset_id, studio.ids["V1"], source.end)
    after_start = project.clip(after).start
    menu = _right_click_menu(window, studio, _clip_centre(window, source.clip_id))
    assert window.doc.timeline.selected == {source.clip_id}
    assert not _menu_action(menu, "ctx_rerender").isEnabled()  # an imported clip has no recipe
    _menu_action(menu, "ctx_extend").trigger()
    menu.close()
    dialog = studio.ui.dialog
    assert dialog.mode == "extend" and dialog.duration.minimum() == 5 and dialog.duration.maximum() == 30
    dialog.prompt.setPlainText("the camera keeps rolling")
    dialog.duration.setValue(7)
    _ok(qtbot, dialog)
    first = _landed(qtbot, studio)
    clip = project.clip(first)
    assert (clip.track_id, clip.start) == (source.track_id, source.end)
    assert clip.recipe.task is Task.SINGLE_SHOT_EXTENSION and clip.recipe.source_clip_id == source.clip_id
    assert project.clip(after).start == after_start + clip.duration
    assert fake.calls[-1].input_video == project.asset(source.asset_id).path
    assert fake.calls[-1].duration_s == 7
    # Keyboard: extend the extension (it is selected after landing); provenance follows the chain.
    assert window.doc.timeline.selected == {first}
    _key(qtbot, window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
    dialog = studio.ui.dialog
    assert dialog.mode == "extend" and dialog.clip_id == first
    _ok(qtbot, dialog)
    second = _landed(qtbot, studio)
    assert project.clip(second).recipe.source_clip_id == first
    assert project.clip(second).start == project.clip(first).end
    assert fake.calls[-1].input_video == project.asset(project.clip(first).asset_id).path
    # Undo removes the newest extension only, and puts the later clip back.
    window.doc.stack.undo()
    assert not project.has_clip(second) and project.has_clip(first)
    assert project.check_invariants() == []


def test_cut_to_with_the_transition_picker(window, qtbot, studio, fake):
    window.doc.timeline.set_selection({studio.ids["video"]})
    studio.ui.actions["cut"].trigger()
    dialog = studio.ui.dialog
    assert dialog.mode == "cut"
    assert [dialog.transition.itemData(i) for i in range(dialog.transition.count())] == [t.value for t in Transition]
    assert (dialog.duration.minimum(), dialog.duration.maximum()) == (2, 5)
    dialog.transition.setCurrentIndex(dialog.transition.findData("shot_reverse_shot"))
    dialog.duration.setValue(3)
    dialog.prompt.setPlainText("her answer")
    _ok(qtbot, dialog)
    clip_id = _landed(qtbot, studio)
    request = fake.calls[-1]
    assert request.task is Task.SHOT_SWITCHING_EXTENSION and request.transition is Transition.SHOT_REVERSE_SHOT
    recipe = window.doc.project.clip(clip_id).recipe
    assert recipe.transition is Transition.SHOT_REVERSE_SHOT and recipe.source_clip_id == studio.ids["video"]


def _frame_numbers(path) -> list[int]:
    from core.media.decode import VideoReader
    from core.media.patterns import read_frame_number

    with VideoReader(path) as reader:
        return [read_frame_number(frame) for frame in reader.iter_frames()]


def test_extend_and_cut_to_continue_a_trimmed_clip_from_its_out_point(window, qtbot, studio, fake):
    from app.render_controller import EXCERPT_NAME, STUDIO_KEY, prepare_inputs

    project = window.doc.project
    source = project.clip(studio.ids["video"])
    asset = project.asset(source.asset_id)
    assert project.settings.fps == asset.fps  # the numbered media: file frame N shows N
    # Untrimmed: the original file goes to the backend as it is (no re-encode).
    assert (source.in_point, source.out_point) == (0, asset.duration_frames)
    studio.extend(source.clip_id, "the whole clip", duration_s=5)
    _landed(qtbot, studio)
    assert fake.calls[-1].input_video == asset.path
    assert "excerpt" not in fake.calls[-1].extra[STUDIO_KEY]
    window.doc.stack.undo()
    # Trim to asset frames 10..29: the extension must start from frame 29, not from the file's last.
    window.doc.editing.trim_clip(source.clip_id, "head", 10)
    window.doc.editing.trim_clip(source.clip_id, "tail", 30)
    source = project.clip(source.clip_id)
    assert (source.in_point, source.out_point) == (10, 30)
    job = studio.extend(source.clip_id, "the trimmed clip", duration_s=5)
    assert job.request.input_video == str(Path(job.request.work_dir) / EXCERPT_NAME)  # frozen at submit
    assert not Path(job.request.input_video).exists()  # written by the job, off the GUI thread
    clip_id = _landed(qtbot, studio)
    request = fake.calls[-1]
    assert request is job.request
    numbers = _frame_numbers(request.input_video)
    assert numbers == list(range(source.in_point, source.out_point))
    assert numbers[-1] == source.out_point - 1
    assert project.clip(clip_id).start == source.end
    assert asset.path != request.input_video and Path(asset.path).is_file()
    # Cut to from the same trimmed clip: the same frames, in the new job's own work dir.
    cut = studio.cut_to(source.clip_id, Transition.CUT_IN, "a close-up", duration_s=3)
    _landed(qtbot, studio)
    assert fake.calls[-1] is cut.request and Path(cut.request.input_video).parent == Path(cut.request.work_dir)
    assert _frame_numbers(cut.request.input_video) == list(range(10, 30))
    # A job resumed after its excerpt is gone writes it again from the frozen request (even if the clip
    # was trimmed again meanwhile).
    window.doc.editing.trim_clip(source.clip_id, "tail", source.end - 5)
    Path(cut.request.input_video).unlink()
    prepare_inputs(cut.request, threading.Event())
    assert _frame_numbers(cut.request.input_video) == list(range(10, 30))


def test_a_trimmed_clip_whose_file_is_gone_fails_in_words(tmp_path):
    from app.render_controller import STUDIO_KEY, prepare_inputs
    from core.generation import RenderRequest, RequestInvalid

    request = RenderRequest(
        Task.SINGLE_SHOT_EXTENSION, "more", str(tmp_path / "out.mp4"), str(tmp_path / "work"),
        input_video=str(tmp_path / "work" / "excerpt.mp4"),
        extra={STUDIO_KEY: {"excerpt": {"source": str(tmp_path / "gone.mp4"), "start_frame": 2,
                                        "end_frame": 9, "fps": 24}}})
    with pytest.raises(RequestInvalid, match=r"Cannot cut the clip out of gone\.mp4"):
        prepare_inputs(request, threading.Event())
    assert not Path(request.input_video).exists()


def test_avatar_from_a_region_dragged_on_the_audio_lane(window, qtbot, studio, fake):
    timeline = window.doc.timeline
    project = window.doc.project
    audio = project.clip(studio.ids["audio"])
    rect = timeline.clip_rect(audio)
    y = int(rect.bottom() - 8)  # the waveform body, below the title bar
    fps = project.settings.fps
    x0, x1 = int(timeline.x_for_frame(3)), int(timeline.x_for_frame(15))
    with qtbot.waitSignal(timeline.audio_region_selected):
        qtbot.mousePress(timeline, Qt.MouseButton.LeftButton, pos=QPoint(x0, y))
        qtbot.mouseMove(timeline, QPoint((x0 + x1) // 2, y))
        qtbot.mouseMove(timeline, QPoint(x1, y))
        qtbot.mouseRelease(timeline, Qt.MouseButton.LeftButton, pos=QPoint(x1, y))
    region = studio.ui.audio_region()
    assert region is not None and region[0] == audio.clip_id
    _, start, end = region
    window.doc.bin.select_asset(studio.ids["image"])
    _key(qtbot, window, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
    dialog = studio.ui.dialog
    assert dialog.mode == "avatar" and dialog.portrait.currentData() == studio.ids["image"]
    assert f"{(end - start) / fps:.2f} s" in dialog.region_label.text()
    _ok(qtbot, dialog)
    clip_id = _landed(qtbot, studio)
    request = fake.calls[-1]
    assert request.task is Task.TALKING_AVATAR
    assert request.input_audio == project.asset(audio.asset_id).path
    assert request.audio_start_s == pytest.approx(start / fps) and request.audio_end_s == pytest.approx(end / fps)
    assert request.input_image == project.asset(studio.ids["image"]).path
    clip = project.clip(clip_id)
    assert clip.start == start and project.track(clip.track_id).kind.value == "video"
    assert clip.linked_clip_id == audio.clip_id and project.clip(audio.clip_id).linked_clip_id == clip_id
    assert clip.recipe.audio_region.start_frame == start and clip.recipe.audio_region.end_frame == end


def test_rerender_with_ctrl_r_adds_an_alternative_take(window, qtbot, studio, fake):
    project = window.doc.project
    studio.shot_from_references([studio.ids["image"]], "a red door", duration_s=1, start=200)
    clip_id = _landed(qtbot, studio)
    first_asset = project.clip(clip_id).asset_id
    window.doc.timeline.set_selection({clip_id})
    _key(qtbot, window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert _landed(qtbot, studio) == clip_id
    clip = project.clip(clip_id)
    assert clip.asset_id != first_asset and clip.takes == [first_asset]
    assert fake.calls[-1].seed != fake.calls[-2].seed
    assert window.doc.stack.undoText() == "Add rendered clip"
    window.doc.stack.undo()
    assert project.clip(clip_id).asset_id == first_asset and project.clip(clip_id).takes == []


def test_refusals_are_explained(window, qtbot, studio):
    messages = []
    studio.message.connect(messages.append)
    window.doc.timeline.set_selection(set())
    studio.ui.actions["extend"].trigger()
    assert messages[-1] == "Select the video clip to extend on the timeline first."
    window.doc.timeline.set_selection({studio.ids["video"]})
    studio.ui.actions["rerender"].trigger()
    assert messages[-1] == "Only generated clips can be re-rendered (this one was imported)."
    window.doc.timeline.audio_region = None
    studio.ui.actions["avatar"].trigger()
    assert messages[-1] == "Drag across the waveform of an audio clip to choose the voice first."
    studio.ui.actions["shot"].trigger()
    dialog = studio.ui.dialog
    _ok(qtbot, dialog)  # no reference picked: the dialog stays open and says why
    assert dialog.isVisible() and dialog.error_label.text() == "Pick 1 to 4 reference images."
    dialog.reject()
    assert len(studio.queue) == 0


# -- the real backend on tiny checkpoints ------------------------------------------------------------------


def test_tiny_local_backend_shot_preview_then_undo(window, qtbot, media_dir, tmp_path, tiny_dir):
    created = []

    def factory():
        import torch

        from models.backend import LocalBackend

        torch.set_num_threads(1)  # the 2-core test machine: one intra-op thread is much faster
        backend = LocalBackend(device="cpu", tiny_dir=tiny_dir)
        created.append(backend)
        return backend

    studio = _setup(window, qtbot, media_dir, tmp_path, factory)
    studio.model = "tiny"
    window.doc.playback.seek(80)
    studio.ui.actions["shot"].trigger()
    dialog = studio.ui.dialog
    dialog.references.item(0).setCheckState(Qt.CheckState.Checked)
    dialog.prompt.setPlainText("a small red robot")
    dialog.duration.setValue(1)
    dialog.steps = 2
    assert "tiny test model" in dialog.estimate_label.text()
    _ok(qtbot, dialog)
    job = studio.queue.jobs[-1]
    previews = []
    studio.preview_changed.connect(previews.append)
    clip_id = _landed(qtbot, studio, timeout=120000)
    assert job.state is JobState.FINISHED and job.total_steps == 2 and job.step == 2
    assert previews, "no latent preview reached the GUI"
    clip = window.doc.project.clip(clip_id)
    assert clip.start == 80 and clip.duration > 0
    asset = window.doc.project.asset(clip.asset_id)
    assert asset.kind is AssetKind.VIDEO and asset.width > 0
    # The finished piece is playable from the queue panel.
    panel = studio.ui.panel
    panel.select_job(job.job_id)
    assert job.piece_paths and panel.play_button.isEnabled()
    qtbot.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.playing_piece == job.piece_paths[-1], timeout=10000)
    assert not panel.preview.pixmap().isNull()
    qtbot.waitUntil(lambda: panel.playing_piece == "", timeout=10000)  # it plays once, then stops
    # A second job reuses the loaded pipeline (the backend is created once).
    studio.rerender(clip_id, seed=7)
    assert _landed(qtbot, studio, timeout=120000) == clip_id
    assert len(created) == 1 and studio.worker.backend_created == 1
    window.doc.stack.undo()
    assert window.doc.project.clip(clip_id).asset_id == asset.asset_id
    window.doc.stack.undo()
    assert not window.doc.project.has_clip(clip_id)
