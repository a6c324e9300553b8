"""Adds generation to an existing editor window: the render queue dock, the Generate menu, context-menu
and keyboard hooks, and the timeline overlay that shows renders where their clips will land.

One entry point, :func:`attach_render_ui`. It uses only the window's public surface (``doc`` with its
``project``, ``undo``, ``timeline``, ``bin``, ``playback`` and ``queue``; ``menuBar``, ``addDockWidget``,
``show_message``, ``pool``), so the editor's files need no change beyond the call in
``app/application.py``. Main thread only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMenu, QMessageBox

from app.device_run import DeviceRun, DeviceRunBar, DeviceRunDialog, jobs_run_command, waiting_jobs
from app.render_controller import RenderController
from app.render_panel import RenderPanel, TimelineRenderOverlay
from app.shot_dialog import ShotDialog
from core.project import AssetKind, TrackKind
from core.render_devices import DeviceScan, find_render_devices

SHORTCUTS = {
    "shot": "Ctrl+G",
    "extend": "Ctrl+Alt+E",
    "cut": "Ctrl+Alt+C",
    "avatar": "Ctrl+Alt+A",
    "rerender": "Ctrl+R",
    "queue": "Ctrl+Alt+R",
}


class RenderUi:
    """The widgets and actions :func:`attach_render_ui` adds (kept on ``controller.ui``)."""

    def __init__(self, window: Any, controller: RenderController, estimator: Callable[..., Any] | None) -> None:
        self.window = window
        self.controller = controller
        self.estimator = estimator
        self.dialog: ShotDialog | None = None
        self.overlay: TimelineRenderOverlay | None = None
        self._timeline: Any = None
        self._queue: Any = None
        self.panel = RenderPanel(controller)
        self.device_bar = DeviceRunBar(self.panel)
        self.panel.layout().insertWidget(0, self.device_bar)
        self.device_scan = DeviceScan(())
        self.device_run: DeviceRun | None = None
        self.device_run_dialog: DeviceRunDialog | None = None
        self.device_run_command: Callable[..., list[str]] = jobs_run_command  # tests replace it
        self.dock = QDockWidget("Render Queue", window)
        self.dock.setObjectName("renderQueueDock")
        self.dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.actions: dict[str, QAction] = {}
        for key, text, slot in (
            ("shot", "&Shot from References…", self.open_shot_dialog),
            ("extend", "&Extend Clip…", self.open_extend_dialog),
            ("cut", "&Cut to…", self.open_cut_dialog),
            ("avatar", "&Avatar from Audio Region…", self.open_avatar_dialog),
            ("rerender", "&Re-render (new seed)", self.rerender_selected),
            ("preview", "Draft &Preview of Clip", self.preview_selected),
            ("final", "&Final Render of Clip", self.final_selected),
            ("queue", "Show Render &Queue", self.show_queue),
            ("farm", "Send Waiting Jobs to a Render &Farm…", self.export_for_farm),
            ("gpus", "Render Waiting Jobs on All &GPUs…", self.open_device_run_dialog),
            ("cleanup", "Clean Up Render F&iles…", self.clean_up_render_files),
        ):
            action = QAction(text, window)
            action.setObjectName(f"act_generate_{key}")
            if key in SHORTCUTS:
                action.setShortcut(QKeySequence(SHORTCUTS[key]))
            action.triggered.connect(lambda checked=False, s=slot: self._guard(s))
            window.addAction(action)  # shortcuts work whichever panel has focus
            self.actions[key] = action
        self.menu = QMenu("&Generate", window)
        self.menu.setObjectName("generateMenu")
        for key in ("shot", "extend", "cut", "avatar", None, "rerender", "preview", "final", None, "queue", "gpus",
                    "farm", None, "cleanup"):
            self.menu.addSeparator() if key is None else self.menu.addAction(self.actions[key])
        bar = window.menuBar()
        before = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"), None)
        if before is not None:
            bar.insertMenu(before, self.menu)
        else:
            bar.addMenu(self.menu)
        controller.queue_replaced.connect(self._on_controller_queue_replaced)
        controller.preview_changed.connect(self._on_render_changed)
        self._bind(controller.queue)
        self._show_device_scan(self.device_scan, probing=True)
        # nvidia-smi takes up to half a second: ask it off the GUI thread.
        window.pool.submit(find_render_devices, on_done=self._show_device_scan)

    # -- following the document ---------------------------------------------------------------------

    def _on_controller_queue_replaced(self, queue: Any) -> None:
        self._bind(queue)

    def _bind(self, queue: Any) -> None:
        if self._queue is not None:
            for signal in (self._queue.job_added, self._queue.job_removed, self._queue.job_changed):
                with contextlib.suppress(Exception):
                    signal.disconnect(self._on_render_changed)
        self._queue = queue
        for signal in (queue.job_added, queue.job_removed, queue.job_changed):
            signal.connect(self._on_render_changed)
        timeline = self.window.doc.timeline
        if timeline is not self._timeline:
            self._timeline = timeline
            self.overlay = TimelineRenderOverlay(timeline, self.controller)
            timeline.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            timeline.customContextMenuRequested.connect(self._on_timeline_context_menu)

    def _on_render_changed(self, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the overlay's timeline may be gone
            if self.overlay is not None:
                self.overlay.update()

    # -- context ------------------------------------------------------------------------------------

    def _guard(self, slot: Callable[[], Any]) -> None:
        try:
            slot()
        except Exception as exc:
            self.controller.message.emit(str(exc) or type(exc).__name__)

    def selected_clip(self, kind: TrackKind | None = TrackKind.VIDEO) -> str:
        doc = self.window.doc
        project = doc.project
        for clip_id in sorted(doc.timeline.selected):
            if project.has_clip(clip_id) and (kind is None or project.track(project.clip(clip_id).track_id).kind is kind):
                return clip_id
        return ""

    def audio_region(self) -> tuple[str, int, int] | None:
        region = getattr(self.window.doc.timeline, "audio_region", None)
        if region and self.window.doc.project.has_clip(region[0]):
            return region
        return None

    def bin_images(self) -> list[str]:
        doc = self.window.doc
        ids = []
        with contextlib.suppress(Exception):
            ids = list(doc.bin.selected_asset_ids())
        return [a for a in ids if doc.project.has_asset(a) and doc.project.asset(a).kind is AssetKind.IMAGE]

    # -- commands -----------------------------------------------------------------------------------

    def _open(self, dialog: ShotDialog) -> ShotDialog:
        if self.dialog is not None:
            with contextlib.suppress(RuntimeError):
                self.dialog.close()
        self.dialog = dialog
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(self._on_dialog_accepted)
        dialog.open()
        return dialog

    def _on_dialog_accepted(self) -> None:
        self.dock.show()

    def open_shot_dialog(self) -> ShotDialog:
        refs = self.bin_images()[:4]
        return self._open(ShotDialog(self.controller, "shot", estimator=self.estimator, reference_ids=refs,
                                     parent=self.window))

    def open_extend_dialog(self, clip_id: str = "") -> ShotDialog:
        clip_id = clip_id or self.selected_clip()
        if not clip_id:
            raise ValueError("Select the video clip to extend on the timeline first.")
        return self._open(ShotDialog(self.controller, "extend", clip_id=clip_id, estimator=self.estimator,
                                     parent=self.window))

    def open_cut_dialog(self, clip_id: str = "") -> ShotDialog:
        clip_id = clip_id or self.selected_clip()
        if not clip_id:
            raise ValueError("Select the video clip to cut from on the timeline first.")
        return self._open(ShotDialog(self.controller, "cut", clip_id=clip_id, estimator=self.estimator,
                                     parent=self.window))

    def open_avatar_dialog(self) -> ShotDialog:
        region = self.audio_region()
        if region is None:
            raise ValueError("Drag across the waveform of an audio clip to choose the voice first.")
        images = self.bin_images()
        return self._open(ShotDialog(self.controller, "avatar", clip_id=region[0], region=(region[1], region[2]),
                                     estimator=self.estimator, portrait_id=images[0] if images else None,
                                     parent=self.window))

    def _selected_generated(self) -> str:
        clip_id = self.selected_clip()
        if not clip_id:
            raise ValueError("Select a generated clip on the timeline first.")
        return clip_id

    def rerender_selected(self) -> Any:
        return self.controller.rerender(self._selected_generated())

    def preview_selected(self) -> Any:
        return self.controller.request_preview(self._selected_generated())

    def final_selected(self) -> Any:
        return self.controller.request_final(self._selected_generated())

    def show_queue(self) -> None:
        self.dock.show()
        self.dock.raise_()
        self.panel.view.setFocus()

    def choose_farm_folder(self) -> str:
        """Where the job files go (tests replace this)."""
        default = str(Path(self.window.doc.path).with_suffix(".farm")) if self.window.doc.path else ""
        return QFileDialog.getExistingDirectory(self.window, "Folder for the render farm's job files", default)

    def export_for_farm(self) -> None:
        """Write the waiting jobs as job files + ``tasks.txt`` for render nodes (``main.py jobs render``)
        and pause them here, so they do not render twice; resuming them later lands the farm's renders
        (re-assembled from the checkpoints the nodes wrote, without a model)."""
        from core.render_farm import export_jobs
        from core.render_queue import JobState

        doc = self.window.doc
        if not doc.path:
            raise ValueError("Save the project first: render nodes read its media folder.")
        jobs = [job for job in self.controller.queue.jobs
                if job.state in (JobState.QUEUED, JobState.PAUSED) and not job.held]
        if not jobs:
            raise ValueError("No waiting jobs to send to a render farm.")
        folder = self.choose_farm_folder()
        if not folder:
            return
        try:
            export_jobs(jobs, doc.path, folder)
        except OSError as error:
            raise ValueError(f"Cannot write the job files to {folder}: {error}") from error
        for job in jobs:
            if job.state is JobState.QUEUED:
                self.controller.pause(job.job_id)
        self.window.save()
        self.controller.message.emit(
            f"{len(jobs)} job(s) written to {folder}: run the commands in tasks.txt on the render nodes. "
            "They are paused here; resume them when the farm is done to land the renders."
        )

    # -- disk space ---------------------------------------------------------------------------------

    def confirm_cleanup(self, text: str, details: str = "") -> bool:
        """Ask before deleting; ``details`` (each folder, its size and why) behind Show Details (tests
        replace this)."""
        box = QMessageBox(QMessageBox.Icon.Question, "Clean Up Render Files", text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self.window)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        delete = box.button(QMessageBox.StandardButton.Yes)
        delete.setText("Delete")
        delete.setIcon(QIcon())  # not the theme's green tick: this deletes files
        if details:
            box.setDetailedText(details)
        return box.exec() == QMessageBox.StandardButton.Yes

    def clean_up_render_files(self) -> None:
        """Delete the render checkpoints nothing needs any more (see :mod:`core.render_cleanup`): the
        exact frames kept for resuming, of finished jobs and of jobs no longer in the queue."""
        from core.model_store import format_bytes
        from core.render_cleanup import remove_render_files, render_files_to_clean

        root = self.controller.media_root() if self.window.doc.path else None
        items = render_files_to_clean(self.controller.queue.jobs, root)
        if not items:
            self.controller.message.emit("No render files to clean up: every checkpoint left belongs to a job "
                                         "that can still be resumed.")
            return
        total = sum(item.size for item in items)
        finished = sum(1 for item in items if item.reason.startswith("finished"))
        text = (f"Delete {format_bytes(total)} of render checkpoints?\n\n"
                f"{finished} finished render(s) and {len(items) - finished} job(s) no longer in the queue keep "
                "the exact frames of their pieces so that a render can resume. The clips on the timeline do not "
                "need them. Unfinished, failed and cancelled jobs keep theirs.")
        details = "\n".join(f"{format_bytes(item.size):>9s}  {item.path}  ({item.reason})" for item in items)
        if not self.confirm_cleanup(text, details):
            return
        freed, errors = remove_render_files(items)
        message = f"Freed {format_bytes(freed)} of render checkpoints."
        if errors:
            message += f" {len(errors)} folder(s) could not be removed: " + "; ".join(errors[:3])
        self.controller.message.emit(message)

    # -- several devices ----------------------------------------------------------------------------

    def _show_device_scan(self, scan: DeviceScan, probing: bool = False) -> None:
        self.device_scan = scan
        action = self.actions["gpus"]
        action.setEnabled(scan.usable)
        if probing:
            tip = "Looking for GPUs…"
        elif scan.usable:
            tip = "Render the waiting jobs with one process per device: " + ", ".join(d.name for d in scan.devices)
        elif scan.devices:
            tip = (f"Needs two GPUs or more; this computer has one ({scan.devices[0].label}), which the editor "
                   "renders on already.")
        else:
            tip = f"Needs two GPUs or more. {scan.note}".strip()
        action.setToolTip(tip)
        action.setStatusTip(tip)

    def _save_note(self) -> str:
        doc = self.window.doc
        if doc.path is None:
            return ("The project has not been saved yet: you choose where to save it first (the render "
                    "processes read the saved project).")
        if self.window.is_modified():
            return "The project has unsaved changes: it is saved first (the render processes read the saved file)."
        return ""

    def open_device_run_dialog(self) -> DeviceRunDialog | None:
        """Generate ▸ Render Waiting Jobs on All GPUs…: pick devices, then :meth:`start_device_run`."""
        scan = self.device_scan
        if not scan.usable:
            raise ValueError(self.actions["gpus"].toolTip() or "No GPUs found.")
        if self.device_run is not None:
            self.show_queue()
            raise ValueError("The waiting jobs are already rendering on several devices (see the render queue).")
        jobs = waiting_jobs(self.controller.queue)
        if not jobs:
            raise ValueError("No waiting jobs to render: queue some renders (Generate menu) first.")
        if self.device_run_dialog is not None:
            with contextlib.suppress(RuntimeError):
                self.device_run_dialog.close()
        dialog = DeviceRunDialog(scan.devices, jobs, self._save_note(), self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._guard(lambda: self.start_device_run(dialog.chosen_devices())))
        dialog.destroyed.connect(lambda *args: setattr(self, "device_run_dialog", None))
        self.device_run_dialog = dialog
        dialog.open()
        return dialog

    def start_device_run(self, devices: list[str]) -> DeviceRun | None:
        """Save the project (Save As when untitled), hold the waiting jobs and start ``jobs run`` on
        ``devices``; returns the run, or None when the user did not save."""
        if not devices:
            raise ValueError("Choose at least one device.")
        if self.device_run is not None:
            raise ValueError("The waiting jobs are already rendering on several devices.")
        window = self.window
        if (window.doc.path is None or window.is_modified()) and not window.save():
            self.controller.message.emit("Not started: the project must be saved first, because the render "
                                         "processes read the saved file.")
            return None
        jobs = waiting_jobs(self.controller.queue)
        if not jobs:
            raise ValueError("No waiting jobs to render.")
        run = DeviceRun(self.controller, str(window.doc.path), devices, [job.job_id for job in jobs],
                        command=self.device_run_command, testing=bool(getattr(window, "testing", False)))
        run.status_changed.connect(self._on_device_run_status_changed)
        run.ended.connect(self._on_device_run_ended)
        self.device_run = run
        self.device_bar.follow(run)
        self.show_queue()
        run.start()
        self.controller.message.emit(f"Rendering {len(jobs)} job(s) on {len(devices)} device(s): "
                                     f"{', '.join(devices)}. Progress is in the render queue.")
        return run

    def _on_device_run_status_changed(self, text: str) -> None:
        self.window.show_message(text, 0)

    def _on_device_run_ended(self, outcome: str) -> None:
        self.device_run = None

    def context_menu_for(self, pos: QPoint) -> QMenu:
        """The timeline's context menu at ``pos`` (the clip under the mouse becomes the selection)."""
        timeline = self.window.doc.timeline
        clip = timeline.clip_at(pos)
        if clip is not None and clip.clip_id not in timeline.selected:
            timeline.set_selection({clip.clip_id})
        menu = QMenu(timeline)
        menu.setObjectName("timelineGenerateMenu")
        project = self.window.doc.project
        is_video = clip is not None and project.track(clip.track_id).kind is TrackKind.VIDEO
        for key in ("extend", "cut", "rerender", "preview", "final"):
            action = menu.addAction(self.actions[key].text(), self.actions[key].trigger)
            action.setObjectName(f"ctx_{key}")
            generated = clip is not None and clip.recipe is not None
            action.setEnabled(is_video and (generated or key in ("extend", "cut")))
        menu.addSeparator()
        avatar = menu.addAction(self.actions["avatar"].text(), self.actions["avatar"].trigger)
        avatar.setObjectName("ctx_avatar")
        avatar.setEnabled(self.audio_region() is not None)
        shot = menu.addAction(self.actions["shot"].text(), self.actions["shot"].trigger)
        shot.setObjectName("ctx_shot")
        return menu

    def _on_timeline_context_menu(self, pos: QPoint) -> None:
        timeline = self.window.doc.timeline
        menu = self.context_menu_for(pos)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.popup_menu(menu, timeline.mapToGlobal(pos))

    def popup_menu(self, menu: QMenu, global_pos: QPoint) -> None:
        """Show a context menu (tests replace this: a popup grabs the keyboard, which offscreen Qt refuses)."""
        menu.popup(global_pos)


def attach_render_ui(window: Any, backend_factory: Callable[[], Any], estimator: Callable[..., Any] | None = None
                     ) -> RenderController:
    """Add the render queue dock, the Generate menu and the authoring hooks to ``window``.

    Args:
        window: an :class:`app.main_window.MainWindow`.
        backend_factory: builds the ``InferenceBackend``; called once on the GPU worker thread (so torch is
            imported there, lazily), e.g. ``lambda: LocalBackend()`` with the import inside the lambda.
        estimator: ``estimator(request) -> app.shot_dialog.Estimate`` for the pre-flight estimate.

    Returns:
        The :class:`RenderController` (its ``ui`` attribute holds the dock, panel, menu and actions).
    """
    controller = RenderController(window, backend_factory, estimator)
    controller.ui = RenderUi(window, controller, estimator)  # type: ignore[attr-defined]
    return controller
