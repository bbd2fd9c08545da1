"""Trains the 8 fps semantic frame encoder by audio-visual contrastive learning (symmetric InfoNCE between pooled
frame embeddings and pooled audio embeddings of the same window; other clips in the batch are the negatives).

    torchrun --nproc_per_node 2 recipes/train_semantic_encoder.py --config configs/train_semantic_encoder/default.yaml \
        --out runs/semantic data.manifest=/data/foleyworld/train.jsonl
    (debug: --config configs/train_semantic_encoder/debug.yaml: two steps on synthetic clips in seconds)

Writes into --out: config.yaml, checkpoints/state_<step>.safetensors (crash-safe, resumable: rerunning the same
command continues from the newest state), tb/ (TensorBoard) and semantic_av.safetensors (the final model; the
generator uses its visual part via foleyflow.models.av_ssl.load_semantic_encoder). Negatives are per process
(InfoNCE is computed on each process's batch; DDP averages the gradients).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from foleyflow.config import config_to_json, load_config, save_config
from foleyflow.data.av_clips import ClipSource, audio_window, frame_window
from foleyflow.models.av_ssl import SEMANTIC_KIND, SemanticAVConfig, SemanticAVModel, save_av_model
from foleyflow.train.dist import all_reduce_mean, barrier, cleanup_distributed, setup_distributed, wrap_ddp
from foleyflow.train.state import resume_train_state, rng_state, save_train_state


@dataclass
class DataConfig:
    manifest: str | None = None  # JSONL manifest (foleyflow.data.manifest); None -> synthetic clips
    synthetic_clips: int = 0  # used when manifest is None
    duration_s: float = 8.0  # synthetic clip length
    size: int = 128  # frames are decoded / rendered at size x size
    cache_clips: int = 256  # decoded clips kept in memory (uint8); set to the manifest size to decode each clip once
    sample_rate: int = 16000
    window_s: float = 4.0  # random window taken from each clip per sample
    fps: float = 8.0  # frame rate of the semantic encoder


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 500
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    model: SemanticAVConfig = field(default_factory=SemanticAVConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 32  # per process
    steps: int = 20000
    log_every: int = 20
    save_every: int = 1000
    keep_states: int = 2
    seed: int = 0
    threads: int = 0  # torch threads per process (0 = leave torch's default)


def lr_at(step: int, cfg: OptimConfig, total: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    from foleyflow.train.schedule import warmup_cosine

    return cfg.lr * warmup_cosine(step, cfg.warmup_steps, total, floor=0.1)


def make_batch(source: ClipSource, cfg: TrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, window_s * fps, 3, S, S) uint8 frames at 8 fps and (B, 2, num_samples) audio of the same random windows."""
    frames, audio = [], []
    for i in rng.choice(len(source), size=cfg.batch_size, replace=len(source) < cfg.batch_size):
        clip = source[int(i)]
        start = rng.uniform(0, max(0.0, clip.duration_s - cfg.data.window_s))
        frames.append(frame_window(clip, start, cfg.data.window_s, cfg.data.fps))
        audio.append(audio_window(clip, start, cfg.data.window_s))
    return torch.stack(frames), torch.stack(audio)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=1e-4 steps=100")
    args = ap.parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    ctx = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    ckpt_dir = args.out / "checkpoints"
    if ctx.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, args.out / "config.yaml")

    model = SemanticAVModel(cfg.model).to(ctx.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas,
                            weight_decay=cfg.optim.weight_decay)
    barrier(ctx)
    step, latest = resume_train_state(ckpt_dir, kind=SEMANTIC_KIND, module=model, optimizer=opt,
                                      model_config=json.loads(config_to_json(cfg))["model"])
    if latest is not None and ctx.is_main:  # every process read the same file
        print(f"resumed from {latest.name} at step {step}", flush=True)
    ddp = wrap_ddp(model, ctx)
    source = ClipSource(manifest=cfg.data.manifest, synthetic_clips=cfg.data.synthetic_clips,
                        duration_s=cfg.data.duration_s, size=cfg.data.size, sample_rate=cfg.data.sample_rate,
                        fps=cfg.data.fps, seed=cfg.seed, cache_clips=cfg.data.cache_clips)

    writer = bar = None
    if ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        writer = SummaryWriter(str(args.out / "tb"))
        bar = tqdm(total=cfg.steps, initial=step, desc="semantic", dynamic_ncols=True)
    t0 = time.time()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step, ctx.rank])  # data depends only on (seed, step, rank)
        frames, audio = make_batch(source, cfg, rng)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.optim, cfg.steps)
        losses = ddp(frames.to(ctx.device), audio.to(ctx.device))
        opt.zero_grad(set_to_none=True)
        losses["contrastive/infonce"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100.0))
        step += 1
        logged = {k: all_reduce_mean(v, ctx).item() for k, v in losses.items()}
        if ctx.is_main:
            bar.update(1)
            bar.set_postfix(loss=f"{logged['contrastive/infonce']:.3f}", acc=f"{logged['contrastive/acc']:.2f}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                for k, v in logged.items():
                    writer.add_scalar(k, v, step)
                writer.add_scalar("train/grad_norm", float(grad_norm), step)
                writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
                writer.add_scalar("train/temperature", float(model.logit_scale.detach().exp().reciprocal()), step)
                writer.add_scalar("train/samples_per_s", step * cfg.batch_size * ctx.world_size /
                                  (time.time() - t0), step)
        if ctx.is_main and (step % cfg.save_every == 0 or step == cfg.steps):
            save_train_state(ckpt_dir / f"state_{step:08d}.safetensors", kind=SEMANTIC_KIND,
                             config=config_to_json(cfg),
                             state={"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "rng": rng_state()},
                             provenance={"recipe": "train_semantic_encoder", "step": step})
            for old in sorted(ckpt_dir.glob("state_*.safetensors"))[:-cfg.keep_states]:
                old.unlink()
    if ctx.is_main:
        bar.close()
        writer.close()
        data = cfg.data.manifest or f"synthetic bouncing squares x{cfg.data.synthetic_clips} (seed {cfg.seed})"
        save_av_model(args.out / "semantic_av.safetensors", model.eval(),
                      provenance={"recipe": "train_semantic_encoder", "steps": step, "data": data,
                                  "world_size": ctx.world_size, "batch_size_per_process": cfg.batch_size})
        print(f"wrote {args.out / 'semantic_av.safetensors'} after {step} steps", flush=True)
    barrier(ctx)
    cleanup_distributed(ctx)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
