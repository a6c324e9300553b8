"""Pre-flight estimates for the shot dialog: how long a job takes and whether it fits the GPU.

Memory comes from the memory planner (:func:`models.memory.plan_memory`) for the job's size on the
device's free memory. Time comes from a **per-device calibration**: after every real render the backend
records the measured seconds per denoising step for (device, task, resolution) in
``<user config>/skyreels-studio/calibration.json`` (see :func:`record_step_time`); before the first render on
a device a rough compute model is used (tokens x parameters at an assumed effective throughput) and the
estimate says so.

Never imports PySide6 or ``app``. Called on the GUI thread: it never imports torch itself (when torch is
not loaded yet, it answers without the memory part), so the dialog never stalls on an import.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from core.generation import Quality, RenderRequest, Task

# Typical output size per resolution (16:9 landscape) when the inputs are not read yet.
_SIZES = {"480P": (480, 848), "540P": (544, 960), "720P": (720, 1280)}
_ASPECTS = {"1:1": 1.0, "3:4": 4 / 3, "4:3": 3 / 4, "16:9": 9 / 16, "9:16": 16 / 9}  # height / width
_PARAMS = {Task.TALKING_AVATAR: 18_882_046_784}
_DEFAULT_PARAMS = 14_288_491_584
_DEFAULT_STEPS = {Task.TALKING_AVATAR: 4}
_EXTENSIONS = (Task.SINGLE_SHOT_EXTENSION, Task.SHOT_SWITCHING_EXTENSION)
_ASSUMED_TFLOPS = 250.0  # effective bf16 throughput of an H100-class GPU before calibration
_LOAD_SECONDS = 60.0  # first load of a 14-19B pipeline from a fast disk
_lock = threading.Lock()


def calibration_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "skyreels-studio" / "calibration.json"


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _key(device_name: str, task: Task, resolution: str) -> str:
    return f"{device_name}|{task.value}|{resolution}"


def record_step_time(device_name: str, task: Task, resolution: str, seconds_per_step: float,
                     path: Path | None = None) -> None:
    """Remember a measured step time (exponential average with earlier runs); atomic write."""
    path = path or calibration_path()
    with _lock:
        data = _read(path)
        key = _key(device_name, task, resolution)
        old = data.get(key)
        data[key] = seconds_per_step if old is None else 0.5 * old + 0.5 * seconds_per_step
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


def _pieces_and_steps(request: RenderRequest) -> tuple[int, int, int]:
    """(pieces, steps per piece, latent frames per piece) of a request."""
    task = request.task
    steps = request.steps or _DEFAULT_STEPS.get(task, 8)
    # Extensions: the latent frames of the largest forward, the condition latents the transformer
    # sees beside the new ones included (models.extension.pipeline.job_size): single shot 7 + 33 new,
    # shot switching 2d - 1 + 6d + 1 = 8d.
    if task == Task.SINGLE_SHOT_EXTENSION:
        return max(1, -(-int(request.duration_s) // 5)), steps, 7 + 33
    if task == Task.SHOT_SWITCHING_EXTENSION:
        return 1, steps, 8 * int(request.duration_s)
    if task == Task.TALKING_AVATAR:
        seconds = (request.audio_end_s or 0) - (request.audio_start_s or 0) or request.duration_s
        frames = int(seconds * 25)
        # A keyframe pass, then 81-frame windows advancing by 76 frames (5 motion frames overlap).
        passes = 1 if frames <= 81 else 2 + -(-(frames - 81) // 76)
        return passes, steps, 21
    pixel_frames = int(request.duration_s * 24) + 1
    return 1, steps, (pixel_frames - 1) // 4 + 1 + 4  # + the four reference slots


def _frame_size(request: RenderRequest) -> tuple[int, int]:
    resolution = "480P" if request.quality == Quality.DRAFT else request.resolution
    height, width = _SIZES.get(resolution, _SIZES["720P"])
    if request.aspect in _ASPECTS:
        ratio = _ASPECTS[request.aspect]
        area = height * width
        width = int((area / ratio) ** 0.5) // 16 * 16
        height = int(width * ratio) // 16 * 16
    return height, width


def output_frames(request: RenderRequest) -> int:
    """Frames a render writes (the new frames of an extension; the avatar's at 25 fps)."""
    task = request.task
    if task == Task.TALKING_AVATAR:
        seconds = (request.audio_end_s or 0) - (request.audio_start_s or 0) or request.duration_s
        return int(seconds * 25) + 1
    if task in (Task.SINGLE_SHOT_EXTENSION, Task.SHOT_SWITCHING_EXTENSION):
        return int(request.duration_s * 24)
    return int(request.duration_s * 24) + 1


def disk_bytes(request: RenderRequest) -> int:
    """Disk a render needs for its checkpoints and output: the exact frames of its pieces (uncompressed
    ``.npy``, the bulk), their playable MP4s and the joined output (a small fraction on top). 0 for the
    tiny test models, whose frames are a few kilobytes."""
    if request.model == "tiny":
        return 0
    height, width = _frame_size(request)
    return int(output_frames(request) * height * width * 3 * 1.15)


def rough_seconds(request: RenderRequest) -> float:
    """Uncalibrated time: a forward costs about 2 x params x tokens FLOPs plus attention
    (4 x tokens^2 x 5120 x 40 layers) at an assumed effective throughput, plus loading."""
    pieces, steps, latent_frames = _pieces_and_steps(request)
    height, width = _frame_size(request)
    tokens = latent_frames * (height // 16) * (width // 16)
    params = _PARAMS.get(request.task, _DEFAULT_PARAMS)
    flops = 2 * params * tokens + 4 * tokens * tokens * 5120 * 40
    return _LOAD_SECONDS + flops / (_ASSUMED_TFLOPS * 1e12) * steps * pieces


def estimate(request: RenderRequest, calibration: Path | None = None) -> dict[str, Any] | None:
    """The estimate as a plain dict (``seconds``, ``fits``, ``peak_bytes``, ``available_bytes``,
    ``disk_bytes``, ``note``), or None for the tiny test models (the dialog has measured CPU timings for those)."""
    if request.model == "tiny":
        return None
    pieces, steps, latent_frames = _pieces_and_steps(request)
    height, width = _frame_size(request)
    tokens = latent_frames * (height // 16) * (width // 16)
    params = _PARAMS.get(request.task, _DEFAULT_PARAMS)
    resolution = "480P" if request.quality == Quality.DRAFT else request.resolution
    from core.model_store import format_bytes  # when asked, not when the editor imports this module

    result: dict[str, Any] = {"disk_bytes": disk_bytes(request)}
    notes = [f"about {format_bytes(result['disk_bytes'])} of disk for its checkpoints"]
    device_name = None
    if "torch" in sys.modules:  # loaded by the render worker's warm-up; never imported here
        import torch

        from models.memory import JobSize, free_device_memory, plan_memory

        if torch.cuda.is_available():
            device_name = torch.cuda.get_device_name(0)
            free = free_device_memory("cuda")
            job = JobSize(tokens=tokens, frame_height=height, frame_width=width, transformer_params=params,
                          low_vram_tiles_vae=request.task not in _EXTENSIONS)  # as extension job_size
            plan = plan_memory(free, job, device="cuda", offload=request.offload, low_vram=request.low_vram)
            result.update(peak_bytes=plan.estimated_peak_bytes, available_bytes=free,
                          fits=free is None or plan.estimated_peak_bytes <= free)
            notes.append("plan: " + ", ".join(p.value for p in plan.policies))
        else:
            notes.append("no CUDA GPU here: the full-size models need one (the tiny test models run on the CPU)")
            return {"fits": False, "disk_bytes": result["disk_bytes"], "note": "; ".join(notes)}
    else:
        notes.append("memory check once the engine has loaded")
    measured = _read(calibration or calibration_path()).get(_key(device_name, request.task, resolution)) \
        if device_name else None
    if measured is not None:
        per_step = float(measured)
        notes.append(f"measured on this {device_name}")
        result["seconds"] = _LOAD_SECONDS + per_step * steps * pieces
    else:
        result["seconds"] = rough_seconds(request)
        notes.append("rough until the first render on this GPU")
    result["note"] = "; ".join(notes)
    return result
