"""Plumbing every generation pipeline shares: events, cancel, latent previews, crash-safe pieces.

Owns :class:`RunContext` (what a pipeline receives to report progress, poll cancel and checkpoint
finished pieces), :func:`latent_preview_rgb` (the x0 estimate through the Wan 2.1 latent-to-RGB
factors, cheap enough for every step) and :class:`PieceStore` (finished pieces on disk so a killed
render resumes from the last finished piece with identical frames).

Imports torch, numpy and ``core`` types. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from core.generation import PieceFinished, Preview, Progress, RenderCancelled, RenderEvent, StatusMessage

# Linear map from the 16 normalised Wan 2.1 latent channels to RGB in [-1, 1] (a least-squares fit of
# decoded pixels against latents, the same numbers previewers of Wan models use), plus its bias.
WAN21_LATENT_RGB_FACTORS = torch.tensor(
    [
        [-0.1299, -0.1692, 0.2932],
        [0.0671, 0.0406, 0.0442],
        [0.3568, 0.2548, 0.1747],
        [0.0372, 0.2344, 0.1420],
        [0.0313, 0.0189, -0.0328],
        [0.0296, -0.0956, -0.0665],
        [-0.3477, -0.4059, -0.2925],
        [0.0166, 0.1902, 0.1975],
        [-0.0412, 0.0267, -0.1364],
        [-0.1293, 0.0740, 0.1636],
        [0.0680, 0.3019, 0.1128],
        [0.0032, 0.0581, 0.0639],
        [-0.1251, 0.0927, 0.1699],
        [0.0060, -0.0633, 0.0005],
        [0.3477, 0.2275, 0.2950],
        [0.1984, 0.0913, 0.1861],
    ],
    dtype=torch.float32,
)
WAN21_LATENT_RGB_BIAS = torch.tensor([-0.1835, -0.0868, -0.3360], dtype=torch.float32)


def latent_preview_rgb(latents: torch.Tensor, frame: int = -1) -> np.ndarray:
    """RGB uint8 ``[h, w, 3]`` preview of one latent frame of normalised Wan 2.1 latents.

    Args:
        latents: ``[16, T, h, w]`` or ``[1, 16, T, h, w]`` in the denoiser's (normalised) space,
            typically the x0 estimate of the current step.
        frame: which latent frame to show (default: the newest).
    """
    if latents.dim() == 5:
        latents = latents[0]
    if latents.shape[0] != WAN21_LATENT_RGB_FACTORS.shape[0]:
        raise ValueError(f"expected 16 latent channels, got {latents.shape[0]}")
    with torch.no_grad():
        one = latents[:, frame].detach().to("cpu", torch.float32)  # [16, h, w]
        height, width = one.shape[1:]
        # One matrix product [h*w, 16] x [16, 3] plus the bias (einsum's dispatch cost more than the
        # arithmetic on small latents).
        rgb = torch.addmm(WAN21_LATENT_RGB_BIAS, one.reshape(16, -1).t(), WAN21_LATENT_RGB_FACTORS)
        rgb = ((rgb.clamp_(-1.0, 1.0) + 1.0) * 127.5).round_().to(torch.uint8)
    return rgb.view(height, width, 3).numpy()


def request_fingerprint(payload: dict[str, Any]) -> str:
    """Stable hash of the settings that determine a render's frames (not its output path)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class FinishedPiece:
    """A piece read back from disk: its uint8 frames ``[F, H, W, 3]`` and the tensors the pipeline
    saved to continue from it (e.g. the prefix of the next extension piece, avatar motion latents)."""

    index: int
    frames: np.ndarray
    state: dict[str, torch.Tensor] = field(default_factory=dict)


