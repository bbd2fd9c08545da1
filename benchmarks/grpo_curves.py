"""Reward against compute for recipes/train_grpo.py runs (issue 18's Fast-GRPO against Flow-GRPO comparison).

    python benchmarks/grpo_curves.py RUN [RUN ...] [--key val/weighted] [--out eval/grpo_curves] \
        [--fast RUN ...] [--flow RUN ...] [--final-frac 0.2] [--smooth 1] [--smooth-train 10] [--json OUT]

RUN is a run folder (its metrics.jsonl; the last line of each iteration wins, as after a resume) or LABEL=FOLDER.
Compute per run is the running sum of the recipe's per-iteration logs: `train/iter_s` (wall seconds of the training
iteration, the val monitor excluded), `compute/core_s` (CPU seconds of all processes) and `compute/net_evals`
(generator row-evaluations of all processes: sampling rows, policy and reference forwards and backwards, guidance
doubling included; a backward counts as one evaluation, `compute/fwd_equiv` counts it as two forwards).
Writes two PNGs into --out: reward against wall seconds and reward against network evaluations, and
dimensions.png: per reward dimension, the val monitor (`val/<name>`) and the running mean of the training
rollouts' mean score (`reward/<name>`, --smooth-train iterations) against the iteration, one panel each.

With --fast and --flow (labels or folders of the runs given), prints for every (fast, flow) pair Flow's final
reward (the mean of its last --final-frac of the monitored values), the compute at which Flow first reaches it and
its total (the same running mean as Fast's; its last point if that mean never gets there), the compute at which Fast
first reaches it (its --smooth point running mean, or "never"), and the ratio
Flow-reach / Fast-reach per axis: issue 18's target is >= 3. The key must be one both runs log at the same
iterations' cadence; `val/weighted` (fixed val clips, ODE samples) is the one to compare, `reward/weighted` (the
training rollouts of each iteration) is noisier.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

AXES = (("wall_s", "train/iter_s", "wall seconds"), ("core_s", "compute/core_s", "CPU core-seconds"),
        ("net_evals", "compute/net_evals", "network evaluations (rows, backward included)"))


def load_run(folder: str | Path, key: str) -> dict:
    """{"steps", "value", "wall_s", "core_s", "net_evals"}: lists over the iterations that logged `key`, the compute
    columns cumulative over every iteration up to and including that one."""
    from foleyflow.errors import FoleyError
    from foleyflow.train.run import read_metrics

    rows = read_metrics(folder)
    if not rows:
        raise FoleyError(f"{folder} has no metrics.jsonl rows")
    missing = [src for _, src, _ in AXES if src not in rows[0]]
    if missing:
        raise FoleyError(f"{folder}: metrics.jsonl lacks {', '.join(missing)} (a run of an older train_grpo)")
    out: dict = {"steps": [], "value": [], **{name: [] for name, _, _ in AXES}}
    totals = {name: 0.0 for name, _, _ in AXES}
    for r in rows:
        for name, src, _ in AXES:
            totals[name] += float(r.get(src, 0.0))
        if key in r:
            out["steps"].append(r["step"])
            out["value"].append(float(r[key]))
            for name in totals:
                out[name].append(totals[name])
    if not out["steps"]:
        raise FoleyError(f"{folder}: no iteration logged {key}")
    return out


def running_mean(values: list[float], n: int) -> list[float]:
    """Mean of the last min(n, i + 1) values at each i."""
    return [sum(values[max(0, i - n + 1): i + 1]) / len(values[max(0, i - n + 1): i + 1]) for i in range(len(values))]


def first_reach(run: dict, target: float, smooth: int = 1) -> dict | None:
    """Compute columns at the first point whose running mean reaches `target` (None if never)."""
    for i, v in enumerate(running_mean(run["value"], smooth)):
        if v >= target:
            return {"step": run["steps"][i], **{name: run[name][i] for name, _, _ in AXES}}
    return None


def compare(fast: dict, flow: dict, *, final_frac: float = 0.2, smooth: int = 1) -> dict:
    """Flow's final reward, where each run first reaches it, and Flow-reach / Fast-reach per compute axis."""
    n = max(1, round(final_frac * len(flow["value"])))
    target = sum(flow["value"][-n:]) / n
    flow_reach = first_reach(flow, target, smooth)
    if flow_reach is None:   # its running mean lags below the mean of its own last points: it got there by the end
        flow_reach = {"step": flow["steps"][-1], **{name: flow[name][-1] for name, _, _ in AXES}, "at_end": True}
    fast_reach = first_reach(fast, target, smooth)
    out = {"flow_final": target, "flow_final_points": n, "flow_reach": flow_reach,
           "flow_total": {name: flow[name][-1] for name, _, _ in AXES}, "fast_reach": fast_reach, "ratio": None}
    if fast_reach is not None and flow_reach is not None:
        out["ratio"] = {name: flow_reach[name] / fast_reach[name] if fast_reach[name] > 0 else None
                        for name, _, _ in AXES}
    return out


