"""One model for T2A, V2A and VT2A (issue 17 item 3, Omni2Sound's unified training): the unified model against a
specialist per task, each trained with the same budget, and the issue's check that the unified model is within 5%
of its specialist on each task's keys.

    python benchmarks/task_ablation.py unified-t2a=eval/tasks/unified-t2a/report t2a=eval/tasks/t2a/report \
        unified-v2a=eval/tasks/unified-v2a/report v2a=eval/tasks/v2a/report \
        unified-vt2a=eval/tasks/unified-vt2a/report vt2a=eval/tasks/vt2a/report [--json table.json]

Each NAME=DIR is a `foleyflow evaluate` report folder (made by scripts/task_ablation.sh): `unified-TASK` is the
unified model generating TASK (t2a: the caption without the video; v2a: the video without text; vt2a: both), `TASK`
the specialist trained on that task alone. The task's keys (the issue's): t2a `clap_score`; v2a `onset_f1@50ms`;
vt2a both. A task passes when the unified model's pooled value is at least 95% of its specialist's on each of its
keys (all of them higher-is-better). Prints the rows' pooled values, then per task and key the specialist, the
unified model, their ratio, the paired difference (unified - specialist) with its 95% clip-bootstrap interval
(foleyflow.eval.paired.compare) and the verdict; a task whose pair is missing is reported as missing.
"""
from __future__ import annotations

import argparse
import json
import sys

TASK_KEYS = {"t2a": ("clap_score",), "v2a": ("onset_f1@50ms",), "vt2a": ("onset_f1@50ms", "clap_score")}
ROWS = tuple(n for t in TASK_KEYS for n in (f"unified-{t}", t))
WITHIN = 0.95                # the unified model keeps at least 95% of its specialist's value
EPS = 1e-9
# (key, heading) of the rows' table
COLUMNS = (("onset_f1@50ms", "onset F1"), ("desync_s", "desync s"), ("class_accuracy", "class acc."),
           ("clap_score", "CLAP"), ("pan_error", "pan error"), ("fd_learned", "FD learned"),
           ("loudness_lufs", "loudness LUFS"))


def task_checks(values: dict[str, dict], paired: dict[str, dict]) -> list[dict]:
    """Per task {task, status ('pass', 'fail', 'missing'), keys: [{key, specialist, unified, ratio, diff, low, high,
    verdict}]}; the ratio is of the pooled values of report.json."""
    out = []
    for task, keys in TASK_KEYS.items():
        uni, spec = f"unified-{task}", task
        if uni not in values or spec not in values:
            out.append({"task": task, "status": "missing", "keys": [],
                        "detail": f"needs {uni} and {spec}"})
            continue
        rows = {r["key"]: r for r in paired[task]["rows"]}
        found, ok = [], True
        for key in keys:
            s, u = values[spec].get(key), values[uni].get(key)
            ratio = u / s if isinstance(s, (int, float)) and isinstance(u, (int, float)) and s > 0 else None
            ok = ok and ratio is not None and ratio >= WITHIN - EPS
            r = rows.get(key, {})
            found.append({"key": key, "specialist": s, "unified": u, "ratio": ratio, "diff": r.get("diff"),
                          "low": r.get("low"), "high": r.get("high"), "verdict": r.get("verdict", "")})
        detail = "; ".join(f"{k['key']}: " + ("n/a" if k["ratio"] is None else f"{k['ratio']:.1%} of the specialist")
                           for k in found)
        out.append({"task": task, "status": "pass" if ok else "fail", "keys": found, "detail": detail})
    return out


def run(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rows", nargs="+", metavar="NAME=REPORT_DIR", help=f"NAME one of {', '.join(ROWS)}")
    p.add_argument("--json", metavar="OUT", help="also write the values, the paired differences and the checks")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from foleyflow.eval.paired import compare, diff_cell, read_named_reports

    folders, loaded = read_named_reports(args.rows, ROWS)
    values = {n: v for n, (v, _) in loaded.items()}
    print("| row | clips | " + " | ".join(h for _, h in COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for n, v in values.items():
        cells = [f"{v[k]:.3f}" if isinstance(v.get(k), (int, float)) else "n/a" for k, _ in COLUMNS]
        print(f"| {n} | {v.get('clips', '?')} | " + " | ".join(cells) + " |")
    paired = {}
    for task, keys in TASK_KEYS.items():
        uni, spec = f"unified-{task}", task
        if uni in loaded and spec in loaded:
            paired[task] = compare(loaded[spec][1], loaded[uni][1], resamples=args.resamples, seed=args.seed,
                                   keys=list(keys))
    checks = task_checks(values, paired)
    print(f"\nunified against specialist (target: at least {WITHIN:.0%} of the specialist on each key; the "
          "difference is unified - specialist on the clips both have, 95% clip-bootstrap interval):\n")
    print("| task | key | specialist | unified | ratio | difference | status |")
    print("|---|---|---:|---:|---:|---|---|")
    for c in checks:
        if c["status"] == "missing":
            print(f"| {c['task']} | | | | | | missing ({c['detail']}) |")
        for k in c["keys"]:
            f = [("n/a" if k[x] is None else f"{k[x]:.3f}") for x in ("specialist", "unified")]
            ratio = "n/a" if k["ratio"] is None else f"{k['ratio']:.1%}"
            print(f"| {c['task']} | {k['key']} | {f[0]} | {f[1]} | {ratio} | {diff_cell(k)} | {c['status']} |")
    result = {"rows": values, "paired": paired, "checks": checks, "folders": folders, "within": WITHIN}
    if args.json:
        from foleyflow.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2))
    return result


def main() -> None:
    from foleyflow.errors import FoleyError

    try:
        run()
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
