"""Trains the audio evaluation model (foleyflow.models.eval_audio.EventModel) on FoleyWorld's evaltrain split: the
event head with cross-entropy on segments at labelled onsets (18 timed classes), the clip head with binary
cross-entropy on random crops labelled from the ground truth (21 classes, multi-label).

    nice -n 10 python recipes/train_event_classifier.py --config configs/train_event_classifier/default.yaml \
        out_dir=runs/event data.manifest=/data/foleyworld/manifest.jsonl
    (debug: --config configs/train_event_classifier/debug.yaml: two steps on synthetic clips in seconds)

Writes into out_dir (the run folder of every recipe, foleyflow.train.run): config.yaml, cache/ (log-mels),
checkpoints/state_<step>.safetensors (resumable: rerunning the same command continues from the newest state), tb/,
metrics.jsonl, and event.safetensors (the final model in float16, kind
"eval_event", with the validation figures in its provenance).
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foleyflow.config import load_config, to_dict
from foleyflow.data.eval_clips import (clip_mels, crop_labels, manifest_clips, mean_average_precision, mel_slice,
                                       synthetic_clips, timed_events)
from foleyflow.models.eval_audio import EVENT_KIND, EventModel, EventModelConfig
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import OptimConfig, Schedule, build_optimizer, lr_at, set_lr
from foleyflow.train.state import rng_state, set_rng_state


@dataclass
class DataConfig:
    manifest: str | None = None      # FoleyWorld manifest.jsonl; None -> synthetic clips
    split: str = "evaltrain"         # the only split trained on
    val_split: str | None = "val"    # figures reported at the end (never used to pick anything)
    limit: int = 0                   # use only the first N clips of each split (0 = all)
    synthetic_clips: int = 0
    crop_s: float = 4.0
    jitter_s: float = 0.02           # random shift of segment starts (generated onsets are not exact)
    gain_db: float = 6.0             # random gain +- this (added to the log-mel)


@dataclass
class EventOptimConfig(OptimConfig):  # warm-up, then cosine decay to 2%
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 5.0
    schedule: Schedule = "cosine"
    floor: float = 0.02


@dataclass
class TrainConfig:
    model: EventModelConfig = field(default_factory=EventModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: EventOptimConfig = field(default_factory=EventOptimConfig)
    out_dir: str = "runs/event"
    batch_size: int = 64             # event segments per step
    clip_batch_size: int = 16        # crops per step (clip head)
    clip_weight: float = 1.0
    steps: int = 700
    log_every: int = 20
    ckpt_every: int = 200
    keep_states: int = 2
    seed: int = 0
    threads: int = 1


def load_split(cfg: TrainConfig, split: str, front_end, cache: Path, seed: int):
    if cfg.data.manifest is None:
        clips, audio = synthetic_clips(cfg.data.synthetic_clips, sample_rate=front_end.cfg.sample_rate, seed=seed)
        return clips, clip_mels(clips, front_end, audio=audio)
    clips = manifest_clips(cfg.data.manifest, split, cfg.data.limit)
    return clips, clip_mels(clips, front_end, cache=cache, progress=sys.stderr.isatty())


def make_batch(model: EventModel, clips, mels, events, cfg: TrainConfig, rng: np.random.Generator):
    mc = cfg.model
    rate = mc.cnn.sample_rate / mc.cnn.hop_length
    seg_frames = mc.segment_samples() // mc.cnn.hop_length + 1
    pick = rng.integers(len(events), size=cfg.batch_size)
    seg, y = [], []
    for i in pick:
        c, onset, k = events[i]
        t = onset - mc.pre_s + rng.uniform(-cfg.data.jitter_s, cfg.data.jitter_s)
        seg.append(mel_slice(mels[int(c)], int(round(t * rate)), seg_frames))
        y.append(int(k))
    crop_frames = int(round(cfg.data.crop_s * mc.cnn.sample_rate)) // mc.cnn.hop_length + 1
    crops, labels = [], []
    for c in rng.integers(len(clips), size=cfg.clip_batch_size):
        s = int(rng.integers(0, max(1, mels.shape[2] - crop_frames + 1)))
        crops.append(mel_slice(mels[int(c)], s, crop_frames))
        labels.append(crop_labels(clips[int(c)], s / rate, s / rate + cfg.data.crop_s, mc.clip_classes))
    g = cfg.data.gain_db / 20 * math.log(10)

    def aug(x):
        x = torch.from_numpy(np.stack(x))
        return x + torch.from_numpy(rng.uniform(-g, g, (len(x), 1, 1)).astype(np.float32))

    return aug(seg), torch.tensor(y), aug(crops), torch.from_numpy(np.stack(labels))


@torch.no_grad()
def evaluate(model: EventModel, clips, mels, cfg: TrainConfig) -> dict:
    """Event accuracy at the labelled onsets (no jitter) and clip-head mean average precision on whole clips."""
    model.eval()
    mc = cfg.model
    rate = mc.cnn.sample_rate / mc.cnn.hop_length
    seg_frames = mc.segment_samples() // mc.cnn.hop_length + 1
    ev = timed_events(clips, mc.event_classes)
    correct = 0
    for s in range(0, len(ev), 256):
        part = ev[s: s + 256]
        x = torch.from_numpy(np.stack([mel_slice(mels[int(c)], int(round((t - mc.pre_s) * rate)), seg_frames)
                                       for c, t, _ in part]))
        correct += int((model.event_logits_from_mel(x).argmax(1).numpy() == part[:, 2]).sum())
    probs = np.concatenate([model.clip_from_tokens(model.cnn.tokens(torch.from_numpy(mels[s: s + 32].astype(
        np.float32))))[0].numpy() for s in range(0, len(mels), 32)])
    labels = np.stack([crop_labels(c, 0.0, c.duration_s, mc.clip_classes) for c in clips])
    model.train()
    return {"event_accuracy": correct / max(1, len(ev)), "events": len(ev),
            "clip_map": mean_average_precision(labels, probs), "clips": len(clips)}


def export(model: EventModel, path: Path, cfg: TrainConfig, provenance: dict) -> None:
    from foleyflow.checkpoint import save_checkpoint

    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_checkpoint(path, sd, kind=EVENT_KIND, config=to_dict(cfg.model), provenance=provenance)


def main(argv=None) -> None:
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    lock = lock_run(out)  # a second trainer on this folder stops here
    model = EventModel(cfg.model)
    opt = build_optimizer(model.parameters(), cfg.optim)
    step = 0
    state, latest = resume_state(out, kind=EVENT_KIND, config=cfg, defaults=TrainConfig())
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        print(f"resumed from {latest.name} at step {step}", flush=True)
    write_config(out, cfg)
    clips, mels = load_split(cfg, cfg.data.split, model.cnn, out / "cache", cfg.seed)
    events = timed_events(clips, cfg.model.event_classes)
    print(f"{len(clips)} {cfg.data.split} clips, {len(events)} timed events, log-mels {mels.nbytes / 1e6:.0f} MB",
          flush=True)

    from tqdm import tqdm

    log = MetricLog(out)
    bar = tqdm(total=cfg.steps, initial=step, desc="event classifier", dynamic_ncols=True)
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])   # data depends only on (seed, step)
        seg, y, crops, labels = make_batch(model, clips, mels, events, cfg, rng)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        logits = model.event_logits_from_mel(seg)
        ce = F.cross_entropy(logits, y)
        prob, _ = model.clip_from_tokens(model.cnn.tokens(crops))
        bce = F.binary_cross_entropy(prob, labels)
        loss = ce + cfg.clip_weight * bce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        acc = float((logits.argmax(1) == y).float().mean())
        bar.update(1)
        bar.set_postfix(ce=f"{ce.item():.3f}", bce=f"{bce.item():.3f}", acc=f"{acc:.2f}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.log(step, {"loss/event_ce": ce.item(), "loss/clip_bce": bce.item(), "train/event_acc": acc,
                           "train/grad_norm": float(grad_norm), "train/lr": opt.param_groups[0]["lr"]})
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_state(out, step, kind=EVENT_KIND, config=cfg, keep=cfg.keep_states,
                       state={"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                              "rng": rng_state()},
                       provenance={"recipe": "train_event_classifier", "step": step})
    bar.close()
    figures = {}
    if cfg.data.val_split and cfg.data.manifest is not None:
        vclips, vmels = load_split(cfg, cfg.data.val_split, model.cnn, out / "cache", cfg.seed)
        figures = {cfg.data.val_split: evaluate(model, vclips, vmels, cfg)}
        print(json.dumps(figures), flush=True)
        log.text("val", json.dumps(figures), step)
    log.close()
    data = (f"{cfg.data.manifest} split {cfg.data.split}" if cfg.data.manifest else
            f"synthetic tone bursts x{cfg.data.synthetic_clips} (seed {cfg.seed})")
    export(model.eval(), out / "event.safetensors", cfg,
           {"recipe": "recipes/train_event_classifier.py", "steps": step, "seed": cfg.seed, "data": data,
            "clips": len(clips), "figures": figures, "command": " ".join(sys.argv)})
    print(f"wrote {out / 'event.safetensors'} after {step} steps", flush=True)
    release_run(lock)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
