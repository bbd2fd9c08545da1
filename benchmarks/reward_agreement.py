"""Does a reward model agree with its matching evaluation metric on generated audio? (issue 18: the Spearman
correlation of each reward with its evaluation metric on at least 200 generated `val` clips from at least 3
checkpoints.)

    S="--sets eval/v2_val eval/mel_pilot/gen_val eval/pca96_pilot/gen_val"; D=/data/foleyworld
    nice -n 10 python benchmarks/reward_agreement.py --reward aesthetic \
        --ckpt runs/reward_aesthetic/reward_aesthetic.safetensors $S
    nice -n 10 python benchmarks/reward_agreement.py --reward semantic \
        --ckpt runs/reward_semantic/reward_semantic.safetensors $S --manifest $D/manifest.jsonl
    nice -n 10 python benchmarks/reward_agreement.py --reward temporal \
        --ckpt runs/reward_temporal/reward_temporal.safetensors $S --truth $D/val --contacts truth --desync
    nice -n 10 python benchmarks/reward_agreement.py --reward spatial \
        --ckpt runs/reward_spatial/reward_spatial.safetensors $S --truth $D/val --contacts truth
    (each also takes --json agreement.json; the video variant of the last two:
     --contacts video --sync runs/sync_contacts/sync_av.safetensors)

Each --sets folder holds one checkpoint's generated `<clip id>.wav` files (as `foleyflow generate-set` writes them).
Clip by clip, the reward's score (foleyflow.rewards, trained on `train`, audio read at 16 kHz stereo) is set against
the evaluation suite's per-clip value of the matching `foleyflow evaluate` key, computed by the suite's own functions
on the audio as `foleyflow evaluate` reads it:
- aesthetic vs `quality`: the evaluation quality predictor (trained on `evaltrain`; --quality).
- semantic vs `clap_score`: the evaluation CLAP model of --eval-models (clap.safetensors) on the clip's caption from
  --manifest (`foleyflow evaluate --text MANIFEST`; the sets were generated with `--text caption`), per clip the
  cosine that clap_score averages (eval.desync.text_audio_similarities). The reward reads what GRPO gives it
  (recipes/train_grpo.py: the manifest's CoT, else the caption; the reward uses the CoT's Semantic part, the text
  it was trained on), or the caption with --reward-text caption; its text vectors are MiniLM's, or hashed words when
  its checkpoint was trained on those.
- temporal vs `onset_f1@50ms`: the evaluation onset detector against the clip's ground truth (--truth folder of
  `<id>.json`, `foleyflow evaluate --truth`), F1 of the clip's own counts (eval.truth.score_clip; the set figure
  sums counts over clips before F1). With --desync also vs `desync_s` (the offset classifier of --eval-models on
  --video, eval.desync.clip_desync; clips under 4.8 s have none).
- spatial vs `pan_error`: the clip's mean absolute pan error over its scored events (score_clip, with the events
  attributable in the reference audio of --reference, as `foleyflow evaluate` does; its set mean over clips is the
  report's `pan_error_clip_mean`). Clips without a scored event are left out of the correlation.
pan_error and desync_s are errors (lower is better): a reward that agrees with them has a NEGATIVE rho; printed as is.
The temporal reward's contacts and the spatial reward's visual pan track come from the video by default
(--contacts video: foleyflow.rewards.video, the sync encoder's contact head given by --sync, the variant GRPO can use
at inference; it needs a whole sync_av checkpoint with its contact head, and the default bundle ships only the visual
tower) or from the ground truth (--contacts truth: rewards.common.truth_contacts / truth_pan_track, what GRPO uses on
`train`).
Prints Spearman's rho over all clips pooled (the checkpoints differ in quality, which the pooled figure rewards) and
within each set (which clips of one checkpoint are better), with 95% bootstrap intervals (clips resampled, seed 0),
and the sets' mean scores side by side; rho is NaN (null in --json) for fewer than 3 clips or a constant side.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRIC = {"aesthetic": "quality", "semantic": "clap_score", "temporal": "onset_f1@50ms", "spatial": "pan_error"}
LOWER_IS_BETTER = ("pan_error", "desync_s")
NAN3 = (float("nan"),) * 3


def average_ranks(x: np.ndarray) -> np.ndarray:
    """(n,) -> (n,) ranks 1..n, tied values sharing their average rank (as scipy's rankdata)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]]
    starts = np.flatnonzero(first)
    counts = np.diff(np.r_[starts, len(x)])
    ranks = np.empty(len(x))
    ranks[order] = (starts + (counts + 1) / 2)[np.cumsum(first) - 1]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (Pearson correlation of average ranks); NaN when either side is constant."""
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / den) if den > 0 else float("nan")


def spearman_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, resamples: int = 1000) -> tuple[float, float, float]:
    """Spearman's rho of paired scores and its 95% percentile bootstrap interval (pairs resampled, resamples with
    a constant side dropped); all NaN for fewer than 3 pairs or a constant side."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return NAN3
    rng = np.random.default_rng(seed)
    draws = [spearman(a[idx], b[idx]) for idx in rng.integers(0, len(a), (resamples, len(a)))]
    draws = [d for d in draws if np.isfinite(d)]
    low, high = (np.percentile(draws, [2.5, 97.5]) if draws else (float("nan"), float("nan")))
    return spearman(a, b), float(low), float(high)


