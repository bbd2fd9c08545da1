"""Onset F1 of several generated sets on the same clips, with a paired bootstrap of each set's difference to the first.

    python benchmarks/paired_onsets.py --truth /data/foleyworld/test full=eval/gen_full nosync=eval/gen_nosync ...

Every set is scored against the ground-truth events exactly as `foleyflow evaluate` does (discrete, audible events;
merged clusters; optional onsets excused), on the clips all sets share. The bootstrap resamples clips (the same
resample for every set, so clip difficulty cancels) and pools each resample's true/false positives and misses into
an F1, as the set-level figure does. A 95% interval of a difference that excludes 0 means the ordering is not
down to which clips were drawn. For every key of two full `evaluate` runs, see benchmarks/paired_eval.py.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def clip_counts(folder: str, truth: str, tolerance_s: float) -> dict[str, tuple[int, int, int]]:
    """Per clip of `folder`: (true positives, false positives, misses) at `tolerance_s`, as `evaluate` counts them."""
    from foleyflow.eval.truth import evaluate_truth

    _, results = evaluate_truth(folder, truth)
    return {r.name: (r.onsets.counts[tolerance_s].tp, r.onsets.counts[tolerance_s].fp,
                     r.onsets.counts[tolerance_s].fn) for r in results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sets", nargs="+", help="NAME=FOLDER of generated <clip>.wav; the first is the baseline")
    p.add_argument("--truth", required=True, help="folder of <clip>.json ground truth")
    p.add_argument("--tolerance-ms", type=float, default=50.0)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sets = [tuple(s.split("=", 1)) if "=" in s else (Path(s).name, s) for s in args.sets]
    names = [n for n, _ in sets]
    if len(set(names)) != len(names):
        raise SystemExit("error: two sets have the same name; name them NAME=FOLDER")
    for _, folder in sets:
        if not Path(folder).is_dir():
            raise SystemExit(f"error: {folder} is not a folder")
    from foleyflow.eval.onsets import TOLERANCES_S

    tol = args.tolerance_ms / 1000
    if tol not in TOLERANCES_S:
        raise SystemExit(f"error: --tolerance-ms must be one of {', '.join(f'{t * 1000:g}' for t in TOLERANCES_S)}")
    from foleyflow.errors import FoleyError

    try:
        per_set = {name: clip_counts(folder, args.truth, tol) for name, folder in sets}
    except FoleyError as e:
        raise SystemExit(f"error: {e}") from None
    shared = sorted(set.intersection(*(set(c) for c in per_set.values())))
    if not shared:
        raise SystemExit("error: the sets share no clip")
    from foleyflow.eval.paired import bootstrap_indices, paired_interval, pooled_key

    f1 = pooled_key(f"onset_f1@{args.tolerance_ms:g}ms").stat   # pooled as `evaluate` pools: (..., clips, 3) -> (...)
    counts = {name: np.asarray([c[n] for n in shared], dtype=np.float64) for name, c in per_set.items()}
    idx = bootstrap_indices(len(shared), args.resamples, args.seed)
    base = sets[0][0]
    print(f"onset F1 +-{args.tolerance_ms:g} ms on {len(shared)} shared clips; paired bootstrap ({args.resamples} "
          f"resamples of clips, seed {args.seed}) of each set minus {base}")
    print("| set | onset F1 | minus " + base + " | 95% interval |")
    print("|---|---:|---:|---|")
    for name, _ in sets:
        own, lo, hi = paired_interval(f1, counts[base], counts[name], idx=idx)
        print(f"| {name} | {f1(counts[name]):.3f} | {own:+.3f} | "
              + ("-" if name == base else f"[{lo:+.3f}, {hi:+.3f}]") + " |")


if __name__ == "__main__":
    main()
