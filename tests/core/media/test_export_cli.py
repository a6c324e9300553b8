"""``main.py export``: a saved project renders to MP4; bad inputs give messages and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import persistence
from core.export_cli import main
from core.media.decode import VideoReader
from core.media.patterns import read_frame_number
from core.media.probe import probe
from core.project import Asset, AssetKind, Clip, Project, ProjectSettings, Track, TrackKind


@pytest.fixture
def saved_project(tmp_path: Path, numbered_clip: Path, sine_wav: Path) -> Path:
    project = Project(ProjectSettings(name="cli", fps=24, width=160, height=96))
    project.insert_asset(
        Asset(
            "v",
            AssetKind.VIDEO,
            str(numbered_clip),
            name="numbered",
            duration_frames=48,
            width=160,
            height=96,
            fps=24.0,
            has_audio=True,
            sample_rate=48000,
            channels=1,
        )
    )
    project.insert_asset(
        Asset(
            "a",
            AssetKind.AUDIO,
            str(sine_wav),
            name="tone",
            duration_frames=24,
            sample_rate=48000,
            channels=1,
        )
    )
    project.insert_track(Track("V1", TrackKind.VIDEO, name="V1"))
    project.insert_track(Track("A1", TrackKind.AUDIO, name="A1"))
    project.insert_clip(Clip("c", "v", "V1", 0, 20, 32))
    project.insert_clip(Clip("t", "a", "A1", 0, 0, 12))
    return persistence.save_project(project, tmp_path / "proj.json")


def test_exports(saved_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.mp4"
    assert main([str(saved_project), str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "frame 12/12" in captured.err
    info = probe(out)
    assert info.frame_count == 12 and info.has_audio
    with VideoReader(out) as reader:
        assert read_frame_number(reader.frame_at(3)) == 23


def test_range_and_no_audio(saved_project: Path, tmp_path: Path) -> None:
    out = tmp_path / "part.mp4"
    args = [
        str(saved_project),
        str(out),
        "--start",
        "2",
        "--end",
        "5",
        "--no-audio",
        "-q",
        "--preset",
        "ultrafast",
    ]
    assert main(args) == 0
    info = probe(out)
    assert info.frame_count == 3 and not info.has_audio


def test_missing_media(
    saved_project: Path, tmp_path: Path, numbered_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(saved_project.read_text(encoding="utf-8"))
    for asset in data["assets"]:
        if asset["asset_id"] == "a":
            asset["path"] = "nowhere/tone.wav"
    saved_project.write_text(json.dumps(data), encoding="utf-8")
    out = tmp_path / "m.mp4"
    assert main([str(saved_project), str(out), "-q"]) == 1
    assert "tone" in capsys.readouterr().err and not out.exists()
    assert main([str(saved_project), str(out), "-q", "--allow-missing"]) == 0
    assert out.exists()


def test_bad_project_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json", encoding="utf-8")
    assert main([str(bad), str(tmp_path / "o.mp4")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main([str(tmp_path / "absent.json"), str(tmp_path / "o.mp4")]) == 2


def test_unwritable_output(saved_project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(saved_project), str(tmp_path / "no" / "such" / "o.mp4"), "-q"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_usage_errors() -> None:
    assert main([]) == 2


def test_main_py_dispatches_export(saved_project: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    out = tmp_path / "via main.mp4"
    done = subprocess.run(
        [sys.executable, str(root / "main.py"), "export", str(saved_project), str(out), "-q", "--end", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert probe(out).frame_count == 2
