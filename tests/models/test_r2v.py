"""Reference-to-video end to end on the tiny checkpoint (CPU): frames, fps, determinism, cancel,
previews, presets, bucket choice, validation and loader errors."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.generation import (
    ModelsMissing,
    PieceFinished,
    Preview,
    Progress,
    Quality,
    RenderCancelled,
    RenderRequest,
    RequestInvalid,
    Task,
)
from models.buckets import select_bucket
from models.pipeline_base import RunContext
from models.r2v.loading import load_components, missing_files
from models.r2v.pipeline import (
    R2VRequest,
    ReferenceToVideoPipeline,
    letterbox,
    stream_decode,
    to_uint8_frames,
    validate_request,
)
from models.r2v.tiny import TINY_BUCKET_TABLES, tiny_bucket_size, write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("r2v") / "tiny", seed=0)


@pytest.fixture(scope="module")
def pipeline(checkpoint: Path) -> ReferenceToVideoPipeline:
    components = load_components(checkpoint, device="cpu", dtype=torch.float32)
    return ReferenceToVideoPipeline(components, device="cpu", bucket_tables=TINY_BUCKET_TABLES)


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("refs")
    rng = np.random.default_rng(7)
    paths = []
    for index, (width, height) in enumerate([(160, 90), (60, 80), (50, 50), (120, 40)]):
        pixels = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        path = folder / f"ref_{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def _request(refs: list[str], **changes: object) -> R2VRequest:
    settings: dict[str, object] = {
        "reference_images": tuple(refs),
        "prompt": "a man walks",
        "duration_s": 1,
        "resolution": "480P",
        "steps": 2,
    }
    settings.update(changes)
    return R2VRequest(**settings)  # type: ignore[arg-type]


def test_frame_count_fps_progress_and_previews(pipeline: ReferenceToVideoPipeline, refs: list[str]) -> None:
    events: list[object] = []
    result = pipeline.generate(_request(refs[:1], steps=None), RunContext(emit=events.append))
    height, width = tiny_bucket_size("480P", "0.56")  # first reference is 160x90 -> ratio 0.5625
    assert result.frames.shape == (25, height, width, 3)  # 24 * 1 s + 1
    assert result.frames.dtype == np.uint8
    assert result.fps == 24
    assert result.steps == 8  # official default
    progress = [e for e in events if isinstance(e, Progress)]
    assert [(p.step, p.total_steps) for p in progress] == [(s, 8) for s in range(1, 9)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == 8
    assert len(previews[0].rgb) == previews[0].width * previews[0].height * 3
    assert [e.num_frames for e in events if isinstance(e, PieceFinished)] == [25]


def test_same_seed_same_video_other_seed_other_video(
    pipeline: ReferenceToVideoPipeline, refs: list[str]
) -> None:
    first = pipeline.generate(_request(refs[:2], seed=3)).frames
    again = pipeline.generate(_request(refs[:2], seed=3)).frames
    other = pipeline.generate(_request(refs[:2], seed=4)).frames
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_stored_noise_reproduces_the_generator_draws(
    pipeline: ReferenceToVideoPipeline, refs: list[str]
) -> None:
    trace: dict[str, torch.Tensor] = {}
    drawn = pipeline.generate(_request(refs[:2], seed=11), trace=trace)
    stored = [trace["noise.0"], trace["noise.1"], trace["noise.2"]]
    injected = pipeline.generate(_request(refs[:2], seed=999), stored_noise=stored)
    assert np.array_equal(drawn.frames, injected.frames)
    with pytest.raises(ValueError, match="shape"):
        pipeline.generate(_request(refs[:2]), stored_noise=[torch.zeros(1, 16, 2, 2, 2)] * 3)


class _CancelAfter:
    """Emit sink that sets cancel once a given event type has been seen ``count`` times."""

    def __init__(self, kind: type, count: int) -> None:
        self.kind, self.count, self.cancel, self.events = kind, count, threading.Event(), []

    def __call__(self, event: object) -> None:
        self.events.append(event)
        if isinstance(event, self.kind) and sum(isinstance(e, self.kind) for e in self.events) >= self.count:
            self.cancel.set()


def test_cancel_after_a_step_skips_decode(
    pipeline: ReferenceToVideoPipeline, refs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = _CancelAfter(Progress, 1)
    decoded = []
    monkeypatch.setattr(pipeline, "decode", lambda *args, **kwargs: decoded.append(1))
    with pytest.raises(RenderCancelled):
        pipeline.generate(_request(refs[:1], steps=4), RunContext(emit=sink, cancel=sink.cancel))
    assert [e.step for e in sink.events if isinstance(e, Progress)] == [1]
    assert not decoded
    assert not any(isinstance(e, PieceFinished) for e in sink.events)


def test_cancel_lands_inside_a_step(pipeline: ReferenceToVideoPipeline, refs: list[str]) -> None:
    cancel = threading.Event()
    block = pipeline.components.transformer.blocks[0]
    handle = block.register_forward_hook(lambda *args: cancel.set())  # cancel during the first forward
    events: list[object] = []
    try:
        with pytest.raises(RenderCancelled):
            pipeline.generate(_request(refs[:1]), RunContext(emit=events.append, cancel=cancel))
    finally:
        handle.remove()
    assert not any(isinstance(e, Progress) for e in events)  # not even step 1 finished
    # The cancel checks are removed again: a normal run still works.
    assert pipeline.generate(_request(refs[:1])).frames.shape[0] == 25


def test_user_aspect_overrides_the_first_reference(
    pipeline: ReferenceToVideoPipeline, refs: list[str]
) -> None:
    result = pipeline.generate(_request(refs[:1], aspect="9:16", duration_s=1))
    assert result.bucket.key == "1.78"
    assert result.frames.shape[1:3] == tiny_bucket_size("480P", "1.78")
    assert result.frames.shape[1] > result.frames.shape[2]


def test_draft_preset_is_smaller_and_shorter(pipeline: ReferenceToVideoPipeline, refs: list[str]) -> None:
    events: list[object] = []
    draft = _request(refs[:1], resolution="720P", steps=None, quality=Quality.DRAFT)
    result = pipeline.generate(draft, RunContext(emit=events.append))
    assert result.steps == 4
    assert result.frames.shape[1:3] == tiny_bucket_size("480P", "0.56")
    assert max(e.step for e in events if isinstance(e, Progress)) == 4
    assert _request(refs[:1], steps=None).effective_steps == 8


def test_four_references_fill_every_slot(pipeline: ReferenceToVideoPipeline, refs: list[str]) -> None:
    trace: dict[str, torch.Tensor] = {}
    pipeline.generate(_request(refs), trace=trace)
    condition = trace["latents.condition"]
    assert condition.shape[2] == 4
    assert all(condition[:, :, slot].abs().sum() > 0 for slot in range(4))
    assert trace["refs.pixels"].shape[0] == 4


def test_letterbox_pads_with_white_and_keeps_the_picture_centred() -> None:
    image = Image.new("RGB", (100, 20), (10, 20, 30))
    boxed = np.asarray(letterbox(image, 64, 64))
    assert boxed.shape == (64, 64, 3)
    assert (boxed[:20] == 255).all() and (boxed[-20:] == 255).all()
    assert np.abs(boxed[32].astype(int) - [10, 20, 30]).max() <= 2


def test_uint8_frames_round_on_the_device_as_numpy_does() -> None:
    # Values whose x255 lands exactly on a half (ties go to even), on 0 and 1, and out of range.
    halves = (torch.arange(256, dtype=torch.float32) + 0.5) / 255 * 2 - 1
    rest = torch.rand(3 * 4 * 5 * 7, generator=torch.Generator().manual_seed(3)) * 2.4 - 1.2
    values = torch.cat([halves, torch.tensor([-1.0, 1.0, -1.5, 1.5, 0.0]), rest])
    values = values[: 3 * (len(values) // 3)].reshape(1, 3, -1, 1, 1)
    reference = (values[0].permute(1, 2, 3, 0).float() / 2 + 0.5).clamp(0, 1).numpy()
    reference = (reference * 255).round().astype(np.uint8)  # diffusers' numpy postprocessing
    assert np.array_equal(to_uint8_frames(values), reference)


def test_streaming_decode_equals_the_vae_decode(pipeline: ReferenceToVideoPipeline) -> None:
    vae = pipeline.components.vae
    z = torch.randn(1, 16, 3, 3, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = vae.decode(z, return_dict=False)[0]
        pieces = list(stream_decode(vae, z))
    assert len(pieces) == 3
    assert torch.equal(torch.cat(pieces, dim=2), whole)
    assert np.array_equal(np.concatenate([to_uint8_frames(p) for p in pieces]), to_uint8_frames(whole))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reference_images": ()}, "at least one reference"),
        ({"reference_images": "five"}, "at most 4"),
        ({"reference_images": ("/nonexistent/ref.png",)}, "does not exist"),
        ({"reference_images": "text"}, "cannot be read"),
        ({"resolution": "1080P"}, "Resolution must be one of"),
        ({"aspect": "2:1"}, "Aspect must be one of"),
        ({"duration_s": 0}, "whole number of seconds"),
        ({"prompt": "   "}, "Write a prompt"),
        ({"steps": 0}, "Steps must be between"),
    ],
)
def test_bad_requests_are_refused_before_any_model_loads(
    refs: list[str], tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    if changes.get("reference_images") == "five":
        changes["reference_images"] = (*refs, refs[0])
    if changes.get("reference_images") == "text":
        fake = tmp_path / "notes.png"
        fake.write_text("not an image")
        changes["reference_images"] = (str(fake),)
    request = _request(refs[:1], **changes)
    with pytest.raises(RequestInvalid, match=message):
        validate_request(request)
    # A pipeline without any loaded model refuses the same request the same way.
    with pytest.raises(RequestInvalid, match=message):
        ReferenceToVideoPipeline(components=None).generate(request)


def test_render_request_mapping(refs: list[str], tmp_path: Path) -> None:
    base = RenderRequest(
        task=Task.REFERENCE_TO_VIDEO,
        prompt="p",
        output_path=str(tmp_path / "o.mp4"),
        work_dir=str(tmp_path),
        reference_images=tuple(refs[:2]),
        duration_s=3.0,
        aspect="16:9",
        quality=Quality.DRAFT,
    )
    request = R2VRequest.from_render_request(base)
    assert (request.duration_s, request.num_frames, request.num_latent_frames) == (3, 73, 19)
    assert request.aspect == "16:9" and request.effective_steps == 4
    with pytest.raises(RequestInvalid, match="whole seconds"):
        R2VRequest.from_render_request(RenderRequest(**{**base.__dict__, "duration_s": 2.5}))


def test_first_reference_picks_the_official_bucket() -> None:
    assert select_bucket("720P", image_size=(1920, 1080)).__dict__ == {
        "key": "0.56",
        "height": 720,
        "width": 1280,
    }
    assert select_bucket("480P", image_size=(1000, 1000)).__dict__ == {
        "key": "1.00",
        "height": 640,
        "width": 640,
    }
    assert select_bucket("540P", image_size=(300, 400)).key == "1.33"


def test_partial_folder_lists_exactly_the_missing_files(checkpoint: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(checkpoint, partial)
    (partial / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    (partial / "vae" / "config.json").unlink()
    shutil.rmtree(partial / "tokenizer")
    expected = [
        "vae/config.json",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
        "transformer/diffusion_pytorch_model.safetensors",
    ]
    assert missing_files(partial) == expected
    with pytest.raises(ModelsMissing) as error:
        load_components(partial)
    for name in expected:
        assert name in str(error.value)


def test_wrong_weights_name_the_bad_keys(checkpoint: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    weights = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state["blocks.0.renamed.weight"] = state.pop("blocks.0.ffn.net.2.weight")
    save_file(state, str(weights))
    with pytest.raises(ModelsMissing, match=r"blocks\.0\.ffn\.net\.2\.weight.*blocks\.0\.renamed\.weight"):
        load_components(broken, dtype=torch.float32)


def test_bfloat16_load_keeps_the_same_float32_parts_as_diffusers(checkpoint: Path) -> None:
    from diffusers import WanTransformer3DModel

    from models.r2v.loading import load_transformer

    ours = load_transformer(checkpoint / "transformer", dtype=torch.bfloat16)
    stock = WanTransformer3DModel.from_pretrained(
        checkpoint, subfolder="transformer", torch_dtype=torch.bfloat16
    )
    ours_dtypes = {key: value.dtype for key, value in ours.state_dict().items()}
    assert ours_dtypes == {key: value.dtype for key, value in stock.state_dict().items()}
    assert ours_dtypes["blocks.0.norm2.weight"] == torch.float32
    assert ours_dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16
    for key, value in stock.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key


def test_dual_guidance_combines_three_predictions(
    pipeline: ReferenceToVideoPipeline, refs: list[str]
) -> None:
    transformer = pipeline.components.transformer
    outputs: list[torch.Tensor] = []
    handle = transformer.register_forward_hook(lambda module, args, output: outputs.append(output[0].clone()))
    trace: dict[str, torch.Tensor] = {}
    events: list[object] = []
    try:
        request = _request(refs[:2], guidance_scale=3.0, guidance_scale_img=2.0, negative_prompt="blurry")
        pipeline.generate(request, RunContext(emit=events.append), trace=trace)
    finally:
        handle.remove()
    assert len(outputs) == 3 * 2  # conditional, text-unconditional, fully unconditional per step
    frames = trace["step0.model_output"].shape[2]
    cond, uncond_text, uncond_all = (out[:, :, :frames] for out in outputs[:3])
    expected = uncond_all + 2.0 * (uncond_text - uncond_all) + 3.0 * (cond - uncond_text)
    torch.testing.assert_close(trace["step0.model_output"], expected)
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2]
