"""Audio-visual clips for the encoder recipes: a synthetic bouncing-square world, a small PyAV loader, and windows.

A clip is frames (T, 3, H, W) uint8 at `fps` (25 for FoleyWorld) plus audio (C, num_samples) float32 at
`sample_rate`. Recipes take windows of it at the rate each encoder wants (8 fps semantic, 25 fps sync).

The synthetic world exists for tests and debug configs: a coloured square (colour = class) bounces in a box; each
bounce makes a short decaying tone whose pitch depends on the class. So colour <-> timbre is learnable by
contrastive training and bounce <-> click timing by offset classification.

`load_clip` decodes with PyAV directly (whole-file decode, nearest-earlier frame resampling to `fps`); it is a
stop-gap for foleyflow.media's decoders, which should replace it once they land.
"""
from __future__ import annotations

import json
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

    @property
    def duration_s(self) -> float:
        return min(self.frames.shape[0] / self.fps, self.audio.shape[-1] / self.sample_rate)


def synthetic_clip(seed: int, duration_s: float = 8.0, fps: float = 25.0, size: int = 64, sample_rate: int = 16000,
                   num_classes: int = 4) -> AVClip:
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
    return AVClip(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.clip(audio, -1, 1)),
                  fps, sample_rate, label)


def read_manifest(path: str | Path) -> list[dict]:
    """JSONL, one clip per line with at least "video" (and optionally "audio", "caption", "cot"); relative paths are
    resolved against the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise FoleyError(f"manifest not found: {path}")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise FoleyError(f"{path}:{i} is not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("video"), str):
            raise FoleyError(f"{path}:{i} needs a \"video\" path")
        for key in ("video", "audio"):
            if isinstance(row.get(key), str):
                row[key] = str((path.parent / row[key]).resolve())
        rows.append(row)
    if not rows:
        raise FoleyError(f"manifest {path} lists no clips")
    return rows


def load_clip(video: str | Path, audio: str | Path | None = None, *, fps: float = 25.0, size: int | None = None,
              sample_rate: int = 16000) -> AVClip:
    """Decodes a whole clip: frames resampled to `fps` (nearest earlier frame), optionally stretched to size x size;
    audio (from `audio`, else from the video file) resampled to `sample_rate`, stereo."""
    import av

    try:
        with av.open(str(video)) as c:
            stream = c.streams.video[0]
            stamps, images = [], []
            for frame in c.decode(stream):
                if size is not None:
                    frame = frame.reformat(width=size, height=size)
                stamps.append(float(frame.time or 0.0))
                images.append(frame.to_ndarray(format="rgb24"))
        if not images:
            raise MediaError(f"{video} has no video frames")
        stamps_np = np.asarray(stamps) - stamps[0]
        duration = stamps_np[-1] + (stamps_np[1] - stamps_np[0] if len(stamps) > 1 else 1 / fps)
        want = np.arange(int(np.floor(duration * fps + 1e-6))) / fps
        idx = np.clip(np.searchsorted(stamps_np, want + 1e-6, side="right") - 1, 0, len(images) - 1)
        frames = torch.from_numpy(np.stack([images[i] for i in idx])).permute(0, 3, 1, 2).contiguous()
        with av.open(str(audio or video)) as c:
            if not c.streams.audio:
                raise MediaError(f"{audio or video} has no audio stream")
            res = av.AudioResampler(format="fltp", layout="stereo", rate=sample_rate)
            chunks = [f.to_ndarray() for fr in c.decode(c.streams.audio[0]) for f in res.resample(fr)]
            chunks += [f.to_ndarray() for f in res.resample(None)]
        wav = torch.from_numpy(np.concatenate(chunks, axis=1).astype(np.float32))
    except av.error.FFmpegError as e:
        raise MediaError(f"cannot decode {video}: {e}") from None
    return AVClip(frames, wav, fps, sample_rate)


class ClipSource:
    """Indexable clips: synthetic (count, duration, size, seed) or from a manifest, decoded lazily with an LRU cache."""

    def __init__(self, *, manifest: str | None = None, synthetic_clips: int = 0, duration_s: float = 8.0,
                 size: int = 64, fps: float = 25.0, sample_rate: int = 16000, seed: int = 0, cache_clips: int = 256):
        self.rows = read_manifest(manifest) if manifest else None
        if self.rows is None and synthetic_clips < 1:
            raise FoleyError("give a manifest or a number of synthetic clips")
        self.count = len(self.rows) if self.rows is not None else synthetic_clips
        self.duration_s, self.size, self.fps, self.sample_rate, self.seed = duration_s, size, fps, sample_rate, seed
        self.cache: OrderedDict[int, AVClip] = OrderedDict()
        self.cache_clips = cache_clips

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> AVClip:
        if i in self.cache:
            self.cache.move_to_end(i)
            return self.cache[i]
        if self.rows is None:
            clip = synthetic_clip(self.seed * 1_000_003 + i, self.duration_s, self.fps, self.size, self.sample_rate)
        else:
            row = self.rows[i]
            clip = load_clip(row["video"], row.get("audio"), fps=self.fps, size=self.size,
                             sample_rate=self.sample_rate)
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
