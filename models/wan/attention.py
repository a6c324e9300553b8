"""Full (unmasked) multi-head attention for the Wan-format DiTs, with a selectable kernel.

The official ``attention`` / ``flash_attention`` entry points never apply a padding mask (they ignore
their length arguments) and scale by ``1/sqrt(head_dim)``. :func:`attention` keeps exactly those
semantics. Its kernels:

* ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` in the inputs' own dtype (float32
  inputs give float32 attention, which is what the golden vectors use). Works on every device.
* ``"math"``: an explicit ``softmax(q k^T * scale) v`` in float32 (reference for tests).
* ``"flash"``: flash-attn 3 (``flash_attn_interface``) or 2 (``flash_attn``) when installed, CUDA
  only; float32 inputs are cast to bfloat16 for the kernel, as the official code does, and the result
  is cast back to the input dtype.
* ``"sage"``: SageAttention (``sageattention.sageattn``) when installed, CUDA only, half dtypes.
* ``"auto"`` (default): flash, then sage, when installed and the tensors are half precision on CUDA;
  SDPA otherwise. So CPU runs and float32 runs always take SDPA. A kernel that raises under
  ``"auto"`` (unsupported GPU, head size, broken build) is reported once with a warning and replaced
  by SDPA for the rest of the process; an explicitly requested kernel is never replaced.

The kernel is chosen per call (``backend=``) or for a block of code with the context manager
:func:`attention_backend` (a context variable: it applies to the current thread/task only).

Layout: ``q [B, Lq, N, D]``, ``k, v [B, Lk, N, D]`` (heads on dim 2, like the official code);
the result is ``[B, Lq, N, D]`` in the dtype of ``q``.

Imports torch only (flash-attn / sageattention lazily). Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import math
import warnings
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, Literal

import torch
import torch.nn.functional as F

__all__ = [
    "BACKENDS",
    "AttentionBackend",
    "attention",
    "attention_backend",
    "available_backends",
    "current_backend",
]

AttentionBackend = Literal["auto", "sdpa", "math", "flash", "sage"]
BACKENDS: tuple[str, ...] = ("auto", "sdpa", "math", "flash", "sage")
_HALF = (torch.float16, torch.bfloat16)

# Kernels that failed once under "auto" in this process (not retried).
_broken: set[str] = set()

_current: contextvars.ContextVar[str] = contextvars.ContextVar("wan_attention_backend", default="auto")


@contextlib.contextmanager
def attention_backend(name: AttentionBackend) -> Iterator[None]:
    """Use kernel ``name`` for every :func:`attention` call without an explicit ``backend`` inside the block."""
    _validate(name)
    token = _current.set(name)
    try:
        yield
    finally:
        _current.reset(token)


def current_backend() -> str:
    """The kernel name selected by the innermost :func:`attention_backend` block (default ``"auto"``)."""
    return _current.get()


def _validate(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")


@cache
def _flash_impl() -> Callable[..., Any] | None:
    """``flash_attn_func`` of flash-attn 3 if installed, else of flash-attn 2, else None."""
    for module_name in ("flash_attn_interface", "flash_attn"):
        if importlib.util.find_spec(module_name) is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # installed but built for another torch/CUDA
            continue
        func = getattr(module, "flash_attn_func", None)
        if func is not None:
            return func  # type: ignore[no-any-return]
    return None


@cache
def _sage_impl() -> Callable[..., Any] | None:
    if importlib.util.find_spec("sageattention") is None:
        return None
    try:
        module = importlib.import_module("sageattention")
    except ImportError:
        return None
    return getattr(module, "sageattn", None)


def available_backends() -> list[str]:
    """Kernels usable in this process (``flash``/``sage`` only if their packages import)."""
    names = ["auto", "sdpa", "math"]
    if _flash_impl() is not None:
        names.append("flash")
    if _sage_impl() is not None:
        names.append("sage")
    return names


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    softmax_scale: float | None = None,
    causal: bool = False,
    backend: AttentionBackend | None = None,
) -> torch.Tensor:
    """Unmasked multi-head attention, ``[B, Lq, N, D]`` x ``[B, Lk, N, D]`` -> ``[B, Lq, N, D]``.

    Args:
        q: queries ``[B, Lq, N, D]``.
        k: keys ``[B, Lk, N, D]``.
        v: values ``[B, Lk, N, D]``.
        softmax_scale: logit scale (default ``1/sqrt(D)``).
        causal: causal mask (the Wan models never use it).
        backend: kernel for this call; default: the one set by :func:`attention_backend`.

    Returns:
        The attention output in the dtype of ``q``.

    Raises:
        ValueError: bad shapes or an unknown backend.
        RuntimeError: an explicitly requested kernel is not installed or cannot run these tensors.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"attention expects [B, L, N, D] tensors, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if (
        k.shape[:3] != v.shape[:3]
        or q.shape[0] != k.shape[0]
        or q.shape[2] != k.shape[2]
        or q.shape[3] != k.shape[3]
    ):
        raise ValueError(
            f"attention shapes do not fit: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    name = backend or _current.get()
    _validate(name)
    out_dtype = q.dtype
    if name != "auto":
        return _KERNELS[name](q, k, v, softmax_scale, causal).to(out_dtype)
    chosen = _auto_choice(q)
    if chosen in ("flash", "sage"):
        try:
            return _KERNELS[chosen](q, k, v, softmax_scale, causal).to(out_dtype)
        except (RuntimeError, ValueError) as error:
            # An installed kernel that cannot run here (GPU architecture, head size, build mismatch):
            # fall back to SDPA, as the official code does, and stop trying that kernel.
            _broken.add(chosen)
            warnings.warn(f"attention kernel {chosen!r} failed ({error}); using torch SDPA", stacklevel=2)
    return _sdpa(q, k, v, softmax_scale, causal).to(out_dtype)


def _auto_choice(q: torch.Tensor) -> str:
    if q.is_cuda and q.dtype in _HALF:
        if "flash" not in _broken and _flash_impl() is not None:
            return "flash"
        if "sage" not in _broken and _sage_impl() is not None:
            return "sage"
    return "sdpa"


def _sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, causal: bool
) -> torch.Tensor:
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2).to(dtype),
        k.transpose(1, 2).to(dtype),
        v.transpose(1, 2).to(dtype),
        is_causal=causal,
        scale=scale,
    )
    return out.transpose(1, 2).contiguous()


