"""The Wan-format shared components: safe loading, attention kernels, VAE, T5 + tokenizer, FlowUniPC,
tiny checkpoint writers. Tiny models on the CPU; golden numbers live in test_golden.py."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.wan.attention import attention, attention_backend, current_backend
from models.wan.loading import (
    StateDictMismatchError,
    load_safetensors_folder,
    load_state_dict_file,
    load_strict,
)
from models.wan.scheduler import FlowUniPCMultistepScheduler
from models.wan.t5 import WanT5Encoder, WanT5EncoderModel, config_from_state_dict
from models.wan.tiny import TINY_T5_CONFIG, write_tiny_wan_t5, write_tiny_wan_vae, write_wan_shared_files
from models.wan.tokenizer import clean_prompt, collapse_whitespace
from models.wan.vae import WanVAE, iter_decode_tiled
from tests.models.test_golden import GOLDEN_DIR

EXTENSION_CASE = GOLDEN_DIR / "pipelines" / "single_shot_extension"


class _Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 3)
        self.b = nn.Linear(3, 1, bias=False)


# -- loading ----------------------------------------------------------------------------------


def test_strict_load_names_missing_unexpected_and_misshaped_keys():
    state = _Small().state_dict()
    del state["a.bias"]
    state["c.weight"] = torch.zeros(1)
    state["b.weight"] = torch.zeros(2, 2)
    with pytest.raises(StateDictMismatchError) as info:
        load_strict(_Small(), state, what="small model")
    message = str(info.value)
    assert "small model" in message
    assert "missing keys: a.bias" in message
    assert "unexpected keys: c.weight" in message
    assert "b.weight (checkpoint (2, 2), model (1, 3))" in message
    assert info.value.missing == ["a.bias"] and info.value.unexpected == ["c.weight"]


def test_strict_load_assigns_onto_meta_module_with_dtype_and_keep_float32():
    source = _Small()
    with torch.device("meta"):
        target = _Small()
    load_strict(target, source.state_dict(), dtype=torch.bfloat16, keep_float32=["a.bias"])
    assert target.a.weight.dtype == torch.bfloat16 and target.a.bias.dtype == torch.float32
    assert not target.training
    torch.testing.assert_close(target.a.bias, source.a.bias, rtol=0, atol=0)


class _Payload:
    """Pickles to a call of ``_record``; loading it must not run that call."""

    ran = False

    def __reduce__(self):
        return (_record, ())


def _record():
    _Payload.ran = True
    return {}


def test_pth_loading_refuses_code_in_the_pickle(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload()}, path)
    _Payload.ran = False
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict_file(path)
    assert not _Payload.ran


def test_pth_loading_uses_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "ok.pth"
    torch.save({"w": torch.arange(3)}, path)
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    assert torch.equal(load_state_dict_file(path)["w"], torch.arange(3))
    assert seen.get("weights_only") is True


def test_pth_wrapped_state_dict_is_unwrapped_and_non_tensors_rejected(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "wrapped.pt")
    assert list(load_state_dict_file(tmp_path / "wrapped.pt")) == ["w"]
    torch.save({"w": torch.ones(2), "step": 3}, tmp_path / "mixed.pth")
    with pytest.raises(ValueError, match="not a flat tensor state dict; offending entries: step"):
        load_state_dict_file(tmp_path / "mixed.pth")


def test_unknown_suffix_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_state_dict_file(tmp_path / "nope.pth")
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        load_state_dict_file(tmp_path / "w.npz")


def test_safetensors_folder_merges_shards_and_rejects_duplicates(tmp_path):
    save_file({"a": torch.ones(2)}, str(tmp_path / "m-00001-of-00002.safetensors"))
    save_file({"b": torch.zeros(3)}, str(tmp_path / "m-00002-of-00002.safetensors"))
    merged = load_safetensors_folder(tmp_path)
    assert sorted(merged) == ["a", "b"]
    save_file({"a": torch.ones(2)}, str(tmp_path / "z-extra.safetensors"))
    with pytest.raises(ValueError, match="'a' is in both"):
        load_safetensors_folder(tmp_path)


# -- attention --------------------------------------------------------------------------------


def test_attention_kernels_agree_and_keep_layout():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 5, 3, 8, generator=gen)
    k = torch.randn(2, 7, 3, 8, generator=gen)
    v = torch.randn(2, 7, 3, 8, generator=gen)
    out = attention(q, k, v)
    assert out.shape == (2, 5, 3, 8) and out.dtype == torch.float32
    torch.testing.assert_close(out, attention(q, k, v, backend="math"), atol=1e-6, rtol=1e-5)
    # Unmasked softmax over keys, scale 1/sqrt(8), heads independent.
    expected = torch.softmax(torch.einsum("bqnd,bknd->bnqk", q, k) / 8**0.5, dim=-1)
    torch.testing.assert_close(out, torch.einsum("bnqk,bknd->bqnd", expected, v), atol=1e-6, rtol=1e-5)


def test_attention_backend_context_and_errors():
    q = torch.randn(1, 2, 1, 4)
    assert current_backend() == "auto"
    with attention_backend("math"):
        assert current_backend() == "math"
    assert current_backend() == "auto"
    with pytest.raises(ValueError, match="unknown attention backend"), attention_backend("fast"):  # type: ignore[arg-type]
        pass
    with pytest.raises(RuntimeError, match="flash"):
        attention(q, q, q, backend="flash")  # CPU tensors: not installed or CUDA only
    with pytest.raises(ValueError, match="shapes"):
        attention(q, torch.randn(1, 2, 2, 4), torch.randn(1, 2, 2, 4))


def test_auto_attention_falls_back_to_sdpa_when_a_kernel_fails(monkeypatch):
    import models.wan.attention as wan_attention

    def broken_kernel(*args, **kwargs):
        raise RuntimeError("no kernel image for this GPU")

    monkeypatch.setattr(wan_attention, "_broken", set())
    monkeypatch.setattr(wan_attention, "_auto_choice", lambda q: "flash")
    monkeypatch.setitem(wan_attention._KERNELS, "flash", broken_kernel)
    q = torch.randn(1, 3, 2, 4, generator=torch.Generator().manual_seed(7))
    with pytest.warns(UserWarning, match="'flash' failed"):
        out = attention(q, q, q)
    torch.testing.assert_close(out, attention(q, q, q, backend="sdpa"), rtol=0, atol=0)
    assert wan_attention._broken == {"flash"}
    with pytest.raises(RuntimeError, match="no kernel image"):
        attention(q, q, q, backend="flash")  # an explicit request is never silently replaced


# -- VAE --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan_tiny")
    assert write_wan_shared_files(root) == TINY_T5_CONFIG["dim"]
    return {
        "vae": root / "Wan2.1_VAE.pth",
        "t5": root / "models_t5_umt5-xxl-enc-bf16.pth",
        "tokenizer": root / "google" / "umt5-xxl",
    }


def test_tiny_writers_are_deterministic_and_sized_like_the_golden_checkpoint(tmp_path):
    a = write_tiny_wan_vae(tmp_path / "a.pth", seed=5)
    b = write_tiny_wan_vae(tmp_path / "b.pth", seed=5)
    first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    t5, tok = write_tiny_wan_t5(tmp_path / "t5.pth", tmp_path / "tok", seed=5)
    golden = EXTENSION_CASE / "checkpoint"
    for ours, theirs in [(a, golden / "Wan2.1_VAE.pth"), (t5, golden / "models_t5_umt5-xxl-enc-bf16.pth")]:
        mine, ref = torch.load(ours, weights_only=True), torch.load(theirs, weights_only=True)
        assert {k: (v.shape, v.dtype) for k, v in mine.items()} == {
            k: (v.shape, v.dtype) for k, v in ref.items()
        }
    assert sorted(p.name for p in tok.iterdir()) == sorted(
        p.name for p in (golden / "google" / "umt5-xxl").iterdir()
    )


def test_tiny_vae_file_loads_and_round_trips_shapes(tiny_files):
    vae = WanVAE.from_pth(tiny_files["vae"])
    assert vae.dtype == torch.float32 and vae.z_dim == 16
    video = torch.rand(1, 3, 9, 8, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    latents = vae.encode(video)
    assert latents.shape == (1, 16, 3, 1, 2)
    assert vae.encode(video[0, :, :1]).shape == (1, 16, 1, 1, 2)  # 4-D input, one image
    torch.testing.assert_close(vae.encode(video[:, :, :1]), latents[:, :, :1], rtol=1e-5, atol=1e-6)  # causal
    pixels = vae.decode(latents[0])  # 4-D latents, as the official decode accepts
    assert pixels.shape == (1, 3, 9, 8, 16) and pixels.dtype == torch.float32
    assert pixels.abs().max() <= 1


def test_streaming_decode_equals_whole_decode(tiny_files):
    vae = WanVAE.from_pth(tiny_files["vae"])
    latents = torch.randn(1, 16, 3, 1, 1, generator=torch.Generator().manual_seed(2))
    whole = vae.decode_raw(latents)
    groups = list(vae.iter_decode(latents, clamp=False))
    assert [g.shape[2] for g in groups] == [1, 4, 4]
    assert torch.equal(torch.cat(groups, dim=2), whole)
    pairs = list(vae.iter_decode(latents, latent_frames_per_group=2, output_device="cpu"))
    assert [g.shape[2] for g in pairs] == [5, 4]
    assert torch.equal(torch.cat(pairs, dim=2), whole.clamp(-1, 1))


class _PointwiseDecoder:
    """Stands in for the network: pixel (y, x) depends only on latent (y // 8, x // 8)."""

    def iter_decode_raw(self, z):
        for i in range(z.shape[2]):
            frame = z[:, :3, i : i + 1].repeat_interleave(8, dim=-2).repeat_interleave(8, dim=-1)
            yield frame * 0.5


@pytest.mark.parametrize(
    ("h", "w", "tile", "stride"), [(7, 11, 4, 3), (9, 5, 4, 2), (6, 6, 3, 3), (5, 8, 8, 6)]
)
def test_tiled_decode_places_and_blends_tiles_exactly(h, w, tile, stride):
    z = torch.randn(1, 16, 2, h, w, generator=torch.Generator().manual_seed(h * w))
    plain = torch.cat(list(_PointwiseDecoder().iter_decode_raw(z)), dim=2)
    tiled = torch.cat(list(iter_decode_tiled(_PointwiseDecoder(), z, tile, stride)), dim=2)  # type: ignore[arg-type]
    assert tiled.shape == plain.shape == (1, 3, 2, 8 * h, 8 * w)
    torch.testing.assert_close(tiled, plain, atol=1e-6, rtol=1e-6)


def test_vae_tiling_on_the_tiny_network(tiny_files):
    vae = WanVAE.from_pth(tiny_files["vae"])
    latents = torch.randn(1, 16, 2, 3, 4, generator=torch.Generator().manual_seed(8))
    plain = vae.decode(latents)
    vae.enable_tiling(tile_px=64, stride_px=64)  # frame (24 x 32 px) fits one tile: untiled path
    assert torch.equal(vae.decode(latents), plain)
    vae.enable_tiling(tile_px=16, stride_px=8)
    tiled = vae.decode(latents)
    assert tiled.shape == plain.shape and tiled.abs().max() <= 1
    # One tile covering the whole frame is the untiled computation.
    whole = torch.cat(list(iter_decode_tiled(vae.model, vae._denormalise(latents), 4, 4)), dim=2)
    torch.testing.assert_close(whole.clamp(-1, 1), plain, rtol=0, atol=0)
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.enable_tiling(tile_px=20, stride_px=8)
    vae.disable_tiling()
    assert torch.equal(vae.decode(latents), plain)


def test_vae_from_pth_rejects_foreign_keys(tmp_path, tiny_files):
    state = torch.load(tiny_files["vae"], weights_only=True)
    state["decoder.extra.weight"] = torch.zeros(1)
    del state["conv2.bias"]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(
        StateDictMismatchError, match=r"missing keys: conv2\.bias.*unexpected keys: decoder\.extra"
    ):
        WanVAE.from_pth(bad)


# -- T5 + tokenizer ---------------------------------------------------------------------------


def test_clean_prompt_matches_the_official_rules():
    assert clean_prompt("  a &amp;amp; b\n\t c  ") == "a & b c"
    assert clean_prompt("\u201cquoted\u201d  text") == '"quoted" text'  # ftfy uncurls quotes
    assert clean_prompt("caf\u00c3\u00a9") == "caf\u00e9"  # ftfy repairs mojibake
    assert collapse_whitespace(" x \u3000 y\u00a0z ") == "x y z"


def test_tiny_t5_files_load_and_encode(tiny_files):
    enc = WanT5Encoder.from_pth(tiny_files["t5"], tiny_files["tokenizer"], dtype=torch.float32)
    assert config_from_state_dict(enc.model.state_dict()) == TINY_T5_CONFIG
    ids, mask = enc.tokenize(["A man is walking.", "a"])
    assert ids.shape == mask.shape == (2, 512) and ids.dtype == torch.int64
    lengths = mask.sum(dim=1)
    assert ids[0, lengths[0] - 1] == 1 and ids[1, lengths[1] - 1] == 1  # trailing </s>
    assert torch.all(ids[mask == 0] == 0)  # <pad> = 0
    context = enc.encode(["A man is walking.", "a"])
    assert context.shape == (2, 512, 32)
    assert torch.all(context[mask == 0] == 0) and torch.all(context[0, : lengths[0]].abs().sum(-1) > 0)
    trimmed = enc.encode_trimmed(["A man is walking.", "a"])
    assert [t.shape[0] for t in trimmed] == lengths.tolist()
    torch.testing.assert_close(trimmed[0], context[0, : lengths[0]], rtol=0, atol=0)


def test_t5_loads_in_bfloat16_like_the_pipelines(tiny_files):
    enc = WanT5Encoder.from_pth(tiny_files["t5"], tiny_files["tokenizer"])
    assert enc.dtype == torch.bfloat16
    ref = WanT5Encoder.from_pth(tiny_files["t5"], tiny_files["tokenizer"], dtype=torch.float32)
    torch.testing.assert_close(
        enc.encode("a red light").float(), ref.encode("a red light"), atol=0.1, rtol=0.05
    )


def test_t5_on_the_golden_extension_checkpoint_gives_the_case_tokens_and_context():
    case = json.loads((EXTENSION_CASE / "case.json").read_text())
    expected = load_file(str(EXTENSION_CASE / "expected.safetensors"))
    ckpt = EXTENSION_CASE / case["checkpoint"]
    enc = WanT5Encoder.from_pth(
        ckpt / "models_t5_umt5-xxl-enc-bf16.pth", ckpt / "google" / "umt5-xxl", dtype=torch.float32
    )
    prompt = case["parameters"]["prompt"]
    ids, mask = enc.tokenize(prompt)
    assert torch.equal(ids, expected["text.input_ids"])
    assert torch.equal(mask, expected["text.attention_mask"])
    tol = case["tolerance"]["per_output"]["text.context"]
    torch.testing.assert_close(
        enc.encode(prompt), expected["text.context"], atol=tol["atol"], rtol=tol["rtol"]
    )


def test_t5_on_the_golden_avatar_checkpoint_gives_the_case_tokens_and_context():
    case_dir = GOLDEN_DIR / "pipelines" / "talking_avatar"
    case = json.loads((case_dir / "case.json").read_text())
    expected = load_file(str(case_dir / "expected.safetensors"))
    ckpt = case_dir / case["checkpoint"]
    enc = WanT5Encoder.from_pth(
        ckpt / "models_t5_umt5-xxl-enc-bf16.pth", ckpt / "google" / "umt5-xxl", dtype=torch.float32
    )
    # Rows 0 and 2 of the case: the user prompt and the fixed connection prompt.
    prompts = [case["parameters"]["prompt"], "a person is talking"]
    ids, mask = enc.tokenize(prompts)
    assert torch.equal(ids, expected["text.input_ids"][[0, 2]])
    assert torch.equal(mask, expected["text.attention_mask"][[0, 2]])
    context = enc.encode(prompts)
    for row, name in enumerate(["text.context", "text.connection_embedding"]):
        tol = case["tolerance"]["per_output"][name]
        torch.testing.assert_close(context[row], expected[name], atol=tol["atol"], rtol=tol["rtol"])


def test_t5_rejects_a_state_dict_without_the_embedding():
    with pytest.raises(ValueError, match="token_embedding"):
        config_from_state_dict({"norm.weight": torch.ones(4)})
    model = WanT5EncoderModel(**TINY_T5_CONFIG)
    assert config_from_state_dict(model.state_dict()) == TINY_T5_CONFIG


# -- scheduler --------------------------------------------------------------------------------


def test_flow_unipc_grid_matches_the_spec():
    sched = FlowUniPCMultistepScheduler()
    sched.set_timesteps(8, shift=8.0)
    assert sched.timesteps.tolist() == [999, 982, 959, 930, 888, 827, 727, 533]
    expected = [0.999875, 0.982318, 0.959846, 0.930059, 0.888691, 0.827358, 0.727008, 0.533049, 0.0]
    torch.testing.assert_close(sched.sigmas, torch.tensor(expected), atol=1e-6, rtol=0)


def test_flow_unipc_needs_set_timesteps_and_ends_on_the_x0_prediction():
    sched = FlowUniPCMultistepScheduler()
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sched.step(torch.zeros(1), 999, torch.zeros(1))
    sched.set_timesteps(4, shift=5.0)
    sample = torch.randn(1, 4, 2, 2, 2, generator=torch.Generator().manual_seed(3))
    velocity = torch.randn(1, 4, 2, 2, 2, generator=torch.Generator().manual_seed(4))
    for t in sched.timesteps:
        # A constant velocity field: x0 = x - sigma * v is the same at every step.
        x0 = sample - sched.sigmas[sched.step_index or 0] * velocity
        sample = sched.step(velocity, t, sample).prev_sample
    torch.testing.assert_close(sample, x0, atol=1e-5, rtol=1e-5)


def test_golden_case_files_are_present():
    assert Path(EXTENSION_CASE / "case.json").is_file(), (
        f"golden folder {GOLDEN_DIR} lacks the pipeline cases"
    )


# -- memory options ---------------------------------------------------------------------------

# fp8 (e4m3) keeps ~3 significant bits: on the tiny encoder the features move by ~1.5 % RMS and stay
# within cosine 0.9997 of the float32 ones (bfloat16: ~0.4 %). The bounds leave ~3x margin.
FP8_MAX_RELATIVE_RMS = 0.05
FP8_MIN_COSINE = 0.999


def test_t5_fp8_storage_stays_close_to_float32(tiny_files):
    prompts = ["A man is making his way forward slowly, leaning on a white cane.", "a red light"]
    ref = WanT5Encoder.from_pth(tiny_files["t5"], tiny_files["tokenizer"], dtype=torch.float32)
    fp8 = WanT5Encoder.from_pth(tiny_files["t5"], tiny_files["tokenizer"], fp8=True)
    assert fp8.model.blocks[0].attn.q.weight.dtype == torch.float8_e4m3fn
    assert fp8.model.blocks[0].ffn.fc2.weight.dtype == torch.float8_e4m3fn
    assert fp8.model.norm.weight.dtype == torch.bfloat16 and fp8.dtype == torch.bfloat16
    expected = ref.encode(prompts)
    actual = fp8.encode(prompts).float()
    assert actual.dtype == torch.float32 and actual.shape == expected.shape
    valid = expected.abs().sum(dim=-1) > 0
    assert torch.all(actual[~valid] == 0)
    relative_rms = (actual - expected).pow(2).mean().sqrt() / expected.pow(2).mean().sqrt()
    assert relative_rms < FP8_MAX_RELATIVE_RMS
    cosine = torch.nn.functional.cosine_similarity(actual[valid], expected[valid], dim=-1)
    assert cosine.min() > FP8_MIN_COSINE
    with pytest.raises(RuntimeError, match="fp8"):
        fp8.to(dtype=torch.float32)


def test_components_follow_their_weights_when_moved_or_cast(tiny_files):
    vae = WanVAE.from_pth(tiny_files["vae"])
    latents = torch.randn(1, 16, 2, 1, 1, generator=torch.Generator().manual_seed(6))
    reference = vae.decode(latents)
    vae.to(dtype=torch.bfloat16)  # statistics are cast per call, like the official .to(dtype)
    assert vae.dtype == torch.bfloat16
    decoded = vae.decode(latents)
    assert decoded.dtype == torch.float32
    torch.testing.assert_close(decoded, reference, atol=0.1, rtol=0)
    assert vae.encode(decoded).dtype == torch.float32
    vae.execution_device = torch.device("cpu")
    assert vae.device == torch.device("cpu")
    enc = WanT5Encoder.from_pth(tiny_files["t5"], tiny_files["tokenizer"], dtype=torch.float32)
    enc.to(dtype=torch.bfloat16)
    assert enc.encode("a").dtype == torch.bfloat16
