"""Trains the semantic reward (foleyflow.rewards.semantic.SemanticRewardModel) on FoleyWorld `train` only: random crops
of the soundtracks against the frozen MiniLM vectors of their CoT's Semantic part (or caption), multi-positive InfoNCE.

    nice -n 10 python recipes/train_reward_semantic.py --config configs/train_reward_semantic/default.yaml \
        out_dir=runs/reward_semantic data.manifest=/data/foleyworld/manifest.jsonl
    (debug: configs/train_reward_semantic/debug.yaml, hashed text vectors, a few steps on the manifest given)

Writes into out_dir (the run folder of every recipe, foleyflow.train.run): config.yaml,
checkpoints/state_<step>.safetensors (resumable, the newest keep_states kept), tb/, metrics.jsonl and
reward_semantic.safetensors (kind "reward_semantic", held-out `val` figures in its provenance when data.val_split is
set).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.config import load_config
from foleyflow.rewards.common import (RewardDataConfig, RewardTrainConfig, batch_generator, crop, crop_start_s,
                                      log_losses, recipe_clips, resume_reward, reward_provenance, save_reward_state)
from foleyflow.rewards.semantic import (KIND, SemanticRewardConfig, SemanticRewardModel, hashed_text_features,
                                        same_text, save_semantic_reward, semantic_text, text_features)
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, write_config
from foleyflow.train.schedule import build_optimizer, lr_at, set_lr


@dataclass
class DataConfig(RewardDataConfig):
    crop_s: float = 4.0
    text: str = "cot"  # "cot" (its Semantic part) or "caption"
    text_encoder: str = "minilm"  # "minilm" or "hashed" (tests)
    gain_db: float = 6.0


@dataclass
class TrainConfig(RewardTrainConfig):
    model: SemanticRewardConfig = field(default_factory=SemanticRewardConfig)
    data: DataConfig = field(default_factory=DataConfig)
    out_dir: str = "runs/reward_semantic"
    batch_size: int = 32
    steps: int = 1000
    ckpt_every: int = 200


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
    same = same_text(vec)
    model.train()
    return {"top1": float(same.gather(1, sim.argmax(1, keepdim=True)).float().mean()),
            "paired_cosine": float(sim.diag().mean()), "clips": len(clips)}


def main(argv=None) -> None:
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run_dir = Path(cfg.out_dir)
    lock = lock_run(run_dir)  # a second trainer on this folder stops here
    clips = recipe_clips(cfg.data)
    vec = vectors(clips, cfg.data)
    model = SemanticRewardModel(cfg.model)
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = resume_reward(run_dir, KIND, cfg, model, opt, defaults=TrainConfig())
    write_config(run_dir, cfg)
    log = MetricLog(run_dir)
    while step < cfg.steps:
        g = batch_generator(cfg.seed, step)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        out = model.loss(*batch(clips, vec, cfg, g))
        opt.zero_grad(set_to_none=True)
        out["semantic/infonce"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            log_losses(log, step, out, grad_norm, opt)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_reward_state(run_dir, step, KIND, cfg, model, opt, "semantic")
    log.close()
    figures = {}
    if cfg.data.val_split:
        val = recipe_clips(cfg.data, cfg.data.val_split)  # held out, never trained on
        figures = {cfg.data.val_split: held_out(model, val, vectors(val, cfg.data), cfg)}
        print(json.dumps(figures), flush=True)
    save_semantic_reward(run_dir / "reward_semantic.safetensors", model.eval(), provenance=reward_provenance(
        "semantic", cfg, step, clips, figures))
    print(f"wrote {run_dir / 'reward_semantic.safetensors'} after {step} steps", flush=True)
    release_run(lock)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
