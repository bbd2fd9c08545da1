"""Tiny reward models and media for the reward tests: models built in code, FoleyWorld clips made once per process."""
from __future__ import annotations

from pathlib import Path

import torch

from foleyflow.rewards.aesthetic import AestheticRewardConfig, AestheticRewardModel
from foleyflow.rewards.semantic import SemanticRewardConfig, SemanticRewardModel
from foleyflow.rewards.spatial import SpatialRewardConfig, SpatialRewardModel
from foleyflow.rewards.temporal import TemporalRewardConfig, TemporalRewardModel

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("semantic", "temporal", "aesthetic", "spatial")
_WORLD: dict[str, Path] = {}


def tiny_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    if name == "semantic":
        return SemanticRewardModel(SemanticRewardConfig(n_mels=16, width=16, depth=1, heads=2, embed_dim=8,
                                                        text_hidden=16))
    if name == "temporal":
        return TemporalRewardModel(TemporalRewardConfig(n_mels=16, width=16, dilations=(1, 2), max_shift_s=0.8))
    if name == "aesthetic":
        return AestheticRewardModel(AestheticRewardConfig(n_mels=16, width=16, dilations=(1, 2)))
    return SpatialRewardModel(SpatialRewardConfig(n_bands=16, width=16, layers=1))


def world_manifest(tmp_path_factory, clips: int = 4, duration_s: float = 3.0) -> Path:
    """A FoleyWorld manifest with `clips` train clips of duration_s seconds (made once per test process)."""
    import pytest

    from foleyflow.world.config import WorldConfig

    if "train" not in _WORLD:
        cfg = WorldConfig(duration_s=duration_s, size=64)
        if not Path(cfg.soundfont).is_file():
            pytest.skip(f"soundfont not installed at {cfg.soundfont}")
        from foleyflow.world.make import make_split

        out = tmp_path_factory.mktemp("reward_world")
        make_split(out, "train", clips, cfg)
        _WORLD["train"] = out / "manifest.jsonl"
    return _WORLD["train"]


def click_clip(onsets_s: list[float], duration_s: float, seed: int) -> torch.Tensor:
    """(2, num_samples): a quiet noise floor plus a 40 ms decaying noise burst at each onset (a contact sound)."""
    g = torch.Generator().manual_seed(seed)
    n = int(duration_s * 16000)
    x = 0.003 * torch.randn(2, n, generator=g)
    burst = torch.randn(640, generator=g) * torch.exp(-torch.arange(640) / 120.0) * 0.5
    for t in onsets_s:
        i = int(t * 16000)
        m = min(640, n - i)
        x[:, i:i + m] += burst[:m]
    return x.clamp(-1, 1)
