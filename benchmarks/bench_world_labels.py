"""Cost of FoleyWorld's audibility labels (world/audibility.py): the mixer with and without `label`.

    python benchmarks/bench_world_labels.py [--split test] [--seed 9000] [--clips 40] [--runs 3]

Renders each clip's soundtrack (no video) with labelling off and on, keeps the least CPU time of `--runs` runs per
clip (process time, as the machine may be shared; run with OMP_NUM_THREADS=1), and prints the mean and 90th
percentile of the difference (target: under 5 ms per 8 s clip).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from foleyflow.world.config import WorldConfig, split_seed_range
    from foleyflow.world.make import load_bank
    from foleyflow.world.mixer import render_scene_audio
    from foleyflow.world.physics import plan_clip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=9000, help="offset inside the split's seed range")
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    cfg = WorldConfig()
    bank = load_bank(cfg)
    first = split_seed_range(a.split)[0] + a.seed
    seeds = range(first, first + a.clips)
    plans = [plan_clip(s, a.split, cfg) for s in seeds]
    best = {False: np.full(a.clips, np.inf), True: np.full(a.clips, np.inf)}
    for _ in range(a.runs):
        for label in (False, True):
            for i, (seed, (scene, sim)) in enumerate(zip(seeds, plans)):
                t = time.process_time()
                render_scene_audio(sim.events, cfg.duration_s, cfg.sample_rate, scene.room, cfg.binaural, seed, bank,
                                   label=label)
                best[label][i] = min(best[label][i], time.process_time() - t)
    d = 1000 * (best[True] - best[False])
    print(f"{a.clips} {a.split} clips of {cfg.duration_s:g} s: render {1000 * best[False].mean():.1f} ms without "
          f"labels, {1000 * best[True].mean():.1f} ms with; labelling {d.mean():.2f} ms mean, "
          f"{np.percentile(d, 90):.2f} ms p90")


if __name__ == "__main__":
    main()
