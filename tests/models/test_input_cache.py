"""InputCache: decoded inputs reused while the files are unchanged, and the backend reading through it."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from PIL import Image

from core.generation import RenderRequest, RequestInvalid, Task
from models.backend import LocalBackend
from models.input_cache import InputCache


def _reader(calls, value):
    def read():
        calls.append(1)
        return value

    return read


def test_read_is_reused_until_the_file_changes(tmp_path):
    path = tmp_path / "clip.bin"
    path.write_bytes(b"one")
    cache, calls = InputCache(), []
    first = cache.read(("clip", str(path)), [path], _reader(calls, np.zeros(4)))
    assert cache.read(("clip", str(path)), [path], _reader(calls, np.ones(4))) is first
    assert len(calls) == 1 and cache.hits == 1
    # Another key (e.g. another audio region) is read on its own.
    cache.read(("clip", str(path), 2.0), [path], _reader(calls, np.ones(4)))
    assert len(calls) == 2
    # The file is rewritten (same size, later time): read again.
    path.write_bytes(b"two")
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    again = cache.read(("clip", str(path)), [path], _reader(calls, np.ones(4)))
    assert len(calls) == 3 and np.array_equal(again, np.ones(4))


def test_kept_arrays_are_read_only(tmp_path):
    path = tmp_path / "clip.bin"
    path.write_bytes(b"one")
    frames, _total = InputCache().read(("tail", str(path)), [path], lambda: (np.zeros((2, 4, 4, 3), np.uint8), 2))
    with pytest.raises(ValueError, match="read-only"):
        frames[0] += 1  # a pipeline changing its input in place would change the next render's input
    # Too big to keep: handed out as read, still writable.
    big = InputCache(max_bytes=8).read(("big",), [path], lambda: np.zeros(64, np.uint8))
    big[0] = 1


def test_errors_and_missing_files_are_not_cached(tmp_path):
    cache, calls = InputCache(), []

    def fail():
        calls.append(1)
        raise RequestInvalid("cannot read")

    for _ in range(2):
        with pytest.raises(RequestInvalid):
            cache.read(("x",), [tmp_path / "missing.wav"], fail)
    path = tmp_path / "bad.wav"
    path.write_bytes(b"x")
    for _ in range(2):
        with pytest.raises(RequestInvalid):
            cache.read(("x",), [path], fail)
    assert len(calls) == 4


def test_least_recently_used_values_go_beyond_the_byte_budget(tmp_path):
    paths = []
    for name in "abcd":
        paths.append(tmp_path / name)
        paths[-1].write_bytes(name.encode())
    cache, calls = InputCache(max_bytes=3000), []
    for path in paths[:3]:
        cache.read((path.name,), [path], _reader(calls, np.zeros(1000, np.uint8)))
    cache.read(("a",), [paths[0]], _reader(calls, None))  # a is now the most recent
    cache.read(("d",), [paths[3]], _reader(calls, np.zeros(1000, np.uint8)))  # b goes
    assert len(calls) == 4
    cache.read(("a",), [paths[0]], _reader(calls, None))
    cache.read(("b",), [paths[1]], _reader(calls, np.zeros(1000, np.uint8)))
    assert len(calls) == 5
    # Larger than the whole budget: returned, never kept.
    cache.read(("big",), [paths[0]], _reader(calls, np.zeros(4000, np.uint8)))
    cache.read(("big",), [paths[0]], _reader(calls, np.zeros(4000, np.uint8)))
    assert len(calls) == 7


def test_backend_reads_the_same_inputs_once_for_renders_of_several_seeds(tmp_path, monkeypatch):
    import models.r2v.pipeline as r2v

    reference = tmp_path / "ref.png"
    Image.fromarray((np.random.default_rng(0).random((96, 160, 3)) * 255).astype(np.uint8)).save(reference)
    loaded = []
    real_load = r2v.load_reference_image
    monkeypatch.setattr(r2v, "load_reference_image", lambda *a: loaded.append(a) or real_load(*a))
    backend = LocalBackend(device="cpu", tiny_dir=str(tmp_path / "tiny"))
    outputs = []
    for seed in (1, 2, 1):
        request = RenderRequest(
            task=Task.REFERENCE_TO_VIDEO, prompt="a red ball", output_path=str(tmp_path / f"out{len(outputs)}.mp4"),
            work_dir=str(tmp_path / f"work{len(outputs)}"), reference_images=(str(reference),), duration_s=1,
            seed=seed, model="tiny", steps=2,
        )
        backend.validate(request)
        outputs.append(backend.render(request, lambda e: None, threading.Event()))
    assert len(loaded) == 1
    assert [o.num_frames for o in outputs] == [25, 25, 25]
    # The same seed gives the same frames with the cached reference as with the freshly read one (the
    # exact frames each render checkpointed, before any encoding).
    first, third = (np.load(next((tmp_path / f"work{i}").rglob("piece_0000.npy"))) for i in (0, 2))
    assert np.array_equal(first, third)
    # A changed reference is read again.
    Image.fromarray(np.full((96, 160, 3), 30, np.uint8)).save(reference)
    info = reference.stat()
    os.utime(reference, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    backend.validate(RenderRequest(
        task=Task.REFERENCE_TO_VIDEO, prompt="a red ball", output_path=str(tmp_path / "o.mp4"),
        work_dir=str(tmp_path / "w"), reference_images=(str(reference),), duration_s=1, seed=5, model="tiny",
    ))
    assert len(loaded) == 2
    # What the cache hands out is what reading the file gives.
    cache = InputCache()
    request = r2v.R2VRequest(reference_images=(str(reference),), prompt="a red ball", duration_s=1)
    cached = r2v.validate_request(request, cache)[0]
    assert r2v.validate_request(request, cache)[0] is cached
    assert np.array_equal(np.asarray(cached), np.asarray(real_load(str(reference))))
