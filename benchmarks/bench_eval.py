"""Time per metric of `foleyflow evaluate` on synthetic clips (issue 7 target: 1,000 clips of 8 s, all metrics,
baselines excluded, in at most 10 minutes on the reference machine).

    .venv/bin/python benchmarks/bench_eval.py --clips 1000            # full size
    .venv/bin/python benchmarks/bench_eval.py --clips 200 --repeats 3  # busy machine: extrapolated linearly to 1,000

Writes N synthetic stereo 16 kHz clips with ground truth (foleyflow.eval.synthetic) as "reference" and a perturbed
copy as "generated" into a temporary folder (not timed), then times `run_evaluation(..., baselines=False)` with fake
evaluation models (a tone classifier for event classes, spectral-balance logits for KL/IS), which measures the
protocol's own cost, not the inference cost of real evaluation models (none is trained yet). Prints seconds per
part (median over repeats), the total, and the total extrapolated to 1,000 clips.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from foleyflow.eval.run import EvalModels, run_evaluation
from foleyflow.eval.synthetic import ToneClassifier, labelled_events_clip
from foleyflow.media import write_audio

SR = 16000


def fake_logits(audio, sr):
    spec = np.abs(np.fft.rfft(audio.mean(0))) ** 2
    bands = np.array_split(spec, 8)
    return np.log(np.array([b.sum() for b in bands]) + 1e-9)


def make_sets(root: Path, n: int, duration_s: float) -> None:
    rng = np.random.default_rng(0)
    for d in ("ref", "gen", "truth"):
        (root / d).mkdir()
    for i in range(n):
        x, events = labelled_events_clip(i, duration_s=duration_s, sample_rate=SR, num_events=10)
        write_audio(root / "ref" / f"clip{i:05d}.wav", x, SR, subtype="PCM_16")
        g = np.roll(x, int(rng.integers(0, 800)), axis=1) + 0.003 * rng.standard_normal(x.shape)
        write_audio(root / "gen" / f"clip{i:05d}.wav", np.clip(g, -1, 1), SR, subtype="PCM_16")
        (root / "truth" / f"clip{i:05d}.json").write_text(json.dumps([e.to_json() for e in events]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        make_sets(root, args.clips, args.duration)
        print(f"wrote {args.clips} clip pairs of {args.duration} s in {time.perf_counter() - t:.1f} s (not timed)")
        models = EvalModels(audio_classifier=fake_logits, event_classifier=ToneClassifier())
        totals, parts = [], {}
        for _ in range(args.repeats):
            t = time.perf_counter()
            rep = run_evaluation(root / "gen", root / "ref", truth_dir=root / "truth", models=models,
                                 baselines=False)
            totals.append(time.perf_counter() - t)
            for group, timings in rep["timings_s"].items():
                for k, v in timings.items():
                    parts.setdefault(f"{group}/{k}", []).append(v)
    print(f"\n{'part':45s} {'seconds (median)':>16s}")
    for k, v in sorted(parts.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"{k:45s} {statistics.median(v):16.2f}")
    total = statistics.median(totals)
    scale = 1000 / args.clips
    print(f"\ntotal wall time for {args.clips} clips: {total:.1f} s (runs: {', '.join(f'{x:.1f}' for x in totals)})")
    print(f"extrapolated to 1,000 clips (linear; FD/KAD grow faster but are small): {total * scale:.0f} s "
          f"= {total * scale / 60:.1f} min (target: 10 min)")
    g = rep["systems"]["generated"]
    print("sanity (generated = reference shifted by 0-50 ms + noise):",
          {k: round(g[k], 3) for k in ("onset_f1@50ms", "onset_f1@100ms", "pan_error", "fd_melstats")})


if __name__ == "__main__":
    main()
