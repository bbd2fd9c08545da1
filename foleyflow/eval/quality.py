"""The evaluation suite's audio-quality metric: its own graded degradations of true audio (the training signal of the
quality predictor, models/eval_quality.py) and the `quality` key of `foleyflow evaluate`.

FoleyWorld has no human ratings, so quality is learned from degradations of clean `evaltrain` audio whose severity
s in [0, 1] is known; the target is a score on Audiobox Aesthetics' production-quality scale (1..10):
`quality = 10 - 9 s` (s = 0: the clean clip, 10; s = 1: the worst this family goes, 1). This family and its
parameterisation are the evaluation side's own; the RL aesthetic reward (foleyflow/rewards) has a different one, and
neither imports the other (tests/test_layers.py).

Every function maps (C, num_samples) float audio at `sample_rate` and a severity to audio of the same shape (float32);
severity 0 returns the input unchanged (up to float rounding); the random ones take a numpy Generator and draw the
same random numbers whatever the severity, so a larger severity only strengthens the same fault:
  hum      mains hum (50 or 60 Hz and 7 harmonics at 1/k amplitude, a slow level wobble), both channels alike,
           at 50 (1 - s) dB below the clip's level
  babble   babble-like noise: 6 "talkers", each noise through two formant resonances (300-900 Hz, 900-2800 Hz)
           with a syllabic 3-6 Hz on/off envelope, panned at random; 40 (1 - s) dB below the clip's level
  crush    sample-rate reduction by sample-and-hold every floor(1 + 7 s) samples (no anti-alias filter: aliasing;
           none below s = 1/7), then uniform quantisation to 16 - 12 s bits of the peak
  gaps     dropouts: up to 3 per second (count 3 s per second) of 10 + 70 s ms of digital silence, both channels
  eq       spectral tilt of +-9 s dB per octave around 1 kHz (sign drawn) and a one-octave band-stop of 36 s dB
           (centre 300-4000 Hz, drawn), zero-phase, then the clip's RMS restored
  pump     dynamic-range compression: the gain curve of a hard compressor (linked stereo, 2 ms attack, 150 ms
           release, threshold 30 dB below the clip's peak, ratio 10) applied at s times its depth in dB, the peak
           restored by make-up gain (the level pumps after every loud sound)
  phase    phase smearing between channels: opposite fixed random phase offsets per STFT bin (64 ms frames) of up to
           +-pi s on left and right (an inter-channel all-pass: a smeared, phasey image)
  jitter   time-stretch artefacts: overlap-add of 64 ms Hann grains (50% overlap) whose read positions jitter by up to
           +-30 s ms (repeated and skipped fragments, doubled transients, phasiness, like naive stretching)
The levels are relative to the clip's RMS with a floor at -50 dBFS (a silent crop still gets an audible fault).

`QualityScorer` wraps a trained QualityModel as the `(audio (C, N), sr) -> score` callable of `EvalModels`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

KINDS = ("hum", "babble", "crush", "gaps", "eq", "pump", "phase", "jitter")
SAMPLE_RATE = 16000
LEVEL_FLOOR_DB = -50.0


def quality_target(severity: float) -> float:
    """Severity in [0, 1] -> the 1..10 quality target (10 = clean)."""
    return 10.0 - 9.0 * float(np.clip(severity, 0.0, 1.0))


def severity_from_score(score):
    """Inverse of quality_target (array or float)."""
    return (10.0 - np.asarray(score, np.float64)) / 9.0


def _level(x: np.ndarray) -> float:
    """RMS of the clip, floored at LEVEL_FLOOR_DB."""
    return max(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))), 10 ** (LEVEL_FLOOR_DB / 20))


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def hum(x: np.ndarray, severity: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    phases = rng.uniform(0, 2 * np.pi, 9)
    wobble_hz = rng.uniform(0.1, 0.5)
    if severity <= 0:
        return _f32(x)
    t = np.arange(x.shape[-1]) / sample_rate
    h = sum(np.sin(2 * np.pi * f0 * k * t + phases[k]) / k for k in range(1, 9))
    h *= 1.0 + 0.3 * np.sin(2 * np.pi * wobble_hz * t + phases[0])
    h *= _level(x) * 10 ** (-50.0 * (1 - severity) / 20) / max(float(np.sqrt(np.mean(h ** 2))), 1e-12)
    return _f32(x + h[None])


def _resonance(spec_f: np.ndarray, centre_hz: float, q: float) -> np.ndarray:
    """Magnitude of a resonance (a second-order band-pass) at the frequencies spec_f."""
    r = spec_f / centre_hz
    return 1.0 / np.sqrt(1.0 + q ** 2 * (r - 1.0 / np.maximum(r, 1e-6)) ** 2)


def babble(x: np.ndarray, severity: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    c, n = x.shape
    talkers = 6
    noise = rng.standard_normal((talkers, n))
    f1, f2 = rng.uniform(300, 900, talkers), rng.uniform(900, 2800, talkers)
    rate, phase = rng.uniform(3, 6, talkers), rng.uniform(0, 2 * np.pi, talkers)
    pans = rng.uniform(-1, 1, talkers)
    if severity <= 0:
        return _f32(x)
    freqs = np.fft.rfftfreq(n, 1 / sample_rate)
    shape = np.stack([_resonance(freqs, f1[i], 4.0) + 0.6 * _resonance(freqs, f2[i], 5.0) for i in range(talkers)])
    voices = np.fft.irfft(np.fft.rfft(noise) * shape, n=n)
    t = np.arange(n) / sample_rate
    env = np.clip(np.sin(2 * np.pi * rate[:, None] * t + phase[:, None]), 0, None) ** 0.5  # syllables and pauses
    voices *= env
    gains = np.stack([np.cos((pans + 1) * np.pi / 4), np.sin((pans + 1) * np.pi / 4)])  # (2, talkers)
    mix = gains[:c] @ voices if c == 2 else voices.sum(0, keepdims=True)
    mix *= _level(x) * 10 ** (-40.0 * (1 - severity) / 20) / max(float(np.sqrt(np.mean(mix ** 2))), 1e-12)
    return _f32(x + mix)


def crush(x: np.ndarray, severity: float) -> np.ndarray:
    if severity <= 0:
        return _f32(x)
    hold = int(1 + 7 * severity)  # an integer factor: a fractional hold jitters even at tiny severities
    y = np.repeat(x[..., ::hold], hold, axis=-1)[..., : x.shape[-1]]
    bits = 16.0 - 12.0 * severity
    step = max(float(np.abs(x).max()), 1e-4) / 2 ** (bits - 1)
    return _f32(np.round(y / step) * step)


def gaps(x: np.ndarray, severity: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    n = x.shape[-1]
    most = max(1, int(math.ceil(3.0 * n / sample_rate)))
    starts = rng.integers(0, n, most)
    if severity <= 0:
        return _f32(x)
    count = int(round(severity * most))
    length = int(round((0.010 + 0.070 * severity) * sample_rate))
    y = np.array(x, np.float32, copy=True)
    for s in starts[:count]:
        y[..., s: s + length] = 0.0
    return y


def eq(x: np.ndarray, severity: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    sign = 1.0 if rng.random() < 0.5 else -1.0
    centre = float(np.exp(rng.uniform(np.log(300.0), np.log(4000.0))))
    if severity <= 0:
        return _f32(x)
    n = x.shape[-1]
    f = np.fft.rfftfreq(n, 1 / sample_rate)
    octaves = np.log2(np.maximum(f, 20.0) / 1000.0)
    gain_db = np.clip(sign * 9.0 * severity * octaves, -30.0, 30.0)
    gain_db -= 36.0 * severity * np.clip(1.0 - np.abs(np.log2(np.maximum(f, 1.0) / centre)) / 0.5, 0.0, 1.0)
    y = np.fft.irfft(np.fft.rfft(x, axis=-1) * 10 ** (gain_db / 20), n=n, axis=-1)
    y *= _level(x) / _level(y)
    return _f32(y)


def pump(x: np.ndarray, severity: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    if severity <= 0:
        return _f32(x)
    block = max(1, sample_rate // 500)                   # 2 ms level blocks
    n = x.shape[-1]
    nb = -(-n // block)
    pad = np.pad(np.abs(x).max(0), (0, nb * block - n))
    level = 20 * np.log10(np.maximum(pad.reshape(nb, block).max(1), 1e-6))  # linked stereo peak per block (dB)
    want = np.minimum(0.0, (level.max() - 30.0 - level) * (1 - 1 / 10.0))  # gain reduction wanted (dB, <= 0)
    release = math.exp(-block / sample_rate / 0.150)
    g, cur = np.empty(nb), 0.0
    for i, w in enumerate(want):  # attack within one block (2 ms); release towards the wanted gain
        cur = w if w < cur else w + (cur - w) * release
        g[i] = cur
    gain = 10 ** (severity * np.repeat(g, block)[:n] / 20)
    y = x * gain[None]
    y *= max(float(np.abs(x).max()), 1e-6) / max(float(np.abs(y).max()), 1e-6)
    return _f32(y)


def phase(x: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    import torch

    n_fft, hop = 1024, 256
    offsets = rng.uniform(-1.0, 1.0, n_fft // 2 + 1)
    if severity <= 0 or x.shape[0] < 2:
        return _f32(x)
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    win = torch.hann_window(n_fft)
    spec = torch.stft(t, n_fft, hop, window=win, center=True, return_complex=True)   # (C, F, T)
    rot = torch.from_numpy(np.pi * severity * offsets).float()
    angle = torch.stack([rot, -rot])[: t.shape[0], :, None]                          # (C, F, 1)
    spec = spec * torch.polar(torch.ones_like(angle), angle)
    y = torch.istft(spec, n_fft, hop, window=win, center=True, length=x.shape[-1])
    return y.numpy().astype(np.float32)


def jitter(x: np.ndarray, severity: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    grain = int(round(0.064 * sample_rate)) // 2 * 2
    hop = grain // 2
    n = x.shape[-1]
    grains = n // hop + 3
    u = rng.uniform(-1.0, 1.0, grains)
    if severity <= 0:
        return _f32(x)
    reach = int(round(0.030 * sample_rate))
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (grain + reach, grain + reach)))
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(grain) / grain)   # periodic Hann: sums to 1 at 50% overlap
    out = np.zeros((x.shape[0], n + 2 * grain))
    for i in range(grains):
        pos = i * hop                                                  # in the output (offset by `grain`)
        if pos + grain > out.shape[-1]:
            break
        src = pos + reach + int(round(severity * reach * u[i]))
        out[:, pos: pos + grain] += win * xp[:, src: src + grain]
    return _f32(out[:, grain: grain + n])


def degrade(x: np.ndarray, kind: str, severity: float, rng: np.random.Generator,
            sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """One degradation by name (see the module docstring); x: (C, num_samples) float at `sample_rate`."""
    from foleyflow.errors import ConfigError

    s = float(np.clip(severity, 0.0, 1.0))
    x = np.asarray(x, np.float32)
    seeded = {"hum": hum, "babble": babble, "gaps": gaps, "eq": eq, "jitter": jitter}
    if kind in seeded:
        return seeded[kind](x, s, rng, sample_rate)
    if kind == "crush":
        return crush(x, s)
    if kind == "pump":
        return pump(x, s, sample_rate)
    if kind == "phase":
        return phase(x, s, rng)
    raise ConfigError(f"unknown degradation {kind!r} (expected one of {', '.join(KINDS)})")


def random_degradation(x: np.ndarray, rng: np.random.Generator, *, p_clean: float = 0.2,
                       kinds: tuple[str, ...] = KINDS, sample_rate: int = SAMPLE_RATE
                       ) -> tuple[np.ndarray, str, float]:
    """(degraded audio, kind or "clean", severity): clean with probability p_clean, else one kind drawn uniformly at
    a severity drawn uniformly from [0, 1]."""
    if rng.random() < p_clean:
        return np.asarray(x, np.float32), "clean", 0.0
    kind = kinds[int(rng.integers(len(kinds)))]
    s = float(rng.uniform(0.0, 1.0))
    return degrade(x, kind, s, rng, sample_rate), kind, s


def spearman(a, b) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.asarray(a, np.float64)), rankdata(np.asarray(b, np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / den) if den > 0 else float("nan")


class QualityScorer:
    """A trained QualityModel as `(audio (C, num_samples), sr) -> score` in (1, 10) (mono is duplicated to stereo,
    more than 2 channels keep the first 2; audio is resampled to the model's rate; one torch thread)."""

    def __init__(self, model):
        self.model = model
        self.sample_rate = model.cfg.sample_rate

    def __call__(self, audio, sr: int) -> float:
        import torch

        from foleyflow.audio import resample
        from foleyflow.models.eval_quality import min_samples

        x = np.asarray(audio, np.float32)
        x = x[None] if x.ndim == 1 else x
        x = np.concatenate([x, x]) if x.shape[0] == 1 else x[:2]
        x = resample(x, sr, self.sample_rate) if sr != self.sample_rate else x
        need = min_samples(self.model.cfg)
        if x.shape[-1] < need:
            x = np.pad(x, ((0, 0), (0, need - x.shape[-1])))
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.no_grad():
                return float(self.model(torch.from_numpy(np.ascontiguousarray(x))[None])[0])
        finally:
            torch.set_num_threads(before)


def load_quality_scorer(path: str | Path) -> QualityScorer:
    from foleyflow.models.eval_quality import load_quality_model

    return QualityScorer(load_quality_model(path)[0])
