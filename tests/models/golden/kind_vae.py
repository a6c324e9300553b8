"""Golden runner for kind ``vae``: the original-format Wan2.1 VAE (``models.wan.vae``)."""

from __future__ import annotations

import torch

from models.wan.vae import LATENT_MEAN, LATENT_STD, WanVAE, WanVAEModel


def run(
    meta: dict, weights: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    # The case stores the statistics the reference wrapper used; they must be ours.
    torch.testing.assert_close(torch.tensor(meta["latent_mean"]), torch.tensor(LATENT_MEAN), rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(meta["latent_std"]), torch.tensor(LATENT_STD), rtol=0, atol=0)
    model = WanVAEModel(**meta["config"])
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    vae = WanVAE(model)
    video, latent = inputs["video"], inputs["latent"]
    return {
        "latent_mu": vae.encode(video),
        "latent_mu_first_frame": vae.encode(video[:, :, :1]),
        "decoded_raw": vae.decode_raw(latent),
        "decoded": vae.decode(latent),
    }
