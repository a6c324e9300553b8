"""Generate ▸ Render Waiting Jobs on All GPUs…: the editor's waiting jobs rendered by ``main.py jobs run``.

Owns :class:`DeviceRunDialog` (devices as checkboxes, the number of waiting jobs), :class:`DeviceRun`
(one ``jobs run --progress-json`` subprocess on behalf of the editor) and :class:`DeviceRunBar` (its
progress and Cancel, at the top of the render queue panel).

The flow, all on the main thread (a ``QProcess`` reports through signals; nothing blocks the GUI):

1. The project is saved (Save As for an untitled one): the subprocess reads the saved file.
2. The chosen jobs are *held* (:meth:`core.render_queue.RenderQueue.hold`): paused here, with where they
   render as their state; a job the editor was rendering is paused at its next step. While the run lasts,
   the editor's own worker starts nothing, and it unloads its model (it would share a GPU).
3. When the worker has let go, ``main.py jobs run PROJECT --devices … --jobs … --progress-json`` starts.
   Its JSON lines move the jobs' progress bars and fill the bar above the queue; stderr is kept (the tail)
   for the message if it crashes.
4. Each job lands as soon as its device finished it (``job_finished``), while the others still render:
   :meth:`app.render_controller.RenderController.land_rendered_elsewhere` has the editor's worker join it
   from its checkpoints (``complete.json``) with ``backend.reassemble``, which never loads a model, then
   releases it ``FINISHED`` and lands it as one undoable ``AddRenderedClip``. A job that cannot be joined is
   released paused with the reason under it (resuming it renders the rest here, after the run). The bar
   counts the landed jobs.
5. When the run ends, the other jobs are released: those that failed become ``FAILED`` with the reason;
   the rest stay paused, resumable from their finished pieces (Cancel, a crash); landed jobs stay landed,
   and one still being joined lands when it is. Closing the editor meanwhile stops the run the same way:
   the saved project has the unlanded jobs paused, and reopening it offers to resume them.

Cancel sends SIGTERM; ``jobs run`` stops its worker processes and exits with 130 (after 5 s it is killed,
and its workers end with it). On Windows ``QProcess.terminate`` cannot stop a console program, so the
kill follows at once there.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.generation import PieceFinished, Progress
from core.render_devices import RenderDevice
from core.render_farm import MAIN_PY
from core.render_queue import Job, JobState, QueueError

STDERR_TAIL = 4000  # characters of the subprocess's stderr kept for a crash message
KILL_AFTER_MS = 5000


def jobs_run_command(project: str, devices: Sequence[str], job_ids: Sequence[str]) -> list[str]:
    """The command line of the render on several devices (tests replace it on the ``RenderUi``)."""
    return [sys.executable, str(MAIN_PY), "jobs", "run", project, "--devices", ",".join(devices),
            "--jobs", ",".join(job_ids), "--progress-json"]


def subprocess_environment() -> QProcessEnvironment:
    """The editor's environment, with CUDA numbering its GPUs in PCI bus order unless the user chose an
    order: the devices offered are numbered from ``nvidia-smi``, which lists them in that order, and
    CUDA's own default (fastest first) could swap two different cards of a mixed machine."""
    environment = QProcessEnvironment.systemEnvironment()
    if not environment.contains("CUDA_DEVICE_ORDER"):
        environment.insert("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return environment


def waiting_jobs(queue: Any) -> list[Job]:
    """What the run takes: queued and paused jobs, and the one the editor is rendering (it is paused)."""
    return [job for job in queue.jobs if job.state in (JobState.QUEUED, JobState.PAUSED, JobState.RUNNING)
            and not job.held and not job.cancel_requested]


class DeviceRunDialog(QDialog):
    """Pick the devices for the waiting jobs. ``chosen_devices()`` after ``accepted``.

    Args:
        devices: what :func:`core.render_devices.find_render_devices` found.
        jobs: the waiting jobs (see :func:`waiting_jobs`).
        save_note: a sentence about saving first ("" when the project is saved and unchanged).
    """

    def __init__(self, devices: Sequence[RenderDevice], jobs: Sequence[Job], save_note: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("deviceRunDialog")
        self.setWindowTitle("Render Waiting Jobs on All GPUs")
        self.setMinimumWidth(520)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Devices (one render process each, keeping its model loaded):"))
        self.device_list = QListWidget()
        self.device_list.setObjectName("deviceRunDevices")
        for device in devices:
            item = QListWidgetItem(device.label)
            item.setData(Qt.ItemDataRole.UserRole, device.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.device_list.addItem(item)
        self.device_list.setMaximumHeight(24 * max(2, min(len(devices), 8)) + 8)
        self.device_list.itemChanged.connect(lambda *args: self._update())
        layout.addWidget(self.device_list)
        running = sum(job.state is JobState.RUNNING for job in jobs)
        names = ", ".join(f"“{job.label or job.job_id}”" for job in jobs[:3]) + ("…" if len(jobs) > 3 else "")
        text = f"<b>{len(jobs)} waiting job{'s' if len(jobs) != 1 else ''}</b>: {names}"
        if running:
            text += ("<br>The job rendering here now is paused and continues on the devices from its last "
                     "finished piece.")
        self.jobs_label = QLabel(text)
        self.jobs_label.setObjectName("deviceRunJobs")
        self.jobs_label.setWordWrap(True)
        layout.addWidget(self.jobs_label)
        info = QLabel("The editor's own renderer unloads its model and waits while they run. Each render lands "
                      "on the timeline as soon as its device finishes it; Cancel keeps every finished piece.")
        info.setWordWrap(True)
        info.setStyleSheet("color:#8d93a0;")
        layout.addWidget(info)
        self.save_label = QLabel(save_note)
        self.save_label.setObjectName("deviceRunSave")
        self.save_label.setWordWrap(True)
        self.save_label.setStyleSheet("color:#e8b53a;")
        self.save_label.setVisible(bool(save_note))
        layout.addWidget(self.save_label)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._save_first = bool(save_note)
        self._update()

    def chosen_devices(self) -> list[str]:
        items = (self.device_list.item(row) for row in range(self.device_list.count()))
        return [str(item.data(Qt.ItemDataRole.UserRole)) for item in items
                if item.checkState() == Qt.CheckState.Checked]

    def set_checked(self, row: int, checked: bool) -> None:
        self.device_list.item(row).setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def _update(self) -> None:
        count = len(self.chosen_devices())
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(count > 0)
        noun = "Device" if count == 1 else "Devices"
        ok.setText(("Save and Render" if self._save_first else "Render") + f" on {count} {noun}")


class DeviceRun(QObject):
    """One ``main.py jobs run`` subprocess rendering held jobs of the controller's queue. Main thread only.

    Args:
        controller: the :class:`app.render_controller.RenderController` (its queue, worker and messages).
        project: the saved project file the subprocess reads.
        devices: ``--devices`` (names as :class:`core.render_devices.RenderDevice` has them).
        job_ids: the jobs to render (held from :meth:`start` until each lands or the run ends).
        command: ``command(project, devices, job_ids) -> argv`` (default :func:`jobs_run_command`).
        testing: no modal message box on a crash (tests read :attr:`error_text`).

    Signals:
        status_changed(str): a one-line summary of the run (for the panel's bar and the status bar).
        ended(str outcome): "done", "cancelled" or "crashed", after the jobs were released.
    """

    status_changed = Signal(str)
    ended = Signal(str)

    def __init__(self, controller: Any, project: str, devices: Sequence[str], job_ids: Sequence[str],
                 command: Callable[[str, Sequence[str], Sequence[str]], list[str]] | None = None,
                 testing: bool = False) -> None:
        super().__init__(controller)
        self.controller = controller
        self.queue = controller.queue
        self.project = project
        self.devices = list(devices)
        self.job_ids = list(job_ids)
        self._command = command or jobs_run_command
        self.testing = testing
        self.process: QProcess | None = None
        self.finished_jobs: set[str] = set()
        self.landed_jobs: set[str] = set()  # finished jobs now on the timeline (or in the bin)
        self.unlanded_jobs: dict[str, str] = {}  # finished jobs that could not land -> why
        self.failed_jobs: dict[str, str] = {}
        self.rendering: dict[str, str] = {}  # job id -> its latest progress, for the summary
        self.stderr_tail = ""
        self.error_text = ""
        self.outcome = ""
        self.status = ""
        self._stdout_rest = b""
        self._done_seen = False
        self._cancelled = False
        self._ended = False
        self._kill_timer = QTimer(self, singleShot=True, interval=KILL_AFTER_MS)
        self._kill_timer.timeout.connect(self._on_kill_timer_timeout)
        controller.job_landed.connect(self._on_controller_job_landed)
        controller.landing_failed.connect(self._on_controller_landing_failed)

    # -- starting -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Hold the jobs, let the editor's worker go (pause, unload), then start the subprocess."""
        for job_id in self.job_ids:
            self.queue.hold(job_id, "Waiting for the devices")
        self.controller.device_run = self
        self.controller.save_queue()
        self._set_status(f"Preparing {len(self.job_ids)} job(s) for {len(self.devices)} device(s)…")
        worker = self.controller.worker
        worker.unloaded.connect(self._on_worker_unloaded, Qt.ConnectionType.QueuedConnection)
        worker.unload()  # after the paused job stopped: the worker thread runs one thing at a time

    def _on_worker_unloaded(self) -> None:
        with contextlib.suppress(RuntimeError, TypeError):
            self.controller.worker.unloaded.disconnect(self._on_worker_unloaded)
        if self._cancelled or self._ended:
            return
        # A job the editor was rendering may have finished instead of pausing: it is not sent.
        ready = []
        for job_id in self.job_ids:
            job = self._job(job_id)
            if job is not None and job.state is JobState.PAUSED and job.held:
                ready.append(job_id)
            elif job is not None:
                self.queue.release(job_id)
        self.job_ids = ready
        if not ready:
            self._end("done")
            return
        argv = self._command(self.project, self.devices, ready)
        process = QProcess(self)
        process.setObjectName("device-run")
        process.readyReadStandardOutput.connect(self._on_process_stdout)
        process.readyReadStandardError.connect(self._on_process_stderr)
        process.finished.connect(self._on_process_finished)
        process.errorOccurred.connect(self._on_process_error)
        process.setProcessEnvironment(subprocess_environment())
        self.process = process
        for job_id in ready:
            self.queue.hold(job_id, "Waiting for a device")
        self._set_status(f"Starting {len(self.devices)} render process(es)…")
        process.start(argv[0], argv[1:])

    # -- stopping -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return not self._ended

    def cancel(self) -> None:
        """Stop the run (SIGTERM, then a kill after 5 s). The jobs stay paused, resumable from their pieces."""
        if self._ended or self._cancelled:
            return
        self._cancelled = True
        process = self.process
        if process is None or process.state() == QProcess.ProcessState.NotRunning:
            self._end("cancelled")
            return
        self._set_status("Cancelling: stopping the render processes…")
        if sys.platform == "win32":
            process.kill()  # terminate() only posts WM_CLOSE, which a console program never reads
        else:
            process.terminate()
            self._kill_timer.start()

    def stop(self, timeout_ms: int = 10000) -> None:
        """Cancel and wait for the subprocess to end (closing the window, switching projects)."""
        self.cancel()
        process = self.process
        running = process is not None and process.state() != QProcess.ProcessState.NotRunning
        if running and not process.waitForFinished(timeout_ms):
            process.kill()
            process.waitForFinished(2000)
        if not self._ended:
            self._end("cancelled")

    def _on_kill_timer_timeout(self) -> None:
        if self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning:
            self.process.kill()

    # -- the subprocess's output --------------------------------------------------------------------

    def _on_process_stdout(self) -> None:
        if self.process is None:
            return
        data = self._stdout_rest + bytes(self.process.readAllStandardOutput().data())
        *lines, self._stdout_rest = data.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours (jobs run keeps stdout for JSON, but be lenient)
            if isinstance(event, dict):
                self.apply(event)

    def _on_process_stderr(self) -> None:
        if self.process is None:
            return
        text = bytes(self.process.readAllStandardError().data()).decode("utf-8", "replace")
        self.stderr_tail = (self.stderr_tail + text)[-STDERR_TAIL:]

    def apply(self, event: dict[str, Any]) -> None:
        """One ``--progress-json`` event: update the held job and the summary."""
        kind = event.get("event")
        job_id = str(event.get("job_id", ""))
        device = str(event.get("device", "")) or "a device"
        job = self._job(job_id) if job_id else None
        label = f"“{job.label or job.job_id}”" if job is not None else job_id
        if kind == "done":
            self._done_seen = True
            return
        if job is None or job_id not in self.job_ids:
            return
        with contextlib.suppress(QueueError):
            if kind == "job_started":
                self.queue.hold(job_id, f"Rendering on {device}")
                self.rendering[job_id] = f"{label} on {device}: starting"
            elif kind == "progress":
                progress = Progress(int(event["step"]), int(event["total_steps"]), int(event.get("piece", 0)),
                                    int(event.get("total_pieces", 1)))
                self.queue.apply_event(job_id, progress)
                pieces = f"piece {progress.piece + 1}/{progress.total_pieces} " if progress.total_pieces > 1 else ""
                self.rendering[job_id] = f"{label} on {device}: {pieces}step {progress.step}/{progress.total_steps}"
            elif kind == "piece_finished":
                self.queue.apply_event(job_id, PieceFinished(int(event["piece"]), int(event["total_pieces"]),
                                                             str(event["path"]), int(event.get("frames", 0))))
                self.controller.piece_ready.emit(job_id, str(event["path"]))
            elif kind == "job_finished":
                self.finished_jobs.add(job_id)
                self.rendering.pop(job_id, None)
                self.queue.hold(job_id, f"Rendered on {device}; landing on the timeline")
                self.controller.land_rendered_elsewhere(job_id)  # joined without a model, then landed
            elif kind == "job_failed":
                error = f"Failed on {device}: {event.get('error') or 'no reason given'}"
                self.failed_jobs[job_id] = error
                self.rendering.pop(job_id, None)
                self.queue.hold(job_id, error)
                self.controller.message.emit(f"{label} failed on {device}: {event.get('error', '')}")
        self._set_status(self._summary())

    def _summary(self) -> str:
        done = len(self.finished_jobs) + len(self.failed_jobs)
        head = f"{done} of {len(self.job_ids)} job(s) done on {len(self.devices)} device(s)"
        if self.landed_jobs:
            head += f", {len(self.landed_jobs)} on the timeline"
        return " · ".join([head, *self.rendering.values()])

    def _on_controller_job_landed(self, job_id: str, clip_id: str) -> None:
        if job_id in self.finished_jobs:
            self.landed_jobs.add(job_id)
            if not self._ended:
                self._set_status(self._summary())

    def _on_controller_landing_failed(self, job_id: str, message: str) -> None:
        if job_id in self.finished_jobs:
            self.unlanded_jobs[job_id] = message
            if not self._ended:
                self._set_status(self._summary())

    def _on_process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and not self._ended:
            program = self.process.program() if self.process is not None else "?"
            self.stderr_tail += f"\ncannot start {program}: {self.process.errorString() if self.process else ''}"
            self._end("crashed", exit_text="it could not be started")

    def _on_process_finished(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        self._on_process_stdout()
        if self._stdout_rest.strip():
            self._stdout_rest += b"\n"
            self._on_process_stdout()
        self._on_process_stderr()
        if self._ended:
            return
        if self._cancelled:
            self._end("cancelled")
        elif self._done_seen and status == QProcess.ExitStatus.NormalExit:
            self._end("done")
        else:
            how = "it crashed" if status == QProcess.ExitStatus.CrashExit else f"exit code {exit_code}"
            self._end("crashed", exit_text=how)

    # -- ending -------------------------------------------------------------------------------------

    def _end(self, outcome: str, exit_text: str = "") -> None:
        """Release the jobs that did not land (failed: FAILED; the rest paused) and report. Landed jobs
        stay landed; one the editor is still joining keeps its hold until it lands."""
        if self._ended:
            return
        self._ended = True
        self.outcome = outcome
        self._kill_timer.stop()
        landed, landing, unlanded, failed, paused = [], [], [], [], []
        for job_id in self.job_ids:
            job = self._job(job_id)
            if job is None:
                continue
            if job_id in self.landed_jobs:
                landed.append(job_id)
                continue
            if job.state is JobState.FINISHED:  # joined: its file is being read, or could not be
                (unlanded if job_id in self.unlanded_jobs else landing).append(job_id)
                continue
            if self.controller.joining(job_id) and not self.controller.closed:
                landing.append(job_id)  # keeps its hold until joined: see land_rendered_elsewhere
                continue
            with contextlib.suppress(QueueError):
                if job_id in self.failed_jobs:
                    self.queue.release(job_id, error=self.failed_jobs[job_id])
                    failed.append(job_id)
                    continue
                self.queue.release(job_id)
                if job_id in self.unlanded_jobs:
                    unlanded.append(job_id)
                elif job.state is JobState.PAUSED:
                    paused.append(job_id)
        summary = self._end_message(outcome, landed, landing, unlanded, failed, paused, exit_text)
        self._set_status(summary)
        if not self.controller.closed:
            self.controller.message.emit(summary)
        self.controller.device_run_ended()
        if outcome == "crashed":
            tail = self.stderr_tail.strip()[-1500:] or "(it wrote nothing on stderr)"
            self.error_text = f"{summary}\n\nThe end of its error output:\n{tail}"
            if not self.testing and not self.controller.closed:
                box = QMessageBox(QMessageBox.Icon.Warning, "Render on several devices stopped", summary,
                                  QMessageBox.StandardButton.Ok, self.controller.window)
                box.setDetailedText(self.stderr_tail.strip() or "(no error output)")
                box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
                box.open()
        self.ended.emit(outcome)

    @staticmethod
    def _end_message(outcome: str, landed: list[str], landing: list[str], unlanded: list[str], failed: list[str],
                     paused: list[str], exit_text: str) -> str:
        parts = []
        if outcome == "crashed":
            parts.append(f"The render on several devices stopped unexpectedly ({exit_text}).")
        elif outcome == "cancelled":
            parts.append("The render on several devices was cancelled.")
        else:
            parts.append("The render on several devices is done.")
        if landed:
            parts.append(f"{len(landed)} job(s) landed on the timeline.")
        if landing:
            parts.append(f"{len(landing)} finished job(s) land on the timeline in a moment.")
        if unlanded:
            parts.append(f"{len(unlanded)} finished job(s) did not land: the render queue says why.")
        if failed:
            parts.append(f"{len(failed)} job(s) failed: the render queue shows why.")
        if paused:
            parts.append(f"{len(paused)} job(s) stay paused: resume them to continue from their finished pieces.")
        return " ".join(parts)

    # -- helpers ------------------------------------------------------------------------------------

    def _job(self, job_id: str) -> Job | None:
        with contextlib.suppress(QueueError):
            return self.queue.job(job_id)
        return None

    def _set_status(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)


class DeviceRunBar(QWidget):
    """The running :class:`DeviceRun` above the render queue: its summary line and Cancel. Hidden when idle."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("deviceRunBar")
        self.run: DeviceRun | None = None
        self.label = QLabel("")
        self.label.setObjectName("deviceRunStatus")
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color:#6fd3ff;")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("deviceRunCancel")
        self.cancel_button.setToolTip("Stop the render processes; finished pieces are kept and the jobs stay "
                                      "paused, resumable")
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 4)
        row.addWidget(self.label, 1)
        row.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def follow(self, run: DeviceRun) -> None:
        self.run = run
        run.status_changed.connect(self.label.setText)
        run.ended.connect(self._on_run_ended)
        self.label.setText(run.status)
        self.cancel_button.setEnabled(True)
        self.show()

    def _on_cancel_clicked(self) -> None:
        if self.run is not None:
            self.cancel_button.setEnabled(False)
            self.run.cancel()

    def _on_run_ended(self, outcome: str) -> None:
        self.run = None
        self.hide()
