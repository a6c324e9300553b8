"""Reference-to-video (R2V): the diffusers-layout SkyReels-V3 R2V model, its loader and pipeline.

Modules: ``buckets`` (resolution tables shared with the extension), ``transformer`` (the R2V DiT, a
diffusers ``WanTransformer3DModel``), ``loading`` (the diffusers folder), ``pipeline`` (request,
sampling loop, decode), ``tiny`` (a tiny random checkpoint in the official layout for tests).

Imports torch / diffusers / transformers (lazily in the submodules) and ``core`` types; never PySide6 or ``app``.
"""