# ------------------------------------------------------------------------------------------------ reward side
def reward_scorer(args):
    """score(name, wav path) -> float: the reward of --ckpt on the clip, with its conditions (see the docstring)."""
    from importlib import import_module

    import torch

    from foleyflow.audio import load_audio
    from foleyflow.rewards.common import SAMPLE_RATE

    kind = args.reward
    mod = import_module(f"foleyflow.rewards.{kind}")
    model = getattr(mod, f"load_{kind}_reward")(args.ckpt).eval()
    def no_conditions(name: str, duration_s: float):  # the aesthetic reward needs no reference
        return None

    if kind == "aesthetic":
        conditions = no_conditions
    elif kind == "semantic":
        conditions = semantic_conditions(model, args)
    else:
        conditions = video_or_truth(args, "contacts" if kind == "temporal" else "pan")

    def score(name: str, path: Path) -> float:
        x = torch.from_numpy(np.ascontiguousarray(load_audio(path, SAMPLE_RATE, channels=2)))[None]
        with torch.no_grad():
            return float(model.score(x, conditions(name, x.shape[-1] / SAMPLE_RATE))[0])
    return score


def semantic_conditions(model, args):
    """conditions(name, duration_s) -> RewardConditions(text_features (1, 384)) of the clip's manifest text."""
    from foleyflow.errors import FoleyError
    from foleyflow.manifest import read_manifest
    from foleyflow.rewards.common import RewardConditions
    from foleyflow.rewards.semantic import hashed_text_features, text_features

    if not args.manifest:
        raise FoleyError("--reward semantic needs --manifest (the clips' captions and chains of thought)")
    rows = {e.id: e for e in read_manifest(args.manifest)}
    data = (getattr(model, "identity", {}).get("provenance") or {}).get("config", {}).get("data", {})
    vectors: dict = {}  # text -> (1, 384)
    minilm: list = []

    def encode(text: str):  # as recipes/train_grpo.py reward_texts_encoder: the encoder the reward was trained with
        if text not in vectors:
            if data.get("text_encoder") == "hashed":
                vectors[text] = hashed_text_features([text])
            else:
                if not minilm:
                    from foleyflow.models.text_encoder import TextEncoderConfig, load_text_encoder
                    minilm.append(load_text_encoder(TextEncoderConfig(overflow="truncate")))
                vectors[text] = text_features([text], minilm[0])
        return vectors[text]

    def conditions(name: str, duration_s: float):
        if name not in rows:
            raise FoleyError(f"clip {name} is not in {args.manifest}")
        e = rows[name]
        text = (e.cot or e.caption or "") if args.reward_text == "cot" else (e.caption or "")
        return RewardConditions(text_features=encode(text))
    return conditions


def video_or_truth(args, what: str):
    """conditions(name, duration_s) -> RewardConditions with the contact track (1, Tc, 2) at 25 fps (what =
    "contacts") or the visual pan track and mask (1, F) at 10 fps (what = "pan"), from the video (cached per clip)
    or the ground truth."""
    from foleyflow.errors import FoleyError
    from foleyflow.rewards.common import CONTACT_FPS, RewardConditions, truth_contacts, truth_pan_track

    if not args.truth:
        raise FoleyError(f"--reward {args.reward} needs --truth (the clips' ground truth, for the evaluation metric)")
    cache: dict = {}
    if args.contacts == "video":
        from foleyflow.conditioning import decode_window, sync_frame_count
        from foleyflow.rewards.video import contacts_from_video, load_contact_model, pan_track_from_contacts

        try:
            sync = load_contact_model(args.sync)
        except FoleyError as e:
            raise FoleyError(f"--contacts video needs a whole sync_av checkpoint with its contact head (--sync; {e}); "
                             "or use --contacts truth") from None

        def track(name: str, duration_s: float):
            key = (name, round(duration_s * CONTACT_FPS))
            if key not in cache:
                video = Path(args.video or args.truth) / f"{name}.mp4"
                n = sync_frame_count(duration_s, sync.visual.fps)
                cache[key] = contacts_from_video(sync, decode_window(video, sync.visual, 0.0, duration_s, n))
            c = cache[key]
            if what == "contacts":
                return RewardConditions(contacts=c)
            pan, mask = pan_track_from_contacts(c, duration_s)
            return RewardConditions(pan_track=pan, pan_mask=mask)
        return track

    def truth(name: str, duration_s: float):
        if name not in cache:
            path = Path(args.truth) / f"{name}.json"
            try:
                cache[name] = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise FoleyError(f"cannot read the ground truth {path}: {e}") from None
        t = cache[name]
        if what == "contacts":
            return RewardConditions(contacts=truth_contacts(t, duration_s)[None])
        pan, mask = truth_pan_track(t, duration_s)
        return RewardConditions(pan_track=pan[None], pan_mask=mask[None])
    return truth


