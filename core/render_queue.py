"""The render queue: jobs waiting for, running on, or done with the one GPU worker.

Owns: :class:`RenderQueue`, :class:`Job`, :class:`JobState`, :class:`QueueError`.

Rules:

- Order: the worker takes the first queued *preview* job in list order; when none is queued, the first
  queued final render. The user reorders with :meth:`RenderQueue.move`.
- Supersede: submitting a preview for a shot cancels that shot's older previews: queued or paused ones
  at once, a running one by setting its cancel token (it becomes ``CANCELLED`` when the worker
  acknowledges with :meth:`RenderQueue.stopped`). ``superseded_by`` names the newer job.
- Cancel and pause of a running job both set its cancel token (``Job.cancel_event``, which the worker
  hands to ``InferenceBackend.render``); the worker reports the stop with :meth:`RenderQueue.stopped`
  and the job becomes ``CANCELLED`` or ``PAUSED``. Resume puts a paused job back in the queue; the
  backend resumes from the checkpoints of finished pieces in the request's ``work_dir``, so the job
  keeps ``last_finished_piece`` for display.
- Retry puts a failed or cancelled job back in the queue.
- Hold: a job rendered outside the editor (``main.py jobs run`` on several GPUs) is *held*: it stays
  ``PAUSED`` here with :attr:`Job.held` saying where it renders, the worker never takes it, and resume,
  retry, cancel and remove refuse it until :meth:`RenderQueue.release` (which may fail it with the
  error the other process reported, or finish it with the result the editor re-assembled from its
  checkpoints). A hold is not saved: after a restart the job is an ordinary paused one, offered for resume.
- Persistence: :meth:`RenderQueue.to_json` / :meth:`RenderQueue.from_json` (saved with the project by
  :mod:`core.persistence`). On load, jobs that were queued, running or paused come back ``PAUSED`` and
  are listed by :meth:`RenderQueue.resumable` so the UI can offer to resume them: nothing starts by
  itself after a restart.

Events (:class:`core.signals.Signal`): ``job_added(job, index)``, ``job_changed(job)``,
``job_removed(job, index)``, ``job_moved(job, old_index, new_index)``.

Threading: main thread only. The worker thread only reads ``job.request`` and the cancel event it was
given; its backend events reach :meth:`RenderQueue.apply_event` after ``app`` marshals them.

Must not import: PySide6, torch, diffusers, ``app``, ``models``.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.generation import (
    PieceFinished,
    Preview,
    Progress,
    RenderEvent,
    RenderRequest,
    RenderResult,
    StatusMessage,
)
from core.project import new_id
from core.signals import Signal

QUEUE_FORMAT = 1
"""Version of the queue's own JSON layout (inside the project file)."""


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


UNFINISHED = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.PAUSED})
DONE = frozenset({JobState.FINISHED, JobState.FAILED, JobState.CANCELLED})


class QueueError(ValueError):
    """A queue operation that does not fit the job's state; the message is for the user."""


