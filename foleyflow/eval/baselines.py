"""Baseline sets for the evaluation report: what a generator must beat, computed in the same run.

A set is a dict {clip name: loader}, each loader returning ((2, num_samples) float64 audio, sample_rate), so
baselines are made on the fly instead of written to disk. The reference set scored against its own labels is the
ceiling of the paired metrics; `shuffled` gives each clip the audio of another clip (a derangement: plausible sound,
wrong events and timing); `silence` and `noise` (white noise at each reference clip's RMS) are the floor.
`retrieval_set`: each clip gets the audio of the training clip whose video embedding is nearest (cosine); the
embeddings come from the pipeline's own semantic visual encoder (run.py), never from an evaluation model, so the
baseline shows what nearest-neighbour lookup with the generator's conditioning features achieves.
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


def _borrowed(own: Loader, other: Loader) -> tuple[np.ndarray, int]:
    """`other`'s audio cut or zero-padded to the length of `own` (the sample rate is other's)."""
    x, sr = other()
    n = own()[0].shape[1]
    out = np.zeros((2, n))
    m = min(n, x.shape[1])
    out[:, :m] = x[:, :m]
    return out, sr


def shuffled_set(reference: AudioSet, seed: int = 0) -> AudioSet:
    """Each clip gets another clip's audio, cut or zero-padded to its own length."""
    names = sorted(reference)
    perm = derangement(len(names), seed)
    return {own: (lambda own=own, other=names[j]: _borrowed(reference[own], reference[other]))
            for own, j in zip(names, perm)}


def nearest_neighbours(queries: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(Q,) index of the row of pool (P, D) with the highest cosine to each row of queries (Q, D)."""
    q, p = np.asarray(queries, np.float64), np.asarray(pool, np.float64)
    if q.ndim != 2 or p.ndim != 2 or q.shape[1] != p.shape[1] or len(p) == 0:
        raise EvalError(f"nearest neighbours need (Q, D) queries and a non-empty (P, D) pool, got {q.shape} and "
                        f"{p.shape}")
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    return np.argmax(q @ p.T, axis=1)


def retrieval_set(reference: AudioSet, query_embeddings: dict[str, np.ndarray], train_audio: AudioSet,
                  train_embeddings: dict[str, np.ndarray]) -> tuple[AudioSet, dict[str, str]]:
    """(set, {clip: chosen training clip}): each clip of `query_embeddings` (names of `reference`) gets the audio of
    the training clip with the nearest video embedding, cut or zero-padded to its own length."""
    train_names = sorted(n for n in train_embeddings if n in train_audio)
    if not train_names:
        raise EvalError("the retrieval baseline found no training clip with both a video and an audio file")
    names = sorted(query_embeddings)
    idx = nearest_neighbours(np.stack([query_embeddings[n] for n in names]),
                             np.stack([train_embeddings[n] for n in train_names]))
    match = {n: train_names[i] for n, i in zip(names, idx)}
    return ({n: (lambda n=n: _borrowed(reference[n], train_audio[match[n]])) for n in names}, match)


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
