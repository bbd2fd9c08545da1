"""Audio-visual alignment scores: DeSync (av-benchmark protocol) and embedding similarities (IB-style, CLAP-style).

DeSync (used by MMAudio and av-benchmark with Synchformer as the offset classifier): an audio-visual offset classifier
predicts one of 21 offsets from -2 to +2 s in 0.2 s steps for a 4.8 s window; it is applied to the first and the last
4.8 s of each clip (one window when the clip is exactly 4.8 s long), the predicted offset of each window is the class
with the highest score, and DeSync is the mean absolute predicted offset over windows and clips (seconds). Audio is
mixed to mono, as av-benchmark does. Sign convention here: a positive offset means the audio lags the video.
The classifier is an evaluation model trained elsewhere; this module only defines its interface and the protocol.

IB score: 100 x the mean cosine between paired video and audio embeddings of a joint audio-visual model.
CLAP score: the mean cosine between paired text and audio embeddings of a contrastive text-audio model (per clip:
`text_audio_similarities`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np

from foleyflow.errors import EvalError
from foleyflow.eval.metrics import paired_cosine, paired_cosines

OFFSETS_S = np.round(np.linspace(-2.0, 2.0, 21), 1)    # the 21 offset classes, seconds
WINDOW_S = 4.8


class OffsetClassifier(Protocol):
    """An audio-visual offset classifier used for evaluation.

    sample_rate: audio rate it expects; video_fps: frame rate it expects (the caller supplies frames at that rate).
    __call__(frames, audio): frames (T, H, W, 3) uint8 covering 4.8 s, audio (num_samples,) float32 mono covering the
    same 4.8 s -> (21,) scores (logits or posteriors) over OFFSETS_S.
    """

    sample_rate: int
    video_fps: float

    def __call__(self, frames: np.ndarray, audio: np.ndarray) -> np.ndarray: ...


def desync_windows(duration_s: float, window_s: float = WINDOW_S) -> list[tuple[float, float]]:
    """[(start_s, end_s)]: the first and last `window_s` of a clip (one window if they coincide)."""
    if duration_s + 1e-6 < window_s:
        raise EvalError(f"DeSync needs clips of at least {window_s} s, got {duration_s:.3f} s")
    first, last = (0.0, window_s), (max(0.0, duration_s - window_s), max(window_s, duration_s))
    return [first] if abs(last[0]) < 1e-6 else [first, last]


@dataclass
class ClipDesync:
    name: str
    offsets_s: list[float]     # predicted offset per window

    @property
    def desync_s(self) -> float:
        return float(np.mean(np.abs(self.offsets_s)))


def clip_desync(name: str, frames: np.ndarray, audio: np.ndarray, classifier: OffsetClassifier) -> ClipDesync:
    """Predicted offsets of one clip. frames (T, H, W, 3) at classifier.video_fps, audio (num_samples,) mono or
    (channels, num_samples) at classifier.sample_rate (mixed to mono)."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    frames = np.asarray(frames)
    if frames.ndim != 4 or audio.ndim != 1:
        raise EvalError(f"DeSync takes frames (T, H, W, 3) and audio (num_samples,), got {frames.shape} and "
                        f"{audio.shape}")
    sr, fps = classifier.sample_rate, classifier.video_fps
    dur = min(len(audio) / sr, len(frames) / fps)
    offsets = []
    for t0, t1 in desync_windows(dur):
        f = frames[int(round(t0 * fps)): int(round(t0 * fps)) + int(round(WINDOW_S * fps))]
        a = audio[int(round(t0 * sr)): int(round(t0 * sr)) + int(round(WINDOW_S * sr))]
        scores = np.asarray(classifier(f, a), np.float64).ravel()
        if scores.shape != (len(OFFSETS_S),):
            raise EvalError(f"the offset classifier returned shape {scores.shape}; expected ({len(OFFSETS_S)},)")
        offsets.append(float(OFFSETS_S[int(np.argmax(scores))]))
    return ClipDesync(name, offsets)


def evaluate_desync(clips: Iterable[tuple[str, np.ndarray, np.ndarray]], classifier: OffsetClassifier
                    ) -> tuple[dict, list[ClipDesync]]:
    """DeSync over (name, frames, audio) items. Returns ({"desync_s", "desync_clips", "offset_zero_rate"}, per clip).
    offset_zero_rate: share of windows predicted in sync (the classifier's accuracy when the pairs are true ones)."""
    per = [clip_desync(n, f, a, classifier) for n, f, a in clips]
    if not per:
        raise EvalError("no clips to evaluate DeSync on")
    offs = np.concatenate([np.abs(c.offsets_s) for c in per])
    return ({"desync_s": float(np.mean([c.desync_s for c in per])), "desync_clips": len(per),
             "offset_zero_rate": float(np.mean(offs < 1e-6))}, per)


def av_similarity(video_embeddings, audio_embeddings) -> float:
    """IB-style score: 100 x mean cosine of paired (N, D) video and audio embeddings."""
    return paired_cosine(video_embeddings, audio_embeddings, scale=100.0)


def text_audio_similarities(text_embeddings, audio_embeddings) -> np.ndarray:
    """(N,) per-clip CLAP-style scores: the cosine of each pair of (N, D) text and audio embeddings."""
    return paired_cosines(text_embeddings, audio_embeddings)


def text_audio_similarity(text_embeddings, audio_embeddings) -> float:
    """CLAP-style score (`clap_score` of `foleyflow evaluate`): the mean of `text_audio_similarities`."""
    return float(np.mean(text_audio_similarities(text_embeddings, audio_embeddings)))
