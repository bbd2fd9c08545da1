"""Trains the aesthetic reward (foleyflow.rewards.aesthetic.AestheticRewardModel) on FoleyWorld `train` only: random
crops, each left clean or degraded (foleyflow.rewards.degrade: noise, clipping, low-pass, smearing, mu-law codec, a
wrong room, decays cut short, timbre flattened into noise; `data.kinds` picks them) at a random severity; regression of
1 - severity plus a pairwise ranking loss. The reward models of sessions 9-14 used the first six
(`data.kinds=[noise,clip,lowpass,smear,codec,reverb]`, foleyflow.rewards.degrade.KINDS_V1).

    nice -n 10 python recipes/train_reward_aesthetic.py --config configs/train_reward_aesthetic/default.yaml \
        out_dir=runs/reward_aesthetic data.manifest=/data/foleyworld/manifest.jsonl

Writes into out_dir (the run folder of every recipe, foleyflow.train.run): config.yaml,
checkpoints/state_<step>.safetensors (resumable, the newest keep_states kept), tb/, metrics.jsonl and
reward_aesthetic.safetensors (kind "reward_aesthetic", held-out `val` pair accuracy and Spearman in its provenance).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.config import load_config
from foleyflow.rewards.aesthetic import KIND, AestheticRewardConfig, AestheticRewardModel, save_aesthetic_reward
from foleyflow.rewards.common import (RewardDataConfig, RewardError, RewardTrainConfig, batch_generator, crop,
                                      crop_start_s, log_losses, recipe_clips, resume_reward, reward_provenance,
                                      save_reward_state)
from foleyflow.rewards.degrade import KINDS, random_degradation
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, write_config
from foleyflow.train.schedule import build_optimizer, lr_at, set_lr


@dataclass
class DataConfig(RewardDataConfig):
    crop_s: float = 4.0
    p_clean: float = 0.25
    gain_db: float = 6.0
    kinds: list[str] = field(default_factory=lambda: list(KINDS))   # the degradations drawn from


@dataclass
class TrainConfig(RewardTrainConfig):
    model: AestheticRewardConfig = field(default_factory=AestheticRewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out_dir: str = "runs/reward_aesthetic"


def batch(clips, cfg: TrainConfig, g: torch.Generator):
    """(audio (B, 2, N), severity (B,)): random crops at a random gain, each degraded by random_degradation."""
    audio, sev = [], []
    for i in torch.randint(len(clips), (cfg.batch_size,), generator=g).tolist():
        x = crop(clips[i].audio, crop_start_s(clips[i].duration_s, cfg.data.crop_s, g), cfg.data.crop_s)
        x = (x * 10 ** (cfg.data.gain_db * (2 * float(torch.rand((), generator=g)) - 1) / 20)).clamp(-1, 1)
        y, s, _ = random_degradation(x, g, cfg.data.p_clean, cfg.data.kinds)
        audio.append(y)
        sev.append(s)
    return torch.stack(audio), torch.tensor(sev)


@torch.no_grad()
def held_out(model, clips, cfg: TrainConfig, batches: int = 4) -> dict:
    """Pair ranking accuracy and the Spearman correlation of quality with -severity on fixed degraded draws."""
    model.eval()
    q, s, acc = [], [], []
    for b in range(batches):
        audio, sev = batch(clips, cfg, torch.Generator().manual_seed(10_000 + b))
        acc.append(float(model.loss(audio, sev)["aesthetic/pair_acc"]))
        q.append(model.score(audio))
        s.append(sev)
    model.train()
    q, s = torch.cat(q), torch.cat(s)
    rank = lambda v: v.argsort().argsort().float()  # noqa: E731 (ties are rare: continuous severities)
    rho = float(torch.corrcoef(torch.stack([rank(q), rank(-s)]))[0, 1])
    return {"pair_acc": sum(acc) / len(acc), "spearman": rho, "clips": len(clips)}


def main(argv=None) -> None:
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    unknown = [k for k in cfg.data.kinds if k not in KINDS]
    if unknown or not cfg.data.kinds:
        raise RewardError(f"data.kinds: unknown degradation {unknown[0]!r} (known: {', '.join(KINDS)})" if unknown
                          else "data.kinds: name at least one degradation")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.out_dir)
    lock = lock_run(run_dir)  # a second trainer on this folder stops here
    clips = recipe_clips(cfg.data)
    model = AestheticRewardModel(cfg.model)
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = resume_reward(run_dir, KIND, cfg, model, opt, defaults=TrainConfig())
    write_config(run_dir, cfg)
    log = MetricLog(run_dir)
    while step < cfg.steps:
        g = batch_generator(cfg.seed, step)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        out = model.loss(*batch(clips, cfg, g))
        opt.zero_grad(set_to_none=True)
        out["aesthetic/total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            log_losses(log, step, out, grad_norm, opt)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_reward_state(run_dir, step, KIND, cfg, model, opt, "aesthetic")
    log.close()
    figures = {}
    if cfg.data.val_split:
        val = recipe_clips(cfg.data, cfg.data.val_split)  # held out, never trained on
        figures = {cfg.data.val_split: held_out(model, val, cfg)}
        print(json.dumps(figures), flush=True)
    save_aesthetic_reward(run_dir / "reward_aesthetic.safetensors", model.eval(), provenance=reward_provenance(
        "aesthetic", cfg, step, clips, figures))
    print(f"wrote {run_dir / 'reward_aesthetic.safetensors'} after {step} steps", flush=True)
    release_run(lock)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
