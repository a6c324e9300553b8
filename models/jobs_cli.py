"""``python main.py jobs``: a project's render queue, rendered without the editor.

Several GPUs in one machine, or a render farm on an engine the studio already runs (Deadline, OpenCue,
Flamenco, a SLURM array, GNU parallel): each queued job is a self-contained JSON file and one command.

* ``jobs list PROJECT``: the project's jobs, their state and progress.
* ``jobs export PROJECT --out DIR``: every unfinished job as ``DIR/<job id>.json`` plus ``DIR/tasks.txt``,
  one shell command a line (``main.py jobs render DIR/<job id>.json``) for the farm to run.
* ``jobs render JOB.json [--device cuda:1]``: renders one job (what a farm task runs). It writes into
  the job's own work folder, so a killed task resumes from its finished pieces, and a job that already
  finished is done at once. Writes ``JOB.result.json`` next to the job file.
* ``jobs run PROJECT --devices cuda:0,cuda:1``: renders the unfinished jobs on this machine, one worker
  process per device, each keeping its model loaded between jobs.

The renders go to the paths the editor chose (``<project>.media/work/<job id>/``), so the nodes need
the project folder on shared storage. When the project is opened in the editor again, its unfinished jobs
are offered for resume, and resuming a job a node finished re-assembles its output from the checkpoints
without loading a model and lands it on the timeline as usual.

Exit codes: 0 done, 1 some jobs failed (``run``), 2 bad input, 3 models missing, 4 out of GPU memory,
130 cancelled.
Imports torch only in the processes that render. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from core.generation import RenderRequest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py jobs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="the project's render jobs")
    listing.add_argument("project")
    export = sub.add_parser("export", help="unfinished jobs as job files and farm commands")
    export.add_argument("project")
    export.add_argument("--out", required=True, help="folder for <job id>.json and tasks.txt")
    export.add_argument("--python", default=sys.executable, help="the Python the farm nodes run")
    export.add_argument("--device", default="", help="device written into each command (default: auto)")
    render = sub.add_parser("render", help="render one job file")
    render.add_argument("job")
    render.add_argument("--device", default="", help="auto, cpu, cuda, cuda:1 ... (default: the job's)")
    run = sub.add_parser("run", help="render the unfinished jobs here, one process per device")
    run.add_argument("project")
    run.add_argument("--devices", default="auto", help="comma-separated, e.g. cuda:0,cuda:1 (default: auto)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list(Path(args.project))
        if args.command == "export":
            return _export(Path(args.project), Path(args.out), args.python, args.device)
        if args.command == "render":
            return _render_file(Path(args.job), args.device)
        return _run(Path(args.project), [d.strip() for d in args.devices.split(",") if d.strip()])
    except _Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


class _Refused(Exception):
    """A bad project or job file; the message is for the user."""


# -- reading the queue -----------------------------------------------------------------------------


def _load_queue(project: Path) -> Any:
    from core.persistence import ProjectFileError, load_project

    try:
        return load_project(project).queue
    except ProjectFileError as error:
        raise _Refused(str(error)) from error


def _unfinished(queue: Any) -> list[Any]:
    from core.render_queue import UNFINISHED

    return [job for job in queue.jobs if job.state in UNFINISHED]


def _list(project: Path) -> int:
    queue = _load_queue(project)
    if not len(queue):
        print(f"{project.name} has no render jobs")
        return 0
    for job in queue.jobs:
        pieces = f"{job.last_finished_piece + 1}/{job.total_pieces} pieces" if job.total_pieces > 1 else ""
        print(f"{job.job_id}  {job.state.value:9s}  {job.request.task.value:25s}  {pieces:12s}  {job.label}")
    return 0


def _export(project: Path, out: Path, python: str, device: str) -> int:
    from core.render_farm import export_jobs

    written = export_jobs(_unfinished(_load_queue(project)), project, out, python=python, device=device)
    print(f"{len(written)} job(s) written to {out} (one command a line in {out / 'tasks.txt'})")
    return 0


def _read_job(path: Path) -> tuple[dict[str, Any], RenderRequest]:
    from core.render_farm import JobFileError, read_job

    try:
        return read_job(path)
    except JobFileError as error:
        raise _Refused(str(error)) from error


# -- rendering ----------------------------------------------------------------------------------------


def render_job(backend: Any, request: RenderRequest, cancel: threading.Event, emit: Any = None) -> Any:
    """Prepare a job's inputs (the excerpt of a trimmed clip) and render it; the backend resumes from
    the job's finished pieces. Raises what ``InferenceBackend.render`` raises."""
    from core.render_inputs import prepare_inputs

    prepare_inputs(request, cancel)
    return backend.render(request, emit or (lambda event: None), cancel)