# ------------------------------------------------------------------------------------------------ evaluation side
def metric_scorers(args) -> dict:
    """{metric name: value(name, wav path) -> float (NaN where the clip has none)}: the primary metric first."""
    from foleyflow.errors import FoleyError

    metric = METRIC[args.reward]
    if metric == "quality":
        return {metric: quality_scorer(args.quality)}
    if metric == "clap_score":
        if not args.manifest:
            raise FoleyError("--reward semantic needs --manifest (the captions clap_score reads, as --text)")
        return {metric: clap_scorer(args.eval_models, args.manifest)}
    out = {metric: truth_scorer(args, metric)}
    if args.desync:
        out["desync_s"] = desync_scorer(args.eval_models, args.video or args.truth)
    return out


def quality_scorer(path: str):
    from foleyflow.audio import load_audio
    from foleyflow.eval.quality import load_quality_scorer

    scorer = load_quality_scorer(path)
    return lambda name, wav: scorer(load_audio(wav, scorer.sample_rate, channels=2), scorer.sample_rate)


def clap_scorer(models_dir: str, manifest: str):
    from foleyflow.errors import FoleyError
    from foleyflow.eval.audio_io import read_stereo
    from foleyflow.eval.desync import text_audio_similarities
    from foleyflow.eval.models import load_eval_models

    models = load_eval_models(models_dir, text_file=manifest)
    if not models.clap:
        raise FoleyError(f"clap_score needs the evaluation CLAP model: {models.skipped.get('clap', 'not loaded')}")

    def value(name: str, wav: Path) -> float:
        audio, sr = read_stereo(wav)
        return float(text_audio_similarities(models.text_embedding(name)[None],
                                             models.text_audio_embedder(audio, sr)[None])[0])
    return value


def truth_scorer(args, metric: str):
    """The clip's `onset_f1@50ms` or `pan_error` from eval.truth.score_clip (pan: events chosen on the reference)."""
    from foleyflow.eval.audio_io import read_stereo
    from foleyflow.eval.truth import reference_pan_info, score_clip
    from foleyflow.events import read_events

    events, pan_ref = {}, {}

    def value(name: str, wav: Path) -> float:
        if name not in events:
            events[name] = read_events(Path(args.truth) / f"{name}.json")
            if metric == "pan_error":
                pan_ref[name] = reference_pan_info(*read_stereo(Path(args.reference or args.truth) / f"{name}.wav"),
                                                   events[name])
        audio, sr = read_stereo(wav)
        v = score_clip(name, audio, sr, events[name], pan_reference=pan_ref.get(name)).to_json()[metric]
        return float("nan") if v is None else float(v)
    return value


def desync_scorer(models_dir: str, video_dir: str):
    from foleyflow.audio import resample
    from foleyflow.errors import FoleyError
    from foleyflow.eval.audio_io import read_stereo
    from foleyflow.eval.desync import WINDOW_S, clip_desync
    from foleyflow.eval.models import load_eval_models

    models = load_eval_models(models_dir, video_dir=video_dir)
    if not models.desync:
        raise FoleyError(f"desync_s needs the evaluation offset classifier: {models.skipped.get('offset', '?')}")
    clf = models.offset_classifier

    def value(name: str, wav: Path) -> float:  # as eval.run: clips shorter than one 4.8 s window have none
        audio, sr = read_stereo(wav)
        if audio.shape[-1] < WINDOW_S * sr - 1:
            return float("nan")
        return clip_desync(name, models.video_frames(name), resample(audio, sr, clf.sample_rate, dtype=None),
                           clf).desync_s
    return value


# ------------------------------------------------------------------------------------------------ report
def _finite(x):
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def agreement(r: np.ndarray, m: np.ndarray, resamples: int = 1000) -> dict:
    """Spearman agreement of per-clip rewards (N,) and metric values (N,) over the clips where both are finite."""
    ok = np.isfinite(r) & np.isfinite(m)
    rho, lo, hi = spearman_ci(r[ok], m[ok], resamples=resamples)
    return {"clips": len(r), "pairs": int(ok.sum()), "spearman": rho, "ci95": [lo, hi],
            "reward_mean": float(np.nanmean(r)) if np.isfinite(r).any() else float("nan"),
            "metric_mean": float(np.nanmean(m)) if np.isfinite(m).any() else float("nan")}


