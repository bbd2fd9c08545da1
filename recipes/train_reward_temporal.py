"""Trains the temporal reward (foleyflow.rewards.temporal.TemporalRewardModel) on FoleyWorld `train` only: for each
window, the aligned audio against K copies read 0.1..2 s earlier or later, given the ground-truth contact track (made
noisy like the sync encoder's contact head: soft probabilities, a frame of jitter, missed and spurious contacts).

    nice -n 10 python recipes/train_reward_temporal.py --config configs/train_reward_temporal/default.yaml \
        --out runs/reward_temporal data.manifest=/data/foleyworld/manifest.jsonl

Writes into --out: config.yaml, checkpoints/state_<step>.safetensors (resumable), tb/, and reward_temporal.safetensors
(kind "reward_temporal", held-out `val` accuracy of picking the aligned window in its provenance).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.config import config_to_json, load_config, save_config, to_dict
from foleyflow.rewards.common import CONTACT_FPS, load_clips, truth_contacts
from foleyflow.rewards.temporal import (KIND, TemporalRewardConfig, TemporalRewardModel, contact_window,
                                        sample_shifts, save_temporal_reward, shifted_windows)
from foleyflow.train.state import resume_train_state, rng_state, save_train_state


@dataclass
class DataConfig:
    manifest: str | None = None
    split: str = "train"
    allow_other_split: bool = False  # tests only (never evaltrain)
    val_split: str | None = "val"
    limit: int = 0
    window_s: float = 4.0
    negatives: int = 4
    contact_noise: float = 0.3  # 0 = exact truth; p of a missed contact, max spurious contacts per second / 2


@dataclass
class TrainConfig:
    model: TemporalRewardConfig = field(default_factory=TemporalRewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 16
    steps: int = 1500
    log_every: int = 20
    save_every: int = 250
    seed: int = 0
    threads: int = 1


def noisy(track: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """(T, 2) exact contact track -> a detector-like one: probabilities 0.5..1, +-1 frame jitter, each contact missed
    with probability p/2, spurious contacts of probability 0.2..0.7 at rate p per second."""
    if p <= 0:
        return track
    out = torch.zeros_like(track)
    for i in torch.nonzero(track[:, 0] > 0)[:, 0].tolist():
        if torch.rand((), generator=g) < p / 2:
            continue
        j = min(max(i + int(torch.randint(-1, 2, (), generator=g)), 0), len(track) - 1)
        out[j] = torch.stack([0.5 + 0.5 * torch.rand((), generator=g), track[i, 1]])
    for _ in range(int(torch.poisson(torch.tensor(p * len(track) / CONTACT_FPS), generator=g))):
        j = int(torch.randint(len(track), (), generator=g))
        out[j] = torch.stack([0.2 + 0.5 * torch.rand((), generator=g), 2 * torch.rand((), generator=g) - 1])
    return out


def batch(clips, tracks, cfg: TrainConfig, g: torch.Generator, noise: float):
    """(candidates (B, K + 1, 2, N), contacts (B, round(window_s * 25), 2))."""
    pick = torch.randint(len(clips), (cfg.batch_size,), generator=g).tolist()
    w = cfg.data.window_s
    cands, conts = [], []
    for i in pick:
        shifts = sample_shifts(cfg.data.negatives, cfg.model, g)
        # the aligned window and every shifted one inside the clip (no zero padding that would give a shift away)
        lo, hi = max(0.0, -min(shifts)), clips[i].duration_s - w - max(0.0, max(shifts))
        start = lo + max(0.0, hi - lo) * float(torch.rand((), generator=g))
        cands.append(shifted_windows(clips[i].audio, start, w, shifts))
        conts.append(contact_window(noisy(tracks[i], noise, g), start, w))
    return torch.stack(cands), torch.stack(conts)


@torch.no_grad()
def held_out(model, clips, tracks, cfg: TrainConfig, batches: int = 4) -> dict:
    """Accuracy of ranking the aligned window first among 1 + K (chance 1 / (1 + K)), on fixed draws."""
    model.eval()
    acc = [float(model.loss(*batch(clips, tracks, cfg, torch.Generator().manual_seed(10_000 + b), 0.0))
                 ["temporal/acc"]) for b in range(batches)]
    model.train()
    return {"aligned_first": sum(acc) / len(acc), "chance": 1 / (1 + cfg.data.negatives), "clips": len(clips)}


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
    clips = load_clips(cfg.data.manifest, cfg.data.split, limit=cfg.data.limit, need_truth=True,
                       allow_other_split=cfg.data.allow_other_split)
    tracks = [truth_contacts(c.truth, c.duration_s) for c in clips]
    ckpt_dir = args.out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, args.out / "config.yaml")
    model = TemporalRewardModel(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, _ = resume_train_state(ckpt_dir, kind=KIND, module=model, optimizer=opt,
                                 model_config=json.loads(config_to_json(cfg))["model"])
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(args.out / "tb"))
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        out = model.loss(*batch(clips, tracks, cfg, g, cfg.data.contact_noise))
        opt.zero_grad(set_to_none=True)
        out["temporal/shift_ce"].backward()
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
                                    "rng": rng_state()}, provenance={"recipe": "train_reward_temporal", "step": step})
    writer.close()
    figures = {}
    if cfg.data.val_split:
        val = load_clips(cfg.data.manifest, cfg.data.val_split, need_truth=True, allow_other_split=True)
        figures = {cfg.data.val_split: held_out(model, val, [truth_contacts(c.truth, c.duration_s) for c in val],
                                                cfg)}
        print(json.dumps(figures), flush=True)
    save_temporal_reward(args.out / "reward_temporal.safetensors", model.eval(), provenance={
        "recipe": "recipes/train_reward_temporal.py", "steps": step, "seed": cfg.seed, "config": to_dict(cfg),
        "data": f"{cfg.data.manifest} split {cfg.data.split}", "clips": [c.id for c in clips], "figures": figures,
        "contacts": "ground truth (noisy)", "command": " ".join(sys.argv)})
    print(f"wrote {args.out / 'reward_temporal.safetensors'} after {step} steps", flush=True)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
