"""Generate ▸ Render Waiting Jobs on All GPUs…: the dialog, the ``main.py jobs run`` subprocess on two CPU
"devices" ($SKYREELS_RENDER_DEVICES=cpu,cpu) with tiny models, each job landing as soon as it is rendered
(while the run goes on) without a model in the editor, a job that cannot be joined, Cancel, closing the
editor meanwhile, a crash, a job failing on one device, and the refusals.

The subprocess is real where it matters (rendering, Cancel); the crash and per-device failure use a short
Python command that prints the same JSON lines. Nothing sleeps: tests wait on signals and states.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from core.edits import AddRenderedClip
from core.persistence import load_project
from core.project import AssetKind
from core.render_devices import DEVICES_ENV
from core.render_queue import JobState
from tests.app.conftest import wait_idle
from tests.fakes import FakeBackend


def _attach(window, qtbot, media_dir, tmp_path, factory, *, save=True):
    from app.render_ui import attach_render_ui

    if save:
        window.save_to(tmp_path / "film.srproj")
    controller = attach_render_ui(window, factory)
    controller.ask_resume = lambda jobs: True
    controller.model = "tiny"
    window.doc.editing.import_files([str(media_dir / "still.png")])
    wait_idle(qtbot, window)
    if save:
        window.save()
    controller.image = next(a.asset_id for a in window.doc.project.assets  # type: ignore[attr-defined]
                            if a.kind is AssetKind.IMAGE)
    qtbot.waitUntil(controller.ui.actions["gpus"].isEnabled, timeout=10000)  # the device scan ran
    return controller


def _waiting(controller, count=2):
    """``count`` tiny 1 s shots, paused before the editor's worker takes them (waiting jobs)."""
    jobs = []
    for n in range(count):
        job = controller.shot_from_references([controller.image], f"robot {n}", duration_s=1, steps=1,
                                              start=48 * n)
        controller.pause(job.job_id)
        jobs.append(job)
    return jobs


def _script(*events, stderr="", code=0, hang=False):
    """A stand-in for ``jobs run``: prints ``events`` as JSON lines, then exits (or waits to be stopped)."""
    lines = [f"print({json.dumps(json.dumps(e))}, flush=True)" for e in events]
    if stderr:
        lines.append(f"sys.stderr.write({stderr!r}); sys.stderr.flush()")
    lines.append("time.sleep(600)" if hang else f"sys.exit({code})")
    program = "import sys, time\n" + "\n".join(lines)

    def command(project, devices, job_ids):
        command.args = (project, list(devices), list(job_ids))  # type: ignore[attr-defined]
        return [sys.executable, "-c", program]

    return command


def _request(tmp_path):
    """A request for the FakeBackend (it reads no file)."""
    from core.generation import RenderRequest, Task

    return RenderRequest(task=Task.REFERENCE_TO_VIDEO, prompt="a robot", output_path=str(tmp_path / "out.mp4"),
                         work_dir=str(tmp_path / "work"), reference_images=(str(tmp_path / "ref.png"),))


def _open_dialog(qtbot, controller):
    controller.ui.actions["gpus"].trigger()
    dialog = controller.ui.device_run_dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def _ok(qtbot, dialog):
    qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Ok), Qt.MouseButton.LeftButton)


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setenv(DEVICES_ENV, "cpu,cpu")


@pytest.fixture
def tiny_studio(window, qtbot, media_dir, tmp_path, tiny_dir, two_cpus):
    created = []

    def factory():
        import torch

        from models.backend import LocalBackend

        torch.set_num_threads(1)
        backend = LocalBackend(device="cpu", tiny_dir=tiny_dir)
        backend.loads = []  # type: ignore[attr-defined]
        load = backend._pipeline

        def counted_load(key, build):  # the editor must never load a model while the devices render
            backend.loads.append(key)  # type: ignore[attr-defined]
            return load(key, build)

        backend._pipeline = counted_load  # type: ignore[method-assign]
        created.append(backend)
        return backend

    controller = _attach(window, qtbot, media_dir, tmp_path, factory)
    controller.backends = created  # type: ignore[attr-defined]
    return controller


