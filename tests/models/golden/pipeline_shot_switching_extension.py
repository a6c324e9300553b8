"""Golden runner for the ``shot_switching_extension`` pipeline case (see
``pipeline_single_shot_extension.py`` for what is produced)."""

from __future__ import annotations

from pathlib import Path

import torch

from models.extension.pipeline import ExtensionMode
from tests.models.golden.pipeline_single_shot_extension import run_extension_case


def run(case_dir: Path, case: dict) -> dict[str, torch.Tensor]:
    return run_extension_case(Path(case_dir), case, ExtensionMode.SHOT_SWITCHING)
