"""The Wan2.1 causal video VAE in the original ``Wan2.1_VAE.pth`` key format (spec section 2.3).

Owns :class:`WanVAEModel` (the network; its ``state_dict`` keys are exactly those of
``Wan2.1_VAE.pth``) and :class:`WanVAE`, the object the extension and avatar pipelines use:

* ``WanVAE.from_pth(path, device, dtype)``: build on the meta device, load strictly (no renaming).
* ``encode(video) -> latents``: ``[B, 3, F, H, W]`` (or ``[3, F, H, W]``) pixels in [-1, 1] to the
  posterior mean, normalised as the official code does, ``(mu - mean) * (1 / std)``, float32
  ``[B, 16, (F - 1) // 4 + 1, H / 8, W / 8]``. Frames are processed causally in chunks 1, 4, 4, ...;
  like the official code, trailing frames that do not complete a chunk of 4 are ignored.
* ``decode(latents) -> pixels``: ``[B, 16, T, h, w]`` (or ``[16, T, h, w]``) normalised latents to
  ``[B, 3, 4T - 3, 8h, 8w]`` float32 pixels clamped to [-1, 1]. Un-normalises with
  ``z / (1 / std) + mean`` (literally, for bit parity), then decodes one latent frame at a time.
* ``iter_decode(latents, ...)``: the same decode as a generator of frame groups (1 frame for the first
  latent frame, 4 for each later one, optionally merged), each optionally moved to another device, so
  a long output never sits in device memory at once. Concatenating the groups equals ``decode`` bit
  for bit: it is the very same computation.
* ``decode_raw`` / ``encode_raw_mu``: the unclamped / un-normalised variants (tests, previews).
* ``enable_tiling(tile_px=256, stride_px=192)``: optional spatially tiled decode (bounded memory for
  large frames; not bit-neutral, the official extension/avatar pipelines never tile).
* ``to(device, dtype)``; ``model`` may also be moved by a placement policy, and ``execution_device``
  overrides where calls run (for offload hooks); the latent statistics follow each call.

The causal temporal cache is an explicit per-call dictionary keyed by module, so a ``WanVAE`` holds
no per-call state and two decodes never interfere.

Imports torch only. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.wan.loading import PathLike, load_state_dict_file, load_strict, meta_state_dict

__all__ = [
    "FULL_SIZE_CONFIG",
    "LATENT_MEAN",
    "LATENT_STD",
    "WanVAE",
    "WanVAEModel",
    "full_size_state_dict",
]

# Number of past input frames each causal 3x3x3 convolution keeps between chunks.
CACHE_FRAMES = 2

# The 16 per-channel latent statistics hard-coded in the official WanVAE wrapper.
LATENT_MEAN: tuple[float, ...] = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
LATENT_STD: tuple[float, ...] = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip

# The released Wan2.1 VAE (the official code hard-codes these; no config file carries them).
FULL_SIZE_CONFIG: dict[str, Any] = {
    "dim": 96,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "dropout": 0.0,
}

# Marker for an upsampling layer that has seen its first (unpaired) frame.
_FIRST_SEEN = "first"

Cache = dict[nn.Module, Any]


class CausalConv3d(nn.Conv3d):
    """3-D convolution padded in time on the left only; ``cache`` frames replace that padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        self.time_pad = 2 * pt
        self.space_pad = (pw, pw, ph, ph)

    def forward(self, x: torch.Tensor, cache: torch.Tensor | None = None) -> torch.Tensor:
        left = self.time_pad
        if cache is not None and left > 0:
            x = torch.cat([cache.to(x.device), x], dim=2)
            left -= cache.shape[2]
        x = F.pad(x, (*self.space_pad, left, 0))
        return super().forward(x)