def _fake_studio(window, qtbot, media_dir, tmp_path, backend):
    controller = _attach(window, qtbot, media_dir, tmp_path, lambda: backend)
    controller.backend = backend  # type: ignore[attr-defined]
    return controller


@pytest.fixture
def fake_studio(window, qtbot, media_dir, tmp_path, two_cpus):
    return _fake_studio(window, qtbot, media_dir, tmp_path, FakeBackend(steps=1))


def test_two_waiting_jobs_render_in_two_processes_and_land_without_a_model(window, qtbot, tiny_studio):
    studio = tiny_studio
    jobs = _waiting(studio)
    dialog = _open_dialog(qtbot, studio)
    assert [dialog.device_list.item(i).text() for i in range(2)] == [f"cpu (from ${DEVICES_ENV})"] * 2
    assert "2 waiting jobs" in dialog.jobs_label.text() and not dialog.save_label.isVisible()
    assert dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).text() == "Render on 2 Devices"
    landed = []
    studio.job_landed.connect(lambda job_id, clip_id: landed.append((job_id, clip_id)))
    _ok(qtbot, dialog)
    run = studio.ui.device_run
    assert run is not None and studio.ui.device_bar.isVisible()
    assert all(job.held and job.state is JobState.PAUSED for job in jobs)
    # Progress from the subprocess reaches the jobs' rows while it runs.
    qtbot.waitUntil(lambda: any(job.held.startswith("Rendering on cpu") for job in jobs), timeout=120000)
    qtbot.waitUntil(lambda: len(landed) == 2 and studio.ui.device_run is None, timeout=240000)
    assert run.outcome == "done" and not studio.ui.device_bar.isVisible() and studio.ui.device_run is None
    assert run.finished_jobs == {job.job_id for job in jobs}
    assert all(job.state is JobState.FINISHED and not job.held and job.total_steps == 1 for job in jobs)
    project = window.doc.project
    assert sorted(project.clip(clip_id).start for _job, clip_id in landed) == [0, 48]
    # The editor re-assembled both from the processes' checkpoints: it never loaded a model.
    assert all(backend._loaded is None and backend.loads == [] for backend in studio.backends)
    assert run.landed_jobs == run.finished_jobs  # counted as they landed, during the run or just after


def test_each_job_lands_as_soon_as_its_device_finishes_it(window, qtbot, tiny_studio):
    """The stand-in renders the first job for real (``jobs run`` on one CPU, its JSON lines passed on), then
    says the second started and waits for a line on stdin: the first must land meanwhile. The second's
    ``job_finished`` then comes without checkpoints: it cannot be joined and stays paused with the reason."""
    from app.device_run import jobs_run_command

    studio = tiny_studio
    first, second = _waiting(studio)
    later = [{"event": "job_finished", "job_id": second.job_id, "device": "cpu", "output_path": "x", "seconds": 1.0},
             {"event": "done", "rendered": 2, "failed": 0}]

    def command(project, devices, job_ids):
        real = jobs_run_command(project, ["cpu"], [first.job_id])
        started = {"event": "job_started", "job_id": second.job_id, "device": "cpu"}
        return [sys.executable, "-c", "\n".join([
            "import json, subprocess, sys",
            f"subprocess.run({real!r}, check=True)",
            f"print(json.dumps({started!r}), flush=True)",
            "sys.stdin.readline()",
            *(f"print(json.dumps({event!r}), flush=True)" for event in later)])]

    studio.ui.device_run_command = command
    messages = []
    studio.message.connect(messages.append)
    undo = window.doc.undo.stack
    before = undo.count()
    _ok(qtbot, _open_dialog(qtbot, studio))
    run = studio.ui.device_run
    with qtbot.waitSignal(studio.job_landed, timeout=240000) as landed:
        pass
    job_id, clip_id = landed.args
    # Landed while the run goes on: the process still runs and the second job still renders there.
    assert job_id == first.job_id and run.running and run.process.state() == run.process.ProcessState.Running
    qtbot.waitUntil(lambda: second.held == "Rendering on cpu", timeout=20000)
    assert first.state is JobState.FINISHED and not first.held and window.doc.project.clip(clip_id).start == 0
    assert "1 on the timeline" in studio.ui.device_bar.label.text() and studio.ui.device_bar.isVisible()
    assert undo.count() == before + 1 and undo.undoText() == AddRenderedClip.label  # one undoable step
    undo.undo()
    assert not window.doc.project.has_clip(clip_id)
    undo.redo()
    assert window.doc.project.has_clip(clip_id)
    backend = studio.backends[0]
    assert backend._loaded is None and backend.loads == []
    with qtbot.waitSignal(run.ended, timeout=30000) as ended:
        run.process.write(b"go\n")
    assert ended.args == ["done"]
    qtbot.waitUntil(lambda: not second.held, timeout=20000)
    assert second.state is JobState.PAUSED and second.error.startswith("Rendered in another process but not landed")
    assert second in studio.queue.resumable() and "no complete render" in second.error
    assert any(m.startswith(f"“{second.label}” rendered in another process") for m in messages)
    assert "1 job(s) landed on the timeline" in run.status
    assert first.state is JobState.FINISHED and window.doc.project.has_clip(clip_id)
    panel = studio.ui.panel
    panel.select_job(second.job_id)
    assert panel.buttons["resume"].isEnabled()
    assert backend._loaded is None and backend.loads == [] and studio.idle  # nothing rendered it here


