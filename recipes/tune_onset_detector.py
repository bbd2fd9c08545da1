"""Grid search of the onset detector's band selection and threshold (OnsetConfig.top_fraction, delta_db) on a
FoleyWorld split that is not test (val or evaltrain): ground truth scored against its own labels (F1 at +-50 ms, the
same expected and optional onsets as eval/truth.py), and the shuffled baseline (each clip's detections scored against
the next clip's labels) which must stay low.

    python recipes/tune_onset_detector.py --manifest /data/foleyworld/manifest.jsonl --split val \
        --top-fractions 1,0.75,0.5,0.35,0.25 --deltas 2.5,3,3.5,4,4.5

Prints one row per setting (F1, precision, recall, shuffled F1) and the best by F1. Log-mel spectra are computed once
per clip and reused across settings.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from foleyflow.eval import onsets as onsets_mod
from foleyflow.eval.onsets import OnsetConfig, detect_onsets, score_onsets
from foleyflow.eval.truth import EDGE_S
from foleyflow.events import marked_audible, read_events


def expected_and_optional(events):
    discrete = [e.onset_s for e in events if e.kind == "discrete" and marked_audible(e)]
    optional = [e.onset_s for e in events if e.kind == "continuous" or (e.kind == "discrete" and not marked_audible(e))]
    optional += [float(t) for e in events if e.kind != "discrete" for t in (e.params or {}).get("transients_s", ())]
    return discrete, optional


def main(argv=None) -> None:
    import soundfile as sf

    from foleyflow.manifest import read_manifest

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--top-fractions", default="1,0.75,0.5,0.35,0.25")
    ap.add_argument("--deltas", default="2.5,3,3.5,4,4.5")
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    if args.split.startswith("test"):
        from foleyflow.errors import EvalError

        raise EvalError("tune on val or evaltrain, never on a test split")
    rows = [e for e in read_manifest(args.manifest, check_files=False) if e.split == args.split]
    rows = rows[: args.limit] if args.limit else rows
    clips = []
    for e in rows:
        x, sr = sf.read(e.audio, dtype="float64", always_2d=True)
        clips.append((x.T, sr, *expected_and_optional(read_events(e.truth))))
    cache: dict = {}
    plain = onsets_mod.log_mel

    def cached_log_mel(audio, sample_rate, config=OnsetConfig()):
        key = (id(audio), sample_rate, config.win_s, config.hop_s, config.n_mels, config.floor_db)
        if key not in cache:
            cache[key] = plain(audio, sample_rate, config)
        return cache[key]

    onsets_mod.log_mel = cached_log_mel
    mono = [(x.mean(0), sr, d, o) for x, sr, d, o in clips]   # one array per clip, so the cache key is stable
    table = []
    for tf in (float(v) for v in args.top_fractions.split(",")):
        for delta in (float(v) for v in args.deltas.split(",")):
            cfg = replace(OnsetConfig(), top_fraction=tf, delta_db=delta)
            own = shuf = None
            for i, (x, sr, disc, opt) in enumerate(mono):
                det = detect_onsets(x, sr, cfg)
                span = (EDGE_S, len(x) / sr - EDGE_S)
                s = score_onsets(disc, det, (0.05,), span_s=span, optional=opt)
                o_disc, o_opt = mono[(i + 1) % len(mono)][2:]
                t = score_onsets(o_disc, det, (0.05,), span_s=span, optional=o_opt)
                own, shuf = (s, t) if own is None else (own + s, shuf + t)
            c, cs = own.counts[0.05], shuf.counts[0.05]
            table.append({"top_fraction": tf, "delta_db": delta, "f1": c.f1, "precision": c.precision,
                          "recall": c.recall, "shuffled_f1": cs.f1})
            print(f"top_fraction {tf:.2f} delta_db {delta:.1f}: F1 {c.f1:.4f} (P {c.precision:.4f}, "
                  f"R {c.recall:.4f}), shuffled F1 {cs.f1:.3f}", flush=True)
    best = max(table, key=lambda r: r["f1"])
    print(f"best on {len(mono)} {args.split} clips: {json.dumps(best)}")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "clips": len(mono), "table": table}, indent=1))


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
