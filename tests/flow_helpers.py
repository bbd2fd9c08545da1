"""Small synthetic latent and feature caches in the documented format (docs/caches.md), for recipe tests."""
from __future__ import annotations

import json
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


def truths_with_hits(n: int = 2) -> list[dict]:
    """FoleyWorld ground truths built in code (no rendering), the first with hits in [0, 1) s and in [2.5, 3.5) s."""
    from foleyflow.world.config import WorldConfig, split_seed_range
    from foleyflow.world.physics import plan_clip
    from foleyflow.world.truth import build_truth

    cfg = WorldConfig(duration_s=8.0, size=64)
    out = []
    for k in range(60):
        scene, sim = plan_clip(split_seed_range("train")[0] + k, "train", cfg)
        truth = build_truth(f"t{k}", scene, sim, sim.events, cfg)
        hits = hit_times(truth)
        if (any(t < 1 for t in hits) and any(2.5 <= t < 3.5 for t in hits)) or (out and hits):
            out.append(truth)
            if len(out) == n:
                return out
    raise AssertionError("no FoleyWorld scene with hits where the test needs them")


def hit_times(truth: dict) -> list[float]:
    """The discrete onsets of the truth's plan (what the track's onset channel marks)."""
    from foleyflow.cot import plan_from_truth

    return sorted(t for src in plan_from_truth(truth).sources for t in src.onsets)


def make_plan_caches(folder: Path) -> tuple[Path, Path, list[float]]:
    """Caches of 1 s windows (flow_helpers' sizes): entries c0 (clip0 from 0 s), c1 (clip0 from 2.5 s, a start that
    is not a whole latent frame: 78.125 frames), c2 (clip1, from 0 s), c3 (clip2, no ground truth); a manifest with
    FoleyWorld truths (their hit times returned per clip)."""
    from foleyflow.data.cache import CacheWriter

    folder.mkdir(parents=True, exist_ok=True)
    truths = truths_with_hits(2)
    for k, truth in enumerate(truths):
        (folder / f"clip{k}.json").write_text(json.dumps(truth))
    rows = [{"id": "clip0", "audio": "a.wav", "truth": "clip0.json"}, {"id": "clip1", "audio": "a.wav",
                                                                        "truth": "clip1.json"},
            {"id": "clip2", "audio": "a.wav"}]
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    g = torch.Generator().manual_seed(0)
    lat = CacheWriter(folder / "latents", "latents", {"vae": {"kind": "vae", "sha256": "0" * 64, "path": "x"}})
    feat = CacheWriter(folder / "features", "features", {})
    ids = ["c0", "c1", "c2", "c3"]
    for i, key in enumerate(ids):
        base = torch.sin(torch.linspace(0, 6.28 * (i + 1), LATENT_LEN))[:, None] * torch.ones(CHANNELS)
        lat.add(key, {"mean": base + 0.5, "std": torch.full((LATENT_LEN, CHANNELS), 0.05)})
        feat.add(key, {"visual": torch.randn(VISUAL_LEN, DIM, generator=g), "sync": torch.randn(SYNC_LEN, DIM, generator=g),
                       "text": torch.randn(TEXT_LEN, DIM, generator=g), "has_video": torch.ones(1)})
    windows = {"c0": ["clip0", 0.0], "c1": ["clip0", 2.5], "c2": ["clip1", 0.0], "c3": ["clip2", 0.0]}
    lat.close(info={"duration_s": DURATION_S, "latent_mean": [0.5] * CHANNELS, "latent_std": [0.7] * CHANNELS,
                    "manifest": str(folder / "manifest.jsonl"), "windows": windows})
    feat.close(info={"duration_s": DURATION_S}, extras={"empty_text": torch.zeros(TEXT_LEN, DIM)})
    return folder / "latents", folder / "features", [hit_times(t) for t in truths]
