"""The two SkyReels-V3 video-extension pipelines as a library: ``single_shot_extension`` and
``shot_switching_extension`` (spec sections 4.3 and 4.4).

Owns:

* the typed, validated request (:class:`ExtensionRequest`): every check that can fail without a model
  (durations, resolution, unreadable or too short input video, transition vs prompt) runs in
  :func:`prepare_request`, before anything loads, and raises :class:`core.generation.RequestInvalid`
  with a message for the user;
* the checkpoint folder (official layout, spec 4.1): :func:`missing_files` lists exactly what a
  partial folder lacks, :func:`load_components` loads it strictly under the official key names and
  carries out a :class:`models.memory.MemoryPlan` (:func:`job_size` is what the planner sizes);
* generation (:class:`ExtensionPipeline`): progress per step and per piece through
  :class:`models.pipeline_base.RunContext`, cancel honoured between transformer blocks and after every
  step (no VAE decode after a cancel), every finished piece checkpointed, resume from the last finished
  piece with the same frames as an uninterrupted render, deterministic for a seed.

Faithful to the official code, including the parts that look odd (kept on purpose, spec section 7):
the output is the continuation only (not the input clip); frames are nearest-resized and stretched to
the bucket; the input fps is ignored (treated as 24 fps); every 5 s piece re-seeds the same noise
stream; between pieces the last 25 decoded frames pass through uint8 (truncation) and are re-encoded;
latent lengths are padded or trimmed so that condition + new latents is a multiple of 8.

Deliberate differences: noise is drawn from a CPU generator on every device (the official code uses a
CUDA generator on the GPU, so its GPU numbers differ from ours; on the CPU they are identical); a clip
of exactly as many frames as the condition needs is accepted (the official code crashes on it); the
text is encoded once per render rather than once per piece (same values).

Imports torch, numpy, PyAV and ``core``/``models`` modules. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from core.generation import ModelsMissing, RenderRequest, RequestInvalid, Transition
from models.buckets import ASPECT_RATIO_CONFIG, BucketTable, closest_key, round_down_16
from models.extension.transformer import ExtensionTransformer
from models.extension.transitions import compose_prompt
from models.input_cache import InputCache, read_through
from models.pipeline_base import RunContext, TextEmbeddingCache

if TYPE_CHECKING:
    from models.memory import JobSize, MemoryPlan

FPS = 24
DEFAULT_STEPS = 8
SHIFT = 8.0
GUIDANCE = 1.0  # the official defaults never use CFG (one forward per step)

SINGLE_SHOT_CONDITION_FRAMES = 25
LATENT_FRAMES_PER_SECOND = 6
PIECE_SECONDS = 5
SINGLE_SHOT_DURATIONS = range(5, 31)  # seconds, whole numbers (README: "5 to 30 seconds")
SHOT_CONDITION_FRAMES = {2: 9, 3: 17, 4: 25, 5: 33}  # duration (s) -> trailing input frames used
LATENT_MULTIPLE = 8  # condition + new latent frames is always a multiple of this
VAE_TIME_STRIDE = 4
VAE_SPACE_STRIDE = 8

# Official bucket tables (spec 2.1), the same ones R2V uses.
BUCKETS = ASPECT_RATIO_CONFIG


class ExtensionMode(enum.StrEnum):
    SINGLE_SHOT = "single_shot_extension"
    SHOT_SWITCHING = "shot_switching_extension"

    @property
    def transformer_folder(self) -> str:
        return "transformer" if self is ExtensionMode.SINGLE_SHOT else "shot_transformer"


# ---------------------------------------------------------------------------------------------
# Request, validation and input preparation (no model needed)


@dataclass(frozen=True)
class ExtensionRequest:
    """One extension job.

    Attributes:
        mode: single shot (continue the clip, 5-30 s) or shot switching (a new shot, 2-5 s).
        input_video: the clip to continue (any container PyAV reads; its fps is ignored).
        prompt: free text; for shot switching combined with ``transition`` (see ``transitions.py``).
        duration_s: whole seconds.
        resolution: ``480P`` / ``540P`` / ``720P`` bucket table.
        seed: noise seed (every single-shot piece re-seeds the same stream, as the official code).
        steps: denoising steps per piece (official: 8).
        transition: shot switching only.
        bucket_table: replaces the resolution's bucket table (tests and golden vectors).
    """

    mode: ExtensionMode
    input_video: str
    prompt: str
    duration_s: int
    resolution: str = "720P"
    seed: int = 42
    steps: int = DEFAULT_STEPS
    transition: Transition | None = None
    bucket_table: Mapping[str, tuple[int, int]] | None = None

    @classmethod
    def from_render_request(cls, request: RenderRequest) -> ExtensionRequest:
        """Translate the app's :class:`RenderRequest`; raises :class:`RequestInvalid` on bad values."""
        try:
            mode = ExtensionMode(request.task.value)
        except ValueError:
            raise RequestInvalid(f"{request.task.value} is not a video-extension task") from None
        if request.input_video is None:
            raise RequestInvalid("Choose the clip to extend: no input video was given.")
        duration = request.duration_s
        if float(duration) != int(duration):
            raise RequestInvalid(f"The duration must be whole seconds, got {duration:g} s.")
        return cls(
            mode=mode,
            input_video=request.input_video,
            prompt=request.prompt,
            duration_s=int(duration),
            resolution=request.resolution,
            seed=request.seed,
            steps=request.steps if request.steps is not None else DEFAULT_STEPS,
            transition=request.transition,
            bucket_table=request.extra.get("bucket_table"),
        )

    @property
    def condition_frames(self) -> int:
        if self.mode is ExtensionMode.SINGLE_SHOT:
            return SINGLE_SHOT_CONDITION_FRAMES
        return SHOT_CONDITION_FRAMES[self.duration_s]

    def model_prompt(self) -> str:
        if self.mode is ExtensionMode.SHOT_SWITCHING:
            return compose_prompt(self.prompt, self.transition)
        return self.prompt.strip()

    def fingerprint_payload(self) -> dict[str, Any]:
        """Everything that determines the frames (keys the resume folder)."""
        return {
            "mode": self.mode.value,
            "input_video": str(Path(self.input_video).resolve()),
            "prompt": self.model_prompt(),
            "duration_s": self.duration_s,
            "resolution": self.resolution,
            "seed": self.seed,
            "steps": self.steps,
            "bucket_table": dict(self.bucket_table) if self.bucket_table else None,
        }


