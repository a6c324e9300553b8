"""Wan-format open-clip XLM-RoBERTa ViT-H/14 (``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``)
and the avatar's image preprocessing for it.

The checkpoint holds the FULL CLIP state dict (``visual.*``, ``textual.*``, ``log_scale``) and the official
loader loads it strictly, so :class:`WanClip` declares every one of those parameters. Only the vision
tower ever runs: :func:`load_clip_vision` checks the full key set strictly, then drops the text tower so
its ~560 M parameters never occupy memory.

The avatar takes the output of all transformer blocks but the last (31 of 32), without post-norm or head
(spec section 5.5). Layer norms are computed in float32 and cast back.

Must not import: PySide6, ``app``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.wan.attention import attention

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CHECKPOINT_NAME = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"


@dataclass(frozen=True)
class ClipConfig:
    """``clip_xlm_roberta_vit_h_14`` arguments (the official code hard-codes these; defaults = release)."""

    embed_dim: int = 1024
    image_size: int = 224
    patch_size: int = 14
    vision_dim: int = 1280
    vision_mlp_ratio: float = 4
    vision_heads: int = 16
    vision_layers: int = 32
    vocab_size: int = 250002
    max_text_len: int = 514
    type_size: int = 1
    pad_id: int = 1
    text_dim: int = 1024
    text_heads: int = 16
    text_layers: int = 24
    norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipConfig:
        """Accept the official kwargs; pooling/activation/dropout entries must be the release's values."""
        if data.get("vision_pool", "token") != "token" or data.get("activation", "gelu") != "gelu":
            raise ValueError("only the token-pooled, exact-GELU XLM-R ViT-H/14 layout is supported")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 (weights too, as under the official fp16 autocast) and cast back to
    the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type_as(x)


class VisionAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.to_qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, c = x.shape
        q, k, v = self.to_qkv(x).view(b, s, 3, self.num_heads, c // self.num_heads).unbind(2)
        return self.proj(attention(q, k, v).reshape(b, s, c))


class VisionBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, num_heads: int, eps: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = LayerNorm32(dim, eps=eps)
        self.attn = VisionAttention(dim, num_heads)
        self.norm2 = LayerNorm32(dim, eps=eps)
        # index 3 is the official (inactive) dropout; it holds no parameters
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTower(nn.Module):
    """ViT with class token, learned positions, ``pre_norm`` after the embedding, pre-LN blocks."""

    def __init__(self, config: ClipConfig) -> None:
        super().__init__()
        dim = config.vision_dim
        patches = (config.image_size // config.patch_size) ** 2
        self.patch_embedding = nn.Conv2d(
            3, dim, kernel_size=config.patch_size, stride=config.patch_size, bias=False
        )
        self.cls_embedding = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.zeros(1, patches + 1, dim))
        self.pre_norm = LayerNorm32(dim, eps=config.norm_eps)
        self.transformer = nn.Sequential(
            *[
                VisionBlock(dim, config.vision_mlp_ratio, config.vision_heads, config.norm_eps)
                for _ in range(config.vision_layers)
            ]
        )
        self.post_norm = LayerNorm32(dim, eps=config.norm_eps)
        self.head = nn.Parameter(torch.zeros(dim, config.embed_dim))

    def forward(self, pixels: torch.Tensor, skip_last_blocks: int = 1) -> torch.Tensor:
        """[B, 3, S, S] normalised pixels -> [B, 1 + patches, dim] hidden states after all blocks but the
        last ``skip_last_blocks`` (no post-norm, no head)."""
        x = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_embedding.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pre_norm(x + self.pos_embedding)
        for block in list(self.transformer)[: len(self.transformer) - skip_last_blocks]:
            x = block(x)
        return x


class TextBlock(nn.Module):
    """XLM-R post-norm block; present for the strict load only (the avatar never encodes text)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.attn = nn.Module()
        for name in ("q", "k", "v", "o"):
            self.attn.add_module(name, nn.Linear(dim, dim))
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))
        self.norm2 = nn.LayerNorm(dim, eps=eps)


class TextTower(nn.Module):
    """Parameter layout of the XLM-R text tower with its projection head (``textual.*``). Not runnable:
    it exists so that the official ``.pth`` is checked with ``strict=True``."""

    def __init__(self, config: ClipConfig) -> None:
        super().__init__()
        dim = config.text_dim
        self.token_embedding = nn.Embedding(config.vocab_size, dim, padding_idx=config.pad_id)
        self.type_embedding = nn.Embedding(config.type_size, dim)
        self.pos_embedding = nn.Embedding(config.max_text_len, dim, padding_idx=config.pad_id)
        self.blocks = nn.ModuleList([TextBlock(dim, config.norm_eps) for _ in range(config.text_layers)])
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        mid = (dim + config.embed_dim) // 2
        self.head = nn.Sequential(
            nn.Linear(dim, mid, bias=False), nn.GELU(), nn.Linear(mid, config.embed_dim, bias=False)
        )


class WanClip(nn.Module):
    """The full XLM-R CLIP parameter set: ``visual``, ``textual`` and ``log_scale``."""

    def __init__(self, config: ClipConfig) -> None:
        super().__init__()
        self.config = config
        self.visual = VisionTower(config)
        self.textual = TextTower(config)
        self.log_scale = nn.Parameter(torch.zeros([]))


def preprocess(videos: torch.Tensor, image_size: int = 224) -> torch.Tensor:
    """[B, 3, F, H, W] pixels in [-1, 1] -> [B*F, 3, S, S] CLIP input: bicubic squash to S x S (no crop, no
    antialias, ``align_corners=False``), then [0, 1], then the CLIP mean/std."""
    frames = videos.transpose(1, 2).reshape(-1, videos.shape[1], videos.shape[3], videos.shape[4])
    resized = F.interpolate(
        frames.float(), size=(image_size, image_size), mode="bicubic", align_corners=False
    )
    resized = resized * 0.5 + 0.5
    mean = torch.tensor(CLIP_MEAN, dtype=resized.dtype, device=resized.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=resized.dtype, device=resized.device).view(1, 3, 1, 1)
    return (resized - mean) / std


class ClipImageEncoder:
    """Vision tower + preprocessing as the avatar pipeline calls it. Lives on the GPU worker."""

    def __init__(self, visual: VisionTower, image_size: int = 224) -> None:
        self.visual = visual
        self.image_size = image_size

    def to(self, device: torch.device | str) -> ClipImageEncoder:
        self.visual.to(device)
        return self

    @torch.no_grad()
    def encode(self, videos: torch.Tensor) -> torch.Tensor:
        """[B, 3, 1, H, W] in [-1, 1] -> [B, 257, width] features (31-of-32 block output)."""
        device = self.visual.patch_embedding.weight.device
        return self.visual(preprocess(videos.to(device), self.image_size))


def load_clip_vision(
    state_dict: dict[str, torch.Tensor], config: ClipConfig | None = None, dtype: torch.dtype = torch.float16
) -> ClipImageEncoder:
    """Strict load of the full CLIP state dict, keeping only the vision tower, cast to ``dtype`` (the
    official pipeline runs it in float16).

    Raises:
        StateDictMismatchError: any missing, unexpected or wrongly shaped key (all named).
    """
    config = config or ClipConfig()
    from models.wan.loading import load_strict

    with torch.device("meta"):
        model = WanClip(config)
    load_strict(model, state_dict, what="XLM-R CLIP")
    visual = model.visual.to(dtype).eval().requires_grad_(False)
    return ClipImageEncoder(visual, config.image_size)


def config_from_state_dict(state: dict[str, torch.Tensor], vision_heads: int | None = None) -> ClipConfig:
    """Sizes read from a CLIP state dict's shapes. Head counts are not visible in shapes: the vision tower
    gets ``vision_heads`` or, by default, the release's head width of 80 (1280 / 16)."""
    patch = state["visual.patch_embedding.weight"]
    dim = int(patch.shape[0])
    blocks = {key.split(".")[2] for key in state if key.startswith("visual.transformer.")}
    text_blocks = {key.split(".")[2] for key in state if key.startswith("textual.blocks.")}
    text_dim = int(state["textual.token_embedding.weight"].shape[1])
    patches = int(state["visual.pos_embedding"].shape[1]) - 1
    return ClipConfig(
        embed_dim=int(state["visual.head"].shape[1]),
        image_size=round(patches**0.5) * int(patch.shape[-1]),
        patch_size=int(patch.shape[-1]),
        vision_dim=dim,
        vision_mlp_ratio=state["visual.transformer.0.mlp.0.weight"].shape[0] / dim,
        vision_heads=vision_heads or max(1, dim // 80),
        vision_layers=len(blocks),
        vocab_size=int(state["textual.token_embedding.weight"].shape[0]),
        max_text_len=int(state["textual.pos_embedding.weight"].shape[0]),
        type_size=int(state["textual.type_embedding.weight"].shape[0]),
        text_dim=text_dim,
        text_heads=max(1, text_dim // 64),
        text_layers=len(text_blocks),
    )


def full_size_state_dict() -> dict[str, torch.Tensor]:
    """The full-size XLM-R ViT-H/14 CLIP on the meta device: keys, shapes and dtypes of the release."""
    with torch.device("meta"):
        model = WanClip(ClipConfig())
    return dict(model.state_dict())
