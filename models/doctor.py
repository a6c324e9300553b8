"""``python main.py doctor`` and Help ▸ System check: is this machine ready to edit and generate?

Owns: the machine checks (Python, torch, CUDA, GPUs and their free memory, the memory policy each task
would get at each resolution, optional attention kernels, PyAV encoders, audio output, the Qt platform
plugin, RAM, disk space where models live, which models are ready). Every problem carries the fix.
:func:`collect` returns :class:`Check` objects for the app's dialog; :func:`main` prints them.

Must not import: PySide6 (the Qt check runs in a subprocess), ``app``. torch is imported inside the
checks, so importing this module stays cheap.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core import model_store
from core.generation import RESOLUTIONS, Task

GIB = 1024**3
MIN_PYTHON = (3, 11)
PYTORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
# bootstrap.py installs these for sound and Qt's X11 plugin.
QT_XCB_PACKAGES = "libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libxcb-cursor0"
# 16:9 frame sizes of the resolution buckets (spec 2.1); the planner only needs the token count.
FRAME_SIZES = {"480P": (480, 832), "540P": (544, 960), "720P": (720, 1280)}
# Reference card for the memory table when there is no GPU: what a common 24 GiB card would get.
REFERENCE_FREE_BYTES = 23 * GIB


@dataclass(frozen=True)
class Check:
    """One line of the report. ``status``: ok, info, warning (works, with less) or problem."""

    group: str
    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def symbol(self) -> str:
        return {"ok": "OK ", "info": " - ", "warning": "(!)", "problem": "XX "}[self.status]


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    capability: tuple[int, int]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver version from ``nvidia-smi`` (None when there is no working driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        result = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = result.stdout.strip().splitlines()
    return lines[0].strip() if result.returncode == 0 and lines else None


def _nvidia_smi_works() -> bool:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        return subprocess.run([exe, "-L"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


# ---------------------------------------------------------------------------------------------
# Individual checks


def check_python() -> list[Check]:
    version = platform.python_version()
    if sys.version_info < MIN_PYTHON:
        return [
            Check(
                "system",
                "Python",
                "problem",
                f"{version} ({sys.executable})",
                "Install Python 3.11 or newer and re-run installer/install.sh (or install.ps1).",
            )
        ]
    return [Check("system", "Python", "ok", f"{version} on {platform.system()} {platform.machine()}")]


def check_ram() -> list[Check]:
    try:
        import psutil
    except ImportError:
        return [Check("system", "RAM", "info", "unknown (psutil is not installed)")]
    total = psutil.virtual_memory().total
    if total < 48 * GIB:
        return [
            Check(
                "system",
                "RAM",
                "warning",
                f"{total / GIB:.0f} GiB",
                "The 14B/19B models are loaded through system memory; 64 GiB or more avoids swapping. "
                "Close other programs, or add swap space.",
            )
        ]
    return [Check("system", "RAM", "ok", f"{total / GIB:.0f} GiB")]


def probe_gpus() -> tuple[list[Check], list[GpuInfo]]:
    """torch, its CUDA build, and every CUDA device with its free memory."""
    try:
        import torch
    except ImportError as exc:
        return [
            Check(
                "gpu",
                "torch",
                "problem",
                f"not importable ({exc})",
                "Re-run installer/install.sh (Linux) or installer/install.ps1 (Windows); it installs the "
                "torch build that matches this machine.",
            )
        ], []
    checks = [
        Check("gpu", "torch", "ok", f"{torch.__version__} (built for CUDA {torch.version.cuda or '-'})")
    ]
    gpus: list[GpuInfo] = []
    if torch.cuda.is_available():
        checks.append(
            Check(
                "gpu",
                "CUDA",
                "ok",
                f"runtime {torch.version.cuda}, NVIDIA driver {nvidia_driver_version() or '?'}, "
                f"{torch.cuda.device_count()} device(s)",
            )
        )
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            free, total = torch.cuda.mem_get_info(i)
            gpus.append(GpuInfo(i, props.name, int(total), int(free), (props.major, props.minor)))
        return checks, gpus
    smi = _nvidia_smi_works()
    if smi and not torch.version.cuda:
        fix = (
            f"This torch is the CPU build but an NVIDIA GPU is present: re-run installer/install.sh, or "
            f"`pip install --force-reinstall torch=={torch.__version__.split('+')[0]} --index-url "
            f"{PYTORCH_CUDA_INDEX}`."
        )
        checks.append(Check("gpu", "CUDA", "problem", "torch has no CUDA support", fix))
    elif smi:
        checks.append(
            Check(
                "gpu",
                "CUDA",
                "problem",
                f"torch {torch.__version__} cannot use the NVIDIA GPU (driver {nvidia_driver_version() or '?'})",
                "Update the NVIDIA driver to one supporting CUDA "
                f"{torch.version.cuda} (`nvidia-smi` shows the driver's CUDA version), then reboot.",
            )
        )
    else:
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            checks.append(
                Check(
                    "gpu",
                    "GPU",
                    "warning",
                    "Apple GPU (MPS): runs, but the full models need more memory than most Macs have",
                    "Use an NVIDIA GPU with 24 GB or more for 720P.",
                )
            )
        else:
            checks.append(
                Check(
                    "gpu",
                    "GPU",
                    "warning",
                    "no CUDA GPU: the editor, playback and export work; generation runs only the "
                    "tiny test models on the CPU (the 14B/19B models need an NVIDIA GPU)",
                    "Install an NVIDIA GPU with 24 GB or more and its driver (`nvidia-smi` must "
                    "work), then re-run installer/install.sh so the CUDA build of torch is "
                    "installed.",
                )
            )
    return checks, gpus


def gpu_checks(gpus: Sequence[GpuInfo]) -> list[Check]:
    out = []
    for gpu in gpus:
        detail = (
            f"{gpu.name}: {gpu.free_bytes / GIB:.1f} of {gpu.total_bytes / GIB:.1f} GiB free, compute "
            f"capability {gpu.capability[0]}.{gpu.capability[1]}"
        )
        if gpu.capability < (8, 0):
            out.append(
                Check(
                    "gpu",
                    f"GPU {gpu.index}",
                    "warning",
                    detail + " (no native bfloat16)",
                    "The models run in bfloat16; GPUs older than Ampere (RTX 30xx / A100) emulate "
                    "it slowly. Use a newer GPU for practical speed.",
                )
            )
        elif gpu.total_bytes - gpu.free_bytes > 4 * GIB:
            out.append(
                Check(
                    "gpu",
                    f"GPU {gpu.index}",
                    "warning",
                    detail + " (other programs use memory)",
                    "Close other programs using the GPU (see `nvidia-smi`) to get faster policies.",
                )
            )
        else:
            out.append(Check("gpu", f"GPU {gpu.index}", "ok", detail))
    return out


def job_size(task: Task, resolution: str, memory: Any) -> Any:
    """The planner's job for a 5 s clip of ``task`` at ``resolution`` (spec sections 3, 4.3, 5.8)."""
    height, width = FRAME_SIZES[resolution]
    per_frame = (height // 16) * (width // 16)
    if task is Task.REFERENCE_TO_VIDEO:
        return memory.JobSize.r2v(height, width, 121)
    if task is Task.TALKING_AVATAR:  # one 81-frame pass: 21 latent frames, 18.9 B transformer
        return memory.JobSize(
            tokens=21 * per_frame, frame_height=height, frame_width=width, transformer_params=18_900_000_000
        )
    return memory.JobSize(tokens=40 * per_frame, frame_height=height, frame_width=width)  # 40 latent frames


def _fallback_policy(task: Task, resolution: str, free: int) -> str:
    """Own rough rule when models.memory is unavailable: weights in bf16 plus ~30% for activations."""
    dit = (18.9 if task is Task.TALKING_AVATAR else 14.3) * 2 * 1e9
    scale = {"480P": 1.0, "540P": 1.3, "720P": 1.9}[resolution]
    act = 0.15 * dit * scale
    if free > dit + 11.4e9 + act:
        return "gpu_resident"
    if free > dit + act:
        return "park_idle"
    if free > dit / 2 + act:
        return "park_idle+fp8_storage"
    return "park_idle+fp8_storage+block_streaming"


def memory_policy_checks(gpus: Sequence[GpuInfo]) -> list[Check]:
    """Which memory policy each task would use at each resolution on the first GPU (or a 24 GiB card)."""
    free = gpus[0].free_bytes if gpus else REFERENCE_FREE_BYTES
    where = (
        f"GPU 0 ({free / GIB:.0f} GiB free)"
        if gpus
        else f"a 24 GB card ({REFERENCE_FREE_BYTES / GIB:.0f} GiB free; no GPU here, shown for reference)"
    )
    planner: Callable[[Task, str], str]
    note = ""
    try:
        from models import memory

        def planner(task: Task, resolution: str) -> str:
            plan = memory.plan_memory(free, job_size(task, resolution, memory), device="cuda")
            return "+".join(p.value for p in plan.policies)
    except Exception as exc:  # the planner's import pulls in torch and diffusers
        note = f" (rough table: models.memory unavailable: {type(exc).__name__})"

        def planner(task: Task, resolution: str) -> str:
            return _fallback_policy(task, resolution, free)

    out = []
    for task in Task:
        resolutions = ("480P", "720P") if task is Task.TALKING_AVATAR else RESOLUTIONS  # avatar: no 540P
        detail = "; ".join(f"{res} {planner(task, res)}" for res in resolutions)
        out.append(Check("memory", f"{task.value}", "info", f"on {where}: {detail}{note}"))
    return out


def check_kernels() -> list[Check]:
    out = []
    for module, dist, label, without, how in (
        (
            "flash_attn",
            "flash-attn",
            "flash-attn",
            "PyTorch SDPA is used",
            "pip install flash-attn --no-build-isolation",
        ),
        (
            "sageattention",
            "sageattention",
            "SageAttention",
            "PyTorch SDPA is used",
            "pip install sageattention",
        ),
        (
            "torchao",
            "torchao",
            "torchao",
            "fp8 uses diffusers layerwise casting",
            "pip install 'skyreels-studio[fp8]'",
        ),
    ):
        if importlib.util.find_spec(module) is not None:
            out.append(Check("kernels", label, "ok", f"{_version(dist) or 'installed'}"))
        else:
            out.append(Check("kernels", label, "info", f"not installed (optional: {without})", how))
    return out


def check_encoders() -> list[Check]:
    try:
        import av
    except ImportError as exc:
        return [
            Check("media", "PyAV", "problem", f"not importable ({exc})", "pip install --force-reinstall av")
        ]
    out = [
        Check(
            "media",
            "PyAV",
            "ok",
            f"{av.__version__} (FFmpeg {'.'.join(map(str, av.library_versions['libavcodec']))} libavcodec)",
        )
    ]
    for codec, role in (("libx264", "H.264 video export"), ("aac", "AAC audio export")):
        try:
            av.codec.Codec(codec, "w")
            out.append(Check("media", f"encoder {codec}", "ok", role))
        except Exception:
            out.append(
                Check(
                    "media",
                    f"encoder {codec}",
                    "problem",
                    f"missing: no {role}",
                    "Reinstall PyAV from PyPI (its wheels include libx264 and AAC): "
                    "pip install --force-reinstall av",
                )
            )
    return out


def check_audio(import_sounddevice: Callable[[], Any] | None = None) -> list[Check]:
    """Audio output through sounddevice/PortAudio; a missing PortAudio library is reported, not raised."""

    def default_import() -> Any:
        import sounddevice

        return sounddevice

    try:
        sd = (import_sounddevice or default_import)()
    except OSError as exc:  # sounddevice raises OSError when the PortAudio library is missing
        fix = {"linux": "sudo apt-get install libportaudio2", "darwin": "brew install portaudio"}.get(
            sys.platform, "pip install --force-reinstall sounddevice (its Windows wheel bundles PortAudio)"
        )
        return [
            Check(
                "audio",
                "audio output",
                "warning",
                f"PortAudio missing ({exc}): playback is silent, export still writes audio",
                fix,
            )
        ]
    except ImportError as exc:
        return [
            Check(
                "audio",
                "audio output",
                "warning",
                f"sounddevice not installed ({exc})",
                "pip install sounddevice",
            )
        ]
    try:
        devices = [d for d in sd.query_devices() if d.get("max_output_channels", 0) > 0]
    except Exception as exc:
        return [
            Check(
                "audio",
                "audio output",
                "warning",
                f"cannot list devices ({exc})",
                "Check the sound settings of your desktop; playback is silent until a device works.",
            )
        ]
    if not devices:
        return [
            Check(
                "audio",
                "audio output",
                "warning",
                "no output device: playback is silent, export works",
                "Connect speakers/headphones or start the sound server (PulseAudio/PipeWire).",
            )
        ]
    return [Check("audio", "audio output", "ok", f"{len(devices)} device(s), e.g. {devices[0]['name']}")]


QT_PROBE = (
    "import sys\n"
    "from PySide6.QtGui import QGuiApplication\n"
    "app = QGuiApplication(sys.argv[:1])\n"
    "print(app.platformName())\n"
)


def check_qt(timeout_s: float = 60.0) -> list[Check]:
    """Can Qt start its platform plugin here? Runs in a subprocess so this module never imports Qt."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return [Check("display", "Qt", "problem", "PySide6 is not installed", "Re-run installer/install.sh")]
    plugins_dir = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms"
    plugins = sorted(p.name for p in plugins_dir.glob("*qxcb*")) + sorted(
        p.name for p in plugins_dir.glob("*qwayland*")
    )
    env = dict(os.environ)
    headless = sys.platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    if headless:
        env["QT_QPA_PLATFORM"] = "offscreen"
    try:
        result = subprocess.run(
            [sys.executable, "-c", QT_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return [Check("display", "Qt", "warning", f"could not run the Qt probe ({exc})")]
    version = _version("PySide6-Essentials") or _version("PySide6") or "?"
    if result.returncode != 0:
        err = (result.stderr or result.stdout).strip().splitlines()
        reason = next(
            (line for line in err if "plugin" in line.lower() or "library" in line.lower()),
            err[-1] if err else f"exit code {result.returncode}",
        )
        fix = (
            f"Install Qt's X11 libraries: sudo apt-get install {QT_XCB_PACKAGES}"
            if sys.platform.startswith("linux")
            else "Reinstall PySide6: pip install --force-reinstall PySide6-Essentials"
        )
        return [Check("display", "Qt platform plugin", "problem", f"PySide6 {version}: {reason}", fix)]
    name = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "?"
    if headless:
        return [
            Check(
                "display",
                "Qt platform plugin",
                "warning",
                f"PySide6 {version} works offscreen, but there is no display (DISPLAY/WAYLAND_DISPLAY unset); "
                f"plugins here: {', '.join(plugins) or 'none'}",
                "Start the editor from a desktop session; headless commands (generate, export, models, "
                "doctor) work without one.",
            )
        ]
    return [Check("display", "Qt platform plugin", "ok", f"PySide6 {version}, platform '{name}'")]


def check_models_and_disk(config_path: str | None = None) -> list[Check]:
    out = []
    missing_bytes = 0
    for loc in model_store.task_overview(config_path):
        if loc.status is model_store.Status.READY:
            out.append(Check("models", loc.task.value, "ok", f"ready in {loc.path}"))
            continue
        size = loc.repo.approx_bytes(loc.task)
        missing_bytes = max(missing_bytes, size)
        detail = f"{loc.status.value} ({loc.repo.repo_id}, ~{model_store.format_bytes(size)})"
        if loc.report is not None and loc.report.status is model_store.Status.PARTIAL:
            detail += f": {len(loc.report.missing)} missing, {len(loc.report.corrupt)} damaged file(s) in {loc.path}"
        out.append(Check("models", loc.task.value, "info", detail, model_store.download_command(loc.task)))
    places = {model_store.hub_cache_dir(): "Hugging Face cache"}
    for folder in model_store.StoreConfig.load(config_path).folders:
        places.setdefault(Path(folder), "model folder")
    for place, label in places.items():
        existing = place
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        free = shutil.disk_usage(existing).free
        detail = f"{model_store.format_bytes(free)} free at {place}"
        if free < missing_bytes * 1.05:
            out.append(
                Check(
                    "disk",
                    label,
                    "warning",
                    detail + f"; a missing model needs up to ~{model_store.format_bytes(missing_bytes)}",
                    "Free disk space, or download elsewhere: python main.py models download --task TASK "
                    "--local-dir /path/on/bigger/disk (or set HF_HUB_CACHE).",
                )
            )
        else:
            out.append(Check("disk", label, "ok", detail))
    return out


def _guarded(group: str, name: str, fn: Callable[[], list[Check]]) -> list[Check]:
    try:
        return fn()
    except Exception as exc:  # one broken check must not hide the others
        return [
            Check(
                group,
                name,
                "warning",
                f"check failed: {type(exc).__name__}: {exc}",
                "Report this with the output of `python main.py doctor`.",
            )
        ]


def collect(
    *, gpus: Sequence[GpuInfo] | None = None, include_qt: bool = True, config_path: str | None = None
) -> list[Check]:
    """Run every check.

    Args:
        gpus: use these instead of probing (tests, or a caller that already probed).
        include_qt: run the Qt subprocess probe (the app skips it: Qt evidently works there).
        config_path: the user's models.json (default: per-user config).

    Returns:
        The checks in display order; problems and warnings carry a ``fix``.
    """
    checks = _guarded("system", "Python", check_python) + _guarded("system", "RAM", check_ram)
    if gpus is None:
        found: list[GpuInfo] = []

        def probe() -> list[Check]:
            result, devices = probe_gpus()
            found.extend(devices)
            return result

        checks += _guarded("gpu", "torch", probe)
        gpus = found
    checks += gpu_checks(gpus)
    checks += _guarded("memory", "memory policy", lambda: memory_policy_checks(gpus))
    checks += _guarded("kernels", "attention kernels", check_kernels)
    checks += _guarded("media", "encoders", check_encoders)
    checks += _guarded("audio", "audio output", check_audio)
    if include_qt:
        checks += _guarded("display", "Qt", check_qt)
    checks += _guarded("models", "models", lambda: check_models_and_disk(config_path))
    return checks


def render(checks: Sequence[Check]) -> str:
    lines = []
    group = None
    for check in checks:
        if check.group != group:
            group = check.group
            lines.append(f"\n[{group}]")
        lines.append(f"{check.symbol} {check.name}: {check.detail}")
        if check.fix:
            prefix = {"warning": "fix: ", "problem": "fix: "}.get(
                check.status, "get: " if check.group == "models" else ""
            )
            lines.append(f"      {prefix}{check.fix}")
    problems = sum(c.status == "problem" for c in checks)
    warnings = sum(c.status == "warning" for c in checks)
    lines.append(f"\n{problems} problem(s), {warnings} warning(s).")
    return "\n".join(lines).lstrip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python main.py doctor [--json] [--no-qt]``; exit code 1 when a problem was found."""
    parser = argparse.ArgumentParser(prog="python main.py doctor", description="Check this machine.")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--no-qt", action="store_true", help="skip the Qt platform probe")
    args = parser.parse_args(list(argv or []))
    checks = collect(include_qt=not args.no_qt)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        print(render(checks))
    return 1 if any(c.status == "problem" for c in checks) else 0
