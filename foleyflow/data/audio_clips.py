"""Audio-only training data for the codec: fixed-length stereo crops of wav files, or synthetic stereo audio.

Sources (`audio_files`): a folder (every .wav / .flac below it) or a JSONL manifest (`foleyflow.manifest`; the
`audio` field of each entry, optionally only one `split`). Crops are reproducible: the crop of item i in epoch e is
drawn from a generator seeded with (seed, e, i), so every process of a distributed run sees the same crop for the same
item, and a resumed run sees the crops the interrupted one would have seen.

`SyntheticAudio` makes procedural stereo clips (decaying tones, chirps, noise bursts, clicks; each event panned with a
level and a time difference between the ears) from a seed: the debug configs and tests train on it, no files needed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from foleyflow.errors import FoleyError

AUDIO_SUFFIXES = (".wav", ".flac")


class AudioDataError(FoleyError):
    """An audio data source is missing, empty or unreadable."""


def audio_files(source: str | Path, split: str | None = None) -> list[Path]:
    """Audio file paths from a folder (recursive, sorted) or a JSONL manifest's `audio` fields."""
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    elif source.is_file() and source.suffix.lower() in (".jsonl", ".json"):
        from foleyflow.manifest import read_manifest

        entries = [e for e in read_manifest(source) if split is None or e.split == split]
        missing = [e.id for e in entries if not e.audio]
        if missing:
            raise AudioDataError(f"manifest {source}: entry '{missing[0]}' has no 'audio' file "
                                 f"({len(missing)} entries lack one)")
        files = [Path(e.audio) for e in entries]
    elif source.is_file() and source.suffix.lower() in AUDIO_SUFFIXES:
        files = [source]
    else:
        raise AudioDataError(f"audio source not found or not a folder / .jsonl manifest / audio file: {source}")
    if not files:
        raise AudioDataError(f"no audio files in {source}" + (f" for split '{split}'" if split else ""))
    return files


def _crop(audio: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    n = audio.shape[-1]
    if n >= num_samples:
        start = int(rng.integers(0, n - num_samples + 1))
        return audio[:, start:start + num_samples]
    return np.pad(audio, ((0, 0), (0, num_samples - n)))


class AudioClips(torch.utils.data.Dataset):
    """Item i -> float32 tensor (channels, num_samples) at `sample_rate`, a reproducible random crop of file i."""

    def __init__(self, files: list[Path], sample_rate: int, num_samples: int, channels: int = 2, seed: int = 0):
        self.files, self.sample_rate, self.num_samples = list(files), sample_rate, num_samples
        self.channels, self.seed, self.epoch = channels, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from foleyflow.audio import load_audio

        audio = load_audio(self.files[i], self.sample_rate, channels=self.channels)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return torch.from_numpy(np.ascontiguousarray(_crop(audio, self.num_samples, rng)))


def random_stereo_events(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """(2, num_samples) float32 stereo: 1-6 random events (tone, chirp, noise burst, click), each with its own onset,
    decay, level difference (up to +-12 dB) and interaural delay (up to 0.6 ms); peak level below 0.9."""
    out = np.zeros((2, num_samples), np.float64)
    t = np.arange(num_samples) / sample_rate
    for _ in range(int(rng.integers(1, 7))):
        onset = rng.uniform(0, num_samples / sample_rate * 0.9)
        tau = rng.uniform(0.01, 0.4)
        env = np.where(t >= onset, np.exp(-(t - onset) / tau), 0.0)
        kind = rng.integers(0, 4)
        f0 = rng.uniform(80, sample_rate / 5)
        if kind == 0:
            sig = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, int(rng.integers(1, 5)) + 1))
        elif kind == 1:
            f1 = rng.uniform(80, sample_rate / 5)
            sig = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * t[-1] + 1e-9)))
        elif kind == 2:
            sig = rng.standard_normal(num_samples)
        else:
            sig = rng.standard_normal(num_samples)
            env = env * (t < onset + 0.003)
        mono = env * sig * rng.uniform(0.05, 0.5)
        ild_db, delay = rng.uniform(-12, 12), int(round(rng.uniform(-0.0006, 0.0006) * sample_rate))
        gains = 10 ** (np.array([ild_db, -ild_db]) / 40)
        left, right = mono * gains[0], np.roll(mono, delay) * gains[1]
        out += np.stack([left, right])
    peak = np.abs(out).max()
    if peak > 0.9:
        out *= 0.9 / peak
    return out.astype(np.float32)


class SyntheticAudio(torch.utils.data.Dataset):
    """`num_items` procedural stereo clips; item i of epoch e is fixed by (seed, e, i)."""

    def __init__(self, num_items: int, sample_rate: int, num_samples: int, seed: int = 0):
        self.num_items, self.sample_rate, self.num_samples, self.seed, self.epoch = (num_items, sample_rate,
                                                                                    num_samples, seed, 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return torch.from_numpy(random_stereo_events(self.num_samples, self.sample_rate, rng))


def build_audio_dataset(source: str, *, sample_rate: int, num_samples: int, seed: int, split: str | None = None,
                        synthetic_items: int = 64) -> torch.utils.data.Dataset:
    """`source` = 'synthetic' or a folder / manifest / file (see `audio_files`)."""
    if source == "synthetic":
        return SyntheticAudio(synthetic_items, sample_rate, num_samples, seed)
    return AudioClips(audio_files(source, split), sample_rate, num_samples, 2, seed)
