"""LocalBackend and the ``generate`` CLI on tiny checkpoints: the path the app and users take."""

from __future__ import annotations

import threading

import av
import numpy as np
import pytest
from PIL import Image

from core.generation import (
    PieceFinished,
    Progress,
    RenderCancelled,
    RenderRequest,
    RequestInvalid,
    StatusMessage,
    Task,
)
from main import cli
from models.backend import LocalBackend, fingerprint, loading_message
from models.memory import GIB, JobSize, plan_memory


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refs")
    a = folder / "a.png"
    b = folder / "b.png"
    Image.fromarray((np.random.default_rng(0).random((96, 160, 3)) * 255).astype(np.uint8)).save(a)
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(b)
    return str(a), str(b)


def _request(tmp_path, refs, **changes):
    base = RenderRequest(
        task=Task.REFERENCE_TO_VIDEO, prompt="a red ball", output_path=str(tmp_path / "out.mp4"),
        work_dir=str(tmp_path / "work"), reference_images=refs, duration_s=1, seed=3, model="tiny",
        steps=2,
    )
    return RenderRequest(**{**base.__dict__, **changes})


def test_render_writes_mp4_and_emits_events(tmp_path, refs, tiny_dir):
    events = []
    result = LocalBackend(tiny_dir=tiny_dir).render(_request(tmp_path, refs), events.append, threading.Event())
    assert result.fps == 24 and result.num_frames == 25
    with av.open(result.output_path) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 24
        assert sum(1 for _ in container.decode(stream)) == 25
    steps = [e for e in events if isinstance(e, Progress)]
    assert [e.step for e in steps] == [1, 2]
    assert any(isinstance(e, PieceFinished) for e in events)


def test_loading_the_models_is_announced_once_with_the_memory_plan(tmp_path, refs, tiny_dir):
    backend = LocalBackend(tiny_dir=tiny_dir)

    def statuses(seed: int) -> list[str]:
        events = []
        backend.render(_request(tmp_path / str(seed), refs, seed=seed), events.append, threading.Event())
        return [e.text for e in events if isinstance(e, StatusMessage)]

    assert statuses(1)[0] == "loading the models"
    assert not any(text.startswith("loading") for text in statuses(2))  # the loaded pipeline is reused
    # On a GPU the message says how the plan places the models.
    plan = plan_memory(24 * GIB, JobSize.r2v(720, 1280, 121), device="cuda", host_free_bytes=64 * GIB)
    assert loading_message(plan) == f"loading the models: {plan.reasons[-1]}"
    assert "streamed" in loading_message(plan)


def test_second_render_of_same_request_resumes_from_checkpoint(tmp_path, refs, tiny_dir):
    backend = LocalBackend(tiny_dir=tiny_dir)
    request = _request(tmp_path, refs)
    backend.render(request, lambda e: None, threading.Event())
    events = []
    backend.render(request, events.append, threading.Event())
    assert not any(isinstance(e, Progress) for e in events), "the finished piece should have been reused"


def test_fingerprint_ignores_output_location_but_not_seed(tmp_path, refs):
    a = _request(tmp_path, refs)
    assert fingerprint(a) == fingerprint(_request(tmp_path, refs, output_path="/elsewhere.mp4"))
    assert fingerprint(a) != fingerprint(_request(tmp_path, refs, seed=4))


def test_cancel_before_start_raises_and_writes_nothing(tmp_path, refs, tiny_dir):
    cancel = threading.Event()
    cancel.set()
    request = _request(tmp_path, refs, seed=11)
    with pytest.raises(RenderCancelled):
        LocalBackend(tiny_dir=tiny_dir).render(request, lambda e: None, cancel)
    assert not (tmp_path / "out.mp4").exists()


def test_validate_refuses_bad_requests_before_loading(tmp_path, refs):
    backend = LocalBackend(tiny_dir=str(tmp_path / "never-written"))
    with pytest.raises(RequestInvalid):
        backend.validate(_request(tmp_path, refs, reference_images=()))
    with pytest.raises(RequestInvalid):
        backend.validate(_request(tmp_path, refs, reference_images=(str(tmp_path / "missing.png"),)))
    with pytest.raises(RequestInvalid):
        backend.validate(_request(tmp_path, refs, task=Task.SINGLE_SHOT_EXTENSION, input_video=None))
    assert not (tmp_path / "never-written").exists(), "validation must not write or load models"


def test_cli_generate_tiny(tmp_path, refs, tiny_dir, monkeypatch, capsys):
    monkeypatch.setenv("SKYREELS_TINY_DIR", tiny_dir)
    out = tmp_path / "cli.mp4"
    code = cli(["generate", "--task", "reference_to_video", "--ref_imgs", ",".join(refs), "--prompt", "x",
                "--model", "tiny", "--duration", "1", "--steps", "1", "--output", str(out)])
    assert code == 0 and out.exists()
    assert "25 frames" in capsys.readouterr().out


