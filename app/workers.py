"""Background work for the editor: short I/O jobs on a ``QThreadPool`` and one export thread.

Owns :class:`Task` (a ``QRunnable`` that runs a plain function and reports back through Qt signals),
:class:`WorkerPool` (a ``QThreadPool`` that remembers whether it is idle, so tests can fail when work is
left running), and :class:`ExportWorker` (a ``QObject`` living on its own ``QThread`` that renders the
timeline to a file with progress and cancel).

Threading contract: the functions run here never touch widgets, ``QApplication`` or cursors. They get
plain data (paths, numbers, frozen snapshots) and return plain data (numpy arrays, ``QImage``, which is
safe to build off the GUI thread). Results reach the main thread as queued signal deliveries.
"""

from __future__ import annotations

import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThread, QThreadPool, Signal, Slot
from PySide6.QtWidgets import QProgressDialog, QWidget

# Pools and threads the editor created (weak: a closed window's pool disappears), for leak checks in tests.
_LIVE_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def live_pools() -> list[WorkerPool]:
    """Editor worker pools that still exist."""
    pools = []
    for pool in list(_LIVE_POOLS):
        try:
            pool.activeThreadCount()
        except RuntimeError:  # the C++ object is gone
            continue
        pools.append(pool)
    return pools


class _TaskSignals(QObject):
    """Signals of one :class:`Task` (QRunnable is not a QObject). Lives on the main thread."""

    finished = Signal(object)  # the function's return value
    failed = Signal(object)  # the exception


class Task(QRunnable):
    """Run ``fn(*args)`` on a pool thread; emit ``signals.finished(result)`` or ``signals.failed(exc)``."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.signals = _TaskSignals()
        self._fn, self._args = fn, args
        self.cancel = threading.Event()

    def run(self) -> None:
        if self.cancel.is_set():
            return
        try:
            result = self._fn(*self._args)
        except Exception as exc:  # reported to the main thread, which shows it
            exc.__traceback_text__ = traceback.format_exc()  # type: ignore[attr-defined]
            self.signals.failed.emit(exc)
        else:
            self.signals.finished.emit(result)


class WorkerPool(QThreadPool):
    """The editor's pool for probing, thumbnails and waveforms (a few threads)."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 2) -> None:
        super().__init__(parent)
        self.setMaxThreadCount(max_threads)
        self._tasks: set[Task] = set()
        _LIVE_POOLS.add(self)

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> Task:
        """Run ``fn(*args)`` in the pool; call ``on_done(result)`` / ``on_error(exc)`` on the main thread."""
        task = Task(fn, *args)
        # Keep the Python wrapper (and so its signals object) alive until the callback ran.
        self._tasks.add(task)

        def _done(result: Any) -> None:
            self._tasks.discard(task)
            if on_done is not None:
                on_done(result)

        def _failed(exc: BaseException) -> None:
            self._tasks.discard(task)
            if on_error is not None:
                on_error(exc)

        task.signals.finished.connect(_done)
        task.signals.failed.connect(_failed)
        self.start(task)
        return task

    def pending(self) -> int:
        """Tasks submitted whose result has not reached the main thread yet."""
        return len(self._tasks)

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel queued tasks and wait for running ones (call when the window closes)."""
        for task in list(self._tasks):
            task.cancel.set()
        self.clear()
        done = self.waitForDone(timeout_ms)
        self._tasks.clear()
        return done


# Threads the editor starts (export, render worker), so tests can check none is left running.
_LIVE_THREADS: weakref.WeakSet[QThread] = weakref.WeakSet()


def track_thread(thread: QThread) -> None:
    """Register an editor-owned thread for :func:`live_threads`."""
    _LIVE_THREADS.add(thread)


def live_threads() -> list[QThread]:
    """Editor-owned ``QThread`` objects that are still running (for leak checks in tests)."""
    out = []
    for thread in list(_LIVE_THREADS):
        try:
            if thread.isRunning():
                out.append(thread)
        except RuntimeError:  # the C++ object is gone
            continue
    return out


def start_worker_thread(worker: Any, name: str) -> QThread:
    """Move a one-job worker (a ``run`` slot; ``finished``, ``failed`` and ``cancelled`` signals) to a new
    low-priority thread named ``name`` and start it; the thread quits when the job ends."""
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    # quit() is thread-safe: call it directly from the worker thread as it finishes, so a main-thread
    # slot that waits for the thread never waits for a queued quit behind itself.
    for signal in (worker.finished, worker.failed, worker.cancelled):
        signal.connect(thread.quit, Qt.ConnectionType.DirectConnection)
    track_thread(thread)
    thread.start(QThread.Priority.LowPriority)
    return thread


def cancellable_progress(
    parent: QWidget, title: str, text: str, maximum: int, cancel: threading.Event
) -> QProgressDialog:
    """A window-modal progress dialog at 0 of ``maximum`` whose Cancel sets ``cancel`` (not a queued slot
    on the worker: its thread is busy with the job, so the job checks the event as it goes)."""
    dialog = QProgressDialog(text, "Cancel", 0, maximum, parent)
    dialog.setWindowTitle(title)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(0)
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.setValue(0)
    dialog.canceled.connect(cancel.set)
    return dialog


class ExportWorker(QObject):
    """Renders the timeline to a file on its own ``QThread``.

    ``job`` is a callable ``job(progress, cancel) -> path`` built on the main thread from a frozen
    snapshot of the project, so the worker never reads the project being edited. ``progress(done,
    total)`` may be called from the worker thread; it is re-emitted as :attr:`progress_changed` only
    when the percentage moves.

    Signals (delivered to the main thread): ``progress_changed(int done, int total)``,
    ``finished(str path)``, ``failed(str message)``, ``cancelled()``.
    """

    progress_changed = Signal(int, int)
    finished = Signal(str)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(
        self,
        job: Callable[[Callable[[int, int], None], threading.Event], Any],
        cancelled_types: tuple[type[BaseException], ...] = (),
    ) -> None:
        super().__init__()
        self._job = job
        self._cancelled_types = cancelled_types
        self.cancel_event = threading.Event()
        self._last_percent = -1
        self.thread: QThread | None = None

    def start_thread(self) -> QThread:
        self.thread = start_worker_thread(self, "export")
        return self.thread

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout_ms: int = 10000) -> bool:
        if self.thread is None:
            return True
        return self.thread.wait(timeout_ms)

    def _progress(self, done: int, total: int) -> None:
        percent = int(100 * done / total) if total else 0
        if percent != self._last_percent:
            self._last_percent = percent
            self.progress_changed.emit(int(done), int(total))

    @Slot()
    def run(self) -> None:
        try:
            path = self._job(self._progress, self.cancel_event)
        except Exception as exc:
            if self.cancel_event.is_set() or isinstance(exc, self._cancelled_types):
                self.cancelled.emit()
            else:
                self.failed.emit(str(exc) or type(exc).__name__)
        else:
            if self.cancel_event.is_set():
                self.cancelled.emit()
            else:
                self.finished.emit(str(path))
