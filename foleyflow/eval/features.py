"""A fixed signal-statistics audio embedding, for distribution metrics before any evaluation model is trained.

Not from a paper and not comparable with FD/KAD numbers computed on PaSST, PANNs or VGGish embeddings: the mean and
standard deviation over time of a 64-band log-mel spectrogram (16 kHz, 25 ms window, 10 ms hop) and of its first
difference, concatenated (256-d). It sees spectral balance, loudness and temporal texture, not semantics; it is what
`foleyflow evaluate` uses (named `melstats`) until a trained audio embedder is given.
"""
from __future__ import annotations

import numpy as np

from foleyflow.audio import resample
from foleyflow.eval.onsets import onset_filterbank

MELSTATS_RATE = 16000
MELSTATS_DIM = 256


def melstats_embedding(audio, sample_rate: int) -> np.ndarray:
    """(256,) float64 embedding of (channels, num_samples) or (num_samples,) audio (mixed to mono)."""
    from scipy.signal import stft

    x = np.asarray(audio, np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    x = resample(x, sample_rate, MELSTATS_RATE, dtype=np.float64)
    _, _, z = stft(x, fs=MELSTATS_RATE, window="hann", nperseg=400, noverlap=240, nfft=512, boundary="even")
    mel = (np.abs(z) ** 2).T @ onset_filterbank(MELSTATS_RATE, 512, 64).T
    db = 10.0 * np.log10(mel + 1e-10)
    d = np.diff(db, axis=0) if len(db) > 1 else np.zeros_like(db)
    return np.concatenate([db.mean(0), db.std(0), d.mean(0), d.std(0)])
