"""A PNG contact sheet for FoleyWorld clips: per clip a strip of frames, the soundtrack's spectrogram with the
labelled events marked (discrete onsets as lines, continuous sounds as bars), and the list of events.

Reads only what `world make` wrote (manifest, mp4 frames, wav, ground-truth JSON), so it also checks the files.
"""
from __future__ import annotations

from itertools import zip_longest
from pathlib import Path

import numpy as np

from foleyflow.errors import MediaError

N_FRAMES = 6


def _frames(path: Path, times_s) -> list[np.ndarray]:
    import av

    want = sorted(times_s)
    out = []
    try:
        with av.open(str(path), metadata_errors="replace") as c:
            stream = c.streams.video[0]
            for frame in c.decode(stream):
                t = float(frame.pts * stream.time_base)
                while want and t >= want[0] - 1e-3:
                    out.append(frame.to_ndarray(format="rgb24"))
                    want.pop(0)
                if not want:
                    break
    except (OSError, av.error.FFmpegError) as e:
        raise MediaError(f"cannot read {path}: {e}") from None
    return out


def _spectrogram(x: np.ndarray, sample_rate: int):
    from scipy.signal import stft

    f, t, z = stft(x, fs=sample_rate, nperseg=512, noverlap=384)
    return f, t, 20 * np.log10(np.abs(z) + 1e-5)


def write_preview(folder: str | Path, out: str | Path, num_clips: int = 4, split: str | None = None) -> Path:
    """Writes the contact sheet for `num_clips` clips of folder's manifest, taken from each split in turn (or from
    one split)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    from foleyflow.events import SOUND_CLASSES, read_truth
    from foleyflow.world.make import read_manifest

    folder = Path(folder)
    rows = [r for r in read_manifest(folder) if split is None or r.get("split") == split]
    by_split: dict = {}
    for r in rows:
        by_split.setdefault(r.get("split"), []).append(r)
    # Take clips from every split in turn, so one sheet shows the whole folder.
    rows = [r for group in zip_longest(*by_split.values()) for r in group if r is not None][:max(1, num_clips)]
    if not rows:
        raise MediaError(f"no clips{' of split ' + split if split else ''} in {folder / 'manifest.jsonl'}")
    cmap = plt.get_cmap("tab20")
    color = {c: cmap(i % 20) for i, c in enumerate(SOUND_CLASSES)}
    fig = plt.figure(figsize=(18, 2.9 * len(rows)), dpi=80)
    grid = fig.add_gridspec(len(rows), 3, width_ratios=[3.2, 2.6, 1.6], wspace=0.12, hspace=0.45)
    for i, row in enumerate(rows):
        truth = read_truth(folder / row["truth"])
        dur = truth["duration_s"]
        times = np.linspace(0, dur, N_FRAMES, endpoint=False) + dur / N_FRAMES / 2
        frames = _frames(folder / row["video"], times)
        ax = fig.add_subplot(grid[i, 0])
        if frames:
            ax.imshow(np.concatenate(frames, 1))
        ax.set_title(f"{row['id']}  ({truth['room']})  " + ", ".join(f"{t:.1f}s" for t in times), fontsize=8)
        ax.axis("off")
        audio, sr = sf.read(str(folder / row["audio"]), dtype="float32", always_2d=True)
        f, t, s = _spectrogram(audio.mean(1), sr)
        ax = fig.add_subplot(grid[i, 1])
        ax.pcolormesh(t, f / 1000, s, vmin=s.max() - 80, vmax=s.max(), shading="auto", cmap="magma")
        ax.set_ylabel("kHz", fontsize=8)
        ax.tick_params(labelsize=7)
        lines = []
        for e in truth["events"]:
            c = color[e["sound_class"]]
            where = "" if e["on_screen"] else " (off-screen)"
            if e["kind"] == "discrete":
                ax.axvline(e["onset_s"], color=c, lw=1.2, alpha=0.9)
                lines.append((e["onset_s"], f"{e['onset_s']:5.2f}  {e['sound_class']}{where}"))
            elif e["kind"] == "continuous":
                ax.axhspan(f[-1] / 1000 * 0.93, f[-1] / 1000, xmin=e["onset_s"] / dur, xmax=e["offset_s"] / dur,
                           color=c, alpha=0.9)
                lines.append((e["onset_s"], f"{e['onset_s']:5.2f}-{e['offset_s']:.2f}  {e['sound_class']}{where}"))
            else:
                lines.append((-1, f"  bed   {e['sound_class']}"))
        ax.set_xlim(0, dur)
        ax.set_title(row.get("caption", "")[:110], fontsize=8)
        ax = fig.add_subplot(grid[i, 2])
        ax.axis("off")
        shown = [s for _, s in sorted(lines)]
        if len(shown) > 16:
            shown = shown[:15] + [f"... {len(shown) - 15} more"]
        ax.text(0, 1, "\n".join(shown), va="top", family="monospace", fontsize=7, transform=ax.transAxes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from foleyflow.fileio import atomic_write

    with atomic_write(out) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return out
