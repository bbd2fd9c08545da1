"""How long the whole video -> plan path takes (`foleyflow plan`'s work with the models loaded; prints figures).

Usage: python benchmarks/plan_speed.py VIDEO [VIDEO ...] [--bundle foleyflow/assets/default] [--runs 3]
                                       [--threads 2]

Loads the bundle's planner and encoders once, plans each video once to warm up, then `--runs` times, and prints the
median total and its parts (decoding, encoders, position profiles, the planner network and plan decoding) with the
CPU it ran on. Issue 19's target: at most 0.5 s for an 8 s clip. Pause other work on the machine while it runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--bundle", default=str(ROOT / "foleyflow" / "assets" / "default"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    from foleyflow.errors import FoleyError
    from foleyflow.media import probe
    from foleyflow.planning import load_video_planner, plan_video
    from machine import cpu_summary

    torch.set_num_threads(args.threads)
    print(f"# {cpu_summary()}, {args.threads} threads, median of {args.runs} runs after one warm-up")
    try:
        vp = load_video_planner(args.bundle)
        for video in args.videos:
            if probe(video).video is None:
                raise FoleyError(f"{video}: has no video stream")
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    parts = ("decode", "encoders", "position", "planner")
    print(f"{'video':40s} {'seconds':>8s} {'total':>7s} " + " ".join(f"{p:>8s}" for p in parts))
    for video in args.videos:
        runs = []
        for r in range(args.runs + 1):
            timings = {}
            t0 = time.perf_counter()
            plan_video(video, vp, timings=timings)
            timings["total"] = time.perf_counter() - t0
            if r:
                runs.append(timings)
        med = {k: statistics.median(t.get(k, 0.0) for t in runs) for k in ("total",) + parts}
        dur = float(probe(video).video.duration_s)
        print(f"{Path(video).name:40s} {dur:8.2f} {med['total']:7.3f} " + " ".join(f"{med[p]:8.3f}" for p in parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
