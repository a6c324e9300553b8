"""The media engine: everything that reads or writes audio, video and image files.

Modules:

- :mod:`~core.media.errors`: typed, user-readable errors (``MediaError`` and subclasses).
- :mod:`~core.media.probe`: what a file is (``probe`` -> ``MediaInfo``).
- :mod:`~core.media.decode`: frame-accurate random access and sequential reading (``VideoReader``)
  with a byte-bounded frame cache.
- :mod:`~core.media.images`: guarded image reading, atomic writing, scale/fit/letterbox.
- :mod:`~core.media.audio`: decode/resample to float32, region extraction, channel conversion, mixing.
- :mod:`~core.media.waveform`: min/max peak pyramids with a disk cache beside the project.
- :mod:`~core.media.thumbnails`: bin thumbnails and timeline filmstrips.
- :mod:`~core.media.writer`: atomic H.264/AAC MP4 (``VideoWriter``, ``write_video``) and WAV writers.
- :mod:`~core.media.timeline_render`: flatten the timeline and export it (``export_timeline``).
- :mod:`~core.media.patterns`: synthetic numbered frames and tones for tests and benchmarks.

Pure Python (numpy, PyAV, Pillow, OpenCV-headless, scipy): must not import Qt, torch, diffusers,
``app`` or ``models``. Nothing is imported here, so ``import core.media.probe`` stays light.
"""
