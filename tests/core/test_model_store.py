"""Model store: registry, folder checks, discovery and the ``models list|locate`` commands.

No torch, no Qt: the fake model folders come from :mod:`tests.core.model_files`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core import model_store as ms
from core.generation import ModelsMissing, Task
from tests.core.model_files import (
    MAKERS,
    isolate,
    make_avatar,
    make_extension,
    make_hub_cache,
    make_r2v,
    run_cli,
    write_safetensors,
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


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


def test_hub_cache_location_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert ms.hub_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert ms.hub_cache_dir() == tmp_path / "elsewhere"


# ---------------------------------------------------------------------------------------------
# The command line (python main.py models list|locate)


def test_cli_list_shows_every_task_and_how_to_get_it():
    code, text = run_cli("list")
    assert code == 0
    for task in Task:
        assert f"get {task.value}: python main.py models download --task {task.value}" in text
    header, _rule, *rows = text.splitlines()[:6]
    assert header.split() == ["TASK", "REPO", "STATUS", "SIZE", "WHERE"]
    assert [r.split()[2] for r in rows] == ["missing"] * 4


def test_cli_locate_remembers_a_folder(tmp_path: Path):
    root = make_r2v(tmp_path / "weights")
    code, text = run_cli("locate", "--task", "reference_to_video", str(root), "--remember")
    assert code == 0 and text.endswith(f"{root}\n")
    assert ms.locate(Task.REFERENCE_TO_VIDEO).path == root
    code, text = run_cli("locate", "--task", "reference_to_video", str(tmp_path / "nothing"))
    assert code == 1 and "python main.py models download --task reference_to_video" in text


def test_cli_locate_add_registers_a_folder_of_model_folders(tmp_path: Path):
    make_avatar(tmp_path / "disk" / "SkyReels-V3-A2V-19B")
    make_r2v(tmp_path / "disk" / "SkyReels-V3-Reference2Video")
    code, text = run_cli("locate", "--add", str(tmp_path / "disk"))
    assert code == 0
    assert f"talking_avatar: ready  {tmp_path / 'disk' / 'SkyReels-V3-A2V-19B'}" in text
    assert f"reference_to_video: ready  {tmp_path / 'disk' / 'SkyReels-V3-Reference2Video'}" in text
    assert "single_shot_extension: missing" in text
    assert run_cli("locate", "--add", str(tmp_path / "nope"))[0] == 2
