"""Loading the R2V checkpoint: a diffusers pipeline folder (spec section 3.2).

Layout (``Skywork/SkyReels-V3-R2V-14B``, alias ``Skywork/SkyReels-V3-Reference2Video``)::

    model_index.json
    tokenizer/      T5TokenizerFast (tokenizer.json or spiece.model + tokenizer_config.json)
    text_encoder/   transformers UMT5EncoderModel: config.json + model*.safetensors
    transformer/    config.json + diffusion_pytorch_model*.safetensors (WanTransformer3DModel fields)
    vae/            AutoencoderKLWan: config.json (latents_mean / latents_std) + diffusion_pytorch_model*.safetensors
    scheduler/      scheduler_config.json (the official wrapper discards it; we do too, so it is optional)

:func:`missing_files` names exactly what a partial download lacks, before anything loads.
:func:`load_components` builds each network on the meta device and loads it strictly under the
official key names (every missing / unexpected / wrongly shaped key is named in the error). The
transformer follows diffusers' dtype rule (``time_embedder``, ``scale_shift_table``, ``norm1/2/3`` stay
float32 under bfloat16); the VAE always runs in float32, as in the official pipeline.

Imports torch, diffusers, transformers, safetensors and ``core`` types; never PySide6 or ``app``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKLWan

from core.generation import ModelsMissing
from models.r2v.transformer import R2VTransformer3DModel, build_transformer
from models.wan.loading import StateDictMismatchError, load_safetensors_folder, load_strict

# Hugging Face repository ids of the R2V model (README name first; the code's name is an alias).
REPO_IDS = ("Skywork/SkyReels-V3-R2V-14B", "Skywork/SkyReels-V3-Reference2Video")

_WEIGHT_PATTERNS = {
    "text_encoder": ("model*.safetensors", "model.safetensors"),
    "transformer": ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model.safetensors"),
    "vae": ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model.safetensors"),
}


@dataclass
class R2VComponents:
    """The four networks of the R2V pipeline plus the VAE's latent normalisation.

    Thread contract: plain modules; used by one worker thread at a time.
    """

    tokenizer: Any
    text_encoder: torch.nn.Module
    transformer: R2VTransformer3DModel
    vae: AutoencoderKLWan
    root: Path

    @property
    def latents_mean(self) -> list[float]:
        return list(self.vae.config.latents_mean)

    @property
    def latents_std(self) -> list[float]:
        return list(self.vae.config.latents_std)


def missing_files(root: str | Path) -> list[str]:
    """Relative paths that an R2V folder lacks (empty list: complete enough to load).

    Sharded weights are checked through their ``*.index.json``: every shard it names must exist.
    """
    root = Path(root)
    if not root.is_dir():
        return ["(the folder itself)"]
    missing: list[str] = []
    for name in (
        "model_index.json",
        "text_encoder/config.json",
        "transformer/config.json",
        "vae/config.json",
    ):
        if not (root / name).is_file():
            missing.append(name)
    tokenizer = root / "tokenizer"
    if not (tokenizer / "tokenizer.json").is_file() and not (tokenizer / "spiece.model").is_file():
        missing.append("tokenizer/tokenizer.json")
    if not (tokenizer / "tokenizer_config.json").is_file():
        missing.append("tokenizer/tokenizer_config.json")
    for folder, (pattern, single) in _WEIGHT_PATTERNS.items():
        missing.extend(_missing_weights(root, folder, pattern, single))
    return missing


def _missing_weights(root: Path, folder: str, pattern: str, single: str) -> list[str]:
    directory = root / folder
    indexes = sorted(directory.glob("*.safetensors.index.json")) if directory.is_dir() else []
    if indexes:
        names = sorted(set(json.loads(indexes[0].read_text())["weight_map"].values()))
        return [f"{folder}/{name}" for name in names if not (directory / name).is_file()]
    if directory.is_dir() and any(directory.glob(pattern)):
        return []
    return [f"{folder}/{single}"]


def require_complete(root: str | Path) -> Path:
    """``root`` as a Path, or :class:`ModelsMissing` listing every missing file and how to get it."""
    root = Path(root)
    missing = missing_files(root)
    if missing:
        listing = "\n  ".join(missing)
        raise ModelsMissing(
            f"The reference-to-video model folder {root} is incomplete. Missing:\n  {listing}\n"
            f"Download {REPO_IDS[0]} again (Models ▸ Download) or point the model setting at a complete copy."
        )
    return root


def _read_config(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "config.json").read_text()))


def load_transformer(
    folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.bfloat16
) -> R2VTransformer3DModel:
    """The R2V DiT from ``<root>/transformer`` in ``dtype`` (keep-in-float32 parts stay float32)."""
    folder = Path(folder)
    config = _read_config(folder)
    with init_empty_weights():
        model = build_transformer(config)
    state = load_safetensors_folder(folder, pattern="diffusion_pytorch_model*.safetensors")
    # The official loader ignores these stray keys (diffusers' _keys_to_ignore_on_load_unexpected).
    ignored = tuple(model._keys_to_ignore_on_load_unexpected or ())
    state = {key: value for key, value in state.items() if not any(part in key for part in ignored)}
    load_strict(
        model,
        state,
        device=device,
        dtype=dtype,
        keep_float32=tuple(model._keep_in_fp32_modules or ()) if dtype != torch.float32 else (),
        what=f"R2V transformer ({folder})",
    )
    return model


def load_vae(folder: str | Path, device: torch.device | str = "cpu") -> AutoencoderKLWan:
    """The diffusers ``AutoencoderKLWan`` from ``<root>/vae``, always float32 (as the official pipeline)."""
    folder = Path(folder)
    config = {key: value for key, value in _read_config(folder).items() if not key.startswith("_")}
    with init_empty_weights():
        vae = AutoencoderKLWan.from_config(config)
    state = load_safetensors_folder(folder, pattern="diffusion_pytorch_model*.safetensors")
    load_strict(vae, state, device=device, dtype=torch.float32, what=f"R2V VAE ({folder})")
    return vae


def load_text_encoder(
    folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.bfloat16
) -> torch.nn.Module:
    """transformers ``UMT5EncoderModel`` from ``<root>/text_encoder`` (strict: missing keys are an error)."""
    from transformers import UMT5Config, UMT5EncoderModel

    folder = Path(folder)
    config = UMT5Config.from_pretrained(str(folder))
    with init_empty_weights():
        encoder = UMT5EncoderModel(config)
    state = load_safetensors_folder(folder, pattern="model*.safetensors")
    # The embedding is shared between ``shared`` and ``encoder.embed_tokens``; exports store either.
    if "shared.weight" in state and "encoder.embed_tokens.weight" not in state:
        state["encoder.embed_tokens.weight"] = state["shared.weight"]
    if "encoder.embed_tokens.weight" in state and "shared.weight" not in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    load_strict(encoder, state, device=device, dtype=dtype, what=f"R2V text encoder ({folder})")
    encoder.tie_weights()
    return encoder


def load_tokenizer(folder: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def load_components(
    root: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    text_encoder_device: torch.device | str | None = None,
    transformer_device: torch.device | str | None = None,
) -> R2VComponents:
    """Load the whole R2V folder.

    Args:
        root: the diffusers folder (local path).
        device: where the VAE (and by default everything else) lands.
        dtype: compute dtype of text encoder and transformer (bfloat16 on GPUs; float32 for parity tests).
        text_encoder_device / transformer_device: load these elsewhere (e.g. ``"cpu"`` when a memory
            policy parks them between phases).

    Raises:
        ModelsMissing: files are missing (all of them are listed).
        StateDictMismatchError: a weight file does not fit its network (keys are named).
    """
    root = require_complete(root)
    try:
        return R2VComponents(
            tokenizer=load_tokenizer(root / "tokenizer"),
            text_encoder=load_text_encoder(root / "text_encoder", text_encoder_device or device, dtype),
            transformer=load_transformer(root / "transformer", transformer_device or device, dtype),
            vae=load_vae(root / "vae", device),
            root=root,
        )
    except StateDictMismatchError as error:
        raise ModelsMissing(
            f"The reference-to-video model in {root} does not match this application's R2V model "
            f"(wrong or damaged download?): {error}"
        ) from error


def full_size_vae_state_dict() -> dict[str, torch.Tensor]:
    """State dict of the full-size diffusers ``AutoencoderKLWan`` (defaults = Wan 2.1 VAE) on meta."""
    with torch.device("meta"):
        vae = AutoencoderKLWan()
    return dict(vae.state_dict())
