"""Model store: registry, folder checks, discovery, downloads (offline: a local folder is the source).

No torch, no Qt: the fake checkpoints are written byte by byte (safetensors header + data, zip-format
``.pth`` files, JSON configs), exactly the structures the store checks.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest

from core import model_store as ms
from core.generation import ModelsMissing, Task

DiskUsage = namedtuple("DiskUsage", "total used free")


# ---------------------------------------------------------------------------------------------
# Fake checkpoints


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


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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


# ---------------------------------------------------------------------------------------------
# Registry


def test_both_official_id_families_resolve_to_the_same_repository():
    pairs = {
        "Skywork/SkyReels-V3-R2V-14B": "Skywork/SkyReels-V3-Reference2Video",
        "Skywork/SkyReels-V3-V2V-14B": "Skywork/SkyReels-V3-Video-Extension",
        "Skywork/SkyReels-V3-A2V-19B": "Skywork/SkyReels-V3-TalkingAvatar",
    }
    for readme_id, code_id in pairs.items():
        repo = ms.find_repo(readme_id)
        assert repo is not None
        assert ms.find_repo(code_id) is repo
        assert ms.find_repo(code_id.lower()) is repo
        assert ms.find_repo(code_id.split("/")[1]) is repo
        assert repo.repo_id == readme_id  # the public README id is preferred
    assert ms.find_repo("Skywork/SkyReels-V2-DF-14B") is None


def test_tasks_map_to_repositories_and_shared_components_are_declared():
    assert ms.repo_for_task(Task.REFERENCE_TO_VIDEO).key == "r2v"
    assert ms.repo_for_task("single_shot_extension") is ms.repo_for_task(Task.SHOT_SWITCHING_EXTENSION)
    assert ms.repo_for_task(Task.TALKING_AVATAR).key == "avatar"
    shared = ms.shared_components()
    assert shared["wan2.1-vae"] == ["Skywork/SkyReels-V3-V2V-14B", "Skywork/SkyReels-V3-A2V-19B"]
    assert set(shared) == {"wan2.1-vae", "wan-umt5-xxl", "umt5-xxl-tokenizer"}
    # sizes are approximate, but the 14B/19B transformers dominate: tens of GB per task
    assert 30 * ms.GB < ms.repo_for_task(Task.REFERENCE_TO_VIDEO).approx_bytes() < 60 * ms.GB
    ext = ms.repo_for_task(Task.SINGLE_SHOT_EXTENSION)
    assert ext.approx_bytes(Task.SINGLE_SHOT_EXTENSION) < ext.approx_bytes()


# ---------------------------------------------------------------------------------------------
# Folder checks


@pytest.mark.parametrize("task", list(Task))
def test_complete_folder_is_ready(tmp_path: Path, task: Task):
    report = ms.check_folder(task, MAKERS[task](tmp_path / "m"))
    assert report.status is ms.Status.READY, report.lines()
    assert report.missing == () and report.corrupt == ()
    assert report.present_bytes > 0


def test_missing_shard_is_reported_by_exact_name(tmp_path: Path):
    root = make_r2v(tmp_path / "r2v")
    (root / "transformer/diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    (root / "tokenizer/tokenizer.json").unlink()
    report = ms.check_folder(Task.REFERENCE_TO_VIDEO, root)
    assert report.status is ms.Status.PARTIAL
    assert report.missing == (
        "transformer/diffusion_pytorch_model-00002-of-00002.safetensors",
        "tokenizer/tokenizer.json or tokenizer/spiece.model",
    )


def test_extension_tasks_need_their_own_transformer(tmp_path: Path):
    root = make_extension(tmp_path / "ext")
    for p in sorted((root / "shot_transformer").iterdir()):
        p.unlink()
    assert ms.check_folder(Task.SINGLE_SHOT_EXTENSION, root).status is ms.Status.READY
    report = ms.check_folder(Task.SHOT_SWITCHING_EXTENSION, root)
    assert report.status is ms.Status.PARTIAL
    assert report.missing == (
        "shot_transformer/config.json",
        "shot_transformer/diffusion_pytorch_model.safetensors (or diffusion_pytorch_model.safetensors.index.json "
        "with all its shards)",
    )


def test_damaged_files_are_reported_with_the_reason(tmp_path: Path):
    root = make_avatar(tmp_path / "avatar")
    shard = root / "diffusion_pytorch_model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])  # an interrupted copy
    vae = root / "Wan2.1_VAE.pth"
    vae.write_bytes(vae.read_bytes()[:500])
    (root / "chinese-wav2vec2-base/config.json").write_text('{"num_hidden_layers": ')
    report = ms.check_folder(Task.TALKING_AVATAR, root)
    assert report.status is ms.Status.PARTIAL
    assert report.missing == ()
    damaged = {p.path: p.reason for p in report.corrupt}
    assert set(damaged) == {
        "diffusion_pytorch_model-00001-of-00002.safetensors",
        "Wan2.1_VAE.pth",
        "chinese-wav2vec2-base/config.json",
    }
    assert "truncated" in damaged["diffusion_pytorch_model-00001-of-00002.safetensors"]
    assert "truncated" in damaged["Wan2.1_VAE.pth"]
    assert any(line.startswith("damaged: Wan2.1_VAE.pth") for line in report.lines())


def test_optional_tokenizer_never_blocks_and_stray_shards_are_flagged(tmp_path: Path):
    root = make_avatar(tmp_path / "avatar")
    for p in (root / "xlm-roberta-large").iterdir():
        p.unlink()
    write_safetensors(root / "old_model.safetensors", {"x": 4})
    report = ms.check_folder(Task.TALKING_AVATAR, root)
    assert report.status is ms.Status.READY
    assert "xlm-roberta-large/tokenizer_config.json" in report.optional_missing
    assert report.unexpected == ("old_model.safetensors",)


def test_empty_or_absent_folder_is_missing(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    assert ms.check_folder(Task.TALKING_AVATAR, tmp_path / "empty").status is ms.Status.MISSING
    absent = ms.check_folder(Task.REFERENCE_TO_VIDEO, tmp_path / "nowhere")
    assert absent.status is ms.Status.MISSING
    assert "model_index.json" in absent.missing
    assert absent.approx_missing_bytes > 30 * ms.GB


# ---------------------------------------------------------------------------------------------
# Discovery


def test_hub_cache_is_found_under_the_code_id(tmp_path: Path):
    snapshot = make_hub_cache(tmp_path / "hub-cache", "Skywork/SkyReels-V3-Reference2Video", make_r2v)
    loc = ms.locate(Task.REFERENCE_TO_VIDEO)
    assert loc.origin == "hub-cache"
    assert loc.path == snapshot
    assert loc.status is ms.Status.READY
    # naming the README id finds the copy cached under the code id
    assert ms.locate(Task.REFERENCE_TO_VIDEO, "Skywork/SkyReels-V3-R2V-14B").path == snapshot
    assert ms.resolve_for_pipeline("reference_to_video") == snapshot


def test_hub_cache_blob_names_catch_silent_corruption(tmp_path: Path):
    snapshot = make_hub_cache(tmp_path / "hub-cache", "Skywork/SkyReels-V3-A2V-19B", make_avatar)
    blob = (snapshot / "Wan2.1_VAE.pth").resolve()
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF  # same size, intact zip directory: only the hash can tell
    blob.write_bytes(bytes(data))
    assert ms.check_folder(Task.TALKING_AVATAR, snapshot).status is ms.Status.READY
    deep = ms.check_folder(Task.TALKING_AVATAR, snapshot, deep=True)
    assert [p.path for p in deep.corrupt] == ["Wan2.1_VAE.pth"]
    assert "sha256" in deep.corrupt[0].reason


def test_remembered_and_extra_folders_are_searched(tmp_path: Path):
    make_avatar(tmp_path / "disk" / "SkyReels-V3-A2V-19B")
    config = ms.StoreConfig.load()
    assert config.remember(tmp_path / "disk")
    assert not config.remember(tmp_path / "disk")  # once is enough
    loc = ms.locate(Task.TALKING_AVATAR)
    assert loc.origin == "config"
    assert loc.path == tmp_path / "disk" / "SkyReels-V3-A2V-19B"
    assert ms.StoreConfig.load().folders == [str((tmp_path / "disk").resolve())]
    assert ms.StoreConfig.load().forget(tmp_path / "disk")
    assert ms.locate(Task.TALKING_AVATAR).path is None
    assert ms.locate(Task.TALKING_AVATAR, extra_dirs=[tmp_path / "disk"]).origin == "folder"


def test_ready_copy_wins_over_a_partial_one(tmp_path: Path):
    partial = make_extension(tmp_path / "a" / "SkyReels-V3-V2V-14B")
    (partial / "Wan2.1_VAE.pth").unlink()
    ready = make_extension(tmp_path / "b" / "SkyReels-V3-Video-Extension")
    loc = ms.locate(Task.SINGLE_SHOT_EXTENSION, extra_dirs=[tmp_path / "a", tmp_path / "b"])
    assert loc.path == ready
    assert {r.path for r in loc.looked_at} >= {partial, ready}


def test_models_missing_names_the_files_and_the_command(tmp_path: Path):
    root = make_extension(tmp_path / "ext")
    (root / "transformer/diffusion_pytorch_model-00001-of-00002.safetensors").unlink()
    with pytest.raises(ModelsMissing) as err:
        ms.resolve_for_pipeline(Task.SINGLE_SHOT_EXTENSION, str(root))
    text = str(err.value)
    assert "transformer/diffusion_pytorch_model-00001-of-00002.safetensors" in text
    assert "python main.py models download --task single_shot_extension" in text
    with pytest.raises(ModelsMissing, match="models download --task talking_avatar"):
        ms.resolve_for_pipeline(Task.TALKING_AVATAR)
    assert ms.resolve_for_pipeline(Task.SHOT_SWITCHING_EXTENSION, str(root)) == root


def test_tiny_is_left_to_the_pipelines():
    assert ms.is_tiny("tiny") and ms.is_tiny(" TINY ") and not ms.is_tiny(None)
    loc = ms.locate(Task.TALKING_AVATAR, "tiny")
    assert loc.is_tiny and loc.path is None and loc.status is ms.Status.READY
    with pytest.raises(ValueError, match=r"models/tiny\.py"):
        ms.resolve_for_pipeline(Task.TALKING_AVATAR, "tiny")


def test_damaged_config_file_does_not_break_discovery(tmp_path: Path):
    path = tmp_path / "config" / "models.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert ms.StoreConfig.load().folders == []
    assert ms.locate(Task.REFERENCE_TO_VIDEO).status is ms.Status.MISSING


# ---------------------------------------------------------------------------------------------
# Downloads (a local folder acts as the source)


def test_download_fetches_only_what_the_task_needs_and_verifies_it(tmp_path: Path):
    src = make_extension(tmp_path / "mirror")
    events: list[ms.DownloadProgress] = []
    result = ms.download(
        Task.SINGLE_SHOT_EXTENSION,
        target=tmp_path / "models" / "v2v",
        progress_cb=events.append,
        source=ms.LocalFolderSource(src),
    )
    assert result.report.status is ms.Status.READY
    assert not (result.path / "shot_transformer").exists()  # the other task's 14B transformer is skipped
    assert events[-1].phase == "done" and events[-1].done_bytes == events[-1].total_bytes
    totals = [e.done_bytes for e in events]
    assert totals == sorted(totals)
    manifest = ms.read_manifest(result.path)
    vae = manifest["files"]["Wan2.1_VAE.pth"]
    assert vae["size"] == (src / "Wan2.1_VAE.pth").stat().st_size and len(vae["sha256"]) == 64
    # the folder is remembered, so the pipelines find it without being told
    assert ms.locate(Task.SINGLE_SHOT_EXTENSION).path == result.path


def test_interrupted_download_resumes_where_it_stopped(tmp_path: Path):
    src = make_r2v(tmp_path / "mirror")
    target = tmp_path / "models" / "r2v"
    shard = "transformer/diffusion_pytorch_model-00001-of-00002.safetensors"
    cancel = threading.Event()

    def stop_half_way(p: ms.DownloadProgress) -> None:
        if p.file == shard and p.phase == "download" and p.file_done >= (p.file_total or 0) // 2:
            cancel.set()

    first = ms.LocalFolderSource(src, chunk_size=256)
    with pytest.raises(ms.DownloadCancelled):
        ms.download(
            Task.REFERENCE_TO_VIDEO,
            target=target,
            progress_cb=stop_half_way,
            cancel_event=cancel,
            source=first,
        )
    part = target / ms.PARTIAL_DIR / (shard + ".part")
    kept = part.stat().st_size
    assert 0 < kept < (src / shard).stat().st_size
    assert ms.check_folder(Task.REFERENCE_TO_VIDEO, target).status is ms.Status.PARTIAL

    second = ms.LocalFolderSource(src, chunk_size=256)
    result = ms.download(Task.REFERENCE_TO_VIDEO, target=target, source=second)
    assert result.report.status is ms.Status.READY
    wanted = ms.select_files(
        ms.repo_for_task(Task.REFERENCE_TO_VIDEO), Task.REFERENCE_TO_VIDEO, second.list_files("x", None).files
    )
    assert first.bytes_read + second.bytes_read == sum(f.size or 0 for f in wanted)  # nothing read twice
    assert set(result.skipped_files) >= {"model_index.json", "scheduler/scheduler_config.json"}
    assert (target / shard).read_bytes() == (src / shard).read_bytes()
    assert not part.exists()


def test_too_little_disk_space_is_refused_before_writing(tmp_path: Path):
    src = make_avatar(tmp_path / "mirror")
    target = tmp_path / "models" / "a2v"
    with pytest.raises(ms.NotEnoughDiskSpace) as err:
        ms.download(
            Task.TALKING_AVATAR,
            target=target,
            source=ms.LocalFolderSource(src),
            disk_usage=lambda _path: DiskUsage(10**9, 10**9, 500),
        )
    assert "--local-dir" in str(err.value) and "500 B" in str(err.value)
    assert not target.exists()


def test_damaged_arrival_is_removed_and_reported(tmp_path: Path):
    src = make_r2v(tmp_path / "mirror")
    shard = "transformer/diffusion_pytorch_model-00002-of-00002.safetensors"
    manifest = {"files": {shard: {"sha256": "0" * 64}}}  # the mirror promises another file
    write_json(src / ms.MANIFEST_NAME, manifest)
    target = tmp_path / "models" / "r2v"
    with pytest.raises(ms.DownloadError, match="arrived damaged"):
        ms.download(Task.REFERENCE_TO_VIDEO, target=target, source=ms.LocalFolderSource(src))
    assert not (target / shard).exists()


def test_shared_vae_and_text_encoder_are_stored_once(tmp_path: Path):
    models = tmp_path / "models"
    ms.download(
        Task.SINGLE_SHOT_EXTENSION,
        target=models / "SkyReels-V3-V2V-14B",
        source=ms.LocalFolderSource(make_extension(tmp_path / "mirror-ext")),
    )
    source = ms.LocalFolderSource(make_avatar(tmp_path / "mirror-avatar"))
    result = ms.download(Task.TALKING_AVATAR, target=models / "SkyReels-V3-A2V-19B", source=source)
    assert result.report.status is ms.Status.READY
    assert {"Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"} <= set(result.linked_files)
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"):
        a = (models / "SkyReels-V3-V2V-14B" / name).stat()
        b = (models / "SkyReels-V3-A2V-19B" / name).stat()
        assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)
    assert source.bytes_read < sum(f.size or 0 for f in source.list_files("x", None).files)


def test_download_refuses_another_tasks_repository(tmp_path: Path):
    with pytest.raises(ms.DownloadError, match="not the one 'talking_avatar' needs"):
        ms.download(
            Task.TALKING_AVATAR,
            "Skywork/SkyReels-V3-Reference2Video",
            target=tmp_path / "x",
            source=ms.LocalFolderSource(tmp_path),
        )


def test_source_without_the_needed_files_is_refused(tmp_path: Path):
    src = make_r2v(tmp_path / "mirror")
    with pytest.raises(ms.DownloadError, match="does not contain what 'talking_avatar' needs"):
        ms.download(Task.TALKING_AVATAR, target=tmp_path / "x", source=ms.LocalFolderSource(src))


def test_hub_source_offline_says_how_to_proceed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ms.DownloadError, match="--from FOLDER"):
        ms.download(Task.REFERENCE_TO_VIDEO, target=tmp_path / "x")


def test_hub_cache_location_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert ms.hub_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert ms.hub_cache_dir() == tmp_path / "elsewhere"


# ---------------------------------------------------------------------------------------------
# The command line (python main.py models ...)


def run_cli(*argv: str) -> tuple[int, str]:
    import io

    from core import model_store_cli

    out = io.StringIO()
    code = model_store_cli.main(list(argv), out=out)
    return code, out.getvalue()


def test_cli_list_shows_every_task_and_how_to_get_it():
    code, text = run_cli("list")
    assert code == 0
    for task in Task:
        assert f"get {task.value}: python main.py models download --task {task.value}" in text
    header, _rule, *rows = text.splitlines()[:6]
    assert header.split() == ["TASK", "REPO", "STATUS", "SIZE", "WHERE"]
    assert [r.split()[2] for r in rows] == ["missing"] * 4


def test_cli_download_from_a_folder_then_list_verify_and_locate(tmp_path: Path):
    src = make_avatar(tmp_path / "usb" / "SkyReels-V3-A2V-19B")
    target = tmp_path / "models" / "a2v"
    code, text = run_cli("download", "--task", "talking_avatar", "--from", str(src))
    assert code == 2 and "--local-dir" in text
    code, text = run_cli(
        "download", "--task", "talking_avatar", "--from", str(src), "--local-dir", str(target)
    )
    assert code == 0, text
    assert f"ready: {target}" in text
    code, text = run_cli("list", "--json")
    rows = {row["task"]: row for row in json.loads(text)}
    assert rows["talking_avatar"]["status"] == "ready" and rows["talking_avatar"]["path"] == str(target)
    assert run_cli("locate", "--task", "talking_avatar") == (0, f"{target}\n")

    clip = target / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
    data = bytearray(clip.read_bytes())
    data[60] ^= 0x55
    clip.write_bytes(bytes(data))
    code, text = run_cli("verify", "--task", "talking_avatar")
    assert code == 1
    assert "damaged: models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth (sha256" in text
    assert "fix: python main.py models download --task talking_avatar" in text


def test_cli_locate_remembers_a_folder(tmp_path: Path):
    root = make_r2v(tmp_path / "weights")
    code, text = run_cli("locate", "--task", "reference_to_video", str(root), "--remember")
    assert code == 0 and text.endswith(f"{root}\n")
    assert ms.locate(Task.REFERENCE_TO_VIDEO).path == root
    code, text = run_cli("locate", "--task", "reference_to_video", str(tmp_path / "nothing"))
    assert code == 1 and "python main.py models download --task reference_to_video" in text


# ---------------------------------------------------------------------------------------------
# The real hub code path (huggingface_hub's hf_hub_download) against a local fake of the hub API


class FakeHub:
    """Serves folders as hub repositories over HTTP on 127.0.0.1: the model-info API and ``resolve/``
    downloads with ETag/X-Repo-Commit/X-Linked-* headers and Range requests, like huggingface.co."""

    COMMIT = "0123456789abcdef0123456789abcdef01234567"
    LFS_SUFFIXES = (".safetensors", ".pth", ".bin")

    def __init__(
        self,
        repos: dict[str, Path],
        gated: tuple[str, ...] = (),
        slow: tuple[str, ...] = (),
        corrupt: tuple[str, ...] = (),
    ) -> None:
        import hashlib
        import http.server

        self.repos = repos
        self.gated = gated
        self.slow = slow  # files sent in 1 MiB pieces with a pause (to interrupt them)
        self.corrupt = set(corrupt)  # files sent with one byte flipped (the advertised hash stays)
        self.log: list[tuple[str, str, str | None]] = []
        self.meta: dict[tuple[str, str], dict] = {}
        for repo_id, root in repos.items():
            for p in sorted(q for q in root.rglob("*") if q.is_file()):
                data = p.read_bytes()
                rel = p.relative_to(root).as_posix()
                entry = {"size": len(data)}
                if p.suffix in self.LFS_SUFFIXES:
                    entry["sha256"] = hashlib.sha256(data).hexdigest()
                entry["git"] = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
                self.meta[(repo_id, rel)] = entry
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep the test output clean
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _error(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _serve(self, body: bool) -> None:
                from urllib.parse import unquote, urlsplit

                path = unquote(urlsplit(self.path).path)
                hub.log.append((self.command, path, self.headers.get("Range")))
                if path.startswith("/api/models/"):
                    repo_id = "/".join(path[len("/api/models/") :].split("/")[:2])
                    if repo_id in hub.gated:
                        return self._error(401, "GatedRepo")
                    if repo_id not in hub.repos:
                        return self._error(404, "RepoNotFound")
                    siblings = []
                    for (rid, rel), m in sorted(hub.meta.items()):
                        if rid == repo_id:
                            sib = {"rfilename": rel, "size": m["size"], "blobId": m["git"]}
                            if "sha256" in m:
                                sib["lfs"] = {"size": m["size"], "sha256": m["sha256"], "pointerSize": 134}
                            siblings.append(sib)
                    raw = json.dumps({"id": repo_id, "sha": hub.COMMIT, "siblings": siblings}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    if body:
                        self.wfile.write(raw)
                    return None
                repo_id, _, rest = path.lstrip("/").partition("/resolve/")
                rel = rest.partition("/")[2]
                m = hub.meta.get((repo_id, rel))
                if m is None:
                    return self._error(404, "EntryNotFound")
                data = (hub.repos[repo_id] / rel).read_bytes()
                if rel in hub.corrupt:
                    data = data[:64] + bytes([data[64] ^ 0xFF]) + data[65:]
                start = 0
                if body and self.headers.get("Range", "").startswith("bytes="):
                    start = int(self.headers["Range"][6:].split("-")[0])
                self.send_response(206 if start else 200)
                etag = m.get("sha256") or m["git"]
                self.send_header("ETag", f'"{m["git"]}"')
                if "sha256" in m:
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(m["size"]))
                self.send_header("X-Repo-Commit", hub.COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return None
                piece = 1 << 20
                for offset in range(start, len(data), piece):
                    self.wfile.write(data[offset : offset + piece])
                    self.wfile.flush()
                    if rel in hub.slow:
                        import time

                        time.sleep(0.15)
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def gets(self, suffix: str) -> list[str | None]:
        """Range headers of the file downloads (GET on resolve/) whose path ends with ``suffix``."""
        return [
            rng
            for method, path, rng in self.log
            if method == "GET" and "/resolve/" in path and path.endswith(suffix)
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("HF_HUB_ENABLE_HF_TRANSFER", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    hubs: list[FakeHub] = []

    def start(*args, **kwargs) -> FakeHub:
        hub = FakeHub(*args, **kwargs)
        hubs.append(hub)
        return hub

    yield start
    for hub in hubs:
        hub.close()


def test_hub_download_into_the_cache_is_found_offline_afterwards(tmp_path: Path, hub_env, monkeypatch):
    hub = hub_env({"Skywork/SkyReels-V3-A2V-19B": make_avatar(tmp_path / "served")})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # the default source follows HF_ENDPOINT
    events: list[ms.DownloadProgress] = []
    result = ms.download(Task.TALKING_AVATAR, progress_cb=events.append)
    cache = tmp_path / "hub-cache" / "models--Skywork--SkyReels-V3-A2V-19B"
    assert result.path == cache / "snapshots" / FakeHub.COMMIT
    assert result.report.status is ms.Status.READY
    assert (cache / "refs" / "main").read_text() == FakeHub.COMMIT
    assert events[-1].done_bytes == events[-1].total_bytes
    # from now on nothing needs the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ms.resolve_for_pipeline(Task.TALKING_AVATAR) == result.path
    offline = ms.download(Task.TALKING_AVATAR)  # nothing to fetch: fine without the hub
    assert offline.path == result.path and offline.report.ready and offline.fetched_bytes == 0
    # a second run (online again) fetches nothing
    monkeypatch.delenv("HF_HUB_OFFLINE")
    before = len(hub.gets(""))
    again = ms.download(Task.TALKING_AVATAR, source=ms.HubSource(endpoint=hub.url))
    assert len(hub.gets("")) == before and again.fetched_bytes == 0


def test_hub_download_cancelled_mid_file_resumes_with_a_range_request(tmp_path: Path, hub_env):
    root = make_r2v(tmp_path / "served")
    big = "transformer/diffusion_pytorch_model-00002-of-00002.safetensors"
    write_safetensors(root / big, {"blocks.2.weight": 6_000_000, "blocks.2.bias": 40}, seed=3)  # 24 MB
    index = json.loads((root / "transformer/diffusion_pytorch_model.safetensors.index.json").read_text())
    index["weight_map"]["blocks.2.weight"] = big.split("/")[1]
    write_json(root / "transformer/diffusion_pytorch_model.safetensors.index.json", index)
    hub = hub_env({"Skywork/SkyReels-V3-R2V-14B": root}, slow=(big,))
    source = ms.HubSource(endpoint=hub.url, poll_s=0.05, subprocess_min_bytes=1_000_000)
    cancel = threading.Event()

    def stop_when_data_arrives(p: ms.DownloadProgress) -> None:
        if p.file == big and p.phase == "download" and p.file_done > 0:
            cancel.set()

    with pytest.raises(ms.DownloadCancelled):
        ms.download(
            Task.REFERENCE_TO_VIDEO, progress_cb=stop_when_data_arrives, cancel_event=cancel, source=source
        )
    blobs = tmp_path / "hub-cache" / "models--Skywork--SkyReels-V3-R2V-14B" / "blobs"
    partial = list(blobs.glob("*.incomplete"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < (root / big).stat().st_size

    result = ms.download(Task.REFERENCE_TO_VIDEO, source=ms.HubSource(endpoint=hub.url))
    assert result.report.status is ms.Status.READY
    ranges = hub.gets(big)
    assert ranges[0] is None and ranges[-1] is not None and ranges[-1].startswith("bytes=")
    assert int(ranges[-1][6:].split("-")[0]) > 0  # resumed, not restarted
    assert (result.path / big).read_bytes() == (root / big).read_bytes()


def test_hub_cache_shares_the_vae_and_text_encoder_blobs(tmp_path: Path, hub_env):
    hub = hub_env(
        {
            "Skywork/SkyReels-V3-Video-Extension": make_extension(tmp_path / "ext"),
            "Skywork/SkyReels-V3-TalkingAvatar": make_avatar(tmp_path / "avatar"),
        }
    )
    source = ms.HubSource(endpoint=hub.url)
    ms.download(Task.SHOT_SWITCHING_EXTENSION, "Skywork/SkyReels-V3-Video-Extension", source=source)
    result = ms.download(Task.TALKING_AVATAR, "Skywork/SkyReels-V3-TalkingAvatar", source=source)
    assert result.report.status is ms.Status.READY
    assert {"Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"} <= set(result.linked_files)
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"):
        assert len(hub.gets(name)) == 1  # fetched for the extension only
        ext = (
            tmp_path
            / "hub-cache"
            / "models--Skywork--SkyReels-V3-Video-Extension"
            / "snapshots"
            / FakeHub.COMMIT
        )
        a, b = (ext / name).resolve().stat(), (result.path / name).resolve().stat()
        assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def test_gated_repository_error_says_what_to_do(tmp_path: Path, hub_env):
    hub = hub_env(
        {"Skywork/SkyReels-V3-A2V-19B": make_avatar(tmp_path / "served")},
        gated=("Skywork/SkyReels-V3-A2V-19B",),
    )
    with pytest.raises(ms.DownloadError) as err:
        ms.download(Task.TALKING_AVATAR, source=ms.HubSource(endpoint=hub.url))
    assert "gated" in str(err.value) and "HF_TOKEN" in str(err.value)


def test_hub_download_into_a_folder_records_hashes(tmp_path: Path, hub_env):
    hub = hub_env({"Skywork/SkyReels-V3-R2V-14B": make_r2v(tmp_path / "served")})
    target = tmp_path / "models" / "SkyReels-V3-R2V-14B"
    result = ms.download(Task.REFERENCE_TO_VIDEO, target=target, source=ms.HubSource(endpoint=hub.url))
    assert result.path == target and result.report.status is ms.Status.READY
    manifest = ms.read_manifest(target)
    assert manifest["repo_id"] == "Skywork/SkyReels-V3-R2V-14B" and manifest["revision"] == FakeHub.COMMIT
    assert not (target / "README.md").exists() and not (target / "assets").exists()  # not needed
    assert ms.check_folder(Task.REFERENCE_TO_VIDEO, target, deep=True).status is ms.Status.READY
    assert ms.locate(Task.REFERENCE_TO_VIDEO).path == target  # remembered


def test_cli_locate_add_registers_a_folder_of_model_folders(tmp_path: Path):
    make_avatar(tmp_path / "disk" / "SkyReels-V3-A2V-19B")
    make_r2v(tmp_path / "disk" / "SkyReels-V3-Reference2Video")
    code, text = run_cli("locate", "--add", str(tmp_path / "disk"))
    assert code == 0
    assert f"talking_avatar: ready  {tmp_path / 'disk' / 'SkyReels-V3-A2V-19B'}" in text
    assert f"reference_to_video: ready  {tmp_path / 'disk' / 'SkyReels-V3-Reference2Video'}" in text
    assert "single_shot_extension: missing" in text
    assert run_cli("locate", "--add", str(tmp_path / "nope"))[0] == 2


def test_hub_file_damaged_in_transit_is_removed_from_the_cache(tmp_path: Path, hub_env):
    hub = hub_env(
        {"Skywork/SkyReels-V3-A2V-19B": make_avatar(tmp_path / "served")}, corrupt=("Wan2.1_VAE.pth",)
    )
    source = ms.HubSource(endpoint=hub.url)
    with pytest.raises(ms.DownloadError, match=r"Wan2\.1_VAE\.pth arrived damaged \(sha256"):
        ms.download(Task.TALKING_AVATAR, source=source)
    blobs = tmp_path / "hub-cache" / "models--Skywork--SkyReels-V3-A2V-19B" / "blobs"
    expected = hub.meta[("Skywork/SkyReels-V3-A2V-19B", "Wan2.1_VAE.pth")]["sha256"]
    assert expected not in {p.name for p in blobs.iterdir()}
    hub.corrupt.clear()  # the network recovers: the next run fetches it again
    result = ms.download(Task.TALKING_AVATAR, source=source)
    assert result.report.ready and len(hub.gets("Wan2.1_VAE.pth")) == 2


def test_progress_bar_on_a_terminal_shows_percent_rate_and_eta():
    import io

    from core.model_store_cli import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = ProgressBar(screen, width=10)
    bar(ms.DownloadProgress("skip", "config.json", 0, 3, 100, 100, 100, 1100))
    bar.last = 0.0  # the bar redraws at most 5 times a second
    bar(ms.DownloadProgress("download", "transformer/model.safetensors", 1, 3, 450, 1000, 550, 1100))
    bar.finish()
    last = screen.getvalue().split("\r")[-1]
    assert last.startswith("[#####-----]  50.0% 550 B/1.1 kB")
    assert "ETA " in last and "download 2/3 model.safetensors" in last
    assert bar.not_transferred == 100
