"""The audio evaluation models' own accuracy on ground-truth audio of a FoleyWorld split (the figures in
foleyflow/assets/eval/README.md). Everything goes through the same code `foleyflow evaluate` uses (eval/models.py,
truth.classify_events), on the true soundtracks (.wav):

  - event classifier: top-1 accuracy over every non-ambience labelled event (segment at the labelled onset), also
    per class and split into discrete / continuous events;
  - clip head: mean average precision of the 21 clip-level presence probabilities (whole clips, labels from truth);
  - CLAP model: text -> audio retrieval among the split's clips (recall@1/5/10; a clip whose caption is identical to
    the query's counts as a hit too), and the paired cosine (CLAP score) against the cosine of shuffled pairs.

    python recipes/measure_eval_models.py --manifest /data/foleyworld/manifest.jsonl --split test \
        --models foleyflow/assets/eval --json runs/eval_models_test.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> None:
    import soundfile as sf

    from foleyflow.data.eval_clips import crop_labels, manifest_clips
    from foleyflow.manifest import read_manifest
    from foleyflow.eval.models import load_clap, load_event_classifier
    from foleyflow.eval.truth import classify_events
    from foleyflow.events import read_events

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    clips = manifest_clips(args.manifest, args.split, args.limit)
    out: dict = {"split": args.split, "clips": len(clips)}
    rows = {e.id: e for e in read_manifest(args.manifest, check_files=False) if e.split == args.split}
    audio = [sf.read(c.audio, dtype="float32", always_2d=True) for c in clips]
    audio = [(x.T, sr) for x, sr in audio]
    out.update(_event(args, clips, rows, audio, load_event_classifier, classify_events, read_events, crop_labels))
    if (args.models / "clap.safetensors").is_file():
        emb = load_clap(args.models / "clap.safetensors", {c.id: c.caption for c in clips})
        a = np.stack([emb.audio_embedding(x, sr) for x, sr in audio])
        t = np.stack([emb.text_embedding(c.id) for c in clips])
        caps = [c.caption for c in clips]
        sim = t @ a.T
        same = np.array([[ci == cj for cj in caps] for ci in caps])
        best_same = np.where(same, sim, -np.inf).max(1)
        rank = (np.where(same, -np.inf, sim) > best_same[:, None]).sum(1) + 1
        rng = np.random.default_rng(0)
        perm = (np.arange(len(clips)) + rng.integers(1, len(clips))) % len(clips)
        out["clap"] = {**{f"text_to_audio_recall@{k}": float(np.mean(rank <= k)) for k in (1, 5, 10)},
                       "mean_rank": float(rank.mean()), "paired_cosine": float(np.mean(np.diag(sim))),
                       "shuffled_cosine": float(np.mean(sim[np.arange(len(clips)), perm])),
                       "distinct_captions": len(set(caps))}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


def _event(args, clips, rows, audio, load_event_classifier, classify_events, load_truth, crop_labels) -> dict:
    path = args.models / "event.safetensors"
    if not path.is_file():
        return {}
    clf = load_event_classifier(path)
    res, kinds = [], []
    probs, labels = [], []
    for c, (x, sr) in zip(clips, audio):
        events = load_truth(rows[c.id].truth)
        r = classify_events(x, sr, events, clf)
        res += r
        kinds += [e.kind for e in events if e.kind != "ambience"]
        probs.append(clf.clip_outputs(x, sr)[0])
        labels.append(crop_labels(c, 0.0, c.duration_s, tuple(clf.clip_class_names)))
    ok = np.array([r["predicted"] == r["label"] for r in res])
    kinds = np.array(kinds)
    per_class = {}
    for name in clf.class_names:
        m = np.array([r["label"] == name for r in res])
        if m.any():
            per_class[name] = round(float(ok[m].mean()), 4)
    from foleyflow.data.eval_clips import mean_average_precision

    return {"event": {"accuracy": float(ok.mean()), "events": len(res),
                      "accuracy_discrete": float(ok[kinds == "discrete"].mean()),
                      "accuracy_continuous": float(ok[kinds == "continuous"].mean()) if (kinds == "continuous").any()
                      else None, "per_class": per_class},
            "clip_map": mean_average_precision(np.stack(labels), np.stack(probs))}


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
