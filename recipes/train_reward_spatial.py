"""Trains the spatial reward (foleyflow.rewards.spatial.SpatialRewardModel) on FoleyWorld `train` only: random crops
(aligned with the 10 fps pan frames) against the ground-truth pan of the loudest sounding source (on or off screen)
and whether one sounds.

    nice -n 10 python recipes/train_reward_spatial.py --config configs/train_reward_spatial/default.yaml \
        out_dir=runs/reward_spatial data.manifest=/data/foleyworld/manifest.jsonl

Writes into out_dir (the run folder of every recipe, foleyflow.train.run): config.yaml,
checkpoints/state_<step>.safetensors (resumable, the newest keep_states kept), tb/, metrics.jsonl and
reward_spatial.safetensors (kind "reward_spatial", held-out `val` pan error in its provenance).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.config import load_config
from foleyflow.rewards.common import (PAN_FPS, RewardConditions, RewardDataConfig, RewardTrainConfig, batch_generator,
                                      crop, crop_start_s, fit_length, log_losses, recipe_clips, resume_reward,
                                      reward_provenance, save_reward_state, truth_pan_track)
from foleyflow.rewards.spatial import KIND, SpatialRewardConfig, SpatialRewardModel, save_spatial_reward
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, write_config
from foleyflow.train.schedule import build_optimizer, lr_at, set_lr


@dataclass
class DataConfig(RewardDataConfig):
    crop_s: float = 4.0
    gain_db: float = 6.0


@dataclass
class TrainConfig(RewardTrainConfig):
    model: SpatialRewardConfig = field(default_factory=SpatialRewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out_dir: str = "runs/reward_spatial"


def batch(clips, tracks, cfg: TrainConfig, g: torch.Generator):
    """(audio (B, 2, N), pan (B, F), active (B, F)) with F = crop_s * 10."""
    f = int(round(cfg.data.crop_s * PAN_FPS))
    audio, pans, acts = [], [], []
    for i in torch.randint(len(clips), (cfg.batch_size,), generator=g).tolist():
        start = crop_start_s(clips[i].duration_s, cfg.data.crop_s, g, step_s=1 / PAN_FPS)
        gain = 10 ** (cfg.data.gain_db * (2 * float(torch.rand((), generator=g)) - 1) / 20)
        audio.append((crop(clips[i].audio, start, cfg.data.crop_s) * gain).clamp(-1, 1))
        k = int(round(start * PAN_FPS))
        pans.append(fit_length(tracks[i][0][k:], f, dim=0))
        acts.append(fit_length(tracks[i][1][k:], f, dim=0))
    return torch.stack(audio), torch.stack(pans), torch.stack(acts)


@torch.no_grad()
def held_out(model, clips, cfg: TrainConfig) -> dict:
    """Mean |pan error| on the frames where a visible source sounds (whole clips), and the reward's mean."""
    model.eval()
    d = min(c.duration_s for c in clips)
    audio = torch.stack([crop(c.audio, 0.0, d) for c in clips])
    tracks = [truth_pan_track(c.truth, d) for c in clips]
    pan, mask = torch.stack([p for p, _ in tracks]), torch.stack([m for _, m in tracks])
    scores = torch.cat([model.score(audio[i:i + 16], RewardConditions(pan_track=pan[i:i + 16], pan_mask=mask[i:i + 16]))
                        for i in range(0, len(clips), 16)])
    has = mask.any(1)
    model.train()
    return {"visible_pan_error": float(-scores[has].mean()) if has.any() else None, "clips": len(clips),
            "clips_with_visible_source": int(has.sum())}


def main(argv=None) -> None:
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.out_dir)
    lock = lock_run(run_dir)  # a second trainer on this folder stops here
    clips = recipe_clips(cfg.data, need_truth=True)
    tracks = [truth_pan_track(c.truth, c.duration_s, on_screen_only=False) for c in clips]
    model = SpatialRewardModel(cfg.model)
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = resume_reward(run_dir, KIND, cfg, model, opt, defaults=TrainConfig())
    write_config(run_dir, cfg)
    log = MetricLog(run_dir)
    while step < cfg.steps:
        g = batch_generator(cfg.seed, step)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        out = model.loss(*batch(clips, tracks, cfg, g))
        opt.zero_grad(set_to_none=True)
        out["spatial/total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            log_losses(log, step, out, grad_norm, opt)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_reward_state(run_dir, step, KIND, cfg, model, opt, "spatial")
    log.close()
    figures = {}
    if cfg.data.val_split:
        val = recipe_clips(cfg.data, cfg.data.val_split, need_truth=True)  # held out, never trained on
        figures = {cfg.data.val_split: held_out(model, val, cfg)}
        print(json.dumps(figures), flush=True)
    save_spatial_reward(run_dir / "reward_spatial.safetensors", model.eval(), provenance=reward_provenance(
        "spatial", cfg, step, clips, figures))
    print(f"wrote {run_dir / 'reward_spatial.safetensors'} after {step} steps", flush=True)
    release_run(lock)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
