"""The evaluation side's audio-quality predictor: a small stereo-aware 2-D CNN over a log-mel image that maps a clip to
one production-quality score on Audiobox Aesthetics' 1..10 scale (Tjandra et al. 2025, "Meta Audiobox Aesthetics",
its PQ axis). Trained on FoleyWorld `evaltrain` only, on the evaluation suite's own graded degradations
(`foleyflow.eval.quality`), by `recipes/train_eval_quality.py`; it shares no weights, data, features or code with the
RL aesthetic reward (issue 18: the judge must not be the reward).

Input: (B, 2, num_samples) stereo at `sample_rate` (16 kHz). Front end: three log10-mel images of 40 ms Hann
windows at a 20 ms hop (50 frames per second), `n_mels` bands from `f_min` to `f_max`: left, right and the side
signal (L - R) / 2, so inter-channel faults (decorrelation, phase smearing) are visible to the network. The three
images are shifted by the clip's mean left/right level, so the absolute gain does not set the score.
Network: `len(channels)` blocks of two 3x3 convolutions (GroupNorm, SiLU) and a 2x2 max-pool over (mel, time); the
frequency axis is folded into the channels, a 1x1 convolution to `width`, then attention pooling over time
(softmax weights from a linear map) concatenated with the max over time, an MLP -> one logit;
score = 1 + 9 * sigmoid(logit), in (1, 10), 10 = clean.
Departures from Audiobox Aesthetics: one axis instead of four, a small CNN instead of a WavLM backbone, labels from
synthetic degradations instead of human ratings.

Checkpoint kind "eval_quality" (safetensors, config and provenance embedded): `save_quality_model`,
`load_quality_model`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.audio import MelSetting, log_mel_spectrogram

QUALITY_KIND = "eval_quality"
MIN_SCORE, MAX_SCORE = 1.0, 10.0


@dataclass
class QualityModelConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 640            # 40 ms at 16 kHz
    hop_length: int = 320            # 20 ms: 50 frames per second
    n_mels: int = 48
    f_min: float = 30.0
    f_max: float = 8000.0
    channels: tuple[int, ...] = (16, 32, 64)
    width: int = 96
    dropout: float = 0.1

    def __post_init__(self):
        from foleyflow.errors import ConfigError

        if not self.channels or min(self.channels) < 1:
            raise ConfigError("eval quality channels must be a non-empty list of positive widths")
        if self.n_mels % 2 ** len(self.channels):
            raise ConfigError(f"eval quality n_mels must be divisible by {2 ** len(self.channels)}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ConfigError("eval quality mel range must satisfy 0 <= f_min < f_max <= sample_rate / 2")

    @property
    def mel(self) -> MelSetting:
        return MelSetting(self.sample_rate, self.n_fft, self.hop_length, self.win_length, self.n_mels, self.f_min,
                          self.f_max, "log10")


class QualityModel(nn.Module):
    """(B, 2, num_samples) stereo -> (B,) quality scores in (1, 10); see the module docstring."""

    def __init__(self, cfg: QualityModelConfig):
        super().__init__()
        self.cfg = cfg
        blocks, prev = [], 3
        for c in cfg.channels:
            g = 4 if c % 4 == 0 else 1
            blocks.append(nn.Sequential(nn.Conv2d(prev, c, 3, padding=1), nn.GroupNorm(g, c), nn.SiLU(),
                                        nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(g, c), nn.SiLU()))
            prev = c
        self.blocks = nn.ModuleList(blocks)
        folded = prev * (cfg.n_mels // 2 ** len(cfg.channels))
        self.proj = nn.Conv1d(folded, cfg.width, 1)
        self.att = nn.Linear(cfg.width, 1)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Sequential(nn.Linear(2 * cfg.width, cfg.width), nn.SiLU(), nn.Linear(cfg.width, 1))

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 2, num_samples) -> (B, 3, n_mels, frames): level-normalised log10-mels of left, right and side."""
        if audio.ndim != 3 or audio.shape[1] != 2:
            raise ValueError(f"quality model input must be (B, 2, num_samples), got {tuple(audio.shape)}")
        side = 0.5 * (audio[:, :1] - audio[:, 1:])
        mel = log_mel_spectrogram(torch.cat([audio, side], 1).float(), self.cfg.mel)  # (B, 3, n_mels, T)
        return mel - mel[:, :2].mean((1, 2, 3), keepdim=True)

    def logits(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 2, num_samples) -> (B,) logits (score = 1 + 9 sigmoid(logit))."""
        x = self.features(audio)
        for block in self.blocks:
            x = F.max_pool2d(block(x), 2, ceil_mode=True)
        h = self.proj(x.flatten(1, 2)).transpose(1, 2)                   # (B, T', width)
        h = self.drop(F.silu(h))
        w = torch.softmax(self.att(h).clamp(-20, 20), dim=1)             # (B, T', 1)
        pooled = torch.cat([(w * h).sum(1), h.amax(1)], -1)
        return self.head(pooled)[:, 0]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return score_from_logits(self.logits(audio))


def score_from_logits(logits: torch.Tensor) -> torch.Tensor:
    return MIN_SCORE + (MAX_SCORE - MIN_SCORE) * torch.sigmoid(logits)


def min_samples(cfg: QualityModelConfig) -> int:
    """Shortest input the front end takes (its reflect padding needs more than (n_fft - hop) / 2 samples)."""
    return (cfg.n_fft - cfg.hop_length) // 2 + 1


def save_quality_model(path: str | Path, model: QualityModel, provenance: dict | None = None) -> Path:
    """Writes the model (float32) as kind "eval_quality" with its config and `provenance`, atomically."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import to_dict

    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    return save_checkpoint(path, sd, kind=QUALITY_KIND, config=to_dict(model.cfg), provenance=provenance or {})


def load_quality_model(path: str | Path) -> tuple[QualityModel, dict]:
    """(model in eval mode, checkpoint metadata); a wrong kind or a config that does not fit is a CheckpointError."""
    from foleyflow.checkpoint import build_checked, checkpoint_config, load_checkpoint, load_into
    from foleyflow.config import from_dict

    tensors, meta = load_checkpoint(path, kind=QUALITY_KIND)
    cfg = checkpoint_config(meta)
    model = build_checked(lambda: QualityModel(from_dict(QualityModelConfig, cfg)), tensors,
                          what=f"{QUALITY_KIND} ({path})")
    load_into(model, tensors, what=QUALITY_KIND)
    return model.eval(), meta
