"""Start-up time of the editor: from launching ``python main.py`` to the main window's first paint.

Runs ``main.py --exit-after-paint`` in fresh processes (the app prints ``first-paint <perf_counter>`` from
inside its first paint event and quits) and reports the wall time from ``Popen`` to that line, plus
whether torch (or diffusers/transformers) had been imported by then. Target: <= 1.5 s, torch never.

Usage: ``.venv/bin/python bench/bench_app_startup.py [runs]`` (offscreen unless QT_QPA_PLATFORM is set).
Settings go to a temporary folder so a developer's preferences are neither read nor changed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 1.5


def one_run(env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--exit-after-paint"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    painted = None
    heavy = "?"
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("first-paint"):
            painted = time.perf_counter() - start
            heavy = line.strip().split("heavy-modules=")[-1]
            break
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    if painted is None:
        err = proc.stderr.read() if proc.stderr else ""
        raise RuntimeError(f"the window never painted (exit {proc.returncode}):\n{err[-2000:]}")
    return painted, heavy


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    home = tempfile.mkdtemp(prefix="skyreels-bench-home-")
    env = dict(os.environ)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["XDG_CONFIG_HOME"] = os.path.join(home, "config")
    env["XDG_DATA_HOME"] = os.path.join(home, "data")
    one_run(env)  # warm the OS file cache (first run after a build reads every .pyc from disk)
    times, heavies = [], set()
    for _ in range(runs):
        t, heavy = one_run(env)
        times.append(t)
        heavies.add(heavy)
    median = statistics.median(times)
    print(
        f"launch -> first paint: median {median:.3f} s, min {min(times):.3f} s, max {max(times):.3f} s "
        f"over {runs} runs (platform {env['QT_QPA_PLATFORM']}); target <= {TARGET_S} s"
    )
    print(f"heavy modules imported at first paint: {', '.join(sorted(heavies))}")
    ok = median <= TARGET_S and heavies == {"none"}
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
