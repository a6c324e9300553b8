"""Model downloads: a local folder as the source (offline), the real hub code path against a local
fake of the hub API, and the ``models download`` command.

No torch, no Qt: the fake model folders come from :mod:`tests.core.model_files`.
"""

from __future__ import annotations

import json
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from core import model_download as md
from core import model_store as ms
from core.generation import Task
from tests.core.model_files import (
    isolate,
    make_avatar,
    make_extension,
    make_r2v,
    run_cli,
    write_json,
    write_safetensors,
)

DiskUsage = namedtuple("DiskUsage", "total used free")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


# ---------------------------------------------------------------------------------------------
# Downloads (a local folder acts as the source)


def test_download_fetches_only_what_the_task_needs_and_verifies_it(tmp_path: Path):
    src = make_extension(tmp_path / "mirror")
    events: list[md.DownloadProgress] = []
    result = md.download(
        Task.SINGLE_SHOT_EXTENSION,
        target=tmp_path / "models" / "v2v",
        progress_cb=events.append,
        source=md.LocalFolderSource(src),
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

    def stop_half_way(p: md.DownloadProgress) -> None:
        if p.file == shard and p.phase == "download" and p.file_done >= (p.file_total or 0) // 2:
            cancel.set()

    first = md.LocalFolderSource(src, chunk_size=256)
    with pytest.raises(md.DownloadCancelled):
        md.download(
            Task.REFERENCE_TO_VIDEO,
            target=target,
            progress_cb=stop_half_way,
            cancel_event=cancel,
            source=first,
        )
    part = target / md.PARTIAL_DIR / (shard + ".part")
    kept = part.stat().st_size
    assert 0 < kept < (src / shard).stat().st_size
    assert ms.check_folder(Task.REFERENCE_TO_VIDEO, target).status is ms.Status.PARTIAL

    second = md.LocalFolderSource(src, chunk_size=256)
    result = md.download(Task.REFERENCE_TO_VIDEO, target=target, source=second)
    assert result.report.status is ms.Status.READY
    wanted = md.select_files(
        ms.repo_for_task(Task.REFERENCE_TO_VIDEO), Task.REFERENCE_TO_VIDEO, second.list_files("x", None).files
    )
    assert first.bytes_read + second.bytes_read == sum(f.size or 0 for f in wanted)  # nothing read twice
    assert set(result.skipped_files) >= {"model_index.json", "scheduler/scheduler_config.json"}
    assert (target / shard).read_bytes() == (src / shard).read_bytes()
    assert not part.exists()


def test_too_little_disk_space_is_refused_before_writing(tmp_path: Path):
    src = make_avatar(tmp_path / "mirror")
    target = tmp_path / "models" / "a2v"
    with pytest.raises(md.NotEnoughDiskSpace) as err:
        md.download(
            Task.TALKING_AVATAR,
            target=target,
            source=md.LocalFolderSource(src),
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
    with pytest.raises(md.DownloadError, match="arrived damaged"):
        md.download(Task.REFERENCE_TO_VIDEO, target=target, source=md.LocalFolderSource(src))
    assert not (target / shard).exists()


def test_shared_vae_and_text_encoder_are_stored_once(tmp_path: Path):
    models = tmp_path / "models"
    md.download(
        Task.SINGLE_SHOT_EXTENSION,
        target=models / "SkyReels-V3-V2V-14B",
        source=md.LocalFolderSource(make_extension(tmp_path / "mirror-ext")),
    )
    source = md.LocalFolderSource(make_avatar(tmp_path / "mirror-avatar"))
    result = md.download(Task.TALKING_AVATAR, target=models / "SkyReels-V3-A2V-19B", source=source)
    assert result.report.status is ms.Status.READY
    assert {"Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"} <= set(result.linked_files)
    for name in ("Wan2.1_VAE.pth", "models_t5_umt5-xxl-enc-bf16.pth"):
        a = (models / "SkyReels-V3-V2V-14B" / name).stat()
        b = (models / "SkyReels-V3-A2V-19B" / name).stat()
        assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)
    assert source.bytes_read < sum(f.size or 0 for f in source.list_files("x", None).files)


def test_download_refuses_another_tasks_repository(tmp_path: Path):
    with pytest.raises(md.DownloadError, match="not the one 'talking_avatar' needs"):
        md.download(
            Task.TALKING_AVATAR,
            "Skywork/SkyReels-V3-Reference2Video",
            target=tmp_path / "x",
            source=md.LocalFolderSource(tmp_path),
        )


def test_source_without_the_needed_files_is_refused(tmp_path: Path):
    src = make_r2v(tmp_path / "mirror")
    with pytest.raises(md.DownloadError, match="does not contain what 'talking_avatar' needs"):
        md.download(Task.TALKING_AVATAR, target=tmp_path / "x", source=md.LocalFolderSource(src))


def test_hub_source_offline_says_how_to_proceed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(md.DownloadError, match="--from FOLDER"):
        md.download(Task.REFERENCE_TO_VIDEO, target=tmp_path / "x")


# ---------------------------------------------------------------------------------------------
# The command line (python main.py models download)


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


def test_progress_bar_on_a_terminal_shows_percent_rate_and_eta():
    import io

    from core.model_store_cli import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    bar = ProgressBar(screen, width=10)
    bar(md.DownloadProgress("skip", "config.json", 0, 3, 100, 100, 100, 1100))
    bar.last = 0.0  # the bar redraws at most 5 times a second
    bar(md.DownloadProgress("download", "transformer/model.safetensors", 1, 3, 450, 1000, 550, 1100))
    bar.finish()
    last = screen.getvalue().split("\r")[-1]
    assert last.startswith("[#####-----]  50.0% 550 B/1.1 kB")
    assert "ETA " in last and "download 2/3 model.safetensors" in last
    assert bar.not_transferred == 100


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
    events: list[md.DownloadProgress] = []
    result = md.download(Task.TALKING_AVATAR, progress_cb=events.append)
    cache = tmp_path / "hub-cache" / "models--Skywork--SkyReels-V3-A2V-19B"
    assert result.path == cache / "snapshots" / FakeHub.COMMIT
    assert result.report.status is ms.Status.READY
    assert (cache / "refs" / "main").read_text() == FakeHub.COMMIT
    assert events[-1].done_bytes == events[-1].total_bytes
    # from now on nothing needs the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ms.resolve_for_pipeline(Task.TALKING_AVATAR) == result.path
    offline = md.download(Task.TALKING_AVATAR)  # nothing to fetch: fine without the hub
    assert offline.path == result.path and offline.report.ready and offline.fetched_bytes == 0
    # a second run (online again) fetches nothing
    monkeypatch.delenv("HF_HUB_OFFLINE")
    before = len(hub.gets(""))
    again = md.download(Task.TALKING_AVATAR, source=md.HubSource(endpoint=hub.url))
    assert len(hub.gets("")) == before and again.fetched_bytes == 0


def test_hub_download_cancelled_mid_file_resumes_with_a_range_request(tmp_path: Path, hub_env):
    root = make_r2v(tmp_path / "served")
    big = "transformer/diffusion_pytorch_model-00002-of-00002.safetensors"
    write_safetensors(root / big, {"blocks.2.weight": 6_000_000, "blocks.2.bias": 40}, seed=3)  # 24 MB
    index = json.loads((root / "transformer/diffusion_pytorch_model.safetensors.index.json").read_text())
    index["weight_map"]["blocks.2.weight"] = big.split("/")[1]
    write_json(root / "transformer/diffusion_pytorch_model.safetensors.index.json", index)
    hub = hub_env({"Skywork/SkyReels-V3-R2V-14B": root}, slow=(big,))
    source = md.HubSource(endpoint=hub.url, poll_s=0.05, subprocess_min_bytes=1_000_000)
    cancel = threading.Event()

    def stop_when_data_arrives(p: md.DownloadProgress) -> None:
        if p.file == big and p.phase == "download" and p.file_done > 0:
            cancel.set()

    with pytest.raises(md.DownloadCancelled):
        md.download(
            Task.REFERENCE_TO_VIDEO, progress_cb=stop_when_data_arrives, cancel_event=cancel, source=source
        )
    blobs = tmp_path / "hub-cache" / "models--Skywork--SkyReels-V3-R2V-14B" / "blobs"
    partial = list(blobs.glob("*.incomplete"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < (root / big).stat().st_size

    result = md.download(Task.REFERENCE_TO_VIDEO, source=md.HubSource(endpoint=hub.url))
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
    source = md.HubSource(endpoint=hub.url)
    md.download(Task.SHOT_SWITCHING_EXTENSION, "Skywork/SkyReels-V3-Video-Extension", source=source)
    result = md.download(Task.TALKING_AVATAR, "Skywork/SkyReels-V3-TalkingAvatar", source=source)
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
    with pytest.raises(md.DownloadError) as err:
        md.download(Task.TALKING_AVATAR, source=md.HubSource(endpoint=hub.url))
    assert "gated" in str(err.value) and "HF_TOKEN" in str(err.value)


def test_hub_download_into_a_folder_records_hashes(tmp_path: Path, hub_env):
    hub = hub_env({"Skywork/SkyReels-V3-R2V-14B": make_r2v(tmp_path / "served")})
    target = tmp_path / "models" / "SkyReels-V3-R2V-14B"
    result = md.download(Task.REFERENCE_TO_VIDEO, target=target, source=md.HubSource(endpoint=hub.url))
    assert result.path == target and result.report.status is ms.Status.READY
    manifest = ms.read_manifest(target)
    assert manifest["repo_id"] == "Skywork/SkyReels-V3-R2V-14B" and manifest["revision"] == FakeHub.COMMIT
    assert not (target / "README.md").exists() and not (target / "assets").exists()  # not needed
    assert ms.check_folder(Task.REFERENCE_TO_VIDEO, target, deep=True).status is ms.Status.READY
    assert ms.locate(Task.REFERENCE_TO_VIDEO).path == target  # remembered


def test_hub_file_damaged_in_transit_is_removed_from_the_cache(tmp_path: Path, hub_env):
    hub = hub_env(
        {"Skywork/SkyReels-V3-A2V-19B": make_avatar(tmp_path / "served")}, corrupt=("Wan2.1_VAE.pth",)
    )
    source = md.HubSource(endpoint=hub.url)
    with pytest.raises(md.DownloadError, match=r"Wan2\.1_VAE\.pth arrived damaged \(sha256"):
        md.download(Task.TALKING_AVATAR, source=source)
    blobs = tmp_path / "hub-cache" / "models--Skywork--SkyReels-V3-A2V-19B" / "blobs"
    expected = hub.meta[("Skywork/SkyReels-V3-A2V-19B", "Wan2.1_VAE.pth")]["sha256"]
    assert expected not in {p.name for p in blobs.iterdir()}
    hub.corrupt.clear()  # the network recovers: the next run fetches it again
    result = md.download(Task.TALKING_AVATAR, source=source)
    assert result.report.ready and len(hub.gets("Wan2.1_VAE.pth")) == 2
