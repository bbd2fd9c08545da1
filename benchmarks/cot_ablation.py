"""The chain-of-thought ablation of issue 19 (PrismAudio's, at an equal training budget): one row per text condition,
every column, the paired differences to the caption row and the issue's three checks.

    python benchmarks/cot_ablation.py none=eval/abl_cot/none/report caption=eval/abl_cot/caption/report \
        monolithic=eval/abl_cot/monolithic/report cot=eval/abl_cot/cot/report truth=eval/abl_cot/truth/report \
        auto=eval/abl_cot/auto/report [--json table.json] [--resamples 2000] [--seed 0]

Each NAME=DIR is a `foleyflow evaluate` report folder (report.json and per_clip.jsonl) of one row, made by
scripts/cot_ablation.sh: `none` (video only), `caption`, `monolithic` (the four-part CoT's sentences as one paragraph,
as text), `cot` (four-part CoT as text), `truth` (four-part CoT as text and as the time-aligned plan track), `auto`
(the planner's CoT, text and track, of the `truth` row's model). Rows may be missing; a check needing one says so.

Prints the table (pooled values; FD is set-level), then each row minus `caption` with 95% clip-bootstrap intervals
(foleyflow.eval.paired.compare, the same resamples for every key), then the checks:
  1. a ground-truth four-part row (`cot` or `truth`) beats `caption` by >= 0.10 onset F1 and >= 0.10 pan error;
  2. `cot` beats `monolithic` on at least three of the six columns, a paired interval excluding 0 for the five
     per-clip keys (FD, set-level, has no interval: it counts when at least 5% lower);
  3. `auto` keeps >= 80% of `truth`'s gain over `caption`, on onset F1 and on pan error (fails where `truth` has no
     gain).
"""
from __future__ import annotations

import argparse
import json
import sys

ROWS = ("none", "caption", "monolithic", "cot", "truth", "auto")
LABELS = {"none": "no text", "caption": "caption", "monolithic": "monolithic CoT (text)",
          "cot": "four-part CoT (text)", "truth": "four-part CoT (text + time-aligned track)",
          "auto": "planner CoT (text + track)"}
# (key, heading, lower is better)
COLUMNS = (("onset_f1@50ms", "onset F1", False), ("onset_recall@50ms", "onset recall", False),
           ("desync_s", "desync s", True), ("class_accuracy", "class acc.", False), ("clap_score", "CLAP", False),
           ("pan_error", "pan error", True), ("fd_learned", "FD learned", True))
ONSET_GAIN, PAN_GAIN, KEEP = 0.10, 0.10, 0.8     # the thresholds
FD_MARGIN = 0.05        # FD counts as a win for four-part over monolithic only when at least 5% lower
EPS = 1e-9              # thresholds hold at equality despite float rounding
SIX = ("onset_f1@50ms", "desync_s", "class_accuracy", "clap_score", "pan_error", "fd_learned")   # the columns


