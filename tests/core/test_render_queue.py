"""The render queue's rules, its persistence, and a real worker thread driving the FakeBackend."""

from __future__ import annotations

import queue as stdqueue
import threading
from pathlib import Path
from typing import Any

import pytest

from core.generation import (
    PieceFinished,
    Preview,
    Progress,
    RenderCancelled,
    RenderRequest,
    RenderResult,
    RequestInvalid,
    StatusMessage,
    Task,
)
from core.media.probe import probe
from core.render_queue import JobState, QueueError, RenderQueue
from tests.fakes import FakeBackend


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def request(tmp: Path | str = "/renders", name: str = "out") -> RenderRequest:
    base = Path(tmp)
    return RenderRequest(
        task=Task.REFERENCE_TO_VIDEO,
        prompt="a hero walks",
        output_path=str(base / f"{name}.mp4"),
        work_dir=str(base / f"{name}.work"),
        reference_images=(str(base / "hero.png"),),
    )


@pytest.fixture
def q() -> RenderQueue:
    return RenderQueue(clock=Clock())


def events(q: RenderQueue) -> list[tuple[Any, ...]]:
    log: list[tuple[Any, ...]] = []
    q.job_added.connect(lambda j, i: log.append(("added", j.job_id, i)))
    q.job_changed.connect(lambda j: log.append(("changed", j.job_id, j.state.value)))
    q.job_removed.connect(lambda j, i: log.append(("removed", j.job_id, i)))
    q.job_moved.connect(lambda j, a, b: log.append(("moved", j.job_id, a, b)))
    return log


def test_previews_go_first_then_queue_order(q: RenderQueue) -> None:
    assert q.next_job() is None
    final1 = q.submit(request(), "shot1", job_id="f1")
    final2 = q.submit(request(), "shot2", job_id="f2")
    assert q.next_job() is final1
    prev = q.submit(request(), "shot3", preview=True, job_id="p1")
    assert q.next_job() is prev
    q.move("f2", 0)
    q.start("p1")
    assert q.next_job() is final2
    with pytest.raises(QueueError, match="still running"):
        q.start("f2")


def test_newer_preview_supersedes_queued_and_running(q: RenderQueue) -> None:
    log = events(q)
    old_running = q.submit(request(), "shot", preview=True, job_id="p1")
    token = q.start("p1")
    old_queued = q.submit(request(), "shot", preview=True, job_id="p2")
    other_shot = q.submit(request(), "other", preview=True, job_id="p3")
    final = q.submit(request(), "shot", preview=False, job_id="f")
    newest = q.submit(request(), "shot", preview=True, job_id="p4")
    assert old_queued.state is JobState.CANCELLED and old_queued.superseded_by == "p4"
    assert old_running.state is JobState.RUNNING and old_running.cancel_requested and token.is_set()
    assert other_shot.state is JobState.QUEUED and final.state is JobState.QUEUED
    assert newest.state is JobState.QUEUED
    q.stopped("p1")  # the worker saw the token and the backend raised RenderCancelled
    assert old_running.state is JobState.CANCELLED and old_running.error == "Replaced by a newer preview."
    assert ("changed", "p2", "cancelled") in log and log[-1] == ("changed", "p1", "cancelled")


def test_cancel_pause_resume_retry(q: RenderQueue) -> None:
    a = q.submit(request(), job_id="a")
    b = q.submit(request(), job_id="b")
    q.cancel("b")
    assert b.state is JobState.CANCELLED
    with pytest.raises(QueueError, match="already cancelled"):
        q.cancel("b")
    q.retry("b")
    assert b.state is JobState.QUEUED
    q.pause("b")
    assert b.state is JobState.PAUSED and q.next_job() is a
    q.resume("b")
    assert b.state is JobState.QUEUED
    token = q.start("a")
    q.pause("a")
    assert token.is_set() and a.state is JobState.RUNNING and a.pause_requested
    q.stopped("a")
    assert a.state is JobState.PAUSED
    with pytest.raises(QueueError, match="Only paused jobs"):
        q.resume("b")
    q.resume("a")
    assert q.start("a") is not token and not a.cancel_event.is_set()
    q.fail("a", "CUDA out of memory: try 540P")
    assert a.state is JobState.FAILED and a.error.startswith("CUDA out of memory")
    with pytest.raises(QueueError, match="Only queued jobs can start"):
        q.start("a")
    q.retry("a")
    assert a.state is JobState.QUEUED and a.error == ""
    with pytest.raises(QueueError, match="no longer in the queue"):
        q.cancel("zzz")


