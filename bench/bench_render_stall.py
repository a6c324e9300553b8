"""How responsive the editor stays while a render runs, and how fast a latent preview reaches the screen.

Opens the real main window with the render UI attached to :class:`models.backend.LocalBackend` on the tiny
random-weight checkpoints (CPU), queues reference-to-video shots, and measures:

- event-loop stall: a 5 ms ``QTimer`` runs on the GUI thread; the largest gap between two ticks, minus
  the interval, is the longest time the GUI could not react (target <= 50 ms). Reported separately for the
  first job (torch import and pipeline load on the worker thread) and for the later jobs (denoising with
  the pipeline kept loaded);
- the same stall while ``controller.warm_up()`` imports torch and builds the backend on the worker
  (what the first job pays when there was no warm-up);
- preview latency: from the backend emitting a ``Preview`` after a step (``time.perf_counter()`` on the
  worker) to the end of the paint of the queue panel's picture showing it.

Usage: ``QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_render_stall.py [--steps 30] [--jobs 3]``
(or under ``xvfb-run -a``). Prints figures; not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the worker")
    parser.add_argument("--warm-pipelines", action="store_true",
                        help="the backend factory also imports the R2V pipeline module (what a "
                             "LocalBackend.warm_up hook would do), so warm-up absorbs the diffusers import")
    args = parser.parse_args()

    import numpy as np
    from PySide6.QtCore import QEvent, QEventLoop, QObject, QSettings, QStandardPaths, QTimer
    from PySide6.QtWidgets import QMessageBox

    QStandardPaths.setTestModeEnabled(True)
    from app.application import create_application
    from app.main_window import MainWindow
    from app.render_ui import attach_render_ui
    from app.settings import Preferences
    from core.media.images import write_image

    work = Path(tempfile.mkdtemp(prefix="bench-render-"))
    os.environ.setdefault("SKYREELS_TINY_DIR", str(work / "tiny"))
    app = create_application([])
    window = MainWindow(Preferences(QSettings(str(work / "s.ini"), QSettings.Format.IniFormat)), output_factory=None)
    window.testing = True
    window.ask_save_changes = lambda: QMessageBox.StandardButton.Discard
    window.resize(1400, 900)
    window.show()

    def factory():
        import torch

        from models.backend import LocalBackend

        torch.set_num_threads(args.threads)
        if args.warm_pipelines:
            import models.r2v.pipeline  # noqa: F401
        return LocalBackend(device="cpu")

    controller = attach_render_ui(window, factory)
    controller.model = "tiny"
    window.save_to(work / "bench.srproj")
    ref = work / "ref.png"
    write_image(ref, (np.random.default_rng(0).random((96, 160, 3)) * 255).astype(np.uint8))

    from app.media_jobs import asset_from_info, probe_file
    from core.edits import AddAsset

    asset = asset_from_info(probe_file(str(ref)), window.doc.project.settings.fps)
    window.doc.undo.push(AddAsset(asset))
    panel = controller.ui.panel

    ticks: list[float] = []
    timer = QTimer(interval=5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    latencies: list[float] = []

    class PaintProbe(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint and panel.shown_preview_job():
                obj.event(event)  # paint now, then note the time the pixels are drawn
                job_id = panel.shown_preview_job()
                emitted = controller.preview_times.get(job_id)
                if emitted is not None and emitted not in seen:
                    seen.add(emitted)
                    latencies.append(time.perf_counter() - emitted)
                return True
            return False

    seen: set[float] = set()
    probe = PaintProbe()
    panel.preview.installEventFilter(probe)

    def run_until(signal, start) -> float:
        loop = QEventLoop()
        signal.connect(loop.quit)
        ticks.clear()
        started = time.perf_counter()
        timer.start()
        QTimer.singleShot(0, start)
        loop.exec()
        timer.stop()
        signal.disconnect(loop.quit)
        return time.perf_counter() - started

    def stalls() -> tuple[float, float]:
        gaps = np.diff(ticks) * 1000 - 5 if len(ticks) > 1 else np.array([0.0])
        return float(gaps.max()), float(np.percentile(gaps, 99))

    warm_s = run_until(controller.worker.warmed_up, controller.warm_up)
    warm_worst, warm_p99 = stalls()
    results = []
    for index in range(args.jobs):
        first_latency = len(latencies)
        failed = []
        controller.queue.job_changed.connect(
            lambda job, f=failed: f.append(job.error) if job.state.value == "failed" else None)
        elapsed = run_until(controller.job_landed, lambda i=index: controller.shot_from_references(
            [asset.asset_id], "a red ball rolling", duration_s=args.duration, steps=args.steps, seed=i,
            start=i * 100))
        if failed:
            print("job failed:", failed[0])
            return 1
        worst, p99 = stalls()
        results.append((index, elapsed, worst, p99, latencies[first_latency:]))

    print(f"tiny R2V, {args.duration} s, {args.steps} steps, torch threads {args.threads}, platform "
          f"{app.platformName()}" + (", pipeline modules imported during warm-up" if args.warm_pipelines else ""))
    print(f"warm-up (import torch, build the backend on the worker): {warm_s:6.2f} s  largest stall "
          f"{warm_worst:6.1f} ms, p99 {warm_p99:5.1f} ms")
    for index, elapsed, worst, p99, lat in results:
        what = "first job (pipeline load)" if index == 0 else "pipeline kept loaded"
        lat_ms = [x * 1000 for x in lat]
        lat_text = (f"preview latency median {statistics.median(lat_ms):.1f} ms, max {max(lat_ms):.1f} ms "
                    f"({len(lat_ms)} shown)") if lat_ms else "no preview shown"
        print(f"job {index}: {elapsed:6.2f} s [{what}]  largest stall {worst:6.1f} ms, p99 {p99:5.1f} ms;  {lat_text}")
    controller.shutdown()
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
