"""Join MP4 parts into one file without encoding the video again.

A render writes each finished piece as its own playable MP4 (``VideoWriter``, same settings for
every piece); the render's output is those pieces one after the other. Copying their H.264 packets
(a remux) gives the same pictures as decoding and encoding them again, at a small fraction of the
cost, and without a second generation of compression loss. An audio track can be added on the way
(encoded to AAC, as :class:`~core.media.writer.VideoWriter` does).

Parts must share codec, size and codec set-up (``extradata``): two files from ``VideoWriter`` with
the same size and settings always do. Anything else is refused with :class:`IncompatibleParts`, so a
caller can fall back to decoding and encoding.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from core.media.errors import WriteFailed
from core.media.writer import AudioTrack, atomic_file

__all__ = ["IncompatibleParts", "concat_videos"]


class IncompatibleParts(ValueError):
    """The parts cannot be joined by copying packets (different codec, size or codec set-up)."""


def _signature(stream: Any) -> tuple[Any, ...]:
    context = stream.codec_context
    return (context.name, context.width, context.height, context.pix_fmt, bytes(context.extradata or b""))


def concat_videos(
    parts: Sequence[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    audio: np.ndarray | str | os.PathLike[str] | None = None,
    audio_rate: int | None = None,
    audio_bitrate: int = 192_000,
) -> Path:
    """Write ``parts`` (MP4 files with one video stream each) one after another into ``path``.

    The video packets are copied; each part starts where the previous one ended. ``audio`` adds a
    track: float samples ``[n]`` or ``[n, channels]`` in [-1, 1] are encoded to AAC (``audio_rate``
    required), a file (such as one from :func:`core.media.writer.write_aac`) has the packets of its
    first audio stream copied. The file appears atomically; on any failure nothing is left behind.

    Returns:
        The destination path.

    Raises:
        ValueError: no parts, or audio without ``audio_rate``.
        IncompatibleParts: the parts differ in codec, size or codec set-up (nothing is written).
        WriteFailed: a part cannot be read, or the destination cannot be written.
    """
    sources = [Path(part) for part in parts]
    target = Path(path)
    if not sources:
        raise ValueError("concat_videos needs at least one part")
    if isinstance(audio, np.ndarray) and not audio_rate:
        raise ValueError("audio_rate is required when audio samples are given")
    with atomic_file(target, "join the parts") as temp:
        if len(sources) == 1 and audio is None:
            shutil.copyfile(sources[0], temp)  # the part already is the file
        else:
            _remux(sources, temp, audio, audio_rate, audio_bitrate)
    return target


def _open(source: Path, kind: str = "video") -> Any:
    """Open a part (``kind`` "video") or an audio track file (``kind`` "audio")."""
    try:
        container = av.open(str(source))
    except (OSError, av.FFmpegError) as exc:
        raise WriteFailed(source, f"cannot read the {kind} ({exc})") from exc
    if not (container.streams.video if kind == "video" else container.streams.audio):
        container.close()
        if kind == "video":
            raise IncompatibleParts(f"{source.name} has no video stream")
        raise WriteFailed(source, "the file has no audio stream")
    return container


def _remux(
    sources: list[Path], temp: Path, audio: Any, audio_rate: int | None, audio_bitrate: int
) -> None:
    inputs = [_open(source) for source in sources]
    audio_input: Any = None
    try:
        if audio is not None and not isinstance(audio, np.ndarray):
            audio_input = _open(Path(audio), "audio")
        first = inputs[0].streams.video[0]
        signature = _signature(first)
        for source, container in zip(sources[1:], inputs[1:], strict=True):
            if _signature(container.streams.video[0]) != signature:
                raise IncompatibleParts(f"{source.name} was encoded differently from {sources[0].name}")
        with av.open(str(temp), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
            video = output.add_stream_from_template(first)
            track = None
            copied_audio = None
            if audio_input is not None:
                copied_audio = output.add_stream_from_template(audio_input.streams.audio[0])
            elif audio is not None and audio_rate:
                channels = 1 if np.ndim(audio) == 1 else int(np.shape(audio)[1])
                track = AudioTrack(output, audio_rate, channels, audio_bitrate)
            offset = 0  # in the parts' time base (MP4 parts from one writer share it)
            for container in inputs:
                stream = container.streams.video[0]
                if stream.time_base != first.time_base:
                    raise IncompatibleParts("the parts use different time bases")
                end = offset
                for packet in container.demux(stream):
                    if packet.size == 0 or packet.pts is None or packet.dts is None:
                        continue  # the demuxer's flush packet
                    packet.pts += offset
                    packet.dts += offset
                    end = max(end, packet.pts + (packet.duration or 0))
                    packet.stream = video
                    output.mux(packet)
                offset = end
            if track is not None:
                track.write(audio)
                track.close()
            if copied_audio is not None:
                for packet in audio_input.demux(audio_input.streams.audio[0]):
                    if packet.size == 0 or packet.dts is None:
                        continue
                    packet.stream = copied_audio
                    output.mux(packet)
    finally:
        for container in inputs:
            container.close()
        if audio_input is not None:
            audio_input.close()

