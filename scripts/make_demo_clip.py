"""Makes examples/demo.mp4: 8 s, 128x128, 25 fps, a ball dropped onto a floor, bouncing, with a click at each bounce.

Usage: python scripts/make_demo_clip.py [OUT]   (default examples/demo.mp4; deterministic, no randomness)

The motion is exact ballistic flight with a coefficient of restitution; each bounce's click starts at the impact
time to the sample (16 kHz mono AAC), with loudness following the impact speed, so the clip has ground truth for
audio-visual sync. Our own procedural animation (no third-party material).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FPS, SIZE, DURATION_S, SAMPLE_RATE = 25, 128, 8.0, 16000
G = 9.81  # m/s^2
H0 = 1.6  # drop height, m (floor at 0; the picture spans 2 m)
RESTITUTION = 0.85
BALL_R = 0.1  # m


def impacts(duration_s: float) -> list[tuple[float, float]]:
    """(time, impact speed) of every bounce within duration_s."""
    out, t, v = [], (2 * H0 / G) ** 0.5, (2 * G * H0) ** 0.5
    while t < duration_s and v > 0.2:
        out.append((t, v))
        v *= RESTITUTION
        t += 2 * v / G
    return out


def height(t: float, hits: list[tuple[float, float]]) -> float:
    if not hits or t < hits[0][0]:
        return max(0.0, H0 - 0.5 * G * t * t)
    for k, (tk, vk) in enumerate(hits):
        up = vk * RESTITUTION
        t_next = hits[k + 1][0] if k + 1 < len(hits) else float("inf")
        if t < t_next:
            dt = t - tk
            return max(0.0, up * dt - 0.5 * G * dt * dt) if t_next < float("inf") or dt < 2 * up / G else 0.0
    return 0.0


def frame(t: float, hits) -> np.ndarray:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    px_per_m = SIZE / 2.0
    floor_px = SIZE - 12
    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:] = np.array([40, 60, 110], np.float32) * (0.6 + 0.4 * ys / SIZE)[..., None]  # sky gradient
    img[floor_px:] = (90, 70, 50)
    cy = floor_px - (height(t, hits) + BALL_R) * px_per_m
    cx = SIZE * (0.3 + 0.4 * t / DURATION_S)
    d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    cover = np.clip(BALL_R * px_per_m - d + 0.5, 0, 1)[..., None]  # antialiased disc
    shade = np.clip(1.2 - 0.08 * np.sqrt((xs - cx + 2) ** 2 + (ys - cy + 2) ** 2), 0.5, 1.2)[..., None]
    img = img * (1 - cover) + cover * np.array([230, 70, 40], np.float32) * shade
    return np.clip(img, 0, 255).astype(np.uint8)


def clicks(hits) -> np.ndarray:
    n = int(DURATION_S * SAMPLE_RATE)
    audio = np.zeros(n, np.float32)
    k = np.arange(int(0.08 * SAMPLE_RATE)) / SAMPLE_RATE
    body = np.sin(2 * np.pi * 180 * k) * np.exp(-k / 0.02) + 0.5 * np.sin(2 * np.pi * 1100 * k) * np.exp(-k / 0.004)
    for t, v in hits:
        i = round(t * SAMPLE_RATE)
        seg = body[: n - i] * 0.8 * min(1.0, v / (2 * G * H0) ** 0.5)
        audio[i:i + len(seg)] += seg.astype(np.float32)
    return np.clip(audio, -1, 1)[None]


def main(out: Path) -> None:
    from foleyflow.media import write_video

    hits = impacts(DURATION_S)
    frames = (frame(i / FPS, hits) for i in range(int(DURATION_S * FPS)))
    write_video(out, frames, FPS, audio=clicks(hits), sample_rate=SAMPLE_RATE, crf=28, preset="slow",
                audio_bitrate=48_000)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB), bounces at "
          + ", ".join(f"{t:.3f}" for t, _ in hits) + " s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples" / "demo.mp4")
