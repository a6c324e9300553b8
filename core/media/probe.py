"""Probe media files: what a file is (video, image, audio) and its basic properties.

``probe(path)`` answers from container headers (PyAV) or the image header (Pillow) and, by
default, decodes the first frame of each stream it reports, so a file that opens but cannot be
decoded (unsupported codec, damaged data) is rejected at import time with a typed error from
:mod:`core.media.errors` rather than failing later on the timeline.

Pure Python: must not import Qt, torch, ``app`` or ``models``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av

from core.media.errors import (
    CorruptMedia,
    EmptyMedia,
    MediaError,
    UnsupportedMedia,
)
from core.media.images import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, check_readable, open_image_header

__all__ = ["MediaInfo", "MediaKind", "open_container", "probe", "video_stream"]

MediaKind = Literal["video", "image", "audio"]

# Demuxers that read a single still picture: files that PyAV opens as "video" but are images.
_IMAGE_DEMUXERS = ("image2", "_pipe", "png", "jpeg", "webp", "bmp", "tiff")


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learned about a file.

    Attributes:
        path: the file.
        kind: "video", "image" or "audio".
        duration: seconds (0.0 for images).
        frame_count: video frames (1 for images, 0 for audio). From the container index when it
            has one, otherwise estimated from duration and rate.
        fps: video frame rate as an exact fraction (``None`` for images and audio).
        width, height: picture size in pixels (0 for audio), display orientation applied.
        has_audio: the file has an audio stream.
        sample_rate, channels: of the first audio stream (0 when none).
        video_codec, audio_codec: decoder names ("h264", "aac", "png", ...; "" when none).
        container: demuxer / image format name.
        rotation: degrees the picture is rotated for display (0, 90, 180, 270).
    """

    path: Path
    kind: MediaKind
    duration: float
    frame_count: int
    fps: Fraction | None
    width: int
    height: int
    has_audio: bool
    sample_rate: int = 0
    channels: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    container: str = ""
    rotation: int = 0

    @property
    def has_video(self) -> bool:
        return self.kind in ("video", "image")


def video_stream(container: Any) -> Any:
    """The first real video stream, or ``None``; cover art (an "attached picture" in music
    files, a thumbnail track in some phone videos) does not count."""
    for stream in container.streams.video:
        disposition = int(stream.disposition or 0)
        if not disposition & int(av.stream.Disposition.attached_pic | av.stream.Disposition.timed_thumbnails):
            return stream
    return None