@dataclass(frozen=True)
class PiecePlan:
    """One generated piece: ``latent_frames`` new latents after ``condition_latents`` clean ones."""

    index: int
    seconds: int
    latent_frames: int
    condition_latents: int
    output_frames: int


@dataclass
class PreparedInput:
    """A validated request with its condition pixels, ready for a pipeline."""

    request: ExtensionRequest
    prompt: str
    height: int
    width: int
    condition_pixels: np.ndarray  # uint8 [F_cond, H, W, 3] after the bucket resize
    plan: list[PiecePlan]
    source_frames: int

    @property
    def total_frames(self) -> int:
        return sum(p.output_frames for p in self.plan)


def condition_latent_count(pixel_frames: int) -> int:
    return (pixel_frames - 1) // VAE_TIME_STRIDE + 1


def split_seconds(duration: int, piece: int = PIECE_SECONDS) -> list[int]:
    """``7 -> [5, 2]``, ``10 -> [5, 5]``: full pieces, then the remainder."""
    pieces = [piece] * (duration // piece)
    if duration % piece:
        pieces.append(duration % piece)
    return pieces


def plan_single_shot(duration: int) -> list[PiecePlan]:
    """Latent lengths per piece (spec 4.3): round ``6·seconds`` up or down so that condition + new
    latents is a multiple of 8, keeping the running surplus small."""
    condition = condition_latent_count(SINGLE_SHOT_CONDITION_FRAMES)
    padding = 0
    plan = []
    for index, seconds in enumerate(split_seconds(duration)):
        latents = LATENT_FRAMES_PER_SECOND * seconds
        rest = (latents + condition) % LATENT_MULTIPLE
        if rest > padding:
            padding += LATENT_MULTIPLE - rest
            latents += LATENT_MULTIPLE - rest
        else:
            padding -= rest
            latents -= rest
        plan.append(PiecePlan(index, seconds, latents, condition, VAE_TIME_STRIDE * latents))
    return plan


def plan_shot_switching(duration: int) -> list[PiecePlan]:
    frames = FPS * duration + 1
    return [
        PiecePlan(
            0, duration, condition_latent_count(frames),
            condition_latent_count(SHOT_CONDITION_FRAMES[duration]), frames,
        )
    ]  # fmt: skip


def select_bucket(height: int, width: int, table: BucketTable) -> tuple[int, int]:
    """Closest aspect key (ties: first in table order), sizes rounded down to multiples of 16: the
    rule of :mod:`models.buckets`, taking the frame's (height, width) and returning (height, width)."""
    h, w = table[closest_key(height, width, table)]
    return round_down_16(h), round_down_16(w)


def read_tail_frames(path: str, count: int) -> tuple[np.ndarray, int]:
    """The last ``count`` frames of the first video stream as RGB24 ``[n, H, W, 3]`` and the total
    number of frames. Raises :class:`RequestInvalid` for missing or unreadable files.

    Only the tail is decoded: the frames are counted from the packets, and decoding starts at the
    keyframe before the tail (a 10 s 720p clip: about 60 ms instead of 270 ms for decoding it all).
    """
    from core.media.decode import VideoReader
    from core.media.errors import FileMissing, MediaError, NoVideoStream

    file = Path(path)
    try:
        with VideoReader(file, cache_bytes=0, decoded_bytes=0) as reader:
            total = reader.frame_count
            frames = list(reader.iter_frames(max(0, total - count), total))
    except FileMissing as error:
        raise RequestInvalid(f"The input video {path} does not exist (moved or deleted?).") from error
    except NoVideoStream as error:
        raise RequestInvalid(f"{file.name} has no video stream; choose a video clip to extend.") from error
    except (MediaError, OSError, ValueError) as error:
        raise RequestInvalid(f"Cannot read the input video {file.name}: {error}") from error
    if total == 0 or not frames:
        raise RequestInvalid(f"{file.name} contains no decodable frames.")
    return np.stack(frames), total


def resize_nearest(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``[F, H0, W0, 3] -> [F, height, width, 3]`` with torch's default (nearest) interpolation,
    stretched, as the official preprocessing (on float pixels, which nearest leaves unchanged)."""
    # Converted to float by numpy: a new, writable array (cached inputs are read-only), the same values.
    video = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(3, 0, 1, 2).unsqueeze(0)
    video = F.interpolate(video, size=(video.shape[2], height, width))
    return video[0].permute(1, 2, 3, 0).to(torch.uint8).numpy()


def pixels_to_model(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 ``[F, H, W, 3]`` -> float32 ``[1, 3, F, H, W]`` in [-1, 1] (``x / 127.5 - 1``)."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).to(device).permute(3, 0, 1, 2).unsqueeze(0).float()
    return video / (255.0 / 2.0) - 1.0


def model_to_pixels(video: torch.Tensor) -> np.ndarray:
    """float ``[1, 3, F, H, W]`` in [-1, 1] -> uint8 ``[F, H, W, 3]`` by truncation (official)."""
    # Element-wise, so the layout changes no value: the arithmetic runs on the decoder's contiguous
    # [3, F, H, W] and only the uint8 result is put in frame order (at 720P: 57 instead of 92 ms a group).
    video = (video[0].float() / 2 + 0.5).clamp_(0, 1)
    return (video * 255).to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu().numpy()


def prepare_request(request: ExtensionRequest, cache: InputCache | None = None) -> PreparedInput:
    """Validate everything that can be checked without a model and read the condition frames (through
    ``cache`` when given: an unchanged clip is decoded once for several renders).

    Raises:
        RequestInvalid: with a message naming what to change.
    """
    mode = request.mode
    if not isinstance(request.duration_s, int) or isinstance(request.duration_s, bool):
        raise RequestInvalid(f"The duration must be whole seconds, got {request.duration_s!r}.")
    if mode is ExtensionMode.SINGLE_SHOT:
        if request.duration_s not in SINGLE_SHOT_DURATIONS:
            raise RequestInvalid(
                f"A single-shot extension lasts {SINGLE_SHOT_DURATIONS.start} to "
                f"{SINGLE_SHOT_DURATIONS.stop - 1} seconds; {request.duration_s} s was asked for."
            )
        if request.transition is not None:
            raise RequestInvalid(
                "Transitions apply to shot switching only; a single-shot extension continues the shot."
            )
    elif request.duration_s not in SHOT_CONDITION_FRAMES:
        allowed = ", ".join(str(d) for d in SHOT_CONDITION_FRAMES)
        raise RequestInvalid(f"A shot switch lasts {allowed} seconds; {request.duration_s} s was asked for.")
    table = request.bucket_table
    if table is None:
        if request.resolution not in BUCKETS:
            raise RequestInvalid(
                f"Unknown resolution {request.resolution!r}; choose one of {', '.join(BUCKETS)}."
            )
        table = BUCKETS[request.resolution]
    elif not table:
        raise RequestInvalid("The bucket table is empty.")
    if request.steps < 1 or request.steps > 1000:
        raise RequestInvalid(f"The number of steps must be between 1 and 1000, got {request.steps}.")
    if not 0 <= request.seed < 2**63:
        raise RequestInvalid(f"The seed must be between 0 and 2^63-1, got {request.seed}.")
    prompt = request.model_prompt()  # raises on a tag that contradicts the transition

    needed = request.condition_frames
    path = request.input_video
    frames, total = read_through(cache, ("tail_frames", path, needed), [path], lambda: read_tail_frames(path, needed))
    if total < needed:
        raise RequestInvalid(
            f"The clip {Path(request.input_video).name} is too short to extend: it has {total} frames, "
            f"and this extension needs its last {needed} ({needed / FPS:.2f} s at 24 fps)."
        )
    height, width = select_bucket(frames.shape[1], frames.shape[2], table)
    if height < 16 or width < 16:
        raise RequestInvalid(f"The bucket {height}x{width} is too small (at least 16x16 pixels).")
    plan = (
        plan_single_shot(request.duration_s)
        if mode is ExtensionMode.SINGLE_SHOT
        else plan_shot_switching(request.duration_s)
    )
    return PreparedInput(
        request=request,
        prompt=prompt,
        height=height,
        width=width,
        condition_pixels=resize_nearest(frames, height, width),
        plan=plan,
        source_frames=total,
    )


def job_size(prepared: PreparedInput, **sizes: Any) -> JobSize:
    """The :class:`models.memory.JobSize` of a prepared request, for the memory planner.

    The full-size models unless ``sizes``: the one 14.3 B transformer the mode loads (``transformer/``
    or ``shot_transformer/``, same size), UMT5-XXL and the Wan VAE. The tokens are those of the largest
    forward at the request's bucket: the noisy latents plus the condition latents that go through the
    transformer with them (single shot: 7 condition + up to 33 new latent frames; shot switching:
    ``6·d + 1`` new + ``2·d - 1`` context frames); one forward per step (guidance 1).
    """
    from models.memory import JobSize

    latent_frames = max(piece.latent_frames + piece.condition_latents for piece in prepared.plan)
    per_frame = (prepared.height // 16) * (prepared.width // 16)  # 8x VAE, then 2x2 patches
    return JobSize(
        tokens=latent_frames * per_frame,
        frame_height=prepared.height,
        frame_width=prepared.width,
        **{"forwards_per_step": 1, "low_vram_tiles_vae": False, **sizes},
    )


# ---------------------------------------------------------------------------------------------
# Components and the checkpoint folder


class VideoCodec(Protocol):
    """The Wan 2.1 VAE as the pipelines use it (normalised latents)."""

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``[1, 3, F, H, W]`` in [-1, 1] -> ``[1, 16, (F-1)//4+1, H/8, W/8]`` posterior mean, normalised."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[1, 16, T, h, w]`` -> ``[1, 3, 4T-3, 8h, 8w]`` clamped to [-1, 1]."""
        ...

    def iter_decode(self, latents: torch.Tensor) -> Iterator[torch.Tensor]:
        """:meth:`decode` as a stream of pixel groups ``[1, 3, n, 8h, 8w]`` in order."""
        ...


class PromptEncoder(Protocol):
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """``[B, 512, text_dim]`` masked encoder states."""
        ...


class Scheduler(Protocol):
    timesteps: torch.Tensor
    sigmas: torch.Tensor

    def set_timesteps(self, num_inference_steps: int, device: Any = None, shift: float = 1.0) -> None: ...

    def step(self, model_output: torch.Tensor, timestep: Any, sample: torch.Tensor) -> Any:
        """Returns an object with ``prev_sample``."""
        ...


@dataclass
class ExtensionComponents:
    """The loaded models of one mode. ``new_scheduler`` makes a fresh FlowUniPC scheduler per piece."""

    transformer: ExtensionTransformer
    vae: VideoCodec
    text_encoder: PromptEncoder
    new_scheduler: Callable[[], Scheduler]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    offload_text_encoder: bool = False  # keep T5 on the CPU between encodes (moved to ``device`` to encode)
    text_encoder_on_cpu: bool = False  # T5 encodes on the CPU (it does not fit the device even alone)
    park_transformer: bool = False  # the transformer leaves the device while T5 visits it to encode


VAE_FILE = "Wan2.1_VAE.pth"
T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"
TOKENIZER_DIR = "google/umt5-xxl"


def missing_files(folder: str | Path, mode: ExtensionMode) -> list[str]:
    """Paths (relative to ``folder``) a mode needs that are not there; empty when complete.

    A sharded transformer with an index json must have every shard the index names.
    """
    root = Path(folder)
    missing = []
    sub = mode.transformer_folder
    if not (root / sub / "config.json").is_file():
        missing.append(f"{sub}/config.json")
    index_files = sorted((root / sub).glob("*.safetensors.index.json")) if (root / sub).is_dir() else []
    if index_files:
        shards = sorted(set(json.loads(index_files[0].read_text())["weight_map"].values()))
        missing += [f"{sub}/{name}" for name in shards if not (root / sub / name).is_file()]
    elif not (root / sub).is_dir() or not any((root / sub).glob("*.safetensors")):
        missing.append(f"{sub}/*.safetensors")
    for name in (VAE_FILE, T5_FILE):
        if not (root / name).is_file():
            missing.append(name)
    tokenizer = root / TOKENIZER_DIR
    if not (tokenizer / "tokenizer_config.json").is_file():
        missing.append(f"{TOKENIZER_DIR}/tokenizer_config.json")
    if not ((tokenizer / "tokenizer.json").is_file() or (tokenizer / "spiece.model").is_file()):
        missing.append(f"{TOKENIZER_DIR}/tokenizer.json")
    return missing


def check_checkpoint(folder: str | Path, mode: ExtensionMode) -> None:
    """Raise :class:`ModelsMissing` listing every missing file of ``mode`` in ``folder``."""
    missing = missing_files(folder, mode)
    if missing:
        raise ModelsMissing(
            f"The video-extension model folder {folder} is incomplete for {mode.value.replace('_', ' ')}; "
            f"missing: {', '.join(missing)}. Download Skywork/SkyReels-V3-V2V-14B (Models ▸ Download) "
            "or finish the interrupted download."
        )


def load_transformer(
    folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.bfloat16
) -> ExtensionTransformer:
    """Build from ``config.json`` on the meta device and load every ``*.safetensors`` strictly."""
    from models.extension.transformer import ExtensionDiTConfig, build_transformer
    from models.wan.loading import load_safetensors_folder, load_strict

    folder = Path(folder)
    config = ExtensionDiTConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = build_transformer(config, "meta")
    state = load_safetensors_folder(folder)
    load_strict(model, state, device=device, dtype=dtype, what=f"extension transformer ({folder.name}/)")
    return model.requires_grad_(False).eval()


def load_components(
    folder: str | Path,
    mode: ExtensionMode,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    text_dtype: torch.dtype | None = None,
    sizes: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    offload: bool = False,
    low_vram: bool = False,
    plan: MemoryPlan | None = None,
) -> ExtensionComponents:
    """Load one mode's models from a folder in the official layout (spec 4.1).

    Args:
        folder: the checkpoint root (``transformer/``, ``shot_transformer/``, VAE, T5, tokenizer).
        mode: which transformer folder to load.
        device: where everything runs.
        dtype: DiT weight dtype (bfloat16 in production, float32 for parity runs).
        text_dtype: T5 weight dtype (default: ``dtype``).
        sizes: constructor sizes the official code hard-codes (``{"wan_t5": ..., "wan_vae": ...}``),
            for tiny checkpoints; default: the full-size models.
        offload: keep the text encoder on the CPU except while it encodes (official ``--offload``).
        low_vram: ``offload`` plus float8 weight-only transformer blocks kept on the CPU and uploaded
            one block at a time (official ``--low_vram``; changes the numbers by the quantisation).
        plan: a :class:`models.memory.MemoryPlan` (from the planner), carried out with this pipeline's
            own mechanisms on top of what the flags force: ``park_idle`` keeps T5 on the CPU between
            encodes and parks the transformer on the CPU while T5 visits the device (unless its
            blocks are streamed); ``text_encoder_on_cpu`` runs T5 on the CPU; ``block_streaming``
            uploads the blocks one ahead from pinned host memory in the weight dtype (bfloat16: the
            official numerics); ``fp8`` stores the blocks in float8 (the official low-VRAM numerics,
            whatever ``plan.fp8`` names); ``ffn_chunk_tokens`` chunks every FFN; ``tiled_vae`` tiles
            the VAE decode. Default: everything on ``device``.

    Raises:
        ModelsMissing: files are missing (all of them are named).
    """
    from models.extension.transformer import quantize_blocks_float8

    check_checkpoint(folder, mode)
    root = Path(folder)
    device = torch.device(device)
    sizes = sizes or {}
    cpu = torch.device("cpu")
    fp8 = low_vram or (plan is not None and plan.fp8 is not None)
    stream = low_vram or (plan is not None and plan.block_streaming)
    text_on_cpu = plan is not None and plan.text_encoder_on_cpu
    offload = offload or low_vram or (plan is not None and plan.park_idle) or text_on_cpu
    # A parked plan expects the transformer off the device while T5 encodes there (R2V's placement
    # does the same); streamed blocks are already off it, and a T5 that runs on the CPU needs no room.
    park = plan is not None and plan.park_idle and not stream and not text_on_cpu
    on_cpu_first = fp8 or stream or park  # quantised on the CPU; streamed or parked from there
    transformer = load_transformer(root / mode.transformer_folder, cpu if on_cpu_first else device, dtype)
    if fp8:
        quantize_blocks_float8(transformer)
    if stream:
        transformer.enable_block_offload(device, cpu)
    elif not park:
        transformer.to(device)
    if plan is not None and plan.ffn_chunk_tokens:
        transformer.set_ffn_chunking(plan.ffn_chunk_tokens)
    # The official low-VRAM mode decodes untiled: the planner knows (job_size's low_vram_tiles_vae), and so
    # does the flag without a plan; a plan the memory asks for tiles the decode.
    tiled = plan is not None and plan.tiled_vae
    vae = _load_vae(root / VAE_FILE, device, sizes.get("wan_vae"), tiled=tiled)
    text_encoder = _load_text_encoder(
        root, cpu if offload else device, text_dtype or dtype, sizes.get("wan_t5")
    )
    return ExtensionComponents(
        transformer, vae, text_encoder, _new_scheduler, device,
        offload_text_encoder=offload, text_encoder_on_cpu=text_on_cpu, park_transformer=park,
    )  # fmt: skip


def _load_vae(
    path: Path, device: torch.device, config: Mapping[str, Any] | None, *, tiled: bool = False
) -> VideoCodec:
    from models.wan.vae import WanVAE

    vae = WanVAE.from_pth(path, device=device, dtype=torch.float32, config=dict(config) if config else None)
    if tiled:
        vae.enable_tiling()  # 256 px tiles every 192 px; frames no larger than a tile decode untiled
    return vae


def _load_text_encoder(
    root: Path, device: torch.device, dtype: torch.dtype, config: Mapping[str, Any] | None
) -> PromptEncoder:
    from models.wan.t5 import WanT5Encoder

    # The encoder's sizes are read from the file's tensor shapes, so ``config`` (the sizes the
    # official code hard-codes) is only checked, not needed.
    encoder = WanT5Encoder.from_pth(root / T5_FILE, root / TOKENIZER_DIR, device=device, dtype=dtype)
    if config and "dim" in config and encoder.model.token_embedding.weight.shape[1] != config["dim"]:
        raise ValueError(
            f"text encoder width {encoder.model.token_embedding.weight.shape[1]} != {config['dim']}"
        )
    return encoder


def _new_scheduler() -> Scheduler:
    from models.wan.scheduler import FlowUniPCMultistepScheduler

    return FlowUniPCMultistepScheduler()  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# Generation


NoiseSource = Callable[[int, tuple[int, ...]], torch.Tensor]


def seeded_noise(seed: int) -> NoiseSource:
    """Official draw order: a fresh ``Generator('cpu').manual_seed(seed)`` per piece, one ``randn``."""

    def draw(_piece: int, shape: tuple[int, ...]) -> torch.Tensor:
        generator = torch.Generator("cpu").manual_seed(seed)
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    return draw


@dataclass
class ExtensionResult:
    frames: np.ndarray  # uint8 [N, H, W, 3], the continuation only
    fps: int
    plan: list[PiecePlan]
    resumed_pieces: list[int] = field(default_factory=list)


class ExtensionPipeline:
    """Runs prepared extension requests on loaded components. Lives on the GPU worker thread."""

    def __init__(self, components: ExtensionComponents) -> None:
        self.components = components
        self._decode_last = True
        self.text_cache = TextEmbeddingCache()

    def __call__(
        self,
        prepared: PreparedInput,
        ctx: RunContext | None = None,
        *,
        noise: NoiseSource | None = None,
        trace: dict[str, torch.Tensor] | None = None,
        decode_last_piece: bool = True,
        on_frames: Callable[[np.ndarray], None] | None = None,
    ) -> ExtensionResult:
        """Generate.

        Args:
            prepared: from :func:`prepare_request`.
            ctx: events, cancel and the piece store (default: silent, no checkpoints).
            noise: replaces the seeded draws (golden vectors).
            trace: collects intermediates under the golden names (``text.context``, ``chunk0.noise``,
                ``chunk0.latents_final``, ...).
            decode_last_piece: False stops after the last piece's denoising (its latents are in
                ``trace``; the result holds the earlier pieces' frames only). For diagnostics.
            on_frames: receives each piece's new frames as soon as they are decoded (or read back on
                resume); the result then holds no frames, so a 30 s extension never sits in memory.
        """
        ctx = ctx or RunContext()
        self._on_frames = on_frames
        noise = noise or seeded_noise(prepared.request.seed)
        self._decode_last = decode_last_piece
        with torch.no_grad():
            if prepared.request.mode is ExtensionMode.SINGLE_SHOT:
                return self._single_shot(prepared, ctx, noise, trace)
            return self._shot_switching(prepared, ctx, noise, trace)

    # -- shared pieces ----------------------------------------------------------------------

    def _deliver(self, outputs: list[np.ndarray], frames: np.ndarray) -> None:
        """Hand a piece's frames to the caller's sink (streaming), or keep them for the result."""
        if self._on_frames is not None:
            self._on_frames(frames)
        else:
            outputs.append(frames)

    def _encode_text(self, prompt: str, trace: dict[str, torch.Tensor] | None) -> torch.Tensor:
        if trace is None:
            cached = self.text_cache.get(prompt, self.components.device)
            if cached is not None:
                return cached
        encoder = self.components.text_encoder
        visits = self.components.offload_text_encoder and not self.components.text_encoder_on_cpu
        if visits and hasattr(encoder, "to"):
            if self.components.park_transformer:
                self.components.transformer.to("cpu")  # room for T5; back before the denoising
                if self.components.device.type == "cuda":
                    torch.cuda.empty_cache()
            encoder.to(self.components.device)
            try:
                context = encoder.encode([prompt])
            finally:
                encoder.to("cpu")
        else:
            context = encoder.encode([prompt])
        if trace is not None:
            trace["text.context"] = context.detach().float().cpu()
        self.text_cache.put(prompt, context)
        return context.to(self.components.device)

    def _denoise(
        self,
        piece: PiecePlan,
        total_pieces: int,
        steps: int,
        latents: torch.Tensor,
        model_call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        ctx: RunContext,
        trace: dict[str, torch.Tensor] | None,
    ) -> torch.Tensor:
        """The FlowUniPC loop; ``model_call(latents [1,16,L,h,w], t) -> velocity [1,16,L,h,w]``."""
        if self.components.park_transformer:
            self.components.transformer.to(self.components.device)  # parked while T5 encoded
        scheduler = self.components.new_scheduler()
        scheduler.set_timesteps(steps, device=self.components.device, shift=SHIFT)
        timesteps = scheduler.timesteps
        sigmas = scheduler.sigmas
        prefix = f"chunk{piece.index}"
        if trace is not None:
            trace[f"{prefix}.timesteps"] = timesteps.detach().cpu().to(torch.int64)
            trace[f"{prefix}.sigmas"] = sigmas.detach().cpu().float()
        sample = latents.unsqueeze(0)
        for i, t in enumerate(timesteps):
            ctx.check_cancel()
            velocity = model_call(sample, t)
            if trace is not None and i == 0:
                trace[f"{prefix}.step0.model_output"] = velocity.detach().float().cpu()
            x0 = sample - float(sigmas[i]) * velocity  # flow prediction -> clean estimate (preview)
            sample = scheduler.step(velocity, t, sample).prev_sample
            if trace is not None and i == 0:
                trace[f"{prefix}.step0.latents"] = sample[0].detach().float().cpu()
            ctx.step(piece.index, total_pieces, i + 1, len(timesteps), x0)
        result = sample[0]
        if trace is not None:
            trace[f"{prefix}.latents_final"] = result.detach().float().cpu()
        return result

    def _encode_condition(
        self, pixels: np.ndarray, piece: int, trace: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        if trace is not None:
            trace[f"chunk{piece}.prefix_pixels"] = torch.from_numpy(np.ascontiguousarray(pixels))
        latents = self.components.vae.encode(pixels_to_model(pixels, self.components.device)).float()
        if trace is not None:
            trace[f"chunk{piece}.prefix_latents"] = latents.detach().cpu()
        return latents

    def _draw(
        self, noise: NoiseSource, piece: int, shape: tuple[int, ...], trace: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        drawn = noise(piece, shape)
        if tuple(drawn.shape) != shape:
            raise ValueError(f"noise for piece {piece} has shape {tuple(drawn.shape)}, expected {shape}")
        if trace is not None:
            trace[f"chunk{piece}.noise"] = drawn.detach().float().cpu()
        return drawn.to(self.components.device, torch.float32)

    # -- single shot ------------------------------------------------------------------------

    def _single_shot(
        self,
        prepared: PreparedInput,
        ctx: RunContext,
        noise: NoiseSource,
        trace: dict[str, torch.Tensor] | None,
    ) -> ExtensionResult:
        request = prepared.request
        total = len(prepared.plan)
        transformer = self.components.transformer
        h, w = prepared.height // VAE_SPACE_STRIDE, prepared.width // VAE_SPACE_STRIDE
        outputs: list[np.ndarray] = []
        resumed: list[int] = []
        condition = prepared.condition_pixels
        context: torch.Tensor | None = None
        for piece in prepared.plan:
            done = ctx.finished_piece(piece.index)
            if done is not None and "prefix_frames" in done.state:
                self._deliver(outputs, done.frames)
                condition = done.state["prefix_frames"].numpy()
                resumed.append(piece.index)
                continue
            ctx.status(f"piece {piece.index + 1}/{total}: encoding the condition frames")
            prefix_latents = self._encode_condition(condition, piece.index, trace)
            if prefix_latents.shape[2] != piece.condition_latents:
                raise RuntimeError(
                    f"VAE returned {prefix_latents.shape[2]} condition latents, expected {piece.condition_latents}"
                )
            if context is None:
                context = self._encode_text(prepared.prompt, trace)
            latents = self._draw(noise, piece.index, (16, piece.latent_frames, h, w), trace)
            cond_frames = prefix_latents.shape[2]

            def model_call(
                sample: torch.Tensor,
                t: torch.Tensor,
                prefix_latents: torch.Tensor = prefix_latents,
                cond_frames: int = cond_frames,
                context: torch.Tensor = context,
            ) -> torch.Tensor:
                x = torch.cat([prefix_latents, sample], dim=2)
                timestep = torch.full((1, x.shape[2]), int(t), dtype=torch.int64, device=x.device)
                timestep[:, :cond_frames] = 0
                out = transformer(x, timestep, context, between_blocks=ctx.check_cancel)
                return out[:, :, cond_frames:]

            ctx.status(f"piece {piece.index + 1}/{total}: denoising")
            final = self._denoise(piece, total, request.steps, latents, model_call, ctx, trace)
            ctx.check_cancel()
            if piece.index == total - 1 and not self._decode_last:
                break
            ctx.status(f"piece {piece.index + 1}/{total}: decoding")
            # Decoded group by group; the piece (all but the re-decoded prefix) is encoded to its MP4
            # on a background thread meanwhile. The last frames condition the next piece.
            tail: list[np.ndarray] = []  # the newest groups, at least the condition frames' worth
            with ctx.begin_piece(piece.index, total, skip=SINGLE_SHOT_CONDITION_FRAMES) as sink:
                latents_all = torch.cat([prefix_latents, final.unsqueeze(0)], dim=2)
                for group in self.components.vae.iter_decode(latents_all):
                    ctx.check_cancel()
                    pixels = model_to_pixels(group)
                    sink.add(pixels)
                    tail.append(pixels)
                    while sum(len(g) for g in tail[1:]) >= SINGLE_SHOT_CONDITION_FRAMES:
                        tail.pop(0)
                condition = np.ascontiguousarray(np.concatenate(tail)[-SINGLE_SHOT_CONDITION_FRAMES:])
                new_frames = sink.finish({"prefix_frames": torch.from_numpy(condition)})
            self._deliver(outputs, new_frames)
        frames = (
            np.concatenate(outputs, axis=0)
            if outputs
            else np.zeros((0, prepared.height, prepared.width, 3), np.uint8)
        )
        return ExtensionResult(frames, FPS, prepared.plan, resumed)

    # -- shot switching ---------------------------------------------------------------------

    def _shot_switching(
        self,
        prepared: PreparedInput,
        ctx: RunContext,
        noise: NoiseSource,
        trace: dict[str, torch.Tensor] | None,
    ) -> ExtensionResult:
        request = prepared.request
        (piece,) = prepared.plan
        done = ctx.finished_piece(0)
        if done is not None:
            return ExtensionResult(done.frames, FPS, prepared.plan, [0])
        transformer = self.components.transformer
        h, w = prepared.height // VAE_SPACE_STRIDE, prepared.width // VAE_SPACE_STRIDE
        ctx.status("encoding the condition frames")
        prefix_latents = self._encode_condition(prepared.condition_pixels, 0, trace)
        context = self._encode_text(prepared.prompt, trace)
        latents = self._draw(noise, 0, (16, piece.latent_frames, h, w), trace)
        cond_frames = prefix_latents.shape[2]

        def model_call(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            timestep = torch.full(
                (1, sample.shape[2] + cond_frames), int(t), dtype=torch.int64, device=sample.device
            )
            timestep[:, -cond_frames:] = 0
            return transformer([sample, prefix_latents], timestep, context, between_blocks=ctx.check_cancel)

        ctx.status("denoising")
        final = self._denoise(piece, 1, request.steps, latents, model_call, ctx, trace)
        ctx.check_cancel()
        if not self._decode_last:
            return ExtensionResult(
                np.zeros((0, prepared.height, prepared.width, 3), np.uint8), FPS, prepared.plan
            )
        ctx.status("decoding")
        with ctx.begin_piece(0, 1) as sink:
            for group in self.components.vae.iter_decode(final.unsqueeze(0)):
                ctx.check_cancel()
                sink.add(model_to_pixels(group))
            frames = sink.finish()
        return ExtensionResult(frames, FPS, prepared.plan)


def output_frame_count(mode: ExtensionMode, duration: int) -> int:
    """Frames an extension of ``duration`` seconds produces (spec tables 4.3 / 4.4)."""
    plan = plan_single_shot(duration) if mode is ExtensionMode.SINGLE_SHOT else plan_shot_switching(duration)
    return sum(p.output_frames for p in plan)


__all__ = [
    "BUCKETS",
    "FPS",
    "ExtensionComponents",
    "ExtensionMode",
    "ExtensionPipeline",
    "ExtensionRequest",
    "ExtensionResult",
    "PiecePlan",
    "PreparedInput",
    "check_checkpoint",
    "job_size",
    "load_components",
    "load_transformer",
    "missing_files",
    "output_frame_count",
    "plan_shot_switching",
    "plan_single_shot",
    "prepare_request",
    "run_extension",
    "seeded_noise",
    "select_bucket",
]


def run_extension(
    request: ExtensionRequest,
    model_folder: str | Path,
    ctx: RunContext | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    noise: NoiseSource | None = None,
) -> ExtensionResult:
    """Validate, check the model folder, load, generate: the order the app relies on.

    Raises:
        RequestInvalid: before anything is read from ``model_folder``.
        ModelsMissing: the folder lacks files of this mode (all named), before any model loads.
        RenderCancelled: cancel was set (finished pieces stay checkpointed in ``ctx``'s store).
    """
    prepared = prepare_request(request)
    check_checkpoint(model_folder, request.mode)
    components = load_components(model_folder, request.mode, device=device, dtype=dtype)
    return ExtensionPipeline(components)(prepared, ctx, noise=noise)
