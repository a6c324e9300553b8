"""VideoReader: frame N is N in any access order, cache behaviour, sequential reads, threads."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from core.media.decode import FrameCache, VideoReader
from core.media.errors import FileMissing, NoVideoStream
from core.media.patterns import numbered_frame, read_frame_number
from core.media.probe import probe
from core.media.writer import write_video
from tests.core.media.conftest import CLIP_FRAMES, CLIP_GOP


def test_every_frame_in_random_order(numbered_clip: Path) -> None:
    order = list(range(CLIP_FRAMES)) * 2
    random.Random(3).shuffle(order)
    with VideoReader(numbered_clip, cache_bytes=0) as reader:
        assert reader.frame_count == CLIP_FRAMES
        assert reader.keyframes == list(range(0, CLIP_FRAMES, CLIP_GOP))
        got = [read_frame_number(reader.frame_at(i)) for i in order]
    assert got == order


def test_backwards_and_across_keyframes(numbered_clip: Path) -> None:
    with VideoReader(numbered_clip, cache_bytes=0) as reader:
        for i in [47, 46, 11, 12, 13, 0, 23, 24, 25, 5]:
            assert read_frame_number(reader.frame_at(i)) == i


def test_b_frames_and_long_gop(tmp_path: Path) -> None:
    # The default one-second GOP with x264's B-frames: presentation order differs from decode order.
    out = write_video(
        tmp_path / "long.mp4", (numbered_frame(i, 96, 64) for i in range(60)), 30, keyframe_interval=30
    )
    with VideoReader(out, cache_bytes=0) as reader:
        for i in [59, 0, 31, 30, 29, 58, 1, 45]:
            assert read_frame_number(reader.frame_at(i)) == i


def test_times_and_indices(numbered_clip: Path) -> None:
    with VideoReader(numbered_clip) as reader:
        assert reader.fps == 24 and reader.duration == pytest.approx(2.0)
        for k in range(CLIP_FRAMES):
            assert reader.index_at_time(k / 24) == k
            assert reader.time_of(k) == pytest.approx(k / 24)
        assert reader.index_at_time(-1.0) == 0 and reader.index_at_time(99.0) == CLIP_FRAMES - 1
        assert read_frame_number(reader.frame_at_time(0.5 + 1 / 48)) == 12


def test_cache_hits_return_the_same_read_only_array(numbered_clip: Path) -> None:
    with VideoReader(numbered_clip) as reader:
        first = reader.frame_at(7)
        again = reader.frame_at(7)
        assert again is first and not first.flags.writeable
        stats = reader.cache.stats()
        assert stats.hits >= 1 and stats.entries == 1 and stats.bytes == first.nbytes


def test_stepping_back_reuses_decoded_frames(numbered_clip: Path) -> None:
    with VideoReader(numbered_clip) as reader:
        assert read_frame_number(reader.frame_at(23)) == 23  # decodes 12..23 forward
        before = reader.decoded.stats().hits
        assert [read_frame_number(reader.frame_at(i)) for i in (22, 20, 17)] == [22, 20, 17]
        assert reader.decoded.stats().hits >= before + 1
    with VideoReader(numbered_clip, cache_bytes=0) as reader:
        reader.frame_at(23)
        assert reader.decoded.stats().entries == 0  # cache_bytes=0 turns both caches off


def test_cache_is_bounded_by_bytes() -> None:
    cache = FrameCache(limit_bytes=1000)
    for i in range(5):
        cache.put(i, np.zeros(300, np.uint8))
    assert cache.stats().bytes == 900 and cache.get(0) is None and cache.get(1) is None
    assert cache.get(4) is not None
    cache.get(2)  # now most recently used
    cache.put(5, np.zeros(300, np.uint8))
    assert cache.get(2) is not None and cache.get(3) is None
    cache.put("huge", np.zeros(5000, np.uint8))
    assert cache.get("huge") is None and cache.stats().bytes <= 1000


def test_output_size(numbered_clip: Path) -> None:
    with VideoReader(numbered_clip, size=(128, 80)) as reader:
        frame = reader.frame_at(9)
        assert frame.shape == (80, 128, 3) and read_frame_number(frame) == 9
        assert reader.frame_at(9, size=(320, 192)).shape == (192, 320, 3)


def test_iter_frames(numbered_clip: Path) -> None:
    with VideoReader(numbered_clip) as reader:
        assert [read_frame_number(f) for f in reader.iter_frames(10, 30)] == list(range(10, 30))
        assert len(list(reader.iter_frames())) == CLIP_FRAMES
        assert list(reader.iter_frames(5, 5)) == []
        with pytest.raises(IndexError):
            list(reader.iter_frames(40, 60))


def test_out_of_range(numbered_clip: Path) -> None:
    with VideoReader(numbered_clip) as reader, pytest.raises(IndexError, match="frame 48 is outside"):
        reader.frame_at(CLIP_FRAMES)


def test_closed_reader_says_so(numbered_clip: Path) -> None:
    reader = VideoReader(numbered_clip)
    reader.frame_at(3)
    reader.close()
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.frame_at(3)


def test_errors(sine_wav: Path, tmp_path: Path) -> None:
    with pytest.raises(NoVideoStream, match="no video"):
        VideoReader(sine_wav)
    with pytest.raises(FileMissing):
        VideoReader(tmp_path / "missing.mp4")


def test_threads_share_one_reader(numbered_clip: Path) -> None:
    errors: list[str] = []
    with VideoReader(numbered_clip, cache_bytes=200_000) as reader:

        def work(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(30):
                i = rng.randrange(CLIP_FRAMES)
                got = read_frame_number(reader.frame_at(i))
                if got != i:
                    errors.append(f"asked {i}, got {got}")

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_rotated_video_is_turned_for_display(tmp_path: Path) -> None:
    import av

    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(-90)  # shown turned 90 degrees clockwise, like a phone video
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(numbered_frame(i, 96, 64), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (64, 96, 90)
    with VideoReader(path) as reader:
        assert (reader.width, reader.height, reader.rotation) == (64, 96, 90)
        frame = reader.frame_at(2)
        assert frame.shape == (96, 64, 3)
        assert read_frame_number(np.rot90(frame, k=1)) == 2


def test_container_index_matches_the_packet_scan(tmp_path: Path) -> None:
    out = write_video(
        tmp_path / "idx.mp4", (numbered_frame(i, 96, 64) for i in range(90)), 30, keyframe_interval=30
    )
    with (
        VideoReader(out, index="scan") as scanned,
        VideoReader(out, index="container", cache_bytes=0) as fast,
    ):
        assert (scanned.index_source, fast.index_source) == ("scan", "container")
        assert scanned.keyframes == fast.keyframes and scanned.keyframes[0] == 0
        assert [fast.time_of(i) for i in range(90)] == [scanned.time_of(i) for i in range(90)]
        order = list(range(90))
        random.Random(1).shuffle(order)
        assert [read_frame_number(fast.frame_at(i)) for i in order[:30]] == order[:30]


def test_keyframe_only_index_is_not_trusted(tmp_path: Path) -> None:
    out = write_video(
        tmp_path / "cues.mkv", (numbered_frame(i, 96, 64) for i in range(40)), 24, keyframe_interval=10
    )
    with VideoReader(out, index="container") as reader:
        assert reader.index_source == "scan" and reader.frame_count == 40
        assert [read_frame_number(reader.frame_at(i)) for i in (39, 3, 20)] == [39, 3, 20]


def test_a_wrong_index_falls_back_to_scanning(numbered_clip: Path) -> None:
    with VideoReader(numbered_clip, index="container", cache_bytes=0) as reader:
        good = reader._pts.copy()
        # Pretend the index predicted other timestamps: the reader must notice and rescan.
        reader._set_timestamps(good + 1, reader._key_pts + 1)
        assert read_frame_number(reader.frame_at(5)) == 5
        assert reader.index_source == "scan"
        assert [read_frame_number(reader.frame_at(i)) for i in (30, 7)] == [30, 7]


def test_truncated_file_reads_what_is_there(numbered_clip: Path, tmp_path: Path) -> None:
    data = numbered_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with VideoReader(cut) as reader:
        assert 0 < reader.frame_count < CLIP_FRAMES
        last = reader.frame_count - 1
        for i in (0, last // 2):
            assert read_frame_number(reader.frame_at(i)) == i