def _math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, causal: bool
) -> torch.Tensor:
    qf, kf, vf = (t.transpose(1, 2).float() for t in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = torch.matmul(qf, kf.transpose(-1, -2)) * scale
    if causal:
        lq, lk = logits.shape[-2:]
        keep = torch.ones(lq, lk, dtype=torch.bool, device=logits.device).tril(lk - lq)
        logits = logits.masked_fill(~keep, float("-inf"))
    return torch.matmul(logits.softmax(dim=-1), vf).transpose(1, 2).contiguous()


def _half(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in _HALF else t.to(torch.bfloat16)


def _flash(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, causal: bool
) -> torch.Tensor:
    func = _flash_impl()
    if func is None:
        raise RuntimeError("attention backend 'flash' requested but flash-attn is not installed")
    if not q.is_cuda:
        raise RuntimeError(f"flash-attn runs on CUDA tensors only, got {q.device}")
    qh, kh, vh = _half(q), _half(k), _half(v)
    kh, vh = kh.to(qh.dtype), vh.to(qh.dtype)
    result = func(qh, kh, vh, softmax_scale=scale, causal=causal)
    # flash-attn 3 (and flash-attn 2 before 2.5.9 with return_attn_probs) return a tuple.
    return result[0] if isinstance(result, tuple) else result


def _sage(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None, causal: bool
) -> torch.Tensor:
    func = _sage_impl()
    if func is None:
        raise RuntimeError("attention backend 'sage' requested but sageattention is not installed")
    if not q.is_cuda:
        raise RuntimeError(f"SageAttention runs on CUDA tensors only, got {q.device}")
    qh, kh, vh = _half(q), _half(k), _half(v)
    kh, vh = kh.to(qh.dtype), vh.to(qh.dtype)
    return func(qh, kh, vh, tensor_layout="NHD", is_causal=causal, sm_scale=scale)  # type: ignore[no-any-return]


_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "sdpa": _sdpa,
    "math": _math,
    "flash": _flash,
    "sage": _sage,
}
