"""Talking-avatar generation (spec section 5): a portrait and a voice track become a 25 fps talking video.

Owns the typed request (:class:`AvatarRequest`) and its validation (no model loads), the checkpoint
check and loader for the official flat folder layout, and :class:`TalkingAvatarPipeline`, which runs the
official long-video algorithm:

1. The audio (16 kHz mono, -23 LUFS) becomes wav2vec2 features at 25 fps: ``ceil(25 * seconds)`` frames.
2. A **preview (keyframe) pass** generates 81 frames from the portrait with the user prompt. With fewer
   than 81 frames of audio this pass is the output. Otherwise its frames serve as a storyboard: one
   keyframe per output window, picked by mapping the windows' end frames over the whole clip onto the
   preview's 81 frames.
3. **Output windows** of 81 frames advance by 64 (5 motion frames + 12 dropped frames of overlap); each
   is conditioned on the previous window's last 5 frames (the portrait for the first), on its keyframe
   repeated as 5 pseudo end frames, on CLIP features of its first conditioning frame, on
   "a person is talking", and on its audio; from the second window on, the motion latents are
   re-injected at the current noise level before and after every Euler step.
4. Audio past the end is mirror-padded so the windows tile exactly; the video is cut to the audio length.
5. Every decoded window is colour-matched to the portrait in Lab and truncated to uint8.

Library guarantees: the request is validated with user-readable messages before anything loads; progress
per step and per pass; cancel is honoured inside a step (before every DiT block) and no VAE decode runs
after it; every finished window is checkpointed (``RunContext.piece_finished``) with what the next window
needs, so a killed render resumes with identical frames; frames stream to a sink window by window (a
200 s render never holds its frames in memory); a seed gives the same video (one CPU generator, the
official draw order). Official quirks kept on purpose are listed in ``models/avatar/README.md``.

Progress and pieces are numbered by pass: pass 0 is the preview, pass ``c + 1`` output window ``c``
(with audio shorter than 81 frames there is only pass 0, and it is the output).

Imports torch, transformers, PIL, numpy and ``core`` types; never PySide6 or ``app``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from core.generation import ModelsMissing, Quality, RenderRequest, RenderResult, RequestInvalid, Task
from models.avatar import audio as avatar_audio
from models.avatar.clip import CHECKPOINT_NAME as CLIP_FILE
from models.avatar.clip import ClipConfig, ClipImageEncoder, load_clip_vision
from models.avatar.clip import config_from_state_dict as clip_config_from_state_dict
from models.avatar.color import ColourMatcher, to_uint8
from models.avatar.schedule import (
    DEFAULT_SHIFT,
    DEFAULT_STEPS,
    NUM_TRAIN_TIMESTEPS,
    avatar_timesteps,
    euler_step,
    noise_to,
)
from models.avatar.transformer import AvatarTransformer, AvatarTransformerConfig
from models.avatar.wav2vec2 import FOLDER as WAV2VEC2_DIR
from models.avatar.wav2vec2 import audio_embedding, load_wav2vec2
from models.buckets import closest_key
from models.input_cache import InputCache, read_through
from models.pipeline_base import (
    NoiseSource,
    NullPlacement,
    PieceSink,
    RunContext,
    TextEmbeddingCache,
    install_block_cancel_checks,
)

FPS = 25
WINDOW = 81  # frames per pass (21 latent frames)
MOTION_FRAMES = 5
MATCH_BATCH_PIXELS = 8_000_000  # decoded pixels colour-matched at once (about 9 frames at 720p) ...
MATCH_BATCH_FRAMES = 16  # ... or frames: batches small enough for the piece encoder to keep up meanwhile
DROP_FRAMES = 12
PSEUDO_END_FRAMES = 5
AUDIO_CONTEXT = 2  # audio window offsets -2..+2 around each video frame
MAX_FRAMES = 5000  # 200 s at 25 fps
MAX_STEPS = 50
VAE_STRIDE = (4, 8, 8)
LATENT_CHANNELS = 16
CONNECTION_PROMPT = "a person is talking"
NEGATIVE_PROMPT = (
    "bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, static, "
    "overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, extra fingers, "
    "poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, fused fingers, still "
    "picture, messy background, three legs, many people in the background, walking backwards"
)

# Official size buckets: key = height / width of the portrait, value = (height, width).
BUCKETS_480P: dict[str, tuple[int, int]] = {
    "0.26": (320, 1216), "0.38": (384, 1024), "0.50": (448, 896), "0.577": (480, 832), "0.67": (512, 768),
    "0.82": (576, 704), "1.00": (640, 640), "1.22": (704, 576), "1.50": (768, 512), "1.86": (832, 448),
    "1.73": (832, 480), "2.00": (896, 448), "2.50": (960, 384), "2.83": (1088, 384), "3.60": (1152, 320),
    "3.80": (1216, 320), "4.00": (1280, 320),
}  # fmt: skip
BUCKETS_720P: dict[str, tuple[int, int]] = {
    "0.22": (448, 2048), "0.29": (512, 1792), "0.36": (576, 1600), "0.45": (640, 1408), "0.55": (704, 1280),
    "0.56": (720, 1280), "0.63": (768, 1216), "0.76": (832, 1088), "0.88": (896, 1024), "1.00": (960, 960),
    "1.14": (1024, 896), "1.31": (1088, 832), "1.50": (1152, 768), "1.58": (1216, 768), "1.82": (1280, 704),
    "1.78": (1280, 720), "1.91": (1344, 704), "2.20": (1408, 640), "2.30": (1472, 640), "2.67": (1536, 576),
    "2.89": (1664, 576), "3.62": (1856, 512), "3.75": (1920, 512),
}  # fmt: skip
BUCKETS: dict[str, dict[str, tuple[int, int]]] = {"480P": BUCKETS_480P, "720P": BUCKETS_720P}

# Files of the official flat layout (spec 5.2) this loader reads. The ``xlm-roberta-large/`` CLIP text
# tokenizer is loaded by the official code but never used, so it is not required here.
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
T5_TOKENIZER_DIR = "google/umt5-xxl"
VAE_FILE = "Wan2.1_VAE.pth"
WAV2VEC2_FILES = ("config.json", "preprocessor_config.json")
WAV2VEC2_WEIGHTS = ("pytorch_model.bin", "model.safetensors")


# ---------------------------------------------------------------------------------------------
# Request and validation


@dataclass(frozen=True)
class Preset:
    steps: int
    resolution: str | None


PRESETS: dict[Quality, Preset] = {
    # The official settings: 4 Euler steps (the model is distilled), requested resolution.
    Quality.FINAL: Preset(steps=DEFAULT_STEPS, resolution=None),
    # Draft: same steps at 480P (about 2.2x fewer tokens than 720P per window).
    Quality.DRAFT: Preset(steps=DEFAULT_STEPS, resolution="480P"),
}


@dataclass(frozen=True)
class AvatarRequest:
    """One talking-avatar job, validated by :func:`validate_request` before any model loads."""

    portrait: str
    audio: str
    prompt: str
    resolution: str = "720P"
    seed: int = 42
    steps: int | None = None
    quality: Quality = Quality.FINAL
    audio_start_s: float | None = None
    audio_end_s: float | None = None
    shift: float = DEFAULT_SHIFT
    text_guide_scale: float = 1.0
    audio_guide_scale: float = 1.0
    negative_prompt: str = ""
    connection_prompt: str = CONNECTION_PROMPT

    @property
    def effective_resolution(self) -> str:
        return PRESETS[self.quality].resolution or self.resolution

    @property
    def effective_steps(self) -> int:
        return self.steps if self.steps is not None else PRESETS[self.quality].steps

    @classmethod
    def from_render_request(cls, request: RenderRequest) -> AvatarRequest:
        if request.task != Task.TALKING_AVATAR:
            raise RequestInvalid(f"not a talking-avatar request: {request.task.value}")
        if not request.input_image:
            raise RequestInvalid("Choose a portrait image for the talking avatar.")
        if not request.input_audio:
            raise RequestInvalid("Choose the voice audio that drives the talking avatar.")
        extra = request.extra or {}
        return cls(
            portrait=request.input_image,
            audio=request.input_audio,
            prompt=request.prompt,
            resolution=request.resolution,
            seed=request.seed,
            steps=request.steps,
            quality=request.quality,
            audio_start_s=request.audio_start_s,
            audio_end_s=request.audio_end_s,
            shift=float(extra.get("shift", DEFAULT_SHIFT)),
            text_guide_scale=float(extra.get("text_guide_scale", 1.0)),
            audio_guide_scale=float(extra.get("audio_guide_scale", 1.0)),
            negative_prompt=str(extra.get("negative_prompt", "")),
            connection_prompt=str(extra.get("connection_prompt", CONNECTION_PROMPT)),
        )


@dataclass
class AvatarInputs:
    """What validation read: the portrait (RGB) and the loudness-normalised 16 kHz mono audio."""

    portrait: Image.Image
    speech: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.speech) / avatar_audio.SAMPLE_RATE

    @property
    def num_frames(self) -> int:
        return avatar_audio.video_frames_for(len(self.speech))


def validate_request(request: AvatarRequest, cache: InputCache | None = None) -> AvatarInputs:
    """Check a request completely (no model loads) and return its decoded inputs (through ``cache`` when
    given: unchanged files are decoded once for several renders).

    Raises:
        RequestInvalid: with a message naming what to change.
    """
    resolution = request.effective_resolution
    if resolution == "540P":
        raise RequestInvalid(
            "The talking avatar has no 540P size table in the official model; choose 480P or 720P."
        )
    if resolution not in BUCKETS:
        raise RequestInvalid(f"Resolution must be 480P or 720P for the talking avatar; got {resolution!r}.")
    steps = request.effective_steps
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise RequestInvalid(f"Steps must be between 1 and {MAX_STEPS}; got {steps!r}.")
    if not isinstance(request.seed, int) or not 0 <= request.seed < 2**63:
        raise RequestInvalid(f"The seed must be a whole number from 0 to 2^63-1; got {request.seed!r}.")
    for name in ("shift", "text_guide_scale", "audio_guide_scale"):
        value = getattr(request, name)
        if not math.isfinite(value) or value <= 0:
            raise RequestInvalid(f"{name.replace('_', ' ')} must be a positive number; got {value!r}.")
    if (
        request.audio_start_s is not None
        and request.audio_end_s is not None
        and request.audio_end_s <= request.audio_start_s
    ):
        raise RequestInvalid("The audio region ends before it starts; pick a region of at least 0.4 s.")
    if (
        request.audio_start_s is not None
        and request.audio_end_s is not None
        and request.audio_end_s - request.audio_start_s > avatar_audio.MAX_SECONDS
    ):
        raise RequestInvalid(
            f"The audio region is {request.audio_end_s - request.audio_start_s:.1f} s long; the talking avatar "
            f"accepts at most {avatar_audio.MAX_SECONDS:g} s. Pick a shorter region."
        )
    portrait = read_through(cache, ("portrait", request.portrait), [request.portrait],
                            lambda: load_portrait(request.portrait))
    start, end = request.audio_start_s, request.audio_end_s
    speech = read_through(cache, ("speech", request.audio, start, end), [request.audio],
                          lambda: prepare_audio(request.audio, start, end))
    return AvatarInputs(portrait=portrait, speech=speech)


def load_portrait(path: str) -> Image.Image:
    """The portrait as RGB (EXIF orientation applied)."""
    file = Path(path)
    if not file.is_file():
        raise RequestInvalid(f"The portrait image does not exist: {path}")
    try:
        with Image.open(file) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise RequestInvalid(
            f"The portrait {file.name} cannot be read as an image ({error}). Use a PNG, JPEG, BMP or GIF file."
        ) from error
    if image.width < 16 or image.height < 16:
        raise RequestInvalid(
            f"The portrait {file.name} is only {image.width}x{image.height} pixels; use a real photo."
        )
    return image


def prepare_audio(path: str, start_s: float | None = None, end_s: float | None = None) -> np.ndarray:
    """Decode, check 0.4 s <= length <= 200 s, normalise to -23 LUFS; float32 16 kHz mono."""
    file = Path(path)
    if not file.is_file():
        raise RequestInvalid(f"The audio file does not exist: {path}")
    try:
        # A whole file that is obviously too long is refused from its header, before decoding it.
        refuse = avatar_audio.MAX_SECONDS + 1.0 if start_s is None and end_s is None else None
        speech = avatar_audio.load_audio(file, start_s=start_s, end_s=end_s, refuse_over_s=refuse)
        avatar_audio.check_duration(len(speech) / avatar_audio.SAMPLE_RATE)
    except avatar_audio.AudioError as error:
        message = str(error)
        raise RequestInvalid(message[:1].upper() + message[1:]) from error
    return avatar_audio.loudness_norm(speech).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Portrait sizing


def select_bucket(width: int, height: int, table: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """(height, width) of the bucket whose key is closest to height/width (ties: first in table order)."""
    return table[closest_key(height, width, table)]


def resize_and_crop(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Scale to cover ``size`` = (h, w) (PIL bilinear, sides rounded up) and centre-crop: uint8 [h, w, 3]."""
    target_h, target_w = size
    scale = max(target_h / image.height, target_w / image.width)
    new_h, new_w = math.ceil(scale * image.height), math.ceil(scale * image.width)
    resized = np.asarray(image.resize((new_w, new_h), resample=Image.BILINEAR))
    top = round((new_h - target_h) / 2.0)
    left = round((new_w - target_w) / 2.0)
    return np.ascontiguousarray(resized[top : top + target_h, left : left + target_w])


