"""Waveform discriminators and adversarial losses for vocoder training.

- Multi-period discriminator (MPD) of HiFi-GAN (Kong et al. 2020): the waveform is reshaped to (T / p, p) for each
  period p and scored by a stack of (k, 1) 2-D convolutions strided along time.
- Multi-resolution discriminator (MRD) of UnivNet (Jang et al. 2021), as used by Vocos and BigVGAN: 2-D convolutions
  over linear magnitude spectrograms at several STFT resolutions.
- Losses: least-squares (HiFi-GAN) or hinge (Vocos) adversarial losses and L1 feature matching.

Departures, so the discriminators fit CPU training: channel widths are scaled by `channel_mult` (HiFi-GAN's MPD uses
32..1024 channels), and the MRD's first convolution is strided (2, 2) over (frames, bins) (`mrd_first_stride`;
UnivNet: (1, 1)), which makes every later MRD layer 4x cheaper: at (1, 1) the three MRDs took over 80% of a training
step's discriminator time on one CPU thread. Weight normalisation as in the papers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class DiscriminatorConfig:
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    mpd_channels: tuple[int, ...] = (32, 128, 512, 1024, 1024)
    resolutions: tuple[tuple[int, int, int], ...] = ((1024, 256, 1024), (512, 128, 512), (256, 64, 256))
    mrd_channels: int = 32
    channel_mult: float = 0.25
    mrd_first_stride: tuple[int, int] = (2, 2)  # (frames, bins) of the MRD's first conv; UnivNet: (1, 1)


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: tuple[int, ...]):
        super().__init__()
        self.period = period
        chans = (1,) + tuple(channels)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(chans[i], chans[i + 1], (5, 1), (3 if i < len(channels) - 1 else 1, 1), (2, 0)))
            for i in range(len(channels))])
        self.post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, (1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # wav (N, num_samples)
        n, t = wav.shape
        if t % self.period:
            wav = F.pad(wav, (0, self.period - t % self.period), mode="reflect")
        x = wav.reshape(n, 1, -1, self.period)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        x = self.post(x)
        feats.append(x)
        return x.flatten(1), feats


class ResolutionDiscriminator(nn.Module):
    def __init__(self, n_fft: int, hop: int, win: int, ch: int, first_stride: tuple[int, int] = (2, 2)):
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop, win
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv2d(1, ch, (3, 9), stride=first_stride, padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
            weight_norm(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))),
        ])
        self.post = weight_norm(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))
        self.register_buffer("window", torch.hann_window(win), persistent=False)

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wav.float(), self.n_fft, self.hop, self.win, self.window, center=True, return_complex=True)
        x = spec.abs()[:, None].transpose(2, 3)  # (N, 1, frames, bins)
        feats = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.1)
            feats.append(x)
        x = self.post(x)
        feats.append(x)
        return x.flatten(1), feats


class Discriminators(nn.Module):
    """MPD + MRD. forward(wav (N, num_samples)) -> (list of logits, list of feature-map lists), one per sub-model."""

    def __init__(self, cfg: DiscriminatorConfig = DiscriminatorConfig()):
        super().__init__()
        self.cfg = cfg
        mpd_ch = tuple(max(4, int(c * cfg.channel_mult)) for c in cfg.mpd_channels)
        mrd_ch = max(4, int(cfg.mrd_channels * cfg.channel_mult * 4))  # MRD is already narrow; scale it less
        self.subs = nn.ModuleList([PeriodDiscriminator(p, mpd_ch) for p in cfg.periods] +
                                  [ResolutionDiscriminator(*r, mrd_ch, tuple(cfg.mrd_first_stride)) for r in cfg.resolutions])

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        outs = [d(wav) for d in self.subs]
        return [o[0] for o in outs], [o[1] for o in outs]


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor],
                       kind: str = "hinge") -> torch.Tensor:
    """Mean over sub-discriminators. `kind`: 'hinge' or 'lsgan'. Pass detached fake audio's logits."""
    total = 0.0
    for r, f in zip(real_logits, fake_logits):
        if kind == "hinge":
            total = total + F.relu(1 - r).mean() + F.relu(1 + f).mean()
        else:
            total = total + (1 - r).pow(2).mean() + f.pow(2).mean()
    return total / len(real_logits)


def generator_adversarial_loss(fake_logits: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    total = 0.0
    for f in fake_logits:
        total = total + (F.relu(1 - f).mean() if kind == "hinge" else (1 - f).pow(2).mean())
    return total / len(fake_logits)


def feature_matching_loss(real_feats: list[list[torch.Tensor]], fake_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 between discriminator feature maps of real (detached) and generated audio."""
    total, count = 0.0, 0
    for rs, fs in zip(real_feats, fake_feats):
        for r, f in zip(rs, fs):
            total = total + (r.detach() - f).abs().mean()
            count += 1
    return total / count
