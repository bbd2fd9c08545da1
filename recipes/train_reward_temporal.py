"""Trains the temporal reward (foleyflow.rewards.temporal.TemporalRewardModel) on FoleyWorld `train` only: for each
window, the aligned audio against K copies read 0.1..2 s earlier or later, given the ground-truth contact track (made
noisy like the sync encoder's contact head: soft probabilities, a frame of jitter, missed and spurious contacts).

    nice -n 10 python recipes/train_reward_temporal.py --config configs/train_reward_temporal/default.yaml \
        out_dir=runs/reward_temporal data.manifest=/data/foleyworld/manifest.jsonl

Writes into out_dir (the run folder of every recipe, foleyflow.train.run): config.yaml,
checkpoints/state_<step>.safetensors (resumable, the newest keep_states kept), tb/, metrics.jsonl and
reward_temporal.safetensors (kind "reward_temporal", held-out `val` accuracy of picking the aligned window in its
provenance).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.config import load_config
from foleyflow.rewards.common import (CONTACT_FPS, RewardDataConfig, RewardTrainConfig, batch_generator, log_losses,
                                      recipe_clips, resume_reward, reward_provenance, save_reward_state, truth_contacts)
from foleyflow.rewards.temporal import (KIND, TemporalRewardConfig, TemporalRewardModel, contact_window,
                                        sample_shifts, save_temporal_reward, shifted_windows)
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, write_config
from foleyflow.train.schedule import build_optimizer, lr_at, set_lr


@dataclass
class DataConfig(RewardDataConfig):
    window_s: float = 4.0
    negatives: int = 4
    contact_noise: float = 0.3  # 0 = exact truth; p of a missed contact, max spurious contacts per second / 2


@dataclass
class TrainConfig(RewardTrainConfig):
    model: TemporalRewardConfig = field(default_factory=TemporalRewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out_dir: str = "runs/reward_temporal"


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
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.out_dir)
    lock = lock_run(run_dir)  # a second trainer on this folder stops here
    clips = recipe_clips(cfg.data, need_truth=True)
    tracks = [truth_contacts(c.truth, c.duration_s) for c in clips]
    model = TemporalRewardModel(cfg.model)
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = resume_reward(run_dir, KIND, cfg, model, opt, defaults=TrainConfig())
    write_config(run_dir, cfg)
    log = MetricLog(run_dir)
    while step < cfg.steps:
        g = batch_generator(cfg.seed, step)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        out = model.loss(*batch(clips, tracks, cfg, g, cfg.data.contact_noise))
        opt.zero_grad(set_to_none=True)
        out["temporal/shift_ce"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            log_losses(log, step, out, grad_norm, opt)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_reward_state(run_dir, step, KIND, cfg, model, opt, "temporal")
    log.close()
    figures = {}
    if cfg.data.val_split:
        val = recipe_clips(cfg.data, cfg.data.val_split, need_truth=True)  # held out, never trained on
        figures = {cfg.data.val_split: held_out(model, val, [truth_contacts(c.truth, c.duration_s) for c in val],
                                                cfg)}
        print(json.dumps(figures), flush=True)
    save_temporal_reward(run_dir / "reward_temporal.safetensors", model.eval(), provenance=reward_provenance(
        "temporal", cfg, step, clips, figures, contacts="ground truth (noisy)"))
    print(f"wrote {run_dir / 'reward_temporal.safetensors'} after {step} steps", flush=True)
    release_run(lock)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