# ---------------------------------------------------------------------------------------------
# Window arithmetic


@dataclass(frozen=True)
class WindowPlan:
    """How a clip of ``real_frames`` is cut into passes."""

    real_frames: int
    video_frames: int  # after mirror padding (== WINDOW in single-pass mode)
    windows: int  # output windows (0 = the preview is the output)
    keyframes: tuple[int, ...]  # preview frame index per output window

    @property
    def single_pass(self) -> bool:
        return self.windows == 0

    @property
    def passes(self) -> int:
        return 1 + self.windows

    def window_start(self, window: int) -> int:
        return window * (WINDOW - MOTION_FRAMES - DROP_FRAMES)


def plan_windows(feature_frames: int, max_frames: int = MAX_FRAMES) -> WindowPlan:
    """The official length padding and keyframe choice (spec 5.8 steps 1 and 6)."""
    real = min(max_frames, feature_frames)
    stride = WINDOW - MOTION_FRAMES - DROP_FRAMES
    if real < WINDOW:
        return WindowPlan(real, WINDOW, 0, ())
    remainder = (real - WINDOW) % stride
    video = real + stride - remainder if remainder else real
    length = min(max_frames, video)
    if length <= WINDOW:
        ends = [0, length - 1]
    else:
        ends, current = [0], WINDOW - 1
        while current < length - 1:
            ends.append(current)
            current += stride
        if ends[-1] != length - 1:
            ends.append(length - 1)
    marks = np.array(ends, dtype=np.int16)  # official dtype (overflow is unreachable below 32768 frames)
    low, high = marks[0], marks[-1]
    if high > low:
        scaled = (marks.astype(np.float64) - low) * (WINDOW - 1) / (high - low)
        marks = np.clip(np.round(scaled), 0, WINDOW - 1).astype(np.int32)
    keyframes = tuple(int(k) for k in marks[1:])
    windows = (video - WINDOW) // stride + 1
    return WindowPlan(real, video, windows, keyframes)


