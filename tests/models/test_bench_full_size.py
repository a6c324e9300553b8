"""bench/bench_full_size.py stays runnable: a CPU smoke run of every model and policy (narrow, one layer),
and the full-size inputs it would time on a GPU are those of one real forward of each pipeline."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_full_size.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_full_size", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_full_size"] = module  # dataclasses resolve its annotations there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The smoke models are tiny: one thread runs them faster than a pool that spin-waits for cores
    other test processes hold (seconds instead of tens of seconds on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model", ["r2v", "extension", "avatar"])
def test_every_policy_runs_on_the_cpu(bench: ModuleType, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--model", model, "--device", "cpu", "--layers", "1", "--size", "64x64", "--frames", "5",
                "--steps", "1", "--dim", "256"])
    out = capsys.readouterr().out
    expected = {
        "r2v": ["gpu_resident", "fp8_storage", "block_streaming", "chunked_ffn", "fp8+streaming", "planned_24GiB"],
        "extension": ["gpu_resident", "block_offload", "low_vram", "ffn_chunked"],
        "avatar": ["gpu_resident", "fp8_storage", "block_streaming", "chunked_ffn", "fp8+streaming",
                   "planned_24GiB"],
    }[model]
    timed = [line.split()[0] for line in out.splitlines() if "s/step" in line]
    assert timed == expected, out
    assert "out of memory" not in out
    assert "estimated" in out


def test_a_subset_of_policies_and_unknown_names(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["--model", "extension", "--device", "cpu", "--layers", "1", "--size", "32x32", "--frames", "1",
                "--steps", "1", "--dim", "128", "--policies", "low_vram"])
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if "s/step" in line] == ["low_vram"]
    assert "keeps ≈" in out  # the host RAM the offloaded blocks take is announced before they move
    with pytest.raises(SystemExit, match="planned_24GiB"):
        bench.main(["--model", "extension", "--device", "cpu", "--policies", "planned_24GiB"])


def test_full_size_inputs_are_one_real_forward(bench: ModuleType) -> None:
    from models.avatar.pipeline import AvatarInputs, AvatarRequest, job_size
    from models.memory import JobSize

    def workload(*argv: str) -> object:
        args = bench.parse_args(["--device", "cpu", *argv])
        return bench.WORKLOADS[args.model](args, "cpu", torch.bfloat16)

    r2v = workload("--model", "r2v", "--frames", "121")
    assert r2v.tokens == 126_000  # (31 + 4 reference slots) x 45 x 80
    assert r2v.job == JobSize.r2v(720, 1280, 121)  # the 14B defaults, counted from the model

    extension = workload("--model", "extension")
    assert extension.tokens == 144_000  # the 5 s piece: 7 condition + 33 noisy latents at 720P
    assert "7 condition + 33 noisy" in extension.title
    assert extension.job.transformer_params == 14_288_491_584
    assert list(extension.policies) == ["gpu_resident", "block_offload", "low_vram", "ffn_chunked"]

    avatar = workload("--model", "avatar")
    assert avatar.tokens == 75_600  # one 81-frame window: 21 latent frames at 720x1280
    request = AvatarRequest(portrait="p.png", audio="a.wav", prompt="")
    pipeline_job = job_size(request, AvatarInputs(Image.new("RGB", (1280, 720)), np.zeros(0, np.float32)))
    assert avatar.job == pipeline_job  # what the avatar pipeline plans with
    with pytest.raises(SystemExit, match="480P and 720P"):
        workload("--model", "avatar", "--resolution", "540P")


def test_buffers_left_empty_by_to_empty_are_refused(bench: ModuleType) -> None:
    class WithTable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 2)
            self.register_buffer("table", torch.arange(4.0))

    with torch.device("meta"):
        meta = WithTable()
    with pytest.raises(RuntimeError, match="table"):
        bench.random_weights(meta, torch.float32, "cpu")

    def rebuild(model: nn.Module) -> None:
        model.table = torch.arange(4.0)

    with torch.device("meta"):
        meta = WithTable()
    model = bench.random_weights(meta, torch.float32, "cpu", rebuild)
    assert torch.equal(model.table, torch.arange(4.0))
