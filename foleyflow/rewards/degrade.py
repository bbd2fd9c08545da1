"""Graded degradations of true audio, the training signal of the aesthetic reward (FoleyWorld has no human ratings).

Each function maps (C, num_samples) float32 audio at 16 kHz and a severity in [0, 1] (0 = untouched, 1 = the worst
this kind goes) to audio of the same shape; random ones take a torch.Generator. The mapping severity -> parameter:
  noise    white or pink noise at SNR 40 dB (s -> 0) down to 0 dB (s = 1)
  clip     hard clipping at (1 - 0.95 s) of the peak, then the peak restored
  lowpass  brick-wall low-pass at 8 kHz * 2^(-5 s) (down to 250 Hz)
  smear    STFT magnitudes averaged over 1 + 30 s frames (transients smeared up to ~0.5 s), phases kept
  codec    mu-law companding quantised to round(10 - 8 s) bits (10 down to 2)
  reverb   a wrong room: a synthetic exponentially decaying stereo noise tail, RT60 0.1 + 1.9 s, wet gain s
"""
from __future__ import annotations

import math

import torch

KINDS = ("noise", "clip", "lowpass", "smear", "codec", "reverb")
SAMPLE_RATE = 16_000


def _peak(x: torch.Tensor) -> torch.Tensor:
    return x.abs().amax().clamp(min=1e-4)


def add_noise(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    snr_db = 40.0 * (1.0 - severity)
    noise = torch.randn(x.shape, generator=generator)
    if torch.rand((), generator=generator) < 0.5:  # pink: 1/sqrt(f) spectrum
        spec = torch.fft.rfft(noise)
        f = torch.arange(spec.shape[-1]).clamp(min=1).float()
        noise = torch.fft.irfft(spec / f.sqrt(), n=x.shape[-1])
    p_sig = x.pow(2).mean().clamp(min=1e-8)
    noise = noise * (p_sig / noise.pow(2).mean().clamp(min=1e-12) / 10 ** (snr_db / 10)).sqrt()
    return x + noise


def clip(x: torch.Tensor, severity: float) -> torch.Tensor:
    peak = _peak(x)
    thr = peak * (1.0 - 0.95 * severity)
    return x.clamp(-thr, thr) * (peak / thr)


def lowpass(x: torch.Tensor, severity: float) -> torch.Tensor:
    cutoff_hz = 8000.0 * 2.0 ** (-5.0 * severity)
    spec = torch.fft.rfft(x)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1.0 / SAMPLE_RATE)
    return torch.fft.irfft(spec * (freqs <= cutoff_hz), n=x.shape[-1])


def smear(x: torch.Tensor, severity: float) -> torch.Tensor:
    from foleyflow.audio import istft_same, stft_complex

    n_fft, hop = 512, 128
    frames = 1 + int(round(30 * severity))
    if frames <= 1 or x.shape[-1] < n_fft:
        return x.clone()
    length = x.shape[-1] // hop * hop
    spec = stft_complex(x[..., :length], n_fft, hop)  # (C, F, T)
    mag = torch.nn.functional.avg_pool1d(spec.abs(), frames, stride=1, padding=frames // 2,
                                         count_include_pad=False)[..., :spec.shape[-1]]
    y = istft_same(torch.polar(mag, spec.angle()), n_fft, hop)
    return torch.nn.functional.pad(y, (0, x.shape[-1] - length))


def codec(x: torch.Tensor, severity: float) -> torch.Tensor:
    bits, mu = int(round(10 - 8 * severity)), 255.0
    peak = _peak(x)
    y = x / peak
    comp = torch.sign(y) * torch.log1p(mu * y.abs()) / math.log1p(mu)
    levels = 2 ** (bits - 1)
    comp = torch.round(comp * levels) / levels
    return torch.sign(comp) * ((1 + mu) ** comp.abs() - 1) / mu * peak


def reverb(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    rt60_s = 0.1 + 1.9 * severity
    n = int(rt60_s * SAMPLE_RATE)
    t = torch.arange(n) / SAMPLE_RATE
    tail = torch.randn(x.shape[0], n, generator=generator) * torch.exp(-6.9 * t / rt60_s)  # -60 dB at rt60
    tail = tail / tail.pow(2).sum(-1, keepdim=True).sqrt()
    size = x.shape[-1] + n
    wet = torch.fft.irfft(torch.fft.rfft(x, n=size) * torch.fft.rfft(tail, n=size), n=size)[..., :x.shape[-1]]
    wet = wet * (x.pow(2).mean() / wet.pow(2).mean().clamp(min=1e-12)).sqrt()
    return (1 - 0.5 * severity) * x + severity * wet


def degrade(x: torch.Tensor, kind: str, severity: float, generator: torch.Generator) -> torch.Tensor:
    """(C, num_samples) -> (C, num_samples) degraded by `kind` (one of KINDS) at `severity` in [0, 1], in [-1, 1]."""
    if kind not in KINDS:
        raise ValueError(f"unknown degradation {kind!r} (one of {', '.join(KINDS)})")
    if severity <= 0:
        return x.clone()
    severity = min(float(severity), 1.0)
    if kind == "noise":
        y = add_noise(x, severity, generator)
    elif kind == "reverb":
        y = reverb(x, severity, generator)
    else:
        y = {"clip": clip, "lowpass": lowpass, "smear": smear, "codec": codec}[kind](x, severity)
    return y.clamp(-1.0, 1.0)


def random_degradation(x: torch.Tensor, generator: torch.Generator, p_clean: float = 0.25
                       ) -> tuple[torch.Tensor, float, str]:
    """(degraded audio, severity, kind): clean with probability p_clean (severity 0, kind "clean"), else a uniformly
    chosen kind at a severity uniform in (0.05, 1]."""
    if torch.rand((), generator=generator) < p_clean:
        return x.clone(), 0.0, "clean"
    kind = KINDS[int(torch.randint(len(KINDS), (), generator=generator))]
    severity = 0.05 + 0.95 * float(torch.rand((), generator=generator))
    return degrade(x, kind, severity, generator), severity, kind
