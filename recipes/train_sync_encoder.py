"""Trains the 25 fps sync encoder (Synchformer layout) by audio-visual offset classification, as Synchformer and
av-benchmark's DeSync do: a video window of window_s seconds (4.8 s) and an audio window of the same length
shifted by one of K offsets (21 classes, -2..+2 s in 0.2 s steps); the model classifies the offset (the config, the
window draw and the losses are in foleyflow.train.sync_objective, shared with recipes/train_offset_classifier.py).
With segment_loss_weight > 0 (and model.segment_embed_dim > 0) the loss adds Synchformer's stage-I objective,
segment-level audio-visual InfoNCE on the aligned audio of the same window, trained jointly instead of first.
With event_loss_weight > 0 (and model.event_head: true) a per-token head learns the ground-truth contacts of
FoleyWorld clips (manifest rows with a `truth` JSON; the bounces of synthetic clips): binary cross-entropy on "a
visible contact starts in this token" and the contact's pan. This is the direct route to timing and position
features on a CPU budget; offset_loss_weight: 0 then trains the visual encoder alone, without the audio branch.

    torchrun --nproc_per_node 2 recipes/train_sync_encoder.py --config configs/train_sync_encoder/default.yaml \
        out_dir=runs/sync data.manifest=/data/foleyworld/train.jsonl
    (debug: --config configs/train_sync_encoder/debug.yaml: two steps on synthetic clips in seconds)

Writes into out_dir (the run folder of every recipe, foleyflow.train.run): config.yaml,
checkpoints/state_<step>.safetensors (crash-safe, resumable: rerunning the same command continues from the newest
state), tb/ and metrics.jsonl, and sync_av.safetensors (the final model: the generator
uses its visual part via foleyflow.models.av_ssl.load_sync_encoder; evaluation uses the whole offset classifier).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from foleyflow.config import load_config
from foleyflow.data.av_clips import ClipSource, audio_window, frame_window
from foleyflow.errors import ConfigError
from foleyflow.models.av_ssl import SYNC_KIND, SyncAVModel, contact_targets, save_av_model
from foleyflow.models.visual import num_sync_segments
from foleyflow.train.dist import all_reduce_mean, barrier, cleanup_distributed, setup_distributed, wrap_ddp
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import build_optimizer, lr_at, set_lr
from foleyflow.train.state import rng_state, set_rng_state
from foleyflow.train.sync_objective import SyncTrainConfig as TrainConfig
from foleyflow.train.sync_objective import contact_losses, offset_losses, sample_window

RESUMABLE = ("data.cache_clips",)  # besides foleyflow.train.run.COMMON_RESUMABLE


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


def main(argv=None) -> None:
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if cfg.segment_loss_weight > 0 and cfg.model.segment_embed_dim <= 0:
        raise ConfigError("segment_loss_weight > 0 needs model.segment_embed_dim > 0")
    if cfg.event_loss_weight > 0 and not cfg.model.event_head:
        raise ConfigError("event_loss_weight > 0 needs model.event_head: true")
    if max(cfg.offset_loss_weight, cfg.segment_loss_weight, cfg.event_loss_weight) <= 0:
        raise ConfigError("every loss weight is 0: nothing to train")
    ctx = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    lock = lock_run(out, ctx)  # a second trainer on this folder stops here

    model = SyncAVModel(cfg.model).to(ctx.device)
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = 0
    state, latest = resume_state(out, kind=SYNC_KIND, config=cfg, resumable=RESUMABLE, defaults=TrainConfig())
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        if ctx.is_main:  # every process read the same file
            print(f"resumed from {latest.name} at step {step}", flush=True)
    write_config(out, cfg, ctx)
    unused = (cfg.offset_loss_weight <= 0 or (cfg.model.segment_embed_dim > 0 and cfg.segment_loss_weight <= 0)
              or (cfg.model.event_head and cfg.event_loss_weight <= 0))
    ddp = wrap_ddp(TrainStep(model, cfg), ctx, find_unused_parameters=unused)
    source = ClipSource(manifest=cfg.data.manifest, synthetic_clips=cfg.data.synthetic_clips,
                        duration_s=cfg.data.duration_s, size=cfg.data.size, sample_rate=cfg.data.sample_rate,
                        seed=cfg.seed, cache_clips=cfg.data.cache_clips, load_onsets=cfg.event_loss_weight > 0)

    log = bar = None
    if ctx.is_main:
        from tqdm import tqdm

        log = MetricLog(out)
        bar = tqdm(total=cfg.steps, initial=step, desc="sync", dynamic_ncols=True)
    t0 = time.time()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step, ctx.rank])  # data depends only on (seed, step, rank)
        batch = make_batch(source, cfg, rng)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
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
                log.log(step, {**logged, "train/grad_norm": float(grad_norm), "train/lr": opt.param_groups[0]["lr"],
                               "train/samples_per_s": step * cfg.batch_size * ctx.world_size / (time.time() - t0)})
        if ctx.is_main and (step % cfg.ckpt_every == 0 or step == cfg.steps):
            save_state(out, step, kind=SYNC_KIND, config=cfg, keep=cfg.keep_states,
                       state={"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                              "rng": rng_state()},
                       provenance={"recipe": "train_sync_encoder", "step": step})
    if ctx.is_main:
        bar.close()
        log.close()
        data = cfg.data.manifest or f"synthetic bouncing squares x{cfg.data.synthetic_clips} (seed {cfg.seed})"
        prov = {"recipe": "train_sync_encoder", "steps": step, "data": data, "world_size": ctx.world_size,
                "batch_size_per_process": cfg.batch_size,
                "losses": {"offset": cfg.offset_loss_weight, "segment": cfg.segment_loss_weight,
                           "contact": cfg.event_loss_weight}}
        if cfg.offset_loss_weight <= 0 and cfg.event_loss_weight > 0:
            prov["offset_method"] = "contacts"  # its offset head is untrained: DeSync uses eval.contact_offset
        save_av_model(out / "sync_av.safetensors", model.eval(), provenance=prov)
        print(f"wrote {out / 'sync_av.safetensors'} after {step} steps", flush=True)
    barrier(ctx)
    release_run(lock)
    cleanup_distributed(ctx)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