def open_container(path: Path) -> Any:
    """Open ``path`` with PyAV, translating failures into typed media errors."""
    check_readable(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.InvalidDataError as exc:
        if path.suffix.lower() in {".mp4", ".mov", ".m4v", ".m4a", ".mkv", ".webm", ".wav", ".mp3"}:
            raise CorruptMedia(path, "the file is damaged or incomplete (cannot read its header)") from exc
        raise UnsupportedMedia(path, "not a recognised audio, video or image format") from exc
    except FileNotFoundError as exc:
        raise MediaError(path, "cannot open file") from exc
    except EOFError as exc:  # av's EOFError: the header runs past the end of the file
        raise CorruptMedia(path, "the file is damaged or incomplete (it ends too early)") from exc
    except (av.FFmpegError, OSError) as exc:
        raise CorruptMedia(path, f"cannot open file ({exc})") from exc


def probe(
    path: str | os.PathLike[str], *, check_decode: bool = True, max_pixels: int = MAX_IMAGE_PIXELS
) -> MediaInfo:
    """Describe a media file.

    Args:
        path: video, audio or image file (any file name, non-ASCII included).
        check_decode: decode the first frame of each stream to prove the file is usable.
        max_pixels: limit for still images (see :mod:`core.media.images`).

    Returns:
        A :class:`MediaInfo`.

    Raises:
        FileMissing: no such file.
        EmptyMedia: zero bytes, or no video/audio streams / no decodable frames.
        UnsupportedMedia: unknown format or a codec we cannot decode.
        CorruptMedia: damaged or truncated file.
        ImageTooLarge: a still image over ``max_pixels``.
    """
    p = Path(path)
    check_readable(p)
    if p.suffix.lower() in IMAGE_EXTENSIONS and p.suffix.lower() != ".gif":
        return _probe_image(p, max_pixels)
    try:
        container = open_container(p)
    except UnsupportedMedia:
        # An image with an unusual extension is still an image.
        try:
            return _probe_image(p, max_pixels)
        except UnsupportedMedia:
            raise UnsupportedMedia(p, "not a recognised audio, video or image format") from None
    with container:
        fmt = container.format.name or ""
        if video_stream(container) is not None and any(tag in fmt for tag in _IMAGE_DEMUXERS):
            return _probe_image(p, max_pixels)
        return _probe_av(p, container, check_decode)


def _probe_image(p: Path, max_pixels: int) -> MediaInfo:
    image = open_image_header(p, max_pixels)
    with image:
        width, height = image.size
        # EXIF orientations 5-8 swap width and height for display.
        try:
            orientation = int(image.getexif().get(0x0112, 1))
        except Exception:  # a damaged EXIF block must not make the image unusable
            orientation = 1
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        return MediaInfo(
            path=p,
            kind="image",
            duration=0.0,
            frame_count=1,
            fps=None,
            width=width,
            height=height,
            has_audio=False,
            video_codec=(image.format or "").lower(),
            container=(image.format or "").lower(),
        )


def _probe_av(p: Path, container: Any, check_decode: bool) -> MediaInfo:
    video = video_stream(container)
    audio = container.streams.audio[0] if container.streams.audio else None
    if video is None and audio is None:
        raise EmptyMedia(p, "the file has no video or audio streams")
    for stream, what in ((video, "video"), (audio, "audio")):
        if stream is not None and stream.codec_context is None:
            raise UnsupportedMedia(p, f"no decoder for its {what} codec")
    container_duration = container.duration / av.time_base if container.duration else 0.0
    _check_complete(p, (video, audio))

    first_video_frame = None
    if check_decode:
        if video is not None:
            first_video_frame = _decode_first(p, container, video, "video")
        if audio is not None:
            _decode_first(p, container, audio, "audio")

    sample_rate = channels = 0
    audio_codec = ""
    if audio is not None:
        sample_rate = int(audio.codec_context.sample_rate or audio.rate or 0)
        channels = int(audio.codec_context.channels or 0)
        audio_codec = audio.codec_context.name

    if video is None:
        duration = _stream_seconds(audio) or container_duration
        return MediaInfo(
            path=p,
            kind="audio",
            duration=duration,
            frame_count=0,
            fps=None,
            width=0,
            height=0,
            has_audio=True,
            sample_rate=sample_rate,
            channels=channels,
            audio_codec=audio_codec,
            container=container.format.name or "",
        )

    rate = video.average_rate or video.guessed_rate or video.base_rate
    fps = Fraction(rate) if rate else None
    duration = _stream_seconds(video) or container_duration
    frame_count = int(video.frames or 0)
    if frame_count <= 0 and fps and duration:
        frame_count = max(1, round(duration * fps))
    if frame_count <= 0 and not check_decode:
        frame_count = 1
    rotation = _rotation(video, first_video_frame)
    width, height = int(video.codec_context.width), int(video.codec_context.height)
    if width <= 0 or height <= 0:
        raise CorruptMedia(p, "the video stream has no picture size")
    if rotation in (90, 270):
        width, height = height, width
    return MediaInfo(
        path=p,
        kind="video",
        duration=duration,
        frame_count=frame_count,
        fps=fps,
        width=width,
        height=height,
        has_audio=audio is not None,
        sample_rate=sample_rate,
        channels=channels,
        video_codec=video.codec_context.name,
        audio_codec=audio_codec,
        container=container.format.name or "",
        rotation=rotation,
    )


def _check_complete(p: Path, streams: tuple[Any, ...]) -> None:
    """Reject a file whose own index points past its end (an interrupted download or copy of
    an MP4 whose index was written first)."""
    size = p.stat().st_size
    for stream in streams:
        if stream is None:
            continue
        try:
            entries = stream.index_entries
            count = len(entries)
            # Samples are stored in order: the last few entries reach furthest into the file.
            tail = [entries[i] for i in range(max(0, count - 16), count)]
            needed = max((int(e.pos) + int(e.size) for e in tail if e.pos >= 0), default=0)
        except (AttributeError, av.FFmpegError):
            continue
        if needed > size:
            raise CorruptMedia(
                p,
                f"the file is damaged or incomplete: it holds {size:,} bytes of the {needed:,} its index lists",
            )


def _stream_seconds(stream: Any) -> float:
    if stream is None or not stream.duration or stream.time_base is None:
        return 0.0
    return float(stream.duration * stream.time_base)


def _rotation(stream: Any, first_frame: Any) -> int:
    """Display rotation (clockwise degrees) from the decoded frame or the legacy ``rotate`` tag."""
    if first_frame is not None:
        try:
            return round(-float(first_frame.rotation)) % 360
        except (AttributeError, TypeError, ValueError):
            pass
    tag = stream.metadata.get("rotate") if stream.metadata else None
    try:
        return int(tag) % 360 if tag else 0
    except ValueError:
        return 0


def _decode_first(p: Path, container: Any, stream: Any, what: str) -> Any:
    container.seek(0)
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                return frame
    except av.InvalidDataError as exc:
        raise CorruptMedia(p, f"its {what} data cannot be decoded ({exc})") from exc
    except av.FFmpegError as exc:
        raise CorruptMedia(p, f"its {what} data cannot be decoded ({exc})") from exc
    raise EmptyMedia(p, f"the {what} stream holds no decodable frames")