@dataclass
class Job:
    """One render: a frozen request plus its state and progress.

    Attributes:
        shot_id: the clip (or shot card) the render belongs to; previews of the same shot supersede
            each other.
        step, total_steps, piece, total_pieces: the latest :class:`core.generation.Progress`.
        last_finished_piece: index of the newest piece checkpointed (-1: none yet).
        piece_paths: files of finished pieces (playable at once).
        cancel_event: the token passed to the backend; set to stop a running job.
        held: where the job renders outside the editor ("" when it does not); see :meth:`RenderQueue.hold`.
        preview: the latest latent preview (not saved).
    """

    job_id: str
    request: RenderRequest
    shot_id: str | None = None
    is_preview: bool = False
    label: str = ""
    state: JobState = JobState.QUEUED
    step: int = 0
    total_steps: int = 0
    piece: int = 0
    total_pieces: int = 1
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    error: str = ""
    status: str = ""
    last_finished_piece: int = -1
    piece_paths: list[str] = field(default_factory=list)
    result: RenderResult | None = None
    superseded_by: str | None = None
    held: str = ""
    cancel_requested: bool = False
    pause_requested: bool = False
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    preview: Preview | None = field(default=None, repr=False, compare=False)

    @property
    def is_done(self) -> bool:
        return self.state in DONE

    @property
    def fraction(self) -> float:
        """Progress from 0 to 1 across all pieces and steps."""
        if self.state is JobState.FINISHED:
            return 1.0
        if self.total_steps <= 0:
            return 0.0
        total = self.total_pieces * self.total_steps
        return min(1.0, (self.piece * self.total_steps + self.step) / total)

    def elapsed(self, now: float) -> float:
        """Seconds since the job started (up to when it finished)."""
        if self.started is None:
            return 0.0
        return max(0.0, (self.finished if self.finished is not None else now) - self.started)

    def estimate_remaining(self, now: float) -> float | None:
        """Seconds left, extrapolated from progress so far (None before the first step)."""
        fraction = self.fraction
        if self.state is not JobState.RUNNING or fraction <= 0.0:
            return None
        elapsed = self.elapsed(now)
        return elapsed * (1.0 - fraction) / fraction

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "request": self.request.to_json(),
            "shot_id": self.shot_id,
            "is_preview": self.is_preview,
            "label": self.label,
            "state": self.state.value,
            "step": self.step,
            "total_steps": self.total_steps,
            "piece": self.piece,
            "total_pieces": self.total_pieces,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "error": self.error,
            "last_finished_piece": self.last_finished_piece,
            "piece_paths": list(self.piece_paths),
            "result": _result_to_json(self.result),
            "superseded_by": self.superseded_by,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        result = data.get("result")
        return cls(
            job_id=str(data["job_id"]),
            request=RenderRequest.from_json(data["request"]),
            shot_id=data.get("shot_id"),
            is_preview=bool(data.get("is_preview", False)),
            label=str(data.get("label", "")),
            state=JobState(data.get("state", "queued")),
            step=int(data.get("step", 0)),
            total_steps=int(data.get("total_steps", 0)),
            piece=int(data.get("piece", 0)),
            total_pieces=int(data.get("total_pieces", 1)),
            created=float(data.get("created", 0.0)),
            started=data.get("started"),
            finished=data.get("finished"),
            error=str(data.get("error", "")),
            last_finished_piece=int(data.get("last_finished_piece", -1)),
            piece_paths=[str(p) for p in data.get("piece_paths", [])],
            result=RenderResult(**result) if result else None,
            superseded_by=data.get("superseded_by"),
        )


def _result_to_json(result: RenderResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "output_path": result.output_path,
        "num_frames": result.num_frames,
        "fps": result.fps,
        "width": result.width,
        "height": result.height,
        "has_audio": result.has_audio,
        "seconds": result.seconds,
    }


