"""Audio-visual clips for the encoder recipes: a synthetic bouncing-square world, a small PyAV loader, and windows.

A clip is frames (T, 3, H, W) uint8 at `fps` (25 for FoleyWorld) plus audio (C, num_samples) float32 at
`sample_rate`. Recipes take windows of it at the rate each encoder wants (8 fps semantic, 25 fps sync).

The synthetic world exists for tests and debug configs: a coloured square (colour = class) bounces in a box; each
bounce makes a short decaying tone whose pitch depends on the class. So colour <-> timbre is learnable by
contrastive training and bounce <-> click timing by offset classification.

`load_clip` decodes with foleyflow.media (frames resampled to `fps`, the last source frame at or before each output
time; audio resampled and downmixed to stereo); manifests are read with foleyflow.manifest.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from foleyflow.errors import FoleyError, MediaError

PALETTE = np.array([[230, 60, 50], [60, 200, 80], [70, 90, 230], [235, 210, 60], [200, 80, 220], [60, 210, 220],
                    [240, 140, 40], [250, 250, 250]], dtype=np.uint8)


@dataclass
class AVClip:
    frames: torch.Tensor  # (T, 3, H, W) uint8
    audio: torch.Tensor  # (C, num_samples) float32 in [-1, 1]
    fps: float
    sample_rate: int
    label: int = -1  # synthetic class, -1 when unknown
    onsets: torch.Tensor | None = None  # (E, 2) [time_s, pan -1..1] of visible discrete events, None when unknown

    @property
    def duration_s(self) -> float:
        return min(self.frames.shape[0] / self.fps, self.audio.shape[-1] / self.sample_rate)


def bouncing_square_clip(seed: int, duration_s: float = 8.0, fps: float = 25.0, size: int = 64,
                         sample_rate: int = 16000, num_classes: int = 4) -> AVClip:
    """A bouncing square with a tone burst at each bounce (stereo panned by the square's x position)."""
    rng = np.random.default_rng(seed)
    label = int(rng.integers(num_classes))
    n = int(round(duration_s * fps))
    side = max(2, size // 6)
    pos = rng.uniform(0, size - side, 2)
    vel = rng.uniform(0.6, 1.4, 2) * size * rng.choice([-1, 1], 2)  # pixels per second
    xs, bounces = np.zeros((n, 2)), []
    dt = 1.0 / fps
    for i in range(n):
        xs[i] = pos
        pos = pos + vel * dt
        for d in range(2):
            if pos[d] < 0 or pos[d] > size - side:
                pos[d] = -pos[d] if pos[d] < 0 else 2 * (size - side) - pos[d]
                vel[d] = -vel[d]
                bounces.append(((i + 1) * dt, pos[0] / (size - side)))
    frames = np.full((n, size, size, 3), 20, dtype=np.uint8)
    for i, (x, y) in enumerate(xs.astype(int)):
        frames[i, y:y + side, x:x + side] = PALETTE[label % len(PALETTE)]
    num = int(round(duration_s * sample_rate))
    audio = rng.normal(0, 0.003, (2, num)).astype(np.float32)
    freq = 220.0 * 2 ** (label * 7 / 12 % 4)
    burst_len = int(0.08 * sample_rate)
    t = np.arange(burst_len) / sample_rate
    burst = (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)) * np.exp(-t * 40)
    for time_s, pan in bounces:
        k = int(time_s * sample_rate)
        seg = burst[:max(0, min(burst_len, num - k))]
        audio[0, k:k + len(seg)] += 0.5 * (1 - pan) * seg + 0.1 * seg
        audio[1, k:k + len(seg)] += 0.5 * pan * seg + 0.1 * seg
    onsets = torch.tensor([(t, 2 * p - 1) for t, p in bounces], dtype=torch.float32).reshape(-1, 2)
    return AVClip(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.clip(audio, -1, 1)),
                  fps, sample_rate, label, onsets)


def visible_onsets(truth_path: str | Path) -> torch.Tensor:
    """(E, 2) [onset_s, pan] of the discrete, on-screen, audible events of a FoleyWorld ground-truth JSON: the
    contacts a sync encoder can see."""
    from foleyflow.events import marked_audible, read_events

    rows = [(e.onset_s, e.pan) for e in read_events(truth_path)
            if e.kind == "discrete" and e.on_screen and marked_audible(e)]
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 2)


