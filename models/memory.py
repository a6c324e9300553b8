"""Memory policies for the big video models and the planner that picks them (issue 4, spec section 6).

Policies, cheapest first (each is numerically neutral unless noted):

* ``GPU_RESIDENT``: every network on the compute device in bfloat16 (VAE float32).
* ``PARK_IDLE``: networks live on the CPU and visit the device only for their phase (text encoder for
  the prompt, transformer for the loop); the official ``--offload``.
* ``FP8_STORAGE``: transformer ``Linear``/``Conv`` weights stored as float8_e4m3fn and upcast per layer
  for the matmul (diffusers ``enable_layerwise_casting``), or torchao's float8 weight-only quantisation
  when torchao is installed (the official ``--low_vram`` numerics). Not neutral: fp8 rounding.
* ``BLOCK_STREAMING``: transformer blocks stay on the CPU and are streamed to the device group by
  group (diffusers ``apply_group_offloading``, ``block_level``) with prefetch on a side CUDA stream, the
  overlapped version of the official per-block ``.to("cuda")``. Measured on an H200 at 720P / 5 s, it
  costs nothing (30.2 s/step against 30.4 all resident): the next block's copy hides behind the current
  one. In bfloat16 it keeps the official numerics, so the planner prefers it to fp8 storage when host
  memory can hold the weights (docs/performance.md).
* ``CHUNKED_FFN``: the feed-forward runs on slices of the token sequence (tokens are independent in an
  FFN), so its 13824-wide intermediate never exists for all ~126k tokens at once.
* ``TILED_VAE``: diffusers VAE tiling for encode and decode (spatial tiles 256 px, stride 192 px). Not
  bit-neutral: tiles are blended.

Attention goes through torch SDPA (diffusers' Wan processor), which picks flash / memory-efficient
kernels on CUDA by itself.

:func:`plan_memory` chooses from the device's free memory and the job size; :func:`apply_transformer_policies`,
:func:`apply_vae_policies` and :class:`Placement` carry a plan out with diffusers hooks, never by
editing model code.

Imports torch and diffusers; never PySide6 or ``app``.
"""

from __future__ import annotations

import enum
import importlib.util
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook, apply_group_offloading
from torch import nn

GIB = 1024**3

# The headroom left free on the device for the allocator, CUDA context and kernels' workspaces.
HEADROOM_FRACTION = 0.10
# Host memory kept free beside the weights a plan parks or streams there (the app, the OS, decoded frames).
HOST_HEADROOM_BYTES = 6 * 1024**3
# Sequences at least this long run their FFN in chunks even when memory is plentiful: the
# intermediate of a 14B block at 720P / 5 s is ~3.5 GB in bf16 and chunking costs nothing measurable.
LONG_SEQUENCE_TOKENS = 65_536
DEFAULT_FFN_CHUNK_TOKENS = 16_384


class Policy(enum.StrEnum):
    GPU_RESIDENT = "gpu_resident"
    PARK_IDLE = "park_idle"
    FP8_STORAGE = "fp8_storage"
    BLOCK_STREAMING = "block_streaming"
    CHUNKED_FFN = "chunked_ffn"
    TILED_VAE = "tiled_vae"
    TEXT_ENCODER_ON_CPU = "text_encoder_on_cpu"


