"""``python main.py generate``: one generation task from the command line.

Mirrors the official ``generate_video.py`` flags (``--task_type``/``--task``, ``--ref_imgs``,
``--input_video``, ``--input_image``, ``--input_audio``, ``--prompt``, ``--duration``, ``--resolution``,
``--seed``, ``--offload``, ``--low_vram``, ``--model_id``) and adds ``--model PATH|REPO_ID|tiny``,
``--device``, ``--transition``, ``--aspect``, ``--quality``, ``--steps`` and ``--output``. Writes the MP4
(24 fps; talking avatar 25 fps with its audio) and shows a progress bar on stderr.

Imports torch through :mod:`models.backend`. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from core.generation import (
    DiskFull,
    ModelsMissing,
    OutOfMemory,
    PieceFinished,
    Progress,
    Quality,
    RenderCancelled,
    RenderEvent,
    RenderRequest,
    RenderResult,
    RequestInvalid,
    StatusMessage,
    Task,
    Transition,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", "--task_type", dest="task", required=True, choices=[t.value for t in Task])
    parser.add_argument("--prompt", default="", help="what happens in the video")
    parser.add_argument("--ref_imgs", default="", help="R2V: 1-4 reference images, comma-separated")
    parser.add_argument("--input_video", help="extension tasks: the clip to continue")
    parser.add_argument("--input_image", help="talking avatar: the portrait")
    parser.add_argument("--input_audio", help="talking avatar: the driving audio (up to 200 s)")
    parser.add_argument("--audio_start", type=float, help="talking avatar: region start in seconds")
    parser.add_argument("--audio_end", type=float, help="talking avatar: region end in seconds")
    parser.add_argument("--duration", type=float, default=5, help="seconds (meaning depends on the task)")
    parser.add_argument("--resolution", default="720P", choices=["480P", "540P", "720P"])
    parser.add_argument("--aspect", choices=["1:1", "3:4", "4:3", "16:9", "9:16"], help="R2V aspect ratio")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, help="denoising steps (default: the task's official value)")
    parser.add_argument("--quality", default="final", choices=[q.value for q in Quality])
    parser.add_argument("--transition", choices=[t.value for t in Transition], help="shot switching: cut type")
    parser.add_argument("--model", "--model_id", dest="model", default="",
                        help="model folder, Hugging Face repo id, or 'tiny' (random tiny weights, CPU demo)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--offload", action="store_true", help="park idle models on the CPU between phases")
    parser.add_argument("--low_vram", action="store_true", help="fp8 weights + block offload (24 GB GPUs)")
    parser.add_argument("--use_usp", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", help="output MP4 (default: result/<task>/<seed>_<time>.mp4)")
    parser.add_argument("--work_dir", help="folder for resumable pieces (default: next to the output)")
    return parser


def request_from_args(args: argparse.Namespace) -> RenderRequest:
    task = Task(args.task)
    output = Path(args.output) if args.output else (
        Path("result") / task.value / f"{args.seed}_{time.strftime('%Y-%m-%d_%H-%M-%S')}.mp4"
    )
    output = output.resolve()
    work_dir = Path(args.work_dir).resolve() if args.work_dir else output.parent / f".{output.stem}.work"
    refs = tuple(str(Path(p.strip()).resolve()) for p in args.ref_imgs.split(",") if p.strip())

    def absolute(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path else None

    return RenderRequest(
        task=task,
        prompt=args.prompt,
        output_path=str(output),
        work_dir=str(work_dir),
        reference_images=refs,
        input_video=absolute(args.input_video),
        input_image=absolute(args.input_image),
        input_audio=absolute(args.input_audio),
        audio_start_s=args.audio_start,
        audio_end_s=args.audio_end,
        duration_s=args.duration,
        resolution=args.resolution,
        aspect=args.aspect,
        seed=args.seed,
        steps=args.steps,
        transition=Transition(args.transition) if args.transition else None,
        quality=Quality(args.quality),
        model=args.model,
        device=args.device,
        offload=args.offload or args.low_vram,
        low_vram=args.low_vram,
    )


class ProgressBar:
    """A one-line text progress bar on stderr (no dependency)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr  # looked up now, not at import
        self.start = time.monotonic()

    def __call__(self, event: RenderEvent) -> None:
        if isinstance(event, Progress):
            done = (event.piece + event.step / max(event.total_steps, 1)) / max(event.total_pieces, 1)
            filled = int(done * 30)
            elapsed = time.monotonic() - self.start
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:6.1%}  piece {event.piece + 1}/{event.total_pieces}"
                f"  step {event.step}/{event.total_steps}  {elapsed:6.1f}s"
            )
            self.stream.flush()
        elif isinstance(event, PieceFinished):
            self.stream.write(f"\n  piece {event.piece + 1}/{event.total_pieces} done ({event.num_frames} frames)\n")
        elif isinstance(event, StatusMessage):
            self.stream.write(f"\n{event.text}\n")


# The exit code of each error that carries its own message for the user.
EXIT_CODES: dict[type[Exception], int] = {RequestInvalid: 2, ModelsMissing: 3, OutOfMemory: 4, DiskFull: 5}


def run_for_cli(
    render: Callable[[], RenderResult], request: RenderRequest, cancel: threading.Event
) -> RenderResult | int:
    """Run ``render`` for a command line: the result, or the exit code after a message on stderr
    (2 bad input, 3 models missing, 4 out of GPU memory, 5 disk full, 130 cancelled; finished pieces are
    kept)."""
    try:
        return render()
    except (RequestInvalid, ModelsMissing, OutOfMemory, DiskFull) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CODES[type(error)]
    except (KeyboardInterrupt, RenderCancelled):
        cancel.set()
        print(f"\ncancelled; finished pieces are kept in {request.work_dir} and a rerun resumes from them",
              file=sys.stderr)
        return 130


def generate_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.use_usp:
        print("--use_usp (multi-GPU sequence parallelism) is not supported by this build; "
              "run on one GPU (see README).", file=sys.stderr)
        return 2
    request = request_from_args(args)
    from models.backend import LocalBackend

    backend = LocalBackend()
    cancel = threading.Event()

    def render() -> RenderResult:
        backend.validate(request)
        return backend.render(request, ProgressBar(), cancel)

    result = run_for_cli(render, request, cancel)
    if isinstance(result, int):
        return result
    print(f"\nwrote {result.output_path}: {result.num_frames} frames, {result.width}x{result.height}, "
          f"{result.fps} fps{', with audio' if result.has_audio else ''} in {result.seconds:.1f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(generate_main(sys.argv[1:]))
