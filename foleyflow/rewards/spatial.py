"""Spatial reward: does the stereo image put the sound where the source is on screen (StereoCRM's idea: predict the pan
over time from the stereo audio and compare it with the visual position)?

Audio model: per 16 ms STFT frame (10 ms hop) and each of 32 mel bands, the left and right log energies, their
difference (the level difference, ILD) and the magnitude-weighted mean cosine and sine of the interaural phase
difference (IPD; informative below ~1.5 kHz for a head-sized ITD) -> 5 x 32 channels at 100 fps -> 1-D convolutions
-> average pooling to PAN_FPS (10 fps) -> per frame [pan (tanh, -1 left .. 1 right), activity logit]. Trained on
FoleyWorld `train` with the ground-truth pan of the loudest sounding source (L1 where one sounds) and its activity
(binary cross-entropy).
Score (B,) = -mean |predicted pan - visual pan| over the frames where conditions.pan_mask is True (0 for a clip with
no such frame): 0 is perfect, -2 the worst. The visual pan track comes from the ground truth on `train`
(`truth_pan_track`) or from the video alone through the sync encoder's per-token contact head
(`foleyflow.rewards.video.pan_track_from_contacts`). The evaluation's pan error (the evaluation suite's spatial
metric, from ILD
measurements at detected onsets) is not used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.audio import mel_filterbank, stft_complex
from foleyflow.rewards.common import (PAN_FPS, SAMPLE_RATE, RewardConditions, check_audio, fit_length, load_reward,
                                      save_reward)

KIND = "reward_spatial"
N_FFT, HOP = 256, 160
FRAMES_PER_PAN = int(SAMPLE_RATE / HOP / PAN_FPS)  # 10


@dataclass
class SpatialRewardConfig:
    n_bands: int = 32
    width: int = 64
    layers: int = 3
    activity_weight: float = 0.5


def binaural_features(audio: torch.Tensor, n_bands: int) -> torch.Tensor:
    """(B, 2, N) -> (B, 5 * n_bands, N // 160): log energy L, log energy R, their difference, IPD cosine, IPD sine."""
    b, _, n = audio.shape
    spec = stft_complex(audio.reshape(2 * b, n), N_FFT, HOP).reshape(b, 2, N_FFT // 2 + 1, -1)
    fb = torch.from_numpy(np.array(mel_filterbank(SAMPLE_RATE, N_FFT, n_bands, 50.0, 8000.0))).to(audio)
    power = spec.abs().pow(2)
    energy = torch.log(torch.einsum("mf,bcft->bcmt", fb, power) + 1e-6)  # (B, 2, M, T)
    cross = spec[:, 0] * spec[:, 1].conj()  # (B, F, T)
    norm = torch.einsum("mf,bft->bmt", fb, cross.abs()) + 1e-8
    ipd_cos = torch.einsum("mf,bft->bmt", fb, cross.real) / norm
    ipd_sin = torch.einsum("mf,bft->bmt", fb, cross.imag) / norm
    level = energy.mean((1, 2, 3), keepdim=True)
    x = torch.cat([(energy[:, 0] - level[:, 0]) / 4, (energy[:, 1] - level[:, 0]) / 4,
                   energy[:, 0] - energy[:, 1], ipd_cos, ipd_sin], 1)
    return x[..., :n // HOP]


class SpatialRewardModel(nn.Module):
    def __init__(self, cfg: SpatialRewardConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.inp = nn.Conv1d(5 * cfg.n_bands, w, 5, padding=2)
        self.convs = nn.ModuleList(nn.Conv1d(w, w, 5, padding=2) for _ in range(cfg.layers))
        self.norms = nn.ModuleList(nn.GroupNorm(1, w) for _ in range(cfg.layers))
        self.out = nn.Conv1d(w, 2, 1)

    def predict(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 2, N) at 16 kHz -> (pan (B, F) in [-1, 1], activity logit (B, F)), F = N // 1600 frames at 10 fps."""
        audio = check_audio(audio)
        frames = audio.shape[-1] // (HOP * FRAMES_PER_PAN)
        x = F.gelu(self.inp(binaural_features(audio, self.cfg.n_bands)))
        for conv, norm in zip(self.convs, self.norms):
            x = x + F.gelu(norm(conv(x)))
        y = F.avg_pool1d(x[..., :frames * FRAMES_PER_PAN], FRAMES_PER_PAN)
        y = self.out(y)
        return torch.tanh(y[:, 0]), y[:, 1]

    def score(self, audio: torch.Tensor, conditions: RewardConditions) -> torch.Tensor:
        """(B,) -mean |pan - visual pan| over frames where conditions.pan_mask is True; conditions.pan_track and
        pan_mask are (B, F') at 10 fps (cropped or padded to the audio's F frames). 0 where the mask is empty."""
        pan, _ = self.predict(audio)
        target = fit_length(conditions.need("pan_track", "spatial").float().to(pan.device), pan.shape[1])
        mask = fit_length(conditions.need("pan_mask", "spatial").float().to(pan.device), pan.shape[1])
        err = ((pan - target).abs() * mask).sum(1) / mask.sum(1).clamp(min=1)
        return -err

    def loss(self, audio: torch.Tensor, pan: torch.Tensor, active: torch.Tensor) -> dict[str, torch.Tensor]:
        """audio (B, 2, N), true pan (B, F) and activity (B, F) bool at 10 fps -> {"spatial/pan_l1",
        "spatial/activity_bce", "spatial/total"}."""
        pred, logit = self.predict(audio)
        pan, active = fit_length(pan.float(), pred.shape[1]), fit_length(active.float(), pred.shape[1])
        l1 = ((pred - pan).abs() * active).sum() / active.sum().clamp(min=1)
        bce = F.binary_cross_entropy_with_logits(logit, active)
        return {"spatial/pan_l1": l1, "spatial/activity_bce": bce,
                "spatial/total": l1 + self.cfg.activity_weight * bce}


def save_spatial_reward(path, model: SpatialRewardModel, provenance: dict | None = None):
    return save_reward(path, model, KIND, provenance)


def load_spatial_reward(path) -> SpatialRewardModel:
    return load_reward(path, KIND, SpatialRewardConfig, SpatialRewardModel)
