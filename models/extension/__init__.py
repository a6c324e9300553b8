"""Video extension (SkyReels-V3 ``single_shot_extension`` and ``shot_switching_extension``).

Owns the extension DiT (:mod:`models.extension.transformer`), the two pipelines
(:mod:`models.extension.pipeline`), the transition-to-prompt-tag mapping
(:mod:`models.extension.transitions`) and a tiny checkpoint writer (:mod:`models.extension.tiny`).
Never imports PySide6 or ``app``.
"""
