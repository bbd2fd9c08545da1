"""Where a change helps or hurts: the paired comparison of two `foleyflow evaluate` runs, split by the sound classes
(and by the number of events) of each clip's ground truth.

    python benchmarks/paired_by_class.py --base eval/s2250/report --new eval/grpo_v3/report \
        --truth /data/foleyworld/val [--keys clap_score onset_f1@50ms] [--min-clips 10] [--plot by_class.png] \
        [--json by_class.json]

A clip counts for every class that sounds in it (its ground truth's non-ambience events), so the groups overlap.
For each class with at least --min-clips clips, each --key is compared on those clips as benchmarks/paired_eval.py
compares whole sets (foleyflow.eval.paired.compare: pooled as report.json pools, 95% clip-bootstrap interval of new
- base); then the same over the quarters of the clips by their number of events. Rows are sorted by the first
key's difference. --plot draws the first key's differences with their intervals, one bar per class.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def clip_groups(truth_dir: str, clips: list[str]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """({class: [clips where it sounds]}, {clip: number of non-ambience events}) from the ground truth."""
    from foleyflow.errors import EvalError
    from foleyflow.events import read_events

    by_class: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for c in clips:
        path = Path(truth_dir) / f"{c}.json"
        if not path.is_file():
            raise EvalError(f"no ground truth {path} for compared clip {c}")
        events = [e for e in read_events(path) if e.kind != "ambience"]
        counts[c] = len(events)
        for cls in sorted({e.sound_class for e in events}):
            by_class.setdefault(cls, []).append(c)
    return by_class, counts


def density_groups(counts: dict[str, int], parts: int = 4) -> dict[str, list[str]]:
    """The clips in `parts` groups of (nearly) equal size by their number of events, named by the range."""
    order = sorted(counts, key=lambda c: (counts[c], c))
    out = {}
    for i in range(parts):
        group = order[i * len(order) // parts:(i + 1) * len(order) // parts]
        if group:
            out[f"{counts[group[0]]}-{counts[group[-1]]} events"] = group
    return out


def compare_groups(base: dict, new: dict, groups: dict[str, list[str]], keys: list[str], *, min_clips: int,
                   resamples: int, seed: int) -> list[dict]:
    """[{group, clips, rows: compare's rows for `keys`}] for the groups of at least min_clips clips."""
    from foleyflow.eval.paired import compare

    out = []
    for name, clips in groups.items():
        if len(clips) < min_clips:
            continue
        res = compare({c: base[c] for c in clips}, {c: new[c] for c in clips}, resamples=resamples, seed=seed,
                      keys=keys)
        out.append({"group": name, "clips": len(clips), "rows": res["rows"]})
    return out


def markdown(groups: list[dict], keys: list[str], title: str) -> str:
    def cell(r):
        if r["diff"] is None:
            return "-"
        text = f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]"
        return f"**{text}**" if r["excludes_zero"] else text

    lines = [f"| {title} | clips | " + " | ".join(keys) + " |", "|---|---:|" + "---|" * len(keys)]
    for g in groups:
        lines.append(f"| {g['group']} | {g['clips']} | " + " | ".join(cell(r) for r in g["rows"]) + " |")
    return "\n".join(lines)


def plot(groups: list[dict], key: str, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(g["group"], g["rows"][0]) for g in groups if g["rows"][0]["diff"] is not None]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2))
    for i, (name, r) in enumerate(rows):
        colour = ("tab:green" if r["verdict"] == "better" else "tab:red" if r["verdict"] == "worse"
                  else "tab:grey")
        ax.barh(i, r["diff"], color=colour)
        ax.plot([r["low"], r["high"]], [i, i], color="black", lw=1)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"{key}: new - base (95% clip-bootstrap interval; green better, red worse)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="report folder (or per_clip.jsonl) of the starting system")
    p.add_argument("--new", required=True, help="report folder (or per_clip.jsonl) of the system compared with it")
    p.add_argument("--truth", required=True, metavar="DIR", help="ground truth <clip>.json of the clips")
    p.add_argument("--keys", nargs="+", default=["clap_score", "onset_f1@50ms", "class_accuracy"])
    p.add_argument("--min-clips", type=int, default=10)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", help="bar chart of the first key by class (PNG)")
    p.add_argument("--json", metavar="OUT")
    args = p.parse_args(argv)
    from foleyflow.errors import FoleyError
    from foleyflow.eval.paired import read_per_clip

    try:
        base, new = read_per_clip(args.base), read_per_clip(args.new)
        shared = sorted(set(base) & set(new))
        by_class, counts = clip_groups(args.truth, shared)
        kw = dict(min_clips=args.min_clips, resamples=args.resamples, seed=args.seed)
        classes = compare_groups(base, new, by_class, args.keys, **kw)
        density = compare_groups(base, new, density_groups(counts), args.keys, **kw)
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    first = lambda g: g["rows"][0]["diff"] if g["rows"][0]["diff"] is not None else 0.0  # noqa: E731
    classes.sort(key=first)
    print(f"{len(shared)} shared clips; a clip counts for every class it has\n")
    print(markdown(classes, args.keys, "class"))
    print()
    print(markdown(density, args.keys, "events per clip"))
    if args.plot:
        plot(classes, args.keys[0], args.plot)
        print(f"\nwrote {args.plot}")
    if args.json:
        from foleyflow.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps({"clips": len(shared), "keys": args.keys, "classes": classes,
                                                 "density": density}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
