"""``python main.py models list|download|verify|locate``: the model store from a terminal.

Owns: argument parsing, the status table, the download progress bar. All logic lives in
:mod:`core.model_store` and :mod:`core.model_download`. Must not import: PySide6, torch, ``app``,
``models``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from core import model_download as md
from core import model_store as ms
from core.generation import ModelsMissing, Task

TASK_NAMES = [t.value for t in Task]


def _where(location: ms.ModelLocation) -> str:
    if location.path is None:
        return "-"
    return f"{location.path} ({location.origin})"


def _size(location: ms.ModelLocation) -> str:
    report = location.report
    approx = location.repo.approx_bytes(location.task)
    if report is None or report.status is ms.Status.MISSING:
        return f"~{ms.format_bytes(approx)} to get"
    if report.status is ms.Status.READY:
        return ms.format_bytes(report.present_bytes)
    return f"{ms.format_bytes(report.present_bytes)} (+~{ms.format_bytes(report.approx_missing_bytes)})"


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    locations = ms.task_overview(args.config)
    if args.json:
        data = [
            {
                "task": loc.task.value,
                "repo": loc.repo.repo_id,
                "aliases": list(loc.repo.aliases),
                "status": loc.status.value,
                "path": str(loc.path) if loc.path else None,
                "origin": loc.origin,
                "present_bytes": loc.report.present_bytes if loc.report else 0,
                "approx_bytes": loc.repo.approx_bytes(loc.task),
                "missing": list(loc.report.missing) if loc.report else [],
                "damaged": [p.path for p in loc.report.corrupt] if loc.report else [],
            }
            for loc in locations
        ]
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    rows = [["TASK", "REPO", "STATUS", "SIZE", "WHERE"]]
    rows += [
        [loc.task.value, loc.repo.repo_id, loc.status.value, _size(loc), _where(loc)] for loc in locations
    ]
    table(rows, out)
    out.write(
        f"\nHugging Face cache: {ms.hub_cache_dir()}   your model folders: {ms.default_config_path()}\n"
    )
    out.write(
        "The extension and avatar repositories share the Wan VAE and the UMT5-XXL text encoder (~12 GB); "
        "downloads store them once (hard links).\n"
    )
    for loc in locations:
        if loc.status is not ms.Status.READY:
            extra = ""
            if loc.report and loc.report.status is ms.Status.PARTIAL:
                problems = loc.report.lines()
                extra = f"  ({len(problems)} problem(s); details: python main.py models verify --task {loc.task.value})"
            out.write(f"get {loc.task.value}: {ms.download_command(loc.task)}{extra}\n")
    return 0


class ProgressBar:
    """A one-line progress bar on a terminal (a line per file otherwise), at most ~5 updates/s."""

    def __init__(self, out: TextIO, width: int = 28) -> None:
        self.out = out
        self.width = width
        self.tty = out.isatty()
        self.started = time.monotonic()
        self.last = 0.0
        self.last_file = ""
        self.not_transferred = 0  # bytes skipped or linked: they must not inflate the rate
        self._counted: set[str] = set()

    def __call__(self, p: md.DownloadProgress) -> None:
        now = time.monotonic()
        if p.phase in ("skip", "link") and p.file not in self._counted:
            self._counted.add(p.file)
            self.not_transferred += p.file_total or 0
        if not self.tty:
            if p.phase in ("done", "link", "skip") and p.file != self.last_file:
                self.last_file = p.file
                verb = {"done": "ok", "link": "linked", "skip": "already here"}[p.phase]
                self.out.write(f"[{p.file_index + 1}/{p.file_count}] {p.file}: {verb}\n")
            return
        if p.phase != "done" and now - self.last < 0.2:
            return
        self.last = now
        frac = p.done_bytes / p.total_bytes if p.total_bytes else 1.0
        filled = int(frac * self.width)
        rate = max(0, p.done_bytes - self.not_transferred) / max(now - self.started, 1e-3)
        left = (p.total_bytes - p.done_bytes) / rate if rate > 0 else 0
        eta = (
            f" ETA {int(left // 3600)}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}" if rate > 0 else ""
        )
        line = (
            f"\r[{'#' * filled}{'-' * (self.width - filled)}] {frac * 100:5.1f}% "
            f"{ms.format_bytes(p.done_bytes)}/{ms.format_bytes(p.total_bytes)} "
            f"{ms.format_bytes(rate)}/s{eta}  {p.phase} {p.file_index + 1}/{p.file_count} {Path(p.file).name[-40:]}"
        )
        self.out.write(line.ljust(120)[:160])
        self.out.flush()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")


def cmd_download(args: argparse.Namespace, out: TextIO) -> int:
    if args.task == "all":
        if args.local_dir or args.from_folder or args.repo:
            out.write(
                "--task all downloads each model to the Hugging Face cache; name one task to use "
                "--local-dir, --from or --repo.\n"
            )
            return 2
        codes = []
        for task in Task:
            args.task = task.value
            codes.append(cmd_download(args, out))
            if codes[-1] == 130:
                return 130
        return max(codes)
    task = Task(args.task)
    source: md.Source | None = md.LocalFolderSource(args.from_folder) if args.from_folder else None
    target = args.local_dir
    if source is not None and target is None:
        out.write(
            "--from copies into a folder: add --local-dir FOLDER (for example ~/models/SkyReels-V3-A2V-19B).\n"
        )
        return 2
    repo = ms.repo_for_task(task)
    where = target or f"the Hugging Face cache ({ms.hub_cache_dir()})"
    out.write(
        f"{task.value}: {args.repo or repo.repo_id} -> {where}, about "
        f"{ms.format_bytes(repo.approx_bytes(task))} in all (files already here are kept)\n"
    )
    bar = ProgressBar(sys.stderr if args.quiet_bar else out)
    cancel = threading.Event()
    try:
        result = md.download(
            task,
            args.repo,
            target,
            progress_cb=bar,
            cancel_event=cancel,
            token=args.token,
            source=source,
            revision=args.revision,
            verify=not args.no_verify,
            config_path=args.config,
        )
    except KeyboardInterrupt:
        bar.finish()
        out.write("Interrupted. Run the same command again to resume where it stopped.\n")
        return 130
    except md.DownloadCancelled as exc:
        bar.finish()
        out.write(f"Cancelled ({exc}). Run the same command again to resume.\n")
        return 130
    except md.DownloadError as exc:
        bar.finish()
        out.write(f"Download failed: {exc}\n")
        return 1
    bar.finish()
    out.write(
        f"{result.report.status.value}: {result.path}  (fetched {ms.format_bytes(result.fetched_bytes)}, "
        f"linked {len(result.linked_files)} shared file(s), kept {len(result.skipped_files)})\n"
    )
    for line in result.report.lines():
        out.write(f"  {line}\n")
    return 0 if result.report.ready else 1


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    tasks = [Task(args.task)] if args.task else list(Task)
    worst = 0
    for task in tasks:
        location = ms.locate(task, args.path, config_path=args.config)
        if location.path is None:
            out.write(f"{task.value}: missing. {ms.download_command(task)}\n")
            worst = 1
            continue
        report = ms.check_folder(task, location.path, deep=not args.quick)
        out.write(f"{task.value}: {report.status.value}  {location.path}\n")
        for line in report.lines():
            out.write(f"  {line}\n")
        if not report.ready:
            out.write(f"  fix: {ms.download_command(task)} (fetches only what is missing or damaged)\n")
            worst = 1
    return worst


def cmd_locate(args: argparse.Namespace, out: TextIO) -> int:
    config = ms.StoreConfig.load(args.config)
    if args.forget:
        out.write(("Forgot " if config.forget(args.forget) else "Was not remembered: ") + args.forget + "\n")
        return 0
    if args.add:
        folder = Path(args.add).expanduser()
        if not folder.is_dir():
            out.write(f"Cannot add {folder}: not a folder.\n")
            return 2
        config.remember(folder)
        out.write(f"Added {folder.resolve()} to your model folders ({config.path}):\n")
        for task in Task:
            loc = ms.locate(task, config_path=args.config)
            out.write(f"  {task.value}: {loc.status.value}{f'  {loc.path}' if loc.path else ''}\n")
        return 0
    task = Task(args.task)
    location = ms.locate(task, args.spec, config_path=args.config)
    if location.is_tiny:
        out.write("tiny: random tiny models built in memory by models/tiny.py (no files)\n")
        return 0
    if args.remember and args.spec:
        folder = Path(args.spec).expanduser()
        if not folder.is_dir():
            out.write(f"Cannot remember {folder}: not a folder.\n")
            return 2
        config.remember(folder)
        out.write(f"Remembered {folder.resolve()} in {config.path}\n")
    if location.status is ms.Status.READY and location.path is not None:
        out.write(f"{location.path}\n")
        return 0
    out.write(ms.missing_message(location) + "\n")
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py models", description="List, download, verify and locate the SkyReels-V3 weights."
    )
    parser.add_argument("--config", help="models.json with your model folders (default: per-user config)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="status of every task's model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("download", help="download (or resume) the files a task needs")
    p.add_argument("--task", required=True, choices=[*TASK_NAMES, "all"])
    p.add_argument("--repo", help="repo id (README or official-code id; default: the README id)")
    p.add_argument("--local-dir", help="download into this folder instead of the Hugging Face cache")
    p.add_argument(
        "--from", dest="from_folder", help="copy from a local folder (USB disk, share) instead of the hub"
    )
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument(
        "--token", help="Hugging Face token for gated repos (default: HF_TOKEN or your saved login)"
    )
    p.add_argument("--no-verify", action="store_true", help="skip hashing what arrived")
    p.add_argument("--quiet-bar", action="store_true", help="draw the progress bar on stderr")
    p = sub.add_parser("verify", help="check files (hashes them against the download record)")
    p.add_argument("--task", choices=TASK_NAMES)
    p.add_argument("path", nargs="?", help="folder or repo id (default: where the model is found)")
    p.add_argument("--quick", action="store_true", help="structure and sizes only, no hashing")
    p = sub.add_parser("locate", help="print the folder a task would load, or what is missing")
    p.add_argument("--task", choices=TASK_NAMES, default=Task.REFERENCE_TO_VIDEO.value)
    p.add_argument("spec", nargs="?", help="folder, repo id or 'tiny' (default: search everywhere)")
    p.add_argument("--remember", action="store_true", help="add the folder to your model folders")
    p.add_argument(
        "--add", metavar="FOLDER", help="add a folder (or a folder of model folders) for every task"
    )
    p.add_argument("--forget", metavar="FOLDER", help="remove a folder from your model folders")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``python main.py models``; returns the exit code."""
    out = out or sys.stdout
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    commands = {"list": cmd_list, "download": cmd_download, "verify": cmd_verify, "locate": cmd_locate}
    try:
        return commands[args.command](args, out)
    except ModelsMissing as exc:
        out.write(f"{exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
