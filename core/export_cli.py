"""``python main.py export PROJECT OUT.mp4``: render a project's timeline without opening a window.

Owns the command line of the export subcommand: argument parsing, a progress line on stderr,
Ctrl+C as cancel (the partial file is removed), and exit codes:

- 0 done, 1 media problem (missing/corrupt source, cannot write), 2 bad project file or
  arguments, 130 cancelled.

Must not import: PySide6, torch, diffusers, ``app``, ``models``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from core.media.errors import MediaError, RenderCancelled

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py export",
        description="Render a project's timeline to an H.264/AAC MP4 file.",
    )
    parser.add_argument("project", type=Path, help="project file (.json)")
    parser.add_argument("output", type=Path, help="video file to write (.mp4)")
    parser.add_argument("--start", type=int, default=None, help="first timeline frame (default 0)")
    parser.add_argument(
        "--end", type=int, default=None, help="timeline frame to stop before (default: the end)"
    )
    parser.add_argument("--crf", type=int, default=18, help="x264 quality, 0 (lossless) to 51 (default 18)")
    parser.add_argument(
        "--preset",
        default="veryfast",
        choices=[
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
        ],
        help="x264 speed preset: slower presets make smaller files (default veryfast)",
    )
    parser.add_argument("--no-audio", action="store_true", help="leave the sound out")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="render black/silence for missing media instead of stopping",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    return parser


class _ProgressLine:
    """Rewrites one stderr line at most ten times a second."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (done < total and now - self._last < 0.1):
            return
        self._last = now
        rate = done / max(now - self.started, 1e-6)
        self.stream.write(f"\rexporting: frame {done}/{total} ({100 * done // total}%), {rate:.1f} fps")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the export subcommand; returns the process exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on errors
        return int(exc.code or 0)
    from core import persistence

    err = sys.stderr
    try:
        loaded = persistence.load_project(args.project)
    except persistence.ProjectFileError as exc:
        err.write(f"error: {exc}\n")
        return 2
    if args.start is not None and args.start < 0:
        err.write("error: --start must be 0 or more\n")
        return 2
    if loaded.missing_assets and not args.allow_missing:
        names = "\n  ".join(f"{a.name or Path(a.path).name}: {a.path}" for a in loaded.missing_assets)
        err.write(f"error: media missing (relink in the editor, or pass --allow-missing):\n  {names}\n")
        return 1

    from core.media.timeline_render import export_timeline

    progress = _ProgressLine(err, enabled=not args.quiet)
    try:
        out = export_timeline(
            loaded.project,
            args.output,
            progress=progress,
            start=args.start,
            end=args.end,
            crf=args.crf,
            preset=args.preset,
            audio=not args.no_audio,
            missing_ok=args.allow_missing,
        )
    except (KeyboardInterrupt, RenderCancelled):
        err.write("\nexport cancelled; no file was written\n")
        return 130
    except MediaError as exc:
        err.write(f"\nerror: {exc}\n")
        return 1
    except ValueError as exc:
        err.write(f"\nerror: {exc}\n")
        return 2
    sys.stdout.write(f"{out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