def video_entries(manifest: str | Path) -> list:
    """The entries of a manifest (foleyflow.manifest format) that have a video; clips without video cannot
    train visual encoders and are skipped. Raises FoleyError when none is left."""
    from foleyflow.manifest import read_manifest

    rows = [e for e in read_manifest(manifest) if e.video]
    if not rows:
        raise FoleyError(f"manifest {manifest} lists no clip with a video")
    return rows


def load_clip(video: str | Path, audio: str | Path | None = None, *, fps: float = 25.0, size: int | None = None,
              sample_rate: int = 16000) -> AVClip:
    """Decodes a whole clip: frames resampled to `fps`, optionally stretched to size x size; stereo audio (from
    `audio`, else from the video file) at `sample_rate`. MediaError when a file is unreadable or has no audio."""
    from foleyflow.media import decode_audio, decode_frames, probe

    if audio is None and not probe(video).has_audio:
        raise MediaError(f"{video} has no audio stream")
    decoded = decode_frames(video, fps, size=size, resize="stretch")
    if decoded.frames.shape[0] == 0:
        raise MediaError(f"{video} has no video frames")
    frames = torch.from_numpy(np.ascontiguousarray(decoded.frames)).permute(0, 3, 1, 2).contiguous()
    wav = decode_audio(audio or video, sample_rate, channels=2).samples
    return AVClip(frames, torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)), fps, sample_rate)


class ClipSource:
    """Indexable clips: synthetic (count, duration, size, seed) or from a manifest, decoded lazily with an LRU cache."""

    def __init__(self, *, manifest: str | None = None, synthetic_clips: int = 0, duration_s: float = 8.0,
                 size: int = 64, fps: float = 25.0, sample_rate: int = 16000, seed: int = 0, cache_clips: int = 256,
                 load_onsets: bool = False):
        self.rows = video_entries(manifest) if manifest else None
        if self.rows is None and synthetic_clips < 1:
            raise FoleyError("give a manifest or a number of synthetic clips")
        self.count = len(self.rows) if self.rows is not None else synthetic_clips
        self.duration_s, self.size, self.fps, self.sample_rate, self.seed = duration_s, size, fps, sample_rate, seed
        self.cache: OrderedDict[int, AVClip] = OrderedDict()
        self.cache_clips, self.load_onsets = cache_clips, load_onsets  # load_onsets: read each row's truth JSON

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> AVClip:
        if i in self.cache:
            self.cache.move_to_end(i)
            return self.cache[i]
        if self.rows is None:
            clip = bouncing_square_clip(self.seed * 1_000_003 + i, self.duration_s, self.fps, self.size,
                                        self.sample_rate)
        else:
            row = self.rows[i]
            clip = load_clip(row.video, row.audio, fps=self.fps, size=self.size, sample_rate=self.sample_rate)
            if row.truth and self.load_onsets:
                clip.onsets = visible_onsets(row.truth)
        self.cache[i] = clip
        if len(self.cache) > self.cache_clips:
            self.cache.popitem(last=False)
        return clip


def frame_window(clip: AVClip, start_s: float, duration_s: float, fps: float) -> torch.Tensor:
    """(round(duration_s * fps), 3, H, W) frames at `fps` starting at `start_s` (nearest earlier source frame)."""
    n = int(round(duration_s * fps, 6))
    times = start_s + torch.arange(n, dtype=torch.float64) / fps
    idx = torch.floor(times * clip.fps + 1e-3).long().clamp(0, clip.frames.shape[0] - 1)
    return clip.frames[idx]


def audio_window(clip: AVClip, start_s: float, duration_s: float) -> torch.Tensor:
    """(C, round(duration_s * sample_rate)) samples starting at `start_s`, zero-padded past either end."""
    n = int(round(duration_s * clip.sample_rate))
    start = int(round(start_s * clip.sample_rate))
    out = torch.zeros(clip.audio.shape[0], n)
    lo, hi = max(0, start), min(clip.audio.shape[-1], start + n)
    if hi > lo:
        out[:, lo - start:hi - start] = clip.audio[:, lo:hi]
    return out