def plot(runs: dict, key: str, out_dir: Path) -> list[Path]:
    """reward_vs_wall_s.png and reward_vs_net_evals.png in out_dir (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from foleyflow.fileio import atomic_write

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for axis, label in (("wall_s", "wall seconds"), ("net_evals", "network evaluations (rows, backward included)")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, run in runs.items():
            ax.plot(run[axis], run["value"], marker=".", label=name)
        ax.set_xlabel(label)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"reward_vs_{axis}.png"
        with atomic_write(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def dimension_series(folder: str | Path, smooth_train: int = 10) -> dict[str, dict]:
    """{name: {"val_steps", "val", "train_steps", "train"}} for every reward dimension a run logs (`val/<name>`
    and `reward/<name>`; `weighted` and the `_group_std` columns excluded), the training score as a running mean."""
    from foleyflow.train.run import read_metrics

    rows = read_metrics(folder)
    names = sorted({k.split("/", 1)[1] for r in rows for k in r
                    if k.startswith(("val/", "reward/")) and not k.endswith(("weighted", "_group_std"))})
    out = {}
    for n in names:
        val = [(r["step"], float(r[f"val/{n}"])) for r in rows if f"val/{n}" in r]
        tr = [(r["step"], float(r[f"reward/{n}"])) for r in rows if f"reward/{n}" in r]
        out[n] = {"val_steps": [a for a, _ in val], "val": [b for _, b in val],
                  "train_steps": [a for a, _ in tr], "train": running_mean([b for _, b in tr], smooth_train)}
    return out


def plot_dimensions(folders: dict[str, str], out_dir: Path, smooth_train: int = 10) -> Path:
    """dimensions.png in out_dir: one panel per reward dimension, every run's val monitor (solid, dots) and
    training-rollout running mean (dashed) against the iteration (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from foleyflow.fileio import atomic_write

    series = {label: dimension_series(f, smooth_train) for label, f in folders.items()}
    names = sorted({n for s in series.values() for n in s})
    cols = min(2, max(1, len(names)))
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for i, (label, s) in enumerate(series.items()):
            if name not in s:
                continue
            color = f"C{i}"
            ax.plot(s[name]["val_steps"], s[name]["val"], marker=".", color=color, label=f"{label} val")
            ax.plot(s[name]["train_steps"], s[name]["train"], ls="--", color=color, alpha=0.6,
                    label=f"{label} train ({smooth_train}-iteration mean)")
        ax.set_title(name)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "dimensions.png"
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    from foleyflow.errors import FoleyError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders or LABEL=FOLDER")
    p.add_argument("--key", default="val/weighted", help="the reward column (default val/weighted)")
    p.add_argument("--out", default="", help="folder for the two PNGs (none if empty)")
    p.add_argument("--fast", nargs="*", default=[], help="labels (or folders) of Fast-GRPO runs")
    p.add_argument("--flow", nargs="*", default=[], help="labels (or folders) of Flow-GRPO runs")
    p.add_argument("--final-frac", type=float, default=0.2)
    p.add_argument("--smooth", type=int, default=1)
    p.add_argument("--smooth-train", type=int, default=10,
                   help="iterations in the running mean of the training rollouts' scores (dimensions.png)")
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    try:
        if args.smooth < 1 or args.smooth_train < 1 or not 0 < args.final_frac <= 1:
            raise FoleyError("--smooth and --smooth-train must be at least 1 and --final-frac in (0, 1]")
        folders = dict(r.split("=", 1) if "=" in r else (Path(r).name, r) for r in args.runs)
        by_folder = {v: k for k, v in folders.items()}
        runs = {label: load_run(f, args.key) for label, f in folders.items()}

        def label_of(x):
            if x in runs:
                return x
            if x in by_folder:
                return by_folder[x]
            raise FoleyError(f"{x} is not one of the runs given")
        result = {"key": args.key, "runs": runs, "comparisons": []}
        for fa in map(label_of, args.fast):
            for fl in map(label_of, args.flow):
                c = compare(runs[fa], runs[fl], final_frac=args.final_frac, smooth=args.smooth)
                result["comparisons"].append({"fast": fa, "flow": fl, **c})
                ratio = ("Fast never reaches it" if c["ratio"] is None else
                         " ".join(f"{k} {v:.2f}x" for k, v in c["ratio"].items() if v is not None))
                print(f"{fa} vs {fl}: Flow final {args.key} {c['flow_final']:.4f}; Flow reaches it at "
                      f"{c['flow_reach']}; Fast at {c['fast_reach']}; Flow/Fast compute: {ratio}")
        if args.out:
            for path in plot(runs, args.key, Path(args.out)):
                print(f"wrote {path}")
            print(f"wrote {plot_dimensions(folders, Path(args.out), args.smooth_train)}")
        if args.json:
            from foleyflow.fileio import atomic_write_text
            atomic_write_text(args.json, json.dumps(result, indent=1))
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
