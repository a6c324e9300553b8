"""installer/install.sh on the Linux CPU path, inside a temporary home: install, re-install, uninstall.

Fast and offline: ``--reuse-env`` points the new environment at the packages of the Python running the
tests and installs only the app (``--no-deps``, ``--no-index``). The torch choice is checked with
``--dry-run`` and a fake ``nvidia-smi``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SH = ROOT / "installer" / "install.sh"

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or shutil.which("bash") is None, reason="install.sh is the Linux/macOS installer"
)


def run_installer(home: Path, *args: str, path_prefix: str = "", env_extra: dict[str, str] | None = None):
    env = {
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": path_prefix + os.environ.get("PATH", "/usr/bin:/bin"),
        "PIP_FIND_LINKS": "",
        "PIP_NO_INPUT": "1",
        **(env_extra or {}),
    }
    return subprocess.run(
        ["bash", str(INSTALL_SH), *args], capture_output=True, text=True, env=env, timeout=240, check=False
    )


def test_install_reinstall_and_uninstall(tmp_path: Path):
    home = tmp_path / "home"
    prefix = tmp_path / "opt" / "skyreels-studio"
    args = ("--prefix", str(prefix), "--reuse-env", sys.executable, "--offline")

    first = run_installer(home, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    venv_python = prefix / "venv" / "bin" / "python"
    launcher = prefix / "bin" / "skyreels-studio"
    desktop = home / ".local/share/applications/skyreels-studio.desktop"
    link = home / ".local/bin/skyreels-studio"
    assert launcher.is_file() and os.access(launcher, os.X_OK)
    assert link.is_symlink() and link.resolve() == launcher.resolve()

    # the environment imports the installed copy, not this checkout
    probe = subprocess.run(
        [str(venv_python), "-c", "import core.model_store, main; print(core.model_store.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert Path(probe.stdout.strip()) == prefix / "app" / "core" / "model_store.py"
    # the launcher starts main.py (``--help`` prints the subcommands without opening a window)
    shown = subprocess.run([str(link), "--help"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "doctor" in shown.stdout and "models" in shown.stdout

    entry = desktop.read_text()
    assert f"Exec={launcher}" in entry
    icon_line = next(line for line in entry.splitlines() if line.startswith("Icon="))
    if (ROOT / "resources/icons/app.svg").is_file():
        icon = Path(icon_line.removeprefix("Icon="))
        assert icon.read_bytes() == (ROOT / "resources/icons/app.svg").read_bytes()

    # re-running updates in place: same environment, a fresh copy of the app (stray files go)
    (prefix / "app" / "stray.txt").write_text("left from an older version")
    venv_id = venv_python.resolve().stat().st_ino, (prefix / "venv" / "pyvenv.cfg").stat().st_mtime_ns
    second = run_installer(home, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "reusing the environment" in second.stdout
    assert (
        venv_python.resolve().stat().st_ino,
        (prefix / "venv" / "pyvenv.cfg").stat().st_mtime_ns,
    ) == venv_id
    assert not (prefix / "app" / "stray.txt").exists()
    assert desktop.is_file() and link.is_symlink()

    # uninstall removes what the installer made and keeps the user's model settings
    config = home / ".config" / "skyreels-studio" / "models.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"version": 1, "folders": []}')
    gone = run_installer(home, "--uninstall", "--prefix", str(prefix))
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not prefix.exists() and not desktop.exists() and not link.is_symlink()
    assert not (home / ".local/share/icons/hicolor/scalable/apps/skyreels-studio.svg").exists()
    assert config.is_file()
    assert "model weights were kept" in gone.stdout


def test_uninstall_refuses_a_folder_it_did_not_make(tmp_path: Path):
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "thesis.txt").write_text("keep me")
    result = run_installer(tmp_path / "home", "--uninstall", "--prefix", str(victim))
    assert result.returncode != 0
    assert "not made by this installer" in result.stderr
    assert (victim / "thesis.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("gpu", "wheel", "expected"),
    [
        (False, False, "CPU build torch=="),
        (True, False, "CUDA build torch=="),
        (True, True, "pinned torch=="),
    ],
)
def test_torch_build_follows_the_machine(tmp_path: Path, gpu: bool, wheel: bool, expected: str):
    # A fake nvidia-smi first on PATH: working (a GPU) or failing like a machine without a driver, so
    # the answer does not depend on the machine running the test.
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    smi = fake_bin / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: GPU-0)'\n"
        if gpu
        else "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n"
    )
    smi.chmod(0o755)
    extra: list[str] = []
    if wheel:
        wheels = tmp_path / "wheels"
        wheels.mkdir()
        pin = next(line for line in (ROOT / "pyproject.toml").read_text().splitlines() if '"torch==' in line)
        version = pin.split("==")[1].split('"')[0]
        (wheels / f"torch-{version}+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
        extra = ["--find-links", str(wheels)]
    prefix = tmp_path / "inst"
    result = run_installer(
        tmp_path / "home",
        "--dry-run",
        "--prefix",
        str(prefix),
        "--python",
        sys.executable,
        *extra,
        path_prefix=f"{fake_bin}:",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    torch_line = next(line for line in result.stdout.splitlines() if line.startswith("[install] torch:"))
    assert expected in torch_line
    if expected.startswith("CPU"):
        assert "--index-url https://download.pytorch.org/whl/cpu" in result.stdout
    assert not prefix.exists()  # a dry run changes nothing


def test_bad_options_are_explained(tmp_path: Path):
    result = run_installer(tmp_path / "home", "--torch", "rocm", "--dry-run")
    assert result.returncode != 0
    assert "--torch must be auto, cuda, cpu or pinned" in result.stderr
