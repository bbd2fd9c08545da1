"""The evaluation report: report.json (every figure), report.md (a table, systems as columns) and PNG plots
(metric bars against the baselines, onset timelines with ground-truth markers, spectrogram pairs).

Input is the dict made by `run.run_evaluation` (or any dict with the same keys: "systems" {system: {metric: value}},
"skipped" {what: why}, "timings_s" {system: {part: seconds}}, "examples" [{name, reference_onsets,
detected_onsets {system: [s]}, generated_path, reference_path}], "settings", optionally "per_clip" [{clip, ...}]: the
generated set's per-clip records, written to per_clip.jsonl (see paired.py) rather than report.json).
Plots use matplotlib's object API (no pyplot, no global backend change).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from foleyflow.errors import EvalError

# (key, label, better) in table order; better: "low", "high" or "" (descriptive)
METRICS = [
    ("fd_learned", "FD (learned embedding)", "low"), ("fd_learned_inf", "FD, N -> inf (learned)", "low"),
    ("kad_learned", "KAD (learned embedding)", "low"),
    ("fd_melstats", "FD (melstats)", "low"), ("fd_melstats_inf", "FD, N -> inf (melstats)", "low"),
    ("kad_melstats", "KAD (melstats)", "low"), ("fd_n", "N (FD/KAD)", ""),
    ("kl", "KL (ref || gen)", "low"), ("is", "IS", "high"),
    ("desync_s", "DeSync (s)", "low"), ("ib_score", "IB score", "high"), ("clap_score", "CLAP score", "high"),
    ("quality", "quality (1..10, eval predictor)", "high"),
    ("quality_minus_reference", "quality minus reference (paired)", "high"),
    # published embedders (--embedders, published_metrics.py), av-benchmark's FD-PASST, FD-PANN, FD-VGG, KL, ISC, CLAP
    ("fd_passt", "FD PaSST", "low"), ("fd_panns", "FD PANNs", "low"), ("fd_vggish", "FD VGGish", "low"),
    ("kad_passt", "KAD PaSST", "low"), ("kad_panns", "KAD PANNs", "low"), ("kad_vggish", "KAD VGGish", "low"),
    ("kl_passt", "KL PaSST (ref || gen)", "low"), ("kl_panns", "KL PANNs (ref || gen)", "low"),
    ("is_passt", "IS PaSST", "high"), ("is_panns", "IS PANNs", "high"),
    ("clap_laion_clap", "LAION-CLAP score", "high"), ("clap_ms_clap", "MS-CLAP score", "high"),
    ("onset_precision@50ms", "onset precision +-50 ms", "high"), ("onset_recall@50ms", "onset recall +-50 ms", "high"),
    ("onset_f1@25ms", "onset F1 +-25 ms", "high"), ("onset_f1@50ms", "onset F1 +-50 ms", "high"),
    ("onset_f1@100ms", "onset F1 +-100 ms", "high"), ("onset_mean_abs_error_ms", "onset abs error (ms)", "low"),
    ("class_accuracy", "event class accuracy", "high"),
    ("offscreen_detected", "off-screen sources heard (share of clips)", "high"),
    ("offscreen_presence", "off-screen presence (clip head)", "high"),
    ("offscreen_clips", "clips with off-screen sources", ""),
    ("pan_error", "pan error (-1..1)", "low"), ("pan_error_clip_mean", "pan error, per-clip mean", "low"),
    ("itd_error_ms", "ITD error vs ref (ms)", "low"), ("ild_error_db", "ILD error vs ref (dB)", "low"),
    ("loudness_lufs", "loudness (LUFS)", ""), ("clipping_ratio", "clipping ratio", "low"),
    ("noise_floor_db", "noise floor (dBFS)", ""), ("clips", "clips", ""),
]
BAR_METRICS = ["fd_learned", "kad_learned", "fd_melstats", "kad_melstats", "kl", "desync_s", "onset_f1@50ms",
               "onset_mean_abs_error_ms", "class_accuracy", "pan_error", "itd_error_ms", "loudness_lufs"]


def _clean(v):
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(v)
    v = float(v)
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.4g}"


def markdown_table(report: dict) -> str:
    systems = report["systems"]
    names = list(systems)
    present = [(k, label, b) for k, label, b in METRICS if any(systems[s].get(k) is not None for s in names)]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k, label, better in present:
        arrow = {"low": " (lower is better)", "high": " (higher is better)"}.get(better, "")
        lines.append(f"| {label}{arrow} | " + " | ".join(_fmt(systems[s].get(k)) for s in names) + " |")
    return "\n".join(lines)


def _markdown(report: dict, plots: list[str]) -> str:
    out = ["# foleyflow evaluation report", ""]
    settings = report.get("settings", {})
    if settings:
        def brief(v):  # long values (e.g. the retrieval baseline's clip matches) stay in report.json only
            if isinstance(v, dict):
                v = {k: (f"{len(x)} entries, see report.json" if isinstance(x, (dict, list)) and len(x) > 8 else x)
                     for k, x in v.items()}
            return v
        out += [", ".join(f"{k}: `{brief(v)}`" for k, v in settings.items()), ""]
    out += [markdown_table(report), ""]
    if report.get("skipped"):
        out += ["## Not computed", ""] + [f"- **{k}**: {v}" for k, v in report["skipped"].items()] + [""]
    if report.get("timings_s"):
        out += ["## Time (s)", "", "| part | " + " | ".join(report["timings_s"]) + " |",
                "|---|" + "---|" * len(report["timings_s"])]
        parts = sorted({p for t in report["timings_s"].values() for p in t})
        for p in parts:
            out.append(f"| {p} | " + " | ".join(_fmt(t.get(p)) for t in report["timings_s"].values()) + " |")
        out.append("")
    if plots:
        out += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(out)


def plot_metric_bars(report: dict, path: Path) -> Path | None:
    from matplotlib.figure import Figure

    systems = report["systems"]
    names = list(systems)
    keys = [k for k in BAR_METRICS if any(systems[s].get(k) is not None for s in names)]
    if not keys:
        return None
    labels = {k: label for k, label, _ in METRICS}
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    colors = [f"C{i}" for i in range(len(names))]
    for i, k in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        vals = [systems[s].get(k) for s in names]
        ax.bar(range(len(names)), [np.nan if v is None else v for v in vals], color=colors)
        ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=7)
        ax.set_title(labels.get(k, k), fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    from foleyflow.fileio import atomic_write

    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def plot_onset_timelines(report: dict, path: Path) -> Path | None:
    from matplotlib.figure import Figure

    ex = [e for e in report.get("examples", []) if e.get("detected_onsets") or e.get("reference_onsets")]
    if not ex:
        return None
    fig = Figure(figsize=(10, 1.2 + 1.3 * len(ex)), layout="constrained")
    for i, e in enumerate(ex):
        ax = fig.add_subplot(len(ex), 1, i + 1)
        for t in e.get("reference_onsets", []):
            ax.axvline(t, color="k", alpha=0.35, lw=1)
        systems = list(e.get("detected_onsets", {}))
        for j, s in enumerate(systems):
            ts = e["detected_onsets"][s]
            ax.plot(ts, [j] * len(ts), "|", ms=10, mew=2, color=f"C{j}")
        ax.set_yticks(range(len(systems)), systems, fontsize=7)
        ax.set_ylim(-0.7, max(len(systems), 1) - 0.3)
        ax.set_title(f"{e['name']}: detected onsets (marks) vs ground truth (grey lines)", fontsize=8)
    ax.set_xlabel("time (s)")
    from foleyflow.fileio import atomic_write

    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def plot_spectrogram_pairs(report: dict, path: Path) -> Path | None:
    from matplotlib.figure import Figure

    from foleyflow.eval.audio_io import read_stereo
    from foleyflow.eval.onsets import OnsetConfig, log_mel

    ex = [e for e in report.get("examples", []) if e.get("generated_path") and e.get("reference_path")]
    ex = [e for e in ex if Path(e["generated_path"]).is_file() and Path(e["reference_path"]).is_file()]
    if not ex:
        return None
    fig = Figure(figsize=(10, 2.0 * len(ex)), layout="constrained")
    cfg = OnsetConfig(hop_s=0.01)
    for i, e in enumerate(ex):
        for j, key in enumerate(("generated_path", "reference_path")):
            x, sr = read_stereo(e[key])
            db, t = log_mel(x, sr, cfg)
            ax = fig.add_subplot(len(ex), 2, 2 * i + j + 1)
            ax.imshow(db.T, origin="lower", aspect="auto", extent=(0, t[-1] if len(t) else 0, 0, db.shape[1]),
                      vmin=db.max() - 70, vmax=db.max(), cmap="magma")
            ax.set_title(f"{e['name']} {key.split('_')[0]}", fontsize=8)
            ax.set_ylabel("mel band", fontsize=7)
            ax.tick_params(labelsize=7)
    from foleyflow.fileio import atomic_write

    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def write_report(report: dict, out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Writes report.json, report.md, per_clip.jsonl (when the report has "per_clip" records) and (if plots)
    metric_bars.png, onset_timelines.png, spectrograms.png. Returns {kind: path} of what was written."""
    if "systems" not in report or not report["systems"]:
        raise EvalError("the report has no scored systems")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EvalError(f"cannot create report folder {out_dir}: {e}") from None
    written: dict[str, Path] = {}
    pngs: list[str] = []
    if plots:
        for kind, fn in (("metric_bars", plot_metric_bars), ("onset_timelines", plot_onset_timelines),
                         ("spectrograms", plot_spectrogram_pairs)):
            p = fn(report, out_dir / f"{kind}.png")
            if p is not None:
                written[kind] = p
                pngs.append(str(p))
    from foleyflow.fileio import atomic_write_text

    if report.get("per_clip"):
        from foleyflow.eval.paired import PER_CLIP_FILE, write_per_clip

        written["per_clip"] = write_per_clip(_clean(report["per_clip"]), out_dir / PER_CLIP_FILE)
    body = {k: v for k, v in report.items() if k != "per_clip"}
    atomic_write_text(out_dir / "report.json", json.dumps(_clean(body), indent=2, allow_nan=False))
    atomic_write_text(out_dir / "report.md", _markdown(report, pngs))
    written["json"], written["markdown"] = out_dir / "report.json", out_dir / "report.md"
    return written
