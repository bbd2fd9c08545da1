"""Trains the evaluation side's audio-quality predictor (foleyflow.models.eval_quality.QualityModel, the `quality` key
of `foleyflow evaluate`) on FoleyWorld's `evaltrain` split only, on the evaluation suite's own graded degradations
(foleyflow.eval.quality): a Huber loss between the predicted 1..10 score and the target 10 - 9 * severity.

    nice -n 10 python recipes/train_eval_quality.py --config configs/train_eval_quality/default.yaml \
        out_dir=runs/eval_quality data.manifest=PATH/TO/foleyworld/manifest.jsonl
    cp runs/eval_quality/quality.safetensors MODELS_DIR/    # then `foleyflow evaluate --models MODELS_DIR ...`
    (debug: --config configs/train_eval_quality/debug.yaml: two steps on synthetic clips in seconds)

The manifest's `split` field selects the clips: only `evaltrain` rows are read, and any other `data.split` is refused
(the reward models train on `train`; the judge must not share their data). The last `heldout_fraction` of the
evaltrain clips (by manifest order) are held out: never trained on, they give the held-out check at the end, the
Spearman correlation between predicted and true severity over seeded degradations of every kind (plus the clean clip)
of each held-out clip, overall and per kind, printed and written to heldout.json.
Run folder (foleyflow.train.run): config.yaml, checkpoints/state_<step>.safetensors (resumable: rerunning the same
command continues), tb/, metrics.jsonl, heldout.json, and quality.safetensors (kind "eval_quality", float32, with the
held-out figures, data and seed in its provenance).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foleyflow.config import load_config
from foleyflow.errors import ConfigError, FoleyError
from foleyflow.eval.quality import KINDS, degrade, quality_target, random_degradation, severity_from_score, spearman
from foleyflow.models.eval_quality import QUALITY_KIND, QualityModel, QualityModelConfig, save_quality_model
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import OptimConfig, Schedule, build_optimizer, lr_at, set_lr
from foleyflow.train.state import rng_state, set_rng_state

SPLIT = "evaltrain"


@dataclass
class DataConfig:
    manifest: str | None = None      # FoleyWorld manifest.jsonl; None -> synthetic clips (debug runs only)
    split: str = SPLIT               # the only split accepted
    limit: int = 0                   # use only the first N evaltrain clips (0 = all)
    heldout_fraction: float = 0.1    # last clips held out for the Spearman check (at least one)
    synthetic_clips: int = 0
    crop_s: float = 4.0
    gain_db: float = 12.0            # random attenuation 0..gain_db after degrading
    p_clean: float = 0.2             # share of undegraded crops (target 10)


@dataclass
class QualityOptimConfig(OptimConfig):  # warm-up, then cosine decay to 5%
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 2.0
    schedule: Schedule = "cosine"
    floor: float = 0.05


@dataclass
class TrainConfig:
    model: QualityModelConfig = field(default_factory=QualityModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: QualityOptimConfig = field(default_factory=QualityOptimConfig)
    out_dir: str = "runs/eval_quality"
    batch_size: int = 16
    steps: int = 2000
    log_every: int = 20
    ckpt_every: int = 250
    keep_states: int = 2
    heldout_severities: int = 3      # degraded versions per held-out clip and kind
    seed: int = 11                   # its own seed (the reward recipes use others)
    threads: int = 1


def check_split(cfg: TrainConfig) -> None:
    if cfg.data.split != SPLIT:
        raise ConfigError(f"the evaluation quality predictor trains on the {SPLIT} split only, not "
                          f"{cfg.data.split!r} (data.split)")


def synthetic_audio(n: int, duration_s: float, sample_rate: int, seed: int) -> list[np.ndarray]:
    """n stereo clips (2, N) of panned decaying noise bursts and tones over a quiet bed (debug runs)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    out = []
    for _ in range(n):
        x = 0.002 * rng.standard_normal((2, len(t)))
        for _ in range(int(rng.integers(2, 6))):
            on, pan = rng.uniform(0, duration_s - 0.2), rng.uniform(-1, 1)
            env = np.where(t >= on, np.exp(-(t - on) * rng.uniform(5, 30)), 0.0)
            src = env * (0.3 * np.sin(2 * np.pi * rng.uniform(150, 2000) * t) + 0.1 * rng.standard_normal(len(t)))
            x += np.stack([np.cos((pan + 1) * np.pi / 4), np.sin((pan + 1) * np.pi / 4)])[:, None] * src
        out.append(np.clip(x, -1, 1).astype(np.float32))
    return out