def _cached_conv(conv: CausalConv3d, x: torch.Tensor, cache: Cache | None) -> torch.Tensor:
    """Run ``conv`` on a chunk, using and then updating its entry of the temporal cache."""
    if cache is None:
        return conv(x)
    previous = cache.get(conv)
    keep = x[:, :, -CACHE_FRAMES:].clone()
    if keep.shape[2] < CACHE_FRAMES and previous is not None:
        keep = torch.cat([previous[:, :, -1:].to(keep.device), keep], dim=2)
    out = conv(x, previous)
    cache[conv] = keep
    return out


class RMSNorm(nn.Module):
    """``normalize(x over channels) * sqrt(C) * gamma`` (channel-first; no bias in the Wan VAE)."""

    def __init__(self, dim: int, images: bool = True) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class _NearestUpsample2x(nn.Module):
    """2x nearest-exact spatial upsampling computed in float32 (bfloat16 lacks the kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), scale_factor=(2.0, 2.0), mode="nearest-exact").type_as(x)


def _frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def _batch_to_frames(x: torch.Tensor, b: int) -> torch.Tensor:
    bt, c, h, w = x.shape
    return x.reshape(b, bt // b, c, h, w).permute(0, 2, 1, 3, 4)


class Resample(nn.Module):
    """Spatial 2x up/down sampling, optionally with a causal temporal 2x (``time_conv``)."""

    MODES = ("none", "upsample2d", "upsample3d", "downsample2d", "downsample3d")

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"unknown resample mode {mode!r}")
        self.mode = mode
        self.resample: nn.Module
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(_NearestUpsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        elif mode.startswith("downsample"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        else:
            self.resample = nn.Identity()
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        b = x.shape[0]
        if self.mode == "upsample3d" and cache is not None:
            x = self._temporal_upsample(x, cache)
        x = _batch_to_frames(self.resample(_frames_to_batch(x)), b)
        if self.mode == "downsample3d" and cache is not None:
            x = self._temporal_downsample(x, cache)
        return x

    def _temporal_upsample(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        previous = cache.get(self)
        if previous is None:
            # The first latent frame decodes to a single frame: no temporal doubling.
            cache[self] = _FIRST_SEEN
            return x
        keep = x[:, :, -CACHE_FRAMES:].clone()
        if keep.shape[2] < CACHE_FRAMES:
            before = (
                torch.zeros_like(keep) if isinstance(previous, str) else previous[:, :, -1:].to(keep.device)
            )
            keep = torch.cat([before, keep], dim=2)
        x = self.time_conv(x) if isinstance(previous, str) else self.time_conv(x, previous)
        cache[self] = keep
        b, c2, t, h, w = x.shape
        # Channels [0, c) are the even output frames, [c, 2c) the odd ones.
        x = x.reshape(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5)
        return x.reshape(b, c2 // 2, 2 * t, h, w)

    def _temporal_downsample(self, x: torch.Tensor, cache: Cache) -> torch.Tensor:
        previous = cache.get(self)
        if previous is None:
            # The first frame is kept as is (time stride 2 starts with the second chunk).
            cache[self] = x.clone()
            return x
        keep = x[:, :, -1:].clone()
        x = self.time_conv(torch.cat([previous[:, :, -1:], x], dim=2))
        cache[self] = keep
        return x


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, images=False),
            nn.SiLU(),
            nn.Dropout(dropout),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut: nn.Module = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = _cached_conv(layer, x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention applied to every frame separately."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        identity = x
        b, c, t, h, w = x.shape
        y = self.norm(_frames_to_batch(x))
        qkv = self.to_qkv(y).reshape(b * t, 1, c * 3, h * w).permute(0, 1, 3, 2).contiguous()
        q, k, v = qkv.chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v)
        y = y.squeeze(1).permute(0, 2, 1).reshape(b * t, c, h, w)
        return _batch_to_frames(self.proj(y), b) + identity


def _run(layers: nn.Sequential, x: torch.Tensor, cache: Cache | None) -> torch.Tensor:
    for layer in layers:
        if isinstance(layer, CausalConv3d):
            x = _cached_conv(layer, x, cache)
        elif isinstance(layer, ResidualBlock | AttentionBlock | Resample):
            x = layer(x, cache)
        else:
            x = layer(x)
    return x


def _middle(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        ResidualBlock(dim, dim, dropout), AttentionBlock(dim), ResidualBlock(dim, dim, dropout)
    )


def _head(out_dim: int, channels: int) -> nn.Sequential:
    return nn.Sequential(
        RMSNorm(out_dim, images=False), nn.SiLU(), CausalConv3d(out_dim, channels, 3, padding=1)
    )


class Encoder3d(nn.Module):
    def __init__(
        self,
        dim: int,
        z_dim: int,
        dim_mult: Sequence[int],
        num_res_blocks: int,
        attn_scales: Sequence[float],
        temperal_downsample: Sequence[bool],
        dropout: float,
    ) -> None:
        super().__init__()
        dims = [dim * u for u in [1, *dim_mult]]
        scale = 1.0
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        out_dim = dims[0]
        for i, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
            for _ in range(num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim, dropout))
                if scale in attn_scales:
                    blocks.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                blocks.append(Resample(out_dim, "downsample3d" if temperal_downsample[i] else "downsample2d"))
                scale /= 2.0
        self.downsamples = nn.Sequential(*blocks)
        self.middle = _middle(out_dim, dropout)
        self.head = _head(out_dim, z_dim)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        x = _cached_conv(self.conv1, x, cache)
        x = _run(self.downsamples, x, cache)
        x = _run(self.middle, x, cache)
        return _run(self.head, x, cache)


class Decoder3d(nn.Module):
    def __init__(
        self,
        dim: int,
        z_dim: int,
        dim_mult: Sequence[int],
        num_res_blocks: int,
        attn_scales: Sequence[float],
        temperal_upsample: Sequence[bool],
        dropout: float,
    ) -> None:
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1], *dim_mult[::-1]]]
        scale = 1.0 / 2 ** (len(dim_mult) - 2)
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = _middle(dims[0], dropout)
        blocks: list[nn.Module] = []
        out_dim = dims[0]
        for i, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
            if i in (1, 2, 3):
                # Each upsampling conv halves the channels it hands on.
                in_dim = in_dim // 2
            for _ in range(num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim, out_dim, dropout))
                if scale in attn_scales:
                    blocks.append(AttentionBlock(out_dim))
                in_dim = out_dim
            if i != len(dim_mult) - 1:
                blocks.append(Resample(out_dim, "upsample3d" if temperal_upsample[i] else "upsample2d"))
                scale *= 2.0
        self.upsamples = nn.Sequential(*blocks)
        self.head = _head(out_dim, 3)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        x = _cached_conv(self.conv1, x, cache)
        x = _run(self.middle, x, cache)
        x = _run(self.upsamples, x, cache)
        return _run(self.head, x, cache)


class WanVAEModel(nn.Module):
    """The Wan2.1 VAE network (``Wan2.1_VAE.pth`` keys). Works on raw (un-normalised) latents.

    Constructor arguments are the official ones (``temperal_downsample`` spelled as there).
    """

    def __init__(
        self,
        dim: int = 96,
        z_dim: int = 16,
        dim_mult: Sequence[int] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_scales: Sequence[float] = (),
        temperal_downsample: Sequence[bool] = (False, True, True),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.temperal_downsample = list(temperal_downsample)
        self.encoder = Encoder3d(
            dim, z_dim * 2, dim_mult, num_res_blocks, attn_scales, temperal_downsample, dropout
        )
        self.conv1 = CausalConv3d(z_dim * 2, z_dim * 2, 1)
        self.conv2 = CausalConv3d(z_dim, z_dim, 1)
        self.decoder = Decoder3d(
            dim, z_dim, dim_mult, num_res_blocks, attn_scales, list(temperal_downsample)[::-1], dropout
        )

    def encode_moments(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, F, H, W]`` -> posterior ``(mu, log_var)``, each ``[B, z, (F - 1) // 4 + 1, H/8, W/8]``."""
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"encode expects [B, 3, F, H, W] pixels, got {tuple(video.shape)}")
        cache: Cache = {}
        chunks = [video[:, :, :1]] + [
            video[:, :, 1 + 4 * i : 5 + 4 * i] for i in range((video.shape[2] - 1) // 4)
        ]
        out = torch.cat([self.encoder(chunk, cache) for chunk in chunks], dim=2)
        mu, log_var = self.conv1(out).chunk(2, dim=1)
        return mu, log_var

    def iter_decode_raw(self, z: torch.Tensor) -> Iterator[torch.Tensor]:
        """Un-normalised latents ``[B, z, T, h, w]`` -> one pixel group per latent frame (1, then 4 frames)."""
        if z.dim() != 5 or z.shape[1] != self.z_dim:
            raise ValueError(f"decode expects [B, {self.z_dim}, T, h, w] latents, got {tuple(z.shape)}")
        cache: Cache = {}
        for i in range(z.shape[2]):
            # conv2 is 1x1x1, so applying it frame by frame equals applying it to the whole tensor.
            yield self.decoder(self.conv2(z[:, :, i : i + 1]), cache)


def _ramp(extent: int, like: torch.Tensor) -> torch.Tensor:
    """Weights 0, 1/extent, ..., (extent-1)/extent of the incoming tile across an overlap."""
    return torch.arange(extent, device=like.device, dtype=like.dtype) / extent


def _blend_rows(above: torch.Tensor, tile: torch.Tensor, extent: int) -> torch.Tensor:
    extent = min(extent, above.shape[-2], tile.shape[-2])
    if extent <= 0:
        return tile
    w = _ramp(extent, tile).view(-1, 1)
    tile = tile.clone()
    tile[..., :extent, :] = above[..., -extent:, :] * (1 - w) + tile[..., :extent, :] * w
    return tile


def _blend_cols(left: torch.Tensor, tile: torch.Tensor, extent: int) -> torch.Tensor:
    extent = min(extent, left.shape[-1], tile.shape[-1])
    if extent <= 0:
        return tile
    w = _ramp(extent, tile)
    tile = tile.clone()
    tile[..., :extent] = left[..., -extent:] * (1 - w) + tile[..., :extent] * w
    return tile


def iter_decode_tiled(
    model: WanVAEModel, z: torch.Tensor, tile_latent: int, stride_latent: int
) -> Iterator[torch.Tensor]:
    """Like :meth:`WanVAEModel.iter_decode_raw`, decoding overlapping spatial tiles and blending them.

    Each tile keeps its own causal cache, so memory is bounded by one tile's activations. Tiles start
    every ``stride_latent`` latent pixels and are ``tile_latent`` wide; the overlap is cross-faded
    linearly. Not bit-identical to the untiled decode (the tiles see zero padding at their borders).
    """
    if not 0 < stride_latent <= tile_latent:
        raise ValueError(f"need 0 < stride ({stride_latent}) <= tile ({tile_latent})")
    h, w = z.shape[-2:]
    rows = list(range(0, max(h - tile_latent + stride_latent, 1), stride_latent))
    cols = list(range(0, max(w - tile_latent + stride_latent, 1), stride_latent))
    streams = [
        [model.iter_decode_raw(z[..., r : r + tile_latent, c : c + tile_latent]) for c in cols] for r in rows
    ]
    scale = 8
    extent = (tile_latent - stride_latent) * scale
    keep = stride_latent * scale
    for _ in range(z.shape[2]):
        tiles = [[next(stream) for stream in row] for row in streams]
        out_rows = []
        for i, row in enumerate(tiles):
            pieces = []
            for j, tile in enumerate(row):
                if i > 0:
                    tile = _blend_rows(tiles[i - 1][j], tile, extent)
                if j > 0:
                    tile = _blend_cols(row[j - 1], tile, extent)
                row[j] = tile
                last_col = j == len(row) - 1
                pieces.append(tile if last_col else tile[..., :keep])
            strip = torch.cat(pieces, dim=-1)
            out_rows.append(strip if i == len(tiles) - 1 else strip[..., :keep, :])
        yield torch.cat(out_rows, dim=-2)[..., : h * scale, : w * scale]


def _as_batch(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.dim() == 4:
        return x.unsqueeze(0)
    if x.dim() == 5:
        return x
    raise ValueError(f"{what} must be 4-D or 5-D, got shape {tuple(x.shape)}")


class WanVAE:
    """Normalising wrapper around :class:`WanVAEModel`, as the extension/avatar pipelines use it.

    Holds no per-call state (the causal caches live inside each call). Lives on the GPU worker.
    Offload-friendly: ``model`` may be moved between devices at any time (e.g. by a placement
    policy); each call runs where the weights are, or on ``execution_device`` when set (for hooks
    that keep weights on the CPU and stream them in). The latent statistics follow the call.
    """

    def __init__(self, model: WanVAEModel) -> None:
        self.model = model.eval().requires_grad_(False)
        self.execution_device: torch.device | None = None
        self.tiling: tuple[int, int] | None = None  # (tile, stride) in latent pixels
        z = model.z_dim
        if z != len(LATENT_MEAN):
            raise ValueError(
                f"the Wan2.1 latent statistics have {len(LATENT_MEAN)} channels, the VAE has {z}"
            )
        # The official wrapper keeps [mean, 1/std] with 1/std computed in float32, and casts both to
        # the VAE's dtype; kept here in float32 and cast per call.
        self.mean = torch.tensor(LATENT_MEAN).view(1, z, 1, 1, 1)
        self.inv_std = (1.0 / torch.tensor(LATENT_STD)).view(1, z, 1, 1, 1)

    def _stat(self, stat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return stat.to(device=like.device, dtype=self.dtype)

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        state_dict: dict[str, torch.Tensor] | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> WanVAE:
        """Build from constructor arguments; load ``state_dict`` strictly when given (else random init)."""
        if state_dict is None:
            with torch.device(device):
                model = WanVAEModel(**config).to(dtype)
            return cls(model)
        with torch.device("meta"):
            model = WanVAEModel(**config)
        load_strict(model, state_dict, device=device, dtype=dtype, what="Wan2.1 VAE")
        return cls(model)

    @classmethod
    def from_pth(
        cls,
        path: PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        config: dict[str, Any] | None = None,
    ) -> WanVAE:
        """Load ``Wan2.1_VAE.pth`` (or a ``.safetensors`` with the same keys) strictly.

        The sizes are the released ones unless ``config`` is given; if the file's conv1 width
        differs from ``config['dim']`` (tiny test checkpoints), the base width is taken from the file.

        Raises:
            StateDictMismatchError: the file's keys or shapes do not fit the network.
        """
        state = load_state_dict_file(Path(path))
        config = dict(config or FULL_SIZE_CONFIG)
        conv1 = state.get("encoder.conv1.weight")
        if conv1 is not None and conv1.shape[0] != config["dim"]:
            config["dim"] = int(conv1.shape[0])
        return cls.from_config(config, state, device=device, dtype=dtype)

    @property
    def device(self) -> torch.device:
        """Where calls run: ``execution_device`` if set, else the weights' device."""
        if self.execution_device is not None:
            return self.execution_device
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def z_dim(self) -> int:
        return self.model.z_dim

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> WanVAE:
        """Move (and optionally cast) the network; returns ``self``."""
        self.model.to(device=device, dtype=dtype)
        return self

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels ``[B, 3, F, H, W]`` / ``[3, F, H, W]`` in [-1, 1] -> normalised latent mean, float32 5-D."""
        mu, _ = self.model.encode_moments(_as_batch(video, "video").to(self.device, self.dtype))
        return ((mu - self._stat(self.mean, mu)) * self._stat(self.inv_std, mu)).float()

    @torch.no_grad()
    def encode_raw_mu(self, video: torch.Tensor) -> torch.Tensor:
        """Posterior mean without normalisation (float32)."""
        mu, _ = self.model.encode_moments(_as_batch(video, "video").to(self.device, self.dtype))
        return mu.float()

    def _denormalise(self, latents: torch.Tensor) -> torch.Tensor:
        z = _as_batch(latents, "latents").to(self.device, self.dtype)
        return z / self._stat(self.inv_std, z) + self._stat(self.mean, z)

    def enable_tiling(self, tile_px: int = 256, stride_px: int = 192) -> None:
        """Decode in overlapping ``tile_px`` squares every ``stride_px`` pixels (diffusers' defaults).

        Bounds decoder memory by one tile for large frames; frames no larger than a tile decode
        untiled. Not bit-neutral: tiles are cross-faded over their ``tile_px - stride_px`` overlap.
        """
        if tile_px % 8 or stride_px % 8 or not 0 < stride_px <= tile_px:
            raise ValueError(
                f"tile ({tile_px}) and stride ({stride_px}) must be multiples of 8, 0 < stride <= tile"
            )
        self.tiling = (tile_px // 8, stride_px // 8)

    def disable_tiling(self) -> None:
        self.tiling = None

    def _raw_stream(self, z: torch.Tensor) -> Iterator[torch.Tensor]:
        if self.tiling is not None and (z.shape[-2] > self.tiling[0] or z.shape[-1] > self.tiling[0]):
            return iter_decode_tiled(self.model, z, *self.tiling)
        return self.model.iter_decode_raw(z)

    @torch.no_grad()
    def iter_decode(
        self,
        latents: torch.Tensor,
        *,
        latent_frames_per_group: int = 1,
        clamp: bool = True,
        output_device: str | torch.device | None = None,
    ) -> Iterator[torch.Tensor]:
        """Decode as a stream of float32 pixel groups ``[B, 3, n, H, W]``.

        Args:
            latents: normalised latents ``[B, 16, T, h, w]`` or ``[16, T, h, w]``.
            latent_frames_per_group: latent frames per yielded group (the first latent frame gives
                1 pixel frame, each later one 4).
            clamp: clamp to [-1, 1] like ``decode`` (False gives ``decode_raw``).
            output_device: move each group there (e.g. ``"cpu"``) before yielding.
        """
        if latent_frames_per_group < 1:
            raise ValueError("latent_frames_per_group must be >= 1")
        pending: list[torch.Tensor] = []
        for piece in self._raw_stream(self._denormalise(latents)):
            pending.append(piece)
            if len(pending) == latent_frames_per_group:
                yield self._finish(pending, clamp, output_device)
                pending = []
        if pending:
            yield self._finish(pending, clamp, output_device)

    @staticmethod
    def _finish(
        pieces: list[torch.Tensor], clamp: bool, output_device: str | torch.device | None
    ) -> torch.Tensor:
        out = (pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)).float()
        if clamp:
            out = out.clamp_(-1, 1)
        return out if output_device is None else out.to(output_device)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> float32 pixels ``[B, 3, 4T - 3, 8h, 8w]`` clamped to [-1, 1]."""
        return torch.cat(list(self.iter_decode(latents)), dim=2)

    @torch.no_grad()
    def decode_raw(self, latents: torch.Tensor) -> torch.Tensor:
        """Like :meth:`decode` without the final clamp."""
        return torch.cat(list(self.iter_decode(latents, clamp=False)), dim=2)


def full_size_state_dict() -> dict[str, torch.Tensor]:
    """State dict of the released-size network built on the meta device (manifest check)."""
    with torch.device("meta"):
        model = WanVAEModel(**FULL_SIZE_CONFIG)
    return meta_state_dict(model)