def test_a_job_whose_inputs_cannot_be_read_is_not_landed_nor_rendered_here(window, qtbot, media_dir, tmp_path,
                                                                           two_cpus):
    backend = FakeBackend(steps=1, invalid_message="The reference image cannot be read.")
    studio = _fake_studio(window, qtbot, media_dir, tmp_path, backend)
    [job] = _waiting(studio, 1)
    backend.write_checkpoints(job.request)
    studio.ui.device_run_command = _script(
        {"event": "job_started", "job_id": job.job_id, "device": "cuda:1"},
        {"event": "job_finished", "job_id": job.job_id, "device": "cuda:1", "output_path": "x", "seconds": 1.0},
        {"event": "done", "rendered": 1, "failed": 0})
    landed = []
    studio.job_landed.connect(lambda *args: landed.append(args))
    _ok(qtbot, _open_dialog(qtbot, studio))
    run = studio.ui.device_run
    qtbot.waitUntil(lambda: run.outcome == "done" and not job.held, timeout=20000)
    assert job.state is JobState.PAUSED and "The reference image cannot be read." in job.error
    assert landed == [] and backend.calls == [] and len(backend.reassembled) == 1
    assert list(run.unlanded_jobs) == [job.job_id]


def test_cancel_mid_way_leaves_the_jobs_paused_and_resumable(window, qtbot, tiny_studio):
    studio = tiny_studio
    jobs = _waiting(studio)
    _ok(qtbot, _open_dialog(qtbot, studio))
    run = studio.ui.device_run
    qtbot.waitUntil(lambda: any(job.held.startswith("Rendering on cpu") for job in jobs), timeout=120000)
    with qtbot.waitSignal(run.ended, timeout=30000) as ended:
        qtbot.mouseClick(studio.ui.device_bar.cancel_button, Qt.MouseButton.LeftButton)
    assert ended.args == ["cancelled"] and run.process.state() == run.process.ProcessState.NotRunning
    unfinished = [job for job in jobs if job.job_id not in run.finished_jobs]
    assert unfinished, "both tiny jobs finished before Cancel reached them"
    assert all(job.state is JobState.PAUSED and not job.held for job in unfinished)
    assert {job.job_id for job in studio.queue.resumable()} >= {job.job_id for job in unfinished}
    panel = studio.ui.panel
    panel.select_job(unfinished[0].job_id)
    assert panel.buttons["resume"].isEnabled()
    saved = load_project(window.doc.path).queue
    assert all(saved.job(job.job_id).state is JobState.PAUSED for job in unfinished)