class PieceStore:
    """Finished pieces of one render in ``work_dir/pieces-<fingerprint>/``, written atomically.

    A piece is ``piece_0003.npy`` (exact uint8 frames, what resume reads), ``piece_0003.state.safetensors``
    (continuation tensors) and, when the media writer is available, ``piece_0003.mp4`` so a finished
    piece is playable at once. ``complete.json`` (:meth:`mark_complete`) marks a finished render and names
    the MP4s its output is made of. The fingerprint keys the folder to the render's settings, so a
    changed request never resumes from stale pieces.
    """

    def __init__(
        self, work_dir: str | os.PathLike[str], fingerprint: str, fps: int, *, encoder_threads: int = 1
    ) -> None:
        self.folder = Path(work_dir) / f"pieces-{fingerprint}"
        self.fps = fps
        self.encoder_threads = encoder_threads  # x264 threads of the playable MP4s (see encoder_threads_for)
        self._handed: tuple[int, int, np.ndarray] | None = None

    def _remember(self, index: int, frames: np.ndarray) -> None:
        # Count plus first and last frame identify the piece a pipeline hands to its output next.
        if len(frames):
            self._handed = (index, len(frames), np.stack([frames[0], frames[-1]]))

    def playable_for(self, frames: np.ndarray) -> Path | None:
        """The playable MP4 of the piece last saved or loaded, if ``frames`` are that piece's frames.

        Pipelines save (or, on resume, load) a piece and then hand the same frames to their output;
        the output copies the piece's encoded MP4 instead of encoding the frames a second time.
        """
        if self._handed is None or not len(frames):
            return None
        index, count, ends = self._handed
        if count != len(frames) or not (np.array_equal(frames[0], ends[0]) and np.array_equal(frames[-1], ends[1])):
            return None
        return self.playable(index)

    def _path(self, index: int, suffix: str) -> Path:
        return self.folder / f"piece_{index:04d}{suffix}"

    def save(
        self,
        index: int,
        frames: np.ndarray,
        state: dict[str, torch.Tensor] | None = None,
        *,
        encoder: PlayableEncoder | None = None,
    ) -> Path:
        """Checkpoint a piece. ``encoder`` (from :meth:`start_playable`, fed with exactly ``frames``)
        has been encoding the playable MP4 while the frames were decoded; it is finished here."""
        from safetensors.torch import save as tensors_to_bytes

        self.folder.mkdir(parents=True, exist_ok=True)
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        # The encoder thread learns that the piece is complete and flushes the MP4 while the exact frames
        # and the state are written and synced here; then it is waited for (issue 5: the disk writes
        # overlap the encoder's tail instead of following it).
        if encoder is not None:
            encoder.end_input()
        tmp_state, tmp = self._path(index, ".state.tmp"), self._path(index, ".tmp.npy")
        try:
            if state:
                data = tensors_to_bytes({k: v.detach().cpu().contiguous() for k, v in state.items()})
                _write_synced(tmp_state, lambda handle: handle.write(data))
                os.replace(tmp_state, self._path(index, ".state.safetensors"))
            _write_synced(tmp, lambda handle: np.save(handle, frames))
            playable = encoder.close() if encoder is not None else self._write_playable(index, frames)
        except BaseException:
            tmp_state.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)
            raise
        # The .npy lands last, once every other file of the piece is complete: its presence marks the
        # piece finished.
        os.replace(tmp, self._path(index, ".npy"))
        self._remember(index, frames)
        return playable or self._path(index, ".npy")

    def start_playable(self, index: int) -> PlayableEncoder | None:
        """A background encoder for piece ``index``'s playable MP4 (None without the media writer)."""
        try:
            import core.media.writer  # noqa: F401
        except ImportError:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        return PlayableEncoder(self._path(index, ".mp4"), self.fps, threads=self.encoder_threads)

    def _write_playable(self, index: int, frames: np.ndarray) -> Path | None:
        try:
            from core.media.writer import write_video
        except ImportError:
            return None
        path = self._path(index, ".mp4")
        write_video(str(path), frames, self.fps)
        return path

    def mark_complete(self, manifest: dict[str, Any]) -> None:
        """Record that the render finished: which piece MP4s make the output, in order, and what it is
        (``parts``, ``frames``, ``width``, ``height``, ``fps``, ``audio_rate``). A later render of the same
        request (same fingerprint) re-assembles the output from them without loading a model: a job
        rendered on another machine (``main.py jobs``) lands in the editor that way."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "complete.json.tmp"
        tmp.write_text(json.dumps(manifest, sort_keys=True))
        os.replace(tmp, self.folder / "complete.json")

    def completed(self) -> dict[str, Any] | None:
        """The manifest of :meth:`mark_complete` when every part it names is still there, else None."""
        try:
            manifest = json.loads((self.folder / "complete.json").read_text())
            parts = [self.folder / str(name) for name in manifest["parts"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not parts or not all(part.is_file() for part in parts):
            return None
        return {**manifest, "paths": parts}

    def playable(self, index: int) -> Path | None:
        """The piece's playable MP4, when it was written (and its exact frames are checkpointed)."""
        path = self._path(index, ".mp4")
        return path if path.exists() and self._path(index, ".npy").exists() else None

    def load(self, index: int) -> FinishedPiece | None:
        path = self._path(index, ".npy")
        if not path.exists():
            return None
        try:
            frames = np.load(path)
        except (OSError, ValueError):
            return None  # a damaged piece is simply rendered again
        state: dict[str, torch.Tensor] = {}
        state_path = self._path(index, ".state.safetensors")
        if state_path.exists():
            from safetensors.torch import load_file

            state = load_file(str(state_path))
        self._remember(index, frames)
        return FinishedPiece(index, frames, state)

    def finished_indices(self) -> list[int]:
        if not self.folder.exists():
            return []
        found = []
        for path in self.folder.glob("piece_*.npy"):
            stem = path.name.removeprefix("piece_").removesuffix(".npy")
            if stem.isdigit():
                found.append(int(stem))
        return sorted(found)

    def clear(self) -> None:
        if self.folder.exists():
            for path in self.folder.iterdir():
                path.unlink()
            self.folder.rmdir()


