"""The automatic planner against FoleyWorld's ground truth on a split (issue 19's planner targets), and its speed.

    nice -n 10 python benchmarks/planner_accuracy.py --planner runs/planner/planner.safetensors \
        --features /work/cache/features_test --json planner_test.json [--limit 300] [--work /tmp/planner_bench]

--features: a features cache (`foleyflow extract-features`) of the split's clips made with the bundle's encoders (the
planner checkpoint records which; a cache of other encoders is refused); the truth comes from the manifest the cache
names. Position features are decoded from the clips' videos once and kept in --work.
Figures (foleyflow.cot.score; visible = on screen and not marked inaudible): event onset F1 +-50 ms on visible
discrete events (any class; and `onset_class_f1`, where the class must match too); the class-agnostic contact head
alone at the threshold chosen on val (for comparison); source-class F1; material accuracy per matched source (and on
`rolling` alone, the only class whose material is not in its name); room accuracy; pan error of matched sources.
The issue's targets: onset F1 >= 0.72, class F1 >= 0.85, material >= 0.8, room >= 0.95, pan error <= 0.15.
Speed: the planner network plus decoding for one clip given its features (median of --repeats runs per clip, over
up to 20 clips; target <= 0.5 s for an 8 s clip); with --bundle and --videos N also the whole video -> plan path
(decode, encoders, position, planner) on N clips. States the CPU it ran on.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"onset_f1": (">=", 0.72), "classes_f1": (">=", 0.85), "material_accuracy": (">=", 0.8),
           "room_accuracy": (">=", 0.95), "pan_error": ("<=", 0.15)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--planner", required=True, help="planner checkpoint (recipes/train_planner.py)")
    ap.add_argument("--features", required=True, help="features cache of the split to score")
    ap.add_argument("--manifest", default=None, help="manifest with the truths (default: the cache's)")
    ap.add_argument("--limit", type=int, default=0, help="first N clips (0 = all)")
    ap.add_argument("--work", default=None, help="folder for the position features (default: next to --json)")
    ap.add_argument("--json", default="planner_accuracy.json", help="write the figures here")
    ap.add_argument("--repeats", type=int, default=5, help="timing runs per clip (median)")
    ap.add_argument("--bundle", default=None, help="time the whole video -> plan path with this bundle")
    ap.add_argument("--videos", type=int, default=3, help="clips for the video -> plan timing")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "recipes"))
    from train_planner import DataConfig, TrainConfig, batch, contact_figures, load_split, predict, val_figures

    from foleyflow.checkpoint import PROVENANCE, read_metadata
    from foleyflow.cot.planner import decode_plan, probabilities
    from foleyflow.models.planner import load_planner
    from foleyflow.planning import PlannerError

    planner = load_planner(args.planner)
    prov = json.loads(read_metadata(args.planner).get(PROVENANCE, "{}") or "{}")
    cfg = TrainConfig(model=planner.cfg, data=DataConfig(manifest=args.manifest, limit=args.limit))
    work = Path(args.work) if args.work else Path(args.json).resolve().parent / "planner_bench"
    work.mkdir(parents=True, exist_ok=True)
    data = load_split(args.features, cfg, work, None, allow_other=True)
    want = (prov.get("producers", {}).get("sync_encoder") or {}).get("sha256")
    if want and data["producers"].get("sync_encoder", {}).get("sha256") != want:
        raise PlannerError(f"{args.features} was made with another sync encoder than the planner was trained on")
    probs = predict(planner, data)
    figures = val_figures(probs, data, planner.cfg)
    ct = (prov.get("figures", {}).get("val") or {}).get("contact_head_threshold", 0.5)
    figures["contact_head_onset_f1"] = contact_figures(probs, data, planner.cfg, ct)["onset_f1"]
    figures["contact_head_threshold"] = ct
    figures["decoding"] = {k: getattr(planner.cfg, k) for k in ("presence_threshold", "onset_mode",
                                                                "contact_threshold", "onset_threshold",
                                                                "active_threshold")}
    # speed given the features: network + decoding of one clip
    per_clip = []
    with torch.inference_mode():
        for i in range(min(20, len(data["ids"]))):
            idx = torch.tensor([i])
            v, s, pos, app, _ = batch(data, idx)
            runs = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                decode_plan(probabilities(planner(v, s, pos, app)), planner.cfg, data["duration_s"])
                runs.append(time.perf_counter() - t0)
            per_clip.append(statistics.median(runs))
    speed = {"clip_s": data["duration_s"], "planner_and_decode_s_median": statistics.median(per_clip),
             "planner_and_decode_s_max": max(per_clip), "clips_timed": len(per_clip), "repeats": args.repeats,
             "threads": args.threads, "cpu": cpu_name()}
    if args.bundle:
        from foleyflow.manifest import read_manifest
        from foleyflow.planning import load_video_planner, plan_video

        vp = load_video_planner(args.bundle, args.planner)
        entries = {e.id: e for e in read_manifest(data["manifest"])}
        whole = []
        for i in data["ids"][:args.videos]:
            t = {}
            t0 = time.perf_counter()
            plan_video(entries[i].video, vp, None, t)
            whole.append({"total_s": time.perf_counter() - t0, **{k: round(x, 4) for k, x in t.items()}})
        speed["video_to_plan"] = whole
        speed["video_to_plan_s_median"] = statistics.median(w["total_s"] for w in whole)
    report = {"planner": str(Path(args.planner).resolve()), "features": data["folder"], "clips": len(data["ids"]),
              "figures": figures, "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()}, "speed": speed}
    from foleyflow.fileio import atomic_write_text

    atomic_write_text(Path(args.json), json.dumps(report, indent=1))
    print(f"planner {args.planner} on {len(data['ids'])} clips of {args.features}")
    for k, (op, target) in TARGETS.items():
        v = figures.get(k)
        ok = v is not None and (v >= target if op == ">=" else v <= target)
        print(f"  {k:26s} {'-' if v is None else f'{v:.3f}':>7}   target {op} {target}   {'met' if ok else 'NOT met'}")
    for k in ("onset_class_f1", "onset_precision", "onset_recall", "contact_head_onset_f1",
              "material_accuracy_rolling", "pan_samples"):
        v = figures.get(k)
        print(f"  {k:26s} {'-' if v is None else (f'{v:.3f}' if isinstance(v, float) else v):>7}")
    print(f"  planning given features: median {speed['planner_and_decode_s_median'] * 1000:.1f} ms per "
          f"{data['duration_s']:g} s clip (max {speed['planner_and_decode_s_max'] * 1000:.1f} ms; {speed['cpu']})")
    if "video_to_plan_s_median" in speed:
        print(f"  video -> plan (decode, encoders, position, planner): median {speed['video_to_plan_s_median']:.2f} s")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
