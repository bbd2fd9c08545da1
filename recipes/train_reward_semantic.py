"""Trains the semantic reward (foleyflow.rewards.semantic.SemanticRewardModel) on FoleyWorld `train` only: random crops
of the soundtracks against the frozen MiniLM vectors of their CoT's Semantic part (or caption), multi-positive InfoNCE.

    nice -n 10 python recipes/train_reward_semantic.py --config configs/train_reward_semantic/default.yaml \
        --out runs/reward_semantic data.manifest=/data/foleyworld/manifest.jsonl
    (debug: configs/train_reward_semantic/debug.yaml, hashed text vectors, a few steps on the manifest given)

Writes into --out: config.yaml, checkpoints/state_<step>.safetensors (resumable), tb/, and reward_semantic.safetensors
(kind "reward_semantic", held-out `val` figures in its provenance when data.val_split is set).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.config import config_to_json, load_config, save_config, to_dict
from foleyflow.rewards.common import crop, crop_start_s, load_clips
from foleyflow.rewards.semantic import (KIND, SemanticRewardConfig, SemanticRewardModel, hashed_text_features,
                                        save_semantic_reward, semantic_text, text_features)
from foleyflow.train.state import resume_train_state, rng_state, save_train_state


@dataclass
class DataConfig:
    manifest: str | None = None
    split: str = "train"
    allow_other_split: bool = False  # tests only: train on another split than `train` (never evaltrain)
    val_split: str | None = "val"  # held-out figures at the end (never used to train or choose)
    limit: int = 0
    crop_s: float = 4.0
    text: str = "cot"  # "cot" (its Semantic part) or "caption"
    text_encoder: str = "minilm"  # "minilm" or "hashed" (tests)
    gain_db: float = 6.0


@dataclass
class TrainConfig:
    model: SemanticRewardConfig = field(default_factory=SemanticRewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    steps: int = 1000
    log_every: int = 20
    save_every: int = 200
    seed: int = 0
    threads: int = 1


def vectors(clips, cfg: DataConfig) -> torch.Tensor:
    texts = [semantic_text(c.cot if cfg.text == "cot" and c.cot else c.caption) for c in clips]
    return hashed_text_features(texts) if cfg.text_encoder == "hashed" else text_features(texts)


def batch(clips, vec, cfg: TrainConfig, g: torch.Generator):
    pick = torch.randperm(len(clips), generator=g)[:cfg.batch_size]
    gains = 10 ** (cfg.data.gain_db * (2 * torch.rand(len(pick), generator=g) - 1) / 20)
    audio = torch.stack([crop(clips[i].audio, crop_start_s(clips[i].duration_s, cfg.data.crop_s, g), cfg.data.crop_s)
                         * gains[k] for k, i in enumerate(pick.tolist())])
    return audio.clamp(-1, 1), vec[pick]


@torch.no_grad()
def held_out(model, clips, vec, cfg: TrainConfig) -> dict:
    """Whole-clip text->audio retrieval accuracy (top-1, identical texts count) and the mean paired cosine."""
    model.eval()
    d = min(c.duration_s for c in clips)
    audio = torch.stack([crop(c.audio, 0.0, d) for c in clips])
    a = torch.cat([model.audio_embedding(audio[i:i + 16]) for i in range(0, len(clips), 16)])
    sim = model.text_embedding(vec) @ a.t()
    same = torch.cdist(vec, vec) < 1e-4
    model.train()
    return {"top1": float(same.gather(1, sim.argmax(1, keepdim=True)).float().mean()),
            "paired_cosine": float(sim.diag().mean()), "clips": len(clips)}


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
    vec = vectors(clips, cfg.data)
    ckpt_dir = args.out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, args.out / "config.yaml")
    model = SemanticRewardModel(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, _ = resume_train_state(ckpt_dir, kind=KIND, module=model, optimizer=opt,
                                 model_config=json.loads(config_to_json(cfg))["model"])
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(args.out / "tb"))
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        out = model.loss(*batch(clips, vec, cfg, g))
        opt.zero_grad(set_to_none=True)
        out["semantic/infonce"].backward()
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
                                    "rng": rng_state()}, provenance={"recipe": "train_reward_semantic", "step": step})
    writer.close()
    figures = {}
    if cfg.data.val_split:
        val = load_clips(cfg.data.manifest, cfg.data.val_split, allow_other_split=True)  # held out, never trained on
        figures = {cfg.data.val_split: held_out(model, val, vectors(val, cfg.data), cfg)}
        print(json.dumps(figures), flush=True)
    save_semantic_reward(args.out / "reward_semantic.safetensors", model.eval(), provenance={
        "recipe": "recipes/train_reward_semantic.py", "steps": step, "seed": cfg.seed, "config": to_dict(cfg),
        "data": f"{cfg.data.manifest} split {cfg.data.split}", "clips": [c.id for c in clips], "figures": figures,
        "command": " ".join(sys.argv)})
    print(f"wrote {args.out / 'reward_semantic.safetensors'} after {step} steps", flush=True)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