def main(argv=None) -> int:
    import torch

    from foleyflow.errors import FoleyError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reward", choices=list(METRIC), required=True)
    ap.add_argument("--ckpt", required=True, help="the reward checkpoint")
    ap.add_argument("--sets", nargs="+", required=True, help="folders of generated .wav files, one per checkpoint")
    ap.add_argument("--quality", default=str(ROOT / "foleyflow/assets/eval/quality.safetensors"),
                    help="the evaluation suite's quality predictor (aesthetic)")
    ap.add_argument("--eval-models", default=str(ROOT / "foleyflow/assets/eval"),
                    help="evaluation models folder (clap.safetensors: semantic; offset.safetensors: --desync)")
    ap.add_argument("--manifest", help="manifest with the clips' captions and CoTs (semantic)")
    ap.add_argument("--reward-text", choices=["cot", "caption"], default="cot",
                    help="the semantic reward's text: the CoT (its Semantic part; else the caption), as GRPO gives it")
    ap.add_argument("--truth", help="folder of <id>.json ground truth (temporal, spatial); default of --video, "
                                    "--reference")
    ap.add_argument("--video", help="folder of <id>.mp4 videos (--contacts video, --desync); default: --truth")
    ap.add_argument("--reference", help="folder of reference <id>.wav (pan_error's events); default: --truth")
    ap.add_argument("--contacts", choices=["video", "truth"], default="video",
                    help="temporal contacts / spatial pan track: from the video (--sync) or the ground truth")
    ap.add_argument("--sync", default=str(ROOT / "foleyflow/assets/default/sync_av.safetensors"),
                    help="sync_av checkpoint with its contact head (--contacts video)")
    ap.add_argument("--desync", action="store_true", help="temporal: also the agreement with per-clip desync_s")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of each interval")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from benchmarks.machine import cpu_summary

    torch.set_num_threads(args.threads)
    metrics = metric_scorers(args)
    reward = reward_scorer(args)
    rows: dict = {name: {} for name in metrics}
    pooled_r, pooled_m = [], {name: [] for name in metrics}
    for folder in args.sets:
        wavs = sorted(Path(folder).glob("*.wav"))
        if not wavs:
            raise FoleyError(f"no .wav files in {folder}")
        r = np.array([reward(w.stem, w) for w in wavs])
        pooled_r.append(r)
        for metric, fn in metrics.items():
            m = np.array([fn(w.stem, w) for w in wavs], np.float64)
            pooled_m[metric].append(m)
            row = agreement(r, m, args.resamples)
            row["per_clip"] = {w.stem: [a, b] for w, a, b in zip(wavs, r.tolist(), m.tolist())}
            rows[metric][folder] = row
            scored = "" if row["pairs"] == len(wavs) else f" ({row['pairs']} with a {metric})"
            lo, hi = row["ci95"]
            print(f"{folder}: {len(wavs)} clips{scored}, reward mean {row['reward_mean']:.3f}, {metric} mean "
                  f"{row['metric_mean']:.2f}, Spearman {row['spearman']:+.3f} [{lo:+.3f}, {hi:+.3f}]", flush=True)
    report = {"reward": args.reward, "ckpt": args.ckpt, "metric": METRIC[args.reward],
              "settings": {k: getattr(args, k) for k in ("contacts", "sync", "reward_text", "manifest", "truth",
                                                         "video", "reference", "eval_models", "quality")}}
    r = np.concatenate(pooled_r)
    for metric in metrics:
        pooled = agreement(r, np.concatenate(pooled_m[metric]), args.resamples)
        del pooled["reward_mean"], pooled["metric_mean"]
        lo, hi = pooled["ci95"]
        sign = " (an error: agreement is a negative rho)" if metric in LOWER_IS_BETTER else ""
        scored = "" if pooled["pairs"] == len(r) else f" ({pooled['pairs']} with a {metric})"
        print(f"pooled: {len(r)} clips{scored} from {len(args.sets)} checkpoints, Spearman({args.reward} reward, "
              f"evaluation {metric}) {pooled['spearman']:+.3f} [{lo:+.3f}, {hi:+.3f}]{sign} ({cpu_summary()})")
        if metric == METRIC[args.reward]:
            report.update(sets=rows[metric], pooled=pooled)
        else:
            report.setdefault("secondary", {})[metric] = {"sets": rows[metric], "pooled": pooled}
    if args.json:
        from foleyflow.fileio import atomic_write_text
        atomic_write_text(args.json, json.dumps(_finite(report), indent=1))
    return 0


if __name__ == "__main__":
    from foleyflow.errors import run_main

    run_main(main)