@dataclass(frozen=True)
class JobSize:
    """What a job needs: model sizes (parameters) and the transformer's sequence length.

    Defaults are the full-size R2V model (14.29 B DiT, 5.7 B UMT5-XXL encoder, 127 M VAE).
    """

    tokens: int
    frame_height: int
    frame_width: int
    transformer_params: int = 14_288_491_584
    text_encoder_params: int = 5_680_000_000
    vae_params: int = 126_892_531
    dim: int = 5120
    ffn_dim: int = 13824
    num_layers: int = 40
    forwards_per_step: int = 1  # 3 with dual guidance
    # Whether the model's official low-VRAM mode tiles the VAE decode (the extension's decodes untiled).
    low_vram_tiles_vae: bool = True

    @classmethod
    def r2v(
        cls, height: int, width: int, num_frames: int, *, guidance: bool = False, **sizes: Any
    ) -> JobSize:
        """The R2V job of ``num_frames`` pixel frames at ``height x width`` (4 reference slots added)."""
        latent_frames = (num_frames - 1) // 4 + 1
        tokens = (latent_frames + 4) * (height // 16) * (width // 16)
        return cls(
            tokens=tokens,
            frame_height=height,
            frame_width=width,
            forwards_per_step=3 if guidance else 1,
            **sizes,
        )

    # Estimates in bytes (bfloat16 weights, float32 residual stream; conservative on purpose).
    def transformer_bytes(self, fp8: bool = False) -> int:
        return int(self.transformer_params * (1.05 if fp8 else 2.0))

    def block_bytes(self, fp8: bool = False) -> int:
        return self.transformer_bytes(fp8) // self.num_layers

    def text_encoder_bytes(self) -> int:
        return self.text_encoder_params * 2

    def vae_bytes(self) -> int:
        return self.vae_params * 4

    def activation_bytes(self, ffn_chunk_tokens: int | None = None) -> int:
        """Peak transformer activations of one forward, for whichever of the three DiTs runs the job.

        Measured on an H200 (``bench/bench_full_size.py``, bf16, FFN unchunked; peak minus weights, in
        bytes per element of the ``tokens x dim`` stream): R2V 22.5 (126,000 tokens), extension 21.1
        (144,000), avatar 22.7 (75,600), with the rotary embedding applied in chunks and the
        extension's norms and residual sums kept to few whole-sequence copies. A block's peak falls in
        its attention part (float32 residual and normed input, q/k/v, the float32 q/k norms, the
        attention output); the FFN part comes after those are gone. So the estimate is the larger of:

        * attention: ``25`` bytes per element, the measurements plus a margin of 10 %;
        * FFN: float32 residual (4), bfloat16 input (2), float32 modulated input (4) and output (2) per
          element, plus the bfloat16 intermediate before and after the GELU (``2 x 2 x ffn_dim``) per
          FFN token (all tokens, or one chunk). At the full width (ffn_dim 2.7 x dim) this stays below
          the attention part even unchunked; chunking bounds it for wider FFNs.
        """
        attention = self.tokens * self.dim * 25
        ffn_tokens = min(self.tokens, ffn_chunk_tokens) if ffn_chunk_tokens else self.tokens
        ffn = self.tokens * self.dim * 12 + ffn_tokens * self.ffn_dim * 2 * 2
        return max(attention, ffn)

    def vae_decode_bytes(self, tiled: bool = False) -> int:
        """Peak of the causal decoder on one latent frame (float32 feature maps + 2-frame caches)."""
        pixels = (256 * 256) if tiled else self.frame_height * self.frame_width
        return pixels * 96 * 4 * 12


@dataclass(frozen=True)
class MemoryPlan:
    """A chosen set of policies, with the estimate and the reasons behind it (shown in the UI / logs)."""

    device: str
    compute_dtype: torch.dtype = torch.bfloat16
    park_idle: bool = False
    fp8: str | None = None  # None, "layerwise" (diffusers) or "torchao"
    block_streaming: bool = False
    blocks_per_group: int = 1
    use_stream: bool = False
    ffn_chunk_tokens: int | None = None
    tiled_vae: bool = False
    text_encoder_on_cpu: bool = False
    estimated_peak_bytes: int = 0
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def policies(self) -> tuple[Policy, ...]:
        chosen = [Policy.PARK_IDLE] if self.park_idle else [Policy.GPU_RESIDENT]
        if self.fp8:
            chosen.append(Policy.FP8_STORAGE)
        if self.block_streaming:
            chosen.append(Policy.BLOCK_STREAMING)
        if self.ffn_chunk_tokens:
            chosen.append(Policy.CHUNKED_FFN)
        if self.tiled_vae:
            chosen.append(Policy.TILED_VAE)
        if self.text_encoder_on_cpu:
            chosen.append(Policy.TEXT_ENCODER_ON_CPU)
        return tuple(chosen)

    def describe(self) -> str:
        names = ", ".join(policy.value for policy in self.policies)
        return f"{names} (peak ≈ {self.estimated_peak_bytes / GIB:.1f} GiB on {self.device}); " + "; ".join(
            self.reasons
        )


def torchao_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


def available_host_memory() -> int | None:
    """Bytes of host RAM available now (psutil); None when unknown."""
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def free_device_memory(device: torch.device | str) -> int | None:
    """Bytes on ``device`` the next job of this process may plan with; None when unknown (CPU, MPS).

    CUDA: ``mem_get_info``'s free bytes plus what this process's caching allocator holds (the loaded
    pipeline and the blocks it kept from the last render). Those are the next job's to reuse or free, so
    a second take plans as the first did instead of around the loaded model's own weights (which would
    pick a lighter plan, change the cache key and reload the model with other numerics). Memory other
    processes hold stays unavailable.
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(free) + int(torch.cuda.memory_reserved(device))
    return None


def plan_memory(
    free_bytes: int | None,
    job: JobSize,
    *,
    device: str = "cuda",
    compute_dtype: torch.dtype = torch.bfloat16,
    offload: bool = False,
    low_vram: bool = False,
    prefer_torchao: bool | None = None,
    host_free_bytes: int | None = -1,
) -> MemoryPlan:
    """Pick the cheapest policy set whose estimated peak fits ``free_bytes`` (minus headroom).

    Args:
        free_bytes: free device memory; None = unknown/unbounded (CPU), which keeps everything resident.
        job: sizes of the models and the sequence.
        device: the compute device ("cuda", "cuda:1", "cpu", "mps").
        offload / low_vram: the official flags, honoured as minimums (``offload`` parks idle models;
            ``low_vram`` adds fp8, block streaming and, unless ``job.low_vram_tiles_vae`` is off, VAE
            tiling).
        prefer_torchao: use torchao's float8 when fp8 is chosen (default: when it is installed).
        host_free_bytes: host RAM available (default: measured now; None: unknown). Streaming the blocks
            in bfloat16 needs the whole transformer, the parked text encoder and the VAE there.

    Returns:
        The plan; ``reasons`` says why each policy was chosen.
    """
    on_cuda = torch.device(device).type == "cuda"
    use_torchao = torchao_available() if prefer_torchao is None else prefer_torchao
    fp8_kind = "torchao" if use_torchao else "layerwise"
    reasons: list[str] = []
    chunk = DEFAULT_FFN_CHUNK_TOKENS if job.tokens >= LONG_SEQUENCE_TOKENS else None
    if chunk:
        reasons.append(f"{job.tokens} tokens: FFN in chunks of {chunk}")

    def text_fits(budget: int) -> bool:
        return job.text_encoder_bytes() + job.vae_bytes() <= budget

    def peak(
        park: bool, fp8: bool, stream: bool, tiled: bool, ffn_chunk: int | None, text_on_cpu: bool = False
    ) -> int:
        dit = job.transformer_bytes(fp8)
        if stream:  # two groups resident (the running one and the prefetched one) + the small rest
            dit = 2 * job.block_bytes(fp8) + dit // 100
        activations = job.activation_bytes(ffn_chunk)
        vae = job.vae_bytes()
        decode = job.vae_decode_bytes(tiled)
        text = 0 if text_on_cpu else job.text_encoder_bytes()
        if not park:
            return text + dit + vae + max(activations, decode)
        return max(text + vae, dit + vae + activations, vae + decode)

    if free_bytes is None:
        reasons.append("device memory unknown (CPU): everything resident")
        return MemoryPlan(
            device=device,
            compute_dtype=compute_dtype,
            park_idle=offload or low_vram,
            ffn_chunk_tokens=chunk,
            estimated_peak_bytes=peak(False, False, False, False, chunk),
            reasons=tuple(reasons),
        )

    budget = int(free_bytes * (1 - HEADROOM_FRACTION))
    host = available_host_memory() if host_free_bytes == -1 else host_free_bytes
    bf16_on_host = job.transformer_bytes() + job.text_encoder_bytes() + job.vae_bytes() + HOST_HEADROOM_BYTES
    candidates = [
        # (park, fp8, stream, tiled, why)
        (False, False, False, False, "everything fits on the device"),
        (True, False, False, False, "idle models parked on the CPU between phases"),
    ]
    if host is not None and host >= bf16_on_host:
        candidates.append((True, False, True, False, "transformer blocks streamed from the CPU with prefetch, in "
                           "bfloat16 (the official numerics; host RAM holds the weights)"))
    candidates += [
        (True, True, False, False, "transformer weights stored in fp8"),
        (True, True, True, False, "transformer blocks streamed from the CPU with prefetch"),
        (True, True, True, True, "VAE tiled"),
    ]
    if offload or low_vram:
        candidates = [c for c in candidates if c[0]]
        reasons.append("offload requested")
    if low_vram:
        candidates = [c for c in candidates if c[1] and c[2] and c[3] == job.low_vram_tiles_vae]
        reasons.append("low-VRAM mode requested")
    # A parked text encoder still needs the whole device for its one forward; when even that does not
    # fit (8-12 GB cards) it runs on the CPU: one 512-token forward, slow but bounded.
    text_on_cpu = not text_fits(budget)
    chosen = candidates[-1]
    for candidate in candidates:
        cpu_text = text_on_cpu and candidate[0]
        ffn_chunk = chunk
        if peak(*candidate[:4], ffn_chunk, cpu_text) > budget and ffn_chunk is None:
            ffn_chunk = DEFAULT_FFN_CHUNK_TOKENS  # try chunking before a heavier policy
        if peak(*candidate[:4], ffn_chunk, cpu_text) <= budget:
            chosen, chunk = candidate, ffn_chunk
            break
    else:
        chunk = DEFAULT_FFN_CHUNK_TOKENS
        reasons.append(f"even the lightest plan may not fit {free_bytes / GIB:.1f} GiB free")
    park, fp8, stream, tiled, why = chosen
    text_on_cpu = text_on_cpu and park
    if chunk and not any("FFN" in reason for reason in reasons):
        reasons.append(f"FFN in chunks of {chunk} tokens to fit")
    if text_on_cpu:
        reasons.append("the text encoder does not fit: it runs on the CPU")
    reasons.append(why)
    return MemoryPlan(
        device=device,
        compute_dtype=compute_dtype,
        park_idle=park,
        # torchao's float8 tensors are not streamed by group offloading's parameter swaps; streamed
        # blocks use diffusers' layerwise casting instead (same storage, per-layer upcast).
        fp8=(fp8_kind if not stream else "layerwise") if fp8 else None,
        block_streaming=stream,
        blocks_per_group=1,
        use_stream=stream and on_cuda,
        ffn_chunk_tokens=chunk,
        tiled_vae=tiled,
        text_encoder_on_cpu=text_on_cpu,
        estimated_peak_bytes=peak(park, fp8, stream, tiled, chunk, text_on_cpu),
        reasons=tuple(reasons),
    )


# ---------------------------------------------------------------------------------------------
# Carrying a plan out


class ChunkedFeedForwardHook(ModelHook):  # type: ignore[misc]
    """diffusers hook running a ``FeedForward`` on slices of the token axis (tokens are independent)."""

    def __init__(self, chunk_tokens: int) -> None:
        super().__init__()
        self.chunk_tokens = chunk_tokens

    def new_forward(
        self, module: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        forward = self.fn_ref.original_forward
        if hidden_states.dim() != 3 or hidden_states.shape[1] <= self.chunk_tokens:
            return forward(hidden_states, *args, **kwargs)
        pieces = [forward(piece, *args, **kwargs) for piece in hidden_states.split(self.chunk_tokens, dim=1)]
        return torch.cat(pieces, dim=1)


FFN_CHUNK_HOOK = "skyreels_chunked_ffn"


def enable_chunked_ffn(model: nn.Module, chunk_tokens: int) -> int:
    """Run every transformer block's FFN on slices of ``chunk_tokens`` tokens; returns how many FFNs."""
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be positive, got {chunk_tokens}")
    count = 0
    for block in getattr(model, "blocks", []):
        ffn = getattr(block, "ffn", None)
        if ffn is None:
            continue
        registry = HookRegistry.check_if_exists_or_initialize(ffn)
        if registry.get_hook(FFN_CHUNK_HOOK) is None:
            registry.register_hook(ChunkedFeedForwardHook(chunk_tokens), FFN_CHUNK_HOOK)
            count += 1
    return count


def disable_chunked_ffn(model: nn.Module) -> None:
    for block in getattr(model, "blocks", []):
        ffn = getattr(block, "ffn", None)
        if ffn is not None and hasattr(ffn, "_diffusers_hook"):
            HookRegistry.check_if_exists_or_initialize(ffn).remove_hook(FFN_CHUNK_HOOK, recurse=False)


def enable_fp8_storage(
    model: nn.Module,
    compute_dtype: torch.dtype,
    kind: str = "layerwise",
    device: torch.device | str | None = None,
) -> None:
    """Store the transformer's big weights in float8_e4m3fn.

    ``layerwise``: diffusers layerwise casting (per-layer upcast to ``compute_dtype``; patch embedding,
    condition embedder, norms and the keep-in-float32 parts are skipped). ``torchao``: float8
    weight-only quantisation of every ``nn.Linear`` (the official low-VRAM numerics; needs torchao),
    done on ``device`` as the official code does (torchao's float8 kernels need the GPU).
    """
    if kind == "torchao":
        from torchao.quantization import float8_weight_only, quantize_

        quantize_(model, float8_weight_only(), device=device)
        return
    if kind != "layerwise":
        raise ValueError(f"unknown fp8 kind {kind!r}")
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)  # type: ignore[operator]


