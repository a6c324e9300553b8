"""``--model tiny``: complete tiny random-weight checkpoints in each official on-disk layout.

The CLI, the app and the tests use them to run the real pipelines end to end on a CPU in seconds.
They are written once per machine into a cache folder (``$SKYREELS_TINY_DIR`` or
``~/.cache/skyreels-studio/tiny``) by each model family's own writer, and loaded through the same
loaders as the real weights. Their bucket tables are small (the official keys with sizes of a few
latent tokens) because the real 480P-720P sizes would take minutes per step on a CPU.

Imports torch lazily through the writers. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from core.generation import Task

TINY = "tiny"
# Bump when a writer changes what it writes, so stale caches are rewritten.
TINY_VERSION = "1"

FAMILY_OF_TASK = {
    Task.REFERENCE_TO_VIDEO: "reference_to_video",
    Task.SINGLE_SHOT_EXTENSION: "extension",
    Task.SHOT_SWITCHING_EXTENSION: "extension",
    Task.TALKING_AVATAR: "talking_avatar",
}


def _writer(family: str) -> Callable[[Path], Path]:
    if family == "reference_to_video":
        from models.r2v.tiny import write_tiny_checkpoint

        return write_tiny_checkpoint
    if family == "extension":
        from models.extension.tiny import write_tiny_extension_checkpoint

        return write_tiny_extension_checkpoint
    from models.avatar.tiny import write_tiny_avatar_checkpoint

    return write_tiny_avatar_checkpoint


def tiny_root() -> Path:
    configured = os.environ.get("SKYREELS_TINY_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "skyreels-studio" / "tiny"


def tiny_checkpoint(task: Task | str, root: str | os.PathLike[str] | None = None) -> Path:
    """The tiny checkpoint folder for ``task``, written on first use (atomically: a half-written
    folder is never picked up)."""
    family = FAMILY_OF_TASK[Task(task)]
    base = Path(root) if root is not None else tiny_root()
    folder = base / f"{family}-v{TINY_VERSION}"
    if folder.is_dir():
        return folder
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=base))
    try:
        _writer(family)(staging)
        try:
            os.rename(staging, folder)
        except OSError:
            if not folder.is_dir():  # another process may have won the race; otherwise re-raise
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def tiny_bucket_tables(task: Task | str) -> Mapping[str, Mapping[str, Any]]:
    """Small bucket tables (official keys) that go with the tiny checkpoint of ``task``."""
    family = FAMILY_OF_TASK[Task(task)]
    if family == "reference_to_video":
        from models.r2v.tiny import TINY_BUCKET_TABLES

        return TINY_BUCKET_TABLES
    if family == "extension":
        from models.extension.tiny import TINY_BUCKETS

        return {resolution: TINY_BUCKETS for resolution in ("480P", "540P", "720P")}
    from models.avatar.tiny import TINY_BUCKETS as AVATAR_TINY_BUCKETS

    return AVATAR_TINY_BUCKETS
