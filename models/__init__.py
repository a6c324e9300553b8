"""Inference core: SkyReels-V3 transformers, VAE, encoders, schedulers, pipelines, memory policies.

Imports torch, diffusers, transformers and ``core`` types. Never imports PySide6 or ``app``.
"""
