"""Which devices ``main.py jobs run`` can render on, found without importing torch (the editor asks).

:func:`find_render_devices` reads ``$SKYREELS_RENDER_DEVICES`` first: a comma-separated list
(``cuda:0,cuda:2``, or ``cpu,cpu`` to try the several-GPU flow on a machine without GPUs) that is used as
given. Otherwise it asks ``nvidia-smi`` for the GPUs and numbers them as CUDA programs see them: when
``$CUDA_VISIBLE_DEVICES`` is set, only those, in that order, from ``cuda:0`` (indices or ``GPU-…`` UUID
prefixes; like CUDA, the list ends at an entry that is unknown or repeated).

The editor offers Generate ▸ Render Waiting Jobs on All GPUs… when :attr:`DeviceScan.usable`: two GPUs or
more, or any override. ``nvidia-smi`` takes ~50-500 ms: call this off the GUI thread.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["DEVICES_ENV", "DeviceScan", "RenderDevice", "find_render_devices"]

DEVICES_ENV = "SKYREELS_RENDER_DEVICES"


@dataclass(frozen=True)
class RenderDevice:
    """One device a render worker process can use: ``name`` as ``--devices`` takes it, ``label`` for people."""

    name: str
    label: str


@dataclass(frozen=True)
class DeviceScan:
    """What :func:`find_render_devices` found, and why there is nothing when there is nothing (``note``)."""

    devices: tuple[RenderDevice, ...]
    overridden: bool = False
    note: str = ""

    @property
    def usable(self) -> bool:
        """Worth rendering on several devices: two GPUs or more, or devices named by the override."""
        return len(self.devices) >= 2 or (self.overridden and bool(self.devices))


def find_render_devices(
    environ: Mapping[str, str] | None = None,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> DeviceScan:
    """The devices to offer. ``environ`` and ``run`` are injectable for tests."""
    env = os.environ if environ is None else environ
    override = env.get(DEVICES_ENV, "").strip()
    if override:
        names = [name.strip() for name in override.split(",") if name.strip()]
        return DeviceScan(tuple(RenderDevice(name, f"{name} (from ${DEVICES_ENV})") for name in names), True)
    exe = shutil.which("nvidia-smi", path=env.get("PATH"))
    if exe is None:
        return DeviceScan((), note="No NVIDIA GPU was found (nvidia-smi is not installed).")
    try:
        done = run([exe, "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"],
                   capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return DeviceScan((), note=f"nvidia-smi did not answer: {error}")
    if done.returncode != 0:
        reason = (done.stderr or done.stdout or "").strip().splitlines()
        return DeviceScan((), note=f"nvidia-smi failed: {reason[0] if reason else f'exit code {done.returncode}'}")
    gpus = []
    for line in done.stdout.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) >= 4:
            gpus.append(fields)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        chosen = []
        for entry in (e.strip() for e in visible.split(",")):
            match = next((g for g in gpus if entry and (g[0] == entry or g[1].startswith(entry))), None)
            if match is None or match in chosen:
                break  # CUDA stops at the first entry it cannot use (unknown, or named twice)
            chosen.append(match)
        gpus = chosen
    devices = []
    for number, (_index, _uuid, name, memory) in enumerate(gpus):
        size = f", {round(int(memory) / 1024)} GB" if memory.isdigit() else ""
        devices.append(RenderDevice(f"cuda:{number}", f"cuda:{number} — {name}{size}"))
    note = ""
    if not devices:
        note = "No NVIDIA GPU is visible" + (" ($CUDA_VISIBLE_DEVICES hides them)." if visible is not None else ".")
    return DeviceScan(tuple(devices), note=note)
