"""A complete tiny talking-avatar checkpoint in the official flat layout (tests, demos, the tiny factory).

:func:`write_tiny_avatar_checkpoint` writes, with random but seeded weights (same seed, same bytes):

* ``config.json`` + the DiT weights (bfloat16) split over two root ``*.safetensors`` shards with an index;
* ``models_t5_umt5-xxl-enc-bf16.pth``, ``google/umt5-xxl/`` and ``Wan2.1_VAE.pth`` (``models.wan.tiny``);
* ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``: the FULL CLIP state dict (``visual.*``,
  ``textual.*``, ``log_scale``), float32, vision width 160 (2 heads of the release's width 80, so the
  loader infers every size) at the real 224 px / patch 14 (257 tokens, hard-wired in the DiT);
* ``xlm-roberta-large/``: a small XLM-R-style tokenizer (the official code loads it, nothing uses it);
* ``chinese-wav2vec2-base/``: ``config.json``, ``pytorch_model.bin`` (float32), ``preprocessor_config.json``.

Every size is in a config file or readable from the tensor shapes, so
:func:`models.avatar.pipeline.load_components` needs no ``sizes``. The real buckets are far too large
for a CPU; :data:`TINY_BUCKETS` keeps the official keys with small sizes (pass it as ``bucket_tables``).

Imports torch, safetensors, tokenizers, transformers. Never imports PySide6 or ``app``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from models.avatar.clip import CHECKPOINT_NAME as CLIP_FILE
from models.avatar.clip import ClipConfig, WanClip
from models.avatar.pipeline import BUCKETS
from models.avatar.transformer import AvatarTransformer, AvatarTransformerConfig
from models.avatar.wav2vec2 import FOLDER as WAV2VEC2_DIR
from models.wan.tiny import seeded

TINY_CLIP_CONFIG = ClipConfig(
    embed_dim=32,
    vision_dim=160,
    vision_mlp_ratio=2,
    vision_heads=2,
    vision_layers=3,
    vocab_size=256,
    text_dim=32,
    text_heads=2,
    text_layers=1,
)

TINY_WAV2VEC2_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16] * 7,
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_bias": False,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "layerdrop": 0.0,
    "final_dropout": 0.0,
}


def tiny_transformer_config(text_dim: int) -> AvatarTransformerConfig:
    return AvatarTransformerConfig(
        text_len=512,
        dim=32,
        ffn_dim=64,
        freq_dim=32,
        text_dim=text_dim,
        num_heads=2,
        num_layers=2,
        intermediate_dim=16,
        output_dim=32,
        context_tokens=4,
        clip_dim=TINY_CLIP_CONFIG.vision_dim,
        audio_layers=TINY_WAV2VEC2_CONFIG["num_hidden_layers"],
        audio_channels=TINY_WAV2VEC2_CONFIG["hidden_size"],
    )


def _tiny_table(table: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """Same keys, sides scaled to about 1/20 and rounded to multiples of 16 (at least 16)."""
    return {
        key: (max(16, 16 * round(h / 320)), max(16, 16 * round(w / 320))) for key, (h, w) in table.items()
    }


TINY_BUCKETS: dict[str, dict[str, tuple[int, int]]] = {name: _tiny_table(t) for name, t in BUCKETS.items()}


def write_transformer(root: Path, config: AvatarTransformerConfig, seed: int) -> None:
    """``config.json`` (official field names) and two bfloat16 safetensors shards plus their index."""
    from safetensors.torch import save_file

    model = seeded(lambda: AvatarTransformer(config), seed)
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    fields = config.to_dict()
    for hard_coded in ("clip_dim", "audio_layers", "audio_channels"):
        fields.pop(hard_coded)
    fields["patch_size"] = list(config.patch_size)
    fields.update(
        {"_class_name": "WanModel", "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True}
    )
    (root / "config.json").write_text(json.dumps(fields, indent=2))
    keys = sorted(state)
    half = len(keys) // 2
    shards = {
        "diffusion_pytorch_model-00001-of-00002.safetensors": keys[:half],
        "diffusion_pytorch_model-00002-of-00002.safetensors": keys[half:],
    }
    weight_map = {}
    for name, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, str(root / name))
        weight_map.update(dict.fromkeys(shard_keys, name))
    index = {"metadata": {"total_size": sum(v.numel() * 2 for v in state.values())}, "weight_map": weight_map}
    (root / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def write_clip(path: Path, seed: int) -> None:
    model = WanClip(TINY_CLIP_CONFIG)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.05, generator=generator)
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)


def write_xlmr_tokenizer(folder: Path) -> None:
    """A small XLM-R-style tokenizer (``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3)."""
    import string

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaTokenizerFast

    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(ch, -5.0) for ch in string.ascii_letters + string.digits + string.punctuation]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, model_max_length=512)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))


def write_wav2vec2(folder: Path, seed: int) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    model = seeded(lambda: Wav2Vec2Model(Wav2Vec2Config(**TINY_WAV2VEC2_CONFIG)), seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=False)
    extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
    extractor.save_pretrained(str(folder))


def write_tiny_avatar_checkpoint(folder: str | Path, seed: int = 0) -> Path:
    """Write a complete tiny avatar checkpoint into ``folder`` (created) and return it."""
    from models.wan import tiny as wan_tiny

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    text_dim = wan_tiny.write_wan_shared_files(root, seed=seed)
    write_transformer(root, tiny_transformer_config(text_dim), seed + 10)
    write_clip(root / CLIP_FILE, seed + 11)
    write_xlmr_tokenizer(root / "xlm-roberta-large")
    write_wav2vec2(root / WAV2VEC2_DIR, seed + 12)
    return root
