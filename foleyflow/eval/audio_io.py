"""Reading evaluation audio and pairing files across folders by name (av-benchmark matches generated and reference
files by file name; so do we, by stem, so `clip.wav` pairs with `clip.json` or `clip.flac`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from foleyflow.audio import resample
from foleyflow.errors import EvalError

AUDIO_EXTS = (".wav", ".flac")


def read_stereo(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Reads an audio file as float64 (2, num_samples); mono is duplicated to both channels; resampled to
    `sample_rate` (polyphase) when given. Raises EvalError for unreadable files or more than two channels."""
    import soundfile as sf

    try:
        data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise EvalError(f"cannot read audio {path}: {e}") from None
    x = data.T
    if x.shape[0] == 1:
        x = np.repeat(x, 2, axis=0)
    if x.shape[0] != 2:
        raise EvalError(f"{path} has {x.shape[0]} channels; evaluation takes mono or stereo audio")
    if x.shape[1] == 0:
        raise EvalError(f"{path} holds no samples")
    if not np.isfinite(x).all():  # name the file here: the metrics downstream see only arrays
        raise EvalError(f"{path} holds {int(np.size(x) - np.isfinite(x).sum())} NaN/infinite samples")
    if sample_rate is not None and sr != sample_rate:
        x, sr = resample(x, sr, sample_rate, dtype=np.float64), sample_rate
    return x, int(sr)


def list_audio(folder: str | Path) -> dict[str, Path]:
    """{stem: path} of the .wav/.flac files in a folder (not recursive). Raises EvalError if none or duplicates."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"audio folder {folder} does not exist")
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in AUDIO_EXTS:
            if p.stem in out:
                raise EvalError(f"{folder} holds two audio files named {p.stem} ({out[p.stem].name}, {p.name})")
            out[p.stem] = p
    if not out:
        raise EvalError(f"no .wav or .flac files in {folder}")
    return out


def pair_by_stem(first: dict[str, Path], second_folder: str | Path, ext: str | None, what: str) -> list[tuple]:
    """[(stem, first path, second path)] for every stem of `first`; the second folder must have each of them
    (extra files there are ignored). ext: '.json' etc., or None for audio. Raises EvalError naming what is missing."""
    second_folder = Path(second_folder)
    if not second_folder.is_dir():
        raise EvalError(f"{what} folder {second_folder} does not exist")
    second = ({p.stem: p for p in second_folder.glob(f"*{ext}")} if ext else list_audio(second_folder))
    missing = [s for s in first if s not in second]
    if missing:
        raise EvalError(f"{len(missing)} of {len(first)} clips have no {what} in {second_folder} "
                        f"(e.g. {', '.join(missing[:3])})")
    return [(s, first[s], second[s]) for s in first]
