"""Baseline sets for the evaluation report: what a generator must beat, computed in the same run.

A set is a dict {clip name: loader}, each loader returning ((2, num_samples) float64 audio, sample_rate), so
baselines are made on the fly instead of written to disk. The reference set scored against its own labels is the
ceiling of the paired metrics; `shuffled` gives each clip the audio of another clip (a derangement: plausible sound,
wrong events and timing); `silence` and `noise` (white noise at each reference clip's RMS) are the floor. The
retrieval baseline (the training clip whose video embedding is nearest) needs the pipeline's trained visual encoder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from foleyflow.errors import EvalError
from foleyflow.eval.audio_io import list_audio, read_stereo

Loader = Callable[[], tuple[np.ndarray, int]]
AudioSet = dict[str, Loader]


def folder_set(folder: str | Path) -> AudioSet:
    """The audio files of a folder, by stem."""
    return {name: (lambda p=p: read_stereo(p)) for name, p in list_audio(folder).items()}


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of range(n) with no fixed point (n >= 2)."""
    if n < 2:
        raise EvalError("a shuffled baseline needs at least 2 clips")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    while np.any(perm == np.arange(n)):
        perm = rng.permutation(n)
    return perm


def shuffled_set(reference: AudioSet, seed: int = 0) -> AudioSet:
    """Each clip gets another clip's audio, cut or zero-padded to its own length."""
    names = sorted(reference)
    perm = derangement(len(names), seed)

    def load(own: str, other: str):
        x, sr = reference[other]()
        n = reference[own]()[0].shape[1]
        out = np.zeros((2, n))
        m = min(n, x.shape[1])
        out[:, :m] = x[:, :m]
        return out, sr

    return {own: (lambda own=own, other=names[j]: load(own, other)) for own, j in zip(names, perm)}


def silence_set(reference: AudioSet) -> AudioSet:
    def load(name):
        x, sr = reference[name]()
        return np.zeros_like(x), sr
    return {name: (lambda name=name: load(name)) for name in reference}


def noise_set(reference: AudioSet, seed: int = 0) -> AudioSet:
    """White noise with each reference clip's per-channel RMS (seeded per clip by its position in sorted order)."""
    def load(name, k):
        x, sr = reference[name]()
        rms = np.sqrt((x ** 2).mean(axis=1, keepdims=True))
        return np.random.default_rng([seed, k]).standard_normal(x.shape) * rms, sr
    return {name: (lambda name=name, k=k: load(name, k)) for k, name in enumerate(sorted(reference))}