def test_closing_the_editor_meanwhile_keeps_the_jobs_paused_in_the_file(window, qtbot, fake_studio):
    studio = fake_studio
    jobs = _waiting(studio)
    ids = [job.job_id for job in jobs]
    studio.ui.device_run_command = _script({"event": "started", "jobs": ids, "devices": ["cpu", "cpu"]},
                                           {"event": "job_started", "job_id": ids[0], "device": "cpu"}, hang=True)
    _ok(qtbot, _open_dialog(qtbot, studio))
    run = studio.ui.device_run
    qtbot.waitUntil(lambda: jobs[0].held == "Rendering on cpu", timeout=20000)
    path = window.doc.path
    window.close()
    assert run.outcome == "cancelled" and run.process.state() == run.process.ProcessState.NotRunning
    saved = load_project(path).queue
    assert [saved.job(i).state for i in ids] == [JobState.PAUSED, JobState.PAUSED]  # offered for resume


def test_a_crash_shows_the_end_of_its_error_output_and_keeps_the_jobs(window, qtbot, fake_studio):
    studio = fake_studio
    jobs = _waiting(studio)
    studio.ui.device_run_command = _script({"event": "started", "jobs": [], "devices": []},
                                           stderr="Traceback (most recent call last):\nRuntimeError: CUDA "
                                                  "driver exploded\n", code=1)
    messages = []
    studio.message.connect(messages.append)
    _ok(qtbot, _open_dialog(qtbot, studio))
    run = studio.ui.device_run
    with qtbot.waitSignal(run.ended, timeout=20000) as ended:
        pass
    assert ended.args == ["crashed"]
    assert "stopped unexpectedly (exit code 1)" in run.error_text and "CUDA driver exploded" in run.error_text
    assert "2 job(s) stay paused" in messages[-1]
    assert all(job.state is JobState.PAUSED and not job.held for job in jobs)
    assert studio.ui.actions["gpus"].isEnabled() and studio.ui.device_run is None


def test_a_job_failing_on_one_device_shows_its_error_and_the_other_lands(window, qtbot, fake_studio):
    studio = fake_studio
    good, bad = _waiting(studio)
    studio.backend.write_checkpoints(good.request)  # what the device's render left in its work folder
    studio.ui.device_run_command = command = _script(
        {"event": "started", "jobs": [good.job_id, bad.job_id], "devices": ["cpu", "cpu"]},
        {"event": "job_started", "job_id": good.job_id, "device": "cuda:0"},
        {"event": "job_started", "job_id": bad.job_id, "device": "cuda:1"},
        {"event": "progress", "job_id": good.job_id, "device": "cuda:0", "piece": 0, "total_pieces": 1, "step": 1,
         "total_steps": 1},
        {"event": "job_finished", "job_id": good.job_id, "device": "cuda:0", "output_path": "x", "seconds": 1.0},
        {"event": "job_failed", "job_id": bad.job_id, "device": "cuda:1", "error": "CUDA out of memory",
         "seconds": 1.0},
        {"event": "done", "rendered": 1, "failed": 1}, code=1)
    _ok(qtbot, _open_dialog(qtbot, studio))
    run = studio.ui.device_run
    with qtbot.waitSignal(studio.job_landed, timeout=20000) as landed:
        pass
    qtbot.waitUntil(lambda: studio.ui.device_run is None, timeout=20000)
    assert command.args == (str(window.doc.path), ["cpu", "cpu"], [good.job_id, bad.job_id])
    assert landed.args[0] == good.job_id and good.state is JobState.FINISHED and run.outcome == "done"
    assert studio.backend.calls == [] and [r.work_dir for r in studio.backend.reassembled] == [good.request.work_dir]
    assert bad.state is JobState.FAILED and bad.error == "Failed on cuda:1: CUDA out of memory"
    panel = studio.ui.panel
    panel.select_job(bad.job_id)
    assert panel.buttons["retry"].isEnabled()


