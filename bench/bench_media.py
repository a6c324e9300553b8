"""Media engine benchmark: scrub latency, waveform peaks, export speed. Prints figures; not a test.

    .venv/bin/python bench/bench_media.py [--keep DIR]

1. Random-seek latency of ``VideoReader.frame_at`` on a generated 1280x720, 10 s, 24 fps H.264
   clip written by our own ``VideoWriter`` (default one-second keyframe interval): cold (cache
   disabled) random seeks, drag-like scrubbing, and cache hits. Targets: p95 <= 25 ms, hits <= 2 ms.
2. ``build_peaks`` on 200 s of 48 kHz audio (mono and stereo), and a 1000-column query.
   Target: <= 100 ms.
3. ``export_timeline`` speed (frames per second) of a 10 s 720p timeline with sound.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.media.decode import VideoReader
from core.media.patterns import numbered_frame, read_frame_number, sine
from core.media.timeline_render import export_timeline
from core.media.waveform import build_peaks
from core.media.writer import VideoWriter, write_wav
from core.project import Asset, AssetKind, Clip, Project, ProjectSettings, Track, TrackKind

WIDTH, HEIGHT, FPS, SECONDS = 1280, 720, 24, 10


def _ms(samples: list[float]) -> str:
    arr = np.asarray(samples) * 1000
    return f"p50 {np.percentile(arr, 50):6.2f} ms   p95 {np.percentile(arr, 95):6.2f} ms   max {arr.max():6.2f} ms"


def make_clip(folder: Path, gop: int | None) -> tuple[Path, float]:
    """The 720p numbered clip with a sine soundtrack; returns its path and the encode speed."""
    path = folder / f"bench_720p_gop{gop or 'default'}.mp4"
    t0 = time.perf_counter()
    with VideoWriter(path, FPS, WIDTH, HEIGHT, audio_rate=48000, keyframe_interval=gop) as writer:
        for i in range(FPS * SECONDS):
            writer.write_frame(numbered_frame(i, WIDTH, HEIGHT))
        writer.write_audio(sine(SECONDS, 48000))
    return path, (FPS * SECONDS) / (time.perf_counter() - t0)


def _timed(samples_wall: list[float], samples_cpu: list[float], call: Callable[[], object]) -> object:
    w0, c0 = time.perf_counter(), time.process_time()
    result = call()
    samples_wall.append(time.perf_counter() - w0)
    samples_cpu.append(time.process_time() - c0)
    return result


def bench_seek(clip: Path) -> None:
    """Cold random seeks (caches off), drag scrubbing and cache hits (default caches)."""
    rng = random.Random(0)
    with VideoReader(clip, cache_bytes=0) as reader:
        n = reader.frame_count
        wall: list[float] = []
        cpu: list[float] = []
        wrong = 0
        for _ in range(150):
            i = rng.randrange(n)
            frame = _timed(wall, cpu, lambda i=i: reader.frame_at(i))
            wrong += read_frame_number(frame) != i  # type: ignore[arg-type]
        print(
            f"  random seek, no cache   wall {_ms(wall)}\n                          cpu  {_ms(cpu)}   wrong frames: {wrong}"
        )
    with VideoReader(clip) as reader:
        wall, cpu = [], []
        pos = n // 2
        for _ in range(150):
            pos = min(n - 1, max(0, pos + rng.choice([-3, -2, -1, 1, 1, 2, 3, 4])))
            _timed(wall, cpu, lambda p=pos: reader.frame_at(p))
        print(f"  drag scrub +-1..4       wall {_ms(wall)}")
        wall, cpu = [], []
        for i in range(48, 96):
            _timed(wall, cpu, lambda i=i: reader.frame_at(i))
        print(f"  sequential playback     wall {_ms(wall)}")
        hot = [rng.randrange(n) for _ in range(40)]
        for i in hot:
            reader.frame_at(i)
        wall, cpu = [], []
        for i in hot * 3:
            _timed(wall, cpu, lambda i=i: reader.frame_at(i))
        print(f"  cache hits              wall {_ms(wall)}")
    t0 = time.perf_counter()
    VideoReader(clip).close()
    print(f"  open (packet index)     {1000 * (time.perf_counter() - t0):6.2f} ms")


def bench_peaks() -> None:
    mono = np.tile(sine(1.0, 48000, 220), 200)
    stereo = np.stack([mono, mono[::-1]], axis=1).copy()
    for label, data in (("mono", mono), ("stereo", stereo)):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            pyramid = build_peaks(data, 48000)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(100):
            pyramid.peaks(12.3, 190.0, 1000)
        query = (time.perf_counter() - t0) / 100
        print(
            f"peaks 200 s 48 kHz {label:6s}    build best {1000 * min(times):6.2f} ms  "
            f"median {1000 * float(np.median(times)):6.2f} ms   query 1000 cols {1000 * query:.3f} ms"
        )


def bench_export(clip: Path, folder: Path) -> None:
    wav = write_wav(folder / "bench_tone.wav", sine(SECONDS, 48000, 330), 48000)
    project = Project(ProjectSettings(fps=FPS, width=WIDTH, height=HEIGHT, sample_rate=48000))
    project.insert_asset(
        Asset("v", AssetKind.VIDEO, str(clip), duration_frames=FPS * SECONDS, has_audio=True)
    )
    project.insert_asset(Asset("a", AssetKind.AUDIO, str(wav), duration_frames=FPS * SECONDS))
    project.insert_track(Track("V1", TrackKind.VIDEO))
    project.insert_track(Track("A1", TrackKind.AUDIO))
    project.insert_clip(Clip("c", "v", "V1", 0, 0, FPS * SECONDS))
    project.insert_clip(Clip("t", "a", "A1", 0, 0, FPS * SECONDS, gain_db=-6))
    t0 = time.perf_counter()
    export_timeline(project, folder / "bench_export.mp4")
    elapsed = time.perf_counter() - t0
    print(
        f"export 720p timeline + audio  {FPS * SECONDS / elapsed:6.1f} frames/s ({elapsed:.1f} s for {FPS * SECONDS} frames)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, help="write the generated media here instead of a temp folder")
    parser.add_argument(
        "--gops",
        default="default,24",
        help="comma-separated keyframe intervals to compare ('default' = the writer's default)",
    )
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} (wall times grow with load; cpu times less so)")
    with tempfile.TemporaryDirectory() as temp:
        folder = args.keep or Path(temp)
        folder.mkdir(parents=True, exist_ok=True)
        default_clip = None
        for name in args.gops.split(","):
            gop = None if name.strip() == "default" else int(name)
            clip, encode_fps = make_clip(folder, gop)
            default_clip = default_clip or clip
            size_mb = clip.stat().st_size / 1e6
            print(
                f"{clip.name}: {WIDTH}x{HEIGHT}, {SECONDS} s at {FPS} fps, {size_mb:.2f} MB, "
                f"encoded at {encode_fps:.1f} frames/s"
            )
            bench_seek(clip)
        bench_peaks()
        assert default_clip is not None
        bench_export(default_clip, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
