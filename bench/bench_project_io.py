"""Save and load times of a 1000-clip project (targets: <= 200 ms each).

Run: ``.venv/bin/python bench/bench_project_io.py [--clips N] [--repeat R]``. Prints the median and best
of R runs for save (serialise + validate-free atomic write with fsync) and load (read, migrate, schema
validation, model build, invariant check, missing-media check). Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.generation import GenerationRecipe, Task
from core.persistence import load_project, save_project
from core.project import (
    Asset,
    AssetKind,
    Clip,
    Marker,
    Project,
    ProjectSettings,
    Track,
    TrackKind,
)


def build(folder: Path, clips: int) -> Project:
    """``clips`` clips over 4 video and 2 audio tracks; every 10th clip generated (with a recipe)."""
    project = Project(ProjectSettings(name="Bench", fps=24, width=1280, height=720))
    tracks = [Track(f"v{i}", TrackKind.VIDEO, f"V{i}") for i in range(4)]
    tracks += [Track(f"a{i}", TrackKind.AUDIO, f"A{i}") for i in range(2)]
    for track in tracks:
        project.insert_track(track)
    media = folder / "media"
    media.mkdir()
    for i in range(clips // 4):
        kind = AssetKind.AUDIO if i % 3 == 0 else AssetKind.VIDEO
        path = media / f"asset_{i:05d}.{'wav' if kind is AssetKind.AUDIO else 'mp4'}"
        path.write_bytes(b"")
        project.insert_asset(
            Asset(
                f"asset{i}",
                kind,
                str(path),
                path.name,
                duration_frames=500,
                width=1280,
                height=720,
                fps=24.0,
                has_audio=True,
                sample_rate=48000,
                channels=2,
            )
        )
    cursor = {t.track_id: 0 for t in tracks}
    for n in range(clips):
        asset = project.asset(f"asset{n % (clips // 4)}")
        candidates = [t for t in tracks if (t.kind is TrackKind.AUDIO) == (asset.kind is AssetKind.AUDIO)]
        track = candidates[n % len(candidates)]
        recipe = (
            GenerationRecipe(
                Task.REFERENCE_TO_VIDEO, f"shot {n}: a sailor on the pier", (asset.asset_id,), seed=n
            )
            if n % 10 == 0
            else None
        )
        start = cursor[track.track_id]
        project.insert_clip(Clip(f"clip{n}", asset.asset_id, track.track_id, start, 10, 130, recipe=recipe))
        cursor[track.track_id] = start + 130
    for m in range(50):
        project.insert_marker(Marker(f"m{m}", m * 100, f"marker {m}"))
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project = build(folder, args.clips)
        path = folder / "bench.srproj"
        saves, loads = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            save_project(project, path)
            saves.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            loaded = load_project(path)
            loads.append(time.perf_counter() - t0)
        assert loaded.project.to_dict() == project.to_dict()
        size = path.stat().st_size
    print(
        f"project: {args.clips} clips, {len(project.assets)} assets, {len(project.tracks)} tracks, "
        f"file {size / 1024:.0f} KiB"
    )
    for name, times in (("save", saves), ("load", loads)):
        ms = [t * 1000 for t in times]
        verdict = "ok" if statistics.median(ms) <= 200 else "OVER TARGET"
        print(
            f"{name}: median {statistics.median(ms):.1f} ms, best {min(ms):.1f} ms (target <= 200 ms) {verdict}"
        )


if __name__ == "__main__":
    main()
