#!/usr/bin/env python3
"""One-step set-up for SkyReels Studio: ``python3 bootstrap.py`` starts the editor,
``python3 bootstrap.py test`` runs the whole test suite.

Creates ``.venv`` inside the checkout, installs the Python packages (again only when
``pyproject.toml`` changed), and installs the few Debian packages the app needs when run as
root (otherwise it prints the exact ``apt-get`` command). Standard library only: this runs
before anything else is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".setup-stamp"
# PortAudio for sound; the Qt xcb/offscreen plugins' libraries; Xvfb for screenshots and GUI tests.
DEBIAN_PACKAGES = [
    "libportaudio2",
    "libegl1",
    "libgl1",
    "libxkbcommon0",
    "libxkbcommon-x11-0",
    "libfontconfig1",
    "libdbus-1-3",
    "libxcb-cursor0",
    "libxcb-icccm4",
    "libxcb-keysyms1",
    "libxcb-image0",
    "libxcb-render-util0",
    "libxcb-randr0",
    "libxcb-shape0",
    "libxcb-xinerama0",
    "libxcb-xkb1",
    "libx11-xcb1",
    "xvfb",
]


def log(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def missing_debian_packages() -> list[str]:
    if not shutil.which("dpkg-query"):
        return []
    missing = []
    for name in DEBIAN_PACKAGES:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False
        )
        if "install ok installed" not in result.stdout:
            missing.append(name)
    return missing


def ensure_system_packages() -> None:
    missing = missing_debian_packages()
    if not missing:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing system packages: " + " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    else:
        log("some system packages are missing; the app runs without them but with less (no sound, no Xvfb).")
        log("install them with:  sudo " + " ".join(command))


def ensure_venv() -> None:
    if not venv_python().exists():
        log(f"creating virtual environment in {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        return
    log("installing Python packages (first run takes a few minutes)")
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest)


def run_tests(extra: list[str]) -> int:
    python = str(venv_python())
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    log("checking import contracts (core: no Qt/torch; models: no Qt)")
    scripts = VENV / ("Scripts" if os.name == "nt" else "bin")
    lint = subprocess.run([str(scripts / "lint-imports")], cwd=ROOT, env=env, check=False)
    # pytest-qt imports PySide6 at start-up; tests/core must prove it needs neither Qt nor torch.
    log("tests/core (pure Python: torch and Qt must stay unimported)")
    core = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:pytest-qt", "tests/core", *extra], cwd=ROOT, env=env, check=False)
    log("tests/models and tests/app")
    rest = subprocess.run([python, "-m", "pytest", "-q", "tests", "--ignore=tests/core", *extra],
                          cwd=ROOT, env=env, check=False)
    codes = [lint.returncode, core.returncode, rest.returncode]
    log(f"import contracts rc={codes[0]}, tests/core rc={codes[1]}, other tests rc={codes[2]}")
    return 0 if all(c == 0 for c in codes) else 1


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 (runs on the system Python, before any check)
        log("Python 3.11 or newer is needed; found " + sys.version.split()[0])
        return 2
    ensure_system_packages()
    ensure_venv()
    if argv[:1] == ["test"]:
        return run_tests(argv[1:])
    return subprocess.run([str(venv_python()), str(ROOT / "main.py"), *argv], cwd=ROOT, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
