"""Screenshots of the editor with a small generated project (for docs and for looking at the UI).

Usage (a real X server or Xvfb; offscreen also works but renders fonts differently)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tools/screenshot.py OUT_DIR [--docs]

Writes ``main.png`` (the whole window), ``timeline_in.png`` and ``timeline_out.png`` (the timeline zoomed
in and out) to OUT_DIR; with ``--docs`` also a small ``docs/screenshot.png``. The media are generated with
``core.media`` writers: two numbered-frame videos, a voice-like tone, a reference image; one clip carries a
generation recipe so the badge and the inspector's recipe show.

With ``--device-run`` it also writes ``device_run_dialog.png`` (Generate ▸ Render Waiting Jobs on All GPUs…
with three waiting jobs and two devices from ``$SKYREELS_RENDER_DEVICES``, default ``cuda:0,cuda:1``) and
``device_run_queue.png`` (the render queue while such a run renders; the run is a stand-in command that
prints ``jobs run --progress-json`` lines, so no model or GPU is needed).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_media(folder: Path) -> dict[str, Path]:
    import numpy as np

    from core.media.images import write_image
    from core.media.patterns import numbered_frame
    from core.media.writer import write_video, write_wav

    fps, rate = 24, 48000
    w, h = 320, 180

    def tinted(i: int, tint: tuple[int, int, int]) -> np.ndarray:
        frame = numbered_frame(i, w, h).astype(np.float32)
        return np.clip(frame * 0.55 + np.array(tint, np.float32) * 0.45, 0, 255).astype(np.uint8)

    t = np.arange(int(rate * 4.0)) / rate
    # A "voice": a tone whose loudness comes and goes in syllables.
    envelope = np.clip(np.sin(2 * np.pi * 1.7 * t) * 0.6 + np.sin(2 * np.pi * 0.37 * t) * 0.4, 0, 1) ** 1.5
    voice = (0.8 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    music = (0.3 * np.sin(2 * np.pi * 110 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))).astype(np.float32)
    paths = {
        "city": write_video(
            folder / "city_dusk.mp4",
            (tinted(i, (255, 140, 60)) for i in range(fps * 4)),
            fps,
            audio=np.stack([music, music], 1),
            audio_rate=rate,
        ),
        "forest": write_video(
            folder / "forest_walk.mp4", (tinted(i, (60, 200, 120)) for i in range(fps * 3)), fps
        ),
        "hero_gen": write_video(
            folder / "hero_r2v_take1.mp4", (tinted(i, (150, 110, 255)) for i in range(fps * 3)), fps
        ),
        "voice": write_wav(folder / "dialogue.wav", voice, rate),
    }
    yy, xx = np.mgrid[0:256, 0:256]
    portrait = np.stack([(xx * 0.6 + 80) % 256, (yy * 0.5 + 60) % 256, np.full_like(xx, 170)], -1).astype(
        np.uint8
    )
    paths["hero"] = write_image(folder / "hero_portrait.png", portrait)
    backdrop = np.stack([np.full_like(xx, 30), (yy * 0.4 + 60) % 256, (xx * 0.7) % 256], -1).astype(np.uint8)
    paths["set"] = write_image(folder / "rooftop_set.png", backdrop)
    return paths


def build_project(folder: Path) -> Path:
    """A saved project using the generated media; returns the project file."""
    from app import document
    from app.media_jobs import asset_from_info
    from core.generation import GenerationRecipe, Quality, Task
    from core.media.probe import probe
    from core.persistence import save_project
    from core.project import Clip, Marker, ReferenceRole, new_id

    media = make_media(folder)
    project = document.new_project()
    project.update_settings(name="Rooftop scene", width=1280, height=720)
    fps = project.settings.fps
    assets = {}
    for key, path in media.items():
        asset = asset_from_info(probe(path), fps)
        if key == "hero":
            asset.role = ReferenceRole.CHARACTER
        if key == "set":
            asset.role = ReferenceRole.BACKGROUND
        project.insert_asset(asset)
        assets[key] = asset
    tracks = {t.name: t.track_id for t in project.tracks}
    recipe = GenerationRecipe(
        task=Task.REFERENCE_TO_VIDEO,
        prompt="The hero walks across the rooftop at dusk, city lights behind.",
        reference_asset_ids=(assets["hero"].asset_id, assets["set"].asset_id),
        duration_s=3.0,
        resolution="720P",
        aspect="16:9",
        seed=42,
        quality=Quality.DRAFT,
        model_id="Skywork/SkyReels-V3-R2V-14B",
    )
    clips = [
        Clip(new_id(), assets["city"].asset_id, tracks["V1"], 0, 0, 96),
        Clip(new_id(), assets["forest"].asset_id, tracks["V1"], 96, 12, 72),
        Clip(new_id(), assets["hero_gen"].asset_id, tracks["V2"], 60, 0, 72, recipe=recipe),
        Clip(new_id(), assets["set"].asset_id, tracks["V1"], 156, 0, 48),
        Clip(new_id(), assets["voice"].asset_id, tracks["A1"], 24, 0, 96),
        Clip(new_id(), assets["voice"].asset_id, tracks["A2"], 130, 0, 70, gain_db=-6.0),
    ]
    for clip in clips:
        project.insert_clip(clip)
    project.insert_marker(Marker(new_id(), 48, "Hero enters"))
    project.insert_marker(Marker(new_id(), 156, "Cut to set"))
    target = folder / "rooftop.srproj"
    save_project(project, target)
    return target


def _wait(app, condition, timeout: float = 20.0) -> None:
    from PySide6.QtCore import QEventLoop

    end = time.monotonic() + timeout
    while time.monotonic() < end and not condition():
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.02)
    for _ in range(5):
        app.processEvents()


def _stand_in_run(events: list[dict]) -> object:
    """A ``jobs run`` stand-in for the picture: prints ``events`` as JSON lines, then waits to be stopped."""
    import json

    program = "import time\n" + "".join(f"print({json.dumps(json.dumps(e))}, flush=True)\n" for e in events)
    program += "time.sleep(600)\n"

    def command(project, devices, job_ids):
        return [sys.executable, "-c", program]

    return command


def shoot_device_run(app, window, out: Path) -> None:
    import os

    from app.render_ui import attach_render_ui
    from core.render_devices import DEVICES_ENV
    from tests.fakes import FakeBackend

    os.environ.setdefault(DEVICES_ENV, "cuda:0,cuda:1")
    controller = attach_render_ui(window, lambda: FakeBackend(steps=8))
    ui = controller.ui
    _wait(app, lambda: ui.actions["gpus"].isEnabled(), 10)
    images = [a.asset_id for a in window.doc.project.assets if a.kind.value == "image"]
    prompts = ("The hero crosses the rooftop at dusk", "Close-up: she looks back at the city",
               "Wide: the skyline as the lights come on")
    jobs = []
    for n, prompt in enumerate(prompts):
        job = controller.shot_from_references(images, prompt, duration_s=5, start=24 * 9 + 120 * n)
        controller.pause(job.job_id)
        jobs.append(job)
    ui.actions["gpus"].trigger()
    dialog = ui.device_run_dialog
    _wait(app, lambda: dialog.isVisible(), 5)
    _wait(app, lambda: False, 0.5)
    dialog.grab().save(str(out / "device_run_dialog.png"))
    ids = [job.job_id for job in jobs]
    ui.device_run_command = _stand_in_run([
        {"event": "started", "jobs": ids, "devices": ["cuda:0", "cuda:1"]},
        {"event": "job_started", "job_id": ids[0], "device": "cuda:0"},
        {"event": "job_started", "job_id": ids[1], "device": "cuda:1"},
        {"event": "progress", "job_id": ids[0], "device": "cuda:0", "piece": 0, "total_pieces": 1, "step": 6,
         "total_steps": 8},
        {"event": "progress", "job_id": ids[1], "device": "cuda:1", "piece": 0, "total_pieces": 1, "step": 3,
         "total_steps": 8},
    ])
    dialog.accept()
    _wait(app, lambda: jobs[1].step == 3, 20)
    _wait(app, lambda: False, 0.5)
    ui.dock.grab().save(str(out / "device_run_queue.png"))
    window.grab().save(str(out / "device_run_main.png"))
    ui.device_run.stop()


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtCore import QSettings

    from app.application import create_application
    from app.main_window import MainWindow
    from app.settings import Preferences

    app = create_application([])
    work = Path(tempfile.mkdtemp(prefix="skyreels-shot-"))
    project_file = build_project(work)
    settings = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(Preferences(settings), output_factory=None)
    window.resize(1500, 920)
    window.show()
    window.open_project(project_file)
    doc = window.doc
    timeline = doc.timeline
    media_ids = {a.asset_id for a in doc.project.assets}
    _wait(
        app,
        lambda: (
            window.pool.pending() == 0
            and all(doc.media.has_peaks(a.asset_id) for a in doc.project.assets if a.kind.value == "audio")
        ),
    )
    # Select the generated clip (badge + recipe in the inspector) and park the playhead on it.
    generated = next(c for c in doc.project.clips() if c.recipe is not None)
    timeline.set_selection({generated.clip_id})
    doc.playback.seek(70)
    timeline.zoom_to_fit()
    _wait(app, lambda: window.pool.pending() == 0 and not doc.viewer.picture.image.isNull(), 10)
    _wait(app, lambda: window.pool.pending() == 0, 10)
    window.grab().save(str(out / "main.png"))
    # Zoomed in around the playhead: thumbnails per frame, waveform detail.
    timeline.set_zoom(18.0)
    timeline.set_scroll(max(0.0, 50 * timeline.px_per_frame))
    _wait(app, lambda: False, 1.0)
    _wait(app, lambda: window.pool.pending() == 0, 10)
    doc.timeline_panel.grab().save(str(out / "timeline_in.png"))
    timeline.set_zoom(0.6, anchor_x=timeline.x_for_frame(0))
    timeline.set_scroll(0)
    _wait(app, lambda: window.pool.pending() == 0, 10)
    doc.timeline_panel.grab().save(str(out / "timeline_out.png"))
    if "--device-run" in argv:
        shoot_device_run(app, window, out)
    if "--docs" in argv:
        timeline.zoom_to_fit()
        _wait(app, lambda: window.pool.pending() == 0, 10)
        from PySide6.QtCore import Qt

        image = window.grab().toImage().scaledToWidth(1200, Qt.TransformationMode.SmoothTransformation)
        docs = ROOT / "docs"
        docs.mkdir(exist_ok=True)
        image.save(str(docs / "screenshot.png"), "PNG", 9)
    print("assets", len(media_ids), "->", out)
    window.doc.stack.setClean()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
