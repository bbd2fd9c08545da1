"""The published metrics of av-benchmark (hkchengrex/av-benchmark, `av_bench/extract.py`, `evaluate.py`, `metrics/`)
from the user's embedders folder: FD_PaSST, FD_PANNs, FD_VGGish, KL and IS over PaSST and PANNs logits, and the
LAION-CLAP and MS-CLAP scores. `load_published_models(folder, captions)` returns one `PublishedModel` per embedder
whose weights are in the folder (the others are listed with the reason); `run.EvalModels.published` carries them
and `run.py` reports `fd_<name>`, `kad_<name>`, `kl_<name>`, `is_<name>` / `is_<name>_std` and `clap_<name>`.

The protocol, per generated or reference file (av-benchmark `AudioDataset`): channels averaged to mono, the mean
subtracted, resampled to the embedder's rate, cut to the first 8 s (never padded), then
  - PANNs Cnn14 16 kHz: the whole clip; "2048" embedding and logits;
  - VGGish 16 kHz: 0.96 s log-mel examples (`published.vggish_logmel`), each a row; FD over all rows concatenated;
  - PaSST 32 kHz: padded with zeros (or cut) to 10 s; logits [:527] and embedding [527:];
  - LAION-CLAP 48 kHz: `get_audio_features(..., 480000, "rand_trunc", "repeatpad")` (tiled floor(480000 / N) times,
    zero-padded; no int16 round trip: av-benchmark passes tensors);
  - MS-CLAP: its own loader (`CLAPWrapper.load_audio_into_tensor`): the file's channels flattened one after the
    other, resampled to 44.1 kHz, tiled ceil(7 s / N) times and cut to 7 s, or a random 7 s crop (seeded here).
Metrics: FD as `metrics.frechet_distance` (the same value as av-benchmark's `compute_fd`; ours avoids sqrtm's
complex round-off); KL = sum over paired clips of KL(softmax(ref) || softmax(gen)) / N, exact log-softmax
(`compute_kl`'s kl_softmax); IS over generated logits shuffled by numpy RandomState(2020), 10 splits at
i * N // 10 (`compute_isc`), reported from 10 clips on; CLAP score = mean paired cosine of text and audio
embeddings. Departures: resampling is polyphase (`foleyflow.audio.resample`; av-benchmark uses torchaudio's sinc
resampler); MS-CLAP's crop of clips longer than 7 s is seeded (random.randrange in the original).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from foleyflow.errors import EvalError
from foleyflow.eval.published import vggish_logmel
from foleyflow.models.published_nets import laion_input, ms_clap_input  # noqa: F401 (part of this protocol)

CLIP_S = 8.0  # av-benchmark's audio_length
NAMES = ("passt", "panns", "vggish", "laion_clap", "ms_clap")


# ---------------------------------------------------------------- preprocessing (numpy)
def av_clip(audio: np.ndarray, sr: int, rate: int, *, length_s: float = CLIP_S) -> np.ndarray:
    """(C, N) or (N,) audio at `sr` -> (M,) float64 mono at `rate`, mean removed, first `length_s` seconds."""
    from foleyflow.audio import resample

    a = np.asarray(audio, np.float64)
    a = a[None] if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[1] == 0 or not np.all(np.isfinite(a)):
        raise EvalError(f"audio must be a finite (channels, samples) array, got shape {a.shape}")
    x = a.mean(axis=0)
    x = x - x.mean()
    if int(sr) != rate:
        x = resample(x, int(sr), rate, dtype=np.float64)
    return x[:int(rate * length_s)]


def passt_input(x32k: np.ndarray) -> np.ndarray:
    """(M,) at 32 kHz -> (1, 320000): zero-padded or cut to 10 s."""
    n = 320000
    return np.pad(x32k, (0, max(0, n - len(x32k))))[:n][None].astype(np.float32)


def vggish_examples(x16k: np.ndarray) -> np.ndarray:
    """(M,) at 16 kHz -> (E, 96, 64) VGGish log-mel examples (E >= 1: a clip under 0.975 s is zero-padded)."""
    x = np.pad(x16k, (0, max(0, 15600 - len(x16k))))
    mel = vggish_logmel(x)
    count = len(mel) // 96
    return mel[:count * 96].reshape(count, 96, 64).astype(np.float32)


# ---------------------------------------------------------------- metrics as av-benchmark computes them
def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def kl_softmax(reference_logits, generated_logits) -> float:
    """av-benchmark compute_kl(...)["kl_softmax"]: sum_i KL(softmax(ref_i) || softmax(gen_i)) / N, (N, C) each."""
    r, g = np.asarray(reference_logits, np.float64), np.asarray(generated_logits, np.float64)
    if r.shape != g.shape or r.ndim != 2 or len(r) == 0:
        raise EvalError(f"KL needs paired logits of one shape, got {r.shape} and {g.shape}")
    lr, lg = _log_softmax(r), _log_softmax(g)
    return float((np.exp(lr) * (lr - lg)).sum() / len(r))


def inception_score_av(logits, *, splits: int = 10, rng_seed: int = 2020) -> tuple[float, float]:
    """av-benchmark compute_isc: rows shuffled by RandomState(rng_seed), split at i * N // splits; (mean, std)."""
    x = np.asarray(logits, np.float64)
    if x.ndim != 2 or len(x) < splits:
        raise EvalError(f"IS with {splits} splits needs at least {splits} rows of logits, got shape {x.shape}")
    n = len(x)
    x = x[np.random.RandomState(rng_seed).permutation(n)]
    logp = _log_softmax(x)
    p = np.exp(logp)
    scores = []
    for i in range(splits):
        s = slice(i * n // splits, (i + 1) * n // splits)
        q = p[s].mean(axis=0, keepdims=True)
        scores.append(float(np.exp((p[s] * (logp[s] - np.log(q))).sum(axis=1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


# ---------------------------------------------------------------- the models
@dataclass
class PublishedModel:
    """One embedder. audio(audio (C, N), sr) -> {"embedding": (R, D) rows for FD/KAD, "logits": (C,) for KL/IS,
    "clap": (D,) audio embedding for the CLAP score} (the keys it has); text(caption) -> (D,) for CLAP models."""
    name: str
    audio: Callable[[np.ndarray, int], dict]
    text: Callable[[str], np.ndarray] | None = None
    captions: dict[str, str] = field(default_factory=dict)


def _np(t) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(np.float64)


def _passt(net) -> Callable:
    import torch

    def audio(a, sr):
        with torch.inference_mode(), contextlib.redirect_stdout(io.StringIO()):  # PaSST prints shapes on its 1st run
            out = _np(net(torch.from_numpy(passt_input(av_clip(a, sr, 32000)))))[0]
        return {"embedding": out[None, 527:], "logits": out[:527]}
    return audio


def _panns(net) -> Callable:
    import torch

    def audio(a, sr):
        x = torch.from_numpy(av_clip(a, sr, 16000).astype(np.float32))[None]
        with torch.inference_mode():
            emb = net(x)["embedding"]
            logits = net.fc_audioset(emb)
        return {"embedding": _np(emb), "logits": _np(logits)[0]}
    return audio


def _vggish(net) -> Callable:
    import torch

    def audio(a, sr):
        x = torch.from_numpy(vggish_examples(av_clip(a, sr, 16000)))[:, None]
        with torch.inference_mode():
            h = net.features(x).permute(0, 2, 3, 1).reshape(len(x), -1)
            for layer in list(net.embeddings)[:-1]:  # av-benchmark's VGGish ends without the final ReLU
                h = layer(h)
        return {"embedding": _np(h)}
    return audio


def _clap(clap, seed: int) -> tuple[Callable, Callable]:
    def audio(a, sr):
        if clap.name == "laion_clap":
            x = laion_input(av_clip(a, sr, 48000), seed)
        else:
            x = ms_clap_input(a, sr, seed)
        return {"clap": _np(clap.audio_embeddings(x[None]))[0]}

    def text(caption):
        return _np(clap.text_embeddings([caption]))[0]
    return audio, text


def load_published_models(folder: str | Path, captions: dict[str, str] | None = None, *, seed: int = 0
                          ) -> tuple[list[PublishedModel], dict[str, str]]:
    """The embedders whose files are in `folder` (published_nets.FILES, text folders TEXT_FOLDERS), and
    {name: reason} for those not loaded. CLAP models need `captions` ({clip name: caption}) to score."""
    from foleyflow.models import published_nets as nets

    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"--embedders {folder}: no such folder")
    models, skipped = [], {}
    for name in NAMES:
        path = folder / nets.FILES[name]
        if not path.is_file():
            skipped[name] = f"no {nets.FILES[name]} in {folder}"
            continue
        sd = nets.read_pth(path) if name in ("passt", "panns", "vggish") else None
        if name == "passt":
            net = nets.build_passt()
            nets.load_strict(net.net, nets.state_dict_of(sd, path), path)
            models.append(PublishedModel(name, _passt(net.eval())))
        elif name == "panns":
            net = nets.build_panns()
            nets.load_strict(net, nets.state_dict_of(sd, path), path)
            models.append(PublishedModel(name, _panns(net)))
        elif name == "vggish":
            net = nets.build_vggish()
            nets.load_strict(net, nets.state_dict_of(sd, path), path)
            models.append(PublishedModel(name, _vggish(net)))
        else:
            audio, text = _clap(nets.load_clap(path, name), seed)
            models.append(PublishedModel(name, audio, text, dict(captions or {})))
    return models, skipped
