"""Preprocessing protocols of the published audio embedders used by av-benchmark (hkchengrex/av-benchmark) and the
papers it serves (MMAudio, ThinkSound...), plus an adapter that turns any user-built network into an EvalModels hook.

For each embedder a `PublishedSpec` records its sample rate, window, hop, pooling and channel handling, and
`prepare(spec, audio, sr)` turns a (C, N) float clip into the batch the network takes: resampled (polyphase,
`foleyflow.audio.resample`), mixed to mono, padded / cropped / windowed as the original code does, and, where the
published front-end is a fixed transform that lives outside the network (VGGish, ImageBind, Synchformer), the
log-mel / fbank features themselves. PANNs, PaSST and both CLAPs compute their spectrograms inside the network, so
for them `prepare` returns waveform windows.

Sources (constants read from these files; our code is written from the descriptions, none is copied):
  - av-benchmark `av_bench/extraction_models.py`: PANNs Cnn14 at 16 kHz (window 512, hop 160, 64 mels, 50-8000 Hz,
    "2048" layer), PaSST `get_basic_model(mode="all")`, LAION-CLAP HTSAT-base unfused
    (music_speech_audioset_epoch_15_esc_89.98.pt), MS-CLAP version 2023, ImageBind huge, Synchformer with a
    MelSpectrogram(16 kHz, win 400, hop 160, n_fft 1024, 128 mels); `av_bench/evaluate.py`: DeSync on the first and
    last 14 Synchformer segments, VGGish examples concatenated (not pooled) for FD-VGG.
  - PANNs (Kong et al. 2020, qiuqiangkong/audioset_tagging_cnn): Cnn14 at 32 kHz, window 1024, hop 320, 64 mels,
    50-14000 Hz; the network pools over time itself.
  - PaSST (Koutini et al. 2022, kkoutini/passt_hear21): 32 kHz, trained on 10 s AudioSet clips.
  - VGGish (Hershey et al. 2017, tensorflow/models research/audioset/vggish: vggish_params.py, mel_features.py):
    16 kHz; 25 ms Hann (periodic) window, 10 ms hop, 512-point |STFT|, 64 HTK-mel bands 125-7500 Hz,
    log(mel + 0.01); 96-frame (0.96 s) non-overlapping examples; 128-d per example.
  - LAION-CLAP (Wu et al. 2023, LAION-AI/CLAP `training/data.py` get_audio_features): 48 kHz, 480000 samples;
    shorter audio "repeatpad" (tiled floor(480000/N) times, then zero-padded), longer "rand_trunc" (a random
    480000-sample crop); the inference helper rounds audio through int16.
  - MS-CLAP 2023 (Elizalde et al., microsoft/CLAP `CLAPWrapper.load_audio_into_tensor`; 44.1 kHz and 7 s as in
    msclap/configs for the 2023 HTSAT encoder): audio up to 7 s tiled ceil(7 s / N) times and cut to 7 s, longer a
    random 7 s crop. (The wrapper flattens multichannel files with reshape(-1); we mix to mono, as av-benchmark's
    8 s mono clips are.)
  - ImageBind (Girdhar et al. 2023, facebookresearch/ImageBind `data.py` load_and_transform_audio_data): 16 kHz,
    3 clips of 2 s at constant spacing (pytorchvideo ConstantClipsPerVideoSampler: starts linspace(0, T - 2, 3)),
    per clip: waveform minus its mean, Kaldi fbank (25 ms / 10 ms, Hanning, 128 bins, HTK-compatible, no energy,
    no dither), padded / cut to 204 frames, normalised with mean -4.268, std 9.138; clip embeddings averaged.
  - Synchformer (Iashin et al. 2024, as run by av-benchmark / MMAudio): 16 kHz; segments of 0.64 s (16 video
    frames at 25 fps, 10240 samples) with a stride of 0.32 s; log(mel + 1e-6) of each segment, padded to 66
    frames, normalised by (x + 4.2677393) / (2 * 4.5689974); a 4.8 s window holds 14 segments.

Departures (all documented in docs/evaluation.md "Published embedders"): resampling is polyphase (the originals use
resampy / torchaudio / librosa); random crops take a seed (default 0: reproducible); VGGish pads clips shorter than
one example to one example (the original yields no example); ImageBind mixes channels to mono (its Kaldi fbank
reads channel 0). The real networks are loaded from a folder of weights by foleyflow/models/published_nets.py and
scored as av-benchmark scores them by published_metrics.py (`foleyflow evaluate --embedders DIR`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from foleyflow.errors import EvalError, FoleyError, MissingResourceError

_VGGISH_EXAMPLE_FRAMES = 96
_IB_MEAN, _IB_STD, _IB_FRAMES = -4.268, 9.138, 204
_SYNC_SEGMENT, _SYNC_STRIDE, _SYNC_PER_WINDOW, _SYNC_FRAMES = 10240, 5120, 14, 66
_SYNC_MEAN, _SYNC_STD = -4.2677393, 4.5689974


@dataclass(frozen=True)
class PublishedSpec:
    """How one published embedder wants its audio. window_s / hop_s describe what `prepare` returns per row
    (window_s None: the whole clip in one row); pooling says how per-row embeddings become one clip embedding."""
    name: str
    sample_rate: int
    window_s: float | None
    hop_s: float | None
    pooling: str  # "mean" over rows, or "none" (one row per clip)
    channels: str  # "mono"
    dim: int  # embedding size of the published layer
    package: str  # what a later milestone needs to run the real network
    source: str


SPECS: dict[str, PublishedSpec] = {s.name: s for s in [
    PublishedSpec("panns_cnn14", 32000, None, None, "none", "mono", 2048, "PANNs Cnn14 (panns_inference / "
                  "audioset_tagging_cnn), Cnn14_mAP=0.431.pth", "Kong et al. 2020; audioset_tagging_cnn Cnn14"),
    PublishedSpec("panns_cnn14_16k", 16000, None, None, "none", "mono", 2048, "PANNs Cnn14_16k, "
                  "Cnn14_16k_mAP=0.438.pth", "av-benchmark av_bench/extraction_models.py (FD-PANN)"),
    PublishedSpec("passt", 32000, 10.0, 10.0, "mean", "mono", 768, "hear21passt (PaSST-S, get_basic_model)",
                  "Koutini et al. 2022; av-benchmark (FD-PaSST, padded to 10 s)"),
    PublishedSpec("vggish", 16000, 0.96, 0.96, "mean", "mono", 128, "VGGish (torchvggish port), vggish.pth",
                  "Hershey et al. 2017; tensorflow/models audioset/vggish vggish_params.py, mel_features.py"),
    PublishedSpec("laion_clap", 48000, 10.0, None, "none", "mono", 512, "laion_clap HTSAT-base unfused, "
                  "music_speech_audioset_epoch_15_esc_89.98.pt", "LAION-AI/CLAP training/data.py "
                  "get_audio_features (repeatpad, rand_trunc)"),
    PublishedSpec("ms_clap", 44100, 7.0, None, "none", "mono", 1024, "msclap (CLAP version 2023)",
                  "microsoft/CLAP CLAPWrapper.load_audio_into_tensor; msclap/configs (44.1 kHz, 7 s)"),
    PublishedSpec("imagebind", 16000, 2.0, None, "mean", "mono", 1024, "imagebind (imagebind_huge)",
                  "facebookresearch/ImageBind data.py load_and_transform_audio_data"),
    PublishedSpec("synchformer", 16000, 4.8, None, "mean", "mono", 768, "Synchformer (synchformer_state_dict.pth)",
                  "av-benchmark extraction_models.py / evaluate.py; MMAudio Synchformer audio features"),
]}


def get_spec(name: str) -> PublishedSpec:
    if name not in SPECS:
        raise EvalError(f"unknown published embedder '{name}' (known: {', '.join(SPECS)})")
    return SPECS[name]


# ---------------------------------------------------------------- spectral front-ends (numpy, float64)
def _mel(f):
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * np.expm1(np.asarray(m, np.float64) / 1127.0)


def _triangles(bin_mels, lo_hz, hi_hz, n):
    """(n_bins, n) triangular weights laid out in the mel domain (VGGish mel_features, Kaldi mel banks)."""
    edges = np.linspace(_mel(lo_hz), _mel(hi_hz), n + 2)
    lo, ce, hi = edges[:-2], edges[1:-1], edges[2:]
    up = (bin_mels[:, None] - lo) / (ce - lo)
    down = (hi - bin_mels[:, None]) / (hi - ce)
    return np.maximum(0.0, np.minimum(up, down))


def _frames(x, win, hop):
    if len(x) < win:
        return np.zeros((0, win))
    return np.lib.stride_tricks.sliding_window_view(x, win)[::hop]


def vggish_logmel(x: np.ndarray) -> np.ndarray:
    """(N,) at 16 kHz -> (frames, 64) VGGish log-mel: no centring, periodic Hann 400, hop 160, |rfft 512|."""
    win, hop, nfft = 400, 160, 512
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    mag = np.abs(np.fft.rfft(_frames(x, win, hop) * window, nfft))
    w = _triangles(_mel(np.linspace(0, 8000, nfft // 2 + 1)), 125.0, 7500.0, 64)
    w[0] = 0.0  # the DC bin carries no weight
    return np.log(mag @ w + 0.01)


def kaldi_fbank(x: np.ndarray, sr: int = 16000, n_mels: int = 128) -> np.ndarray:
    """(N,) -> (frames, n_mels) Kaldi fbank as torchaudio.compliance.kaldi.fbank with ImageBind's arguments:
    snip edges, 25 ms / 10 ms, per-frame DC removal, pre-emphasis 0.97, symmetric Hanning, 512-point power
    spectrum, HTK-mel triangles 20 Hz-Nyquist over 256 bins, log floored at float32 eps, no dither/energy."""
    win, hop, nfft = int(0.025 * sr), int(0.010 * sr), 512
    f = _frames(x, win, hop).astype(np.float64)
    f = f - f.mean(axis=1, keepdims=True)
    f = f - 0.97 * np.concatenate([f[:, :1], f[:, :-1]], axis=1)
    power = np.abs(np.fft.rfft(f * np.hanning(win), nfft)) ** 2
    w = np.zeros((nfft // 2 + 1, n_mels))
    w[:-1] = _triangles(_mel(np.arange(nfft // 2) * sr / nfft), 20.0, sr / 2, n_mels)
    return np.log(np.maximum(power @ w, np.finfo(np.float32).eps))


def sync_logmel(x: np.ndarray, sr: int = 16000) -> np.ndarray:
    """(N,) -> (128, frames) log power mel as torchaudio MelSpectrogram(win 400, hop 160, n_fft 1024, 128 HTK mels
    0-8 kHz, no norm; centred with reflect padding, periodic Hann centred in the FFT frame), log(x + 1e-6)."""
    nfft, win, hop = 1024, 400, 160
    window = np.zeros(nfft)
    window[(nfft - win) // 2:(nfft - win) // 2 + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    xp = np.pad(x, nfft // 2, mode="reflect")
    power = np.abs(np.fft.rfft(_frames(xp, nfft, hop) * window, nfft)) ** 2
    freqs = np.linspace(0, sr // 2, nfft // 2 + 1)
    pts = _mel_to_hz(np.linspace(0.0, _mel(sr / 2), 128 + 2))  # triangles in Hz between mel-spaced points
    up = (freqs[:, None] - pts[:-2]) / np.diff(pts)[:-1]
    down = (pts[2:] - freqs[:, None]) / np.diff(pts)[1:]
    return np.log(power @ np.maximum(0.0, np.minimum(up, down)) + 1e-6).T


# ---------------------------------------------------------------- protocols
def _fit(x, n):
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def _crop(x, n, seed):
    if len(x) <= n:
        return x
    start = int(np.random.default_rng(seed).integers(0, len(x) - n + 1))
    return x[start:start + n]


def _mono(audio, sr, spec):
    from foleyflow.audio import resample

    a = np.asarray(audio, np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] == 0 or not np.all(np.isfinite(a)):
        raise EvalError(f"{spec.name}: audio must be a finite (channels, samples) array, got shape {a.shape}")
    if int(sr) <= 0:
        raise EvalError(f"{spec.name}: sample rate must be positive, got {sr}")
    return resample(a.mean(axis=0), int(sr), spec.sample_rate, dtype=np.float64)


def prepare(spec: PublishedSpec | str, audio: np.ndarray, sr: int, *, seed: int = 0) -> np.ndarray:
    """(C, N) float audio at `sr` -> the float32 batch the embedder's network takes (see the module docstring):
    panns*: (1, N') waveform; passt: (W, 320000) 10 s windows, the last zero-padded; vggish: (E, 96, 64) log-mel
    examples; laion_clap: (1, 480000); ms_clap: (1, 308700); imagebind: (3, 1, 128, 204) normalised fbank;
    synchformer: (2, 14, 1, 128, 66) normalised log-mel segments of the first and last 4.8 s.
    `seed` drives the random crop of clips longer than LAION-CLAP's / MS-CLAP's input."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    x = _mono(audio, sr, spec)
    rate = spec.sample_rate
    if spec.name.startswith("panns"):
        out = x[None]
    elif spec.name == "passt":
        n = int(round(spec.window_s * rate))
        count = max(1, -(-len(x) // n))
        out = np.pad(x, (0, count * n - len(x))).reshape(count, n)
    elif spec.name == "vggish":
        x = np.pad(x, (0, max(0, 15600 - len(x))))  # one 0.96 s example needs 400 + 95 * 160 samples
        mel = vggish_logmel(x)
        count = 1 + (len(mel) - _VGGISH_EXAMPLE_FRAMES) // _VGGISH_EXAMPLE_FRAMES
        out = mel[:count * _VGGISH_EXAMPLE_FRAMES].reshape(count, _VGGISH_EXAMPLE_FRAMES, 64)
    elif spec.name == "laion_clap":
        n = int(spec.window_s * rate)
        if len(x) < n:
            x = np.tile(x, n // len(x))
        x = _fit(_crop(x, n, seed), n)
        out = (np.round(np.clip(x, -1.0, 1.0) * 32767.0) / 32767.0)[None]  # the int16 round trip
    elif spec.name == "ms_clap":
        n = int(spec.window_s * rate)
        if len(x) < n:
            x = np.tile(x, -(-n // len(x)))[:n]
        out = _crop(x, n, seed)[None]
    elif spec.name == "imagebind":
        dur = len(x) / rate
        starts = np.linspace(0.0, max(dur - spec.window_s, 0.0), 3)
        feats = []
        for s in starts:
            w = x[int(s * rate):int((s + spec.window_s) * rate)]
            fb = kaldi_fbank(w - w.mean(), rate, 128).T  # (128, frames)
            fb = np.pad(fb, ((0, 0), (0, max(0, _IB_FRAMES - fb.shape[1]))))[:, :_IB_FRAMES]
            feats.append((fb - _IB_MEAN) / _IB_STD)
        out = np.stack(feats)[:, None]
    elif spec.name == "synchformer":
        need = _SYNC_SEGMENT + (_SYNC_PER_WINDOW - 1) * _SYNC_STRIDE  # 76800 samples = 4.8 s
        x = np.pad(x, (0, max(0, need - len(x))))
        segs = _frames(x, _SYNC_SEGMENT, _SYNC_STRIDE)
        mels = np.stack([sync_logmel(s, rate) for s in segs])  # (S, 128, 65)
        mels = np.pad(mels, ((0, 0), (0, 0), (0, max(0, _SYNC_FRAMES - mels.shape[2]))))[..., :_SYNC_FRAMES]
        mels = (mels - _SYNC_MEAN) / (2 * _SYNC_STD)
        out = np.stack([mels[:_SYNC_PER_WINDOW], mels[-_SYNC_PER_WINDOW:]])[:, :, None]
    else:  # a spec made by hand with an unknown name
        raise EvalError(f"no preprocessing protocol for '{spec.name}' (known: {', '.join(SPECS)})")
    return np.ascontiguousarray(out, dtype=np.float32)


# ---------------------------------------------------------------- the EvalModels hook
class PublishedEmbedder:
    """Wraps `forward_fn(batch) -> (rows, D)` (a network the user built and loaded) as
    EvalModels.audio_embedder: `embedder(audio (C, N), sr) -> (D,)`, prepared and pooled per the spec
    ("mean" averages the rows; "none" expects one row)."""

    def __init__(self, spec: PublishedSpec | str, forward_fn: Callable[[np.ndarray], np.ndarray], *, seed: int = 0):
        self.spec = get_spec(spec) if isinstance(spec, str) else spec
        self.forward_fn, self.seed = forward_fn, seed

    def __call__(self, audio: np.ndarray, sr: int) -> np.ndarray:
        batch = prepare(self.spec, audio, sr, seed=self.seed)
        out = self.forward_fn(batch)
        out = np.asarray(out.detach().cpu().numpy() if hasattr(out, "detach") else out, np.float64)
        out = out.reshape(len(batch), -1) if out.size and out.ndim != 2 else out
        if out.ndim != 2 or out.shape[0] != len(batch) or not np.all(np.isfinite(out)):
            raise EvalError(f"{self.spec.name}: forward_fn returned shape {np.shape(out)} (or non-finite values) "
                            f"for a batch of {len(batch)}; expected ({len(batch)}, D)")
        return out.mean(axis=0) if self.spec.pooling == "mean" else out[0]


def load_published_embedder(name: str, weights_path: str | Path) -> PublishedEmbedder:
    """The interface for the real networks: takes their weights by path. Loading them is a later milestone, so
    after checking the path this raises MissingResourceError naming what is needed; meanwhile build the network
    yourself and wrap it with PublishedEmbedder(name, forward_fn)."""
    spec = get_spec(name)
    path = Path(weights_path)
    if not path.is_file():
        raise FoleyError(f"{name}: weights file not found: {path}")
    raise MissingResourceError(f"{name}: a single weights file is not loaded here ({spec.package}); `foleyflow "
                               f"evaluate --embedders DIR` computes the published metrics from a folder of weights "
                               f"(docs/evaluation.md), or wrap your own model with "
                               f"foleyflow.eval.published.PublishedEmbedder('{name}', forward_fn)")