def load_clips(cfg: TrainConfig) -> tuple[list[str], np.ndarray, str]:
    """(clip ids, (num_clips, 2, num_samples) int16 audio at the model's rate, data description)."""
    sr = cfg.model.sample_rate
    if cfg.data.manifest is None:
        audio = synthetic_audio(max(2, cfg.data.synthetic_clips), 2.0, sr, cfg.seed)
        ids = [f"synthetic_{i:04d}" for i in range(len(audio))]
        data = f"synthetic bursts x{len(ids)} (seed {cfg.seed})"
    else:
        from foleyflow.audio import load_audio
        from foleyflow.manifest import read_manifest

        rows = [e for e in read_manifest(cfg.data.manifest, check_files=False) if e.split == SPLIT]
        rows = rows[: cfg.data.limit] if cfg.data.limit else rows
        if len(rows) < 2:
            raise FoleyError(f"manifest {cfg.data.manifest} has {len(rows)} clips of split '{SPLIT}' (need 2 or more)")
        if any(not e.audio for e in rows):
            raise FoleyError(f"every {SPLIT} clip of {cfg.data.manifest} needs 'audio'")
        it = rows
        if sys.stderr.isatty():
            from tqdm import tqdm
            it = tqdm(rows, desc="audio", unit="clip")
        audio = [load_audio(e.audio, sr, channels=2) for e in it]
        ids = [e.id for e in rows]
        data = f"{cfg.data.manifest} split {SPLIT}"
    n = max(a.shape[-1] for a in audio)
    out = np.zeros((len(audio), 2, n), np.int16)
    for i, a in enumerate(audio):
        out[i, :, : a.shape[-1]] = np.round(np.clip(a, -1, 1) * 32767).astype(np.int16)
    return ids, out, data


def as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 32767.0