def test_cli_reports_bad_input_readably(tmp_path, capsys):
    code = cli(["generate", "--task", "reference_to_video", "--ref_imgs", str(tmp_path / "nope.png"),
                "--model", "tiny", "--output", str(tmp_path / "x.mp4")])
    assert code == 2
    assert "error:" in capsys.readouterr().err


def test_extension_streams_into_mp4(tmp_path, tiny_dir):
    from core.media.writer import write_video

    clip = tmp_path / "clip.mp4"
    write_video(str(clip), np.stack([np.full((72, 128, 3), i * 5, np.uint8) for i in range(30)]), 24)
    request = RenderRequest(
        task=Task.SINGLE_SHOT_EXTENSION, prompt="continue", output_path=str(tmp_path / "ext.mp4"),
        work_dir=str(tmp_path / "work"), input_video=str(clip), duration_s=5, model="tiny", steps=1,
    )
    pieces = []
    backend = LocalBackend(tiny_dir=tiny_dir)
    result = backend.render(request, pieces.append, threading.Event())
    assert result.fps == 24 and result.num_frames == 132  # 5 s piece: 33 latents -> 132 new frames
    with av.open(result.output_path) as container:
        assert sum(1 for _ in container.decode(video=0)) == 132
    assert any(isinstance(e, PieceFinished) for e in pieces)
    # A new take of the same shot reuses the prompt's embedding.
    backend.render(RenderRequest(**{**request.__dict__, "seed": 9}), lambda e: None, threading.Event())
    assert backend._loaded.pipeline.text_cache.hits == 1


def test_rerendering_a_shot_reuses_the_prompt_embeddings_and_changes_nothing(tmp_path, refs, tiny_dir):
    backend = LocalBackend(tiny_dir=tiny_dir)
    first = backend.render(_request(tmp_path, refs, seed=5, output_path=str(tmp_path / "a.mp4")),
                           lambda e: None, threading.Event())
    pipeline = backend._loaded.pipeline
    calls = []
    hook = pipeline.components.text_encoder.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        # Another seed (a new take): the text encoder does not run again.
        backend.render(_request(tmp_path, refs, seed=6, output_path=str(tmp_path / "b.mp4")),
                       lambda e: None, threading.Event())
        assert calls == [] and pipeline.text_cache.hits == 1
        # Another prompt does run it.
        backend.render(_request(tmp_path, refs, seed=6, prompt="a blue ball", output_path=str(tmp_path / "c.mp4")),
                       lambda e: None, threading.Event())
        assert calls
    finally:
        hook.remove()
    # Same seed as the first render, prompt from the cache: the same frames as the cold render.
    again = backend.render(_request(tmp_path, refs, seed=5, output_path=str(tmp_path / "d.mp4"),
                                    work_dir=str(tmp_path / "other-work")),
                           lambda e: None, threading.Event())
    assert pipeline.text_cache.hits == 2

    def frames(path):
        with av.open(path) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]

    assert all(np.array_equal(a, b) for a, b in zip(frames(first.output_path), frames(again.output_path), strict=True))


def _no_models(*args, **kwargs):
    raise AssertionError("a finished render must not load or run a model")


def test_a_finished_render_is_reassembled_without_models(tmp_path, refs, tiny_dir, monkeypatch):
    request = _request(tmp_path, refs, output_path=str(tmp_path / "first.mp4"))
    first = LocalBackend(tiny_dir=tiny_dir).render(request, lambda e: None, threading.Event())
    # Another backend (the editor, after a render node filled the work folder) and another output path.
    monkeypatch.setattr(LocalBackend, "_run", _no_models)
    events = []
    again = LocalBackend(tiny_dir=tiny_dir).render(
        RenderRequest(**{**request.__dict__, "output_path": str(tmp_path / "again.mp4")}), events.append,
        threading.Event())
    assert (again.num_frames, again.fps, again.width, again.height) == (
        first.num_frames, first.fps, first.width, first.height)
    assert any("reusing" in getattr(e, "text", "") for e in events)
    with av.open(first.output_path) as a, av.open(again.output_path) as b:
        assert [f.to_ndarray(format="rgb24").tobytes() for f in a.decode(video=0)] == [
            f.to_ndarray(format="rgb24").tobytes() for f in b.decode(video=0)]


def test_reassemble_joins_a_finished_render_and_never_loads_a_model(tmp_path, refs, tiny_dir, monkeypatch):
    request = _request(tmp_path, refs, output_path=str(tmp_path / "first.mp4"), steps=1)
    again = RenderRequest(**{**request.__dict__, "output_path": str(tmp_path / "again.mp4"), "device": "cuda:3"})
    editor = LocalBackend(tiny_dir=tiny_dir)
    monkeypatch.setattr(editor, "_pipeline", _no_models)
    assert editor.reassemble(again, lambda e: None, threading.Event()) is None  # nothing rendered yet
    first = LocalBackend(tiny_dir=tiny_dir).render(request, lambda e: None, threading.Event())
    events = []
    result = editor.reassemble(again, events.append, threading.Event())  # another device: same render
    assert result is not None and result.output_path == again.output_path
    assert (result.num_frames, result.width, result.height) == (first.num_frames, first.width, first.height)
    assert any("reusing" in getattr(e, "text", "") for e in events) and editor._loaded is None
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RenderCancelled):
        editor.reassemble(again, lambda e: None, cancel)


