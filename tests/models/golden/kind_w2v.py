"""Golden runner for kind ``w2v``: wav2vec2 features resampled to 25 fps before the encoder, and the
per-frame audio embedding the avatar pipeline slices its windows from."""

from __future__ import annotations

from typing import Any

import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

from models.avatar.wav2vec2 import VideoRateWav2Vec2, audio_embedding


def run(
    meta: dict[str, Any], weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    model = VideoRateWav2Vec2(Wav2Vec2Config(**meta["config"])).float().eval()
    model.load_state_dict({key: value.float() for key, value in weights.items()}, strict=True)
    extractor = Wav2Vec2FeatureExtractor(**meta["feature_extractor_config"])
    seq_len = int(inputs["seq_len"])
    input_values = inputs["input_values"].float()
    hidden_states = model.encode_video_rate(input_values, seq_len)
    return {
        "audio_embedding": audio_embedding(inputs["speech"].float().numpy(), extractor, model),
        "last_hidden_state": hidden_states[-1],
        "hidden_states": torch.cat(hidden_states, dim=0),
        "extract_features_interpolated": model.video_rate_features(input_values, seq_len),
    }
