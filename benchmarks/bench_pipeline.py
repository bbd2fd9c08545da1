"""Speed of each stage of `foleyflow generate` on one 8 s, 128 x 128 clip (examples/demo.mp4), tiny preset,
untrained weights (the speed of trained weights is the same), CPU, batch 1.

    PYTHONPATH=. python benchmarks/bench_pipeline.py [--repeats 3] [--threads 2] [--steps N] [--cfg W]
                                                     [--bundle DIR] [--video PATH]
    PYTHONPATH=. python benchmarks/bench_pipeline.py --bundle foleyflow/assets/default --against OLD_BUNDLE

`--against OLD`: end to end, the bundle against another one in the same run (issue 17's speed target: the default
model at most 1.5x the time of the one it replaced), as `foleyflow generate VIDEO` runs each with its defaults and no
prompt: a bundle that plans by default (bundle.json "plan": "auto") plans the video first (foleyflow.planning.
default_plan on the pipeline's encoders), then generate and mux. Two figures, the runs of the two bundles alternated:
"loaded" (models in memory, a server's or batch's case) and "cold" (the whole `python -m foleyflow generate` command
in a new process: imports, loading, planning, generation, writing). Prints each median and the ratio.

Steps and guidance default to the bundle's own (the installed default model samples 10 steps); give them to time
another setting.

Stages: decode (frames at 8 and 25 fps at the encoders' sizes), encoders (semantic + sync), text (one prompt through
MiniLM), sampling (the bundle's steps with guidance, both branches batched; bf16 where supported and fp32), codec (VAE
decoder + vocoder, both channels), mux (AAC encode + copy of the video stream), and the whole `generate` call.
Prints the median and min of --repeats runs after one warm-up. Timings on a shared machine are noisy; when other
processes keep the cores busy, use --threads 1 (OpenMP barriers make 2 threads 10-50x slower on an oversubscribed
2-core machine).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from machine import cpu_summary  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the bundle's)")
    ap.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the bundle's)")
    ap.add_argument("--bundle", default=None, help="bundle to time (default: a fresh untrained tiny bundle)")
    ap.add_argument("--video", default=str(ROOT / "examples" / "demo.mp4"))
    ap.add_argument("--against", default=None, metavar="DIR", help="time --bundle against this bundle end to end, "
                    "alternated in one run (module docstring)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from foleyflow.bundle import build_untrained_bundle

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        bundle = args.bundle or build_untrained_bundle(Path(tmp) / "bundle")
        if args.against:
            against(args, Path(tmp), Path(bundle), Path(args.against))
        else:
            run(args, Path(tmp), bundle)


def against(args, tmp: Path, new: Path, old: Path) -> None:
    """End to end, loaded and cold, `new` against `old` alternated (module docstring)."""
    import subprocess
    import sys

    from foleyflow import media
    from foleyflow.pipeline import FoleyPipeline
    from foleyflow.planning import AutoPlanner, default_plan, plans_by_default

    print(f"clip: {args.video}; threads {torch.get_num_threads()}; CPU {cpu_summary()}")
    bundles = {"new": new, "old": old}
    pipes = {k: FoleyPipeline.from_bundle(b) for k, b in bundles.items()}
    planners = {k: AutoPlanner(b, pipes[k]) if plans_by_default(b) else None for k, b in bundles.items()}
    for k, b in bundles.items():
        print(f"{k}: {b} ({pipes[k].name}; {'plans by default' if planners[k] else 'no plan'}; "
              f"{pipes[k].options().steps} steps)")
    given = {k: v for k, v in (("steps", args.steps), ("cfg_scale", args.cfg)) if v is not None}

    def loaded(k: str, seed: int) -> float:
        t0 = time.perf_counter()
        pipe, cot, plan = pipes[k], None, None
        if planners[k] is not None:
            pipe.features.clear()           # nothing kept from the last run
            cot, plan, _ = default_plan(planners[k], args.video)
        r = pipe.generate(args.video, cot=cot, plan=plan, seed=seed, **given)
        media.mux_audio(args.video, r.audio, r.sample_rate, tmp / f"{k}.mp4")
        return time.perf_counter() - t0

    def cold(k: str) -> float:
        cmd = [sys.executable, "-m", "foleyflow", "generate", args.video, "--bundle", str(bundles[k]), "--threads",
               str(args.threads), "-o", str(tmp / f"cold_{k}.mp4"), "--overwrite"]
        cmd += (["--steps", str(args.steps)] if args.steps else []) + (["--cfg", str(args.cfg)] if args.cfg else [])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {}
    for k in bundles:                       # warm-up (MiniLM, the planner, first calls)
        loaded(k, 0)
    for i in range(args.repeats):
        for k in (("new", "old") if i % 2 == 0 else ("old", "new")):
            times.setdefault(f"loaded {k}", []).append(loaded(k, i + 1))
            times.setdefault(f"cold {k}", []).append(cold(k))
    print(f"\n{'end to end (8 s clip)':28s} {'new median s':>13s} {'old median s':>13s} {'new / old':>10s}")
    for what in ("loaded", "cold"):
        a, b = statistics.median(times[f"{what} new"]), statistics.median(times[f"{what} old"])
        print(f"{what:28s} {a:13.2f} {b:13.2f} {a / b:10.2f}")
    print("runs: " + "; ".join(f"{k} " + ", ".join(f"{v:.2f}" for v in vs) for k, vs in times.items()))


def run(args, tmp: Path, bundle) -> None:
    from foleyflow import media
    from foleyflow.models.generator import count_parameters
    from foleyflow.pipeline import FoleyPipeline

    info = media.probe(args.video).video
    print(f"clip: {args.video} ({info.display_width}x{info.display_height}, {float(info.frame_rate):g} fps, "
          f"{info.duration_s:.2f} s); threads {torch.get_num_threads()}; CPU {cpu_summary()}")
    rows: dict[str, list[float]] = {}
    for precision in ("auto", "fp32"):
        pipe = FoleyPipeline.from_bundle(bundle, precision=precision)
        if precision == "auto":
            g = pipe.generator
            print(f"generator: {count_parameters(g) / 1e6:.2f} M, window {pipe.window_s:g} s, latents "
                  f"{g.latent_len} x {g.cfg.latent_channels}, tokens visual {g.visual_len}, sync {g.sync_len}, "
                  f"text {g.cfg.text_len}; semantic encoder {sum(p.numel() for p in pipe.semantic.parameters()) / 1e6:.2f} M, "
                  f"sync encoder {sum(p.numel() for p in pipe.sync.parameters()) / 1e6:.2f} M")
            t0 = time.perf_counter()
            pipe.text_features("a ball bounces on a wooden floor")
            print(f"text encoder load (MiniLM was loaded once already to build the bundle) + first encode: "
                  f"{time.perf_counter() - t0:.2f} s")
        for run in range(args.repeats + 1):
            t0 = time.perf_counter()
            given = {k: v for k, v in (("steps", args.steps), ("cfg_scale", args.cfg)) if v is not None}
            r = pipe.generate(args.video, prompt="a ball bounces on a wooden floor", seed=run, **given)
            if run == 0 and precision == "auto":
                print(f"steps {r.options.steps}, cfg {r.options.cfg_scale}, sampler {r.options.sampler} "
                      f"({'given' if given else 'the bundle' + chr(39) + 's defaults'})")
                steps = r.options.steps
            total = time.perf_counter() - t0
            t1 = time.perf_counter()
            media.mux_audio(args.video, r.audio, r.sample_rate, tmp / "out.mp4")
            mux = time.perf_counter() - t1
            if run == 0:
                continue  # warm-up
            tag = r.precision
            for k in ("decode", "encoders", "text"):
                if precision == "auto":
                    rows.setdefault(k, []).append(r.timings_s[k])
            rows.setdefault(f"sampling ({tag})", []).append(r.timings_s["sampling"])
            if precision == "auto":
                rows.setdefault("codec", []).append(r.timings_s["codec"])
                rows.setdefault("mux", []).append(mux)
            rows.setdefault(f"generate total ({tag}, without mux)", []).append(total)
    print(f"\n{'stage':38s} {'median s':>9s} {'min s':>8s}")
    for k, v in rows.items():
        print(f"{k:38s} {statistics.median(v):9.3f} {min(v):8.3f}")
    per_step = statistics.median(rows[next(k for k in rows if k.startswith("sampling"))]) / steps
    print(f"\nsampling per guided step (first precision above): {per_step * 1000:.0f} ms; 8 s of audio in "
          f"{statistics.median(rows[next(k for k in rows if k.startswith('generate'))]):.2f} s")


if __name__ == "__main__":
    main()
