"""Render jobs as files a render node runs: the format ``main.py jobs`` reads and the editor writes.

A job file is self-contained JSON (``format``, ``job_id``, ``label``, ``project``, ``request``) with
absolute paths; ``tasks.txt`` beside the job files has one shell command a line
(``<python> <main.py> jobs render <job file>``), the unit of work of any farm engine (Deadline,
OpenCue, Flamenco, a SLURM array, GNU parallel). The renders go to the job's own work folder in the
project's media folder, so a node needs the project on shared storage; the editor lands them when the
jobs are resumed (a finished render is re-assembled from its checkpoints without a model).

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from core.generation import RenderRequest
from core.persistence import atomic_write_text

__all__ = ["JOB_FORMAT", "MAIN_PY", "JobFileError", "export_jobs", "read_job"]

JOB_FORMAT = 1
MAIN_PY = Path(__file__).resolve().parents[1] / "main.py"


class JobFileError(ValueError):
    """A job file that cannot be read; the message is for the user."""


def export_jobs(
    jobs: Iterable[Any],
    project: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    python: str = sys.executable,
    device: str = "",
) -> list[Path]:
    """Write ``<job id>.json`` for each of ``jobs`` (``core.render_queue.Job``) and ``tasks.txt`` into
    ``out`` (created if needed). Returns the job files, in queue order.

    Raises:
        OSError: ``out`` cannot be written.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written, lines = [], []
    for job in jobs:
        path = folder / f"{job.job_id}.json"
        document = {"format": JOB_FORMAT, "job_id": job.job_id, "label": job.label,
                    "project": str(Path(project).resolve()), "request": job.request.to_json()}
        atomic_write_text(path, json.dumps(document, indent=2))
        command = [python, str(MAIN_PY), "jobs", "render", str(path.resolve())]
        if device:
            command += ["--device", device]
        lines.append(shlex.join(command))
        written.append(path)
    atomic_write_text(folder / "tasks.txt", "".join(line + "\n" for line in lines))
    return written


def read_job(path: str | os.PathLike[str]) -> tuple[dict[str, Any], RenderRequest]:
    """The job file's document and its request.

    Raises:
        JobFileError: unreadable, not a job file, or written by a newer version.
    """
    file = Path(path)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        if int(document.get("format", 0)) > JOB_FORMAT:
            raise JobFileError(f"{file.name} was written by a newer version of SkyReels Studio")
        return document, RenderRequest.from_json(document["request"])
    except JobFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise JobFileError(f"cannot read the job file {file}: {error}") from error