def enable_block_streaming(
    model: nn.Module,
    onload_device: torch.device | str,
    *,
    blocks_per_group: int = 1,
    use_stream: bool | None = None,
) -> None:
    """Keep ``model``'s blocks on the CPU and stream them in per forward (diffusers group offloading).

    With ``use_stream`` (default: on CUDA) the next group is copied on a side stream while the current
    one computes, from pinned CPU memory.
    """
    onload = torch.device(onload_device)
    stream = (onload.type == "cuda") if use_stream is None else use_stream
    _let_group_offloading_run_without_accelerator()
    apply_group_offloading(
        model,
        onload_device=onload,
        offload_device=torch.device("cpu"),
        offload_type="block_level",
        num_blocks_per_group=blocks_per_group,
        non_blocking=stream,
        use_stream=stream,
    )
    model._skyreels_streamed = True  # type: ignore[assignment]


class _AcceleratorFallback:
    """``torch.accelerator`` stand-in whose ``current_accelerator()`` is the CPU when there is none."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.accelerator, name)

    @staticmethod
    def current_accelerator(*args: Any, **kwargs: Any) -> torch.device:
        return torch.accelerator.current_accelerator(*args, **kwargs) or torch.device("cpu")


class _TorchForGroupOffloading:
    """The ``torch`` module as diffusers' group offloading sees it, with :class:`_AcceleratorFallback`."""

    accelerator = _AcceleratorFallback()

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def _let_group_offloading_run_without_accelerator() -> None:
    """diffusers 0.34's group offloading evaluates ``torch.accelerator.current_accelerator().type`` on
    every onload/offload, which raises on a machine without any accelerator (our CI, CPU-only users)
    although no stream is used there. Give that one diffusers module a ``torch`` whose
    ``current_accelerator()`` falls back to the CPU (``torch.cpu`` offers the stream API it then
    touches); nothing else in the process is affected, and machines with a GPU are left alone."""
    from diffusers.hooks import group_offloading

    if torch.accelerator.current_accelerator() is None and group_offloading.torch is torch:
        group_offloading.torch = _TorchForGroupOffloading()  # type: ignore[assignment]


