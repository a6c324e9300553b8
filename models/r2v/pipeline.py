"""Reference-to-video generation (spec sections 3.1, 3.3, 3.4, 3.6, 3.7).

Owns the typed request (:class:`R2VRequest`) and its validation, the quality presets, reference
letterboxing, prompt encoding, latent preparation with the official random-draw order, the sampling
loop (diffusers ``UniPCMultistepScheduler``, flow prediction, shift 5, dual guidance) and a streaming
VAE decode to uint8 frames.

Official behaviour kept on purpose:

* The **first** reference picks the resolution bucket (spec 2.1); a user-picked aspect (``"16:9"`` ...)
  overrides it and selects the bucket closest to that aspect (documented in ``models.buckets``).
* References are fitted into the bucket with PIL LANCZOS and centred on **white**; alpha is dropped.
* Frames ``24·duration + 1`` at 24 fps; latent frames ``6·duration + 1``; four reference slots, unused
  ones zero.
* Random draws, in order, from one generator seeded with the request's seed: the initial noise, then
  one posterior sample per reference. Our generator is a CPU ``torch.Generator`` on every device, so a
  seed gives the same video on any machine (the official CUDA generator's stream differs from it; the
  golden vectors were made with the CPU generator, which we match).
* Guidance is off at the default 1.0 (one forward per step); above 1 the official dual guidance runs.

Presets (``core.generation.Quality``):

* ``FINAL``: the official defaults: 8 steps, shift 5.0, guidance 1.0, the requested resolution.
* ``DRAFT``: 4 steps at 480P (the smallest bucket table), same shift and guidance: half the
  forwards, and a 720P request renders ~2.3x fewer tokens per frame (1590 vs 3600 at 16:9).
  An explicit ``steps`` in the request overrides either preset.

Imports torch, diffusers, transformers, PIL and ``core`` types; never PySide6 or ``app``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageOps

from core.generation import Quality, RenderRequest, RequestInvalid, Task
from models.buckets import ASPECTS, RESOLUTIONS, Bucket, BucketTable, select_bucket
from models.input_cache import InputCache, read_through
from models.pipeline_base import (
    NoiseSource,
    NullPlacement,
    RunContext,
    TextEmbeddingCache,
    install_block_cancel_checks,
)
from models.r2v.transformer import REFERENCE_SLOTS

if TYPE_CHECKING:
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler

    from models.memory import JobSize, MemoryPlan, Placement
    from models.r2v.loading import R2VComponents

FPS = 24
MAX_SEQUENCE_LENGTH = 512
FLOW_SHIFT = 5.0
MAX_REFERENCES = REFERENCE_SLOTS
MAX_DURATION_S = (
    30  # RoPE covers far more; beyond this a 14B run takes hours and the model is trained on ~5 s
)
MAX_STEPS = 100


@dataclass(frozen=True)
class Preset:
    """Sampling settings of a quality level (``resolution`` None = the requested one)."""

    steps: int
    resolution: str | None
    shift: float = FLOW_SHIFT
    guidance_scale: float = 1.0
    guidance_scale_img: float = 1.0


PRESETS: dict[Quality, Preset] = {
    Quality.FINAL: Preset(steps=8, resolution=None),
    Quality.DRAFT: Preset(steps=4, resolution="480P"),
}


@dataclass(frozen=True)
class R2VRequest:
    """One reference-to-video job, validated by :func:`validate_request` before any model loads."""

    reference_images: tuple[str, ...]
    prompt: str
    duration_s: int = 5
    resolution: str = "720P"
    aspect: str | None = None
    seed: int = 42
    steps: int | None = None
    quality: Quality = Quality.FINAL
    negative_prompt: str = ""
    guidance_scale: float | None = None
    guidance_scale_img: float | None = None

    @property
    def preset(self) -> Preset:
        return PRESETS[self.quality]

    @property
    def effective_resolution(self) -> str:
        return self.preset.resolution or self.resolution

    @property
    def effective_steps(self) -> int:
        return self.steps if self.steps is not None else self.preset.steps

    @property
    def num_frames(self) -> int:
        return FPS * self.duration_s + 1

    @property
    def num_latent_frames(self) -> int:
        return (self.num_frames - 1) // 4 + 1

    @classmethod
    def from_render_request(cls, request: RenderRequest) -> R2VRequest:
        """Map the app's job snapshot; raises :class:`RequestInvalid` for a non-R2V or odd duration."""
        if request.task != Task.REFERENCE_TO_VIDEO:
            raise RequestInvalid(f"not a reference-to-video request: {request.task.value}")
        duration = request.duration_s
        if not float(duration).is_integer():
            raise RequestInvalid(
                f"Reference-to-video makes whole seconds of video; {duration:g} s is not possible. "
                "Choose a whole number of seconds (5 is recommended)."
            )
        extra = request.extra or {}
        return cls(
            reference_images=tuple(request.reference_images),
            prompt=request.prompt,
            duration_s=int(duration),
            resolution=request.resolution,
            aspect=request.aspect,
            seed=request.seed,
            steps=request.steps,
            quality=request.quality,
            negative_prompt=str(extra.get("negative_prompt", "")),
            guidance_scale=extra.get("guidance_scale"),
            guidance_scale_img=extra.get("guidance_scale_img"),
        )


