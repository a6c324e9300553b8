"""Which render checkpoints can go (Generate ▸ Clean Up Render Files…), and removing them."""

from __future__ import annotations

from pathlib import Path

from core.generation import RenderRequest, Task
from core.render_cleanup import folder_size, remove_render_files, render_files_to_clean
from core.render_queue import Job, JobState


def _job(media: Path, job_id: str, state: JobState, *, output: bool = True, checkpoint: int = 1000) -> Job:
    work = media / "work" / job_id
    (work / "pieces-abc").mkdir(parents=True)
    (work / "pieces-abc" / "piece_0000.npy").write_bytes(b"x" * checkpoint)
    out = media / "renders" / f"{job_id}.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    if output:
        out.write_bytes(b"mp4")
    request = RenderRequest(task=Task.REFERENCE_TO_VIDEO, prompt="p", output_path=str(out), work_dir=str(work),
                            reference_images=("ref.png",))
    return Job(job_id=job_id, request=request, label=f"Shot {job_id}", state=state)


def test_finished_jobs_and_orphans_go_everything_resumable_stays(tmp_path: Path) -> None:
    media = tmp_path / "film.media"
    jobs = [
        _job(media, "done", JobState.FINISHED, checkpoint=5000),
        _job(media, "lost", JobState.FINISHED, output=False),  # joining its pieces is the way back
        _job(media, "paused", JobState.PAUSED),
        _job(media, "failed", JobState.FAILED),  # Retry resumes from its pieces
        _job(media, "cancelled", JobState.CANCELLED),
        _job(media, "queued", JobState.QUEUED),
        _job(media, "running", JobState.RUNNING),
    ]
    held = _job(media, "held", JobState.FINISHED)
    held.held = "cuda:1"
    jobs.append(held)
    removed_job = _job(media, "removed", JobState.FINISHED, checkpoint=3000)  # no longer in the queue
    del removed_job

    items = render_files_to_clean(jobs, media)
    assert [(item.path.name, item.size, item.reason) for item in items] == [
        ("done", 5000, "finished: Shot done"),
        ("removed", 3000, "no longer in the render queue"),
    ]
    # Untitled: the shared media folder's other folders belong to other projects' jobs.
    assert [item.path.name for item in render_files_to_clean(jobs, None)] == ["done"]

    freed, errors = remove_render_files(items)
    assert freed == 8000 and errors == []
    left = sorted(p.name for p in (media / "work").iterdir())
    assert left == ["cancelled", "failed", "held", "lost", "paused", "queued", "running"]
    assert (media / "renders" / "done.mp4").is_file()  # the output the timeline plays stays


def test_a_folder_an_unfinished_job_uses_is_never_removed(tmp_path: Path) -> None:
    media = tmp_path / "film.media"
    outer = _job(media, "outer", JobState.FINISHED)
    inner = _job(media / "work" / "outer", "inner", JobState.PAUSED)  # a resumable job inside it
    assert render_files_to_clean([outer, inner], media) == []


def test_sizes_and_vanished_folders(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    (folder / "b").mkdir(parents=True)
    (folder / "one").write_bytes(b"1" * 10)
    (folder / "b" / "two").write_bytes(b"2" * 20)
    (folder / "link").symlink_to(folder / "one")
    assert folder_size(folder) == 30
    media = tmp_path / "film.media"
    items = render_files_to_clean([_job(media, "done", JobState.FINISHED)], media)
    remove_render_files(items)
    assert remove_render_files(items) == (0, [])  # already gone: nothing to report
