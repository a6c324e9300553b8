"""``main.py jobs``: a saved project's queue listed, exported for a farm, rendered per job file and on
several devices (CPU processes here), and landed afterwards without loading a model."""

from __future__ import annotations

import contextlib
import json
import shlex
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.generation import RenderRequest, Task
from core.media.probe import probe
from core.persistence import load_project, save_project
from core.project import Project
from core.render_queue import JobState, RenderQueue
from models.backend import LocalBackend
from models.jobs_cli import main


@pytest.fixture
def project_file(tmp_path, monkeypatch):
    """A saved project with two queued tiny reference-to-video jobs (paths as the editor lays them out)."""
    monkeypatch.setenv("SKYREELS_TINY_DIR", str(tmp_path / "tiny"))  # shared with the worker processes
    media = tmp_path / "film.media"
    media.mkdir()
    ref = media / "ref.png"
    Image.fromarray((np.random.default_rng(0).random((96, 160, 3)) * 255).astype(np.uint8)).save(ref)
    queue = RenderQueue()
    for seed, name in ((1, "hero"), (2, "villain")):
        work = media / "work" / name
        queue.submit(RenderRequest(task=Task.REFERENCE_TO_VIDEO, prompt=f"the {name}", output_path=str(work / "out.mp4"),
                                   work_dir=str(work), reference_images=(str(ref),), duration_s=1, seed=seed,
                                   model="tiny", steps=1), label=name, job_id=name)
    return save_project(Project(), tmp_path / "film.srproj", queue)


def test_list_shows_every_job(project_file, capsys):
    assert main(["list", str(project_file)]) == 0
    out = capsys.readouterr().out
    assert "hero" in out and "villain" in out and "reference_to_video" in out


def test_export_writes_a_job_file_and_a_command_per_job(project_file, tmp_path):
    out = tmp_path / "farm"
    assert main(["export", str(project_file), "--out", str(out), "--python", "python3", "--device", "cuda:0"]) == 0
    lines = (out / "tasks.txt").read_text().splitlines()
    assert len(lines) == 2
    command = shlex.split(lines[0])
    assert command[0] == "python3" and command[2:4] == ["jobs", "render"] and command[-2:] == ["--device", "cuda:0"]
    document = json.loads((out / "hero.json").read_text())
    request = RenderRequest.from_json(document["request"])
    assert request.seed == 1 and request.work_dir.endswith("work/hero") and request.reference_images[0].endswith("ref.png")


def test_render_one_job_file_then_the_editor_lands_it_without_models(project_file, tmp_path, monkeypatch):
    out = tmp_path / "farm"
    main(["export", str(project_file), "--out", str(out)])
    assert main(["render", str(out / "hero.json"), "--device", "cpu"]) == 0
    result = json.loads((out / "hero.result.json").read_text())
    assert result["frames"] == 25 and probe(result["output_path"]).frame_count == 25
    # The editor opens the project: the job is offered for resume, and resuming it needs no model.
    job = load_project(project_file).queue.job("hero")
    assert job.state is JobState.PAUSED

    def no_models(*args, **kwargs):
        raise AssertionError("a job a render node finished must not load a model")

    monkeypatch.setattr(LocalBackend, "_run", no_models)
    landed = LocalBackend().render(job.request, lambda e: None, threading.Event())
    assert landed.num_frames == 25


def test_run_renders_the_queue_on_several_devices(project_file, capsys):
    assert main(["run", str(project_file), "--devices", "cpu,cpu"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished ") == 2 and "2 of 2 job(s) rendered on 2 device(s)" in out
    for job in load_project(project_file).queue.jobs:
        assert probe(job.request.output_path).frame_count == 25


def test_bad_files_are_refused_readably(tmp_path, capsys):
    assert main(["list", str(tmp_path / "missing.srproj")]) == 2
    bad = tmp_path / "job.json"
    bad.write_text("{not json")
    assert main(["render", str(bad)]) == 2
    assert "cannot read the job file" in capsys.readouterr().err


def _events(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_run_reports_progress_as_json_lines_for_the_jobs_asked_for(project_file, capsys):
    assert main(["run", str(project_file), "--devices", "cpu", "--jobs", "villain", "--progress-json"]) == 0
    events = _events(capsys.readouterr().out)  # stdout holds nothing but the JSON lines
    kinds = [e["event"] for e in events]
    assert events[0] == {"event": "started", "jobs": ["villain"], "devices": ["cpu"]}
    assert kinds[1] == "job_started" and kinds[-2:] == ["job_finished", "done"]
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["step"] == progress[-1]["total_steps"] == 1
    piece = next(e for e in events if e["event"] == "piece_finished")
    assert piece["job_id"] == "villain" and piece["frames"] == 25
    assert events[-1] == {"event": "done", "rendered": 1, "failed": 0}
    queue = load_project(project_file).queue
    assert probe(queue.job("villain").request.output_path).frame_count == 25
    assert not Path(queue.job("hero").request.output_path).exists()


class _DeadWorker:
    exitcode = -9

    def is_alive(self):
        return False


def test_a_worker_process_that_dies_fails_the_job_it_had():
    import queue

    from models.jobs_cli import _collect, _JsonReport

    done = queue.Queue()
    done.put(("job_started", 0, "cuda:1", "hero", {}))
    jobs = [type("Job", (), {"job_id": "hero", "label": "hero"})()]
    lines = []
    report = _JsonReport.__new__(_JsonReport)  # writes into ``lines``, leaves sys.stdout alone
    report.out = type("Out", (), {"write": lambda self, text: lines.append(text), "flush": lambda self: None})()
    assert _collect(jobs, ["cuda:1"], [_DeadWorker()], done, report) == 1
    failure = json.loads(lines[-1])
    assert failure["event"] == "job_failed" and failure["device"] == "cuda:1"
    assert "worker process on cuda:1 stopped (exit code -9)" in failure["error"]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc")
def test_sigterm_stops_the_run_and_its_workers(project_file):
    import signal
    import subprocess
    import sys

    from core.render_farm import MAIN_PY

    run = subprocess.Popen([sys.executable, str(MAIN_PY), "jobs", "run", str(project_file), "--devices", "cpu,cpu",
                            "--progress-json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in run.stdout:
            if json.loads(line)["event"] == "job_started":
                break
        workers = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
        assert len(workers) >= 2  # one per device (and the resource tracker)
        run.send_signal(signal.SIGTERM)
        rest = run.stdout.read()
        assert run.wait(30) == 130
    finally:
        if run.poll() is None:
            run.kill()
    assert _events(rest)[-1] == {"event": "cancelled"}
    def running(pid):  # a zombie waits for init to reap it: it no longer runs
        with contextlib.suppress(OSError, IndexError):
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        return False

    deadline = time.monotonic() + 15  # the resource tracker ends a moment after its parent
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [Path(f"/proc/{pid}/cmdline").read_text() for pid in workers if running(pid)]
    # Nothing was lost: the jobs are still unfinished in the project, to run again or resume.
    assert all(job.state is JobState.PAUSED for job in load_project(project_file).queue.jobs)
