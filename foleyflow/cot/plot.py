"""A plan drawn on a timeline (`foleyflow plan --plot`): a strip of the video's frames on top (each thumbnail placed
at the time it shows), then one row per source: its onsets as ticks, its intervals as shaded spans, its pan as a curve
inside the row (row centre = centre, top = right, bottom = left), off-screen sources in grey. matplotlib (Agg) only,
imported inside the function; the PNG is written atomically.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

THUMBNAILS = 8


def video_strip(video: str | Path, duration_s: float, count: int = THUMBNAILS, height: int = 72
                ) -> list[tuple[float, float, np.ndarray]]:
    """[(start_s, end_s, frame (H, W, 3) uint8)]: `count` frames of the video, frame k shown over
    [k, k + 1) * duration_s / count, decoded at the middle of that span, `height` pixels high (aspect kept)."""
    from foleyflow.media import iter_frames, probe

    info = probe(video).video
    if info is None or count < 1:
        return []
    w = max(1, round(height * info.display_width / max(1, info.display_height)))
    step = duration_s / count
    out = []
    for k in range(count):
        t = info.start_s + (k + 0.5) * step
        frames = [f for _, _, f in iter_frames(video, 25, size=(w, height), start_s=t, duration_s=0.04)]
        if frames:
            out.append((k * step, (k + 1) * step, np.asarray(frames[0])))
    return out


def plot_plan(plan, path: str | Path, video: str | Path | None = None, *, thumbnails: int = THUMBNAILS) -> Path:
    """Writes the plan (foleyflow.cot.Plan) as a PNG at `path`, under a strip of `video`'s frames if given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from foleyflow.fileio import atomic_write

    dur = plan.duration_s
    strip = video_strip(video, dur, thumbnails) if video is not None else []
    rows = list(plan.sources)
    n = max(1, len(rows))
    heights = ([1.4] if strip else []) + [0.55 * n + 0.4]
    fig, axes = plt.subplots(len(heights), 1, figsize=(11, sum(heights) + 0.9), sharex=True,
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    axes = axes[:, 0]
    if strip:
        ax = axes[0]
        for t0, t1, img in strip:
            ax.imshow(img, extent=(t0, t1, 0, 1), aspect="auto")
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.set_title("video", loc="left", fontsize=9)
    ax = axes[-1]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = []
    for i, src in enumerate(rows):
        y = n - 1 - i
        c = colours[i % len(colours)] if src.on_screen else "0.55"
        ax.axhspan(y - 0.45, y + 0.45, color=c, alpha=0.06, lw=0)
        for a, b in src.intervals:
            ax.fill_between([a, b], y - 0.3, y + 0.3, color=c, alpha=0.25, lw=0)
        ons = src.onsets
        if ons:
            ax.vlines(ons, y - 0.4, y + 0.4, color=c, lw=1.6)
        ts = np.linspace(0, dur, 200)
        if src.trajectory or src.pan is not None:
            pans = np.array([src.pan_at(t) for t in ts])
            ax.plot(ts, y + 0.4 * pans, color=c, lw=1.0, ls="--" if not src.on_screen else "-")
            if src.trajectory:
                tt = [t for t, _ in src.trajectory]
                ax.plot(tt, [y + 0.4 * p for _, p in src.trajectory], "o", color=c, ms=2.5)
        desc = src.sound_class.replace("_", " ") + (f" ({src.material})" if src.material and
                                                    src.material not in src.sound_class else "")
        labels.append(desc + ("" if src.on_screen else "\n(off-screen)") + ("" if src.sounds else "\n(silent)"))
    ax.set_yticks(range(n - 1, n - 1 - len(rows), -1), labels, fontsize=8)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(0, dur)
    ax.set_xlabel("time (s); ticks = onsets, shaded = intervals, curve = pan (up = right, down = left)")
    scene = plan.scene
    ax.set_title(f"plan: {len(rows)} sources; room {scene.room or '?'}, loudness {scene.loudness or '?'}"
                 + (f", texture: {', '.join(scene.texture)}" if scene.texture else ""), loc="left", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
