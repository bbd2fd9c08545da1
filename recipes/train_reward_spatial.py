"""Trains the spatial reward (foleyflow.rewards.spatial.SpatialRewardModel) on FoleyWorld `train` only: random crops
(aligned with the 10 fps pan frames) against the ground-truth pan of the loudest sounding source (on or off screen)
and whether one sounds.

    nice -n 10 python recipes/train_reward_spatial.py --config configs/train_reward_spatial/default.yaml \
        --out runs/reward_spatial data.manifest=/data/foleyworld/manifest.jsonl

Writes into --out: config.yaml, checkpoints/state_<step>.safetensors (resumable), tb/, and reward_spatial.safetensors
(kind "reward_spatial", held-out `val` pan error in its provenance).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.config import config_to_json, load_config, save_config, to_dict
from foleyflow.rewards.common import (PAN_FPS, RewardConditions, crop, crop_start_s, fit_length, load_clips,
                                      truth_pan_track)
from foleyflow.rewards.spatial import KIND, SpatialRewardConfig, SpatialRewardModel, save_spatial_reward
from foleyflow.train.state import resume_train_state, rng_state, save_train_state


@dataclass
class DataConfig:
    manifest: str | None = None
    split: str = "train"
    allow_other_split: bool = False  # tests only (never evaltrain)
    val_split: str | None = "val"
    limit: int = 0
    crop_s: float = 4.0
    gain_db: float = 6.0


@dataclass
class TrainConfig:
    model: SpatialRewardConfig = field(default_factory=SpatialRewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 16
    steps: int = 1500
    log_every: int = 20
    save_every: int = 250
    seed: int = 0
    threads: int = 1


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
    tracks = [truth_pan_track(c.truth, c.duration_s, on_screen_only=False) for c in clips]
    ckpt_dir = args.out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, args.out / "config.yaml")
    model = SpatialRewardModel(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, _ = resume_train_state(ckpt_dir, kind=KIND, module=model, optimizer=opt,
                                 model_config=json.loads(config_to_json(cfg))["model"])
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(args.out / "tb"))
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        out = model.loss(*batch(clips, tracks, cfg, g))
        opt.zero_grad(set_to_none=True)
        out["spatial/total"].backward()
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
                                    "rng": rng_state()}, provenance={"recipe": "train_reward_spatial", "step": step})
    writer.close()
    figures = {}
    if cfg.data.val_split:
        val = load_clips(cfg.data.manifest, cfg.data.val_split, need_truth=True, allow_other_split=True)
        figures = {cfg.data.val_split: held_out(model, val, cfg)}
        print(json.dumps(figures), flush=True)
    save_spatial_reward(args.out / "reward_spatial.safetensors", model.eval(), provenance={
        "recipe": "recipes/train_reward_spatial.py", "steps": step, "seed": cfg.seed, "config": to_dict(cfg),
        "data": f"{cfg.data.manifest} split {cfg.data.split}", "clips": [c.id for c in clips], "figures": figures,
        "command": " ".join(sys.argv)})
    print(f"wrote {args.out / 'reward_spatial.safetensors'} after {step} steps", flush=True)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