def test_an_untitled_project_is_saved_first(window, qtbot, media_dir, tmp_path, two_cpus):
    studio = _attach(window, qtbot, media_dir, tmp_path, lambda: FakeBackend(steps=1), save=False)
    jobs = _waiting(studio)
    studio.ui.device_run_command = _script({"event": "done", "rendered": 0, "failed": 0})
    messages = []
    studio.message.connect(messages.append)
    dialog = _open_dialog(qtbot, studio)
    assert dialog.save_label.isVisible() and "not been saved" in dialog.save_label.text()
    assert dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).text() == "Save and Render on 2 Devices"
    window.choose_save_path = lambda: ""  # the user cancels Save As
    _ok(qtbot, dialog)
    assert studio.ui.device_run is None and "must be saved first" in messages[-1]
    assert not any(job.held for job in jobs)
    target = tmp_path / "saved.srproj"
    window.choose_save_path = lambda: str(target)
    dialog = _open_dialog(qtbot, studio)
    dialog.set_checked(1, False)
    assert dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).text() == "Save and Render on 1 Device"
    _ok(qtbot, dialog)
    run = studio.ui.device_run
    assert run is not None and run.devices == ["cpu"] and Path(window.doc.path) == target.resolve()
    assert {job.job_id for job in load_project(target).queue.jobs} == {job.job_id for job in jobs}
    with qtbot.waitSignal(run.ended, timeout=20000):
        pass


def test_no_gpus_disables_the_action_and_says_why(window, qtbot, media_dir, tmp_path, monkeypatch):
    from app.render_ui import attach_render_ui

    monkeypatch.delenv(DEVICES_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    window.save_to(tmp_path / "film.srproj")
    controller = attach_render_ui(window, lambda: FakeBackend(steps=1))
    action = controller.ui.actions["gpus"]
    qtbot.waitUntil(lambda: "Looking" not in action.toolTip(), timeout=10000)
    wait_idle(qtbot, window)
    assert not action.isEnabled()
    assert action.toolTip() == "Needs two GPUs or more. No NVIDIA GPU was found (nvidia-smi is not installed)."
    messages = []
    controller.message.connect(messages.append)
    controller.ui._guard(controller.ui.open_device_run_dialog)  # e.g. a shortcut on a stale action
    assert messages == [action.toolTip()] and controller.ui.device_run_dialog is None


def test_no_waiting_jobs_is_refused_in_words(window, qtbot, fake_studio):
    messages = []
    fake_studio.message.connect(messages.append)
    fake_studio.ui.actions["gpus"].trigger()
    assert messages and messages[-1].startswith("No waiting jobs to render")
    assert fake_studio.ui.device_run_dialog is None


def test_the_worker_joins_without_ever_rendering(qtbot, tmp_path):
    from app.render_worker import RenderWorker

    class RenderOnly(FakeBackend):
        reassemble = None  # a backend that can only render: joining must not fall back to it

    fake = FakeBackend(steps=1)
    backends = iter([fake])
    worker = RenderWorker(lambda: next(backends))
    request = _request(tmp_path)
    try:
        with qtbot.waitSignal(worker.job_reassembled, timeout=10000) as missing:
            worker.reassemble_job("a", request)
        assert missing.args == ["a", None, "its work folder has no complete render to join"]
        fake.write_checkpoints(request)
        with qtbot.waitSignal(worker.job_reassembled, timeout=10000) as joined:
            worker.reassemble_job("a", request)
        assert joined.args[1].output_path == request.output_path and joined.args[2] == ""
        worker._backend = RenderOnly(steps=1)
        with qtbot.waitSignal(worker.job_reassembled, timeout=10000) as refused:
            worker.reassemble_job("a", request)
        assert refused.args[1] is None and "cannot join" in refused.args[2]
        assert fake.calls == [] and worker._backend.calls == [] and not worker.busy
    finally:
        assert worker.stop()


def test_render_processes_number_gpus_as_nvidia_smi_does(monkeypatch):
    from app.device_run import subprocess_environment

    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setenv("SKYREELS_TEST_MARKER", "kept")
    environment = subprocess_environment()
    assert environment.value("CUDA_DEVICE_ORDER") == "PCI_BUS_ID"
    assert environment.value("SKYREELS_TEST_MARKER") == "kept"
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")  # the user's choice stays
    assert subprocess_environment().value("CUDA_DEVICE_ORDER") == "FASTEST_FIRST"