def _with_device(request: RenderRequest, device: str) -> RenderRequest:
    return RenderRequest(**{**request.__dict__, "device": device}) if device else request


def _render_file(path: Path, device: str) -> int:
    from models.backend import LocalBackend
    from models.cli import ProgressBar, run_for_cli

    document, request = _read_job(path)
    request = _with_device(request, device)
    cancel = threading.Event()
    print(f"rendering {document.get('label') or document['job_id']} ({request.task.value})", file=sys.stderr)
    result = run_for_cli(lambda: render_job(LocalBackend(), request, cancel, ProgressBar()), request, cancel)
    if isinstance(result, int):
        return result
    summary = {"job_id": document["job_id"], "output_path": result.output_path, "frames": result.num_frames,
               "fps": result.fps, "width": result.width, "height": result.height, "has_audio": result.has_audio,
               "seconds": result.seconds}
    path.with_suffix(".result.json").write_text(json.dumps(summary, indent=2))
    print(f"\nwrote {result.output_path}: {result.num_frames} frames in {result.seconds:.1f}s", file=sys.stderr)
    return 0


def _worker(device: str, todo: Any, done: Any) -> None:
    """One device's process: takes jobs until the queue is empty, keeps its model loaded between them."""
    from models.backend import LocalBackend

    backend = LocalBackend(device=device)
    while True:
        item = todo.get()
        if item is None:
            return
        job_id, data = item
        request = _with_device(RenderRequest.from_json(data), device)
        started = time.monotonic()
        try:
            result = render_job(backend, request, threading.Event())
            done.put((job_id, device, "", result.output_path, time.monotonic() - started))
        except Exception as error:  # reported per job; the worker goes on with the next one
            done.put((job_id, device, f"{type(error).__name__}: {error}", "", time.monotonic() - started))


def _run(project: Path, devices: list[str]) -> int:
    jobs = _unfinished(_load_queue(project))
    if not jobs:
        print(f"{project.name} has no unfinished render jobs")
        return 0
    devices = devices or ["auto"]
    context = multiprocessing.get_context("spawn")  # CUDA needs fresh processes, not forks
    todo, done = context.Queue(), context.Queue()
    for job in jobs:
        todo.put((job.job_id, job.request.to_json()))
    workers = [context.Process(target=_worker, args=(device, todo, done), daemon=True) for device in devices]
    for _ in workers:
        todo.put(None)
    for worker in workers:
        worker.start()
    labels = {job.job_id: job.label or job.job_id for job in jobs}
    failed = 0
    reported = 0
    try:
        while reported < len(jobs):
            try:
                job_id, device, error, output, seconds = done.get(timeout=1.0)
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers):
                    missing = len(jobs) - reported
                    print(f"FAILED   {missing} job(s): every worker process stopped (see the errors above)")
                    return 1
                continue
            reported += 1
            if error:
                failed += 1
                print(f"FAILED   {labels[job_id]} on {device} after {seconds:.1f}s: {error}")
            else:
                print(f"finished {labels[job_id]} on {device} in {seconds:.1f}s: {output}")
    except KeyboardInterrupt:
        for worker in workers:
            worker.terminate()
        print("cancelled; finished pieces are kept and a rerun resumes from them", file=sys.stderr)
        return 130
    for worker in workers:
        worker.join()
    print(f"{len(jobs) - failed} of {len(jobs)} job(s) rendered on {len(devices)} device(s); open the project "
          "in the editor and resume its jobs to land them")
    return 1 if failed else 0
