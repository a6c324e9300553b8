"""Timeline flattening (top track wins, stills held, letterbox), audio mixing and MP4 export."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from core.media.audio import load_audio
from core.media.decode import VideoReader
from core.media.errors import EmptyMedia, FileMissing, RenderCancelled
from core.media.patterns import read_frame_number, sine
from core.media.probe import probe
from core.media.timeline_render import TimelineRenderer, export_timeline
from core.project import Asset, AssetKind, Clip, Project, ProjectSettings, Track, TrackKind
from tests.core.media.conftest import FLAT_RGB


def _project(fps: int = 24, width: int = 160, height: int = 96) -> Project:
    project = Project(ProjectSettings(fps=fps, width=width, height=height, sample_rate=48000))
    for track_id, kind in (("V1", TrackKind.VIDEO), ("V2", TrackKind.VIDEO), ("A1", TrackKind.AUDIO)):
        project.insert_track(Track(track_id=track_id, kind=kind, name=track_id))
    return project


def _add_media(project: Project, numbered_clip: Path, flat_png: Path, sine_wav: Path) -> None:
    fps = project.settings.fps
    project.insert_asset(
        Asset("clip", AssetKind.VIDEO, str(numbered_clip), duration_frames=2 * fps, has_audio=True)
    )
    project.insert_asset(Asset("still", AssetKind.IMAGE, str(flat_png)))
    project.insert_asset(Asset("tone", AssetKind.AUDIO, str(sine_wav), duration_frames=fps))


def _clip(
    project: Project,
    clip_id: str,
    asset: str,
    track: str,
    start: int,
    in_point: int,
    out_point: int,
    gain_db: float = 0.0,
) -> None:
    project.insert_clip(Clip(clip_id, asset, track, start, in_point, out_point, gain_db=gain_db))


@pytest.fixture
def timeline(numbered_clip: Path, flat_png: Path, sine_wav: Path) -> Project:
    """V1: clip frames 10..19 at 5. V2: the flat still over 0..30. A1: the tone at 12 for 12 frames."""
    project = _project()
    _add_media(project, numbered_clip, flat_png, sine_wav)
    _clip(project, "c1", "clip", "V1", 5, 10, 20)
    _clip(project, "s1", "still", "V2", 0, 0, 30)
    _clip(project, "t1", "tone", "A1", 12, 0, 12, gain_db=-6.0)
    return project


def _is_flat(frame: np.ndarray) -> bool:
    """The flat 64x48 still letterboxed into 160x96: 128x96 in the middle, 16 px bars."""
    middle, bars = frame[:, 18:142].astype(int), np.concatenate([frame[:, :14], frame[:, -14:]], axis=1)
    return bool(np.abs(middle - FLAT_RGB).max() <= 3 and bars.max() <= 3)


def test_top_track_wins_and_stills_hold(timeline: Project) -> None:
    with TimelineRenderer(timeline) as renderer:
        assert all(_is_flat(renderer.frame(n)) for n in range(5))
        assert [read_frame_number(renderer.frame(n)) for n in range(5, 15)] == list(range(10, 20))
        assert all(_is_flat(renderer.frame(n)) for n in range(15, 30))
        assert not renderer.frame(30).any()  # nothing there: black
        assert renderer.frame(7).shape == (96, 160, 3)


def test_source_at_another_rate(numbered_clip: Path, flat_png: Path, sine_wav: Path) -> None:
    project = _project(fps=12)
    _add_media(project, numbered_clip, flat_png, sine_wav)
    _clip(project, "c1", "clip", "V1", 0, 3, 9)  # project frames 3..8 = seconds 0.25..0.75
    with TimelineRenderer(project) as renderer:
        assert [read_frame_number(renderer.frame(n)) for n in range(6)] == [6, 8, 10, 12, 14, 16]


def test_letterbox_to_project_size(numbered_clip: Path, flat_png: Path, sine_wav: Path) -> None:
    project = _project(width=480, height=192)
    _add_media(project, numbered_clip, flat_png, sine_wav)
    _clip(project, "c1", "clip", "V1", 0, 0, 10)
    with TimelineRenderer(project) as renderer:
        frame = renderer.frame(4)
    # 160x96 fits 480x192 as 320x192: 80 px black bars left and right.
    assert frame.shape == (192, 480, 3)
    assert not frame[:, :78].any() and not frame[:, -78:].any()
    assert read_frame_number(frame[:, 80:400]) == 4


def test_audio_mix_places_clips_with_gain(timeline: Project) -> None:
    with TimelineRenderer(timeline) as renderer:
        mixed = renderer.audio(0, 48)
    assert mixed.shape == (96000, 2)
    # The video clip c1 (frames 10..19 of the clip: its sound from 10/24 s) plays from frame 5.
    tone = sine(1.0, 48000)
    video_part = tone[20000:40000]
    tone_part = tone[:24000] * 10 ** (-6 / 20)
    expected = np.zeros(96000, np.float32)
    expected[10000:30000] += video_part
    expected[24000:48000] += tone_part
    rms = np.sqrt(np.mean((mixed[:, 0] - np.clip(expected, -1, 1)) ** 2))
    assert rms < 0.01
    assert np.array_equal(mixed[:, 0], mixed[:, 1])


def test_muted_tracks_are_silent(timeline: Project) -> None:
    timeline.update_track("A1", muted=True)
    timeline.update_track("V1", muted=True)
    with TimelineRenderer(timeline) as renderer:
        assert not renderer.audio(0, 48).any()
        assert read_frame_number(renderer.frame(6)) == 11  # a muted video track still shows


def test_export(timeline: Project, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    out = export_timeline(timeline, tmp_path / "film é.mp4", progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (1, 30) and calls[-1] == (30, 30) and len(calls) == 30
    info = probe(out)
    assert (info.frame_count, info.width, info.height, info.fps) == (30, 160, 96, 24)
    assert info.has_audio and info.channels == 2 and info.sample_rate == 48000
    with VideoReader(out) as reader:
        assert [read_frame_number(reader.frame_at(n)) for n in (5, 9, 14)] == [10, 14, 19]
        assert _is_flat(reader.frame_at(20))
    sound = load_audio(out)
    assert abs(len(sound.samples) - 60000) <= 1024


def test_export_range(timeline: Project, tmp_path: Path) -> None:
    out = export_timeline(timeline, tmp_path / "part.mp4", start=8, end=12, audio=False)
    info = probe(out)
    assert info.frame_count == 4 and not info.has_audio
    with VideoReader(out) as reader:
        assert [read_frame_number(f) for f in reader.iter_frames()] == [13, 14, 15, 16]


def test_cancel_leaves_no_file(timeline: Project, tmp_path: Path) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 10:
            cancel.set()

    target = tmp_path / "cancelled.mp4"
    with pytest.raises(RenderCancelled):
        export_timeline(timeline, target, progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_missing_media_is_listed_and_nothing_written(timeline: Project, tmp_path: Path) -> None:
    timeline.update_asset("still", path=str(tmp_path / "gone.png"), name="gone.png")
    with pytest.raises(FileMissing, match=r"gone\.png: file not found"):
        export_timeline(timeline, tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()
    out = export_timeline(timeline, tmp_path / "x.mp4", missing_ok=True, end=6)
    with VideoReader(out) as reader:
        assert not reader.frame_at(0).any()  # the missing still renders black


def test_empty_timeline(tmp_path: Path) -> None:
    with pytest.raises(EmptyMedia, match="nothing to export"):
        export_timeline(_project(), tmp_path / "e.mp4")
