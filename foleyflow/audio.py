"""Pure audio functions: the mel front-end of MMAudio's codec, the library's one mel filterbank, and resampling.

The two mel settings are those of MMAudio (hkchengrex/MMAudio, `mmaudio/ext/mel_converter.py`, after
Make-An-Audio 2): reflect-pad the waveform by (n_fft - hop) / 2 on both sides, STFT with `center=False` and a
periodic Hann window, magnitude sqrt(re^2 + im^2 + 1e-9), a librosa-compatible (slaney) mel filterbank, and the log
of clamp(., 1e-5) (log10 at 16 kHz, natural log at 44.1 kHz). The waveform is clamped to [-1, 1] first, as in the
reference. With that padding a clip of `num_samples` gives exactly `num_samples // hop` frames.

The filterbank is our own numpy code equal to `librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)` with its
defaults (slaney mel scale, slaney area normalisation), so librosa is not needed at run time; the onset detector's
variant (HTK mel scale, each filter summing to 1) is the same code with `scale="htk", norm="sum"`. (The published
embedders' front-ends in foleyflow.eval.published reproduce other libraries' exact conventions and keep their own.)
`resample` is the one polyphase resampler of the library (scipy's resample_poly, computed in float64).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


@dataclass(frozen=True)
class MelSetting:
    """One mel front-end setting. `log` is 'log10' or 'ln'."""

    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    f_min: float
    f_max: float
    log: str


MEL_16K = MelSetting(16_000, 1024, 256, 1024, 80, 0.0, 8_000.0, "log10")
MEL_44K = MelSetting(44_100, 2048, 512, 2048, 128, 0.0, 22_050.0, "ln")
MEL_SETTINGS = {"16k": MEL_16K, "44k": MEL_44K}
MAGNITUDE_EPS = 1e-9  # added to re^2 + im^2 before the square root
LOG_CLAMP = 1e-5  # mel energies are clamped to this before the log


def hz_to_mel(freq_hz: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Slaney mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above; or the HTK scale
    2595 log10(1 + f / 700)."""
    f = np.asarray(freq_hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    mels = f / f_sp
    above = f >= min_log_hz
    return np.where(above, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def mel_to_hz(mels: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    m = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=32)
def _mel_filterbank_cached(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float, htk: bool,
                           norm: str, dtype: str) -> np.ndarray:
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(f_min, htk), hz_to_mel(f_max, htk), n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]  # slaney: constant energy per band
    elif norm == "sum":
        for i in np.flatnonzero(weights.sum(axis=1) == 0):  # a band narrower than a bin gets its nearest bin
            weights[i, np.argmin(np.abs(fft_freqs - mel_f[i + 1]))] = 1.0
        weights = weights / weights.sum(axis=1, keepdims=True)
    out = weights.astype(dtype)
    out.flags.writeable = False
    return out


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None, *,
                   scale: str = "slaney", norm: str | None = "slaney", dtype=np.float32) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters (read-only array, cached) between f_min and f_max (Hz, default
    Nyquist), evenly spaced on the mel `scale` ("slaney", librosa's default, or "htk"). norm: "slaney" (librosa's
    area normalisation, 2 / band width in Hz), "sum" (each filter sums to 1; a band narrower than one FFT bin gets its
    nearest bin) or None (peak 1). The defaults equal librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) in float32."""
    if scale not in ("slaney", "htk") or norm not in ("slaney", "sum", None):
        raise ValueError(f"mel_filterbank: unknown scale {scale!r} or norm {norm!r}")
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    return _mel_filterbank_cached(int(sample_rate), int(n_fft), int(n_mels), float(f_min), f_max, scale == "htk",
                                  str(norm), np.dtype(dtype).name)


def num_mel_frames(num_samples: int, hop_length: int) -> int:
    """Frames the mel front-end gives for `num_samples` (reflect pad (n_fft - hop) / 2, center=False)."""
    return int(num_samples) // int(hop_length)


def stft_magnitude(wav: torch.Tensor, n_fft: int, hop_length: int, win_length: int) -> torch.Tensor:
    """(..., num_samples) -> (..., n_fft // 2 + 1, num_samples // hop) linear magnitude, MMAudio padding."""
    shape = wav.shape
    x = wav.reshape(-1, shape[-1]).float()
    pad = (n_fft - hop_length) // 2
    if x.shape[-1] <= pad:
        raise ValueError(f"audio of {x.shape[-1]} samples is too short for reflect padding of {pad}")
    x = torch.nn.functional.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]
    window = torch.hann_window(win_length, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop_length, win_length=win_length, window=window, center=False,
                      normalized=False, onesided=True, return_complex=True)
    spec = torch.view_as_real(spec)
    mag = torch.sqrt(spec.pow(2).sum(-1) + MAGNITUDE_EPS)
    return mag.reshape(*shape[:-1], *mag.shape[-2:])