def make_batch(audio: np.ndarray, train_idx: np.ndarray, cfg: TrainConfig, rng: np.random.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(audio (B, 2, crop samples), targets (B,) in 1..10, kinds) from random crops of training clips."""
    sr = cfg.model.sample_rate
    crop = min(int(round(cfg.data.crop_s * sr)), audio.shape[-1])
    xs, ys, kinds = [], [], []
    for c in rng.choice(train_idx, size=cfg.batch_size):
        s = int(rng.integers(0, audio.shape[-1] - crop + 1))
        x = as_float(audio[int(c), :, s: s + crop])
        y, kind, sev = random_degradation(x, rng, p_clean=cfg.data.p_clean, sample_rate=sr)
        y = y * 10 ** (-rng.uniform(0, cfg.data.gain_db) / 20)
        xs.append(np.clip(y, -1, 1))
        ys.append(quality_target(sev))
        kinds.append(kind)
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.float32), kinds


def _finite(v: float) -> float | None:
    return v if np.isfinite(v) else None  # a constant prediction has no rank correlation (JSON has no NaN)


@torch.no_grad()
def heldout_check(model: QualityModel, audio: np.ndarray, held_idx: np.ndarray, cfg: TrainConfig) -> dict:
    """Spearman(predicted severity, true severity) on seeded degradations of the held-out clips (whole clips): each
    clip clean and, for every kind, `heldout_severities` severities drawn uniformly (seed cfg.seed + 1)."""
    model.eval()
    sr = cfg.model.sample_rate
    true, pred, kinds = [], [], []
    for j, c in enumerate(held_idx):
        x = as_float(audio[int(c)])
        versions = [("clean", 0.0, x)]
        for k, kind in enumerate(KINDS):
            for r in range(cfg.heldout_severities):
                rng = np.random.default_rng([cfg.seed + 1, j, k, r])
                s = float(rng.uniform(0, 1))
                versions.append((kind, s, degrade(x, kind, s, rng, sr)))
        batch = torch.from_numpy(np.clip(np.stack([v[2] for v in versions]), -1, 1))
        scores = torch.cat([model(batch[i: i + 8]) for i in range(0, len(batch), 8)]).numpy()
        true += [v[1] for v in versions]
        kinds += [v[0] for v in versions]
        pred += list(severity_from_score(scores))
    model.train()
    true, pred, kinds = np.array(true), np.array(pred), np.array(kinds)
    per_kind = {k: _finite(spearman(pred[(kinds == k) | (kinds == "clean")], true[(kinds == k) | (kinds == "clean")]))
                for k in KINDS}
    clean = pred[kinds == "clean"]
    return {"spearman": _finite(spearman(pred, true)), "spearman_by_kind": per_kind, "clips": len(held_idx),
            "versions": len(true), "mean_abs_severity_error": float(np.mean(np.abs(pred - true))),
            "clean_mean_score": float(np.mean(10 - 9 * clean)) if len(clean) else None}


def main(argv=None) -> None:
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    check_split(cfg)
    if not 0 < cfg.data.heldout_fraction < 1:
        raise ConfigError(f"data.heldout_fraction must be in (0, 1), got {cfg.data.heldout_fraction}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    lock = lock_run(out)  # a second trainer on this folder stops here
    model = QualityModel(cfg.model)
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = 0
    state, latest = resume_state(out, kind=QUALITY_KIND, config=cfg, defaults=TrainConfig())
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        print(f"resumed from {latest.name} at step {step}", flush=True)
    write_config(out, cfg)
    ids, audio, data = load_clips(cfg)
    held = max(1, int(round(cfg.data.heldout_fraction * len(ids))))
    train_idx, held_idx = np.arange(len(ids) - held), np.arange(len(ids) - held, len(ids))
    print(f"{len(train_idx)} {SPLIT} clips to train on, {len(held_idx)} held out; audio {audio.nbytes / 1e6:.0f} MB",
          flush=True)

    from tqdm import tqdm

    log = MetricLog(out)
    bar = tqdm(total=cfg.steps, initial=step, desc="eval quality", dynamic_ncols=True, disable=not sys.stderr.isatty())
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])   # data depends only on (seed, step)
        x, target, _ = make_batch(audio, train_idx, cfg, rng)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        score = model(x)
        loss = F.huber_loss(score, target, delta=1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(huber=f"{loss.item():.3f}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.log(step, {"loss/quality_huber": loss.item(),
                           "train/abs_error": float((score.detach() - target).abs().mean()),
                           "train/grad_norm": float(grad_norm), "train/lr": opt.param_groups[0]["lr"]})
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_state(out, step, kind=QUALITY_KIND, config=cfg, keep=cfg.keep_states,
                       state={"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                              "rng": rng_state()},
                       provenance={"recipe": "train_eval_quality", "step": step})
    bar.close()
    figures = heldout_check(model, audio, held_idx, cfg)
    figures.update(step=step, heldout_ids=[ids[int(i)] for i in held_idx])
    from foleyflow.fileio import atomic_write_text

    atomic_write_text(out / "heldout.json", json.dumps(figures, indent=1) + "\n")
    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    print(f"held-out Spearman(predicted, true severity) = {fmt(figures['spearman'])} over {figures['versions']} "
          f"versions of {figures['clips']} held-out {SPLIT} clips; by kind: "
          + ", ".join(f"{k} {fmt(v)}" for k, v in figures["spearman_by_kind"].items()), flush=True)
    log.text("heldout", json.dumps(figures), step)
    log.close()
    save_quality_model(out / "quality.safetensors", model.eval(),
                       {"recipe": "recipes/train_eval_quality.py", "steps": step, "seed": cfg.seed, "data": data,
                        "split": SPLIT, "train_clips": len(train_idx), "heldout": {k: figures[k] for k in (
                            "spearman", "spearman_by_kind", "clips", "versions")}, "command": " ".join(sys.argv)})
    print(f"wrote {out / 'quality.safetensors'} after {step} steps", flush=True)
    release_run(lock)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
