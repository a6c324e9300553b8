"""Talking avatar (SkyReels-V3 A2V): Wan-format CLIP vision tower, wav2vec2 audio features, audio
preparation, the avatar DiT, its Euler schedule and the long-video pipeline (see README.md here).

Must not import: PySide6, ``app``.
"""
