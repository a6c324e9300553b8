"""Safe checkpoint loading shared by every model in ``models/``.

Owns reading state dicts from disk (``.safetensors`` through safetensors, ``.pth``/``.pt``/``.bin``
through ``torch.load(weights_only=True)``, so a checkpoint can never run code), merging a folder of
safetensors shards the way the official loaders do, and strict loads that fail with an error naming
the missing, unexpected and wrongly shaped keys.

Typical use::

    with torch.device("meta"):
        model = MyModel(**config)            # no memory allocated
    state = load_state_dict_file(path)        # {key: tensor} on the CPU
    load_strict(model, state, device="cuda", dtype=torch.bfloat16)   # assigns, casts, checks

Imports torch and safetensors only. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "PICKLE_SUFFIXES",
    "SAFETENSORS_SUFFIX",
    "StateDictMismatchError",
    "check_state_dict",
    "load_safetensors_folder",
    "load_state_dict_file",
    "load_strict",
    "meta_state_dict",
]

SAFETENSORS_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")

PathLike = str | os.PathLike[str]


class StateDictMismatchError(RuntimeError):
    """A state dict does not fit a module: lists missing, unexpected and wrongly shaped keys."""

    def __init__(
        self,
        what: str,
        missing: list[str],
        unexpected: list[str],
        wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        self.missing = missing
        self.unexpected = unexpected
        self.wrong_shape = wrong_shape
        parts = [f"state dict does not match {what}:"]
        if missing:
            parts.append(f"{len(missing)} missing keys: {_preview(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_preview(unexpected)}")
        if wrong_shape:
            shown = ", ".join(f"{k} (checkpoint {tuple(a)}, model {tuple(b)})" for k, a, b in wrong_shape[:8])
            more = f" and {len(wrong_shape) - 8} more" if len(wrong_shape) > 8 else ""
            parts.append(f"{len(wrong_shape)} keys with wrong shape: {shown}{more}")
        super().__init__("; ".join(parts))


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_state_dict_file(path: PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read one checkpoint file into ``{key: tensor}`` without executing any code from it.

    ``.safetensors`` files are read with safetensors; pickle-based files (``.pth``, ``.pt``, ``.bin``,
    ``.ckpt``) with ``torch.load(weights_only=True)`` (memory-mapped where the format allows), so a
    malicious checkpoint raises instead of running code. A pickle holding ``{"state_dict": ...}`` or
    ``{"model": ...}`` around the tensors is unwrapped.

    Args:
        path: the checkpoint file.
        device: where the tensors land (default CPU).

    Returns:
        The state dict, tensors in their stored dtype.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown suffix, or the file does not hold a flat ``{str: Tensor}`` mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        return load_file(str(path), device=str(device))
    if suffix not in PICKLE_SUFFIXES:
        raise ValueError(
            f"unknown checkpoint format {suffix!r} for {path}; expected {SAFETENSORS_SUFFIX} "
            f"or one of {', '.join(PICKLE_SUFFIXES)}"
        )
    try:
        loaded = torch.load(str(path), map_location=device, weights_only=True, mmap=True)
    except RuntimeError as error:
        # Legacy (non-zip) torch files cannot be memory-mapped; weights_only still applies.
        if "mmap" not in str(error):
            raise
        loaded = torch.load(str(path), map_location=device, weights_only=True)
    return _as_state_dict(loaded, path)


def _as_state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for wrapper in ("state_dict", "model", "module"):
            inner = loaded.get(wrapper)
            if isinstance(inner, Mapping) and len(loaded) <= 3:
                loaded = inner
                break
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    bad = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path} is not a flat tensor state dict; offending entries: {_preview(bad)}")
    return dict(loaded)


def load_safetensors_folder(
    folder: PathLike, device: str | torch.device = "cpu", pattern: str = "*.safetensors"
) -> dict[str, torch.Tensor]:
    """Merge every ``*.safetensors`` file of a folder (not recursive), as the official loaders do.

    The ``.index.json`` of a sharded checkpoint is not needed. A key present in two files is an error.

    Raises:
        FileNotFoundError: the folder holds no matching file.
        ValueError: two files define the same key.
    """
    folder = Path(folder)
    files = sorted(folder.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no {pattern} files in {folder}")
    merged: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for file in files:
        for key, tensor in load_state_dict_file(file, device).items():
            if key in merged:
                raise ValueError(f"key {key!r} is in both {origin[key]} and {file.name} in {folder}")
            merged[key] = tensor
            origin[key] = file.name
    return merged


def check_state_dict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str | None = None
) -> None:
    """Raise :class:`StateDictMismatchError` unless ``state_dict`` has exactly the module's keys and shapes."""
    expected = module.state_dict(keep_vars=True)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        (key, tuple(state_dict[key].shape), tuple(expected[key].shape))
        for key in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or wrong_shape:
        raise StateDictMismatchError(what or type(module).__name__, missing, unexpected, wrong_shape)


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    keep_float32: Iterable[str] = (),
    what: str | None = None,
) -> nn.Module:
    """Load ``state_dict`` into ``module`` strictly, by assignment (works for modules built on ``meta``).

    Every floating-point tensor is cast to ``dtype`` (when given) and moved to ``device`` (when given)
    before assignment; integer tensors keep their dtype. Keys whose name contains one of
    ``keep_float32`` stay float32. Non-persistent buffers that are still on the meta device afterwards
    are an error (the module must compute those itself, e.g. in a ``reset_buffers()`` hook).

    Args:
        module: the target, typically built under ``with torch.device("meta"):``.
        state_dict: official key names, no renaming.
        device: target device of the weights (default: keep the tensors' device).
        dtype: target floating-point dtype (default: keep the stored dtype).
        keep_float32: substrings of keys that must stay float32 regardless of ``dtype``.
        what: name used in error messages (default: the module's class name).

    Returns:
        ``module``, now holding the weights, in eval mode.

    Raises:
        StateDictMismatchError: missing, unexpected or wrongly shaped keys (all of them are named).
    """
    what = what or type(module).__name__
    check_state_dict(module, state_dict, what)
    keep = tuple(keep_float32)
    prepared: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        target_dtype = None
        if tensor.is_floating_point():
            if any(part in key for part in keep):
                target_dtype = torch.float32
            elif dtype is not None:
                target_dtype = dtype
        prepared[key] = tensor.to(device=device, dtype=target_dtype)
    module.load_state_dict(prepared, strict=True, assign=True)
    left_on_meta = [name for name, t in _named_tensors(module) if t.is_meta]
    if left_on_meta:
        raise RuntimeError(
            f"{what}: tensors still on the meta device after loading: {_preview(left_on_meta)}"
        )
    return module.eval()


def _named_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(), *module.named_buffers()]


def meta_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{key: tensor}`` of a module's persistent state (for manifests); detached, no copies."""
    return {key: value.detach() for key, value in module.state_dict(keep_vars=True).items()}