def test_held_jobs_render_elsewhere_until_released(q: RenderQueue) -> None:
    waiting = q.submit(request(), "a", job_id="waiting")
    running = q.submit(request(), "b", preview=True, job_id="running")
    token = q.start("running")
    q.hold("waiting", "Rendering on cuda:0")
    q.hold("running", "Waiting for the GPUs")
    assert waiting.state is JobState.PAUSED and waiting.held == "Rendering on cuda:0"
    assert token.is_set() and running.pause_requested  # the editor's worker is asked to let go
    q.stopped("running")
    assert running.state is JobState.PAUSED and running.held
    assert q.next_job() is None and q.resumable() == []
    for refused in (q.resume, q.retry, q.cancel, q.remove, q.start):
        with pytest.raises(QueueError, match="rendering outside the editor"):
            refused("waiting")
    q.cancel_all()  # closing the window leaves them to the other process
    q.submit(request(), "b", preview=True, job_id="newer")  # nor does a newer preview supersede them
    assert running.state is JobState.PAUSED and not running.superseded_by
    q.hold("waiting", "Rendering on cuda:1")  # updating where it renders
    assert waiting.held == "Rendering on cuda:1"
    data = q.to_json()
    assert all("held" not in job for job in data["jobs"])  # not saved: a reopened project just resumes
    q.release("waiting")
    q.release("running", error="OutOfMemory on cuda:1")
    assert waiting.state is JobState.PAUSED and not waiting.held and q.resumable() == [waiting]
    assert running.state is JobState.FAILED and running.error == "OutOfMemory on cuda:1" and not running.held
    q.resume("waiting")
    assert q.next_job() is not None
    with pytest.raises(QueueError, match="Only unfinished jobs"):
        q.hold("running", "again")


def test_a_held_job_finished_elsewhere_is_released_finished_or_paused_with_a_note(q: RenderQueue) -> None:
    landed = q.submit(request(), "a", job_id="landed")
    kept = q.submit(request(), "b", job_id="kept")
    for job_id in ("landed", "kept"):
        q.hold(job_id, "Rendering on cuda:0")
        q.apply_event(job_id, Progress(3, 4, 1, 2))
    result = RenderResult("/renders/out.mp4", 50, 24, 64, 32)
    q.release("landed", result=result)
    assert landed.state is JobState.FINISHED and landed.result == result and not landed.held
    assert (landed.step, landed.piece, landed.fraction) == (4, 1, 1.0) and landed.finished == q.now()
    q.release("kept", note="Rendered on cuda:0 but not re-assembled here")
    assert kept.state is JobState.PAUSED and kept.error.startswith("Rendered on") and q.resumable() == [kept]
    q.resume("kept")
    assert kept.state is JobState.QUEUED and kept.error == ""


def test_move_remove_clear(q: RenderQueue) -> None:
    log = events(q)
    for name in "abc":
        q.submit(request(), job_id=name)
    q.move("c", 0)
    q.move("c", 99)
    assert [j.job_id for j in q.jobs] == ["a", "b", "c"]
    assert ("moved", "c", 2, 0) in log and ("moved", "c", 0, 2) in log
    q.start("a")
    with pytest.raises(QueueError, match="Cancel the running job"):
        q.remove("a")
    q.cancel("b")
    q.clear_done()
    assert [j.job_id for j in q.jobs] == ["a", "c"]
    assert ("removed", "b", 1) in log


def test_events_update_progress_and_estimate() -> None:
    clock = Clock()
    q = RenderQueue(clock=clock)
    job = q.submit(request(), job_id="j")
    q.start("j")
    assert job.estimate_remaining(clock()) is None
    clock.t += 10
    q.apply_event("j", Progress(step=5, total_steps=10, piece=0, total_pieces=2))
    assert job.fraction == 0.25
    assert job.estimate_remaining(clock()) == pytest.approx(30.0)
    q.apply_event("j", PieceFinished(0, 2, "/renders/out.work/piece_0.npy", 121))
    q.apply_event("j", StatusMessage("decoding"))
    q.apply_event("j", Preview(0, 5, 2, 1, b"\x00" * 6))
    assert job.last_finished_piece == 0 and job.piece_paths == ["/renders/out.work/piece_0.npy"]
    assert job.status == "decoding" and job.preview is not None
    clock.t += 30
    q.finish("j", RenderResult("/renders/out.mp4", 242, 24, 1280, 720))
    assert job.state is JobState.FINISHED and job.fraction == 1.0 and job.elapsed(clock.t + 99) == 40
    q.apply_event("j", Progress(1, 10))  # a late event changes nothing
    assert job.step == 10


def test_json_round_trip_offers_unfinished_jobs_for_resume(q: RenderQueue) -> None:
    done = q.submit(request(), job_id="done")
    q.start("done")
    q.finish("done", RenderResult("/renders/out.mp4", 9, 24, 64, 32))
    failed = q.submit(request(), job_id="failed")
    q.start("failed")
    q.fail("failed", "boom")
    q.move("failed", 0)
    q.submit(request(), "s", preview=True, job_id="waiting")
    running = q.submit(request(), job_id="running")
    q.move("waiting", 99)
    q.move("running", 2)
    q.start("running")
    q.apply_event("running", PieceFinished(1, 3, "/w/p1", 10))
    assert running.state is JobState.RUNNING and done.state is JobState.FINISHED
    data = q.to_json()
    again = RenderQueue.from_json(data)
    assert [j.job_id for j in again.jobs] == ["failed", "done", "running", "waiting"]
    assert {j.job_id for j in again.resumable()} == {"waiting", "running"}
    restored = again.job("running")
    assert restored.last_finished_piece == 1 and restored.request == running.request
    assert again.job("done").result == done.result and again.job("failed").error == "boom"
    assert again.next_job() is None  # nothing starts by itself after a restart
    assert failed.state is JobState.FAILED
    assert RenderQueue.from_json(None).jobs == []


