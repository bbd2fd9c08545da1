"""Aesthetic reward: a no-reference audio-quality predictor in the spirit of Audiobox Aesthetics (Tjandra et al. 2025),
trained on graded degradations of true FoleyWorld `train` audio (`foleyflow.rewards.degrade`), since FoleyWorld has
no human ratings.

Input features per channel: the 64-band natural-log mel (32 ms window, 10 ms hop) and its frame-to-frame difference,
for left and right (4 x 64 channels), normalised by the clip's mean level. Network: three dilated 1-D convolutions over
time, mean + standard-deviation pooling, an MLP -> one logit; quality = sigmoid(logit) in (0, 1), 1 = clean.
Training target: quality = 1 - severity (0 clean .. 1 worst), an MSE on the quality plus a pairwise logistic ranking
loss between clips of the batch with different severities. Departure from Audiobox Aesthetics: one axis (production
quality) instead of four, a small convolutional network instead of a WavLM backbone, synthetic labels.

    q = AestheticRewardModel(AestheticRewardConfig()).score(audio, RewardConditions())   # (B,) in (0, 1)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.audio import MelSetting, log_mel_spectrogram
from foleyflow.rewards.common import RewardConditions, check_audio, load_reward, save_reward

KIND = "reward_aesthetic"


@dataclass
class AestheticRewardConfig:
    n_mels: int = 64
    width: int = 96
    dilations: tuple[int, ...] = (1, 2, 4)
    rank_weight: float = 1.0

    @property
    def mel(self) -> MelSetting:
        return MelSetting(16_000, 512, 160, 512, self.n_mels, 0.0, 8000.0, "ln")


class AestheticRewardModel(nn.Module):
    def __init__(self, cfg: AestheticRewardConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.inp = nn.Conv1d(4 * cfg.n_mels, w, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv1d(w, w, 3, padding=d, dilation=d) for d in cfg.dilations)
        self.norms = nn.ModuleList(nn.GroupNorm(1, w) for _ in cfg.dilations)
        self.head = nn.Sequential(nn.Linear(2 * w, w), nn.GELU(), nn.Linear(w, 1))

    def logits(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 2, num_samples) at 16 kHz -> (B,) quality logits."""
        mel = log_mel_spectrogram(check_audio(audio), self.cfg.mel)  # (B, 2, n_mels, T) at 100 fps
        mel = mel - mel.mean((1, 2, 3), keepdim=True)
        diff = F.pad(mel[..., 1:] - mel[..., :-1], (1, 0))
        x = torch.cat([mel, diff], 1).flatten(1, 2) / 4.0  # (B, 4 * n_mels, T)
        x = F.gelu(self.inp(x))
        for conv, norm in zip(self.convs, self.norms):
            x = x + F.gelu(norm(conv(x)))
        stats = torch.cat([x.mean(-1), x.std(-1)], 1)
        return self.head(stats)[:, 0]

    def score(self, audio: torch.Tensor, conditions: RewardConditions | None = None) -> torch.Tensor:
        """(B,) predicted quality in (0, 1): 1 = clean, 0 = the worst degradation seen in training. Needs no
        conditions (no-reference)."""
        return torch.sigmoid(self.logits(audio))

    def loss(self, audio: torch.Tensor, severity: torch.Tensor) -> dict[str, torch.Tensor]:
        """audio (B, 2, N), severity (B,) in [0, 1] -> {"aesthetic/mse", "aesthetic/rank", "aesthetic/total",
        "aesthetic/pair_acc"}: MSE of the quality against 1 - severity, and a logistic loss on every pair of the batch
        whose severities differ by more than 0.05 (the less degraded one must score higher)."""
        z = self.logits(audio)
        target = 1.0 - severity.float()
        mse = F.mse_loss(torch.sigmoid(z), target)
        diff = target[:, None] - target[None, :]
        pairs = (diff > 0.05).float()
        margin = z[:, None] - z[None, :]
        rank = (F.softplus(-margin) * pairs).sum() / pairs.sum().clamp(min=1)
        acc = ((margin > 0).float() * pairs).sum() / pairs.sum().clamp(min=1)
        return {"aesthetic/mse": mse, "aesthetic/rank": rank, "aesthetic/total": mse + self.cfg.rank_weight * rank,
                "aesthetic/pair_acc": acc}


def save_aesthetic_reward(path, model: AestheticRewardModel, provenance: dict | None = None):
    return save_reward(path, model, KIND, provenance)


def load_aesthetic_reward(path) -> AestheticRewardModel:
    return load_reward(path, KIND, AestheticRewardConfig, AestheticRewardModel)