def is_streamed(module: nn.Module) -> bool:
    return bool(getattr(module, "_skyreels_streamed", False))


def keep_on_cpu(module: nn.Module) -> nn.Module:
    """Mark ``module`` to run where it is (the CPU): :class:`Placement` never moves it."""
    module._skyreels_stays_on_cpu = True  # type: ignore[assignment]
    return module


def _pinned_in_place(module: nn.Module) -> bool:
    return is_streamed(module) or bool(getattr(module, "_skyreels_stays_on_cpu", False))


def apply_transformer_policies(model: nn.Module, plan: MemoryPlan) -> nn.Module:
    """Apply the plan's transformer policies in a compatible order (fp8, then streaming, then FFN)."""
    if plan.fp8:
        enable_fp8_storage(model, plan.compute_dtype, plan.fp8, device=plan.device)
    if plan.block_streaming:
        enable_block_streaming(
            model, plan.device, blocks_per_group=plan.blocks_per_group, use_stream=plan.use_stream
        )
    if plan.ffn_chunk_tokens:
        enable_chunked_ffn(model, plan.ffn_chunk_tokens)
    return model


def apply_vae_policies(vae: nn.Module, plan: MemoryPlan) -> nn.Module:
    if plan.tiled_vae:
        vae.enable_tiling()  # type: ignore[operator]
    return vae


