"""What a sync encoder trained with the contact head sees: visible contacts detected from video alone, scored against
FoleyWorld's ground truth (discrete, on-screen, audible events) on held-out clips.

    python benchmarks/quality_sync_contacts.py --model runs/sync_contacts/sync_av.safetensors \
        --manifest /data/foleyworld/manifest.jsonl --split test --clips 100 [--threads 2]

Each 8 s clip is encoded whole (overlapping 16-frame segments, as the generator's features are). Tokens that start
on the same frame (two overlapping segments) are averaged; a detection is a local maximum of the contact logit above
0, placed at the token's first frame (the first frame at or after the onset). Prints onset precision / recall / F1 at
25, 50 and 100 ms (micro-averaged over clips, the evaluation suite's matching) and the pan error of the detections
matched at 50 ms. A model without the head is a clear error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch


def detections(model, frames: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """frames (T, 3, H, W) uint8 at 25 fps -> (onset times in s, pans) detected from video alone."""
    from foleyflow.eval.contact_offset import contact_slots

    vc = model.cfg.visual
    logit, pan = contact_slots(model, frames[None])
    p = torch.cat([torch.tensor([-1e9]), logit, torch.tensor([-1e9])])
    k = ((p[1:-1] > 0) & (p[1:-1] >= p[:-2]) & (p[1:-1] > p[2:])).nonzero().flatten()
    return (k * vc.tubelet / vc.fps).numpy(), pan[k].clamp(-1, 1).numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--split", default=None, help="only rows of this split")
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from foleyflow.data.av_clips import load_clip, visible_onsets
    from foleyflow.manifest import read_manifest
    from foleyflow.eval.onsets import TOLERANCES_S, OnsetCounts, match_onsets, score_onsets
    from foleyflow.errors import FoleyError
    from foleyflow.models.av_ssl import load_sync_model

    try:
        model = load_sync_model(args.model)
        if not model.cfg.event_head:
            raise FoleyError(f"{args.model} has no contact head (trained without event_loss_weight)")
        rows = [r for r in read_manifest(args.manifest) if r.video and r.truth
                and (args.split is None or r.split == args.split)][:args.clips]
        if not rows:
            raise FoleyError(f"{args.manifest} has no clip with video and truth" +
                             (f" in split {args.split}" if args.split else ""))
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    totals = {t: OnsetCounts() for t in TOLERANCES_S}
    pan_err, t0 = [], time.time()
    for row in rows:
        clip = load_clip(row.video, row.audio, fps=model.cfg.visual.fps, size=model.cfg.visual.image_size)
        truth = visible_onsets(row.truth).numpy()
        times, pans = detections(model, clip.frames)
        span = (0.02, clip.duration_s - 0.02)
        scores = score_onsets(truth[:, 0], times, span_s=span)
        for t in TOLERANCES_S:
            c = scores.counts[float(t)]
            totals[t].tp += c.tp
            totals[t].fp += c.fp
            totals[t].fn += c.fn
        for i, j in match_onsets(truth[:, 0], times, 0.05):
            pan_err.append(abs(float(truth[i, 1]) - float(pans[j])))
    result = {"clips": len(rows), "seconds": round(time.time() - t0, 1)}
    for t, c in totals.items():
        result[f"onset_f1_{int(t * 1000)}ms"] = round(c.f1, 3)
        result[f"precision_{int(t * 1000)}ms"] = round(c.precision, 3)
        result[f"recall_{int(t * 1000)}ms"] = round(c.recall, 3)
    result["pan_mae_matched_50ms"] = round(float(np.mean(pan_err)), 3) if pan_err else None
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
