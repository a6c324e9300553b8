"""wav2vec2 audio features at video rate (``chinese-wav2vec2-base``), as the talking avatar consumes them.

:class:`VideoRateWav2Vec2` is ``transformers.Wav2Vec2Model`` (same parameters and key names, loads the
release's ``pytorch_model.bin`` with ``from_pretrained``) with one extra entry point: the CNN features are
linearly resampled to the video frame count BEFORE the feature projection and the transformer encoder
(eager attention), exactly as the official ``modules/wav2vec2.py`` does (spec 5.4).

:func:`audio_embedding` turns a 16 kHz waveform into ``[frames, layers, hidden]``: every encoder layer's
output (the embedding output excluded), one row per 25 fps video frame.

Must not import: PySide6, ``app``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from models.avatar.audio import SAMPLE_RATE, linear_interpolation, video_frames_for

FOLDER = "chinese-wav2vec2-base"


class VideoRateWav2Vec2(Wav2Vec2Model):
    """``Wav2Vec2Model`` whose features are aligned to video frames. Runs on the CPU in float32 in the
    official pipeline; not thread-safe."""

    def __init__(self, config: Wav2Vec2Config) -> None:
        config._attn_implementation = "eager"  # the reference forces eager attention
        super().__init__(config)

    def video_rate_features(self, input_values: torch.Tensor, num_frames: int) -> torch.Tensor:
        """[B, samples] normalised waveform -> [B, num_frames, conv_dim[-1]] CNN features resampled
        linearly (``align_corners=True``) to ``num_frames``."""
        features = self.feature_extractor(input_values).transpose(1, 2)
        return linear_interpolation(features, num_frames)

    def encode_video_rate(self, input_values: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, ...]:
        """Hidden states at video rate: a tuple of ``num_hidden_layers + 1`` tensors [B, num_frames, hidden]
        (index 0 = encoder input after the positional convolution and layer norm, then each layer)."""
        self.config._attn_implementation = "eager"  # from_pretrained may have picked another kernel
        features = self.video_rate_features(input_values, num_frames)
        hidden, _ = self.feature_projection(features)
        output = self.encoder(hidden, output_hidden_states=True, return_dict=True)
        return tuple(output.hidden_states)


def audio_embedding(
    speech: np.ndarray,
    feature_extractor: Wav2Vec2FeatureExtractor,
    model: VideoRateWav2Vec2,
    sample_rate: int = SAMPLE_RATE,
    fps: int = 25,
) -> torch.Tensor:
    """16 kHz mono waveform -> float32 [ceil(seconds * fps), layers, hidden] on the CPU."""
    values = feature_extractor(np.asarray(speech), sampling_rate=sample_rate).input_values
    device = next(model.parameters()).device
    input_values = torch.from_numpy(np.squeeze(np.asarray(values))).float().unsqueeze(0).to(device)
    with torch.no_grad():
        hidden_states = model.encode_video_rate(input_values, video_frames_for(len(speech), sample_rate, fps))
    stacked = torch.stack(hidden_states[1:], dim=1).squeeze(0)  # [layers, frames, hidden]
    return stacked.transpose(0, 1).float().cpu().contiguous()


def load_wav2vec2(folder: str | os.PathLike[str]) -> tuple[Wav2Vec2FeatureExtractor, VideoRateWav2Vec2]:
    """Feature extractor + model from a local ``chinese-wav2vec2-base`` folder (float32, eval, CPU)."""
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    model = VideoRateWav2Vec2.from_pretrained(str(folder), local_files_only=True)
    return extractor, model.float().eval().requires_grad_(False)
