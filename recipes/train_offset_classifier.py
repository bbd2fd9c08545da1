"""Trains the DeSync evaluation model: the sync recipe's audio-visual offset classifier (SyncAVModel, 21 offsets from
-2 to +2 s over 4.8 s windows, labels and windows drawn by foleyflow.train.sync_objective exactly as
recipes/train_sync_encoder.py draws them), with
auxiliary event-detection losses from FoleyWorld's ground truth.

Why: trained from scratch by offset classification alone (Synchformer's objective), the small CPU-sized model stayed
at chance for 500 steps (FoleyWorld's sounding objects are a few pixels wide at 64 px). Here two linear probes
(training only; not part of the saved model) read the encoders' tokens: each visual token predicts whether an
on-screen discrete event starts within its time span, each audio token whether a discrete event starts in its span
of the shifted audio window (binary cross-entropy, positives weighted). So the encoders learn to mark events in
time, and the offset head only has to compare two event trains. This departs from Synchformer (self-supervised,
two-stage) by using labels, which an evaluation model trained on `evaltrain` may do.

    python recipes/train_offset_classifier.py --config configs/eval_models/offset.yaml out_dir=runs/eval_offset \
        data.manifest=PATH/TO/evaltrain600.jsonl

The manifest rows need `truth` (FoleyWorld ground-truth JSON). Writes into out_dir (the run folder of every recipe,
foleyflow.train.run): config.yaml, checkpoints/state_<step>.safetensors (resumable: rerunning continues from the
newest), tb/, metrics.jsonl and sync_av.safetensors
(kind sync_av: load with foleyflow.eval.av_models.load_offset_classifier). Single process.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from foleyflow.config import load_config
from foleyflow.data.av_clips import ClipSource, audio_window, frame_window
from foleyflow.errors import FoleyError
from foleyflow.eval.av_models import motion_frames
from foleyflow.models.av_ssl import SYNC_KIND, SyncAVModel, save_av_model
from foleyflow.models.visual import sync_token_times
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import build_optimizer, lr_at, set_lr
from foleyflow.train.state import rng_state, set_rng_state
from foleyflow.train.sync_objective import SyncTrainConfig, offset_losses, sample_window

RESUMABLE = ("data.cache_clips",)  # besides foleyflow.train.run.COMMON_RESUMABLE


@dataclass
class TrainConfig(SyncTrainConfig):
    out_dir: str = "runs/eval_offset"
    event_loss_weight: float = 1.0  # weight of the visual and of the audio event-detection loss
    event_pos_weight: float = 4.0  # BCE weight of positive tokens (events are sparse)
    visual_tolerance_s: float = 0.06  # a visual token is positive when an on-screen onset is this close to its centre
    audio_tolerance_s: float = 0.03  # same for audio tokens (25 per second)
    frame_input: str = "rgb"  # or "motion": grey + two frame differences (foleyflow.eval.av_models.motion_frames)


def event_times(truth_path: str) -> tuple[np.ndarray, np.ndarray]:
    """(on-screen discrete onsets, all discrete onsets) in seconds; events labelled inaudible are left out."""
    events = json.loads(Path(truth_path).read_text())["events"]
    disc = [e for e in events if e["kind"] == "discrete" and e.get("params", {}).get("audible", True)]
    return (np.array([e["onset_s"] for e in disc if e.get("on_screen", True)]),
            np.array([e["onset_s"] for e in disc]))


def token_targets(centres_s: np.ndarray, onsets_s: np.ndarray, tol: float) -> np.ndarray:
    if len(onsets_s) == 0:
        return np.zeros(len(centres_s), np.float32)
    return (np.abs(centres_s[:, None] - onsets_s[None]).min(1) <= tol).astype(np.float32)


class TrainStep(torch.nn.Module):
    """The offset loss and the two event-detection probes, in one forward."""

    def __init__(self, model: SyncAVModel, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.v_event = torch.nn.Linear(model.cfg.visual.out_dim, 1)
        self.a_event = torch.nn.Linear(model.cfg.audio.embed_dim, 1)

    def forward(self, frames, audio, labels, v_target, a_target) -> dict:
        v, a = self.model.visual(frames), self.model.audio(audio)
        losses = offset_losses(self.model.classify(v, a), labels, self.model.cfg.offsets_s)
        total = losses["sync/ce"]
        if self.cfg.event_loss_weight > 0:
            pw = torch.tensor(self.cfg.event_pos_weight)
            for tag, head, x, y in (("visual", self.v_event, v, v_target), ("audio", self.a_event, a, a_target)):
                n = min(x.shape[1], y.shape[1])
                logit, y = head(x)[:, :n, 0], y[:, :n]
                loss = F.binary_cross_entropy_with_logits(logit, y, pos_weight=pw)
                hit = ((logit > 0) == (y > 0.5)).float()
                losses[f"events/{tag}_bce"] = loss
                losses[f"events/{tag}_recall"] = (hit * y).sum() / y.sum().clamp(min=1)
                total = total + self.cfg.event_loss_weight * loss
        losses["sync/total"] = total
        return losses


def make_batch(source: ClipSource, truths: dict, cfg: TrainConfig, rng: np.random.Generator, v_times, a_times):
    frames, audio, labels, vt, at = [], [], [], [], []
    for i in rng.choice(len(source), size=cfg.batch_size, replace=len(source) < cfg.batch_size):
        i = int(i)
        clip = source[i]
        if i not in truths:
            truths[i] = event_times(source.rows[i].truth)
        on_screen, audible = truths[i]
        k, start = sample_window(clip.duration_s, cfg, rng)
        a_start = start + cfg.model.offsets_s[k]
        f = frame_window(clip, start, cfg.model.window_s, cfg.data.fps)
        if cfg.frame_input == "motion":
            f = torch.from_numpy(motion_frames(f.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2)
        frames.append(f)
        audio.append(audio_window(clip, a_start, cfg.model.window_s))
        labels.append(k)
        vt.append(token_targets(v_times, on_screen - start, cfg.visual_tolerance_s))
        at.append(token_targets(a_times, audible - a_start, cfg.audio_tolerance_s))
    return (torch.stack(frames), torch.stack(audio), torch.tensor(labels), torch.from_numpy(np.stack(vt)),
            torch.from_numpy(np.stack(at)))


def main(argv=None) -> None:
    args = recipe_args(__doc__.split("\n\n")[0], argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    if not cfg.data.manifest:
        raise FoleyError("the offset classifier needs data.manifest (FoleyWorld rows with a truth file)")
    if cfg.frame_input not in ("rgb", "motion"):
        raise FoleyError(f"frame_input must be rgb or motion, got {cfg.frame_input!r}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    lock = lock_run(out)  # a second trainer on this folder stops here
    model = SyncAVModel(cfg.model)
    step_module = TrainStep(model, cfg)
    opt = build_optimizer(step_module.parameters(), cfg.optim)
    step = 0
    state, latest = resume_state(out, kind=SYNC_KIND, config=cfg, resumable=RESUMABLE, defaults=TrainConfig())
    if state is not None:
        step_module.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        step = int(state["step"])
        print(f"resumed from {latest.name} at step {step}", flush=True)
    write_config(out, cfg)
    source = ClipSource(manifest=cfg.data.manifest, size=cfg.data.size, sample_rate=cfg.data.sample_rate,
                        seed=cfg.seed, cache_clips=cfg.data.cache_clips)
    if any(not r.truth for r in source.rows):
        raise FoleyError(f"{cfg.data.manifest}: every row needs a 'truth' file")
    vs = cfg.model.visual
    n_seg = (int(round(cfg.model.window_s * vs.fps)) - vs.segment_frames) // vs.segment_stride + 1
    v_times = sync_token_times(n_seg, vs.fps, vs.segment_frames, vs.segment_stride, vs.tubelet).numpy()
    a_times = (np.arange(int(cfg.model.window_s * cfg.model.audio.token_rate) + 1) + 0.5) / cfg.model.audio.token_rate
    truths: dict = {}

    from tqdm import tqdm

    log = MetricLog(out)
    bar = tqdm(total=cfg.steps, initial=step, desc="offset", dynamic_ncols=True)
    t0 = time.time()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        batch = make_batch(source, truths, cfg, rng, v_times, a_times)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        losses = step_module(*batch)
        opt.zero_grad(set_to_none=True)
        losses["sync/total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(step_module.parameters(), cfg.optim.grad_clip)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{losses['sync/ce'].item():.3f}", acc=f"{losses['sync/acc'].item():.2f}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            log.log(step, {**{k: v.item() for k, v in losses.items()}, "train/grad_norm": float(grad_norm),
                           "train/lr": opt.param_groups[0]["lr"],
                           "train/seconds_per_step": (time.time() - t0) / max(1, step)})
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_state(out, step, kind=SYNC_KIND, config=cfg, keep=cfg.keep_states,
                       state={"model": step_module.state_dict(), "optimizer": opt.state_dict(), "step": step,
                              "rng": rng_state()},
                       provenance={"recipe": "train_offset_classifier", "step": step})
    bar.close()
    log.close()
    save_av_model(out / "sync_av.safetensors", model.eval(),
                  provenance={"recipe": "train_offset_classifier", "steps": step, "data": cfg.data.manifest,
                              "batch_size": cfg.batch_size, "seed": cfg.seed, "frame_input": cfg.frame_input})
    print(f"wrote {out / 'sync_av.safetensors'} after {step} steps", flush=True)
    release_run(lock)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
