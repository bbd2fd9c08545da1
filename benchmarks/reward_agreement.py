"""Does a reward model agree with its matching evaluation metric on generated audio? (issue 18: the Spearman
correlation of each reward with its evaluation metric on at least 200 generated `val` clips from at least 3
checkpoints.)

    nice -n 10 python benchmarks/reward_agreement.py --reward aesthetic --ckpt runs/reward_aesthetic/reward_aesthetic.safetensors \
        --sets eval/v2_val eval/mel_pilot/gen_val eval/pca96_pilot/gen_val [--json agreement.json]

aesthetic: the aesthetic reward's score (foleyflow.rewards.aesthetic, trained on `train`) against the evaluation
suite's quality predictor (the `quality` key of `foleyflow evaluate`, trained on `evaltrain`;
foleyflow/assets/eval/quality.safetensors, or --quality), clip by clip. Each --sets folder holds one checkpoint's
generated .wav files (as `foleyflow generate-set` writes them). Prints Spearman's rho over all clips pooled (the
checkpoints differ in quality, which the pooled figure rewards) and within each set (which clips of one checkpoint
are better), with 95% bootstrap intervals (clips resampled, seed 0), and the sets' mean scores side by side.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def spearman_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, resamples: int = 1000) -> tuple[float, float, float]:
    """Spearman's rho of paired scores and its 95% percentile bootstrap interval (pairs resampled)."""
    from scipy.stats import spearmanr

    rho = float(spearmanr(a, b).statistic)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        idx = rng.integers(0, len(a), len(a))
        r = spearmanr(a[idx], b[idx]).statistic
        if np.isfinite(r):
            draws.append(float(r))
    low, high = (np.percentile(draws, [2.5, 97.5]) if draws else (float("nan"), float("nan")))
    return rho, float(low), float(high)


def aesthetic_scores(ckpt: str, wavs: list[Path]) -> np.ndarray:
    import torch

    from foleyflow.audio import load_audio
    from foleyflow.rewards.aesthetic import load_aesthetic_reward

    model = load_aesthetic_reward(ckpt).eval()
    out = []
    with torch.no_grad():
        for w in wavs:
            x = load_audio(w, model.cfg.mel.sample_rate, channels=2)   # the reward's rate, stereo
            out.append(float(model.score(torch.from_numpy(np.ascontiguousarray(x))[None])[0]))
    return np.asarray(out)


def quality_scores(path: str, wavs: list[Path]) -> np.ndarray:
    from foleyflow.audio import load_audio
    from foleyflow.eval.quality import load_quality_scorer

    scorer = load_quality_scorer(path)
    out = []
    for w in wavs:
        out.append(scorer(load_audio(w, scorer.sample_rate, channels=2), scorer.sample_rate))
    return np.asarray(out)


def main(argv=None) -> int:
    from foleyflow.errors import FoleyError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reward", choices=["aesthetic"], required=True)
    ap.add_argument("--ckpt", required=True, help="the reward checkpoint")
    ap.add_argument("--sets", nargs="+", required=True, help="folders of generated .wav files, one per checkpoint")
    ap.add_argument("--quality", default=str(ROOT / "foleyflow/assets/eval/quality.safetensors"),
                    help="the evaluation suite's quality predictor")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from benchmarks.machine import cpu_summary

    rows, pooled_r, pooled_m = {}, [], []
    for folder in args.sets:
        wavs = sorted(Path(folder).glob("*.wav"))
        if not wavs:
            raise FoleyError(f"no .wav files in {folder}")
        r, m = aesthetic_scores(args.ckpt, wavs), quality_scores(args.quality, wavs)
        rho, lo, hi = spearman_ci(r, m)
        rows[folder] = {"clips": len(wavs), "spearman": rho, "ci95": [lo, hi], "reward_mean": float(r.mean()),
                        "metric_mean": float(m.mean())}
        pooled_r.append(r)
        pooled_m.append(m)
        print(f"{folder}: {len(wavs)} clips, reward mean {r.mean():.3f}, quality mean {m.mean():.2f}, "
              f"Spearman {rho:+.3f} [{lo:+.3f}, {hi:+.3f}]", flush=True)
    r, m = np.concatenate(pooled_r), np.concatenate(pooled_m)
    rho, lo, hi = spearman_ci(r, m)
    print(f"pooled: {len(r)} clips from {len(args.sets)} checkpoints, Spearman(aesthetic reward, evaluation quality) "
          f"{rho:+.3f} [{lo:+.3f}, {hi:+.3f}] ({cpu_summary()})")
    if args.json:
        from foleyflow.fileio import atomic_write_text
        atomic_write_text(args.json, json.dumps({"reward": args.reward, "ckpt": args.ckpt, "metric": "quality",
                                                 "sets": rows, "pooled": {"clips": len(r), "spearman": rho,
                                                                          "ci95": [lo, hi]}}, indent=1))
    return 0


if __name__ == "__main__":
    from foleyflow.errors import FoleyError

    try:
        sys.exit(main())
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
