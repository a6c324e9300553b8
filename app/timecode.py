"""Timecode text for integer frame counts (``HH:MM:SS:FF``), and ruler tick spacing."""

from __future__ import annotations


def format_timecode(frame: int, fps: int) -> str:
    """``HH:MM:SS:FF`` for ``frame`` at ``fps`` (negative frames get a leading minus)."""
    fps = max(1, int(fps))
    sign = "-" if frame < 0 else ""
    frame = abs(int(frame))
    seconds, ff = divmod(frame, fps)
    minutes, ss = divmod(seconds, 60)
    hh, mm = divmod(minutes, 60)
    return f"{sign}{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}"


def format_duration(frames: int | None, fps: int) -> str:
    """Short human duration for the bin: ``4.0 s``, ``1:05``, or ``still`` for images."""
    if frames is None:
        return "still"
    seconds = frames / max(1, fps)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def ruler_step(px_per_frame: float, fps: int, min_label_px: float = 90.0) -> tuple[int, int]:
    """(major, minor) tick spacing in frames so that labels stay at least ``min_label_px`` apart."""
    fps = max(1, int(fps))
    # Frame steps that divide a second evenly read best (24 fps: 1, 2, 3, 4, 6, 8, 12 frames).
    candidates = [d for d in range(1, fps) if fps % d == 0] or [1]
    candidates += [fps * s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)]
    candidates = sorted(set(c for c in candidates if c > 0))
    for major in candidates:
        if major * px_per_frame >= min_label_px:
            break
    else:
        major = candidates[-1]
    minor_options = [c for c in candidates if c < major and major % c == 0 and c * px_per_frame >= 8]
    minor = min(minor_options) if minor_options else major
    return major, minor