# -- a real worker thread ------------------------------------------------------------------------


class Worker:
    """A minimal GPU worker: runs the backend on a thread; events come back to the test (main) thread
    through a queue, like the Qt worker's queued signals."""

    def __init__(self, q: RenderQueue, backend: FakeBackend) -> None:
        self.q, self.backend = q, backend
        self.inbox: stdqueue.Queue[tuple[str, str, Any]] = stdqueue.Queue()
        self.thread: threading.Thread | None = None

    def start_next(self) -> str:
        job = self.q.next_job()
        assert job is not None
        token = self.q.start(job.job_id)

        def run() -> None:
            try:
                result = self.backend.render(
                    job.request, lambda e: self.inbox.put(("event", job.job_id, e)), token
                )
            except RenderCancelled:
                self.inbox.put(("stopped", job.job_id, None))
            except Exception as error:  # the worker reports every failure in words
                self.inbox.put(("failed", job.job_id, str(error)))
            else:
                self.inbox.put(("finished", job.job_id, result))

        self.thread = threading.Thread(target=run)
        self.thread.start()
        return job.job_id

    def pump(self) -> str:
        """Deliver messages on this (main) thread until the job ends; returns how it ended."""
        while True:
            kind, job_id, payload = self.inbox.get(timeout=30)
            if kind == "event":
                self.q.apply_event(job_id, payload)
                continue
            if kind == "finished":
                self.q.finish(job_id, payload)
            elif kind == "failed":
                self.q.fail(job_id, payload)
            else:
                self.q.stopped(job_id)
            assert self.thread is not None
            self.thread.join(timeout=30)
            return kind


def test_fake_backend_full_render_writes_a_real_mp4(tmp_path: Path, q: RenderQueue) -> None:
    backend = FakeBackend(steps=2, pieces=2, num_frames=5)
    job = q.submit(request(tmp_path), job_id="j")
    worker = Worker(q, backend)
    worker.start_next()
    assert worker.pump() == "finished"
    assert job.state is JobState.FINISHED and job.last_finished_piece == 1
    assert (job.step, job.total_steps, job.piece, job.total_pieces) == (2, 2, 1, 2)
    info = probe(job.request.output_path)
    assert info.frame_count == 10 and (info.width, info.height) == (64, 32)


def test_pause_at_a_step_then_cancel_while_paused(tmp_path: Path, q: RenderQueue) -> None:
    backend = FakeBackend(steps=4, pause_at=(0, 2), write_output=False)
    job = q.submit(request(tmp_path), job_id="j")
    worker = Worker(q, backend)
    worker.start_next()
    assert backend.paused.wait(30)
    q.cancel("j")
    assert worker.pump() == "stopped"
    assert job.state is JobState.CANCELLED and job.step == 2  # steps 1 and 2 ran, not 3


def test_failure_on_demand_and_invalid_requests(tmp_path: Path, q: RenderQueue) -> None:
    q.submit(request(tmp_path), job_id="j")
    worker = Worker(q, FakeBackend(fail_at=(0, 1), fail_message="VAE decode ran out of memory"))
    worker.start_next()
    assert worker.pump() == "failed"
    assert q.job("j").error == "VAE decode ran out of memory"
    with pytest.raises(RequestInvalid, match="1 to 4 reference images"):
        FakeBackend(invalid_message="R2V takes 1 to 4 reference images").validate(request(tmp_path))


def test_pause_then_resume_after_restart_continues_from_checkpoints(tmp_path: Path) -> None:
    q = RenderQueue(clock=Clock())
    backend = FakeBackend(steps=2, pieces=3, pause_at=(2, 0), write_output=False)
    q.submit(request(tmp_path), "shot", job_id="j")
    worker = Worker(q, backend)
    worker.start_next()
    assert backend.paused.wait(30)
    q.pause("j")
    assert worker.pump() == "stopped"
    assert q.job("j").state is JobState.PAUSED and q.job("j").last_finished_piece == 1
    # the app quits; the saved queue comes back with the job offered for resume
    again = RenderQueue.from_json(q.to_json(), clock=Clock())
    assert [j.job_id for j in again.resumable()] == ["j"]
    again.resume("j")
    backend2 = FakeBackend(steps=2, pieces=3, write_output=False)
    worker2 = Worker(again, backend2)
    worker2.start_next()
    assert worker2.pump() == "finished"
    assert backend2.resumed_pieces == [0, 1]
    assert again.job("j").last_finished_piece == 2
