"""Generation vocabulary shared by the project model, the render queue and the inference backend.

Owns: the task and transition enums, the :class:`GenerationRecipe` stored on generated clips, the
frozen :class:`RenderRequest` handed to a backend, the typed events a backend emits while it runs,
and the :class:`InferenceBackend` protocol that ``models`` implements.

Must not import: PySide6, torch, diffusers, ``app``, ``models``.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class Task(str, enum.Enum):
    """The four SkyReels-V3 generation tasks (values are the official ``--task_type`` names)."""

    REFERENCE_TO_VIDEO = "reference_to_video"
    SINGLE_SHOT_EXTENSION = "single_shot_extension"
    SHOT_SWITCHING_EXTENSION = "shot_switching_extension"
    TALKING_AVATAR = "talking_avatar"


class Transition(str, enum.Enum):
    """Shot-switching transition types (mapped to prompt tags by the pipeline)."""

    CUT_IN = "cut_in"
    CUT_OUT = "cut_out"
    SHOT_REVERSE_SHOT = "shot_reverse_shot"
    MULTI_ANGLE = "multi_angle"
    CUT_AWAY = "cut_away"


class Quality(str, enum.Enum):
    """``DRAFT`` is the fast preview preset; ``FINAL`` is the official defaults."""

    DRAFT = "draft"
    FINAL = "final"


RESOLUTIONS = ("480P", "540P", "720P")
ASPECTS = ("1:1", "3:4", "4:3", "16:9", "9:16")


@dataclass(frozen=True)
class AudioRegion:
    """A region of an audio asset in integer frames at the project rate (start inclusive, end exclusive)."""

    asset_id: str
    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class GenerationRecipe:
    """Everything needed to re-render a generated clip identically.

    Paths are not stored here: references point at bin assets by id; the render request resolves them.
    """

    task: Task
    prompt: str
    reference_asset_ids: tuple[str, ...] = ()
    source_clip_id: str | None = None  # extension / shot switching: the clip continued
    portrait_asset_id: str | None = None  # talking avatar
    audio_region: AudioRegion | None = None  # talking avatar
    duration_s: float = 5.0
    resolution: str = "720P"
    aspect: str | None = None  # R2V only; None = from the first reference image
    seed: int = 42
    steps: int | None = None  # None = the task's official default
    transition: Transition | None = None
    quality: Quality = Quality.FINAL
    model_id: str = ""
    model_revision: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["task"] = self.task.value
        data["quality"] = self.quality.value
        data["transition"] = self.transition.value if self.transition else None
        data["reference_asset_ids"] = list(self.reference_asset_ids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationRecipe:
        region = data.get("audio_region")
        return cls(
            task=Task(data["task"]),
            prompt=data.get("prompt", ""),
            reference_asset_ids=tuple(data.get("reference_asset_ids", ())),
            source_clip_id=data.get("source_clip_id"),
            portrait_asset_id=data.get("portrait_asset_id"),
            audio_region=AudioRegion(**region) if region else None,
            duration_s=float(data.get("duration_s", 5.0)),
            resolution=data.get("resolution", "720P"),
            aspect=data.get("aspect"),
            seed=int(data.get("seed", 42)),
            steps=data.get("steps"),
            transition=Transition(data["transition"]) if data.get("transition") else None,
            quality=Quality(data.get("quality", "final")),
            model_id=data.get("model_id", ""),
            model_revision=data.get("model_revision"),
        )


@dataclass(frozen=True)
class RenderRequest:
    """A frozen, JSON-serialisable snapshot of one generation job: the worker never reads the project.

    ``reference_images`` / ``input_video`` / ``input_image`` / ``input_audio`` are absolute file paths.
    ``audio_start_s`` / ``audio_end_s`` cut a region out of ``input_audio`` (None = whole file).
    ``work_dir`` receives checkpoints of finished pieces (resume) and the output file.
    """

    task: Task
    prompt: str
    output_path: str
    work_dir: str
    reference_images: tuple[str, ...] = ()
    input_video: str | None = None
    input_image: str | None = None
    input_audio: str | None = None
    audio_start_s: float | None = None
    audio_end_s: float | None = None
    duration_s: float = 5.0
    resolution: str = "720P"
    aspect: str | None = None
    seed: int = 42
    steps: int | None = None
    transition: Transition | None = None
    quality: Quality = Quality.FINAL
    model: str = ""  # local folder, Hugging Face repo id, or "tiny"
    device: str = "auto"
    offload: bool = False
    low_vram: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["task"] = self.task.value
        data["quality"] = self.quality.value
        data["transition"] = self.transition.value if self.transition else None
        data["reference_images"] = list(self.reference_images)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RenderRequest:
        data = dict(data)
        data["task"] = Task(data["task"])
        data["quality"] = Quality(data.get("quality", "final"))
        data["transition"] = Transition(data["transition"]) if data.get("transition") else None
        data["reference_images"] = tuple(data.get("reference_images", ()))
        return cls(**data)


# ---------------------------------------------------------------------------------------------
# Events a backend emits while it runs (past tense, any thread; consumers marshal to their thread)


@dataclass(frozen=True)
class Progress:
    """One denoising step finished. ``piece`` counts extension pieces / avatar windows (0-based)."""

    step: int
    total_steps: int
    piece: int = 0
    total_pieces: int = 1
    message: str = ""


@dataclass(frozen=True)
class Preview:
    """Latent preview after a step: an RGB uint8 image as ``(height, width, bytes)`` (no numpy needed)."""

    piece: int
    step: int
    width: int
    height: int
    rgb: bytes


@dataclass(frozen=True)
class PieceFinished:
    """A piece/window is decoded and checkpointed; ``path`` holds its frames (playable at once)."""

    piece: int
    total_pieces: int
    path: str
    num_frames: int


@dataclass(frozen=True)
class StatusMessage:
    """Free-form phase information ("loading text encoder", "decoding")."""

    text: str


RenderEvent = Progress | Preview | PieceFinished | StatusMessage


@dataclass(frozen=True)
class RenderResult:
    output_path: str
    num_frames: int
    fps: int
    width: int
    height: int
    has_audio: bool = False
    seconds: float = 0.0


class RenderCancelled(Exception):
    """Raised by a backend when the cancel event was set; no VAE decode runs after it."""


class RequestInvalid(ValueError):
    """A request that can never run (bad counts, sizes, durations, unreadable files). The message is
    written for the user and names what to change."""


class ModelsMissing(RuntimeError):
    """The model files for a task are not on this machine; the message lists what is missing and how to
    get it."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory; the message says what to change. Finished pieces are kept."""


class DiskFull(RuntimeError):
    """The disk of the render's files is full, or too full for the render to start; the message says
    how much is needed and where. Finished pieces are kept."""


class InferenceBackend(Protocol):
    """Implemented in ``models`` (real pipelines) and ``tests`` (fakes). ``emit`` may be called from any
    thread; ``cancel`` is polled at least once per denoising step."""

    def validate(self, request: RenderRequest) -> None:
        """Raise :class:`RequestInvalid` before any model loads."""

    def render(
        self,
        request: RenderRequest,
        emit: Callable[[RenderEvent], None],
        cancel: threading.Event,
    ) -> RenderResult: ...