def checks(values: dict[str, dict], paired: dict[str, dict], mono_vs_cot: dict | None) -> list[dict]:
    """The three checks as {name, status ('pass', 'fail', 'missing'), detail}. Differences to the caption are the
    paired ones (pooled over the clips both rows have), FD the report's."""
    def diff(row: str, key: str) -> float | None:
        r = {x["key"]: x for x in paired.get(row, {}).get("rows", [])}.get(key)
        return None if r is None else float(r["diff"])

    out = []
    gt = [r for r in ("cot", "truth") if diff(r, "onset_f1@50ms") is not None]
    if gt:
        found = {r: (diff(r, "onset_f1@50ms"), diff(r, "pan_error")) for r in gt}
        ok = [r for r, (d_on, d_pan) in found.items()
              if d_on >= ONSET_GAIN - EPS and d_pan is not None and d_pan <= -PAN_GAIN + EPS]
        detail = "; ".join(f"{r}: onset F1 {d_on:+.3f}, pan error " + ("n/a" if d_pan is None else f"{d_pan:+.3f}")
                           for r, (d_on, d_pan) in found.items())
        out.append({"name": "ground-truth four-part beats caption (onset F1 +0.10, pan error -0.10)",
                    "status": "pass" if ok else "fail", "detail": detail})
    else:
        out.append({"name": "ground-truth four-part beats caption", "status": "missing",
                    "detail": "needs caption and cot or truth"})
    if mono_vs_cot is not None:
        rows = {r["key"]: r for r in mono_vs_cot["rows"]}
        wins = [k for k in SIX if k in rows and rows[k].get("verdict") == "better"]
        fd = [values.get(r, {}).get("fd_learned") for r in ("cot", "monolithic")]
        if None not in fd and fd[0] < (1 - FD_MARGIN) * fd[1]:      # set-level: no interval, a margin instead
            wins.append("fd_learned")
        out.append({"name": "four-part beats monolithic on >= 3 of 6 columns", "status":
                    "pass" if len(wins) >= 3 else "fail", "detail": f"{len(wins)}: {', '.join(wins) or 'none'}"})
    else:
        out.append({"name": "four-part beats monolithic", "status": "missing", "detail": "needs cot and monolithic"})
    if all(diff(r, "onset_f1@50ms") is not None for r in ("truth", "auto")):
        parts, ok = [], True
        for key, sign in (("onset_f1@50ms", 1), ("pan_error", -1)):
            gain, got = diff("truth", key), diff("auto", key)
            if gain is None or got is None:
                ok = False
                parts.append(f"{key}: n/a")
            elif sign * gain <= EPS:            # nothing to keep: the ground-truth plan did not help on this key
                ok = False
                parts.append(f"{key}: no ground-truth gain to keep ({gain:+.3f})")
            else:
                kept = got / gain
                ok = ok and kept >= KEEP - EPS
                parts.append(f"{key}: {kept:.0%} of the gain {gain:+.3f}")
        out.append({"name": "planner keeps >= 80% of the ground-truth gain over caption",
                    "status": "pass" if ok else "fail", "detail": "; ".join(parts)})
    else:
        out.append({"name": "planner keeps >= 80% of the gain", "status": "missing",
                    "detail": "needs caption, truth and auto"})
    return out


def run(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rows", nargs="+", metavar="NAME=REPORT_DIR", help=f"NAME one of {', '.join(ROWS)}")
    p.add_argument("--json", metavar="OUT", help="also write the table, differences and checks as JSON")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from foleyflow.eval.paired import compare, diff_cell, read_named_reports

    folders, loaded = read_named_reports(args.rows, ROWS)
    values = {n: v for n, (v, _) in loaded.items()}
    clip_sets = {n: frozenset(recs) for n, (_, recs) in loaded.items()}
    if len(set(clip_sets.values())) > 1:
        print("warning: the rows were scored on different clips; the table pools each row's own, the differences "
              "and checks use the clips each pair shares", file=sys.stderr)
    print("| row | clips | " + " | ".join(h for _, h, _ in COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for n, v in values.items():
        cells = [f"{v[k]:.3f}" if isinstance(v.get(k), (int, float)) else "n/a" for k, _, _ in COLUMNS]
        print(f"| {LABELS[n]} | {v.get('clips', '?')} | " + " | ".join(cells) + " |")
    paired = {}
    if "caption" in loaded:
        print("\nminus caption, 95% clip-bootstrap interval (+ better, - worse where it excludes 0):\n")
        print("| row | clips | " + " | ".join(h for k, h, _ in COLUMNS if k != "fd_learned") + " |")
        print("|---|---:|" + "---:|" * (len(COLUMNS) - 1))
        for n in loaded:
            if n == "caption":
                continue
            paired[n] = compare(loaded["caption"][1], loaded[n][1], resamples=args.resamples, seed=args.seed)
            rows = {r["key"]: r for r in paired[n]["rows"]}
            cells = [diff_cell(rows.get(k)) for k, _, _ in COLUMNS if k != "fd_learned"]
            print(f"| {LABELS[n]} | {paired[n]['clips']} | " + " | ".join(cells) + " |")
    mono_vs_cot = None
    if "cot" in loaded and "monolithic" in loaded:
        mono_vs_cot = compare(loaded["monolithic"][1], loaded["cot"][1], resamples=args.resamples, seed=args.seed)
    result = {"rows": values, "paired_vs_caption": paired, "cot_vs_monolithic": mono_vs_cot,
              "checks": checks(values, paired, mono_vs_cot), "folders": folders}
    print()
    for c in result["checks"]:
        print(f"- {c['name']}: {c['status']} ({c['detail']})")
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
