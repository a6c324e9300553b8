"""The local inference backend: runs :class:`core.generation.RenderRequest` jobs on this machine.

:class:`LocalBackend` implements the ``InferenceBackend`` protocol of :mod:`core.generation` for the
four SkyReels-V3 tasks. It resolves the model (a folder, a Hugging Face repo id from the local cache,
or ``tiny``), keeps the last pipeline loaded between jobs (one model family at a time, so two 14B
transformers never share a GPU), picks the device, dtype and memory plan, checkpoints every finished
piece under the request's ``work_dir`` (a rerun of the same request resumes from them) and writes the
MP4.

Threading: lives on the app's single GPU worker thread (or the CLI's main thread); ``emit`` is called on
that thread; ``cancel`` may be set from any thread and lands within one denoising step (block hooks make
it land within one transformer block), skipping the VAE decode.

Imports torch and the pipelines lazily. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.generation import (
    DiskFull,
    OutOfMemory,
    Progress,
    RenderCancelled,
    RenderEvent,
    RenderRequest,
    RenderResult,
    RequestInvalid,
    Task,
)
from models.input_cache import InputCache
from models.pipeline_base import PieceStore, RunContext, encoder_threads_for, request_fingerprint
from models.render_output import PieceOutput
from models.tiny import TINY, tiny_bucket_tables, tiny_checkpoint

FPS = {Task.TALKING_AVATAR: 25}
DEFAULT_FPS = 24

# Fields of a request that do not change its frames (so they stay out of the resume fingerprint).
_NOT_IN_FINGERPRINT = ("output_path", "work_dir", "device", "offload", "low_vram")


def fingerprint(request: RenderRequest) -> str:
    payload = {k: v for k, v in request.to_json().items() if k not in _NOT_IN_FINGERPRINT}
    return request_fingerprint(payload)


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    pipeline: Any


DISK_MARGIN_BYTES = 1024**3  # left free beside a render's files (the system, the editor's autosaves)


def check_disk_space(request: RenderRequest, disk_usage: Callable[[str], Any] = shutil.disk_usage) -> None:
    """Refuse a render whose checkpoints and output would not fit the disk of its work folder
    (:class:`DiskFull`), before any model loads; what an earlier attempt left there counts as written."""
    from core.model_store import existing_ancestor, format_bytes
    from core.render_cleanup import folder_size
    from models.estimate import disk_bytes

    needed = disk_bytes(request)
    if not needed:
        return
    work = Path(request.work_dir)
    needed = max(0, needed - (folder_size(work) if work.is_dir() else 0))
    existing = existing_ancestor(work)
    free = int(disk_usage(str(existing)).free)
    if free < needed + DISK_MARGIN_BYTES:
        raise DiskFull(
            f"Not enough disk space for this render: it needs about {format_bytes(needed)} for its checkpoints "
            f"and output in {existing}, which has {format_bytes(free)} free (1 GB is kept free). Free some space "
            "(Generate ▸ Clean Up Render Files… deletes the checkpoints nothing needs any more) or move the "
            "project to a larger disk."
        )


class LocalBackend:
    """Runs jobs with the local pipelines. See the module docstring for the threading contract.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...;
            a request's own ``device`` other than ``"auto"`` wins.
        tiny_dir: where tiny checkpoints are cached (default: :func:`models.tiny.tiny_root`).
    """

    def __init__(self, device: str = "auto", tiny_dir: str | None = None) -> None:
        self.device = device
        self.tiny_dir = tiny_dir
        self._loaded: _Loaded | None = None
        self._validated: tuple[RenderRequest, tuple[Any, ...], Any] | None = None
        # Decoded inputs of recent jobs: another seed of the same shot does not decode its files again.
        self._inputs = InputCache()
        self._lock = threading.Lock()

    # -- protocol -------------------------------------------------------------------------------
    def validate(self, request: RenderRequest) -> None:
        """Refuse a request that can never run, before any model loads (:class:`RequestInvalid`).

        What validation read (decoded audio, the clip's condition frames, the references) is kept for
        a :meth:`render` of the same request that follows, while the input files are unchanged: the
        editor and the CLI validate right before they render, and a 200 s avatar's audio is decoded and
        normalised once, not twice."""
        self._validated = (request, _input_stamps(request), self._prepare(request))
        check_disk_space(request)

    def render(
        self,
        request: RenderRequest,
        emit: Callable[[RenderEvent], None],
        cancel: threading.Event,
    ) -> RenderResult:
        started = time.monotonic()
        validated, self._validated = self._validated, None
        # After validate() of this very request (inputs unchanged) its inputs are read and the disk checked.
        checked = False
        if validated is not None and validated[0] == request and validated[1] == _input_stamps(request):
            task_request, checked = validated[2], True
        else:
            task_request = self._prepare(request)
        timer = _StepTimer(emit)
        ctx = self._context(request, timer, cancel)
        reused = self._reassemble(request, task_request, ctx)
        if reused is not None:
            return dataclasses.replace(reused, seconds=time.monotonic() - started)
        import torch

        if not checked:
            check_disk_space(request)
        try:
            with self._lock:
                result = self._run(request, task_request, ctx)
        except torch.cuda.OutOfMemoryError as error:
            self.unload()
            raise OutOfMemory(
                f"The GPU ran out of memory for this {request.resolution} {request.task.value.replace('_', ' ')} "
                "job. Try the draft preset or a lower resolution, or enable low-VRAM mode (fp8 weights and "
                "block offload). Finished pieces are kept and the next attempt resumes from them."
            ) from error
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            raise DiskFull(
                f"The disk is full: the render's files could not be written to {request.work_dir}. Finished "
                "pieces are kept: free some space (Generate ▸ Clean Up Render Files… deletes the checkpoints "
                "nothing needs any more) and resume the render."
            ) from error
        self._calibrate(request, timer)
        return dataclasses.replace(result, seconds=time.monotonic() - started)

    def reassemble(
        self,
        request: RenderRequest,
        emit: Callable[[RenderEvent], None],
        cancel: threading.Event,
    ) -> RenderResult | None:
        """The output of a render that already finished (on a render node, or ``main.py jobs run`` on other
        devices), joined again from the checkpoints in ``request.work_dir`` (``complete.json``) into
        ``request.output_path``. Never loads or runs a model, so the editor may call it while another
        process renders on its GPU.

        Args:
            request: the job's request (its ``device`` does not matter: it is not in the fingerprint).
            emit: receives a ``StatusMessage`` when the finished render is reused.
            cancel: checked before any work.

        Returns:
            The result, or None when the render has not finished (no complete manifest of this request,
            a part missing) or its pieces cannot be joined as they are (a render would re-encode them).

        Raises:
            RequestInvalid: the inputs cannot be read (validation reads them; the avatar's sound comes
                from them).
            RenderCancelled: ``cancel`` was set.
        """
        if cancel.is_set():
            raise RenderCancelled("cancelled before re-assembly")
        started = time.monotonic()
        prepared = self._prepare(request)
        reused = self._reassemble(request, prepared, self._context(request, emit, cancel))
        return None if reused is None else dataclasses.replace(reused, seconds=time.monotonic() - started)

    def _context(self, request: RenderRequest, emit: Callable[[RenderEvent], None],
                 cancel: threading.Event) -> RunContext:
        """The run context of ``request``: its checkpoints in ``work_dir`` (the output folder is created)."""
        fps = FPS.get(request.task, DEFAULT_FPS)
        store = PieceStore(request.work_dir, fingerprint(request), fps, encoder_threads=self._encoder_threads(request))
        Path(request.output_path).parent.mkdir(parents=True, exist_ok=True)
        return RunContext(emit, cancel, store)

    def _reassemble(self, request: RenderRequest, prepared: Any, ctx: RunContext) -> RenderResult | None:
        """The output of a render that already finished (here or on a render node), joined again from its
        checkpointed pieces without loading any model; None when it has not finished."""
        manifest = ctx.pieces.completed() if ctx.pieces is not None else None
        if manifest is None:
            return None
        audio = None
        if manifest.get("audio_rate"):
            # Only the avatar has a sound track: its loudness-normalised speech, read by validation.
            audio = getattr(prepared[1], "speech", None)
            if audio is None:
                return None
        from core.media.concat import IncompatibleParts, concat_videos

        ctx.status("reusing the finished render")
        try:
            concat_videos(manifest["paths"], request.output_path, audio=audio, audio_rate=manifest.get("audio_rate"))
        except IncompatibleParts:
            return None  # the pipelines' own resume re-encodes what cannot be joined as it is
        return RenderResult(request.output_path, int(manifest["frames"]), int(manifest["fps"]),
                            int(manifest["width"]), int(manifest["height"]), has_audio=audio is not None)

    def _calibrate(self, request: RenderRequest, timer: _StepTimer) -> None:
        """Feed the measured step time to the pre-flight estimator (per GPU model, task, resolution)."""
        per_step = timer.seconds_per_step()
        device = self._device(request)
        if per_step is None or device.type != "cuda" or request.model == TINY:
            return
        import torch

        from models.estimate import record_step_time

        resolution = "480P" if request.quality.value == "draft" else request.resolution
        # A read-only config folder only costs estimate accuracy.
        with contextlib.suppress(OSError):
            record_step_time(torch.cuda.get_device_name(device), request.task, resolution, per_step)

    def warm_up(self) -> None:
        """Import torch and the pipelines now (the app calls this on its worker while the user is idle),
        so the first job does not hold the interpreter lock for the imports."""
        import safetensors.torch
        import torch
        from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
        from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

        import models.avatar.pipeline
        import models.avatar.wav2vec2
        import models.extension.pipeline
        import models.memory
        import models.r2v.loading
        import models.r2v.pipeline  # noqa: F401

        # The names the loaders import lazily: resolving them here moves the slow first import
        # (module bodies run under the interpreter lock) off the first job.
        del safetensors, torch, AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
        del AutoTokenizer, UMT5Config, UMT5EncoderModel

    def unload(self) -> None:
        """Drop the loaded pipeline (frees GPU memory; the next job loads again)."""
        if self._loaded is None:
            return  # nothing to free: a full collection holds the interpreter lock for ~0.2 s
        self._loaded = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a dependency of models
            pass

    # -- helpers --------------------------------------------------------------------------------
    def _encoder_threads(self, request: RenderRequest) -> int:
        try:
            return encoder_threads_for(self._device(request))
        except RequestInvalid:  # no CUDA here: a finished render may still be re-assembled; _run reports it
            return 1

    def _device(self, request: RenderRequest) -> Any:
        import torch

        name = request.device if request.device not in ("", "auto") else self.device
        if name in ("", "auto"):
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RequestInvalid("CUDA was requested but no CUDA GPU is available; use --device cpu.")
        return device

    def _model_folder(self, request: RenderRequest) -> Path:
        if request.model == TINY:
            return tiny_checkpoint(request.task, self.tiny_dir)
        from core.model_store import resolve_for_pipeline

        return Path(resolve_for_pipeline(request.task, request.model or None))

    def _pipeline(self, key: tuple[Any, ...], plan: Any, build: Callable[[], Any], ctx: RunContext) -> Any:
        """The loaded pipeline of ``key`` and memory ``plan`` (loaded by ``build`` unless it already is;
        the load, minutes for the full-size models, is announced with the plan it carries out)."""
        key = (*key, dataclasses.replace(plan, estimated_peak_bytes=0, reasons=()))
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded.pipeline
        self.unload()  # one family at a time
        ctx.status(loading_message(plan))
        pipeline = build()
        self._loaded = _Loaded(key, pipeline)
        return pipeline

    def _prepare(self, request: RenderRequest) -> Any:
        """Task-specific request object, validated (reads input files, loads no model)."""
        if request.task == Task.REFERENCE_TO_VIDEO:
            from models.r2v.pipeline import R2VRequest, validate_request

            r2v = R2VRequest.from_render_request(request)
            return r2v, validate_request(r2v, self._inputs)
        if request.task in (Task.SINGLE_SHOT_EXTENSION, Task.SHOT_SWITCHING_EXTENSION):
            from models.extension.pipeline import ExtensionRequest, prepare_request

            extension = ExtensionRequest.from_render_request(request)
            if request.model == TINY and extension.bucket_table is None:
                table = tiny_bucket_tables(request.task)[extension.resolution]
                extension = dataclasses.replace(extension, bucket_table=dict(table))
            return extension, prepare_request(extension, self._inputs)
        from models.avatar.pipeline import AvatarRequest
        from models.avatar.pipeline import validate_request as validate_avatar

        avatar = AvatarRequest.from_render_request(request)
        return avatar, validate_avatar(avatar, self._inputs)

    def _run(self, request: RenderRequest, prepared: Any, ctx: RunContext) -> RenderResult:
        import torch

        device = self._device(request)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        tiny = request.model == TINY
        buckets = tiny_bucket_tables(request.task) if tiny else None
        folder = self._model_folder(request)

        if request.task == Task.REFERENCE_TO_VIDEO:
            return self._run_r2v(request, prepared, ctx, folder, device, dtype, buckets)
        if request.task in (Task.SINGLE_SHOT_EXTENSION, Task.SHOT_SWITCHING_EXTENSION):
            return self._run_extension(request, prepared, ctx, folder, device, dtype)
        return self._run_avatar(request, prepared, ctx, folder, device, dtype, buckets)

    def _memory_plan(self, request: RenderRequest, device: Any, dtype: Any, job: Any) -> Any:
        from models.memory import MemoryPlan, free_device_memory, plan_memory

        if device.type != "cuda":
            return MemoryPlan(device=str(device), compute_dtype=dtype)
        return plan_memory(free_device_memory(device), job, device=str(device), compute_dtype=dtype,
                           offload=request.offload, low_vram=request.low_vram)

    def _run_r2v(self, request, prepared, ctx, folder, device, dtype, buckets) -> RenderResult:
        from models.r2v.pipeline import job_size, load_pipeline

        r2v, images = prepared
        with PieceOutput(request.output_path, DEFAULT_FPS, ctx.pieces) as output:
            finished = ctx.finished_piece(0)
            if finished is None:
                plan = self._memory_plan(request, device, dtype, job_size(r2v, images, buckets))
                pipeline = self._pipeline(
                    ("r2v", str(folder), str(device), dtype), plan,
                    lambda: load_pipeline(folder, device=device, dtype=dtype, plan=plan, bucket_tables=buckets),
                    ctx,
                )
                frames = pipeline.generate(r2v, ctx, images=images).frames
            else:
                ctx.status("reusing the finished render")
                frames = finished.frames
            # One piece: its playable MP4 already is the output, so it is copied, not encoded again.
            output.write(frames)
        return RenderResult(request.output_path, len(frames), DEFAULT_FPS, frames.shape[2], frames.shape[1])

    def _run_extension(self, request, prepared, ctx, folder, device, dtype) -> RenderResult:
        from models.extension.pipeline import ExtensionPipeline, check_checkpoint, job_size, load_components

        extension, inputs = prepared
        check_checkpoint(folder, extension.mode)
        # On CUDA the planner picks the memory policies for this job's size (CPU: all resident); the
        # pipeline carries them out with its own offload, block upload, fp8 and FFN chunking. The
        # official flags still force what they always did (--low_vram: fp8 blocks uploaded one by one).
        plan = self._memory_plan(request, device, dtype, job_size(inputs))
        offload = request.offload or request.low_vram
        pipeline = self._pipeline(
            ("extension", extension.mode, str(folder), str(device), dtype, offload, request.low_vram), plan,
            lambda: ExtensionPipeline(load_components(folder, extension.mode, device=device, dtype=dtype,
                                                      offload=offload, low_vram=request.low_vram, plan=plan)),
            ctx,
        )
        # Frames go to the output piece by piece (a 30 s extension never sits in memory); the pieces'
        # MP4s are joined by copying their packets, so no frame is encoded twice.
        with PieceOutput(request.output_path, DEFAULT_FPS, ctx.pieces) as output:
            result = pipeline(inputs, ctx, on_frames=output.write)
            if len(result.frames):  # shot switching (one short piece) returns its frames directly
                output.write(result.frames)
        return RenderResult(request.output_path, output.frames, DEFAULT_FPS, *output.size)

    def _run_avatar(self, request, prepared, ctx, folder, device, dtype, buckets) -> RenderResult:
        from models.avatar.pipeline import job_size, load_pipeline, render_to_file

        avatar, inputs = prepared
        plan = self._memory_plan(request, device, dtype, job_size(avatar, inputs, buckets))
        pipeline = self._pipeline(
            ("avatar", str(folder), str(device), dtype), plan,
            lambda: load_pipeline(folder, device=device, dtype=dtype, plan=plan, bucket_tables=buckets),
            ctx,
        )
        return render_to_file(pipeline, avatar, request.output_path, ctx, inputs=inputs)


def loading_message(plan: Any) -> str:
    """The status shown while a pipeline loads: on a GPU, with how its memory plan places the models
    (the plan's deciding reason: everything on the device, blocks streamed from host RAM, fp8 ...)."""
    if not str(plan.device).startswith("cuda") or not plan.reasons:
        return "loading the models"
    return f"loading the models: {plan.reasons[-1]}"


def _input_stamps(request: RenderRequest) -> tuple[Any, ...]:
    """Size and modification time of every input file (None for a missing one)."""
    paths = [*request.reference_images, request.input_video, request.input_image, request.input_audio]
    stamps = []
    for path in paths:
        if not path:
            continue
        try:
            info = os.stat(path)
            stamps.append((path, info.st_size, info.st_mtime_ns))
        except OSError:
            stamps.append((path, None, None))
    return tuple(stamps)


class _StepTimer:
    """Passes events through and times the denoising steps (for the estimator's calibration)."""

    def __init__(self, emit: Callable[[RenderEvent], None]) -> None:
        self._emit = emit
        self._times: list[float] = []

    def __call__(self, event: RenderEvent) -> None:
        if isinstance(event, Progress):
            self._times.append(time.monotonic())
        self._emit(event)

    def seconds_per_step(self) -> float | None:
        if len(self._times) < 3:
            return None
        gaps = sorted(b - a for a, b in zip(self._times, self._times[1:], strict=False))
        return gaps[len(gaps) // 2]  # the median: piece boundaries (decode, encode) are not steps