def validate_request(request: R2VRequest, cache: InputCache | None = None) -> list[Image.Image]:
    """Check a request completely (nothing loads a model) and return its reference images (RGB), read
    through ``cache`` when given (shared with other renders: not to be modified).

    Raises:
        RequestInvalid: with a message naming what to change.
    """
    count = len(request.reference_images)
    if count == 0:
        raise RequestInvalid(
            "Add at least one reference image (up to 4): characters, objects or a background."
        )
    if count > MAX_REFERENCES:
        raise RequestInvalid(
            f"Reference-to-video takes at most {MAX_REFERENCES} reference images; this job has {count}. "
            "Remove some references."
        )
    if not request.prompt or not request.prompt.strip():
        raise RequestInvalid("Write a prompt describing what happens in the video.")
    if request.resolution not in RESOLUTIONS:
        raise RequestInvalid(
            f"Resolution must be one of {', '.join(RESOLUTIONS)}; got {request.resolution!r}."
        )
    if request.aspect is not None and request.aspect not in ASPECTS:
        raise RequestInvalid(
            f"Aspect must be one of {', '.join(ASPECTS)} (or automatic); got {request.aspect!r}."
        )
    if not isinstance(request.duration_s, int) or not 1 <= request.duration_s <= MAX_DURATION_S:
        raise RequestInvalid(
            f"Duration must be a whole number of seconds from 1 to {MAX_DURATION_S}; got {request.duration_s!r}."
        )
    steps = request.effective_steps
    if not 1 <= steps <= MAX_STEPS:
        raise RequestInvalid(f"Steps must be between 1 and {MAX_STEPS}; got {steps}.")
    for name in ("guidance_scale", "guidance_scale_img"):
        value = getattr(request, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise RequestInvalid(f"{name.replace('_', ' ')} must be a number of at least 0; got {value!r}.")
    if not isinstance(request.seed, int) or not 0 <= request.seed < 2**63:
        raise RequestInvalid(f"The seed must be a whole number from 0 to 2^63-1; got {request.seed!r}.")
    return [
        read_through(cache, ("reference", path), [path], lambda path=path, index=index: load_reference_image(path, index))
        for index, path in enumerate(request.reference_images)
    ]


def load_reference_image(path: str, index: int = 0) -> Image.Image:
    """Open a reference as the official ``load_image`` does (EXIF orientation applied, RGB)."""
    file = Path(path)
    label = f"Reference image {index + 1} ({file.name})"
    if not file.is_file():
        raise RequestInvalid(f"{label} does not exist: {path}")
    try:
        with Image.open(file) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            image = image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise RequestInvalid(
            f"{label} cannot be read as an image ({error}). Use a PNG, JPEG or WebP file."
        ) from error
    if image.width < 2 or image.height < 2:
        raise RequestInvalid(f"{label} is only {image.width}x{image.height} pixels; use a real picture.")
    return image


# ---------------------------------------------------------------------------------------------
# Preprocessing


def letterbox(image: Image.Image, width: int, height: int) -> Image.Image:
    """Fit ``image`` into ``width x height`` keeping its aspect (PIL LANCZOS) and centre it on white."""
    image = image.convert("RGB")
    image_ratio = image.width / image.height
    if image_ratio > width / height:
        new_width, new_height = width, int(width / image_ratio)
    else:
        new_width, new_height = int(height * image_ratio), height
    resized = image.resize((new_width, new_height), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(resized, ((width - new_width) // 2, (height - new_height) // 2))
    return canvas


def clean_prompt(text: str) -> str:
    """The official prompt cleaning: ftfy (when installed), HTML-unescape twice, collapse whitespace."""
    try:
        import ftfy
    except ImportError:  # optional: it only repairs mojibake, which typed prompts do not contain
        pass
    else:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def make_scheduler(flow_shift: float = FLOW_SHIFT) -> UniPCMultistepScheduler:
    """diffusers UniPC exactly as the official R2V wrapper configures it (its update factors cached per
    sigma grid: same results, see ``models.r2v.scheduler``)."""
    from models.r2v.scheduler import CachedUniPCMultistepScheduler

    return CachedUniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=flow_shift,
    )


@dataclass
class R2VResult:
    """Frames as uint8 ``[F, H, W, 3]`` plus what the UI shows about the render."""

    frames: np.ndarray
    fps: int
    bucket: Bucket
    steps: int
    seed: int
    trace: dict[str, torch.Tensor] = field(default_factory=dict)


class ReferenceToVideoPipeline:
    """Runs R2V jobs on loaded :class:`~models.r2v.loading.R2VComponents`.

    Thread contract: lives on the GPU worker thread; one job at a time. ``placement`` (from
    :mod:`models.memory`) moves idle networks off the GPU between phases.
    """

    def __init__(
        self,
        components: R2VComponents,
        *,
        device: torch.device | str = "cpu",
        placement: Placement | NullPlacement | None = None,
        bucket_tables: Mapping[str, BucketTable] | None = None,
    ) -> None:
        self.components = components
        self.device = torch.device(device)
        self.placement = placement or NullPlacement()
        self.bucket_tables = dict(bucket_tables or {})
        self.text_cache = TextEmbeddingCache()
        self._schedulers: dict[float, UniPCMultistepScheduler] = {}

    def _scheduler(self, shift: float) -> UniPCMultistepScheduler:
        """The pipeline's scheduler for ``shift``, built once and reused by every job, as diffusers
        pipelines reuse theirs: ``set_timesteps`` starts each run afresh (building a diffusers
        scheduler costs more than a step of a small render)."""
        scheduler = self._schedulers.get(shift)
        if scheduler is None:
            scheduler = self._schedulers[shift] = make_scheduler(shift)
        return scheduler

    # -- phases ---------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str], trace: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """UMT5 states ``[B, 512, d]`` with rows past each prompt's token count set to zero."""
        tokenizer, encoder = self.components.tokenizer, self.components.text_encoder
        tokens = tokenizer(
            [clean_prompt(text) for text in prompts],
            padding="max_length",
            max_length=MAX_SEQUENCE_LENGTH,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = tokens.input_ids, tokens.attention_mask
        device = next(encoder.parameters()).device
        states = encoder(ids.to(device), mask.to(device)).last_hidden_state
        lengths = mask.gt(0).sum(dim=1)
        keep = (torch.arange(states.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).to(states.device)
        states = states * keep.unsqueeze(-1).to(states.dtype)
        if trace is not None and "text.input_ids" not in trace:
            trace["text.input_ids"] = ids.clone()
            trace["text.attention_mask"] = mask.clone()
            trace["text.prompt_embeds"] = states.detach().float().cpu()
        return states

    @torch.no_grad()
    def encode_references(
        self, images: list[Image.Image], noise: NoiseSource, latent_hw: tuple[int, int]
    ) -> torch.Tensor:
        """Four reference slots ``[1, 16, 4, h, w]``: posterior samples (normalised), zeros after."""
        vae = self.components.vae
        vae_device = next(vae.parameters()).device
        z_dim = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
        slots = []
        for image in images:
            pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
            pixels = (pixels.to(torch.float32) / 255.0 - 0.5) / 0.5
            posterior = vae.encode(pixels[None, :, None].to(vae_device)).latent_dist
            eps = noise.draw(posterior.mean.shape).to(vae_device)
            sample = (posterior.mean + posterior.std * eps).float().cpu()
            slots.append((sample - mean) * inv_std)
        height, width = latent_hw
        while len(slots) < REFERENCE_SLOTS:
            slots.append(torch.zeros(1, z_dim, 1, height, width))
        return torch.cat(slots, dim=2)

    @torch.no_grad()
    def denoise(
        self,
        latents: torch.Tensor,
        condition: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative_embeds: torch.Tensor | None,
        request: R2VRequest,
        ctx: RunContext,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The sampling loop; returns the final latents (float32, normalised)."""
        transformer = self.components.transformer
        preset = request.preset
        guidance = request.guidance_scale if request.guidance_scale is not None else preset.guidance_scale
        guidance_img = (
            request.guidance_scale_img
            if request.guidance_scale_img is not None
            else preset.guidance_scale_img
        )
        steps = request.effective_steps
        scheduler = self._scheduler(preset.shift)
        scheduler.set_timesteps(steps, device=self.device)  # resets all of its sampling state
        if trace is not None:
            trace["scheduler.timesteps"] = scheduler.timesteps.cpu().clone()
            trace["scheduler.sigmas"] = scheduler.sigmas.cpu().clone()
        dtype = _compute_dtype(transformer)
        latents = latents.to(self.device, torch.float32)
        condition = condition.to(self.device, torch.float32)
        prompt_embeds = prompt_embeds.to(self.device, dtype)
        frames = latents.shape[2]
        use_cfg = guidance > 1.0
        if use_cfg:
            assert negative_embeds is not None
            negative_embeds = negative_embeds.to(self.device, dtype)
            uncondition = torch.zeros_like(condition)

        def predict(cond: torch.Tensor, text: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
            out = transformer(
                hidden_states=torch.cat([latents, cond], dim=2).to(dtype),
                timestep=timestep,
                encoder_hidden_states=text,
                return_dict=False,
            )[0]
            return out[:, :, :frames]

        cancel_hooks = install_block_cancel_checks(transformer, ctx)
        try:
            for index, t in enumerate(scheduler.timesteps):
                ctx.check_cancel()
                timestep = t.expand(latents.shape[0])
                prediction = predict(condition, prompt_embeds, timestep)
                if use_cfg:
                    uncond_text = predict(condition, negative_embeds, timestep)
                    uncond_all = predict(uncondition, negative_embeds, timestep)
                    prediction = (
                        uncond_all
                        + guidance_img * (uncond_text - uncond_all)
                        + guidance * (prediction - uncond_text)
                    )
                sigma = scheduler.sigmas[index].to(latents.device)
                x0 = latents - sigma * prediction.float()
                if trace is not None and index == 0:
                    trace["step0.model_output"] = prediction.detach().float().cpu()
                latents = scheduler.step(prediction, t, latents, return_dict=False)[0]
                if trace is not None:
                    name = "latents.final" if index == steps - 1 else f"latents.step{index}"
                    trace[name] = latents.detach().float().cpu()
                ctx.step(0, 1, index + 1, steps, x0.detach())
        finally:
            for handle in cancel_hooks:
                handle.remove()
        return latents.float()

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        ctx: RunContext,
        on_frames: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """Streaming decode: uint8 frames ``[F, H, W, 3]``, one latent frame of VAE work at a time.
        With ``on_frames`` each group goes there as soon as it is decoded (and none are returned)."""
        vae = self.components.vae
        weight = next(vae.parameters())  # its device and dtype (``vae.dtype`` scans every parameter)
        z_dim = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std, dtype=torch.float32).view(1, z_dim, 1, 1, 1)
        # Official de-normalisation, literally a division by the reciprocal (bit parity).
        z = (latents.float().cpu() / inv_std + mean).to(weight.device, weight.dtype)
        chunks: list[np.ndarray] = []
        for video in stream_decode(vae, z, check_cancel=ctx.check_cancel):
            if on_frames is not None:
                on_frames(to_uint8_frames(video))
            else:
                chunks.append(to_uint8_frames(video))
        return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 0, 0, 3), np.uint8)

    # -- whole job ------------------------------------------------------------------------------

    def generate(
        self,
        request: R2VRequest,
        ctx: RunContext | None = None,
        *,
        images: list[Image.Image] | None = None,
        stored_noise: Sequence[torch.Tensor] | None = None,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> R2VResult:
        """Run one job. ``images`` are the validated references (validated here when omitted).

        Raises:
            RequestInvalid: bad request (before any model runs).
            RenderCancelled: ``ctx.cancel`` was set; no VAE decode runs after it.
        """
        ctx = ctx or RunContext()
        if images is None:
            images = validate_request(request)
        resolution = request.effective_resolution
        bucket = select_bucket(
            resolution,
            image_size=images[0].size,
            aspect=request.aspect,
            table_override=self.bucket_tables.get(resolution),
        )
        refs = [letterbox(image, bucket.width, bucket.height) for image in images]
        if trace is not None:
            trace["refs.pixels"] = torch.from_numpy(np.stack([np.asarray(ref) for ref in refs]))
        guidance = (
            request.guidance_scale if request.guidance_scale is not None else request.preset.guidance_scale
        )

        ctx.status("encoding the prompt")
        prompts = (request.prompt, request.negative_prompt if guidance > 1.0 else None)
        cached = None if trace is not None else self.text_cache.get(prompts, self.device)
        if cached is None:
            text_encoder = self.components.text_encoder
            self.placement.activate(text_encoder)
            try:
                with torch.no_grad():
                    prompt_embeds = self.encode_prompt([request.prompt], trace)
                    negative_embeds = self.encode_prompt([request.negative_prompt]) if guidance > 1.0 else None
            finally:
                self.placement.park(text_encoder)
            pair = prompt_embeds if negative_embeds is None else torch.cat([prompt_embeds, negative_embeds])
            self.text_cache.put(prompts, pair)
        else:
            prompt_embeds, negative_embeds = cached[:1], (cached[1:] if guidance > 1.0 else None)
        ctx.check_cancel()

        latent_h, latent_w = bucket.height // 8, bucket.width // 8
        noise = NoiseSource(request.seed, stored_noise)
        latents = noise.draw((1, 16, request.num_latent_frames, latent_h, latent_w))
        ctx.status("encoding the references")
        with torch.no_grad():
            condition = self.encode_references(refs, noise, (latent_h, latent_w))
        if trace is not None:
            trace["latents.condition"] = condition.clone()
        ctx.check_cancel()

        ctx.status("generating")
        transformer = self.components.transformer
        self.placement.activate(transformer)
        try:
            with torch.no_grad():
                latents = self.denoise(
                    latents, condition, prompt_embeds, negative_embeds, request, ctx, trace
                )
        finally:
            self.placement.park(transformer)
        ctx.check_cancel()

        ctx.status("decoding")
        # The piece's MP4 is encoded on a background thread while the later frames decode.
        with ctx.begin_piece(0, 1) as piece, torch.no_grad():
            self.decode(latents, ctx, on_frames=piece.add)
            frames = piece.finish()
        if trace is not None:
            for index, draw in enumerate(noise.drawn):
                trace[f"noise.{index}"] = draw.clone()
        return R2VResult(
            frames=frames,
            fps=FPS,
            bucket=bucket,
            steps=request.effective_steps,
            seed=request.seed,
            trace=trace if trace is not None else {},
        )


def job_size(
    request: R2VRequest,
    images: list[Image.Image],
    bucket_tables: Mapping[str, BucketTable] | None = None,
    **sizes: Any,
) -> JobSize:
    """The :class:`models.memory.JobSize` of a validated request (full-size model unless ``sizes``)."""
    from models.memory import JobSize

    resolution = request.effective_resolution
    bucket = select_bucket(
        resolution,
        image_size=images[0].size,
        aspect=request.aspect,
        table_override=(bucket_tables or {}).get(resolution),
    )
    guidance = request.guidance_scale if request.guidance_scale is not None else request.preset.guidance_scale
    return JobSize.r2v(bucket.height, bucket.width, request.num_frames, guidance=guidance > 1.0, **sizes)


def load_pipeline(
    root: str | Path,
    *,
    device: torch.device | str,
    dtype: torch.dtype = torch.bfloat16,
    plan: MemoryPlan | None = None,
    bucket_tables: Mapping[str, BucketTable] | None = None,
) -> ReferenceToVideoPipeline:
    """Load the R2V folder and carry out a :class:`models.memory.MemoryPlan` (default: all resident).

    Parked or streamed networks are loaded straight to the CPU, so the device never holds them all.

    Raises:
        ModelsMissing: incomplete folder or weights that do not fit (everything is named).
    """
    from models.memory import (
        MemoryPlan,
        apply_transformer_policies,
        apply_vae_policies,
        keep_on_cpu,
        placement_for,
    )
    from models.r2v.loading import load_components

    plan = plan or MemoryPlan(device=str(device), compute_dtype=dtype)
    components = load_components(
        root,
        device=device,
        dtype=dtype,
        text_encoder_device="cpu" if (plan.park_idle or plan.text_encoder_on_cpu) else device,
        transformer_device="cpu" if (plan.park_idle or plan.block_streaming) else device,
    )
    if plan.text_encoder_on_cpu:
        keep_on_cpu(components.text_encoder)
    apply_transformer_policies(components.transformer, plan)
    if plan.park_idle and plan.fp8 == "torchao":
        components.transformer.to("cpu")  # torchao quantised on the device; park until the loop
    apply_vae_policies(components.vae, plan)
    return ReferenceToVideoPipeline(
        components, device=device, placement=placement_for(plan), bucket_tables=bucket_tables
    )


def _compute_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype the transformer's matmuls run in (its patch embedding's, which layerwise casting skips)."""
    patch = getattr(module, "patch_embedding", None)
    if patch is not None:
        return patch.weight.dtype
    return next(module.parameters()).dtype


def stream_decode(
    vae: AutoencoderKLWan, z: torch.Tensor, check_cancel: Callable[[], None] | None = None
) -> Iterator[torch.Tensor]:
    """Decode ``z`` ``[1, 16, T, h, w]`` yielding clamped video pieces ``[1, 3, f, H, W]`` in order.

    Same arithmetic as ``AutoencoderKLWan._decode`` in diffusers 0.34 (one latent frame per decoder
    call with the causal feature cache, clamp to [-1, 1]), but each piece is handed out at once so the
    caller can convert it to uint8 and drop the float video. With tiling enabled (and a frame larger
    than a tile) the whole tiled decode runs and is yielded in one piece.
    """
    tile_h = vae.tile_sample_min_height // vae.spatial_compression_ratio
    tile_w = vae.tile_sample_min_width // vae.spatial_compression_ratio
    if getattr(vae, "use_tiling", False) and (z.shape[-1] > tile_w or z.shape[-2] > tile_h):
        yield vae.decode(z, return_dict=False)[0]
        return
    vae.clear_cache()
    try:
        x = vae.post_quant_conv(z)
        for index in range(z.shape[2]):
            if check_cancel is not None:
                check_cancel()
            vae._conv_idx = [0]
            out = vae.decoder(x[:, :, index : index + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx)
            yield torch.clamp(out, min=-1.0, max=1.0)
    finally:
        vae.clear_cache()


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """``[1, 3, F, H, W]`` in [-1, 1] to uint8 ``[F, H, W, 3]`` as diffusers' postprocessing + PIL do.

    The rounding happens where the video is (the GPU), so a quarter of the bytes cross to the host:
    the same float32 operations one by one, and ``torch.round`` rounds halves to even as numpy does.
    """
    # Element-wise, so the layout does not change a value: the arithmetic runs on the decoder's
    # contiguous [3, F, H, W] and only the uint8 result is put in frame order.
    images = (video[0].detach().float() / 2 + 0.5).clamp_(0, 1)
    return (images * 255).round_().to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu().numpy()
