"""Temporal reward: a learned score of how well the audio's onsets line up with the visible contacts.

Video side: the contact track (B, Tc, 2) at 25 fps, [contact probability, pan] (ground truth on `train`, or the sync
encoder's contact head: `foleyflow.rewards.video.contacts_from_video`). Audio side: an onset front-end of our own: the
natural-log mel of the mono mix (40 bands, 100 fps), its half-wave rectified frame difference (spectral flux per
band) and the frame energy, reduced to 25 fps by two strided convolutions. The two 25 fps streams are concatenated
and read by a stack of dilated convolutions (receptive field about +-0.6 s) that gives a per-frame agreement logit;
score = its mean over frames (a logit: higher = better aligned; only its order matters to GRPO).
Training: contrastive over shifts, as a Synchformer-style offset task but scored, not classified: for each `train`
window, the aligned audio and K copies of the audio read `d` seconds earlier or later (|d| in [0.1, 2] s) are scored,
and a cross-entropy asks the aligned one to win. It is not the evaluation onset detector, not its offset classifier
(the evaluation suite's contact offset model, which correlates detected onsets with contacts) and not trained on
`evaltrain`.

    s = TemporalRewardModel(TemporalRewardConfig()).score(audio, RewardConditions(contacts=c))   # (B,)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.audio import MelSetting, log_mel_spectrogram
from foleyflow.rewards.common import (CONTACT_FPS, SAMPLE_RATE, RewardConditions, check_audio, fit_length,
                                      load_reward, save_reward)

KIND = "reward_temporal"
HOP = 160  # 100 mel frames per second; 4 per contact frame


@dataclass
class TemporalRewardConfig:
    n_mels: int = 40
    width: int = 64
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    min_shift_s: float = 0.1
    max_shift_s: float = 2.0

    @property
    def mel(self) -> MelSetting:
        return MelSetting(SAMPLE_RATE, 400, HOP, 400, self.n_mels, 30.0, 8000.0, "ln")


def onset_features(audio: torch.Tensor, setting: MelSetting) -> torch.Tensor:
    """(B, 2, num_samples) -> (B, 2 * n_mels + 1, num_samples // 160): per-band log-mel (minus the clip mean),
    per-band positive frame difference (flux), and the frame log-energy change."""
    mel = log_mel_spectrogram(audio.mean(1), setting)  # (B, M, T)
    mel = mel - mel.mean((1, 2), keepdim=True)
    flux = F.relu(F.pad(mel[..., 1:] - mel[..., :-1], (1, 0)))
    energy = torch.logsumexp(mel, 1, keepdim=True)
    d_energy = F.pad(energy[..., 1:] - energy[..., :-1], (1, 0))
    return torch.cat([mel / 4.0, flux, d_energy], 1)


class TemporalRewardModel(nn.Module):
    def __init__(self, cfg: TemporalRewardConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.audio_in = nn.Sequential(nn.Conv1d(2 * cfg.n_mels + 1, w, 5, stride=2, padding=2), nn.GELU(),
                                      nn.Conv1d(w, w, 5, stride=2, padding=2), nn.GELU())
        self.video_in = nn.Sequential(nn.Conv1d(2, w, 3, padding=1), nn.GELU())
        self.fuse = nn.Conv1d(2 * w, w, 1)
        self.convs = nn.ModuleList(nn.Conv1d(w, w, 3, padding=d, dilation=d) for d in cfg.dilations)
        self.norms = nn.ModuleList(nn.GroupNorm(1, w) for _ in cfg.dilations)
        self.out = nn.Conv1d(w, 1, 1)

    def frame_logits(self, audio: torch.Tensor, contacts: torch.Tensor) -> torch.Tensor:
        """audio (B, 2, N) at 16 kHz, contacts (B, Tc, 2) at 25 fps -> (B, N // 640) per-frame logits (the contact
        track is cropped or zero-padded to the audio's frame count)."""
        audio = check_audio(audio)
        frames = audio.shape[-1] // (4 * HOP)
        a = self.audio_in(onset_features(audio, self.cfg.mel))[..., :frames]
        a = fit_length(a, frames, dim=2)
        c = fit_length(contacts.float().to(audio.device), frames, dim=1)
        v = self.video_in(torch.stack([c[..., 0], c[..., 0] * c[..., 1]], 1))
        x = self.fuse(torch.cat([a, v], 1))
        for conv, norm in zip(self.convs, self.norms):
            x = x + F.gelu(norm(conv(x)))
        return self.out(x)[:, 0]

    def score(self, audio: torch.Tensor, conditions: RewardConditions) -> torch.Tensor:
        """(B,) alignment logit of each clip's audio with its conditions.contacts (B, Tc, 2) at 25 fps."""
        return self.frame_logits(audio, conditions.need("contacts", "temporal")).mean(-1)

    def loss(self, candidates: torch.Tensor, contacts: torch.Tensor) -> dict[str, torch.Tensor]:
        """candidates (B, K + 1, 2, N): the aligned audio window first, then K shifted ones; contacts (B, Tc, 2) of
        the window -> {"temporal/shift_ce", "temporal/acc"} (cross-entropy of picking the aligned candidate)."""
        b, k1 = candidates.shape[:2]
        rep = contacts[:, None].expand(-1, k1, -1, -1).flatten(0, 1)
        logits = self.score(candidates.flatten(0, 1), RewardConditions(contacts=rep)).view(b, k1)
        target = torch.zeros(b, dtype=torch.long, device=logits.device)
        return {"temporal/shift_ce": F.cross_entropy(logits, target),
                "temporal/acc": (logits.argmax(1) == 0).float().mean()}


def shifted_windows(audio: torch.Tensor, start_s: float, window_s: float, shifts_s: list[float]) -> torch.Tensor:
    """(C, num_samples) whole clip -> (1 + len(shifts_s), C, round(window_s * 16000)): the window at start_s, then
    the windows at start_s + d (the audio d seconds later than the video; zero-padded outside the clip)."""
    n = int(round(window_s * SAMPLE_RATE))
    out = torch.zeros(1 + len(shifts_s), audio.shape[0], n)
    for i, d in enumerate([0.0, *shifts_s]):
        s = int(round((start_s + d) * SAMPLE_RATE))
        lo, hi = max(0, s), min(audio.shape[-1], s + n)
        if hi > lo:
            out[i, :, lo - s:hi - s] = audio[:, lo:hi]
    return out


def sample_shifts(k: int, cfg: TemporalRewardConfig, generator: torch.Generator) -> list[float]:
    """k shifts in seconds, |d| uniform in [min_shift_s, max_shift_s], random sign."""
    mag = cfg.min_shift_s + (cfg.max_shift_s - cfg.min_shift_s) * torch.rand(k, generator=generator)
    sign = torch.where(torch.rand(k, generator=generator) < 0.5, -1.0, 1.0)
    return [round(float(v), 4) for v in mag * sign]


def contact_window(contacts: torch.Tensor, start_s: float, window_s: float) -> torch.Tensor:
    """(Tc, 2) whole-clip contact track at 25 fps -> (round(window_s * 25), 2) starting at start_s."""
    i = int(round(start_s * CONTACT_FPS))
    return fit_length(contacts[i:], int(round(window_s * CONTACT_FPS)), dim=0)


def save_temporal_reward(path, model: TemporalRewardModel, provenance: dict | None = None):
    return save_reward(path, model, KIND, provenance)


def load_temporal_reward(path) -> TemporalRewardModel:
    return load_reward(path, KIND, TemporalRewardConfig, TemporalRewardModel)
