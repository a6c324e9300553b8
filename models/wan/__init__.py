"""Original-Wan-format components shared by the extension and avatar pipelines.

* :mod:`models.wan.loading`: safe checkpoint reading and strict loads (used by every model package).
* :mod:`models.wan.attention`: unmasked multi-head attention with selectable kernels (SDPA, flash-attn,
  SageAttention) used by the Wan-format DiTs.
* :mod:`models.wan.vae`: the Wan2.1 causal video VAE in the ``Wan2.1_VAE.pth`` key format.
* :mod:`models.wan.t5`, :mod:`models.wan.tokenizer`: the UMT5-XXL encoder in the
  ``models_t5_umt5-xxl-enc-bf16.pth`` key format and its HF tokenizer with the official text cleaning.
* :mod:`models.wan.scheduler`: the Wan ``FlowUniPCMultistepScheduler``.
* :mod:`models.wan.tiny`: tiny checkpoint writers for tests.

Submodules are imported on demand; importing this package loads nothing heavy.
Imports torch, transformers, tokenizers, safetensors. Never imports PySide6 or ``app``.
"""
