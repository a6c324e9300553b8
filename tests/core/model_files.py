"""Fake SkyReels-V3 model folders for the model store and download tests (no torch, no Qt).

The fake checkpoints are written byte by byte (safetensors header + data, zip-format ``.pth`` files,
JSON configs), exactly the structures the store checks.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import pytest

from core.generation import Task


def _payload(n: int, seed: int) -> bytes:
    period = bytes((i * 31 + seed * 7) % 251 for i in range(251))
    return (period * (n // 251 + 1))[:n]


def write_safetensors(path: Path, tensors: dict[str, int], seed: int = 0) -> None:
    """A valid safetensors file: tensor name -> number of float32 values."""
    header, offset = {}, 0
    for name, count in tensors.items():
        header[name] = {"dtype": "F32", "shape": [count], "data_offsets": [offset, offset + 4 * count]}
        offset += 4 * count
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + _payload(offset, seed))


def write_pth(path: Path, n: int, seed: int = 0) -> None:
    """A zip-format torch checkpoint look-alike (what ``torch.save`` writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/data/0", _payload(n, seed))


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_sharded(folder: Path, stem: str, shards: int, seed: int) -> None:
    weight_map = {}
    for i in range(1, shards + 1):
        name = f"{stem}-{i:05d}-of-{shards:05d}.safetensors"
        write_safetensors(folder / name, {f"blocks.{i}.weight": 600, f"blocks.{i}.bias": 40}, seed + i)
        weight_map |= {f"blocks.{i}.weight": name, f"blocks.{i}.bias": name}
    write_json(folder / f"{stem}.safetensors.index.json", {"metadata": {}, "weight_map": weight_map})


def write_tokenizer(folder: Path) -> None:
    write_json(folder / "tokenizer_config.json", {"model_max_length": 512})
    write_json(folder / "tokenizer.json", {"version": "1.0", "model": {"type": "Unigram"}})
    write_json(folder / "special_tokens_map.json", {"eos_token": "</s>"})


def make_r2v(root: Path) -> Path:
    write_json(root / "model_index.json", {"_class_name": "WanPipeline"})
    write_json(root / "scheduler/scheduler_config.json", {"flow_shift": 5.0})
    write_json(root / "transformer/config.json", {"num_layers": 2})
    write_sharded(root / "transformer", "diffusion_pytorch_model", 2, seed=1)
    write_json(root / "vae/config.json", {"z_dim": 16})
    write_safetensors(root / "vae/diffusion_pytorch_model.safetensors", {"decoder.weight": 500}, seed=2)
    write_json(root / "text_encoder/config.json", {"d_model": 8})
    write_safetensors(root / "text_encoder/model.safetensors", {"shared.weight": 300}, seed=3)
    write_tokenizer(root / "tokenizer")
    (root / "README.md").write_text("# model card\n")
    (root / "assets").mkdir()
    (root / "assets/teaser.png").write_bytes(b"\x89PNG not really")
    return root


def make_extension(root: Path) -> Path:
    for sub, seed in (("transformer", 10), ("shot_transformer", 20)):
        write_json(root / sub / "config.json", {"model_type": "t2v"})
        write_sharded(root / sub, "diffusion_pytorch_model", 2, seed)
    write_pth(root / "Wan2.1_VAE.pth", 3000, seed=5)  # shared with the avatar repo: same bytes
    write_pth(root / "models_t5_umt5-xxl-enc-bf16.pth", 4000, seed=6)
    write_tokenizer(root / "google/umt5-xxl")
    return root


def make_avatar(root: Path) -> Path:
    write_json(root / "config.json", {"model_type": "i2v", "in_dim": 36})
    write_sharded(root, "diffusion_pytorch_model", 2, seed=30)
    write_pth(root / "Wan2.1_VAE.pth", 3000, seed=5)
    write_pth(root / "models_t5_umt5-xxl-enc-bf16.pth", 4000, seed=6)
    write_tokenizer(root / "google/umt5-xxl")
    write_pth(root / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", 2000, seed=7)
    write_tokenizer(root / "xlm-roberta-large")
    write_json(root / "chinese-wav2vec2-base/config.json", {"num_hidden_layers": 12})
    write_json(root / "chinese-wav2vec2-base/preprocessor_config.json", {"sampling_rate": 16000})
    write_pth(root / "chinese-wav2vec2-base/pytorch_model.bin", 1000, seed=8)
    return root


MAKERS = {
    Task.REFERENCE_TO_VIDEO: make_r2v,
    Task.SINGLE_SHOT_EXTENSION: make_extension,
    Task.SHOT_SWITCHING_EXTENSION: make_extension,
    Task.TALKING_AVATAR: make_avatar,
}


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real hub cache or the user's models.json."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("SKYREELS_MODELS_CONFIG", str(tmp_path / "config" / "models.json"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def make_hub_cache(cache: Path, repo_id: str, maker, commit: str = "a" * 40) -> Path:
    """Lay a model out like the hub cache: blobs named by hash, snapshot symlinks, refs/main."""
    import hashlib

    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    staging = maker(cache.parent / f"staging-{repo_id.split('/')[-1]}")
    snapshot = repo_dir / "snapshots" / commit
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        blob = repo_dir / "blobs" / hashlib.sha256(src.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(src.read_bytes())
        link = snapshot / src.relative_to(staging)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def run_cli(*argv: str) -> tuple[int, str]:
    import io

    from core import model_store_cli

    out = io.StringIO()
    code = model_store_cli.main(list(argv), out=out)
    return code, out.getvalue()
