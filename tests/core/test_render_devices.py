"""core.render_devices: the override, nvidia-smi's answer numbered as CUDA sees it, and the reasons for
finding nothing (nvidia-smi is faked: these tests run anywhere)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.render_devices import DEVICES_ENV, find_render_devices

SMI = """0, GPU-aaaa1111, NVIDIA H100 80GB HBM3, 81559
1, GPU-bbbb2222, NVIDIA H100 80GB HBM3, 81559
2, GPU-cccc3333, NVIDIA RTX 6000 Ada Generation, 49140
"""


@pytest.fixture
def path_with_smi(tmp_path: Path) -> str:
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return str(tmp_path)


def answer(stdout: str = SMI, code: int = 0, stderr: str = ""):
    calls = []

    def run(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, code, stdout, stderr)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_the_override_is_used_as_given_even_without_gpus() -> None:
    scan = find_render_devices({DEVICES_ENV: "cpu, cpu"}, run=answer(code=99))
    assert [d.name for d in scan.devices] == ["cpu", "cpu"] and scan.overridden and scan.usable
    one = find_render_devices({DEVICES_ENV: "cuda:1"}, run=answer())
    assert one.usable  # whoever set the override asked for it


def test_every_gpu_nvidia_smi_lists(path_with_smi: str) -> None:
    run = answer()
    scan = find_render_devices({"PATH": path_with_smi}, run=run)
    assert [d.name for d in scan.devices] == ["cuda:0", "cuda:1", "cuda:2"] and scan.usable
    assert scan.devices[2].label == "cuda:2 — NVIDIA RTX 6000 Ada Generation, 48 GB"
    assert "--query-gpu=index,uuid,name,memory.total" in run.calls[0]


def test_cuda_visible_devices_renumbers_from_zero(path_with_smi: str) -> None:
    scan = find_render_devices({"PATH": path_with_smi, "CUDA_VISIBLE_DEVICES": "2,GPU-aaaa"}, run=answer())
    assert [d.label for d in scan.devices] == ["cuda:0 — NVIDIA RTX 6000 Ada Generation, 48 GB",
                                               "cuda:1 — NVIDIA H100 80GB HBM3, 80 GB"]
    repeated = find_render_devices({"PATH": path_with_smi, "CUDA_VISIBLE_DEVICES": "1,GPU-bbbb,0"}, run=answer())
    assert [d.name for d in repeated.devices] == ["cuda:0"]  # CUDA ends the list at a repeated device
    hidden = find_render_devices({"PATH": path_with_smi, "CUDA_VISIBLE_DEVICES": ""}, run=answer())
    assert not hidden.devices and "CUDA_VISIBLE_DEVICES" in hidden.note


def test_one_gpu_is_not_enough(path_with_smi: str) -> None:
    scan = find_render_devices({"PATH": path_with_smi}, run=answer(SMI.splitlines()[0] + "\n"))
    assert len(scan.devices) == 1 and not scan.usable


def test_no_gpu_says_why(tmp_path: Path, path_with_smi: str) -> None:
    none = find_render_devices({"PATH": str(tmp_path / "empty")}, run=answer())
    assert not none.devices and not none.usable and "nvidia-smi is not installed" in none.note
    broken = find_render_devices({"PATH": path_with_smi}, run=answer("", 9, "NVIDIA-SMI has failed because it "
                                                                         "couldn't communicate with the driver"))
    assert not broken.devices and broken.note.startswith("nvidia-smi failed: NVIDIA-SMI has failed")

    def timeout(args, **kwargs):
        raise subprocess.TimeoutExpired(args, 10)

    slow = find_render_devices({"PATH": path_with_smi}, run=timeout)
    assert not slow.devices and "did not answer" in slow.note
