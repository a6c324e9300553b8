"""The one long-lived GPU worker: runs render jobs one at a time on its own ``QThread``.

Owns :class:`RenderWorker`. The GPU is a serial resource and the pipelines should stay resident, so there
is exactly one worker per window; its backend is created on the worker thread on first use (torch loads
there, never on the GUI thread) and kept between jobs.

Flow: the main thread calls :meth:`RenderWorker.run_job` with a frozen ``RenderRequest`` and the job's
cancel token; the call is delivered to the worker thread as a queued signal. The worker calls the
optional ``prepare(request, cancel)`` (it writes input files the request names, e.g. the excerpt of a
trimmed clip), then ``backend.validate`` and ``backend.render(request, emit, cancel)``; ``emit`` runs on the worker thread and
re-emits each event as a Qt signal (queued to the main thread). Progress and latent previews (converted
to ``QImage`` on the worker thread) are coalesced: the newest of each waits in a slot and one
:attr:`updates_ready` notification stays queued until the main thread calls :meth:`take_updates`, so a
slow GUI never builds a backlog, and the latest step or picture is never lost (a time-based throttle would
drop the last step before a long pause).

:meth:`RenderWorker.reassemble_job` is the model-free path for a job another process rendered
(``main.py jobs run`` on several devices, see :mod:`app.device_run`): on the same thread, after whatever it
is running, it calls ``prepare`` and then ``backend.reassemble(request, emit, cancel)``, which joins the
finished render again from its checkpoints without loading a model, and reports
:attr:`RenderWorker.job_reassembled`. It never falls back to ``render``: a backend without ``reassemble``,
a render that is not complete, or an error all report no result and the reason.

Errors become messages for the user: :class:`core.generation.RequestInvalid`, ``ModelsMissing``,
``OutOfMemory`` and ``DiskFull`` carry their own words; anything else is prefixed with "The render
failed". A ``RenderCancelled`` (or any error after the token was set) is reported as :attr:`job_stopped`.

Threading: construct and call on the main thread; :meth:`_run` runs on the worker thread. The worker
never touches widgets or the project.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtGui import QImage

from app.workers import track_thread
from core.generation import (
    DiskFull,
    ModelsMissing,
    OutOfMemory,
    Preview,
    Progress,
    RenderCancelled,
    RenderEvent,
    RenderRequest,
    RequestInvalid,
)

_STUCK: list[tuple[QThread, QObject]] = []  # threads that outlived stop(): kept so Qt never destroys them running


def preview_to_qimage(preview: Preview) -> QImage:
    """A detached ``QImage`` of a latent preview (safe to build off the GUI thread)."""
    image = QImage(preview.rgb, preview.width, preview.height, preview.width * 3, QImage.Format.Format_RGB888)
    return image.copy()  # own the pixels: ``preview.rgb`` may go away


def user_message(error: BaseException) -> str:
    """What to tell the user about a failed render."""
    text = str(error).strip()
    if isinstance(error, RequestInvalid | ModelsMissing | OutOfMemory | DiskFull):
        return text or type(error).__name__
    if isinstance(error, MemoryError):
        return ("The computer ran out of memory for this render. Try the draft preset, a lower resolution "
                "or a shorter duration.")
    return f"The render failed: {text or type(error).__name__}"


class RenderWorker(QObject):
    """Runs one job at a time on its thread. See the module docstring for the contract.

    Args:
        backend_factory: builds the ``InferenceBackend``; called once, on the worker thread.
        prepare: ``prepare(request, cancel)``, called on the worker thread before each job reaches the
            backend; whatever it raises fails (or, once cancelled, stops) the job like a backend error.

    Signals (queued to the main thread):
        job_event(str job_id, object event): a PieceFinished or StatusMessage (every one).
        updates_ready(): newer Progress / Preview wait in :meth:`take_updates`.
        job_finished(str job_id, object result): the backend returned a ``RenderResult``.
        job_failed(str job_id, str message): the job failed; ``message`` is for the user.
        job_stopped(str job_id): the job stopped because its cancel token was set.
        unloaded(): :meth:`unload` ran (after any job that was running); the GPU memory is free.
        job_reassembled(str job_id, object result, str message): :meth:`reassemble_job` ended; ``result`` is
            the ``RenderResult``, or None with ``message`` (for the user) saying why.
    """

    job_event = Signal(str, object)
    updates_ready = Signal()
    job_finished = Signal(str, object)
    job_failed = Signal(str, str)
    job_stopped = Signal(str)
    warmed_up = Signal()
    unloaded = Signal()
    job_reassembled = Signal(str, object, str)
    _run_requested = Signal(str, object, object)
    _reassemble_requested = Signal(str, object)
    _warm_requested = Signal()
    _unload_requested = Signal()

    def __init__(self, backend_factory: Callable[[], Any],
                 prepare: Callable[[RenderRequest, threading.Event], None] | None = None) -> None:
        super().__init__()
        self._factory = backend_factory
        self._prepare = prepare
        self._backend: Any = None
        self._busy = threading.Event()
        self._thread: QThread | None = None
        self._lock = threading.Lock()
        self._progress: dict[str, Progress] = {}
        self._previews: dict[str, tuple[int, int, QImage, float]] = {}
        self._notified = False
        self.backend_created = 0  # how many times the factory ran (stays 1: the backend is kept)
        self._warm_error: Exception | None = None

    # -- main thread -----------------------------------------------------------------------------

    def start_thread(self) -> QThread:
        thread = QThread()
        thread.setObjectName("render-worker")
        self._thread = thread
        self.moveToThread(thread)
        self._run_requested.connect(self._run, Qt.ConnectionType.QueuedConnection)
        self._warm_requested.connect(self._warm, Qt.ConnectionType.QueuedConnection)
        self._unload_requested.connect(self._unload, Qt.ConnectionType.QueuedConnection)
        self._reassemble_requested.connect(self._reassemble, Qt.ConnectionType.QueuedConnection)
        track_thread(thread)
        thread.start(QThread.Priority.LowPriority)
        return thread

    @property
    def busy(self) -> bool:
        """True from :meth:`run_job` until the job's outcome signal was emitted."""
        return self._busy.is_set()

    def run_job(self, job_id: str, request: RenderRequest, cancel: threading.Event) -> None:
        """Run a job on the worker thread (returns at once). One job at a time."""
        if self._thread is None:
            self.start_thread()
        if self._busy.is_set():
            raise RuntimeError("The render worker is already running a job.")
        self._busy.set()
        self._run_requested.emit(job_id, request, cancel)

    def reassemble_job(self, job_id: str, request: RenderRequest) -> None:
        """Join a render another process finished from its checkpoints, on the worker thread (returns at
        once); never loads a model or renders. :attr:`job_reassembled` follows. May be called while the
        worker is idle or busy: it runs after the current job."""
        if self._thread is None:
            self.start_thread()
        self._reassemble_requested.emit(job_id, request)

    def warm_up(self) -> None:
        """Create the backend now, on the worker thread (imports torch there), if no job is running.

        The first import of torch holds the GIL for long stretches (~250 ms on the 2-core development
        machine), which briefly stalls the GUI thread too; warming up while the user is idle (after the
        window has painted) moves that hiccup away from the first Generate click.
        """
        if self._thread is None:
            self.start_thread()
        self._warm_requested.emit()

    @Slot()
    def _warm(self) -> None:
        try:
            if self._backend is None:
                self._backend = self._factory()
                self.backend_created += 1
            # A backend may offer to import its pipeline modules too (diffusers: another ~150 ms of GIL).
            hook = getattr(self._backend, "warm_up", None)
            if callable(hook):
                hook()
        except Exception as error:  # a job that needs the backend reports it in words
            self._warm_error = error
        self.warmed_up.emit()

    def unload(self) -> None:
        """Free the backend's loaded model (``backend.unload()``) on the worker thread, after the job
        running now (if any) ended; :attr:`unloaded` follows. The next job loads it again."""
        if self._thread is None:  # never started: nothing is loaded
            self.unloaded.emit()
            return
        self._unload_requested.emit()

    @Slot()
    def _unload(self) -> None:
        unload = getattr(self._backend, "unload", None)
        if callable(unload):
            try:
                unload()
            except Exception:  # freeing memory must never take the editor down; the next job reloads
                traceback.print_exc()
        self.unloaded.emit()

    def take_updates(self) -> tuple[dict[str, Progress], dict[str, tuple[int, int, QImage, float]]]:
        """The newest Progress and preview of each job since the last call. Previews are
        ``job_id -> (piece, step, image, t)`` with ``t`` = ``time.perf_counter()`` when the backend emitted
        it (for latency checks)."""
        with self._lock:
            progress, self._progress = self._progress, {}
            previews, self._previews = self._previews, {}
            self._notified = False
        return progress, previews

    def stop(self, timeout_ms: int = 10000) -> bool:
        """Quit the thread after the current job (cancel it first). True when the thread ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.quit()
        done = thread.wait(timeout_ms)
        if done:
            self._thread = None
        else:
            # A backend stuck in a long device call: never let Qt destroy a running QThread (it aborts
            # the process); keep both alive until the call returns and the thread ends by itself.
            _STUCK.append((thread, self))
        return done

    # -- worker thread ---------------------------------------------------------------------------

    @Slot(str, object, object)
    def _run(self, job_id: str, request: RenderRequest, cancel: threading.Event) -> None:
        try:
            if cancel.is_set():
                raise RenderCancelled("cancelled before it started")
            if self._prepare is not None:
                self._prepare(request, cancel)
            if self._backend is None:
                self._backend = self._factory()
                self.backend_created += 1
            backend = self._backend
            validate = getattr(backend, "validate", None)
            if validate is not None:
                validate(request)
            result = backend.render(request, lambda event: self._emit(job_id, event), cancel)
        except RenderCancelled:
            self._done(lambda: self.job_stopped.emit(job_id))
        except BaseException as error:  # every failure reaches the user as words, never a crash
            if cancel.is_set() and not isinstance(error, RequestInvalid):
                self._done(lambda: self.job_stopped.emit(job_id))
            else:
                error.__traceback_text__ = traceback.format_exc()  # type: ignore[attr-defined]
                message = user_message(error)
                self._done(lambda: self.job_failed.emit(job_id, message))
        else:
            if cancel.is_set():
                # The backend finished although asked to stop: the work is done, keep it.
                pass
            self._done(lambda: self.job_finished.emit(job_id, result))

    @Slot(str, object)
    def _reassemble(self, job_id: str, request: RenderRequest) -> None:
        result, message = None, ""
        try:
            cancel = threading.Event()  # nothing stops a re-assembly: it only copies packets
            if self._prepare is not None:
                self._prepare(request, cancel)  # e.g. the excerpt an extension's request names
            if self._backend is None:
                self._backend = self._factory()  # a backend loads its models on its first render, not here
                self.backend_created += 1
            reassemble = getattr(self._backend, "reassemble", None)
            if reassemble is None:
                message = "this renderer cannot join a render made elsewhere"
            else:
                result = reassemble(request, lambda event: self._emit(job_id, event), cancel)
                if result is None:
                    message = "its work folder has no complete render to join"
        except BaseException as error:  # reported in words; the job stays resumable
            error.__traceback_text__ = traceback.format_exc()  # type: ignore[attr-defined]
            text = str(error).strip() or type(error).__name__
            result, message = None, text if isinstance(error, RequestInvalid) else f"joining its pieces failed: {text}"
        self.job_reassembled.emit(job_id, result, message)

    def _done(self, emit: Callable[[], None]) -> None:
        self._busy.clear()
        emit()

    def _emit(self, job_id: str, event: RenderEvent) -> None:
        """The backend's ``emit``: runs on the worker thread."""
        if isinstance(event, Preview | Progress):
            with self._lock:
                if isinstance(event, Preview):
                    self._previews[job_id] = (event.piece, event.step, preview_to_qimage(event), time.perf_counter())
                else:
                    self._progress[job_id] = event
                notify = not self._notified
                self._notified = True
            if notify:  # otherwise a notification is still queued and the main thread takes this too
                self.updates_ready.emit()
            return
        self.job_event.emit(job_id, event)
