"""GUI responsiveness while background work runs: the largest gap between 10 ms timer ticks on the GUI
thread while thumbnails, waveforms and an MP4 export are computed in worker threads. Target: <= 50 ms.

The project is generated with ``core.media`` writers (tools/screenshot.py's media plus a longer clip). While
the export runs, the timeline is zoomed and scrolled every 100 ms so new thumbnails keep being requested
and painted, as a user browsing the timeline during an export would.

Usage: ``.venv/bin/python bench/bench_app_stall.py`` (offscreen unless QT_QPA_PLATFORM is set).
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
TARGET_MS = 50.0


def main() -> int:
    from PySide6.QtCore import QElapsedTimer, QSettings, QTimer

    from app.application import create_application
    from app.main_window import MainWindow
    from app.settings import Preferences
    from tools.screenshot import build_project

    app = create_application([])
    work = Path(tempfile.mkdtemp(prefix="skyreels-stall-"))
    project_file = build_project(work)
    window = MainWindow(
        Preferences(QSettings(str(work / "s.ini"), QSettings.Format.IniFormat)), output_factory=None
    )
    window.resize(1500, 920)
    window.show()
    app.processEvents()
    window.open_project(project_file, check_recovery=False)
    doc = window.doc
    timeline = doc.timeline
    # Let start-up settle (first imports of the media stack, the first thumbnails of each clip): the
    # measurement is about steady editing while new thumbnails and an export are computed.
    settle = time.perf_counter()
    while window.pool.pending() or time.perf_counter() - settle < 1.0:
        app.processEvents()
        time.sleep(0.005)

    ticks: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    tick_timer = QTimer()
    tick_timer.setInterval(10)
    tick_timer.timeout.connect(lambda: ticks.append(clock.nsecsElapsed() / 1e6))
    steps = [0]

    def browse() -> None:
        # Alternate zoom levels and scroll positions: every step asks for thumbnails not cached yet.
        steps[0] += 1
        zoom = (2.0, 9.0, 24.0, 5.0)[steps[0] % 4]
        timeline.set_zoom(zoom, anchor_x=timeline.x_for_frame(0))
        timeline.set_scroll((steps[0] * 137) % max(1, int(doc.project.end_frame * zoom)))
        doc.playback.seek((steps[0] * 7) % max(1, doc.project.end_frame))

    browse_timer = QTimer()
    browse_timer.setInterval(100)
    browse_timer.timeout.connect(browse)

    out = work / "export.mp4"
    tick_timer.start()
    browse_timer.start()
    started = time.perf_counter()
    window.start_export(out)
    while window.export_worker is not None or window.pool.pending():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - started > 300:
            print("export did not finish in 300 s")
            return 1
    busy_s = time.perf_counter() - started
    tick_timer.stop()
    browse_timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    worst = max(gaps)
    p99 = statistics.quantiles(gaps, n=100)[98] if len(gaps) > 100 else worst
    print(
        f"background work: export of {doc.project.end_frame} frames + thumbnails/waveforms/pictures "
        f"for {steps[0]} browse steps, {busy_s:.1f} s"
    )
    print(
        f"GUI timer gaps over {len(gaps)} ticks: max {worst:.1f} ms, p99 {p99:.1f} ms, "
        f"median {statistics.median(gaps):.1f} ms; target max <= {TARGET_MS:.0f} ms"
    )
    print("export file", "written" if out.is_file() else "MISSING")
    window.doc.stack.setClean()
    window.close()
    ok = worst <= TARGET_MS and out.is_file()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
