"""The web UI's timeline picture: a strip of the video's frames over the generated soundtrack's spectrogram, with the
onsets detected in the soundtrack marked on the same time axis, so a user sees where sounds land against the picture.

One PNG made with matplotlib (Agg): the frames row spans [0, duration_s] on the x axis exactly like the spectrogram
below it (each thumbnail is drawn over the time span it stands for), and every detected onset is a line through both
rows. Onsets come from `foleyflow.world.onsets_check.detect_onsets` (spectral flux with an adaptive threshold), the
library's one onset detector outside the evaluation suite. Text-only results have no frames row.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

NUM_FRAMES = 8          # thumbnails in the frames row
THUMB_HEIGHT = 72       # pixels of one decoded thumbnail
MAX_ONSETS_LISTED = 12  # onset times written in the title (all are drawn)


def soundtrack_onsets(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset times (s, ascending) of a soundtrack `audio` (C, num_samples) or (num_samples,) float; none for silence.
    """
    from foleyflow.world.onsets_check import detect_onsets

    audio = np.asarray(audio, dtype=np.float32)
    if audio.size == 0 or not np.any(audio):
        return np.zeros(0)
    return np.asarray(detect_onsets(audio, sample_rate), dtype=np.float64)


def frame_strip(video: str | Path, duration_s: float, num_frames: int = NUM_FRAMES) -> np.ndarray:
    """`num_frames` thumbnails (num_frames, THUMB_HEIGHT, W, 3) uint8 of `video`, the k-th showing the frame at the
    centre of [k, k + 1) * duration_s / num_frames (MediaError if the video cannot be read)."""
    from fractions import Fraction

    from foleyflow.media import decode_frames, probe

    info = probe(video).video
    aspect = info.display_width / info.display_height if info is not None and info.display_height else 1.0
    width = max(2, int(round(THUMB_HEIGHT * aspect / 2)) * 2)
    # one frame per slot: frames at the slot rate, starting half a slot in, fall on the slot centres
    slot = Fraction(duration_s).limit_denominator(1000) / num_frames
    got = decode_frames(video, 1 / slot, size=(width, THUMB_HEIGHT), start_s=slot / 2)
    frames = got.frames[:num_frames]
    if len(frames) < num_frames:  # a very short or odd stream: repeat the last frame (or black) to fill the strip
        fill = frames[-1] if len(frames) else np.zeros((THUMB_HEIGHT, width, 3), np.uint8)
        frames = np.concatenate([frames.reshape(-1, THUMB_HEIGHT, width, 3),
                                 np.repeat(fill[None], num_frames - len(frames), 0)])
    return frames


def write_timeline(out: str | Path, audio: np.ndarray, sample_rate: int, *, video: str | Path | None = None,
                   onsets_s: np.ndarray | None = None, title: str = "") -> tuple[Path, np.ndarray]:
    """Writes the timeline PNG to `out` (atomically) for `audio` (C, num_samples) float at `sample_rate` Hz and,
    if given, the `video` it was generated for (its frames in the top row). `onsets_s` default: detected here.
    Returns (the PNG's path, the onset times in seconds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.signal import stft

    from foleyflow.fileio import atomic_write

    audio = np.asarray(audio, dtype=np.float32)
    audio = audio[None] if audio.ndim == 1 else audio
    duration_s = audio.shape[1] / sample_rate
    onsets = soundtrack_onsets(audio, sample_rate) if onsets_s is None else np.asarray(onsets_s, np.float64)
    frames = frame_strip(video, duration_s) if video is not None else None

    rows = [1.0, 1.9] if frames is not None else [1.9]
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.2 + 1.35 * sum(rows)), dpi=90, sharex=True,
                             gridspec_kw={"height_ratios": rows, "hspace": 0.08})
    axes = np.atleast_1d(axes)
    if frames is not None:
        ax = axes[0]
        ax.imshow(np.concatenate(list(frames), axis=1), extent=(0, duration_s, 0, 1), aspect="auto")
        ax.set_yticks([])
        ax.set_ylabel("video", fontsize=8)
    ax = axes[-1]
    nper = min(512, max(16, audio.shape[1]))
    f, t, z = stft(audio.mean(axis=0), fs=sample_rate, nperseg=nper, noverlap=nper * 3 // 4)
    db = 20 * np.log10(np.abs(z) + 1e-6)
    top = float(db.max()) if db.size else 0.0
    ax.pcolormesh(t, f / 1000, db, vmin=top - 80, vmax=top, shading="auto", cmap="magma")
    ax.set_ylabel("kHz", fontsize=8)
    for a in axes:
        for x in onsets:
            a.axvline(x, color="#35d0ff", lw=0.9, alpha=0.85)
        a.set_xlim(0, duration_s)
        a.tick_params(labelsize=7)
    listed = ", ".join(f"{x:.2f}" for x in onsets[:MAX_ONSETS_LISTED])
    more = f" (+{len(onsets) - MAX_ONSETS_LISTED} more)" if len(onsets) > MAX_ONSETS_LISTED else ""
    head = f"{title}: " if title else ""
    # under the time axis (a viewer's label may cover the top-left corner of the picture)
    ax.set_xlabel(f"time (s)    {head}{len(onsets)} onsets detected (blue lines)"
                  + (f" at {listed} s{more}" if len(onsets) else ""), fontsize=8)
    out = Path(out)
    with atomic_write(out) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return out, onsets
