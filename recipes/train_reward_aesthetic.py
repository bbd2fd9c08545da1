"""Trains the aesthetic reward (foleyflow.rewards.aesthetic.AestheticRewardModel) on FoleyWorld `train` only: random
crops, each left clean or degraded (foleyflow.rewards.degrade: noise, clipping, low-pass, smearing, mu-law codec, a
wrong room) at a random severity; regression of 1 - severity plus a pairwise ranking loss.

    nice -n 10 python recipes/train_reward_aesthetic.py --config configs/train_reward_aesthetic/default.yaml \
        --out runs/reward_aesthetic data.manifest=/data/foleyworld/manifest.jsonl

Writes into --out: config.yaml, checkpoints/state_<step>.safetensors (resumable), tb/, and
reward_aesthetic.safetensors (kind "reward_aesthetic", held-out `val` pair accuracy and Spearman in its provenance).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.config import config_to_json, load_config, save_config, to_dict
from foleyflow.rewards.aesthetic import KIND, AestheticRewardConfig, AestheticRewardModel, save_aesthetic_reward
from foleyflow.rewards.common import crop, crop_start_s, load_clips
from foleyflow.rewards.degrade import random_degradation
from foleyflow.train.state import resume_train_state, rng_state, save_train_state


@dataclass
class DataConfig:
    manifest: str | None = None
    split: str = "train"
    allow_other_split: bool = False  # tests only (never evaltrain)
    val_split: str | None = "val"
    limit: int = 0
    crop_s: float = 4.0
    p_clean: float = 0.25
    gain_db: float = 6.0


@dataclass
class TrainConfig:
    model: AestheticRewardConfig = field(default_factory=AestheticRewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 16
    steps: int = 1500
    log_every: int = 20
    save_every: int = 250
    seed: int = 0
    threads: int = 1


def batch(clips, cfg: TrainConfig, g: torch.Generator):
    """(audio (B, 2, N), severity (B,)): random crops at a random gain, each degraded by random_degradation."""
    audio, sev = [], []
    for i in torch.randint(len(clips), (cfg.batch_size,), generator=g).tolist():
        x = crop(clips[i].audio, crop_start_s(clips[i].duration_s, cfg.data.crop_s, g), cfg.data.crop_s)
        x = (x * 10 ** (cfg.data.gain_db * (2 * float(torch.rand((), generator=g)) - 1) / 20)).clamp(-1, 1)
        y, s, _ = random_degradation(x, g, cfg.data.p_clean)
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. steps=100 data.limit=50")
    args = ap.parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    clips = load_clips(cfg.data.manifest, cfg.data.split, limit=cfg.data.limit,
                       allow_other_split=cfg.data.allow_other_split)
    ckpt_dir = args.out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, args.out / "config.yaml")
    model = AestheticRewardModel(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, _ = resume_train_state(ckpt_dir, kind=KIND, module=model, optimizer=opt,
                                 model_config=json.loads(config_to_json(cfg))["model"])
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(args.out / "tb"))
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        out = model.loss(*batch(clips, cfg, g))
        opt.zero_grad(set_to_none=True)
        out["aesthetic/total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            for k, v in out.items():
                writer.add_scalar(k, float(v.detach()), step)
            print(f"step {step} " + " ".join(f"{k}={float(v.detach()):.4f}" for k, v in out.items()), flush=True)
        if step % cfg.save_every == 0 or step == cfg.steps:
            save_train_state(ckpt_dir / f"state_{step:08d}.safetensors", kind=KIND, config=config_to_json(cfg),
                             state={"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "rng": rng_state()}, provenance={"recipe": "train_reward_aesthetic", "step": step})
    writer.close()
    figures = {}
    if cfg.data.val_split:
        val = load_clips(cfg.data.manifest, cfg.data.val_split, allow_other_split=True)
        figures = {cfg.data.val_split: held_out(model, val, cfg)}
        print(json.dumps(figures), flush=True)
    save_aesthetic_reward(args.out / "reward_aesthetic.safetensors", model.eval(), provenance={
        "recipe": "recipes/train_reward_aesthetic.py", "steps": step, "seed": cfg.seed, "config": to_dict(cfg),
        "data": f"{cfg.data.manifest} split {cfg.data.split}", "clips": [c.id for c in clips], "figures": figures,
        "command": " ".join(sys.argv)})
    print(f"wrote {args.out / 'reward_aesthetic.safetensors'} after {step} steps", flush=True)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
