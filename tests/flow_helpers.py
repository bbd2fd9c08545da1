"""Small synthetic latent and feature caches in the documented format (docs/caches.md), for recipe tests."""
from __future__ import annotations

from pathlib import Path

import torch

from foleyflow.data.cache import CacheWriter

# 1 s clips at 16 kHz: 32 latents, 8 visual frames, 2 sync segments (16 tokens)
DURATION_S, LATENT_LEN, VISUAL_LEN, SYNC_LEN = 1.0, 32, 8, 16
CHANNELS, DIM, TEXT_LEN = 4, 8, 6
MODEL_OVERRIDES = [f"model.latent_channels={CHANNELS}", f"model.visual_dim={DIM}", f"model.sync_dim={DIM}",
                   f"model.text_dim={DIM}", f"model.text_len={TEXT_LEN}"]


def make_caches(folder: Path, n: int = 8, seed: int = 0) -> tuple[Path, Path]:
    g = torch.Generator().manual_seed(seed)
    lat = CacheWriter(folder / "latents", "latents", {"vae": {"kind": "vae", "sha256": "0" * 64, "path": "x"}})
    feat = CacheWriter(folder / "features", "features", {"semantic_encoder": {"kind": "x", "sha256": "1" * 64,
                                                                              "path": "y"}})
    for i in range(n):
        base = torch.sin(torch.linspace(0, 6.28 * (i + 1), LATENT_LEN))[:, None] * torch.ones(CHANNELS)
        lat.add(f"c{i}", {"mean": base + 0.5, "std": torch.full((LATENT_LEN, CHANNELS), 0.05)})
        feat.add(f"c{i}", {"visual": torch.randn(VISUAL_LEN, DIM, generator=g),
                           "sync": torch.randn(SYNC_LEN, DIM, generator=g),
                           "text": torch.randn(TEXT_LEN, DIM, generator=g),
                           "has_video": torch.tensor([float(i % 4 != 3)])})
    lat.close(info={"duration_s": DURATION_S, "latent_mean": [0.5] * CHANNELS, "latent_std": [0.7] * CHANNELS})
    feat.close(info={"duration_s": DURATION_S}, extras={"empty_text": torch.zeros(TEXT_LEN, DIM)})
    return folder / "latents", folder / "features"
