"""Evaluation models (foleyflow/assets/eval): export a trained sync_av / semantic_av model in fp16 and measure its own
accuracy on ground-truth clips (the figures in foleyflow/assets/eval/README.md).

    python recipes/eval_models.py export --kind sync_av --state runs/eval_offset/checkpoints/state_00001200.safetensors \
        --out foleyflow/assets/eval/offset.safetensors --note "FoleyWorld evaltrain (1,000 clips)"
    python recipes/eval_models.py offset --model foleyflow/assets/eval/offset.safetensors --manifest test.jsonl
    python recipes/eval_models.py av --model foleyflow/assets/eval/av.safetensors --manifest test.jsonl

offset: (1) offset accuracy, exact class and within +-1 class (0.2 s), on 4.8 s windows drawn as the sync recipe
draws them (every clip, every one of the 21 offsets, one random valid start each; seeded), predicted through the
DeSync classifier interface (so contact-based classifiers are measured the same way); (2) DeSync (desync.py
protocol through eval.av_models.load_offset_classifier) of the ground-truth audio and of shuffled audio (another
clip's, a seeded derangement). av: video -> audio retrieval recall@1/@10 among the manifest's clips (cosine of clip
embeddings, eval.av_models.load_av_embedding) and the IB-style score of true and shuffled pairs.
The manifest must hold the clips' video, audio (16 kHz wav) and durations; results are printed as JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def export(args) -> None:
    from foleyflow.checkpoint import checkpoint_config, read_metadata
    from foleyflow.config import from_dict
    from foleyflow.models.av_ssl import (SEMANTIC_KIND, SemanticAVConfig, SemanticAVModel, SyncAVConfig, SyncAVModel,
                                         load_semantic_model, load_sync_model, save_av_model)
    from foleyflow.train.state import load_train_state

    cfg_cls, model_cls, loader = ((SemanticAVConfig, SemanticAVModel, load_semantic_model) if args.kind == SEMANTIC_KIND
                                  else (SyncAVConfig, SyncAVModel, load_sync_model))
    meta = read_metadata(args.state)
    extra = {}
    if meta.get("foleyflow.kind", "").startswith("train_state/"):
        state, meta = load_train_state(args.state, kind=args.kind)
        train_cfg = checkpoint_config(meta)
        if "frame_input" in train_cfg:  # train_offset_classifier: the wrapper must transform frames the same way
            extra["frame_input"] = train_cfg["frame_input"]
        model = model_cls(from_dict(cfg_cls, train_cfg["model"]))
        sd = state["model"]
        if any(k.startswith("model.") for k in sd):  # train_offset_classifier: the model plus training-only probes
            sd = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
        model.load_state_dict(sd)
        step = int(state["step"])
    else:
        model, step = loader(args.state), None
        prov = json.loads(meta.get("foleyflow.provenance", "{}"))
        extra = {k: prov[k] for k in ("frame_input", "offset_method") if k in prov}
    prov = {"recipe": "eval_models export", "source": Path(args.state).name, "step": step, "data": args.note,
            "dtype": "float16", **extra}
    out = save_av_model(args.out, model.half(), provenance=prov)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({n / 1e6:.2f} M parameters, {out.stat().st_size / 1e6:.2f} MB)")


def _rows(manifest: str, limit: int | None):
    from foleyflow.data.av_clips import video_entries

    rows = video_entries(manifest)
    return rows[:limit] if limit else rows


def offset(args) -> dict:
    from foleyflow.data.av_clips import audio_window, frame_window, load_clip
    from foleyflow.eval.av_models import load_offset_classifier
    from foleyflow.eval.baselines import derangement
    from foleyflow.eval.desync import OFFSETS_S, WINDOW_S, clip_desync

    from foleyflow.train.sync_objective import SyncTrainConfig, sample_window

    clf = load_offset_classifier(args.model)
    model = clf.model
    mcfg = replace(model.cfg, window_s=WINDOW_S)  # DeSync's windows, whatever the training windows were
    cfg = SyncTrainConfig(model=mcfg)
    one_offset = [SyncTrainConfig(model=replace(mcfg, offsets_s=(o,))) for o in mcfg.offsets_s]
    to_desync = [int(np.argmin(np.abs(OFFSETS_S + o))) for o in mcfg.offsets_s]  # recipe class -> DeSync class
    size = clf.frame_size
    rows = _rows(args.manifest, args.limit)
    k_all = len(mcfg.offsets_s)
    labels, preds, true_d, shuf_d = [], [], [], []
    clips = [load_clip(r.video, r.audio, fps=cfg.data.fps, size=size, sample_rate=cfg.data.sample_rate)
             for r in rows]
    perm = derangement(len(clips), args.seed)
    t0 = time.time()
    for i, clip in enumerate(clips):
        rng = np.random.default_rng([args.seed, i])
        for k, o in enumerate(mcfg.offsets_s):  # one valid start per class, as the recipe draws them
            _, start = sample_window(clip.duration_s, one_offset[k], rng)
            f = frame_window(clip, start, WINDOW_S, cfg.data.fps).permute(0, 2, 3, 1).numpy()
            a = audio_window(clip, start + o, WINDOW_S).mean(0).numpy()
            preds.append(int(np.argmax(clf(f, a))))  # the classifier's DeSync class
            labels.append(to_desync[k])
        f = clip.frames.permute(0, 2, 3, 1).numpy()
        true_d.append(clip_desync(rows[i].id, f, clip.audio.mean(0).numpy(), clf).desync_s)
        other = clips[perm[i]].audio.mean(0).numpy()[: clip.audio.shape[-1]]
        shuf_d.append(clip_desync(rows[i].id, f, other, clf).desync_s)
    labels, preds = np.array(labels), np.array(preds)
    grid = OFFSETS_S
    zero = np.abs(grid[labels]) < 1e-6
    return {"model": str(args.model), "manifest": str(args.manifest), "clips": len(clips), "windows": len(labels),
            "offset_acc": float(np.mean(preds == labels)),
            "offset_acc_within_1": float(np.mean(np.abs(preds - labels) <= 1)),
            "offset_acc_in_sync_windows": float(np.mean(preds[zero] == labels[zero])),
            "abs_offset_error_s": float(np.mean(np.abs(grid[preds] - grid[labels]))),
            "chance_acc": 1.0 / k_all, "desync_true_s": float(np.mean(true_d)),
            "desync_shuffled_s": float(np.mean(shuf_d)), "seed": args.seed,
            "seconds": round(time.time() - t0, 1)}


def av(args) -> dict:
    from foleyflow.eval.audio_io import read_stereo
    from foleyflow.eval.av_models import load_av_embedding
    from foleyflow.eval.baselines import derangement

    rows = _rows(args.manifest, args.limit)
    t0 = time.time()
    folders = {Path(r.video).parent for r in rows}
    if len(folders) != 1:
        from foleyflow.errors import EvalError

        raise EvalError("the av measure needs every video of the manifest in one folder")
    video_embedding, audio_embedder = load_av_embedding(args.model, folders.pop())
    v = np.stack([video_embedding(Path(r.video).stem) for r in rows])
    a = np.stack([audio_embedder(*read_stereo(r.audio)) for r in rows])
    sim = v @ a.T
    rank = (sim > np.diag(sim)[:, None]).sum(1)  # audio clips scored above the true one, per video
    perm = derangement(len(rows), args.seed)
    return {"model": str(args.model), "manifest": str(args.manifest), "clips": len(rows),
            "recall_at_1": float(np.mean(rank < 1)), "recall_at_10": float(np.mean(rank < 10)),
            "median_rank": float(np.median(rank) + 1), "chance_recall_at_1": 1.0 / len(rows),
            "ib_score_true": float(100 * np.mean(np.diag(sim))),
            "ib_score_shuffled": float(100 * np.mean(sim[np.arange(len(rows)), perm])), "seed": args.seed,
            "seconds": round(time.time() - t0, 1)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="a training state or model file -> fp16 model file")
    e.add_argument("--kind", choices=("sync_av", "semantic_av"), required=True)
    e.add_argument("--state", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--note", default="", help="training data, recorded in the provenance")
    for name in ("offset", "av"):
        m = sub.add_parser(name)
        m.add_argument("--model", required=True)
        m.add_argument("--manifest", required=True)
        m.add_argument("--limit", type=int, default=None, help="first N clips only")
        m.add_argument("--seed", type=int, default=0)
        m.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.cmd == "export":
        return export(args)
    torch.set_num_threads(args.threads)
    print(json.dumps((offset if args.cmd == "offset" else av)(args), indent=1), flush=True)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
