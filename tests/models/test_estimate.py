"""Pre-flight estimates and their per-device calibration."""

from __future__ import annotations

from core.generation import Quality, RenderRequest, Task
from models.estimate import estimate, record_step_time, rough_seconds


def _request(**changes):
    base = dict(task=Task.REFERENCE_TO_VIDEO, prompt="x", output_path="o.mp4", work_dir="w", duration_s=5,
                resolution="720P", model="Skywork/SkyReels-V3-R2V-14B")
    return RenderRequest(**{**base, **changes})


def test_tiny_is_left_to_the_dialog():
    assert estimate(_request(model="tiny")) is None


def test_longer_and_larger_jobs_take_longer():
    short = rough_seconds(_request(duration_s=2))
    long = rough_seconds(_request(duration_s=5))
    draft = rough_seconds(_request(duration_s=5, quality=Quality.DRAFT))
    assert short < long and draft < long
    ext10 = rough_seconds(_request(task=Task.SINGLE_SHOT_EXTENSION, duration_s=10))
    ext30 = rough_seconds(_request(task=Task.SINGLE_SHOT_EXTENSION, duration_s=30))
    assert ext30 - 60 > 2.5 * (ext10 - 60)  # 6 pieces against 2, beyond the load time


def test_cpu_machine_says_full_size_does_not_fit(tmp_path):
    import torch  # noqa: F401  (the app's worker has loaded torch by the time the dialog asks)

    answer = estimate(_request(), tmp_path / "cal.json")
    assert answer["fits"] is False and "no CUDA GPU" in answer["note"]
    assert "seconds" not in answer  # no time estimate for a device that cannot run the job
    # The disk the checkpoints take is told too: 5 s of 720P exact frames, plus their MP4s.
    assert answer["disk_bytes"] == int(121 * 720 * 1280 * 3 * 1.15)
    assert "about 384.7 MB of disk" in answer["note"]
    avatar = estimate(_request(task=Task.TALKING_AVATAR, audio_start_s=0.0, audio_end_s=200.0), tmp_path / "c.json")
    assert avatar["disk_bytes"] == int(5001 * 720 * 1280 * 3 * 1.15)  # 200 s at 25 fps: 15.9 GB


def test_calibration_is_recorded_and_averaged(tmp_path):
    cal = tmp_path / "cal.json"
    record_step_time("NVIDIA H100", Task.TALKING_AVATAR, "480P", 10.0, cal)
    record_step_time("NVIDIA H100", Task.TALKING_AVATAR, "480P", 20.0, cal)
    import json

    assert json.loads(cal.read_text()) == {"NVIDIA H100|talking_avatar|480P": 15.0}
