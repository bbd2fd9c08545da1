"""Graded degradations of true audio, the training signal of the aesthetic reward (FoleyWorld has no human ratings).

Each function maps (C, num_samples) float32 audio at 16 kHz and a severity in [0, 1] (0 = untouched, 1 = the worst
this kind goes) to audio of the same shape; random ones take a torch.Generator. The mapping severity -> parameter:
  noise    white or pink noise at SNR 40 dB (s -> 0) down to 0 dB (s = 1)
  clip     hard clipping at (1 - 0.95 s) of the peak, then the peak restored
  lowpass  brick-wall low-pass at 8 kHz * 2^(-5 s) (down to 250 Hz)
  smear    STFT magnitudes averaged over 1 + 30 s frames (transients smeared up to ~0.5 s), phases kept
  codec    mu-law companding quantised to round(10 - 8 s) bits (10 down to 2)
  reverb   a wrong room: a synthetic exponentially decaying stereo noise tail, RT60 0.1 + 1.9 s, wet gain s
  damp     decays cut short (session 15: what generators with a timing track do): each STFT bin's magnitude is
           scaled by (magnitude / its held peak)^(4 s), the peak released over 0.5 s, so attacks stay and the
           ringing after them falls away (a tail 6 dB under its peak loses a further 24 dB at s = 1)
  flatten  the timbre turned to noise (the default model's "broadband bursts"): STFT magnitudes averaged over
           1 + 48 s frequency bins (harmonics flattened into their envelope, each frame's power kept) and phases
           jittered by up to s * pi, the clip's level restored

KINDS_V1 are the six of the first reward models (their checkpoints' configs name no kinds); KINDS adds damp and
flatten.
"""
from __future__ import annotations

import math

import torch

KINDS_V1 = ("noise", "clip", "lowpass", "smear", "codec", "reverb")
KINDS = KINDS_V1 + ("damp", "flatten")
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


def _stft(x: torch.Tensor):
    """(spec (C, F, T) complex, length used) with n_fft 512 and hop 128, or None when x is too short."""
    from foleyflow.audio import stft_complex

    n_fft, hop = 512, 128
    if x.shape[-1] < n_fft:
        return None, 0
    length = x.shape[-1] // hop * hop
    return stft_complex(x[..., :length], n_fft, hop), length


def _istft(spec: torch.Tensor, length: int, total: int) -> torch.Tensor:
    from foleyflow.audio import istft_same

    return torch.nn.functional.pad(istft_same(spec, 512, 128), (0, total - length))


def smear(x: torch.Tensor, severity: float) -> torch.Tensor:
    frames = 1 + int(round(30 * severity))
    if frames <= 1:
        return x.clone()
    spec, length = _stft(x)
    if spec is None:
        return x.clone()
    mag = torch.nn.functional.avg_pool1d(spec.abs(), frames, stride=1, padding=frames // 2,
                                         count_include_pad=False)[..., :spec.shape[-1]]
    return _istft(torch.polar(mag, spec.angle()), length, x.shape[-1])


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


def damp(x: torch.Tensor, severity: float) -> torch.Tensor:
    spec, length = _stft(x)
    if spec is None:
        return x.clone()
    mag = spec.abs()
    release = math.exp(-128 / (SAMPLE_RATE * 0.5))   # the held peak falls by 1/e in 0.5 s
    held = torch.empty_like(mag)
    peak = mag[..., 0]
    for i in range(mag.shape[-1]):
        peak = torch.maximum(mag[..., i], peak * release)
        held[..., i] = peak
    gain = (mag / held.clamp(min=1e-8)).clamp(max=1.0) ** (4.0 * severity)
    return _istft(spec * gain, length, x.shape[-1])


def flatten(x: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    spec, length = _stft(x)
    if spec is None:
        return x.clone()
    width = 1 + 2 * int(round(24 * severity))     # odd, so the average stays centred
    mag = torch.nn.functional.avg_pool1d(spec.abs().transpose(1, 2).reshape(-1, 1, spec.shape[1]), width, stride=1,
                                         padding=width // 2, count_include_pad=False)
    mag = mag.reshape(spec.shape[0], spec.shape[2], spec.shape[1]).transpose(1, 2)
    power = spec.abs().pow(2).sum(1, keepdim=True)        # each frame keeps its power (averaging spreads the peaks)
    mag = mag * (power / mag.pow(2).sum(1, keepdim=True).clamp(min=1e-12)).sqrt()
    jitter = (torch.rand(spec.shape, generator=generator) * 2 - 1) * math.pi * severity
    y = _istft(torch.polar(mag, spec.angle() + jitter), length, x.shape[-1])
    return y * (x.pow(2).mean() / y.pow(2).mean().clamp(min=1e-12)).sqrt()   # and the clip its level


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
    elif kind == "flatten":
        y = flatten(x, severity, generator)
    else:
        y = {"clip": clip, "lowpass": lowpass, "smear": smear, "codec": codec, "damp": damp}[kind](x, severity)
    return y.clamp(-1.0, 1.0)


def random_degradation(x: torch.Tensor, generator: torch.Generator, p_clean: float = 0.25,
                       kinds: tuple[str, ...] | list[str] = KINDS) -> tuple[torch.Tensor, float, str]:
    """(degraded audio, severity, kind): clean with probability p_clean (severity 0, kind "clean"), else a uniformly
    chosen kind of `kinds` at a severity uniform in (0.05, 1]."""
    if torch.rand((), generator=generator) < p_clean:
        return x.clone(), 0.0, "clean"
    kind = kinds[int(torch.randint(len(kinds), (), generator=generator))]
    severity = 0.05 + 0.95 * float(torch.rand((), generator=generator))
    return degrade(x, kind, severity, generator), severity, kind