def log_mel_spectrogram(wav: torch.Tensor, setting: MelSetting | str = MEL_16K) -> torch.Tensor:
    """(..., num_samples) waveform in [-1, 1] at `setting.sample_rate` -> (..., n_mels, num_samples // hop) log-mel.

    Equal to MMAudio's `MelConverter` for the '16k' and '44k' settings. Any leading dims (batch, channels) are kept.
    """
    s = MEL_SETTINGS[setting] if isinstance(setting, str) else setting
    wav = wav.clamp(-1.0, 1.0)
    mag = stft_magnitude(wav, s.n_fft, s.hop_length, s.win_length)
    fb = torch.from_numpy(np.array(mel_filterbank(s.sample_rate, s.n_fft, s.n_mels, s.f_min, s.f_max)))
    mel = torch.matmul(fb.to(mag.device, mag.dtype), mag)
    mel = mel.clamp(min=LOG_CLAMP)
    return torch.log10(mel) if s.log == "log10" else torch.log(mel)


def stft_complex(wav: torch.Tensor, n_fft: int, hop_length: int, win_length: int | None = None) -> torch.Tensor:
    """(N, num_samples) -> (N, n_fft // 2 + 1, num_samples // hop) complex STFT with the front-end's framing."""
    win_length = win_length or n_fft
    pad = (n_fft - hop_length) // 2
    x = torch.nn.functional.pad(wav.float()[:, None], (pad, pad), mode="reflect")[:, 0]
    window = torch.hann_window(win_length, device=x.device)
    return torch.stft(x, n_fft, hop_length=hop_length, win_length=win_length, window=window, center=False,
                      return_complex=True)


def istft_same(spec: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor | None = None) -> torch.Tensor:
    """(N, n_fft // 2 + 1, T) complex -> (N, T * hop) waveform: inverse of `stft_complex` (windowed overlap-add
    normalised by the summed squared window; frame i centred on sample (i + 0.5) * hop)."""
    n, _, t = spec.shape
    window = torch.hann_window(n_fft, device=spec.device) if window is None else window
    pad = (n_fft - hop_length) // 2
    frames = torch.fft.irfft(spec, n_fft, dim=1) * window[None, :, None]  # (N, n_fft, T)
    size = (t - 1) * hop_length + n_fft
    fold = torch.nn.functional.fold
    y = fold(frames, (1, size), (1, n_fft), stride=(1, hop_length))[:, 0, 0]
    env = fold(window.square()[None, :, None].expand(1, n_fft, t), (1, size), (1, n_fft), stride=(1, hop_length))
    return (y / env[0, 0, 0].clamp(min=1e-11))[:, pad:size - pad]


def mono_log_mel(audio: torch.Tensor, mel_fb: torch.Tensor, window: torch.Tensor, n_fft: int,
                 hop_length: int) -> torch.Tensor:
    """(B, [C,] num_samples) -> (B, n_mels, num_samples // hop_length + 1): natural-log mel (floor 1e-5) of the mono
    mix, centred STFT frames; the front-end of the small audio encoders (models.av_ssl, models.eval_audio)."""
    if audio.ndim == 3:
        audio = audio.mean(1)
    if audio.ndim != 2:
        raise ValueError(f"audio must be (B, num_samples) or (B, C, num_samples), got {tuple(audio.shape)}")
    spec = torch.stft(audio.float(), n_fft, hop_length, window=window, center=True, return_complex=True).abs()
    return torch.log(torch.clamp(mel_fb @ spec, min=1e-5))


def _mel_to_magnitude(log_mel: torch.Tensor, s: MelSetting) -> torch.Tensor:
    """(N, n_mels, T) log-mel -> (N, n_fft // 2 + 1, T) linear magnitude: the filterbank's pseudo-inverse applied to
    the mel energies, clamped at 0."""
    energy = torch.pow(10.0, log_mel) if s.log == "log10" else torch.exp(log_mel)
    fb = torch.from_numpy(np.array(mel_filterbank(s.sample_rate, s.n_fft, s.n_mels, s.f_min, s.f_max)))
    return (torch.linalg.pinv(fb.double()).float().to(log_mel.device) @ energy).clamp(min=0.0)


def _griffin_lim_phase(mag: torch.Tensor, s: MelSetting, n_iter: int, momentum: float, seed: int,
                       start: torch.Tensor | None = None) -> torch.Tensor:
    """Unit phases (N, F, T) for magnitudes (N, F, T) by fast Griffin-Lim from `start` (unit phases) or else random
    phases drawn from `seed`."""
    if start is None:
        gen = torch.Generator().manual_seed(seed)
        phase = torch.exp(2j * np.pi * torch.rand(mag.shape, generator=gen)).to(mag.device)
    else:
        phase = start
    prev = torch.zeros_like(phase)
    for _ in range(n_iter):
        wav = istft_same(mag * phase, s.n_fft, s.hop_length)
        rebuilt = stft_complex(wav, s.n_fft, s.hop_length, s.win_length)
        accel = rebuilt - (momentum / (1 + momentum)) * prev
        prev = rebuilt
        phase = accel / accel.abs().clamp(min=1e-8)
    return phase