def test_a_finished_avatar_render_is_reassembled_with_its_sound(tmp_path, tiny_dir, monkeypatch):
    from core.media.probe import probe
    from core.media.writer import write_wav

    face = tmp_path / "face.png"
    Image.fromarray((np.random.default_rng(1).random((80, 64, 3)) * 255).astype(np.uint8)).save(face)
    voice = tmp_path / "voice.wav"
    t = np.arange(16000) / 16000
    write_wav(str(voice), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    request = RenderRequest(task=Task.TALKING_AVATAR, prompt="talks", output_path=str(tmp_path / "a.mp4"),
                            work_dir=str(tmp_path / "work"), input_image=str(face), input_audio=str(voice),
                            seed=1, model="tiny", steps=1)
    first = LocalBackend(tiny_dir=tiny_dir).render(request, lambda e: None, threading.Event())
    monkeypatch.setattr(LocalBackend, "_run", _no_models)
    again = LocalBackend(tiny_dir=tiny_dir).render(
        RenderRequest(**{**request.__dict__, "output_path": str(tmp_path / "b.mp4")}), lambda e: None,
        threading.Event())
    assert again.has_audio and again.num_frames == first.num_frames == 25
    info = probe(again.output_path)
    assert info.has_audio and info.sample_rate == 16000 and info.frame_count == 25


def test_render_after_validate_reads_the_inputs_once_unless_they_changed(tmp_path, refs, tiny_dir, monkeypatch):
    import shutil

    backend = LocalBackend(tiny_dir=tiny_dir)
    prepared = []
    original = LocalBackend._prepare
    monkeypatch.setattr(LocalBackend, "_prepare", lambda self, r: (prepared.append(r), original(self, r))[1])
    request = _request(tmp_path, refs)
    backend.validate(request)
    backend.render(request, lambda e: None, threading.Event())
    assert len(prepared) == 1
    # A reference image replaced between validation and render is read again.
    image = tmp_path / "ref.png"
    shutil.copyfile(refs[0], image)
    changed = _request(tmp_path, (str(image),), seed=8, output_path=str(tmp_path / "b.mp4"))
    backend.validate(changed)
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(image)
    backend.render(changed, lambda e: None, threading.Event())
    assert len(prepared) == 3
    # Another request than the one validated is prepared for itself.
    backend.validate(request)
    backend.render(RenderRequest(**{**request.__dict__, "seed": 12}), lambda e: None, threading.Event())
    assert len(prepared) == 5


def test_a_render_that_would_not_fit_the_disk_is_refused_before_any_model_loads(tmp_path, refs):
    import shutil
    from types import SimpleNamespace

    from core.generation import DiskFull
    from models.backend import check_disk_space
    from models.estimate import disk_bytes

    request = _request(tmp_path, refs, model="Skywork/SkyReels-V3-R2V-14B", duration_s=5, resolution="720P",
                       aspect="16:9")
    needed = disk_bytes(request)
    assert needed == int(121 * 720 * 1280 * 3 * 1.15)  # 5 s of 720P exact frames + their MP4s
    with pytest.raises(DiskFull, match="Clean Up Render Files"):
        check_disk_space(request, lambda path: SimpleNamespace(free=needed))  # the 1 GB margin is missing
    check_disk_space(request, lambda path: SimpleNamespace(free=needed + 2**30))
    # Pieces an earlier attempt left in the work folder are already written.
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "piece_0000.npy").write_bytes(b"x" * 10_000_000)
    check_disk_space(request, lambda path: SimpleNamespace(free=needed - 10_000_000 + 2**30))
    check_disk_space(_request(tmp_path, refs), lambda path: pytest.fail("tiny renders need no check"))
    shutil.rmtree(tmp_path / "work")


def test_a_disk_filling_up_mid_render_is_reported_in_words(tmp_path, refs, tiny_dir, monkeypatch):
    import errno

    from core.generation import DiskFull
    from models.pipeline_base import PieceStore

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PieceStore, "save", full)
    with pytest.raises(DiskFull, match=r"disk is full.*resume"):
        LocalBackend(tiny_dir=tiny_dir).render(_request(tmp_path, refs, seed=77), lambda e: None, threading.Event())
    monkeypatch.setattr(PieceStore, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EACCES, "denied")))
    with pytest.raises(PermissionError):  # other errors stay what they are
        LocalBackend(tiny_dir=tiny_dir).render(_request(tmp_path, refs, seed=78), lambda e: None, threading.Event())