class Placement:
    """Moves networks onto the device for their phase and, when parking, back to the CPU afterwards.

    Thread contract: used by the pipeline's thread only. Streamed modules are left alone (their hooks
    move blocks themselves), and so are modules marked with :func:`keep_on_cpu`.
    """

    def __init__(self, device: torch.device | str, park_idle: bool) -> None:
        self.device = torch.device(device)
        self.park_idle = park_idle
        self.moves: list[tuple[str, str]] = []  # the latest (module class, device) moves, for logs and tests
        self._resident: set[int] = set()  # modules moved once and never parked (no park_idle)

    def activate(self, module: nn.Module) -> None:
        if _pinned_in_place(module) or id(module) in self._resident:
            return
        module.to(self.device)  # walks every parameter: done once for resident modules
        if not self.park_idle:
            self._resident.add(id(module))
        self._record(type(module).__name__, str(self.device))

    def park(self, module: nn.Module) -> None:
        if not self.park_idle or _pinned_in_place(module):
            return
        module.to("cpu")
        self._record(type(module).__name__, "cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


    def _record(self, name: str, device: str) -> None:
        self.moves.append((name, device))
        del self.moves[:-256]  # a long-lived pipeline keeps only the latest moves


def placement_for(plan: MemoryPlan) -> Placement:
    return Placement(plan.device, plan.park_idle)