def mirror_pad(features: torch.Tensor, frames: int) -> torch.Tensor:
    """Extend [L, ...] features to ``frames`` rows with the time-reversed tail (official padding)."""
    extra = frames - features.shape[0]
    if extra <= 0:
        return features
    return torch.cat([features, torch.flip(features[-extra:], dims=[0])], dim=0)


def audio_windows(features: torch.Tensor, start: int, length: int = WINDOW) -> torch.Tensor:
    """[1, length, 5, layers, hidden]: for each frame of [start, start+length) the features at offsets
    -2..+2, clamped to the feature range."""
    offsets = torch.arange(-AUDIO_CONTEXT, AUDIO_CONTEXT + 1)
    index = torch.arange(start, start + length).unsqueeze(1) + offsets.unsqueeze(0)
    index = index.clamp(0, features.shape[0] - 1)
    return features[index].unsqueeze(0)


def condition_mask(motion: int, pseudo: int, latent_hw: tuple[int, int], device: Any = None) -> torch.Tensor:
    """[1, 4, 21, h, w] mask: 1 on the first ``motion`` and last ``pseudo`` of the 81 frames, frame 0 x4."""
    h, w = latent_hw
    mask = torch.ones(1, WINDOW, h, w, device=device)
    mask[:, motion : WINDOW - pseudo] = 0
    mask = torch.cat([mask[:, :1].repeat_interleave(4, dim=1), mask[:, 1:]], dim=1)
    return mask.view(1, mask.shape[1] // 4, 4, h, w).transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# Components and loading


@dataclass
class AvatarComponents:
    """Loaded models. The wav2vec2 encoder runs on the CPU in float32, as the official code does."""

    transformer: AvatarTransformer
    text_encoder: Any  # models.wan.t5.WanT5Encoder
    clip: ClipImageEncoder
    vae: Any  # models.wan.vae.WanVAE
    feature_extractor: Any  # transformers.Wav2Vec2FeatureExtractor
    audio_encoder: Any  # models.avatar.wav2vec2.VideoRateWav2Vec2
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


def missing_files(folder: str | Path) -> list[str]:
    """Files of the official avatar layout that ``folder`` lacks (relative paths, empty = complete)."""
    root = Path(folder)
    missing = [name for name in ("config.json", T5_FILE, CLIP_FILE, VAE_FILE) if not (root / name).is_file()]
    if not root.is_dir() or not any(root.glob("*.safetensors")):
        missing.append("*.safetensors (the avatar transformer weights)")
    tokenizer = root / T5_TOKENIZER_DIR
    if not (tokenizer / "tokenizer.json").is_file() and not (tokenizer / "spiece.model").is_file():
        missing.append(f"{T5_TOKENIZER_DIR}/tokenizer.json")
    wav2vec2 = root / WAV2VEC2_DIR
    missing += [f"{WAV2VEC2_DIR}/{name}" for name in WAV2VEC2_FILES if not (wav2vec2 / name).is_file()]
    if not any((wav2vec2 / name).is_file() for name in WAV2VEC2_WEIGHTS):
        missing.append(f"{WAV2VEC2_DIR}/{WAV2VEC2_WEIGHTS[0]}")
    return missing


def check_checkpoint(folder: str | Path) -> None:
    """Raise :class:`ModelsMissing` naming every missing file of the avatar checkpoint."""
    missing = missing_files(folder)
    if missing:
        raise ModelsMissing(
            f"The talking-avatar model folder {folder} is incomplete; missing: {', '.join(missing)}. "
            "Download Skywork/SkyReels-V3-A2V-19B again (Models > Download)."
        )


def load_components(
    folder: str | Path,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    *,
    clip_dtype: torch.dtype | None = None,
    sizes: Mapping[str, Any] | None = None,
    park_device: torch.device | str | None = None,
) -> AvatarComponents:
    """Load every model of an official avatar folder, strictly, under the official key names.

    Args:
        folder: checkpoint root (spec 5.2).
        device: where the DiT, T5, CLIP and VAE run (wav2vec2 stays on the CPU).
        dtype: DiT and T5 weight dtype (bfloat16 in production, float32 for parity runs).
        clip_dtype: CLIP dtype (default float16 as the official pipeline, float32 if ``dtype`` is).
        sizes: sizes the official code hard-codes (``{"wan_clip": {...}, "wan_vae": {...}}``, the
            ``clip_xlm_roberta_vit_h_14`` / VAE kwargs). Default: read from the files' tensor shapes,
            with the release's CLIP head width (80).
        park_device: where the DiT, T5 and CLIP weights wait between their phases (e.g. ``"cpu"`` with a
            parking ``models.memory.Placement``, the official ``--offload``); default: ``device``. The
            VAE always lives on ``device``.

    Raises:
        ModelsMissing: files are missing (all named).
    """
    from models.wan.loading import load_safetensors_folder, load_state_dict_file, load_strict
    from models.wan.t5 import WanT5Encoder
    from models.wan.vae import WanVAE

    check_checkpoint(folder)
    root = Path(folder)
    device = torch.device(device)
    home = torch.device(park_device) if park_device is not None else device
    sizes = dict(sizes or {})
    clip_dtype = clip_dtype or (torch.float32 if dtype == torch.float32 else torch.float16)

    feature_extractor, audio_encoder = load_wav2vec2(root / WAV2VEC2_DIR)
    w2v_config = audio_encoder.config
    config_data = json.loads((root / "config.json").read_text())
    state = load_safetensors_folder(root, device=home)  # straight to its device: no extra host copy
    clip_width = int(state["img_emb.proj.0.weight"].shape[0])
    config = AvatarTransformerConfig.from_dict(
        config_data,
        clip_dim=clip_width,
        audio_layers=int(w2v_config.num_hidden_layers),
        audio_channels=int(w2v_config.hidden_size),
    )
    with torch.device("meta"):
        transformer = AvatarTransformer(config)
    load_strict(transformer, state, device=home, dtype=dtype, what="talking-avatar transformer")
    del state
    transformer.requires_grad_(False)

    text_encoder = WanT5Encoder.from_pth(root / T5_FILE, root / T5_TOKENIZER_DIR, device=home, dtype=dtype)
    clip_state = load_state_dict_file(root / CLIP_FILE)
    clip_config = (
        ClipConfig.from_dict(sizes["wan_clip"])
        if "wan_clip" in sizes
        else clip_config_from_state_dict(clip_state)
    )
    clip = load_clip_vision(clip_state, clip_config, dtype=clip_dtype).to(home)
    vae_config = dict(sizes["wan_vae"]) if "wan_vae" in sizes else None
    vae = WanVAE.from_pth(root / VAE_FILE, device=device, dtype=torch.float32, config=vae_config)
    return AvatarComponents(transformer, text_encoder, clip, vae, feature_extractor, audio_encoder, device)


# ---------------------------------------------------------------------------------------------
# Generation


FrameSink = Callable[[np.ndarray], None]


@dataclass
class AvatarResult:
    num_frames: int
    fps: int
    width: int
    height: int
    passes: int
    seed: int
    speech: np.ndarray  # the normalised 16 kHz audio (what the official code muxes)
    trace: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class _Pass:
    index: int  # 0 = preview, c + 1 = window c
    start: int  # first video frame of its audio
    cond: torch.Tensor  # [1, 3, m, H, W] conditioning frames in [-1, 1]
    pseudo: torch.Tensor | None  # [1, 3, 5, H, W] keyframe repeated, or None (preview)
    context: torch.Tensor  # [L, text_dim]
    inject_motion: bool
    last: bool  # keep the last 12 frames (final window, or the preview)


class TalkingAvatarPipeline:
    """Runs avatar jobs on loaded :class:`AvatarComponents`.

    Thread contract: lives on the GPU worker thread; one job at a time.
    """

    def __init__(
        self,
        components: AvatarComponents,
        *,
        placement: Any | None = None,
        bucket_tables: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.components = components
        self.device = components.device
        self.placement = placement or NullPlacement()
        self.bucket_tables = {k: _as_bucket_table(v) for k, v in (bucket_tables or {}).items()}
        self.text_cache = TextEmbeddingCache()

    # -- phases ---------------------------------------------------------------------------------

    def audio_features(self, speech: np.ndarray) -> torch.Tensor:
        """[ceil(25 s), layers, hidden] float32 wav2vec2 features (CPU)."""
        return audio_embedding(speech, self.components.feature_extractor, self.components.audio_encoder)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        encoder = self.components.text_encoder
        self.placement.activate(encoder.model)
        try:
            return encoder.encode(prompts)
        finally:
            self.placement.park(encoder.model)

    def _predict(
        self,
        latent: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        null_context: torch.Tensor | None,
        clip_features: torch.Tensor,
        y: torch.Tensor,
        audio: torch.Tensor,
        request: AvatarRequest,
    ) -> torch.Tensor:
        """One guided prediction (official variants; a single forward at the default scales 1/1)."""
        model = self.components.transformer

        def run(text: torch.Tensor, sound: torch.Tensor) -> torch.Tensor:
            return model(latent, t, text, clip_features, y, sound)[0].float()

        cond = run(context, audio)
        g_text, g_audio = request.text_guide_scale, request.audio_guide_scale
        if g_text <= 1.0 and g_audio <= 1.0:
            return cond
        silent = torch.zeros_like(audio)[-1:]
        if g_text > 1.0 and g_audio > 1.0:
            assert null_context is not None
            drop_text = run(null_context, audio)
            uncond = run(null_context, silent)
            return uncond + g_text * (cond - drop_text) + g_audio * (drop_text - uncond)
        if g_text > 1.0:
            assert null_context is not None
            drop_text = run(null_context, audio)
            return drop_text + g_text * (cond - drop_text)
        drop_audio = run(context, silent)
        return drop_audio + g_audio * (cond - drop_audio)

    def _sample(
        self,
        spec: _Pass,
        total_passes: int,
        features: torch.Tensor,
        null_context: torch.Tensor | None,
        noise: NoiseSource,
        request: AvatarRequest,
        ctx: RunContext,
        trace: dict[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        """Condition and denoise one pass; returns its final latents [16, 21, h, w] (float32)."""
        comps = self.components
        dtype = comps.transformer.dtype
        device = self.device
        tag = f"pass{spec.index}"
        cond = spec.cond.to(device, torch.float32)
        height, width = cond.shape[-2:]
        latent_hw = (height // VAE_STRIDE[1], width // VAE_STRIDE[2])
        latent_frames = (WINDOW - 1) // VAE_STRIDE[0] + 1

        audio = audio_windows(features, spec.start).to(device, dtype)
        latent = noise.draw((LATENT_CHANNELS, latent_frames, *latent_hw)).to(device)
        pseudo_count = 0 if spec.pseudo is None else spec.pseudo.shape[2]
        mask = condition_mask(cond.shape[2], pseudo_count, latent_hw, device).to(dtype)

        self.placement.activate(comps.clip.visual)
        try:
            clip_features = comps.clip.encode(cond[:, :, :1]).to(dtype)
        finally:
            self.placement.park(comps.clip.visual)
        parts = [cond, torch.zeros(1, 3, WINDOW - cond.shape[2] - pseudo_count, height, width, device=device)]
        if spec.pseudo is not None:
            parts.append(spec.pseudo.to(device, torch.float32))
        cond_latent = comps.vae.encode(torch.cat(parts, dim=2)).to(dtype)
        motion_latent = cond_latent[0, :, : 1 + (cond.shape[2] - 1) // VAE_STRIDE[0]].float()
        y = torch.cat([mask, cond_latent], dim=1)
        if trace is not None:
            trace[f"{tag}.clip_features"] = clip_features.float().cpu()
            trace[f"{tag}.y"] = y.float().cpu()
            trace[f"{tag}.audio_window"] = audio.float().cpu()
            trace[f"{tag}.noise"] = latent.cpu().clone()
        ctx.check_cancel()

        timesteps = avatar_timesteps(request.effective_steps, request.shift).to(device)
        context = spec.context.to(device, dtype)
        null = null_context.to(device, dtype) if null_context is not None else None

        def inject(t: torch.Tensor, draw_index: int) -> None:
            motion_noise = noise.draw(motion_latent.shape).to(device)
            if trace is not None:
                trace[f"{tag}.motion_noise{draw_index}"] = motion_noise.cpu().clone()
            latent[:, : motion_latent.shape[1]] = noise_to(motion_latent, motion_noise, t)

        if spec.inject_motion:
            inject(timesteps[0], 0)
        if trace is not None:
            trace[f"{tag}.latents_in_step0"] = latent.cpu().clone()
            trace[f"{tag}.timesteps"] = timesteps[:-1].cpu().clone()
        steps = len(timesteps) - 1
        self.placement.activate(comps.transformer)
        hooks = install_block_cancel_checks(comps.transformer, ctx)
        try:
            for i in range(steps):
                ctx.check_cancel()
                t, t_next = timesteps[i : i + 1], timesteps[i + 1 : i + 2]
                prediction = self._predict(latent, t, context, null, clip_features, y, audio, request)
                if trace is not None and i == 0:
                    trace[f"{tag}.step0.model_output"] = prediction.cpu().clone()
                x0 = latent - prediction * (t / NUM_TRAIN_TIMESTEPS)  # clean estimate, for the preview
                latent = euler_step(latent, prediction, t, t_next)
                if spec.inject_motion:
                    inject(t_next, i + 1)
                ctx.step(spec.index, total_passes, i + 1, steps, x0)
        finally:
            for hook in hooks:
                hook.remove()
            self.placement.park(comps.transformer)
        if trace is not None:
            trace[f"{tag}.latents_final"] = latent.cpu().clone()
        return latent

    def _decode(
        self,
        latent: torch.Tensor,
        reference: torch.Tensor,
        keep: int,
        ctx: RunContext,
        trace_means: list[torch.Tensor] | None,
        pick: Sequence[int] = (),
        sink: PieceSink | None = None,
    ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor | None]:
        """Streaming decode of the first ``keep`` frames, colour-matched to ``reference``.

        Returns uint8 frames [keep, H, W, 3] (none when a ``sink`` takes each group as it is decoded),
        the matched float frames of the last ``MOTION_FRAMES`` (CPU, [1, 3, 5, H, W]; they condition
        the next window) and the matched float frames at the indices ``pick`` ([1, 3, len(pick), H, W],
        or None)."""
        vae = self.components.vae
        frames: list[np.ndarray] = []
        tail: list[torch.Tensor] = []
        picked: dict[int, torch.Tensor] = {}
        produced = 0
        match = ColourMatcher(reference.to(vae.device))
        pending: list[torch.Tensor] = []

        def flush() -> None:
            # Colour matching is per frame, so decode groups are matched together in batches (fewer,
            # larger tensor operations), up to MATCH_BATCH_FRAMES / MATCH_BATCH_PIXELS at a time.
            nonlocal produced, tail
            if not pending:
                return
            batch = pending[0] if len(pending) == 1 else torch.cat(pending, dim=2)
            pending.clear()
            matched = match(batch)  # on the device; statistics are per frame
            for index in pick:
                if produced <= index < produced + matched.shape[2]:
                    picked[index] = matched[:, :, index - produced].cpu()
            produced += batch.shape[2]
            if trace_means is not None:
                trace_means.append(((matched.double() + 1) * 127.5).mean(dim=(3, 4))[0].T.cpu())
            pixels = to_uint8(matched)[0].permute(1, 2, 3, 0).cpu().numpy()
            if sink is not None:
                sink.add(pixels)
            else:
                frames.append(pixels)
            tail = [*tail, matched[:, :, -MOTION_FRAMES:].cpu()][-MOTION_FRAMES:]

        waiting = 0
        for group in vae.iter_decode(latent):
            ctx.check_cancel()
            group = group[:, :, : max(0, keep - produced - waiting)]
            if group.shape[2] == 0:
                break
            pending.append(group)
            waiting += group.shape[2]
            if waiting >= MATCH_BATCH_FRAMES or waiting * group.shape[3] * group.shape[4] >= MATCH_BATCH_PIXELS:
                flush()
                waiting = 0
        flush()
        last = torch.cat(tail, dim=2)[:, :, -MOTION_FRAMES:]
        chosen = torch.stack([picked[i] for i in pick], dim=2) if pick else None
        return (np.concatenate(frames, axis=0) if frames else np.zeros((0, 0, 0, 3), np.uint8)), last, chosen

    # -- whole job ------------------------------------------------------------------------------

    def generate(
        self,
        request: AvatarRequest,
        ctx: RunContext | None = None,
        *,
        inputs: AvatarInputs | None = None,
        on_frames: FrameSink | None = None,
        stored_noise: Sequence[torch.Tensor] | None = None,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> AvatarResult:
        """Run one job, handing uint8 frames [n, H, W, 3] to ``on_frames`` window by window.

        Raises:
            RequestInvalid: bad request (before any model runs).
            RenderCancelled: ``ctx.cancel`` was set; no VAE decode runs after it.
        """
        ctx = ctx or RunContext()
        inputs = inputs or validate_request(request)
        sink = on_frames or (lambda frames: None)
        resolution = request.effective_resolution
        table = self.bucket_tables.get(resolution) or BUCKETS[resolution]
        size = select_bucket(inputs.portrait.width, inputs.portrait.height, table)
        pixels = resize_and_crop(inputs.portrait, size)
        portrait = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None, :, None].float() / 255
        portrait = (portrait - 0.5) * 2
        if trace is not None:
            trace["portrait.pixels"] = torch.from_numpy(pixels.copy())
            trace["audio.samples_normalized"] = torch.from_numpy(inputs.speech.copy())

        ctx.status("analysing the audio")
        features = self.audio_features(inputs.speech)
        if trace is not None:
            trace["audio.embedding"] = features.clone()
        plan = plan_windows(features.shape[0])
        if not plan.single_pass:
            features = mirror_pad(features, plan.video_frames)
        ctx.check_cancel()

        ctx.status("encoding the prompts")
        negative = request.negative_prompt or NEGATIVE_PROMPT
        prompts = (request.prompt, negative, request.connection_prompt)
        texts = None if trace is not None else self.text_cache.get(prompts, self.components.device)
        if texts is None:
            with torch.no_grad():
                texts = self.encode_prompts(list(prompts))
            self.text_cache.put(prompts, texts)
        user_context, null_context, connection = texts[0], texts[1], texts[2]
        if trace is not None:
            trace["text.context"] = user_context.float().cpu()
            trace["text.context_null"] = null_context.float().cpu()
            trace["text.connection_embedding"] = connection.float().cpu()
        use_null = request.text_guide_scale > 1.0
        null = null_context if use_null else None
        ctx.check_cancel()

        noise = NoiseSource(request.seed, stored_noise, keep=False)
        passes = plan.passes
        emitted = 0

        def emit(frames: np.ndarray) -> None:
            nonlocal emitted
            frames = frames[: max(0, plan.real_frames - emitted)]
            if len(frames):
                sink(frames)
                emitted += len(frames)

        # Resume: skip the windows with a checkpoint (their frames come from disk), restore what the
        # last of them left for the next one, and keep the random stream in step.
        latent_shape = (LATENT_CHANNELS, (WINDOW - 1) // VAE_STRIDE[0] + 1, size[0] // 8, size[1] // 8)
        motion_shape = (LATENT_CHANNELS, 1 + (MOTION_FRAMES - 1) // VAE_STRIDE[0], size[0] // 8, size[1] // 8)
        state: dict[str, torch.Tensor] = {}
        finished = 0
        for piece_index in [0] if plan.single_pass else range(1, plan.passes):
            piece = ctx.finished_piece(piece_index)
            if piece is None:
                break
            emit(piece.frames)
            state.update(piece.state)
            finished += 1
        if plan.single_pass and finished:
            return self._result(request, plan, size, inputs, passes, trace)

        with torch.no_grad():
            keyframes = state.get("keyframes")
            if keyframes is None:
                ctx.status("generating the preview")
                spec = _Pass(0, 0, portrait, None, user_context, inject_motion=False, last=True)
                latent = self._sample(spec, passes, features, null, noise, request, ctx, trace)
                ctx.check_cancel()
                means: list[torch.Tensor] | None = [] if trace is not None else None
                # A single pass is the whole video: stream it into its piece (MP4 encoded meanwhile).
                with (
                    ctx.begin_piece(0, 1, limit=plan.real_frames)
                    if plan.single_pass
                    else contextlib.nullcontext(None)
                ) as piece_sink:
                    _, _, keyframes = self._decode(latent, portrait, WINDOW, ctx, means, plan.keyframes, piece_sink)
                    if trace is not None and means is not None:
                        trace["pass0.colour_matched_mean_rgb"] = torch.cat(means)
                    if piece_sink is not None:
                        emit(piece_sink.finish())
                        return self._result(request, plan, size, inputs, passes, trace)
            else:
                noise.draw(latent_shape)  # the preview's noise
            assert keyframes is not None

            cond = state.get("motion_frames", portrait)
            for window in range(plan.windows):
                first = window == 0
                if window < finished:
                    noise.draw(latent_shape)
                    if not first:
                        for _ in range(request.effective_steps + 1):
                            noise.draw(motion_shape)
                    continue
                last = window == plan.windows - 1
                ctx.status(f"generating window {window + 1} of {plan.windows}")
                key = keyframes[:, :, min(window, keyframes.shape[2] - 1)][:, :, None]
                spec = _Pass(
                    window + 1,
                    plan.window_start(window),
                    cond,
                    key.repeat(1, 1, PSEUDO_END_FRAMES, 1, 1),
                    connection,
                    inject_motion=not first,
                    last=last,
                )
                latent = self._sample(spec, passes, features, null, noise, request, ctx, trace)
                ctx.check_cancel()
                means = [] if trace is not None else None
                keep = WINDOW if last else WINDOW - DROP_FRAMES
                # The window's new frames (not the motion frames it repeats, nothing past the audio)
                # stream into its piece, whose MP4 is encoded while the rest decodes.
                with ctx.begin_piece(
                    window + 1, passes, skip=0 if first else MOTION_FRAMES, limit=max(0, plan.real_frames - emitted)
                ) as piece_sink:
                    _, tail, _ = self._decode(latent, portrait, keep, ctx, means, sink=piece_sink)
                    if trace is not None and means is not None:
                        trace[f"pass{window + 1}.colour_matched_mean_rgb"] = torch.cat(means)
                    piece_state = {"motion_frames": tail.contiguous()}
                    if first:
                        piece_state["keyframes"] = keyframes.contiguous()
                    out = piece_sink.finish(piece_state)
                emit(out)
                cond = tail
        return self._result(request, plan, size, inputs, passes, trace)

    def _result(
        self,
        request: AvatarRequest,
        plan: WindowPlan,
        size: tuple[int, int],
        inputs: AvatarInputs,
        passes: int,
        trace: dict[str, torch.Tensor] | None,
    ) -> AvatarResult:
        return AvatarResult(
            num_frames=plan.real_frames,
            fps=FPS,
            width=size[1],
            height=size[0],
            passes=passes,
            seed=request.seed,
            speech=inputs.speech,
            trace=trace if trace is not None else {},
        )


def _as_bucket_table(table: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Accept ``{key: (h, w)}`` or the official ``{key: ([h, w], 1)}`` form."""
    out: dict[str, tuple[int, int]] = {}
    for key, value in table.items():
        size = value[0] if isinstance(value[0], (list, tuple)) else value
        out[key] = (int(size[0]), int(size[1]))
    return out


def render_to_file(
    pipeline: TalkingAvatarPipeline,
    request: AvatarRequest,
    output_path: str | Path,
    ctx: RunContext | None = None,
    *,
    inputs: AvatarInputs | None = None,
) -> RenderResult:
    """Generate the frames and write them as an H.264 MP4 at 25 fps with the loudness-normalised audio
    (AAC, 16 kHz mono: the official output muxes that copy, not the user's file). The windows' checkpoint
    MP4s are joined by copying their packets (:class:`models.render_output.PieceOutput`), so no frame is
    encoded twice; the audio is encoded on a background thread while the frames render. The file appears atomically when complete; a failed or cancelled render leaves none.

    Raises:
        RequestInvalid, RenderCancelled: as :meth:`TalkingAvatarPipeline.generate`.
    """
    from models.render_output import PieceOutput

    inputs = inputs or validate_request(request)
    ctx = ctx or RunContext()
    with PieceOutput(output_path, FPS, ctx.pieces) as output:
        output.start_audio(inputs.speech, avatar_audio.SAMPLE_RATE)  # encoded while the frames render
        result = pipeline.generate(request, ctx, inputs=inputs, on_frames=output.write)
        path = output.close()
    return RenderResult(
        output_path=str(path),
        num_frames=result.num_frames,
        fps=FPS,
        width=result.width,
        height=result.height,
        has_audio=True,
        seconds=result.num_frames / FPS,
    )


def job_size(
    request: AvatarRequest,
    inputs: AvatarInputs,
    bucket_tables: Mapping[str, Mapping[str, Any]] | None = None,
    **sizes: Any,
) -> Any:
    """The :class:`models.memory.JobSize` of one window of a validated request (full-size models unless
    ``sizes``): 21 latent frames at the portrait's bucket, 1-3 forwards per step depending on guidance."""
    from models.memory import JobSize

    resolution = request.effective_resolution
    table = _as_bucket_table((bucket_tables or {}).get(resolution) or BUCKETS[resolution])
    height, width = select_bucket(inputs.portrait.width, inputs.portrait.height, table)
    latent_frames = (WINDOW - 1) // VAE_STRIDE[0] + 1
    text, audio = request.text_guide_scale > 1.0, request.audio_guide_scale > 1.0
    defaults: dict[str, Any] = {
        "transformer_params": 18_882_046_784,
        "forwards_per_step": 3 if (text and audio) else 2 if (text or audio) else 1,
    }
    return JobSize(
        tokens=latent_frames * (height // 16) * (width // 16),
        frame_height=height,
        frame_width=width,
        **{**defaults, **sizes},
    )


def load_pipeline(
    root: str | Path,
    *,
    device: torch.device | str,
    dtype: torch.dtype = torch.bfloat16,
    plan: Any | None = None,
    bucket_tables: Mapping[str, Mapping[str, Any]] | None = None,
    sizes: Mapping[str, Any] | None = None,
) -> TalkingAvatarPipeline:
    """Load the avatar folder and carry out a :class:`models.memory.MemoryPlan` (default: all resident).

    Parked or streamed networks are loaded straight to the CPU, so the device never holds them all; fp8
    storage, block streaming and chunked FFNs are applied to the DiT with diffusers hooks.

    Raises:
        ModelsMissing: incomplete folder (every missing file named).
    """
    from models.memory import MemoryPlan, apply_transformer_policies, keep_on_cpu, placement_for

    plan = plan or MemoryPlan(device=str(device), compute_dtype=dtype)
    parked = plan.park_idle or plan.block_streaming
    components = load_components(
        root, device, dtype, sizes=sizes, park_device="cpu" if parked or plan.text_encoder_on_cpu else None
    )
    if plan.text_encoder_on_cpu:
        keep_on_cpu(components.text_encoder.model)
    if not plan.park_idle:
        # only the DiT may stay parked (streamed); the rest is resident
        components.clip.to(device)
        if not plan.text_encoder_on_cpu:
            components.text_encoder.to(device)
    apply_transformer_policies(components.transformer, plan)
    if plan.park_idle and plan.fp8 == "torchao":
        components.transformer.to("cpu")  # torchao quantises on the device; park until the loop
    return TalkingAvatarPipeline(components, placement=placement_for(plan), bucket_tables=bucket_tables)
