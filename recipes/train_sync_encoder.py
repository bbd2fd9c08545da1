"""Trains the 25 fps sync encoder (Synchformer layout) by audio-visual offset classification, as Synchformer and
av-benchmark's DeSync do: a video window of window_s seconds (4.8 s) and an audio window of the same length
shifted by one of K offsets (21 classes, -2..+2 s in 0.2 s steps); the model classifies the offset.
Class k: the audio window starts offsets_s[k] seconds after the video window (positive = the sound plays early).
Offsets that do not fit inside the clip are not drawn for that window (so clips must be at least window_s long).
With segment_loss_weight > 0 (and model.segment_embed_dim > 0) the loss adds Synchformer's stage-I objective,
segment-level audio-visual InfoNCE on the aligned audio of the same window, trained jointly instead of first.
With event_loss_weight > 0 (and model.event_head: true) a per-token head learns the ground-truth contacts of
FoleyWorld clips (manifest rows with a `truth` JSON; the bounces of synthetic clips): binary cross-entropy on "a
visible contact starts in this token" and the contact's pan. This is the direct route to timing and position
features on a CPU budget; offset_loss_weight: 0 then trains the visual encoder alone, without the audio branch.

    torchrun --nproc_per_node 2 recipes/train_sync_encoder.py --config configs/train_sync_encoder/default.yaml \
        --out runs/sync data.manifest=/data/foleyworld/train.jsonl
    (debug: --config configs/train_sync_encoder/debug.yaml: two steps on synthetic clips in seconds)

Writes into --out: config.yaml, checkpoints/state_<step>.safetensors (crash-safe, resumable: rerunning the same
command continues from the newest state), tb/ (TensorBoard) and sync_av.safetensors (the final model: the generator
uses its visual part via foleyflow.models.av_ssl.load_sync_encoder; evaluation uses the whole offset classifier).
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
from foleyflow.errors import ConfigError
from foleyflow.models.av_ssl import SYNC_KIND, SyncAVConfig, SyncAVModel, contact_targets, save_av_model
from foleyflow.models.visual import num_sync_segments
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
    fps: float = 25.0  # frame rate of the sync encoder


@dataclass
class OptimConfig:
    lr: float = 2e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 500
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    model: SyncAVConfig = field(default_factory=lambda: SyncAVConfig(segment_embed_dim=128))
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 16  # per process
    segment_loss_weight: float = 1.0  # weight of the segment-level contrastive loss (0 = offset loss only)
    offset_loss_weight: float = 1.0  # weight of the offset classification loss
    event_loss_weight: float = 0.0  # weight of the ground-truth contact loss (needs model.event_head)
    event_pos_weight: float = 4.0  # BCE weight of contact tokens (they are rare)
    pan_loss_weight: float = 1.0  # weight of the contact pan regression inside the contact loss
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


def sample_window(duration_s: float, cfg: TrainConfig, rng: np.random.Generator) -> tuple[int, float]:
    """(class k, video start in s on the frame grid) such that video and shifted audio windows lie inside the clip.
    Without the offset loss only the aligned class (offset 0, or the smallest) is drawn."""
    w, fps, offsets = cfg.model.window_s, cfg.data.fps, cfg.model.offsets_s
    choices = []
    aligned_k = int(np.argmin(np.abs(offsets)))
    for k, o in enumerate(offsets):
        if cfg.offset_loss_weight <= 0 and k != aligned_k:
            continue
        lo, hi = math.ceil(max(0.0, -o) * fps - 1e-6), math.floor(min(duration_s - w, duration_s - w - o) * fps + 1e-6)
        if hi >= lo:
            choices.append((k, lo, hi))
    if not choices:
        raise ValueError(f"a {duration_s:.2f} s clip is too short for {w} s windows")
    k, lo, hi = choices[int(rng.integers(len(choices)))]
    return k, int(rng.integers(lo, hi + 1)) / fps


def make_batch(source: ClipSource, cfg: TrainConfig, rng: np.random.Generator):
    """(B, window_s * 25, 3, S, S) uint8 frames, (B, 2, num_samples) shifted audio, (B,) offset classes,
    (B, 2, num_samples) aligned audio of the video window, and (B, N) contact and (B, N) pan targets per visual token
    (zeros unless the contact loss is on)."""
    frames, audio, labels, aligned, contact, pan = [], [], [], [], [], []
    vcfg = cfg.model.visual
    n_seg = num_sync_segments(int(round(cfg.model.window_s * cfg.data.fps, 6)), vcfg.segment_frames,
                              vcfg.segment_stride)
    for i in rng.choice(len(source), size=cfg.batch_size, replace=len(source) < cfg.batch_size):
        clip = source[int(i)]
        k, start = sample_window(clip.duration_s, cfg, rng)
        frames.append(frame_window(clip, start, cfg.model.window_s, cfg.data.fps))
        audio.append(audio_window(clip, start + cfg.model.offsets_s[k], cfg.model.window_s))
        aligned.append(audio_window(clip, start, cfg.model.window_s))
        labels.append(k)
        if cfg.event_loss_weight > 0:
            if clip.onsets is None:
                raise ConfigError(f"event_loss_weight > 0 needs ground truth: clip {int(i)} has no truth JSON")
            c, p = contact_targets(clip.onsets, start, n_seg, vcfg)
        else:
            c = p = torch.zeros(n_seg * vcfg.tokens_per_segment)
        contact.append(c)
        pan.append(p)
    return (torch.stack(frames), torch.stack(audio), torch.tensor(labels), torch.stack(aligned), torch.stack(contact),
            torch.stack(pan))


class TrainStep(torch.nn.Module):
    """What DDP wraps: one forward computing every loss, so the gradients of all parts are synchronised and the
    visual tokens are computed once for both objectives."""

    def __init__(self, model: SyncAVModel, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, frames, audio, labels, aligned, contact, pan) -> dict:
        cfg = self.cfg
        v = self.model.visual(frames)
        losses, total = {}, v.new_zeros(())
        if cfg.offset_loss_weight > 0:
            losses = offset_losses(self.model.classify(v, self.model.audio(audio)), labels, self.model.cfg.offsets_s)
            total = total + cfg.offset_loss_weight * losses["sync/ce"]
        if cfg.segment_loss_weight > 0:
            seg = self.model.segment_contrastive(v, self.model.audio(aligned))
            losses.update(seg)
            total = total + cfg.segment_loss_weight * seg["sync/segment_infonce"]
        if cfg.event_loss_weight > 0:
            ev = contact_losses(self.model.contacts(v), contact, pan, cfg.event_pos_weight, cfg.pan_loss_weight)
            losses.update(ev)
            total = total + cfg.event_loss_weight * ev["sync/contact_loss"]
        losses["sync/total"] = total
        return losses


def contact_losses(out: torch.Tensor, contact: torch.Tensor, pan: torch.Tensor, pos_weight: float,
                   pan_weight: float) -> dict:
    """out (B, N, 2) [logit, pan] against (B, N) contact and pan targets: weighted BCE + masked pan MSE, and the
    token-level F1 at logit 0 and the pan error on true contacts."""
    logit, pred_pan = out[..., 0].float(), out[..., 1].float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        logit, contact, pos_weight=torch.tensor(pos_weight, device=logit.device))
    mask = contact > 0
    n_pos = mask.sum().clamp(min=1)
    pan_mse = ((pred_pan - pan) ** 2 * mask).sum() / n_pos
    hit = (logit > 0)
    tp = (hit & mask).sum()
    f1 = 2 * tp / (hit.sum() + mask.sum()).clamp(min=1)
    return {"sync/contact_loss": bce + pan_weight * pan_mse, "sync/contact_bce": bce, "sync/contact_f1": f1.float(),
            "sync/contact_pan_mae": ((pred_pan - pan).abs() * mask).sum() / n_pos}


def offset_losses(logits: torch.Tensor, labels: torch.Tensor, offsets_s: tuple[float, ...]) -> dict:
    pred = logits.argmax(-1)
    grid = torch.tensor(offsets_s, device=logits.device)
    return {"sync/ce": torch.nn.functional.cross_entropy(logits, labels),
            "sync/acc": (pred == labels).float().mean(),
            "sync/acc_within_1": ((pred - labels).abs() <= 1).float().mean(),
            "sync/abs_offset_error_s": (grid[pred] - grid[labels]).abs().mean()}


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

    model = SyncAVModel(cfg.model).to(ctx.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas,
                            weight_decay=cfg.optim.weight_decay)
    barrier(ctx)
    step, latest = resume_train_state(ckpt_dir, kind=SYNC_KIND, module=model, optimizer=opt,
                                      model_config=json.loads(config_to_json(cfg))["model"])
    if latest is not None and ctx.is_main:  # every process read the same file
        print(f"resumed from {latest.name} at step {step}", flush=True)
    if cfg.segment_loss_weight > 0 and cfg.model.segment_embed_dim <= 0:
        raise ConfigError("segment_loss_weight > 0 needs model.segment_embed_dim > 0")
    if cfg.event_loss_weight > 0 and not cfg.model.event_head:
        raise ConfigError("event_loss_weight > 0 needs model.event_head: true")
    if max(cfg.offset_loss_weight, cfg.segment_loss_weight, cfg.event_loss_weight) <= 0:
        raise ConfigError("every loss weight is 0: nothing to train")
    unused = (cfg.offset_loss_weight <= 0 or (cfg.model.segment_embed_dim > 0 and cfg.segment_loss_weight <= 0)
              or (cfg.model.event_head and cfg.event_loss_weight <= 0))
    ddp = wrap_ddp(TrainStep(model, cfg), ctx, find_unused_parameters=unused)
    source = ClipSource(manifest=cfg.data.manifest, synthetic_clips=cfg.data.synthetic_clips,
                        duration_s=cfg.data.duration_s, size=cfg.data.size, sample_rate=cfg.data.sample_rate,
                        seed=cfg.seed, cache_clips=cfg.data.cache_clips, load_onsets=cfg.event_loss_weight > 0)

    writer = bar = None
    if ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        writer = SummaryWriter(str(args.out / "tb"))
        bar = tqdm(total=cfg.steps, initial=step, desc="sync", dynamic_ncols=True)
    t0 = time.time()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step, ctx.rank])  # data depends only on (seed, step, rank)
        batch = make_batch(source, cfg, rng)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.optim, cfg.steps)
        losses = ddp(*(x.to(ctx.device) for x in batch))
        opt.zero_grad(set_to_none=True)
        losses["sync/total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        logged = {k: all_reduce_mean(v, ctx).item() for k, v in losses.items()}
        if ctx.is_main:
            bar.update(1)
            bar.set_postfix({k.split("/")[1]: f"{logged[k]:.3f}" for k in ("sync/ce", "sync/acc", "sync/contact_bce",
                                                                             "sync/contact_f1") if k in logged})
            if step % cfg.log_every == 0 or step == cfg.steps:
                for k, v in logged.items():
                    writer.add_scalar(k, v, step)
                writer.add_scalar("train/grad_norm", float(grad_norm), step)
                writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
                writer.add_scalar("train/samples_per_s", step * cfg.batch_size * ctx.world_size /
                                  (time.time() - t0), step)
        if ctx.is_main and (step % cfg.save_every == 0 or step == cfg.steps):
            save_train_state(ckpt_dir / f"state_{step:08d}.safetensors", kind=SYNC_KIND,
                             config=config_to_json(cfg),
                             state={"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "rng": rng_state()},
                             provenance={"recipe": "train_sync_encoder", "step": step})
            for old in sorted(ckpt_dir.glob("state_*.safetensors"))[:-cfg.keep_states]:
                old.unlink()
    if ctx.is_main:
        bar.close()
        writer.close()
        data = cfg.data.manifest or f"synthetic bouncing squares x{cfg.data.synthetic_clips} (seed {cfg.seed})"
        prov = {"recipe": "train_sync_encoder", "steps": step, "data": data, "world_size": ctx.world_size,
                "batch_size_per_process": cfg.batch_size,
                "losses": {"offset": cfg.offset_loss_weight, "segment": cfg.segment_loss_weight,
                           "contact": cfg.event_loss_weight}}
        if cfg.offset_loss_weight <= 0 and cfg.event_loss_weight > 0:
            prov["offset_method"] = "contacts"  # its offset head is untrained: DeSync uses eval.contact_offset
        save_av_model(args.out / "sync_av.safetensors", model.eval(), provenance=prov)
        print(f"wrote {args.out / 'sync_av.safetensors'} after {step} steps", flush=True)
    barrier(ctx)
    cleanup_distributed(ctx)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