def _write_synced(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file and wait until its bytes are on the disk (fsync)."""
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


_END = object()


def encoder_threads_for(device: str | torch.device) -> int:
    """x264 threads for the playable MP4s of a render computing on ``device``.

    Beside a CPU render one thread, so the encoder never takes cores from the model. Beside a GPU
    render the CPU mostly waits for the GPU: up to 4 threads (half the cores), so that the 720P frames
    of a piece (36 ms a frame on one thread) are encoded while the VAE decodes the next ones instead of
    after them. x264 is deterministic for a given thread count.
    """
    if torch.device(device).type == "cpu":
        return 1
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class PlayableEncoder:
    """Encodes one piece's MP4 on a background thread from frame groups handed in as they are decoded,
    so the encoding (which releases the GIL) overlaps the decoding of the next group.

    ``put`` never blocks; :meth:`end_input` lets the encoder finish the file while the caller does other
    work; :meth:`close` waits for the file and re-raises an encoder error; :meth:`abort` stops and
    removes the partial file (after :meth:`end_input` the file may already be complete). The frames
    handed in must not be modified afterwards.
    """

    def __init__(self, path: Path, fps: int, *, threads: int = 1) -> None:
        self.path = path
        self.fps = fps
        self.threads = threads
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._aborted = False
        self._ended = False
        self._thread = threading.Thread(target=self._run, name=f"encode-{path.stem}", daemon=True)
        self._thread.start()

    def put(self, frames: np.ndarray) -> None:
        if len(frames):
            self._queue.put(frames)

    def end_input(self) -> None:
        """No more frames: the encoder flushes and finishes the file (:meth:`close` waits for it)."""
        if not self._ended:
            self._ended = True
            self._queue.put(_END)

    def close(self) -> Path:
        self.end_input()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.path

    def abort(self) -> None:
        self._aborted = True
        self._ended = True
        self._queue.put(_END)
        self._thread.join()

    def _run(self) -> None:
        from core.media.writer import VideoWriter

        writer: VideoWriter | None = None
        try:
            while True:
                frames = self._queue.get()
                if frames is _END or self._aborted:
                    break
                if writer is None:
                    writer = VideoWriter(self.path, self.fps, frames.shape[2], frames.shape[1], threads=self.threads)
                for frame in frames:
                    writer.write_frame(frame)
            if writer is not None:
                if self._aborted:
                    writer.abort()
                else:
                    writer.close()
            elif not self._aborted:
                raise ValueError("a piece needs at least one frame")
        except BaseException as error:  # handed to close()
            self._error = error
            if writer is not None:
                writer.abort()


class PieceSink:
    """Frames of one piece as they are decoded (``RunContext.begin_piece``).

    Drops the first ``skip`` frames it is given and keeps at most ``limit``; the frames kept are
    handed to the background MP4 encoder at once. :meth:`finish` checkpoints them and announces the
    piece. Use as a context manager: leaving with an exception (cancel) stops the encoder and writes
    nothing.
    """

    def __init__(self, ctx: RunContext, piece: int, total: int, skip: int = 0, limit: int | None = None) -> None:
        self._ctx = ctx
        self.piece = piece
        self.total = total
        self._skip = skip
        self._room = limit
        self._frames: list[np.ndarray] = []
        self._encoder = ctx.pieces.start_playable(piece) if ctx.pieces is not None else None
        self._open = True

    def add(self, frames: np.ndarray | torch.Tensor) -> None:
        """Append uint8 frames ``[n, H, W, 3]``."""
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().cpu().numpy()
        if self._skip:
            dropped = min(self._skip, len(frames))
            frames, self._skip = frames[dropped:], self._skip - dropped
        if self._room is not None:
            frames, self._room = frames[: self._room], max(0, self._room - len(frames))
        if not len(frames):
            return
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if self._frames and frames.shape[1:] != self._frames[0].shape[1:]:
            raise ValueError(f"piece {self.piece}: frames {frames.shape[1:]} differ from {self._frames[0].shape[1:]}")
        self._frames.append(frames)
        if self._encoder is not None:
            self._encoder.put(frames)

    @property
    def frame_count(self) -> int:
        return sum(len(frames) for frames in self._frames)

    def finish(self, state: dict[str, torch.Tensor] | None = None) -> np.ndarray:
        """Checkpoint the piece (exact frames, ``state``, the playable MP4), announce it, return its frames."""
        self._open = False
        if not self._frames:
            raise ValueError(f"piece {self.piece} has no frames to checkpoint")
        frames = np.concatenate(self._frames, axis=0) if len(self._frames) != 1 else self._frames[0]
        self._frames = []
        store = self._ctx.pieces
        path = store.save(self.piece, frames, state, encoder=self._encoder) if store is not None else Path("")
        self._encoder = None
        self._ctx.emit(
            PieceFinished(piece=self.piece, total_pieces=self.total, path=str(path), num_frames=len(frames))
        )
        return frames

    def abort(self) -> None:
        self._open = False
        if self._encoder is not None:
            self._encoder.abort()
            self._encoder = None

    def __enter__(self) -> PieceSink:
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        if self._open or kind is not None:
            self.abort()


class RunContext:
    """What a running pipeline uses to talk to the outside: events, cancel, and finished pieces.

    Thread contract: lives on the thread that runs the pipeline; ``emit`` must be safe to call from
    that thread (the app's worker marshals events to the GUI thread). ``cancel`` may be set from any
    thread and is honoured at the next :meth:`check_cancel` (pipelines call it at least once per step).
    """

    def __init__(
        self,
        emit: Callable[[RenderEvent], None] | None = None,
        cancel: threading.Event | None = None,
        pieces: PieceStore | None = None,
        preview_every: int = 1,
    ) -> None:
        self._emit = emit or (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.pieces = pieces
        self.preview_every = max(0, preview_every)

    def emit(self, event: RenderEvent) -> None:
        self._emit(event)

    def check_cancel(self) -> None:
        """Raise :class:`RenderCancelled` once cancel is set."""
        if self.cancel.is_set():
            raise RenderCancelled("render cancelled")

    def status(self, text: str) -> None:
        self.emit(StatusMessage(text))

    def step(
        self,
        piece: int,
        total_pieces: int,
        step: int,
        total_steps: int,
        x0: torch.Tensor | None = None,
    ) -> None:
        """Report a finished denoising step (1-based ``step``) and, if given, a preview of ``x0``;
        then honour cancel."""
        self.emit(Progress(step=step, total_steps=total_steps, piece=piece, total_pieces=total_pieces))
        if x0 is not None and self.preview_every and step % self.preview_every == 0:
            rgb = latent_preview_rgb(x0)
            self.emit(Preview(piece=piece, step=step, width=rgb.shape[1], height=rgb.shape[0], rgb=rgb.tobytes()))
        self.check_cancel()

    def begin_piece(self, piece: int, total_pieces: int, *, skip: int = 0, limit: int | None = None) -> PieceSink:
        """A sink for piece ``piece``'s frames as they are decoded: its playable MP4 is encoded while
        the rest decodes. ``skip`` drops that many leading frames, ``limit`` caps the count."""
        return PieceSink(self, piece, total_pieces, skip, limit)

    def piece_finished(
        self,
        piece: int,
        total_pieces: int,
        frames: np.ndarray | torch.Tensor,
        state: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Checkpoint a piece decoded all at once (uint8 ``[F, H, W, 3]``) and announce it: a
        :meth:`begin_piece` sink given every frame in one go."""
        with self.begin_piece(piece, total_pieces) as sink:
            sink.add(frames)
            sink.finish(state)

    def finished_piece(self, piece: int) -> FinishedPiece | None:
        """The checkpoint of an already finished piece (resume), or None."""
        return self.pieces.load(piece) if self.pieces else None


class TextEmbeddingCache:
    """The latest text-encoder outputs by prompt, so re-rendering a shot (another seed, the preview and
    then the final, a retry) skips the text encoder: a UMT5-XXL pass, seconds when it runs on the CPU
    in a low-VRAM plan, and no moving of the encoder onto the GPU.

    Entries live on the CPU (a 512 x 4096 bf16 embedding is 4 MB) and come back as copies on the asked
    device, so a caller may change what it gets. One cache per loaded pipeline: the key is the prompt
    text(s) only, the encoder is the pipeline's.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._entries: dict[Any, torch.Tensor] = {}
        self.hits = 0

    def get(self, key: Any, device: torch.device | str) -> torch.Tensor | None:
        value = self._entries.pop(key, None)
        if value is None:
            return None
        self._entries[key] = value  # most recent last
        self.hits += 1
        return value.to(device, copy=True)

    def put(self, key: Any, value: torch.Tensor) -> None:
        self._entries.pop(key, None)
        self._entries[key] = value.detach().to("cpu", copy=True)
        while len(self._entries) > self.size:
            self._entries.pop(next(iter(self._entries)))


class NoiseSource:
    """A render's random draws, in the official order, from one seeded CPU generator (the official
    global-RNG stream on the CPU). Used by R2V and the avatar; the extension re-seeds per piece and
    has its own callable (``models.extension.pipeline.seeded_noise``).

    ``stored`` replaces the draws by given tensors (golden cases made with another RNG); with ``keep``
    every draw is recorded in ``drawn``.
    """

    def __init__(self, seed: int, stored: Sequence[torch.Tensor] | None = None, keep: bool = True) -> None:
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.stored = list(stored) if stored is not None else None
        self.keep = keep
        self.count = 0
        self.drawn: list[torch.Tensor] = []

    def draw(self, shape: Sequence[int]) -> torch.Tensor:
        index = self.count
        if self.stored is not None:
            if index >= len(self.stored):
                raise ValueError(f"stored noise has {len(self.stored)} draws; draw {index} was requested")
            # A copy, so in-place updates of the latents never reach the caller's tensors.
            value = self.stored[index].to(torch.float32).clone()
            if tuple(value.shape) != tuple(shape):
                raise ValueError(
                    f"stored noise draw {index} has shape {tuple(value.shape)}, need {tuple(shape)}"
                )
        else:
            value = torch.randn(tuple(shape), generator=self.generator, dtype=torch.float32)
        self.count += 1
        if self.keep:
            self.drawn.append(value)
        return value


class NullPlacement:
    """No-op placement (everything stays where it was loaded); :mod:`models.memory` supplies real ones."""

    def activate(self, module: torch.nn.Module) -> None:
        pass

    def park(self, module: torch.nn.Module) -> None:
        pass


def install_block_cancel_checks(
    transformer: torch.nn.Module, ctx: RunContext
) -> list[torch.utils.hooks.RemovableHandle]:
    """Poll cancel before every transformer block, so a cancel lands within a (long) step.

    Returns the hook handles (remove them in a ``finally``); none for a model without ``blocks``.
    """
    blocks = getattr(transformer, "blocks", None)
    if blocks is None:
        return []
    return [block.register_forward_pre_hook(lambda module, args: ctx.check_cancel()) for block in blocks]
