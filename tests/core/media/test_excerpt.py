"""Excerpts of a clip's frames (``write_excerpt``): the frames a trimmed clip shows, nothing else."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.media.decode import VideoReader
from core.media.errors import FileMissing, RenderCancelled
from core.media.excerpt import write_excerpt
from core.media.patterns import read_frame_number
from core.media.timeline_render import TimelineRenderer
from core.project import Asset, AssetKind, Clip, Project, ProjectSettings, Track, TrackKind
from tests.core.media.conftest import CLIP_FPS, CLIP_SIZE


def _numbers(path: Path) -> list[int]:
    with VideoReader(path) as reader:
        return [read_frame_number(frame) for frame in reader.iter_frames()]


def test_same_rate_keeps_exactly_the_clip_frames(numbered_clip: Path, tmp_path: Path) -> None:
    out = write_excerpt(numbered_clip, tmp_path / "excerpt.mp4", 10, 30, CLIP_FPS)
    assert out == tmp_path / "excerpt.mp4"
    assert _numbers(out) == list(range(10, 30))  # the last frame is the clip's out point - 1
    with VideoReader(out) as reader:
        assert reader.fps == CLIP_FPS and (reader.width, reader.height) == CLIP_SIZE
        # Nearly lossless: the source's pixels survive within the colour conversion's rounding.
        with VideoReader(numbered_clip) as source:
            diff = reader.frame_at(19).astype(int) - source.frame_at(29).astype(int)
        assert abs(diff).mean() < 1.5


@pytest.mark.parametrize(
    ("project_fps", "start", "end", "expected"),
    [
        (12, 5, 10, range(10, 19)),  # project slower than the file: every file frame in between, at 24 fps
        (48, 20, 40, range(10, 20)),  # project faster: each file frame once
    ],
)
def test_other_project_rates_map_like_the_timeline(
    numbered_clip: Path, tmp_path: Path, project_fps: int, start: int, end: int, expected: range
) -> None:
    out = write_excerpt(numbered_clip, tmp_path / "excerpt.mp4", start, end, project_fps)
    numbers = _numbers(out)
    assert numbers == list(expected)
    # The first and last frames are the ones the timeline shows at the clip's in and out - 1.
    project = Project(ProjectSettings(fps=project_fps, width=CLIP_SIZE[0], height=CLIP_SIZE[1]))
    project.insert_track(Track("V1", TrackKind.VIDEO, "V1"))
    project.insert_asset(Asset("clip", AssetKind.VIDEO, str(numbered_clip), duration_frames=2 * project_fps))
    project.insert_clip(Clip("c", "clip", "V1", 0, start, end))
    with TimelineRenderer(project) as renderer:
        shown = [read_frame_number(renderer.frame(n)) for n in (0, end - start - 1)]
    assert shown == [numbers[0], numbers[-1]]


def test_refusals_leave_no_file(numbered_clip: Path, tmp_path: Path) -> None:
    dst = tmp_path / "excerpt.mp4"
    with pytest.raises(ValueError, match="not a range"):
        write_excerpt(numbered_clip, dst, 10, 10, CLIP_FPS)
    with pytest.raises(FileMissing):
        write_excerpt(tmp_path / "gone.mp4", dst, 0, 5, CLIP_FPS)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RenderCancelled):
        write_excerpt(numbered_clip, dst, 0, 5, CLIP_FPS, cancel=cancel)
    assert list(tmp_path.iterdir()) == []
