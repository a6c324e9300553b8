"""Reference-to-video (R2V): the diffusers-layout SkyReels-V3 R2V model, its loader and pipeline.

Modules: ``transformer`` (the R2V DiT, a diffusers ``WanTransformer3DModel``), ``loading`` (the diffusers folder), ``pipeline`` (request,
sampling loop, decode), ``tiny`` (a tiny random checkpoint in the official layout for tests).
The resolution buckets it shares with the extension live in :mod:`models.buckets`.

Imports torch / diffusers / transformers (lazily in the submodules) and ``core`` types; never PySide6 or ``app``.
"""
