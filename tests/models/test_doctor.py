"""``python main.py doctor`` / Help ▸ System check: every check runs here, every problem has a fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models import doctor

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("SKYREELS_MODELS_CONFIG", str(tmp_path / "models.json"))


def test_collect_runs_here_and_every_problem_names_its_fix():
    import torch

    checks = doctor.collect(include_qt=False)
    names = [c.name for c in checks]
    for expected in (
        "Python",
        "torch",
        "flash-attn",
        "SageAttention",
        "encoder libx264",
        "encoder aac",
        "audio output",
        "reference_to_video",
        "talking_avatar",
        "Hugging Face cache",
    ):
        assert expected in names, names
    for check in checks:
        assert check.status in ("ok", "info", "warning", "problem")
        if check.status in ("warning", "problem"):
            assert check.fix, f"{check.name} has no fix: {check.detail}"
    if torch.cuda.is_available():
        assert any(c.name.startswith("GPU ") for c in checks)
    else:  # this CPU machine: no GPU, said plainly, with what to do about it
        gpu = next(c for c in checks if c.name in ("GPU", "CUDA"))
        assert gpu.status in ("warning", "problem")
        assert "nvidia-smi" in gpu.fix or "CUDA build" in gpu.fix
        assert "install.sh" in gpu.fix
    # models missing in the empty cache: each points at the download command
    avatar = next(c for c in checks if c.group == "models" and c.name == "talking_avatar")
    assert avatar.fix == "python main.py models download --task talking_avatar"


def test_memory_table_uses_the_planner_and_gets_lighter_with_more_memory():
    def policies(free_gib: float) -> dict[str, str]:
        gpu = doctor.GpuInfo(0, "Fake GPU", int(free_gib * GIB), int(free_gib * GIB), (9, 0))
        return {c.name: c.detail for c in doctor.memory_policy_checks([gpu])}

    small, big = policies(24), policies(141)
    assert set(small) == {
        "reference_to_video",
        "single_shot_extension",
        "shot_switching_extension",
        "talking_avatar",
    }
    assert "rough table" not in small["reference_to_video"]  # models.memory exists and is used
    assert "540P" not in small["talking_avatar"]  # the avatar has no 540P bucket
    assert "720P park_idle+fp8_storage" in small["talking_avatar"]  # 19B in bf16 cannot sit on 24 GB
    assert "480P gpu_resident" in big["reference_to_video"]


def test_fallback_rule_when_the_planner_is_missing():
    assert doctor._fallback_policy(doctor.Task.REFERENCE_TO_VIDEO, "480P", 140 * 10**9) == "gpu_resident"
    assert "fp8" in doctor._fallback_policy(doctor.Task.TALKING_AVATAR, "720P", 24 * 10**9)


def test_missing_portaudio_is_a_warning_with_the_package_to_install(monkeypatch: pytest.MonkeyPatch):
    def broken_import():
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(doctor.sys, "platform", "linux")
    (check,) = doctor.check_audio(broken_import)
    assert check.status == "warning"
    assert "PortAudio library not found" in check.detail
    assert check.fix == "sudo apt-get install libportaudio2"


def test_old_gpu_and_busy_gpu_are_flagged():
    old = doctor.GpuInfo(0, "Tesla V100", 32 * GIB, 31 * GIB, (7, 0))
    busy = doctor.GpuInfo(1, "RTX 4090", 24 * GIB, 10 * GIB, (8, 9))
    fine = doctor.GpuInfo(2, "H100", 80 * GIB, 79 * GIB, (9, 0))
    old_check, busy_check, fine_check = doctor.gpu_checks([old, busy, fine])
    assert old_check.status == "warning" and "bfloat16" in old_check.detail
    assert busy_check.status == "warning" and "nvidia-smi" in busy_check.fix
    assert fine_check.status == "ok" and "79.0 of 80.0 GiB free" in fine_check.detail


def test_qt_probe_runs_in_a_subprocess():
    (check,) = doctor.check_qt()
    assert check.group == "display"
    assert check.status in ("ok", "warning"), check  # bootstrap installs Qt's libraries on our machines


def test_doctor_command_prints_json_without_importing_qt(tmp_path: Path):
    code = (
        "import sys, json, main\n"
        "rc = main.cli(['doctor', '--json', '--no-qt'])\n"
        "assert 'PySide6' not in sys.modules, 'doctor imported Qt'\n"
        "sys.exit(rc)\n"
    )
    env = {
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "SKYREELS_MODELS_CONFIG": str(tmp_path / "m.json"),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    checks = json.loads(result.stdout)
    assert {c["group"] for c in checks} >= {
        "system",
        "gpu",
        "memory",
        "kernels",
        "media",
        "audio",
        "models",
        "disk",
    }
    assert result.returncode == (1 if any(c["status"] == "problem" for c in checks) else 0)


def test_render_groups_checks_and_counts_problems():
    text = doctor.render(
        [
            doctor.Check("gpu", "GPU", "warning", "no CUDA GPU", "install a driver"),
            doctor.Check("media", "encoder aac", "problem", "missing", "pip install --force-reinstall av"),
            doctor.Check("media", "PyAV", "ok", "18.1"),
        ]
    )
    assert text.splitlines()[0] == "[gpu]"
    assert "      fix: install a driver" in text
    assert text.endswith("1 problem(s), 1 warning(s).")
