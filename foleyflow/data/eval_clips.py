"""Training data of the audio evaluation models (recipes/train_event_classifier.py, recipes/train_clap.py).

Clips come from a FoleyWorld manifest restricted to one split (the evaluation models use `evaltrain` only), or from
a small synthetic set (tone bursts with labelled onsets) for debug runs and tests. Each clip's mono log-mel
spectrogram is computed once with the model's own front end (EvalCNN.log_mel) and kept as float16 in memory and in a
cache file; training samples are slices of it (a segment of `n` frames starting at time t is frames
round(t * frame_rate) ... + n, which is what the front end gives on the waveform slice, up to the edge frames).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foleyflow.errors import FoleyError
from foleyflow.events import SOUND_CLASSES


@dataclass
class EvalClip:
    id: str
    audio: str | None          # wav path (None for synthetic clips)
    events: list[dict]         # {"sound_class", "kind", "onset_s", "offset_s"}
    caption: str
    duration_s: float


def manifest_clips(manifest: str | Path, split: str, limit: int = 0) -> list[EvalClip]:
    """The clips of `split` in a FoleyWorld manifest, with their ground-truth events and captions."""
    from foleyflow.manifest import read_manifest

    rows = [e for e in read_manifest(manifest, check_files=False) if e.split == split]
    if limit:
        rows = rows[:limit]
    if not rows:
        raise FoleyError(f"manifest {manifest} has no clips of split '{split}'")
    out = []
    for e in rows:
        if not e.truth or not e.audio:
            raise FoleyError(f"clip {e.id} of {manifest} needs 'audio' and 'truth' for evaluation-model training")
        truth = json.loads(Path(e.truth).read_text())
        events = [{k: ev.get(k) for k in ("sound_class", "kind", "onset_s", "offset_s")} for ev in truth["events"]]
        out.append(EvalClip(e.id, e.audio, events, e.caption or "", float(truth.get("duration_s", e.duration_s))))
    return out


def synthetic_clips(n: int, *, duration_s: float = 2.0, sample_rate: int = 16000, seed: int = 0
                    ) -> tuple[list[EvalClip], list[np.ndarray]]:
    """n clips of decaying tone bursts; the class sets the pitch. Returns (clips, stereo audio (2, N) float32)."""
    rng = np.random.default_rng(seed)
    classes = SOUND_CLASSES[:4]
    clips, audio = [], []
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    for i in range(n):
        x = 0.003 * rng.standard_normal(len(t))
        events = []
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.integers(len(classes)))
            on = float(rng.uniform(0.1, duration_s - 0.3))
            env = np.where(t >= on, np.exp(-(t - on) * 12.0), 0.0)
            x += 0.3 * env * np.sin(2 * np.pi * 300.0 * (c + 1) * t)
            events.append({"sound_class": classes[c], "kind": "discrete", "onset_s": on, "offset_s": on + 0.5})
        names = sorted({e["sound_class"] for e in events})
        clips.append(EvalClip(f"synthetic_{i:04d}", None, events, "tones of " + " and ".join(names), duration_s))
        audio.append(np.stack([x, x]).astype(np.float32))
    return clips, audio


def clip_mels(clips: list[EvalClip], front_end, *, cache: str | Path | None = None, audio: list | None = None,
              batch: int = 16, progress: bool = False) -> np.ndarray:
    """(num_clips, n_mels, frames) float16 log-mels of the clips' mono mixes (clips padded or cut to the first
    clip's duration). front_end: an EvalCNN (its log_mel only). `audio`: waveforms for synthetic clips. With `cache`,
    a file keyed by the clip ids and the front-end settings is reused."""
    import torch

    cfg = front_end.cfg
    key = hashlib.sha1(json.dumps([[c.id for c in clips], cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels,
                                   cfg.f_max]).encode()).hexdigest()[:16]
    path = Path(cache) / f"mels_{key}.npy" if cache else None
    if path is not None and path.is_file():
        return np.load(path, mmap_mode=None)
    n = int(round(clips[0].duration_s * cfg.sample_rate))
    out = None
    it = range(0, len(clips), batch)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="log-mel", unit="batch")
    for s in it:
        wavs = []
        for j in range(s, min(s + batch, len(clips))):
            x = audio[j] if audio is not None else _read(clips[j].audio, cfg.sample_rate)
            x = np.asarray(x, np.float32).reshape(-1, np.shape(x)[-1]).mean(0)
            wavs.append(np.pad(x[:n], (0, max(0, n - len(x)))))
        with torch.no_grad():
            mel = front_end.log_mel(torch.from_numpy(np.stack(wavs))).numpy().astype(np.float16)
        if out is None:
            out = np.empty((len(clips), *mel.shape[1:]), np.float16)
        out[s: s + len(mel)] = mel
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        from foleyflow.fileio import atomic_write

        with atomic_write(path) as tmp:  # keeps the .npy suffix, so np.save adds none
            np.save(tmp, out)
    return out


def _read(path: str, sample_rate: int) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    if sr != sample_rate:
        from foleyflow.audio import resample
        return resample(x.T, sr, sample_rate)
    return x.T


def timed_events(clips: list[EvalClip], classes: tuple[str, ...]) -> np.ndarray:
    """(E, 3) float64 rows (clip index, onset_s, class index) of every event of a class in `classes`."""
    idx = {c: i for i, c in enumerate(classes)}
    rows = [(i, e["onset_s"], idx[e["sound_class"]]) for i, c in enumerate(clips) for e in c.events
            if e["sound_class"] in idx]
    return np.array(rows, np.float64).reshape(-1, 3)


def crop_labels(clip: EvalClip, t0: float, t1: float, classes: tuple[str, ...], *, ring_s: float = 0.25
                ) -> np.ndarray:
    """(C,) multi-hot presence of `classes` in [t0, t1): ambience always; a continuous event when its span
    overlaps; a discrete event when its onset is in [t0 - ring_s, t1 - 0.02)."""
    y = np.zeros(len(classes), np.float32)
    for e in clip.events:
        if e["sound_class"] not in classes:
            continue
        on, off = e["onset_s"], e["offset_s"] if e["offset_s"] is not None else clip.duration_s
        if e["kind"] == "ambience":
            hit = True
        elif e["kind"] == "continuous":
            hit = on < t1 and off > t0
        else:
            hit = t0 - ring_s <= on < t1 - 0.02
        if hit:
            y[classes.index(e["sound_class"])] = 1.0
    return y


def mel_slice(mel: np.ndarray, start_frame: int, frames: int) -> np.ndarray:
    """(n_mels, frames) slice of one clip's log-mel, padded with the silence floor outside the clip."""
    from foleyflow.models.eval_audio import LOG_FLOOR

    out = np.full((mel.shape[0], frames), LOG_FLOOR, np.float32)
    a, b = max(start_frame, 0), min(start_frame + frames, mel.shape[1])
    if b > a:
        out[:, a - start_frame: b - start_frame] = mel[:, a:b]
    return out


def mean_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean over classes with at least one positive of the average precision of ranking clips by score."""
    aps = []
    for k in range(labels.shape[1]):
        y = labels[np.argsort(-scores[:, k], kind="stable"), k]
        if y.sum() == 0:
            continue
        hits = np.cumsum(y)
        aps.append(float((hits / np.arange(1, len(y) + 1))[y > 0].mean()))
    return float(np.mean(aps)) if aps else float("nan")
