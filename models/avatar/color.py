"""Colour correction of generated avatar frames towards the portrait, in CIE Lab (spec section 5.9).

Every generated frame gets the portrait's per-channel Lab mean and (population) standard deviation:
``lab' = (lab - mean_frame) * (std_portrait / std_frame) + mean_portrait``, then back to RGB (clipped to
[0, 1]) and blended with the original by ``strength`` (1 = fully corrected, the official setting).

The sRGB <-> Lab conversion is the standard one (D65 white, 2-degree observer, sRGB gamma with the
0.04045 / 0.0031308 knees, the CIE 0.008856 / 7.787 linear segment) with the same constants and order of
operations as kornia's ``rgb_to_lab`` / ``lab_to_rgb``, which the official code calls. Statistics are
per frame, so a window can be corrected in pieces with identical results.

Must not import: PySide6, ``app``.
"""

from __future__ import annotations

import torch

_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_XYZ_TO_RGB = (
    (3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
    (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
    (0.0556466391351772, -0.2040413383665112, 1.0573110696453443),
)
_D65_WHITE = (0.95047, 1.0, 1.08883)


def _mix(image: torch.Tensor, matrix: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    kernel = torch.tensor(matrix, dtype=image.dtype, device=image.device)
    return torch.einsum("...chw,oc->...ohw", image, kernel).contiguous()


def _white(image: torch.Tensor) -> torch.Tensor:
    return torch.tensor(_D65_WHITE, dtype=image.dtype, device=image.device)[:, None, None]


def rgb_to_lab(image: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] sRGB in [0, 1] -> Lab (L in 0..100)."""
    linear = torch.where(image > 0.04045, torch.pow((image + 0.055) / 1.055, 2.4), image / 12.92)
    xyz = _mix(linear, _RGB_TO_XYZ) / _white(image)
    threshold = 0.008856
    f = torch.where(xyz > threshold, torch.pow(xyz.clamp(min=threshold), 1 / 3.0), 7.787 * xyz + 4.0 / 29.0)
    fx, fy, fz = f[..., 0, :, :], f[..., 1, :, :], f[..., 2, :, :]
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] Lab -> sRGB clipped to [0, 1]."""
    lightness, a, b = image[..., 0, :, :], image[..., 1, :, :], image[..., 2, :, :]
    fy = (lightness + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp(min=0.0)
    f = torch.stack([fx, fy, fz], dim=-3)
    xyz = torch.where(f > 0.2068966, torch.pow(f, 3.0), (f - 4.0 / 29.0) / 7.787) * _white(image)
    linear = _mix(xyz, _XYZ_TO_RGB)
    threshold = 0.0031308
    rgb = torch.where(
        linear > threshold, 1.055 * torch.pow(linear.clamp(min=threshold), 1 / 2.4) - 0.055, 12.92 * linear
    )
    return rgb.clamp(0.0, 1.0)


class ColourMatcher:
    """Gives frames the Lab statistics of one reference image; the reference's statistics are computed
    once (a window is matched decode group by decode group against the same portrait).

    Args:
        reference: [1, 3, 1, H, W] in [-1, 1].
        strength: 1 = fully corrected (official), 0 = unchanged.
    """

    def __init__(self, reference: torch.Tensor, strength: float = 1.0) -> None:
        self.strength = strength
        ref = ((reference + 1.0) * 0.5).float()[:, :, 0]
        ref_lab = rgb_to_lab(ref).reshape(ref.shape[0], ref.shape[1], -1)
        self._ref_std, self._ref_mean = torch.std_mean(ref_lab, dim=-1, keepdim=True, unbiased=False)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """[1, 3, T, H, W] in [-1, 1] -> the same, matched, in the input dtype."""
        if self.strength == 0.0:
            return frames
        strength = self.strength
        b, c, t, h, w = frames.shape
        source = ((frames + 1.0) * 0.5).float().permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        source_lab = rgb_to_lab(source).reshape(b * t, c, -1)
        source_std, source_mean = torch.std_mean(source_lab, dim=-1, keepdim=True, unbiased=False)
        source_std = source_std.clamp_min(1e-6)
        ref_std = self._ref_std.repeat_interleave(t, dim=0)
        ref_mean = self._ref_mean.repeat_interleave(t, dim=0)
        corrected = (source_lab - source_mean) * (ref_std / source_std) + ref_mean
        corrected_rgb = lab_to_rgb(corrected.reshape(b * t, c, h, w))
        blended = corrected_rgb if strength == 1.0 else (1.0 - strength) * source + strength * corrected_rgb
        blended = blended.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return (blended * 2.0 - 1.0).to(frames.dtype)


def match_colors(frames: torch.Tensor, reference: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Give each frame of ``frames`` [1, 3, T, H, W] the Lab statistics of ``reference`` [1, 3, 1, H, W]
    (both in [-1, 1]); returns [-1, 1] frames in the input dtype."""
    return ColourMatcher(reference, strength)(frames)


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8 by truncation, as the official ``process_video_samples``."""
    return ((frames + 1) * 127.5).clamp(0, 255).to(torch.uint8)
