"""Mel front-end: parity with MMAudio's 16 kHz converter (fixture) and an independent check of the 44.1 kHz setting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from foleyflow import audio


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmax in [(16000, 1024, 80, 8000.0), (44100, 2048, 128, 22050.0), (22050, 512, 40, 6000.0)]:
        ours = audio.mel_filterbank(sr, n_fft, n_mels, 0.0, fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=fmax)
        assert ours.shape == ref.shape and ours.dtype == np.float32
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)


def test_htk_filterbanks_match_librosa_and_sum_norm_fills_every_band():
    librosa = pytest.importorskip("librosa")
    ours = audio.mel_filterbank(16000, 512, 64, 30.0, None, scale="htk", norm=None, dtype=np.float64)
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=30.0, htk=True, norm=None, dtype=np.float64)
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    fb = audio.mel_filterbank(16000, 256, 128, 30.0, scale="htk", norm="sum", dtype=np.float64)
    assert fb.dtype == np.float64 and not fb.flags.writeable  # cached: callers must not change it
    np.testing.assert_allclose(fb.sum(axis=1), 1.0)  # bands narrower than a bin still get their nearest bin
    with pytest.raises(ValueError):
        audio.mel_filterbank(16000, 512, 64, norm="area")


def test_mel16k_matches_mmaudio_fixture(mmaudio_fixtures):
    from safetensors.torch import load_file

    t = load_file(str(mmaudio_fixtures / "mmaudio_mel16k.safetensors"))
    mel = audio.log_mel_spectrogram(t["in.wav"], "16k")
    assert mel.shape == t["out.mel"].shape
    torch.testing.assert_close(mel, t["out.mel"], rtol=1e-5, atol=1e-5)


def _numpy_log_mel(wav: np.ndarray, s: audio.MelSetting) -> np.ndarray:
    """Independent reference: numpy framing + rfft, periodic Hann, librosa's filterbank."""
    import librosa

    pad = (s.n_fft - s.hop_length) // 2
    x = np.pad(np.clip(wav.astype(np.float64), -1, 1), (pad, pad), mode="reflect")
    n_frames = 1 + (len(x) - s.n_fft) // s.hop_length
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(s.n_fft) / s.n_fft)
    frames = np.stack([x[i * s.hop_length: i * s.hop_length + s.n_fft] * window for i in range(n_frames)], 1)
    spec = np.fft.rfft(frames, axis=0)
    mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
    fb = librosa.filters.mel(sr=s.sample_rate, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.f_min, fmax=s.f_max)
    mel = np.maximum(fb.astype(np.float64) @ mag, 1e-5)
    return np.log10(mel) if s.log == "log10" else np.log(mel)


@pytest.mark.parametrize("num_samples", [44100, 30001])
def test_mel44k_matches_independent_numpy(num_samples):
    pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    t = np.arange(num_samples) / 44100
    wav = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(num_samples)
    wav[:2000] *= 5  # some clipping: the front-end clamps to [-1, 1]
    ours = audio.log_mel_spectrogram(torch.from_numpy(wav).float(), audio.MEL_44K).numpy()
    ref = _numpy_log_mel(wav, audio.MEL_44K)
    assert ours.shape == (128, num_samples // 512) == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_mel_keeps_leading_dims_and_frame_count():
    wav = torch.randn(2, 3, 5000) * 0.1
    mel = audio.log_mel_spectrogram(wav, "16k")
    assert mel.shape == (2, 3, 80, 5000 // 256)
    torch.testing.assert_close(mel[1, 2], audio.log_mel_spectrogram(wav[1, 2], "16k"))
    silent = audio.log_mel_spectrogram(torch.zeros(1, 4096), "16k")
    assert torch.isfinite(silent).all() and silent.max() <= -4.5


def test_resample_length_and_tone():
    sr, target = 44100, 16000
    t = np.arange(sr) / sr
    x = np.stack([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 500 * t)]).astype(np.float32)
    y = audio.resample(x, sr, target)
    assert y.shape == (2, target) and y.dtype == np.float32
    spec = np.abs(np.fft.rfft(y[0, 2000:-2000]))
    peak_hz = np.argmax(spec) * target / (target - 4000)
    assert abs(peak_hz - 1000) < 5
    y64 = audio.resample(x.astype(np.float64), sr, target, dtype=np.float64)  # computed in float64 either way
    assert y64.dtype == np.float64 and np.abs(y64 - y).max() < 1e-6
    assert audio.resample(x, sr, target, dtype=None).dtype == np.float32  # None keeps the input's dtype
    assert audio.resample(x, sr, sr) is x and audio.resample(x, sr, sr, dtype=np.float64).dtype == np.float64


def test_stft_complex_and_istft_same_invert():
    x = 0.2 * torch.randn(2, 3000, generator=torch.Generator().manual_seed(1))
    spec = audio.stft_complex(x, 1024, 256)
    assert spec.shape == (2, 513, 3000 // 256)
    y = audio.istft_same(spec, 1024, 256)
    torch.testing.assert_close(y, x[:, :y.shape[-1]], atol=1e-5, rtol=0)


def test_griffin_lim_recovers_a_tone_spectrum():
    t = torch.arange(8192) / 16000
    wav = 0.5 * torch.sin(2 * torch.pi * 440 * t)[None]
    mel = audio.log_mel_spectrogram(wav, "16k")
    out = audio.griffin_lim(mel, "16k", n_iter=16)
    assert out.shape == (1, 8192) and torch.isfinite(out).all()
    err = (audio.log_mel_spectrogram(out, "16k") - mel)[..., 2:-2].abs().mean()
    no_iter = audio.griffin_lim(mel, "16k", n_iter=0)  # random phases only
    err0 = (audio.log_mel_spectrogram(no_iter, "16k") - mel)[..., 2:-2].abs().mean()
    assert err < 0.85 * err0 and err < 0.2  # log10 units
    assert torch.isfinite(audio.griffin_lim(torch.full((1, 80, 4), -5.0), "16k", n_iter=2)).all()