def griffin_lim(log_mel: torch.Tensor, setting: MelSetting | str = MEL_16K, n_iter: int = 32, momentum: float = 0.99,
                seed: int = 0) -> torch.Tensor:
    """(..., n_mels, T) log-mel -> (..., T * hop) waveform: baseline vocoder. The linear magnitude is the
    filterbank's pseudo-inverse applied to the mel energies (clamped at 0); phases by fast Griffin-Lim (Perraudin
    et al. 2013) with the given momentum, starting from random phases drawn from `seed`. Every leading index (every
    channel) gets phases of its own: see `griffin_lim_stereo` for channels that share them."""
    s = MEL_SETTINGS[setting] if isinstance(setting, str) else setting
    shape = log_mel.shape
    mag = _mel_to_magnitude(log_mel.reshape(-1, *shape[-2:]).float(), s)
    wav = istft_same(mag * _griffin_lim_phase(mag, s, n_iter, momentum, seed), s.n_fft, s.hop_length)
    return wav.reshape(*shape[:-2], wav.shape[-1])


def griffin_lim_stereo(log_mel: torch.Tensor, setting: MelSetting | str = MEL_16K, n_iter: int = 32,
                       momentum: float = 0.99, seed: int = 0, channel_iters: int = 0) -> torch.Tensor:
    """(B, C, n_mels, T) log-mel -> (B, C, T * hop): Griffin-Lim with one phase per clip shared by its channels.
    The phases are found for the clip's mid magnitude (the root mean square of its channels' magnitudes) and each
    channel keeps its own magnitude on them, so a panned source comes out as the same waveform at two levels (the
    channels correlated, as in the true audio) instead of two unrelated ones (per-channel Griffin-Lim, whose channels
    are uncorrelated). Level differences between the channels are kept; time differences are not made.
    `channel_iters` > 0: that many more Griffin-Lim iterations per channel from the shared phases (each channel's
    phases then fit its own magnitude better and stay close to the shared ones)."""
    if log_mel.ndim != 4:
        raise ValueError(f"griffin_lim_stereo needs (B, C, n_mels, T), got {tuple(log_mel.shape)}")
    s = MEL_SETTINGS[setting] if isinstance(setting, str) else setting
    b, c, m, t = log_mel.shape
    mag = _mel_to_magnitude(log_mel.reshape(b * c, m, t).float(), s).reshape(b, c, -1, t)
    phase = _griffin_lim_phase(mag.pow(2).mean(1).sqrt(), s, n_iter, momentum, seed)   # (B, F, T)
    mag, phase = mag.reshape(b * c, -1, t), phase.repeat_interleave(c, dim=0)
    if channel_iters > 0:
        phase = _griffin_lim_phase(mag, s, channel_iters, momentum, seed, start=phase)
    return istft_same(mag * phase, s.n_fft, s.hop_length).reshape(b, c, -1)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int, dtype=np.float32) -> np.ndarray:
    """(..., num_samples) float array resampled along the last axis with a polyphase filter (scipy resample_poly,
    computed in float64). Output length is ceil(num_samples * target_sr / orig_sr).

    dtype: of the result (float32 by default; the evaluation code passes float64); None keeps the input's float
    dtype. Equal rates return the input itself when it already has that dtype."""
    from scipy.signal import resample_poly

    x = np.asarray(audio)
    if dtype is None:
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    if orig_sr == target_sr:
        return x.astype(dtype, copy=False)
    g = math.gcd(int(orig_sr), int(target_sr))
    out = resample_poly(x.astype(np.float64, copy=False), int(target_sr) // g, int(orig_sr) // g, axis=-1)
    return out.astype(dtype, copy=False)


def load_audio(path, sample_rate: int, *, channels: int | None = None) -> np.ndarray:
    """Reads a wav/flac file as float32 (C, num_samples) at `sample_rate`. `channels` = 1 or 2 mixes down / duplicates
    mono to stereo; None keeps the file's channels."""
    import soundfile as sf

    from foleyflow.errors import MediaError

    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for unreadable files
        raise MediaError(f"cannot read audio {path}: {e}") from None
    audio = data.T
    if channels == 1 and audio.shape[0] > 1:
        audio = audio.mean(0, keepdims=True)
    elif channels == 2 and audio.shape[0] == 1:
        audio = np.concatenate([audio, audio], 0)
    elif channels == 2 and audio.shape[0] > 2:
        audio = audio[:2]
    return resample(audio, sr, sample_rate)