class RenderQueue:
    """The ordered list of render jobs and the rules for what runs next. Main thread only.

    Args:
        clock: returns the wall-clock time in seconds (injected so tests control time).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._jobs: list[Job] = []
        self.job_added = Signal("job_added")
        self.job_changed = Signal("job_changed")
        self.job_removed = Signal("job_removed")
        self.job_moved = Signal("job_moved")

    # -- reading ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(tuple(self._jobs))

    @property
    def jobs(self) -> Sequence[Job]:
        """Jobs in queue order; read it, never mutate it."""
        return self._jobs

    def job(self, job_id: str) -> Job:
        for job in self._jobs:
            if job.job_id == job_id:
                return job
        raise QueueError("That render job is no longer in the queue.")

    def index(self, job_id: str) -> int:
        return self._jobs.index(self.job(job_id))

    def running(self) -> Job | None:
        return next((j for j in self._jobs if j.state is JobState.RUNNING), None)

    def next_job(self) -> Job | None:
        """The job the worker should run next (previews first, then queue order); None when idle.

        Does not change anything; call :meth:`start` to run it.
        """
        queued = [j for j in self._jobs if j.state is JobState.QUEUED and not j.held]
        return next((j for j in queued if j.is_preview), queued[0] if queued else None)

    def resumable(self) -> list[Job]:
        """Paused jobs (after a restart: every job that had not finished), to offer for resume."""
        return [j for j in self._jobs if j.state is JobState.PAUSED and not j.held]

    def jobs_for(self, shot_id: str) -> list[Job]:
        return [j for j in self._jobs if j.shot_id == shot_id]

    def now(self) -> float:
        return self._clock()

    # -- user requests ---------------------------------------------------------------------------

    def submit(
        self,
        request: RenderRequest,
        shot_id: str | None = None,
        preview: bool = False,
        label: str = "",
        job_id: str | None = None,
    ) -> Job:
        """Queue a render (at the end). A preview supersedes older previews of the same shot."""
        job = Job(
            job_id=job_id or new_id(),
            request=request,
            shot_id=shot_id,
            is_preview=preview,
            label=label,
            created=self._clock(),
        )
        if any(j.job_id == job.job_id for j in self._jobs):
            raise QueueError("A job with that id is already in the queue.")
        if preview and shot_id is not None:
            for old in self._jobs:
                if old.is_preview and old.shot_id == shot_id and old.state in UNFINISHED and not old.held:
                    old.superseded_by = job.job_id
                    self._request_cancel(old, reason="Replaced by a newer preview.")
        self._jobs.append(job)
        self.job_added.emit(job, len(self._jobs) - 1)
        return job

    def cancel(self, job_id: str) -> None:
        """Cancel a job. A running one is asked to stop and becomes CANCELLED when the worker says so."""
        job = self._not_held(job_id)
        if job.is_done:
            raise QueueError(f"The job has already {job.state.value}.")
        self._request_cancel(job, reason="")

    def cancel_all(self) -> None:
        """Cancel every unfinished job (closing the window cancels running work but keeps the queue
        through :meth:`to_json`, which turns running jobs into resumable ones)."""
        for job in self._jobs:
            if job.state in UNFINISHED and not job.held:
                self._request_cancel(job, reason="")

    def pause(self, job_id: str) -> None:
        """Hold a queued job, or stop a running one at its next step to resume it later."""
        job = self.job(job_id)
        if job.state is JobState.QUEUED:
            self._set(job, state=JobState.PAUSED)
        elif job.state is JobState.RUNNING:
            if not job.cancel_requested:
                job.pause_requested = True
                job.cancel_event.set()
                self.job_changed.emit(job)
        elif job.state is not JobState.PAUSED:
            raise QueueError(f"Only waiting or running jobs can be paused; this one has {job.state.value}.")

    def resume(self, job_id: str) -> None:
        """Put a paused job back in the queue (it continues from its last finished piece)."""
        job = self._not_held(job_id)
        if job.state is not JobState.PAUSED:
            raise QueueError(f"Only paused jobs can be resumed; this one is {job.state.value}.")
        self._set(job, state=JobState.QUEUED, error="")

    def retry(self, job_id: str) -> None:
        """Queue a failed or cancelled job again."""
        job = self._not_held(job_id)
        if job.state not in (JobState.FAILED, JobState.CANCELLED):
            raise QueueError(f"Only failed or cancelled jobs can be retried; this one is {job.state.value}.")
        job.cancel_event = threading.Event()
        self._set(
            job,
            state=JobState.QUEUED,
            error="",
            step=0,
            total_steps=0,
            piece=0,
            started=None,
            finished=None,
            superseded_by=None,
            cancel_requested=False,
            pause_requested=False,
        )

    def move(self, job_id: str, new_index: int) -> None:
        """Reorder: put the job at ``new_index`` (clamped to the list)."""
        old_index = self.index(job_id)
        new_index = max(0, min(new_index, len(self._jobs) - 1))
        if new_index == old_index:
            return
        job = self._jobs.pop(old_index)
        self._jobs.insert(new_index, job)
        self.job_moved.emit(job, old_index, new_index)

    def remove(self, job_id: str) -> Job:
        """Take a job out of the list (a running job must be stopped first)."""
        job = self._not_held(job_id)
        if job.state is JobState.RUNNING:
            raise QueueError("Cancel the running job before removing it.")
        index = self._jobs.index(job)
        del self._jobs[index]
        self.job_removed.emit(job, index)
        return job

    def hold(self, job_id: str, where: str) -> None:
        """Mark an unfinished job as rendering outside the editor (``where`` says so, e.g. "Rendering on
        cuda:1"; call again to update it). A queued job is paused; a running one is asked to pause (it
        becomes ``PAUSED`` when the worker acknowledges). Nothing here starts it until :meth:`release`."""
        job = self.job(job_id)
        if job.state not in UNFINISHED:
            raise QueueError(f"Only unfinished jobs can be rendered elsewhere; this one has {job.state.value}.")
        if job.state is JobState.QUEUED:
            self._set(job, state=JobState.PAUSED, held=where or "Rendering elsewhere")
        else:
            if job.state is JobState.RUNNING:
                self.pause(job_id)
            self._set(job, held=where or "Rendering elsewhere")

    def release(self, job_id: str, error: str = "", *, result: RenderResult | None = None, note: str = "") -> None:
        """End a hold: the job is an ordinary paused one again (with ``note``, when given, as the line the
        queue shows under it, e.g. why it did not land; resume clears it), ``FAILED`` with ``error`` (what
        the other process reported, shown to the user as is), or ``FINISHED`` with ``result`` (what the
        other process rendered)."""
        job = self.job(job_id)
        if not job.held:
            return
        if job.state is not JobState.PAUSED:
            self._set(job, held="")
        elif error:
            self._set(job, held="", state=JobState.FAILED, error=error, finished=self._clock())
        elif result is not None:
            self._set(job, held="", state=JobState.FINISHED, result=result, error="", finished=self._clock(),
                      step=job.total_steps, piece=max(job.total_pieces - 1, 0))
        elif note:
            self._set(job, held="", error=note)
        else:
            self._set(job, held="")

    def clear_done(self) -> None:
        """Remove finished, failed and cancelled jobs."""
        for job in [j for j in self._jobs if j.is_done]:
            self.remove(job.job_id)

    # -- worker side (called on the main thread with marshalled events) ---------------------------

    def start(self, job_id: str) -> threading.Event:
        """Mark a queued job RUNNING; returns the cancel token to pass to the backend."""
        job = self._not_held(job_id)
        if job.state is not JobState.QUEUED:
            raise QueueError(f"Only queued jobs can start; this one is {job.state.value}.")
        running = self.running()
        if running is not None:
            raise QueueError(f"“{running.label or running.job_id}” is still running.")
        job.cancel_event = threading.Event()
        self._set(
            job,
            state=JobState.RUNNING,
            started=self._clock(),
            finished=None,
            error="",
            cancel_requested=False,
            pause_requested=False,
        )
        return job.cancel_event

    def apply_event(self, job_id: str, event: RenderEvent) -> None:
        """Record a backend event on its job (ignored once the job is done: late events are harmless)."""
        job = self.job(job_id)
        if job.is_done:
            return
        if isinstance(event, Progress):
            self._set(
                job,
                step=event.step,
                total_steps=event.total_steps,
                piece=event.piece,
                total_pieces=event.total_pieces,
                status=event.message or job.status,
            )
        elif isinstance(event, PieceFinished):
            job.piece_paths.append(event.path)
            self._set(job, last_finished_piece=event.piece, total_pieces=event.total_pieces)
        elif isinstance(event, StatusMessage):
            self._set(job, status=event.text)
        elif isinstance(event, Preview):
            job.preview = event
            self.job_changed.emit(job)

    def finish(self, job_id: str, result: RenderResult) -> None:
        """The backend returned: the job is FINISHED with its result."""
        job = self.job(job_id)
        if job.state is not JobState.RUNNING:
            raise QueueError(f"Only running jobs can finish; this one is {job.state.value}.")
        self._set(
            job,
            state=JobState.FINISHED,
            result=result,
            finished=self._clock(),
            step=job.total_steps,
            piece=max(job.total_pieces - 1, 0),
        )

    def fail(self, job_id: str, message: str) -> None:
        """The backend raised: the job is FAILED with ``message`` (shown to the user as is)."""
        job = self.job(job_id)
        if job.state is not JobState.RUNNING:
            raise QueueError(f"Only running jobs can fail; this one is {job.state.value}.")
        self._set(job, state=JobState.FAILED, error=message or "The render failed.", finished=self._clock())

    def stopped(self, job_id: str) -> None:
        """The worker acknowledged a stop (the backend raised RenderCancelled): CANCELLED or PAUSED."""
        job = self.job(job_id)
        if job.state is not JobState.RUNNING:
            return
        if job.pause_requested and not job.cancel_requested:
            self._set(job, state=JobState.PAUSED, pause_requested=False)
        else:
            self._set(job, state=JobState.CANCELLED, finished=self._clock())

    # -- persistence -----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The queue as JSON data. Running jobs are saved as PAUSED (resumable after a restart)."""
        jobs = []
        for job in self._jobs:
            data = job.to_json()
            if job.state is JobState.RUNNING:
                data["state"] = JobState.PAUSED.value
            jobs.append(data)
        return {"format": QUEUE_FORMAT, "jobs": jobs}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, clock: Callable[[], float] = time.time) -> RenderQueue:
        """Rebuild a queue; unfinished jobs come back PAUSED so nothing starts without the user."""
        queue = cls(clock)
        for item in (data or {}).get("jobs", []):
            job = Job.from_json(item)
            if job.state in UNFINISHED:
                job.state = JobState.PAUSED
            queue._jobs.append(job)
        return queue

    # -- helpers ---------------------------------------------------------------------------------

    def _not_held(self, job_id: str) -> Job:
        job = self.job(job_id)
        if job.held:
            raise QueueError(f"“{job.label or job.job_id}” is rendering outside the editor ({job.held}); "
                             "cancel that render first.")
        return job

    def _request_cancel(self, job: Job, reason: str) -> None:
        if job.state is JobState.RUNNING:
            job.cancel_event.set()
            self._set(job, cancel_requested=True, error=reason)
        else:
            self._set(job, state=JobState.CANCELLED, error=reason, finished=self._clock())

    def _set(self, job: Job, **changes: Any) -> None:
        changed = False
        for name, value in changes.items():
            if getattr(job, name) != value:
                setattr(job, name, value)
                changed = True
        if changed:
            self.job_changed.emit(job)
