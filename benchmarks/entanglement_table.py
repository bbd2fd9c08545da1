"""The objective-entanglement table of issue 18: what each single-reward GRPO run does to every dimension.

    python benchmarks/entanglement_table.py semantic=eval/paired_single_semantic.json \
        temporal=eval/paired_single_temporal.json ... [all=eval/paired_multi.json] [--plot table.png]

Each NAME=FILE is the --json output of `benchmarks/paired_eval.py` (the run's evaluation paired against its start's,
on the same clips). Prints one markdown row per run: for each dimension's evaluation key the difference new - start
with its 95% clip-bootstrap interval, in bold where the interval excludes zero, with the verdict (+ better, - worse).
The reward's own dimension is the one its name says (semantic: `clap_score`, temporal: `onset_f1@50ms` and
`desync_s`, spatial: `pan_error`, aesthetic: `quality`); the other columns are the entanglement. --plot draws the
same as a grid coloured by the difference in units of each column's largest resolved difference (green better,
red worse; grey where the interval holds zero or the key has no better direction, as loudness).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (key, heading): the evaluation keys that stand for the four dimensions, then the side keys issue 18 bounds
COLUMNS = (("onset_f1@50ms", "onset F1"), ("onset_recall@50ms", "onset recall"), ("desync_s", "desync s"),
           ("clap_score", "CLAP"), ("class_accuracy", "class acc."), ("pan_error", "pan error"),
           ("ild_error_db", "ILD error dB"), ("quality", "quality"), ("loudness_lufs", "loudness LU"))


def read_rows(path: str) -> dict[str, dict]:
    """key -> row of a paired_eval.py --json file; a one-line error for a missing or malformed file."""
    try:
        data = json.loads(Path(path).read_text())
        return {r["key"]: r for r in data["rows"]} | {"_clips": {"diff": data["clips"]}}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"error: {path} is not a paired_eval.py --json file ({e})") from None


def table(runs: dict[str, dict]) -> str:
    from foleyflow.eval.paired import diff_cell

    head = "| run | clips | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, rows in runs.items():
        cells = [diff_cell(rows.get(k), bold=True) for k, _ in COLUMNS]
        lines.append(f"| {name} | {rows['_clips']['diff']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: dict[str, dict], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.full((len(runs), len(COLUMNS)), np.nan)
    for i, rows in enumerate(runs.values()):
        for j, (k, _) in enumerate(COLUMNS):
            r = rows.get(k)
            if r is not None and r.get("verdict") in ("better", "worse"):   # resolved, and the key has a direction
                grid[i, j] = abs(r["diff"]) * (1.0 if r["verdict"] == "better" else -1.0)
    scale = np.abs(np.nan_to_num(grid)).max(axis=0)       # each column's largest resolved difference
    scale = np.where(scale > 0, scale, 1.0)
    fig, ax = plt.subplots(figsize=(1.3 * len(COLUMNS) + 2, 0.6 * len(runs) + 1.5))
    ax.imshow(np.ones_like(grid), cmap="Greys", vmin=0, vmax=8, aspect="auto")
    ax.imshow(grid / scale, cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto")
    for i, rows in enumerate(runs.values()):
        for j, (k, _) in enumerate(COLUMNS):
            r = rows.get(k)
            ax.text(j, i, "n/a" if r is None else f"{r['diff']:+.3f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(COLUMNS)), [h for _, h in COLUMNS], rotation=30, ha="right")
    ax.set_yticks(range(len(runs)), list(runs))
    ax.set_title("change against the start (coloured where the 95% interval excludes 0: green better, red worse)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="NAME=FILE", help="a run's name and its paired_eval.py --json file")
    p.add_argument("--plot", help="also draw the table as a coloured grid (PNG)")
    args = p.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            p.error(f"expected NAME=FILE, got {item!r}")
        runs[name] = read_rows(path)
    print(table(runs))
    if args.plot:
        plot(runs, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
