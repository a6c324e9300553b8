"""Authoring in the editor: from a generate command to a rendered clip on the timeline.

Owns :class:`RenderController`. It builds frozen :class:`core.generation.RenderRequest` snapshots from the
open project (reference asset paths, the source clip's file, the audio region), submits them to the
project's :class:`core.render_queue.RenderQueue`, feeds the next job to the one
:class:`app.render_worker.RenderWorker`, applies the worker's events to the queue, and lands a finished
render as one :class:`core.edits.AddRenderedClip` on the window's undo stack (Undo removes the clip, not
the GPU work).

A job rendered by another process (``main.py jobs run`` on several devices, :mod:`app.device_run`) lands
through :meth:`RenderController.land_rendered_elsewhere` as soon as that process reports it finished: the
worker joins it from its checkpoints without loading a model (:meth:`RenderWorker.reassemble_job`), the
queue releases it ``FINISHED``, and it lands like any render; when it cannot be joined it is released
paused, with the reason under it, and nothing renders it here until the user resumes it.

Where a render lands is decided when it is submitted and travels with the job (``request.extra["studio"]``,
saved with the queue), so a job resumed after a restart still lands in the right place:

- ``new``: a new clip (id = the job's shot id) at ``start`` on ``track_id`` (or the first free video track);
- ``after``: a new clip right after the source clip (extension, cut-to), pushing later clips right;
- ``take``: an alternative take of an existing clip (re-render, preview/final of a clip), made active;
- ``avatar``: a new video clip over the audio region, linked with the audio clip.

Files: outputs under ``<project>.media/renders/``, checkpoints of finished pieces under
``<project>.media/work/<job id>/``. An untitled project uses ``untitled.media`` in the app's data folder
(:meth:`RenderController.media_root`) and keeps its queue in the untitled autosave, so a crash before
the first save loses neither. When it is first saved ("Save As"), the queue goes into the new file and
the jobs submitted before keep their files in ``untitled.media``, where they are: the save moves and
rewrites nothing. That loses nothing: a job running meanwhile keeps writing where it started and lands from
there, finished renders already on the timeline keep the asset paths they have, and paused jobs resume
from checkpoints that never moved. The saved file refers to those files like to any media outside the
project folder (see :mod:`core.persistence`); jobs submitted after the save use ``<project>.media``. The
status bar then suggests File ▸ Collect Media… (:mod:`app.collect_media`), which copies those renders and
any other media from outside the project folder into ``<project>.media/collected`` and points the project
at the copies in one undo step; then only the project's unfinished jobs still need ``untitled.media``
(they keep the paths they were queued with, and so do the files they use, which are not collected).

Extension and cut-to continue the *clip*, not the file under it: an untrimmed clip sends its asset's file
as ``input_video``; a trimmed one sends ``<work dir>/source_excerpt.mp4``, the frames it shows (see
:mod:`core.media.excerpt`), with what to cut recorded in ``request.extra["studio"]["excerpt"]``. The
request stays a frozen snapshot; :func:`prepare_inputs` writes the excerpt on the render worker's thread
before the backend sees the job (and again on a resume if it is gone).

The open document is followed through the window's public ``doc`` attribute; when the window swaps
documents (new/open) the running job of the old one is paused (its queue was saved with it) and the new
project's queue is adopted; its unfinished jobs are offered for resume.

Main thread only (the worker thread only sees the frozen request and the cancel token).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QImage

from app import document
from app.render_worker import RenderWorker
from core import edits
from core.collect_media import media_root
from core.generation import (
    AudioRegion,
    GenerationRecipe,
    PieceFinished,
    Quality,
    RenderRequest,
    RenderResult,
    Task,
    Transition,
)
from core.project import Asset, AssetKind, Clip, Project, TrackKind, new_id
from core.render_inputs import EXCERPT_NAME, STUDIO_KEY, SourceExcerpt, prepare_inputs
from core.render_queue import Job, JobState, QueueError, RenderQueue

TASK_LABELS = {
    Task.REFERENCE_TO_VIDEO: "Shot",
    Task.SINGLE_SHOT_EXTENSION: "Extend",
    Task.SHOT_SWITCHING_EXTENSION: "Cut to",
    Task.TALKING_AVATAR: "Avatar",
}


class RenderController(QObject):
    """Builds requests, runs the queue on the GPU worker and lands results. Main thread only.

    Args:
        window: the :class:`app.main_window.MainWindow` (only its public ``doc``, ``pool``,
            ``show_message`` and ``testing`` are used).
        backend_factory: builds the ``InferenceBackend`` on the worker thread (torch loads there).
        estimator: optional ``estimator(request) -> Estimate`` for the shot dialog's pre-flight.

    Attributes:
        model, device, offload, low_vram: copied into every request (``model="tiny"`` for CPU tests).

    Signals:
        queue_replaced(object queue): the open document changed; panels rebind to the new queue.
        preview_changed(str job_id): a new latent preview image is in :attr:`previews`.
        piece_ready(str job_id, str path): a finished piece (playable file) arrived.
        job_landed(str job_id, str clip_id): a finished render is on the timeline (or in the bin: "").
        landing_failed(str job_id, str message): a finished render did not land (it could not be joined
            from its checkpoints, or its file cannot be read); ``message`` is for the user.
        message(str): a status message for the user (also shown in the window's status bar).
    """

    queue_replaced = Signal(object)
    preview_changed = Signal(str)
    piece_ready = Signal(str, str)
    job_landed = Signal(str, str)
    landing_failed = Signal(str, str)
    message = Signal(str)

    def __init__(self, window: Any, backend_factory: Callable[[], Any], estimator: Callable[..., Any] | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.estimator = estimator
        self.model = ""
        self.device = "auto"
        self.offload = False
        self.low_vram = False
        self.ask_resume: Callable[[list[Job]], bool] | None = None  # tests answer instead of a dialog
        self.previews: dict[str, tuple[QImage, int, int]] = {}
        self.preview_times: dict[str, float] = {}  # job id -> worker perf_counter of the shown preview
        self.worker = RenderWorker(backend_factory, prepare=prepare_inputs)
        queued = Qt.ConnectionType.QueuedConnection  # worker thread -> main thread, always
        self.worker.job_event.connect(self._on_worker_job_event, queued)
        self.worker.updates_ready.connect(self._on_worker_updates_ready, queued)
        self.worker.job_finished.connect(self._on_worker_job_finished, queued)
        self.worker.job_failed.connect(self._on_worker_job_failed, queued)
        self.worker.job_stopped.connect(self._on_worker_job_stopped, queued)
        self.worker.job_reassembled.connect(self._on_worker_job_reassembled, queued)
        self._running: tuple[RenderQueue, str] | None = None
        self._landing: set[str] = set()  # jobs whose output is being probed
        self._joining: dict[str, RenderQueue] = {}  # held jobs the worker joins from checkpoints (their queue)
        self.landed: dict[str, str] = {}  # job id -> clip id it landed as (or became a take of)
        self._doc: Any = None
        self.queue: RenderQueue = RenderQueue()
        self._kick_timer = QTimer(self, singleShot=True, interval=0)
        self._kick_timer.timeout.connect(self._kick)
        self._closed = False
        # A render of this queue in another process (app.device_run.DeviceRun): while it runs, the
        # worker here starts nothing (it would share a GPU with it).
        self.device_run: Any = None
        self.message.connect(lambda text: window.show_message(text, 12000))
        window.installEventFilter(self)
        changed = getattr(window, "document_changed", None)  # a window that announces new documents
        if changed is not None:
            changed.connect(lambda *args: self.sync_document())
        self.sync_document(offer_resume=False)

    # -- following the window's document ----------------------------------------------------------

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.window:
            kind = event.type()
            if kind == QEvent.Type.ChildAdded and not self._closed:
                # MainWindow._set_document sets ``doc`` and then a new central widget: adopt the new
                # document once the window has finished wiring it.
                QTimer.singleShot(0, self, self.sync_document)  # dropped if this object is gone
            elif kind == QEvent.Type.Close and not self._closed:
                # Let the window decide (it may ask to save); stop our thread only if it really closes.
                obj.event(event)
                if event.isAccepted():
                    self.shutdown()
                return True
        return False

    @property
    def doc(self) -> Any:
        return self.window.doc

    @property
    def project(self) -> Project:
        return self.window.doc.project

    def sync_document(self, offer_resume: bool = True) -> None:
        """Adopt the window's current document (and its render queue) if it changed."""
        doc = getattr(self.window, "doc", None)
        if doc is None or doc is self._doc or self._closed:
            return
        old_queue = self.queue if self._doc is not None else None
        if self.device_run is not None:
            self.device_run.stop()  # its jobs were saved paused with the old project
        if old_queue is not None and self._running is not None and self._running[0] is old_queue:
            # The old project was saved (or discarded) with this job as resumable: stop it.
            with contextlib.suppress(QueueError):
                old_queue.pause(self._running[1])
        if old_queue is not None:
            self._disconnect_queue(old_queue)
        self._doc = doc
        if getattr(doc, "queue", None) is None:
            doc.queue = RenderQueue()
        self.queue = doc.queue
        self._connect_queue(self.queue)
        self.previews.clear()
        self.queue_replaced.emit(self.queue)
        if offer_resume:
            self.offer_resume()
        self._schedule_kick()

    def _connect_queue(self, queue: RenderQueue) -> None:
        for signal in (queue.job_added, queue.job_changed, queue.job_moved):
            signal.connect(self._schedule_kick)

    def _disconnect_queue(self, queue: RenderQueue) -> None:
        for signal in (queue.job_added, queue.job_changed, queue.job_moved):
            with contextlib.suppress(Exception):
                signal.disconnect(self._schedule_kick)

    def offer_resume(self) -> list[Job]:
        """Offer to resume the project's unfinished jobs (from their last finished piece)."""
        jobs = [j for j in self.queue.resumable() if not j.cancel_requested]
        if not jobs:
            return []
        ask = self.ask_resume or self._ask_resume_dialog
        if not ask(jobs):
            self.message.emit(f"{len(jobs)} unfinished render(s) kept paused in the render queue.")
            return []
        for job in jobs:
            with contextlib.suppress(QueueError):
                self.queue.resume(job.job_id)
        self.message.emit(f"Resuming {len(jobs)} unfinished render(s).")
        return jobs

    def _ask_resume_dialog(self, jobs: list[Job]) -> bool:
        if getattr(self.window, "testing", False):
            return False
        from PySide6.QtWidgets import QMessageBox

        names = "\n".join(f"• {j.label or j.job_id}" + (f" (piece {j.last_finished_piece + 1} done)"
                                                        if j.last_finished_piece >= 0 else "") for j in jobs[:8])
        answer = QMessageBox.question(
            self.window, "Resume renders?",
            f"This project has {len(jobs)} unfinished render(s):\n{names}\n\nResume them now? They continue "
            "from their last finished piece. Choosing No keeps them paused in the render queue.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
        return answer == QMessageBox.StandardButton.Yes

    # -- files ------------------------------------------------------------------------------------

    def media_root(self) -> Path:
        """``<project>.media`` beside the project file (untitled: the app's data folder)."""
        path = getattr(self.doc, "path", None)
        return media_root(path) if path is not None else document.untitled_media_dir()

    def _paths(self, job_id: str, label: str) -> tuple[str, str]:
        root = self.media_root()
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label.lower()).strip("_")[:40] or "render"
        output = root / "renders" / f"{safe}_{job_id[:8]}.mp4"
        work = root / "work" / job_id
        return str(output), str(work)

    # -- building requests --------------------------------------------------------------------------

    def _asset(self, asset_id: str) -> Asset:
        try:
            return self.project.asset(asset_id)
        except KeyError:
            raise ValueError("That media is no longer in the bin.") from None

    def _clip(self, clip_id: str) -> Clip:
        try:
            return self.project.clip(clip_id)
        except KeyError:
            raise ValueError("That clip is no longer on the timeline.") from None

    def _reference_paths(self, asset_ids: Sequence[str]) -> tuple[str, ...]:
        if not 1 <= len(asset_ids) <= 4:
            raise ValueError("Pick 1 to 4 reference images.")
        paths = []
        for asset_id in asset_ids:
            asset = self._asset(asset_id)
            if asset.kind is not AssetKind.IMAGE:
                raise ValueError(f"“{asset.name}” is not an image: references must be still images.")
            if asset.missing:
                raise ValueError(f"“{asset.name}” is offline: relink it first (File ▸ Relink Missing Media).")
            paths.append(asset.path)
        return tuple(paths)

    def _source_video(self, clip: Clip) -> str | SourceExcerpt:
        """What a clip shows, as an extension's input: its asset's file when the clip uses all of it,
        else the excerpt to cut out (the job writes it; see :func:`prepare_inputs`)."""
        asset = self._asset(clip.asset_id)
        if asset.kind is not AssetKind.VIDEO:
            raise ValueError("Only video clips can be extended; pick a video clip.")
        if asset.missing:
            raise ValueError(f"“{asset.name}” is offline: relink it first.")
        if clip.in_point == 0 and (asset.duration_frames is None or clip.out_point >= asset.duration_frames):
            return asset.path
        return SourceExcerpt(asset.path, clip.in_point, clip.out_point, int(self.project.settings.fps))

    def _submit(self, recipe: GenerationRecipe, landing: dict[str, Any], *, shot_id: str, preview: bool,
                label: str, request_fields: dict[str, Any]) -> Job:
        job_id = new_id()
        output, work = self._paths(job_id, label)
        studio = {**landing, "recipe": recipe.to_json(), "shot_id": shot_id}
        excerpt = request_fields.get("input_video")
        if isinstance(excerpt, SourceExcerpt):
            studio["excerpt"] = dataclasses.asdict(excerpt)
            request_fields = {**request_fields, "input_video": str(Path(work) / EXCERPT_NAME)}
        request = RenderRequest(
            task=recipe.task,
            prompt=recipe.prompt,
            output_path=output,
            work_dir=work,
            duration_s=recipe.duration_s,
            resolution=recipe.resolution,
            aspect=recipe.aspect,
            seed=recipe.seed,
            steps=recipe.steps,
            transition=recipe.transition,
            quality=recipe.quality,
            model=self.model or recipe.model_id,
            device=self.device,
            offload=self.offload,
            low_vram=self.low_vram,
            extra={STUDIO_KEY: studio},
            **request_fields,
        )
        job = self.queue.submit(request, shot_id=shot_id, preview=preview, label=label, job_id=job_id)
        self.message.emit(f"Queued “{label}”.")
        self._persist()
        return job

    def _recipe(self, task: Task, prompt: str, **fields: Any) -> GenerationRecipe:
        fields.setdefault("model_id", self.model)
        return GenerationRecipe(task=task, prompt=prompt.strip(), **fields)

    def shot_from_references(self, reference_asset_ids: Sequence[str], prompt: str, *, duration_s: float = 5,
                             resolution: str = "720P", aspect: str | None = None, seed: int = 42,
                             quality: Quality = Quality.FINAL, steps: int | None = None,
                             track_id: str | None = None, start: int | None = None) -> Job:
        """A new shot from 1-4 reference images (reference-to-video), landing at ``start`` (playhead)."""
        paths = self._reference_paths(reference_asset_ids)
        if start is None:
            start = int(getattr(self.doc.playback, "position", 0))
        recipe = self._recipe(Task.REFERENCE_TO_VIDEO, prompt, reference_asset_ids=tuple(reference_asset_ids),
                              duration_s=float(duration_s), resolution=resolution, aspect=aspect, seed=seed,
                              steps=steps, quality=Quality(quality))
        shot_id = new_id()
        landing = {"mode": "new", "track_id": track_id, "start": int(start)}
        label = f"Shot: {_short(prompt)}"
        return self._submit(recipe, landing, shot_id=shot_id, preview=recipe.quality is Quality.DRAFT,
                            label=label, request_fields={"reference_images": paths})

    def extend(self, clip_id: str, prompt: str, *, duration_s: float = 5, resolution: str = "720P",
               seed: int = 42, quality: Quality = Quality.FINAL, steps: int | None = None) -> Job:
        """Continue a clip as the same shot (5-30 s); the new clip follows it on its track."""
        clip = self._clip(clip_id)
        video = self._source_video(clip)
        recipe = self._recipe(Task.SINGLE_SHOT_EXTENSION, prompt, source_clip_id=clip_id,
                              duration_s=float(duration_s), resolution=resolution, seed=seed, steps=steps,
                              quality=Quality(quality))
        return self._submit(recipe, {"mode": "after", "after_clip": clip_id}, shot_id=new_id(),
                            preview=recipe.quality is Quality.DRAFT, label=f"Extend: {_short(prompt)}",
                            request_fields={"input_video": video})

    def cut_to(self, clip_id: str, transition: Transition | str, prompt: str, *, duration_s: float = 5,
               resolution: str = "720P", seed: int = 42, quality: Quality = Quality.FINAL,
               steps: int | None = None) -> Job:
        """A new shot after a clip with a transition (cut in/out, shot-reverse-shot, multi-angle, cut away)."""
        clip = self._clip(clip_id)
        video = self._source_video(clip)
        transition = Transition(transition)
        recipe = self._recipe(Task.SHOT_SWITCHING_EXTENSION, prompt, source_clip_id=clip_id,
                              duration_s=float(duration_s), resolution=resolution, seed=seed, steps=steps,
                              transition=transition, quality=Quality(quality))
        label = f"Cut to ({transition.value.replace('_', ' ')}): {_short(prompt)}"
        return self._submit(recipe, {"mode": "after", "after_clip": clip_id}, shot_id=new_id(),
                            preview=recipe.quality is Quality.DRAFT, label=label,
                            request_fields={"input_video": video})

    def avatar_from_region(self, portrait_asset_id: str, audio_clip_id: str, start: int, end: int,
                           prompt: str = "", *, resolution: str = "480P", seed: int = 42,
                           quality: Quality = Quality.FINAL, steps: int | None = None) -> Job:
        """A talking avatar from a portrait and the region ``[start, end)`` (timeline frames) of an audio clip."""
        portrait = self._asset(portrait_asset_id)
        if portrait.kind is not AssetKind.IMAGE:
            raise ValueError("Pick a portrait image in the bin for the avatar.")
        audio_clip = self._clip(audio_clip_id)
        audio = self._asset(audio_clip.asset_id)
        if self.project.track(audio_clip.track_id).kind is not TrackKind.AUDIO:
            raise ValueError("Drag a region on an audio lane to choose the voice.")
        start, end = max(start, audio_clip.start), min(end, audio_clip.end)
        if end <= start:
            raise ValueError("The audio region is empty: drag across the waveform of an audio clip.")
        fps = self.project.settings.fps
        asset_start = start - audio_clip.start + audio_clip.in_point
        asset_end = end - audio_clip.start + audio_clip.in_point
        region = AudioRegion(audio.asset_id, asset_start, asset_end)
        recipe = self._recipe(Task.TALKING_AVATAR, prompt, portrait_asset_id=portrait_asset_id,
                              audio_region=region, duration_s=(end - start) / fps, resolution=resolution,
                              seed=seed, steps=steps, quality=Quality(quality))
        landing = {"mode": "avatar", "start": int(start), "link_to": audio_clip_id}
        return self._submit(recipe, landing, shot_id=new_id(), preview=recipe.quality is Quality.DRAFT,
                            label=f"Avatar: {portrait.name}",
                            request_fields={"input_image": portrait.path, "input_audio": audio.path,
                                            "audio_start_s": asset_start / fps, "audio_end_s": asset_end / fps})

    def _request_fields_for(self, recipe: GenerationRecipe) -> dict[str, Any]:
        """Inputs of a recipe resolved against the current project (asset ids -> paths)."""
        if recipe.task is Task.REFERENCE_TO_VIDEO:
            return {"reference_images": self._reference_paths(recipe.reference_asset_ids)}
        if recipe.task in (Task.SINGLE_SHOT_EXTENSION, Task.SHOT_SWITCHING_EXTENSION):
            if not recipe.source_clip_id or not self.project.has_clip(recipe.source_clip_id):
                raise ValueError("The clip this one continued is no longer on the timeline: it cannot be re-rendered.")
            return {"input_video": self._source_video(self.project.clip(recipe.source_clip_id))}
        region = recipe.audio_region
        if recipe.portrait_asset_id is None or region is None:
            raise ValueError("This avatar clip has lost its portrait or audio region.")
        fps = self.project.settings.fps
        return {"input_image": self._asset(recipe.portrait_asset_id).path,
                "input_audio": self._asset(region.asset_id).path,
                "audio_start_s": region.start_frame / fps, "audio_end_s": region.end_frame / fps}

    def _clip_recipe(self, clip_id: str) -> GenerationRecipe:
        clip = self._clip(clip_id)
        if clip.recipe is None:
            raise ValueError("Only generated clips can be re-rendered (this one was imported).")
        return clip.recipe

    def rerender(self, clip_id: str, seed: int | None = None, quality: Quality | None = None) -> Job:
        """Render a generated clip again with a new seed: the result becomes its active alternative take."""
        recipe = self._clip_recipe(clip_id)
        if seed is None:
            seed = random.Random().randrange(0, 2**31 - 1)
            while seed == recipe.seed:
                seed = random.Random().randrange(0, 2**31 - 1)
        recipe = dataclasses.replace(recipe, seed=seed, quality=Quality(quality or recipe.quality),
                                     model_id=self.model or recipe.model_id)
        fields = self._request_fields_for(recipe)
        return self._submit(recipe, {"mode": "take", "take_of": clip_id}, shot_id=clip_id,
                            preview=recipe.quality is Quality.DRAFT,
                            label=f"Re-render (seed {seed}): {_short(recipe.prompt)}", request_fields=fields)

    def request_preview(self, clip_id: str) -> Job:
        """A draft render of a generated clip (supersedes older previews of it); lands as a take."""
        recipe = self._clip_recipe(clip_id)
        recipe = dataclasses.replace(recipe, quality=Quality.DRAFT, model_id=self.model or recipe.model_id)
        return self._submit(recipe, {"mode": "take", "take_of": clip_id}, shot_id=clip_id, preview=True,
                            label=f"Preview: {_short(recipe.prompt)}", request_fields=self._request_fields_for(recipe))

    def request_final(self, clip_id: str) -> Job:
        """A final-quality render of a generated clip (queued after previews); lands as its active take."""
        recipe = self._clip_recipe(clip_id)
        recipe = dataclasses.replace(recipe, quality=Quality.FINAL, model_id=self.model or recipe.model_id)
        return self._submit(recipe, {"mode": "take", "take_of": clip_id}, shot_id=clip_id, preview=False,
                            label=f"Final: {_short(recipe.prompt)}", request_fields=self._request_fields_for(recipe))

    def warm_up(self) -> None:
        """Create the backend on the worker thread now (torch imports there); see ``RenderWorker.warm_up``."""
        if not self._closed:
            self.worker.warm_up()

    # -- queue actions (the panel calls these; errors become messages) ------------------------------

    def cancel(self, job_id: str) -> None:
        self.queue.cancel(job_id)
        self._persist()

    def pause(self, job_id: str) -> None:
        self.queue.pause(job_id)

    def resume(self, job_id: str) -> None:
        self.queue.resume(job_id)

    def retry(self, job_id: str) -> None:
        self.queue.retry(job_id)

    def move(self, job_id: str, new_index: int) -> None:
        self.queue.move(job_id, new_index)

    def remove(self, job_id: str) -> None:
        self.queue.remove(job_id)
        self.previews.pop(job_id, None)

    # -- running ------------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No job running and none waiting to land."""
        return self._running is None and not self._landing and not self._joining and not self.worker.busy

    def joining(self, job_id: str) -> bool:
        """True while the worker joins ``job_id`` from its checkpoints (:meth:`land_rendered_elsewhere`)."""
        return job_id in self._joining

    def running_job(self) -> Job | None:
        if self._running is None or self._running[0] is not self.queue:
            return None
        with contextlib.suppress(QueueError):
            return self.queue.job(self._running[1])
        return None

    def _schedule_kick(self, *args: Any) -> None:
        if not self._closed:
            self._kick_timer.start()

    def _kick(self) -> None:
        if self._closed or self._running is not None or self.worker.busy or self.device_run is not None:
            return
        job = self.queue.next_job()
        if job is None:
            return
        cancel = self.queue.start(job.job_id)
        self._running = (self.queue, job.job_id)
        self.worker.run_job(job.job_id, job.request, cancel)
        self._persist()

    def _queue_of(self, job_id: str) -> RenderQueue | None:
        if self._running is not None and self._running[1] == job_id:
            return self._running[0]
        with contextlib.suppress(QueueError):
            self.queue.job(job_id)
            return self.queue
        return None

    def _on_worker_job_event(self, job_id: str, event: Any) -> None:
        self._on_worker_updates_ready()  # keep order: steps before the piece that follows them
        queue = self._queue_of(job_id)
        if queue is None:
            return
        with contextlib.suppress(QueueError):
            queue.apply_event(job_id, event)
        if isinstance(event, PieceFinished) and queue is self.queue:
            self.piece_ready.emit(job_id, event.path)
            self._persist()

    def _on_worker_updates_ready(self) -> None:
        progress, previews = self.worker.take_updates()
        for job_id, event in progress.items():
            queue = self._queue_of(job_id)
            if queue is not None:
                with contextlib.suppress(QueueError):
                    queue.apply_event(job_id, event)
        for job_id, (piece, step, image, emitted) in previews.items():
            if self._queue_of(job_id) is not self.queue:
                continue
            with contextlib.suppress(QueueError):
                if self.queue.job(job_id).is_done:
                    continue
            self.previews[job_id] = (image, piece, step)
            self.preview_times[job_id] = emitted
            self.preview_changed.emit(job_id)

    def _finish_running(self, job_id: str) -> RenderQueue | None:
        self._on_worker_updates_ready()
        queue = self._queue_of(job_id)
        if self._running is not None and self._running[1] == job_id:
            self._running = None
        self._schedule_kick()
        return queue

    def _on_worker_job_finished(self, job_id: str, result: RenderResult) -> None:
        queue = self._finish_running(job_id)
        if queue is None:
            return
        job = queue.job(job_id)
        with contextlib.suppress(QueueError):
            queue.finish(job_id, result)
        self.previews.pop(job_id, None)
        if queue is not self.queue:
            return
        self._persist()
        self._land(job, result)

    def _on_worker_job_failed(self, job_id: str, message: str) -> None:
        queue = self._finish_running(job_id)
        if queue is None:
            return
        with contextlib.suppress(QueueError):
            queue.fail(job_id, message)
        if queue is self.queue:
            label = queue.job(job_id).label
            self.message.emit(f"“{label}” failed: {message}")
            self._persist()

    def _on_worker_job_stopped(self, job_id: str) -> None:
        queue = self._finish_running(job_id)
        if queue is None:
            return
        queue.stopped(job_id)
        if queue is self.queue:
            job = queue.job(job_id)
            if job.state is JobState.PAUSED:
                self.message.emit(f"“{job.label}” paused; resume it from the render queue.")
            elif job.superseded_by:
                self.message.emit(f"“{job.label}” was replaced by a newer preview.")
            else:
                self.message.emit(f"“{job.label}” cancelled; finished pieces are kept for a retry.")
            self._persist()

    # -- landing ------------------------------------------------------------------------------------

    def land_rendered_elsewhere(self, job_id: str) -> None:
        """Land a held job that another process finished: the worker joins its output from the checkpoints
        in its work folder (never loading a model, which would share a GPU with that process), then the job
        is released ``FINISHED`` and lands as one ``AddRenderedClip``. When it cannot be joined, it is
        released paused with the reason under it (:attr:`landing_failed`); nothing renders it here."""
        job = self.queue.job(job_id)
        if self._closed or job_id in self._joining or not job.held:
            return
        self._joining[job_id] = self.queue
        self.worker.reassemble_job(job_id, job.request)

    def _on_worker_job_reassembled(self, job_id: str, result: RenderResult | None, message: str) -> None:
        queue = self._joining.pop(job_id, None)
        if queue is None or self._closed:
            return
        self._schedule_kick()
        try:
            job = queue.job(job_id)
        except QueueError:
            return
        if result is not None:
            queue.release(job_id, result=result)
            if queue is self.queue and job.state is JobState.FINISHED:
                self._persist()
                self._land(job, result)
            return
        note = f"Rendered in another process but not landed: {message}. Resume it to finish it here."
        queue.release(job_id, note=note)
        if queue is self.queue:
            self._persist()
            self.message.emit(f"“{job.label}” {note[0].lower()}{note[1:]}")
            self.landing_failed.emit(job_id, note)

    def _land(self, job: Job, result: RenderResult) -> None:
        from app.media_jobs import probe_file

        self._landing.add(job.job_id)
        self.window.pool.submit(probe_file, result.output_path,
                                on_done=lambda info: self._land_probed(job, info),
                                on_error=lambda exc: self._land_failed(job, exc))

    def _land_failed(self, job: Job, exc: BaseException) -> None:
        self._landing.discard(job.job_id)
        self.message.emit(f"“{job.label}” finished but its file cannot be read: {exc}")
        self.landing_failed.emit(job.job_id, f"Its file cannot be read: {exc}")

    def _land_probed(self, job: Job, info: Any) -> None:
        from app.media_jobs import asset_from_info

        self._landing.discard(job.job_id)
        if self._closed or self.doc is None or self.queue is not self._queue_for_job(job):
            return
        project = self.project
        studio = dict(job.request.extra.get(STUDIO_KEY, {}))
        recipe = GenerationRecipe.from_json(studio["recipe"]) if "recipe" in studio else None
        asset = asset_from_info(info, project.settings.fps)
        asset.name = f"{job.label[:60]}.mp4" if job.label else asset.name
        try:
            edit = self._landing_edit(project, job, studio, recipe, asset)
            self.doc.undo.push(edit)
        except Exception as exc:  # the place was taken meanwhile: keep the render in the bin
            try:
                self.doc.undo.push(edits.AddRenderedClip(asset))
            except Exception as exc2:
                self.message.emit(f"“{job.label}” finished but could not be added: {exc2}")
                return
            self.message.emit(f"“{job.label}” finished; it is in the bin ({exc}).")
            self.job_landed.emit(job.job_id, "")
            return
        clip_id = edit.clip.clip_id if edit.clip is not None else (edit.take_of or "")
        if clip_id and self.project.has_clip(clip_id):
            with contextlib.suppress(Exception):
                self.doc.timeline.set_selection({clip_id})
        self.landed[job.job_id] = clip_id
        self.message.emit(f"“{job.label}” is on the timeline.")
        self.job_landed.emit(job.job_id, clip_id)

    def reveal(self, job_id: str) -> str:
        """Select the clip a finished job landed as and move the playhead to it; returns its id."""
        clip_id = self.landed.get(job_id, "")
        if not clip_id or not self.project.has_clip(clip_id):
            raise ValueError("That render is not on the timeline (it was undone or is not finished).")
        doc = self.doc
        doc.timeline.set_selection({clip_id})
        doc.playback.seek(self.project.clip(clip_id).start)
        doc.timeline.ensure_frame_visible(self.project.clip(clip_id).start)
        return clip_id

    def _queue_for_job(self, job: Job) -> RenderQueue | None:
        return self.queue if any(j is job for j in self.queue.jobs) else None

    def _landing_edit(self, project: Project, job: Job, studio: dict[str, Any], recipe: GenerationRecipe | None,
                      asset: Asset) -> edits.AddRenderedClip:
        mode = studio.get("mode", "new")
        length = asset.duration_frames or 1
        clip_id = studio.get("shot_id") or job.shot_id or new_id()
        if project.has_clip(clip_id):
            clip_id = new_id()
        if mode == "take":
            target = studio.get("take_of")
            if not target or not project.has_clip(target):
                raise ValueError("the clip it was a take of is gone")
            return edits.AddRenderedClip(asset, take_of=target, activate=True)
        if mode == "after":
            source = project.clip(studio["after_clip"])
            clip = Clip(clip_id, asset.asset_id, source.track_id, source.end, 0, length, recipe=recipe)
            return edits.AddRenderedClip(asset, clip=clip, ripple=True)
        start = int(studio.get("start") or 0)
        track_id = self._free_video_track(project, studio.get("track_id"), start, start + length)
        if track_id is None:
            raise ValueError("no video track is free there")
        clip = Clip(clip_id, asset.asset_id, track_id, start, 0, length, recipe=recipe)
        link = studio.get("link_to") if mode == "avatar" else None
        if link is not None and not project.has_clip(link):
            link = None
        return edits.AddRenderedClip(asset, clip=clip, link_to=link)

    @staticmethod
    def _free_video_track(project: Project, preferred: str | None, start: int, end: int) -> str | None:
        tracks = [t for t in project.tracks if t.kind is TrackKind.VIDEO and not t.locked]
        tracks.sort(key=lambda t: t.track_id != preferred)
        for track in tracks:
            if track.is_free(start, end):
                return track.track_id
        return None

    # -- placeholders for the timeline overlay --------------------------------------------------------

    def placeholder(self, job: Job) -> tuple[str, int, int] | None:
        """Where an unfinished job's clip will appear: ``(track_id, start, end)`` in timeline frames."""
        project = self.project
        studio = job.request.extra.get(STUDIO_KEY, {})
        fps = project.settings.fps
        length = max(1, round(job.request.duration_s * fps))
        mode = studio.get("mode", "new")
        if mode == "take":
            target = studio.get("take_of")
            if target and project.has_clip(target):
                clip = project.clip(target)
                return clip.track_id, clip.start, clip.end
            return None
        if mode == "after":
            source = studio.get("after_clip")
            if source and project.has_clip(source):
                clip = project.clip(source)
                return clip.track_id, clip.end, clip.end + length
            return None
        start = int(studio.get("start") or 0)
        track_id = self._free_video_track(project, studio.get("track_id"), start, start + length)
        if track_id is None:
            return None
        return track_id, start, start + length

    # -- persistence and shutdown ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """The window closed (or is closing): nothing starts any more."""
        return self._closed

    def save_queue(self) -> None:
        """Write the queue to disk now (as :meth:`_persist` does after each change of state)."""
        self._persist()

    def device_run_ended(self) -> None:
        """The render in another process is over (its jobs were released): the worker may run again."""
        self.device_run = None
        self._persist()
        self._schedule_kick()

    def _persist(self) -> None:
        """Keep the queue on disk with the project: in the file when it is saved and unchanged, else in
        the autosave (so a crash leaves the unfinished jobs to resume). An untitled project has no file:
        its queue goes into the untitled autosave, which start-up recovery offers after a crash (see
        :func:`app.document.orphaned_untitled_autosaves`); its unfinished jobs then come back paused and
        are offered for resume like those of a saved project."""
        doc = self.doc
        if doc is None or doc is not self._doc or self._closed:
            return  # (not ours: the window swapped documents and sync_document has not run yet)
        path = getattr(doc, "path", None)
        try:
            if path is None:
                if len(self.queue) or self.window.is_modified():
                    document.write_autosave(doc.project, None, self.queue)
            elif self.window.is_modified():
                document.write_autosave(doc.project, doc.path, self.queue)
            else:
                document.save(doc.project, doc.path, self.queue)
        except Exception as exc:
            self.message.emit(f"Could not save the render queue: {exc}")

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Pause the running job (resumable), stop the worker thread. True when it stopped in time."""
        if self._closed:
            return True
        self._closed = True
        self._kick_timer.stop()
        if self.device_run is not None:
            self.device_run.stop()  # its jobs stay paused in the saved project, offered for resume
        if self._running is not None:
            queue, job_id = self._running
            with contextlib.suppress(QueueError):
                queue.pause(job_id)
        with contextlib.suppress(RuntimeError):
            self.window.removeEventFilter(self)
        return self.worker.stop(timeout_ms)


def _short(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
