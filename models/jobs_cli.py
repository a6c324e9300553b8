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
  process per device, each keeping its model loaded between jobs. ``--jobs ID,ID`` renders only those;
  ``--progress-json`` writes one JSON object a line on stdout instead of the text report (for the
  editor's Generate ▸ Render Waiting Jobs on All GPUs…; see :class:`_JsonReport` for the events).
  SIGTERM stops it like Ctrl+C (exit 130, finished pieces kept); a worker whose parent dies stops too.

The renders go to the paths the editor chose (``<project>.media/work/<job id>/``), so the nodes need
the project folder on shared storage. When the project is opened in the editor again, its unfinished jobs
are offered for resume, and resuming a job a node finished re-assembles its output from the checkpoints
without loading a model and lands it on the timeline as usual.

Exit codes: 0 done, 1 some jobs failed (``run``), 2 bad input, 3 models missing, 4 out of GPU memory,
5 disk full, 130 cancelled.
Imports torch only in the processes that render. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import signal
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
    run.add_argument("--jobs", default="", help="comma-separated job ids: render only these (default: all)")
    run.add_argument("--progress-json", action="store_true",
                     help="one JSON object a line on stdout (started, job_started, progress, piece_finished, "
                          "job_finished, job_failed, done, cancelled) instead of the text report")
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
        return _run(Path(args.project), _split(args.devices), only=_split(args.jobs),
                    report=_JsonReport() if args.progress_json else _TextReport())
    except _Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


class _Refused(Exception):
    """A bad project or job file; the message is for the user."""


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


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


def _error_text(error: BaseException) -> str:
    """A job's failure in words: our own errors carry them; anything else names its type."""
    from core.generation import ModelsMissing, OutOfMemory, RequestInvalid

    if isinstance(error, RequestInvalid | ModelsMissing | OutOfMemory):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


def _exit_with_parent() -> None:
    """End this worker process when the process that started it is gone (killed, crashed): a worker must
    never go on rendering for nobody. Runs on a daemon thread of the worker."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    parent.join()  # waits on the parent's sentinel, which closes when it exits
    os._exit(130)


class _ProgressRelay:
    """A worker's ``emit``: forwards Progress (at most every ``interval`` seconds, and always a piece's last
    step) and PieceFinished to the parent through ``done``."""

    def __init__(self, done: Any, slot: int, device: str, job_id: str, interval: float = 0.25) -> None:
        self.done, self.slot, self.device, self.job_id, self.interval = done, slot, device, job_id, interval
        self.last = 0.0

    def __call__(self, event: Any) -> None:
        from core.generation import PieceFinished, Progress

        if isinstance(event, Progress):
            now = time.monotonic()
            if now - self.last < self.interval and event.step < event.total_steps:
                return
            self.last = now
            self.done.put(("progress", self.slot, self.device, self.job_id,
                           {"piece": event.piece, "total_pieces": event.total_pieces, "step": event.step,
                            "total_steps": event.total_steps}))
        elif isinstance(event, PieceFinished):
            self.done.put(("piece_finished", self.slot, self.device, self.job_id,
                           {"piece": event.piece, "total_pieces": event.total_pieces, "path": event.path,
                            "frames": event.num_frames}))


def _worker(slot: int, device: str, todo: Any, done: Any) -> None:
    """One device's process: takes jobs until the queue is empty, keeps its model loaded between them."""
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    sys.stdout = sys.stderr  # the parent's stdout may carry JSON lines (--progress-json): nothing else there
    from models.backend import LocalBackend

    backend = LocalBackend(device=device)
    while True:
        item = todo.get()
        if item is None:
            return
        job_id, data = item
        request = _with_device(RenderRequest.from_json(data), device)
        done.put(("job_started", slot, device, job_id, {}))
        started = time.monotonic()
        try:
            result = render_job(backend, request, threading.Event(), _ProgressRelay(done, slot, device, job_id))
            done.put(("job_finished", slot, device, job_id,
                      {"output_path": result.output_path, "seconds": time.monotonic() - started}))
        except Exception as error:  # reported per job; the worker goes on with the next one
            done.put(("job_failed", slot, device, job_id,
                      {"error": _error_text(error), "seconds": time.monotonic() - started}))


class _TextReport:
    """``jobs run``'s report for people: one line per finished or failed job, then a summary."""

    def started(self, jobs: list[Any], devices: list[str]) -> None:
        self.labels = {job.job_id: job.label or job.job_id for job in jobs}

    def event(self, kind: str, device: str, job_id: str, data: dict[str, Any]) -> None:
        if kind == "job_finished":
            print(f"finished {self.labels[job_id]} on {device} in {data['seconds']:.1f}s: {data['output_path']}")
        elif kind == "job_failed":
            print(f"FAILED   {self.labels[job_id]} on {device} after {data['seconds']:.1f}s: {data['error']}")

    def done(self, rendered: int, failed: int, devices: int) -> None:
        print(f"{rendered} of {rendered + failed} job(s) rendered on {devices} device(s); open the project "
              "in the editor and resume its jobs to land them")

    def cancelled(self) -> None:
        print("cancelled; finished pieces are kept and a rerun resumes from them", file=sys.stderr)


