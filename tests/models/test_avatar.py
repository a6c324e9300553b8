"""Talking avatar end to end on the CPU with the tiny official-layout checkpoint: output file, frame
count from the audio, determinism, cancel inside a step, resume after a kill, and refused inputs."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core.generation import (
    ModelsMissing,
    PieceFinished,
    Progress,
    RenderCancelled,
    RenderRequest,
    RequestInvalid,
    Task,
)
from core.media.images import write_image
from core.media.probe import probe
from core.media.writer import write_wav
from models.avatar.pipeline import (
    AvatarRequest,
    TalkingAvatarPipeline,
    check_checkpoint,
    load_components,
    plan_windows,
    render_to_file,
    validate_request,
)
from models.avatar.tiny import write_tiny_avatar_checkpoint
from models.pipeline_base import PieceStore, RunContext

RATE = 16000
# Every official key at 16x16 pixels (a 2x2 latent, one token per latent frame): plumbing, not quality.
SMALL = {"480P": dict.fromkeys(("0.50", "1.00", "1.50"), (16, 16))}


def speech(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return 0.3 * envelope * np.sin(2 * np.pi * (140 + 40 * np.sin(2 * np.pi * t)) * t)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny models run ~20x faster with one intra-op thread on a busy 2-core machine (idle OpenMP
    threads spin against the other test processes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("avatar_media")
    rng = np.random.default_rng(0)
    files = {
        "portrait": write_image(folder / "portrait.png", rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)),
        "short": write_wav(folder / "short.wav", speech(1.0), RATE),
        "long": write_wav(folder / "long.wav", speech(3.6), RATE),
        "tiny": write_wav(folder / "tiny.wav", speech(0.2), RATE),
        "too_long": write_wav(folder / "too_long.wav", np.zeros(201 * RATE), RATE),
    }
    (folder / "broken.png").write_text("not an image")
    (folder / "broken.wav").write_text("not audio")
    files["broken_png"] = folder / "broken.png"
    files["broken_wav"] = folder / "broken.wav"
    return {k: Path(v) for k, v in files.items()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_avatar_checkpoint(tmp_path_factory.mktemp("avatar_ckpt") / "SkyReels-V3-A2V-19B")


@pytest.fixture(scope="module")
def pipeline(checkpoint: Path) -> TalkingAvatarPipeline:
    components = load_components(checkpoint, device="cpu", dtype=torch.float32)
    return TalkingAvatarPipeline(components, bucket_tables=SMALL)


def request(media: dict[str, Path], audio: str = "short", **changes: object) -> AvatarRequest:
    fields: dict[str, object] = {
        "portrait": str(media["portrait"]),
        "audio": str(media[audio]),
        "prompt": "A woman talks to the camera.",
        "resolution": "480P",
        "seed": 7,
    }
    fields.update(changes)
    return AvatarRequest(**fields)  # type: ignore[arg-type]


def collect(pipeline: TalkingAvatarPipeline, req: AvatarRequest, ctx: RunContext | None = None) -> np.ndarray:
    chunks: list[np.ndarray] = []
    pipeline.generate(req, ctx, on_frames=chunks.append)
    return np.concatenate(chunks)


def test_window_plan_matches_the_official_keyframes() -> None:
    assert plan_windows(63).single_pass
    assert plan_windows(250).keyframes == (24, 42, 61, 80) and plan_windows(250).video_frames == 273
    assert plan_windows(125).keyframes == (44, 80) and plan_windows(125).windows == 2
    assert plan_windows(81).keyframes == (80,) and plan_windows(81).windows == 1
    assert plan_windows(1500).windows == 24
    assert plan_windows(9000).real_frames == 5000


def test_render_writes_25fps_mp4_with_audio(pipeline: TalkingAvatarPipeline, media, tmp_path: Path) -> None:
    out = tmp_path / "avatar.mp4"
    result = render_to_file(pipeline, request(media), out)
    info = probe(out)
    assert result.num_frames == 25 and result.fps == 25 and result.has_audio  # ceil(25 * 1.0 s)
    assert info.fps == 25 and info.frame_count == 25
    assert info.has_audio and info.sample_rate == RATE
    assert (info.width, info.height) == (16, 16)


def test_same_seed_same_frames(pipeline: TalkingAvatarPipeline, media) -> None:
    first = collect(pipeline, request(media))
    hits = pipeline.text_cache.hits
    again = collect(pipeline, request(media))  # its prompt embeddings come from the cache
    assert pipeline.text_cache.hits == hits + 1
    other = collect(pipeline, request(media, seed=8))
    assert first.shape == (25, 16, 16, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_cancel_inside_a_step_skips_the_decode(pipeline: TalkingAvatarPipeline, media) -> None:
    cancel = threading.Event()
    events: list[object] = []
    decodes: list[int] = []
    vae = pipeline.components.vae
    original = vae.iter_decode
    vae.iter_decode = lambda *a, **k: (decodes.append(1), original(*a, **k))[1]
    # the user presses cancel while the first block of the first step runs
    hook = pipeline.components.transformer.blocks[0].register_forward_hook(lambda *args: cancel.set())
    try:
        with pytest.raises(RenderCancelled):
            collect(pipeline, request(media), RunContext(events.append, cancel))
    finally:
        hook.remove()
        vae.iter_decode = original
    assert not [e for e in events if isinstance(e, Progress)], "cancel must land before the step ends"
    assert not decodes


def test_killed_render_resumes_with_identical_frames(
    pipeline: TalkingAvatarPipeline, media, tmp_path
) -> None:
    req = request(media, audio="long")  # 3.6 s -> 90 frames: preview + 2 windows
    whole = collect(pipeline, req, RunContext(pieces=PieceStore(tmp_path / "a", "job", 25)))
    assert whole.shape[0] == 90

    store = PieceStore(tmp_path / "b", "job", 25)
    cancel = threading.Event()

    def kill_after_first_window(event: object) -> None:
        if isinstance(event, PieceFinished) and event.piece == 1:
            cancel.set()

    with pytest.raises(RenderCancelled):
        collect(pipeline, req, RunContext(kill_after_first_window, cancel, pieces=store))
    assert store.finished_indices() == [1]

    events: list[object] = []
    resumed = collect(pipeline, req, RunContext(events.append, pieces=store))
    passes = {e.piece for e in events if isinstance(e, Progress)}
    assert passes == {2}, "only the unfinished window runs again"
    np.testing.assert_array_equal(resumed, whole)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resolution": "540P"}, "540P"),
        ({"portrait": "/nowhere/face.png"}, "does not exist"),
        ({"portrait": "broken_png"}, "cannot be read"),
        ({"audio": "broken_wav"}, "(?i)cannot read"),
        ({"audio": "tiny"}, "at least 0.4 s"),
        ({"audio": "too_long"}, "at most 200 s"),
        ({"steps": 0}, "Steps"),
        ({"audio_start_s": 10.0, "audio_end_s": 250.0}, "at most 200 s"),
        ({"audio_start_s": 0.5, "audio_end_s": 0.5}, "ends before it starts"),
    ],
)
def test_bad_inputs_are_refused_before_loading(media, changes: dict[str, str], message: str) -> None:
    resolved = {k: str(media[v]) if isinstance(v, str) and v in media else v for k, v in changes.items()}
    audio = resolved.pop("audio", str(media["short"]))
    req = AvatarRequest(
        portrait=str(resolved.pop("portrait", media["portrait"])),
        audio=audio,
        prompt="hello",
        resolution=str(resolved.pop("resolution", "480P")),
        **resolved,  # type: ignore[arg-type]
    )
    with pytest.raises(RequestInvalid, match=message):
        validate_request(req)


def test_render_request_mapping_refuses_missing_audio(media, tmp_path: Path) -> None:
    job = RenderRequest(
        task=Task.TALKING_AVATAR,
        prompt="hi",
        output_path=str(tmp_path / "o.mp4"),
        work_dir=str(tmp_path),
        input_image=str(media["portrait"]),
    )
    with pytest.raises(RequestInvalid, match="audio"):
        AvatarRequest.from_render_request(job)


def test_partial_checkpoint_names_every_missing_file(tmp_path: Path) -> None:
    root = write_tiny_avatar_checkpoint(tmp_path / "partial")
    (root / "Wan2.1_VAE.pth").unlink()
    (root / "chinese-wav2vec2-base" / "preprocessor_config.json").unlink()
    with pytest.raises(ModelsMissing) as error:
        check_checkpoint(root)
    assert "Wan2.1_VAE.pth" in str(error.value)
    assert "chinese-wav2vec2-base/preprocessor_config.json" in str(error.value)


def test_cancelled_render_leaves_no_file(pipeline: TalkingAvatarPipeline, media, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    out = tmp_path / "never.mp4"
    with pytest.raises(RenderCancelled):
        render_to_file(pipeline, request(media), out, RunContext(cancel=cancel))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_production_dtypes_and_guidance_variants(checkpoint: Path, media) -> None:
    """bfloat16 DiT / T5 and float16 CLIP (the GPU settings), with text and audio guidance above 1."""
    components = load_components(checkpoint, device="cpu", dtype=torch.bfloat16)
    assert components.transformer.dtype == torch.bfloat16
    assert components.clip.visual.patch_embedding.weight.dtype == torch.float16
    pipe = TalkingAvatarPipeline(components, bucket_tables=SMALL)
    for text, audio in ((1.0, 1.0), (2.0, 2.0), (2.0, 1.0), (1.0, 3.0)):
        frames = collect(pipe, request(media, steps=1, text_guide_scale=text, audio_guide_scale=audio))
        assert frames.shape == (25, 16, 16, 3)


def test_audio_loading_resamples_and_mixes_down(tmp_path: Path) -> None:
    from models.avatar.audio import load_audio

    rate = 44100
    t = np.arange(rate) / rate
    left, right = 0.5 * np.sin(2 * np.pi * 300 * t), np.zeros_like(t)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1), rate)
    mono = load_audio(path)
    assert mono.dtype == np.float32 and abs(len(mono) - RATE) <= 1
    assert 0.2 < np.abs(mono[1000:-1000]).max() < 0.3  # channels averaged, not summed or dropped
    region = load_audio(path, start_s=0.25, end_s=0.75)
    assert len(region) == RATE // 2


def test_clip_and_dit_load_strictly(checkpoint: Path) -> None:
    from models.avatar.clip import config_from_state_dict as clip_config
    from models.avatar.clip import load_clip_vision
    from models.wan.loading import StateDictMismatchError, load_state_dict_file

    clip_state = load_state_dict_file(checkpoint / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth")
    text_only = {k: v for k, v in clip_state.items() if k != "textual.norm.weight"}
    with pytest.raises(StateDictMismatchError, match=r"textual\.norm\.weight"):
        load_clip_vision(text_only, clip_config(clip_state), dtype=torch.float32)
    encoder = load_clip_vision(clip_state, clip_config(clip_state), dtype=torch.float32)
    assert not hasattr(encoder, "textual")  # checked, then released

    shard = next(checkpoint.glob("*.safetensors"))
    from safetensors.torch import load_file, save_file

    broken = checkpoint.parent / "broken_dit"
    broken.mkdir()
    for item in checkpoint.iterdir():
        (broken / item.name).symlink_to(item)
    (broken / shard.name).unlink()
    save_file({**load_file(str(shard)), "blocks.0.extra.weight": torch.zeros(1)}, str(broken / shard.name))
    with pytest.raises(StateDictMismatchError, match=r"blocks\.0\.extra\.weight"):
        load_components(broken, device="cpu", dtype=torch.float32)


def test_parking_placement_moves_each_network_per_phase(pipeline: TalkingAvatarPipeline, media) -> None:
    from models.memory import Placement

    placement = Placement("cpu", park_idle=True)
    parked = TalkingAvatarPipeline(pipeline.components, placement=placement, bucket_tables=SMALL)
    np.testing.assert_array_equal(collect(parked, request(media)), collect(pipeline, request(media)))
    moved = {name for name, _ in placement.moves}
    assert {"AvatarTransformer", "WanT5EncoderModel", "VisionTower"} <= moved
    assert ("AvatarTransformer", "cpu") in placement.moves


def test_memory_plans_stream_and_chunk_the_same_computation(checkpoint: Path, pipeline, media) -> None:
    from models.avatar.pipeline import load_pipeline
    from models.memory import MemoryPlan

    def run(pipe: TalkingAvatarPipeline, req: AvatarRequest) -> tuple[np.ndarray, torch.Tensor]:
        chunks: list[np.ndarray] = []
        trace: dict[str, torch.Tensor] = {}
        pipe.generate(req, on_frames=chunks.append, trace=trace)
        return np.concatenate(chunks), trace["pass0.latents_final"]

    plain_frames, plain_latents = run(pipeline, request(media))
    plan = MemoryPlan(device="cpu", compute_dtype=torch.float32, block_streaming=True, ffn_chunk_tokens=2)
    streamed = load_pipeline(checkpoint, device="cpu", dtype=torch.float32, plan=plan, bucket_tables=SMALL)
    frames, latents = run(streamed, request(media))
    # FFN slices change only matmul blocking: float32 rounding, at most one uint8 level after truncation
    torch.testing.assert_close(latents, plain_latents, atol=1e-5, rtol=1e-5)
    assert np.abs(frames.astype(int) - plain_frames.astype(int)).max() <= 1
    fp8 = MemoryPlan(device="cpu", compute_dtype=torch.bfloat16, park_idle=True, fp8="layerwise")
    stored = load_pipeline(checkpoint, device="cpu", dtype=torch.bfloat16, plan=fp8, bucket_tables=SMALL)
    assert collect(stored, request(media, steps=1)).shape == (25, 16, 16, 3)


def test_job_size_of_a_480p_window(media) -> None:
    from models.avatar.pipeline import job_size

    req = request(media)
    size = job_size(req, validate_request(req))  # 48x40 portrait: aspect 1.2 -> 1.22 bucket, 704x576
    assert (size.frame_height, size.frame_width) == (704, 576)
    assert size.tokens == 21 * 44 * 36 and size.forwards_per_step == 1
    assert (
        job_size(
            request(media, text_guide_scale=5.0, audio_guide_scale=4.0), validate_request(req)
        ).forwards_per_step
        == 3
    )


def test_stored_noise_replaces_the_random_draws(pipeline: TalkingAvatarPipeline, media) -> None:
    trace: dict[str, torch.Tensor] = {}
    chunks: list[np.ndarray] = []
    pipeline.generate(request(media, seed=1), on_frames=chunks.append, trace=trace)
    injected: list[np.ndarray] = []
    pipeline.generate(request(media, seed=2), on_frames=injected.append, stored_noise=[trace["pass0.noise"]])
    np.testing.assert_array_equal(np.concatenate(injected), np.concatenate(chunks))
    with pytest.raises(ValueError, match="stored noise has 0 draws"):
        pipeline.generate(request(media), stored_noise=[])


def test_a_far_too_long_audio_file_is_refused_from_its_header_without_decoding(media, tmp_path, monkeypatch) -> None:
    import av

    from models.avatar.pipeline import validate_request

    long_file = write_wav(tmp_path / "hour.wav", np.zeros(260 * RATE, np.float32), RATE)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the file was decoded")

    monkeypatch.setattr(av, "AudioResampler", no_decoding)
    with pytest.raises(RequestInvalid, match="at most 200 s"):
        validate_request(AvatarRequest(portrait=str(media["portrait"]), audio=str(long_file), prompt="hi"))
