"""Trains the 8 fps semantic frame encoder by audio-visual contrastive learning (symmetric InfoNCE between pooled
frame embeddings and pooled audio embeddings of the same window; other clips in the batch are the negatives).

    torchrun --nproc_per_node 2 recipes/train_semantic_encoder.py --config configs/train_semantic_encoder/default.yaml \
        out_dir=runs/semantic data.manifest=/data/foleyworld/train.jsonl
    (debug: --config configs/train_semantic_encoder/debug.yaml: two steps on synthetic clips in seconds)

Writes into out_dir (the run folder of every recipe, foleyflow.train.run): config.yaml,
checkpoints/state_<step>.safetensors (crash-safe, resumable: rerunning the same command continues from the newest
state), tb/, metrics.jsonl and semantic_av.safetensors (the final model; the
generator uses its visual part via foleyflow.models.av_ssl.load_semantic_encoder). Negatives are per process
(InfoNCE is computed on each process's batch; DDP averages the gradients).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from foleyflow.config import load_config
from foleyflow.data.av_clips import ClipSource, audio_window, frame_window
from foleyflow.models.av_ssl import SEMANTIC_KIND, SemanticAVConfig, SemanticAVModel, save_av_model
from foleyflow.train.dist import all_reduce_mean, barrier, cleanup_distributed, setup_distributed, wrap_ddp
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import OptimConfig, Schedule, build_optimizer, lr_at, set_lr
from foleyflow.train.state import rng_state, set_rng_state

RESUMABLE = ("data.cache_clips",)  # besides foleyflow.train.run.COMMON_RESUMABLE


@dataclass
class DataConfig:
    manifest: str | None = None  # JSONL manifest (foleyflow.manifest); None -> synthetic clips
    synthetic_clips: int = 0  # used when manifest is None
    duration_s: float = 8.0  # synthetic clip length
    size: int = 128  # frames are decoded / rendered at size x size
    cache_clips: int = 256  # decoded clips kept in memory (uint8); set to the manifest size to decode each clip once
    sample_rate: int = 16000
    window_s: float = 4.0  # random window taken from each clip per sample
    fps: float = 8.0  # frame rate of the semantic encoder


@dataclass
class SemanticOptimConfig(OptimConfig):  # linear warm-up, then cosine decay to 10%
    lr: float = 3e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 500
    grad_clip: float = 1.0
    schedule: Schedule = "cosine"
    floor: float = 0.1


@dataclass
class TrainConfig:
    model: SemanticAVConfig = field(default_factory=SemanticAVConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: SemanticOptimConfig = field(default_factory=SemanticOptimConfig)
    out_dir: str = "runs/semantic"
    batch_size: int = 32  # per process
    steps: int = 20000
    log_every: int = 20
    ckpt_every: int = 1000
    keep_states: int = 2
    seed: int = 0
    threads: int = 0  # torch threads per process (0 = leave torch's default)


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
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    ctx = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    lock = lock_run(out, ctx)  # a second trainer on this folder stops here

    model = SemanticAVModel(cfg.model).to(ctx.device)
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = 0
    state, latest = resume_state(out, kind=SEMANTIC_KIND, config=cfg, resumable=RESUMABLE, defaults=TrainConfig())
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        if ctx.is_main:  # every process read the same file
            print(f"resumed from {latest.name} at step {step}", flush=True)
    write_config(out, cfg, ctx)
    ddp = wrap_ddp(model, ctx)
    source = ClipSource(manifest=cfg.data.manifest, synthetic_clips=cfg.data.synthetic_clips,
                        duration_s=cfg.data.duration_s, size=cfg.data.size, sample_rate=cfg.data.sample_rate,
                        fps=cfg.data.fps, seed=cfg.seed, cache_clips=cfg.data.cache_clips)

    log = bar = None
    if ctx.is_main:
        from tqdm import tqdm

        log = MetricLog(out)
        bar = tqdm(total=cfg.steps, initial=step, desc="semantic", dynamic_ncols=True)
    t0 = time.time()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step, ctx.rank])  # data depends only on (seed, step, rank)
        frames, audio = make_batch(source, cfg, rng)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
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
                log.log(step, {**logged, "train/grad_norm": float(grad_norm), "train/lr": opt.param_groups[0]["lr"],
                               "train/temperature": float(model.logit_scale.detach().exp().reciprocal()),
                               "train/samples_per_s": step * cfg.batch_size * ctx.world_size / (time.time() - t0)})
        if ctx.is_main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            save_state(out, step, kind=SEMANTIC_KIND, config=cfg, keep=cfg.keep_states,
                       state={"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                              "rng": rng_state()},
                       provenance={"recipe": "train_semantic_encoder", "step": step})
    if ctx.is_main:
        bar.close()
        log.close()
        data = cfg.data.manifest or f"synthetic bouncing squares x{cfg.data.synthetic_clips} (seed {cfg.seed})"
        save_av_model(out / "semantic_av.safetensors", model.eval(),
                      provenance={"recipe": "train_semantic_encoder", "steps": step, "data": data,
                                  "world_size": ctx.world_size, "batch_size_per_process": cfg.batch_size})
        print(f"wrote {out / 'semantic_av.safetensors'} after {step} steps", flush=True)
    barrier(ctx)
    release_run(lock)
    cleanup_distributed(ctx)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