class _JsonReport:
    """``jobs run --progress-json``: one JSON object a line on stdout, flushed at once. Events:

    - ``{"event": "started", "jobs": [ids], "devices": [names]}``
    - ``{"event": "job_started", "job_id", "device"}``
    - ``{"event": "progress", "job_id", "device", "piece", "total_pieces", "step", "total_steps"}``
    - ``{"event": "piece_finished", "job_id", "device", "piece", "total_pieces", "path", "frames"}``
    - ``{"event": "job_finished", "job_id", "device", "output_path", "seconds"}``
    - ``{"event": "job_failed", "job_id", "device", "error", "seconds"}`` (``error`` is for the user)
    - ``{"event": "done", "rendered", "failed"}`` last, or ``{"event": "cancelled"}`` after SIGTERM/Ctrl+C.

    Anything else a library prints goes to stderr, so stdout stays parseable.
    """

    def __init__(self) -> None:
        self.out = sys.stdout
        sys.stdout = sys.stderr  # stray prints (libraries, warnings) must not break the JSON lines

    def _write(self, **fields: Any) -> None:
        self.out.write(json.dumps(fields) + "\n")
        self.out.flush()

    def started(self, jobs: list[Any], devices: list[str]) -> None:
        self._write(event="started", jobs=[job.job_id for job in jobs], devices=devices)

    def event(self, kind: str, device: str, job_id: str, data: dict[str, Any]) -> None:
        self._write(event=kind, job_id=job_id, device=device, **data)

    def done(self, rendered: int, failed: int, devices: int) -> None:
        self._write(event="done", rendered=rendered, failed=failed)

    def cancelled(self) -> None:
        self._write(event="cancelled")

    def close(self) -> None:
        sys.stdout = self.out


class _Terminated(KeyboardInterrupt):
    """SIGTERM (the editor's Cancel, a farm engine stopping a task): handled like Ctrl+C."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated()


def _run(project: Path, devices: list[str], only: list[str] | None = None, report: Any = None) -> int:
    report = report or _TextReport()
    try:
        return _run_jobs(project, devices, only or [], report)
    finally:
        close = getattr(report, "close", None)
        if close is not None:
            close()


def _run_jobs(project: Path, devices: list[str], only: list[str], report: Any) -> int:
    jobs = _unfinished(_load_queue(project))
    if only:
        jobs = [job for job in jobs if job.job_id in set(only)]
    devices = devices or ["auto"]
    report.started(jobs, devices)
    if not jobs:
        print(f"{project.name} has no unfinished render jobs" + (" among those asked for" if only else ""),
              file=sys.stderr if isinstance(report, _JsonReport) else sys.stdout)
        report.done(0, 0, len(devices))
        return 0
    context = multiprocessing.get_context("spawn")  # CUDA needs fresh processes, not forks
    todo, done = context.Queue(), context.Queue()
    for job in jobs:
        todo.put((job.job_id, job.request.to_json()))
    workers = [context.Process(target=_worker, args=(slot, device, todo, done), daemon=True)
               for slot, device in enumerate(devices)]
    for _ in workers:
        todo.put(None)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        for worker in workers:
            worker.start()
        failed = _collect(jobs, devices, workers, done, report)
    except KeyboardInterrupt:  # Ctrl+C, or SIGTERM through _raise_terminated
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(10)
        report.cancelled()
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    for worker in workers:
        worker.join()
    report.done(len(jobs) - failed, failed, len(devices))
    return 1 if failed else 0


def _collect(jobs: list[Any], devices: list[str], workers: list[Any], done: Any, report: Any) -> int:
    """Report the workers' messages until every job finished or failed; returns how many failed. A worker
    process that dies (killed, out of memory, a crash in a native library) fails the job it had."""
    unreported = {job.job_id for job in jobs}
    current: dict[int, str] = {}  # worker slot -> the job it is rendering
    failed = 0
    while unreported:
        try:
            kind, slot, device, job_id, data = done.get(timeout=1.0)
        except queue.Empty:
            for slot, worker in enumerate(workers):
                if worker.exitcode is not None and slot in current:
                    job_id = current.pop(slot)
                    if job_id in unreported:
                        unreported.discard(job_id)
                        failed += 1
                        report.event("job_failed", devices[slot], job_id, {
                            "error": f"the worker process on {devices[slot]} stopped (exit code {worker.exitcode})",
                            "seconds": 0.0})
            if unreported and not any(worker.is_alive() for worker in workers):
                # Every worker died before taking the rest (e.g. each failed to start on its device).
                for job_id in sorted(unreported):
                    report.event("job_failed", "", job_id, {
                        "error": "no worker process was left to render it (see the errors above)", "seconds": 0.0})
                failed += len(unreported)
                unreported.clear()
            continue
        if kind == "job_started":
            current[slot] = job_id
        elif kind in ("job_finished", "job_failed"):
            current.pop(slot, None)
            if job_id not in unreported:
                continue
            unreported.discard(job_id)
            failed += kind == "job_failed"
        report.event(kind, device, job_id, data)
    return failed
