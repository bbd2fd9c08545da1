"""What the four reward models share: the conditions they score against, checkpoint I/O, FoleyWorld `train` data, and
the config, clip loading, resume, state saving and logging pieces of their four training recipes (the loops stay in
the recipes: no Trainer).

Separation rule (issue 18): a reward is what reinforcement learning optimises, the evaluation suite is what judges the
result, so they must not be the same thing. Nothing in `foleyflow.rewards` imports the evaluation package (eval) or
`foleyflow.models.eval_*`, loads the evaluation assets (`foleyflow/assets/eval`) or reads the `evaltrain` split
(`load_clips` refuses it; other splits than `train` need `allow_other_split=True`, meant for tests). The ground-truth
JSON is parsed here by our own few lines, not by the evaluation suite's truth reader.

Conventions (all rewards): audio is (B, 2, num_samples) float32 in [-1, 1] at SAMPLE_RATE (16 kHz stereo); a
condition track at `fps` frames per second has frame i covering [i / fps, (i + 1) / fps) seconds.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from foleyflow.errors import FoleyError
from foleyflow.train.schedule import OptimConfig

SAMPLE_RATE = 16_000
CONTACT_FPS = 25.0  # rate of the contact track (the sync encoder's frame rate)
PAN_FPS = 10.0  # rate of the pan tracks of the spatial reward
TRAIN_SPLIT = "train"
FORBIDDEN_SPLITS = ("evaltrain",)  # the evaluation models' data: never, whatever the flags


class RewardError(FoleyError):
    """A reward model was given unusable inputs (wrong audio shape, a missing condition, a forbidden data split)."""


@dataclass
class RewardConditions:
    """What a batch of B clips is scored against; each reward reads only its own fields.

    texts: B prompts or chains of thought ("Semantic: ... Temporal: ..."; the semantic reward uses the Semantic part).
    text_features: (B, 384) float32 pooled MiniLM sentence vectors (instead of `texts`).
    contacts: (B, Tc, 2) float32 at CONTACT_FPS: [probability that a visible contact starts in the frame (0..1),
        pan of that contact (-1 left .. 1 right)]: from the ground truth (`truth_contacts`) or from the sync encoder's
        contact head (`foleyflow.rewards.video.contacts_from_video`).
    pan_track: (B, F) float32 at PAN_FPS: pan (-1..1) of the visible source; pan_mask: (B, F) bool, True where a
        visible source sounds (`truth_pan_track`, or `foleyflow.rewards.video.pan_track_from_contacts`).
    """

    texts: list[str] | None = None
    text_features: torch.Tensor | None = None
    contacts: torch.Tensor | None = None
    pan_track: torch.Tensor | None = None
    pan_mask: torch.Tensor | None = None

    def need(self, name: str, reward: str):
        value = getattr(self, name)
        if value is None:
            raise RewardError(f"the {reward} reward needs conditions.{name}")
        return value


def check_audio(audio: torch.Tensor, channels: int = 2) -> torch.Tensor:
    """Returns `audio` as float32 after checking it is (B, channels, num_samples); RewardError otherwise."""
    if not isinstance(audio, torch.Tensor) or audio.ndim != 3 or audio.shape[1] != channels or audio.shape[-1] < 1024:
        shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise RewardError(f"reward audio must be (B, {channels}, num_samples >= 1024) at 16 kHz, got {shape}")
    return audio.float()


def fit_length(x: torch.Tensor, length: int, dim: int = 1) -> torch.Tensor:
    """Crops or zero-pads `x` along `dim` to `length` (condition tracks a frame longer or shorter than the audio)."""
    n = x.shape[dim]
    if n >= length:
        return x.narrow(dim, 0, length)
    pad = [0, 0] * (x.ndim - 1 - dim) + [0, length - n]
    return torch.nn.functional.pad(x, pad)


# ---------------------------------------------------------------- checkpoints
def save_reward(path: str | Path, model: torch.nn.Module, kind: str, provenance: dict | None = None) -> Path:
    """Writes `model` (with a dataclass `cfg`) as a safetensors checkpoint of `kind`, config and provenance."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import to_dict

    return save_checkpoint(path, model.state_dict(), kind=kind, config=to_dict(model.cfg), provenance=provenance)


def load_reward(path: str | Path, kind: str, cfg_cls, model_cls) -> torch.nn.Module:
    """Rebuilds a reward model from its checkpoint alone, in eval mode; CheckpointError (one line) for another kind
    or tensors that do not fit. The model's `identity` records the file and its sha256 (for GRPO provenance)."""
    from foleyflow.checkpoint import checkpoint_config, load_checkpoint, load_into
    from foleyflow.config import from_dict
    from foleyflow.hashing import file_sha256
    from foleyflow.errors import CheckpointError

    tensors, meta = load_checkpoint(path, kind=kind)
    try:
        cfg = from_dict(cfg_cls, checkpoint_config(meta))
    except FoleyError as e:
        raise CheckpointError(f"{path}: its config does not fit {cfg_cls.__name__} ({e})") from None
    model = model_cls(cfg)
    load_into(model, tensors, what=kind)
    model.identity = {"kind": kind, "weights": str(Path(path).resolve()), "sha256": file_sha256(path),
                      "provenance": json.loads(meta.get("foleyflow.provenance", "{}") or "{}")}
    return model.eval()


# ---------------------------------------------------------------- FoleyWorld train clips
@dataclass
class RewardClip:
    """One FoleyWorld clip: audio (2, num_samples) float32 at 16 kHz, its texts and parsed truth JSON (or None)."""

    id: str
    audio: torch.Tensor
    caption: str
    cot: str
    truth: dict | None

    @property
    def duration_s(self) -> float:
        return self.audio.shape[-1] / SAMPLE_RATE


def check_split(split: str, allow_other_split: bool = False) -> None:
    """RewardError unless `split` may train a reward model: `train`, or another split when explicitly allowed
    (tests); `evaltrain` never."""
    if split in FORBIDDEN_SPLITS:
        raise RewardError(f"reward models never train on '{split}' (the evaluation models' data)")
    if split != TRAIN_SPLIT and not allow_other_split:
        raise RewardError(f"reward models train on FoleyWorld '{TRAIN_SPLIT}' only, got split '{split}' "
                          "(data.allow_other_split: true overrides this, for tests)")


def load_clips(manifest: str | Path, split: str = TRAIN_SPLIT, *, limit: int = 0, need_truth: bool = False,
               allow_other_split: bool = False) -> list[RewardClip]:
    """The clips of `split` in a FoleyWorld manifest (rows whose `split` field equals it), audio read at 16 kHz
    stereo. need_truth: rows without a truth JSON are an error. RewardError when no row is left."""
    from foleyflow.audio import load_audio
    from foleyflow.manifest import read_manifest

    check_split(split, allow_other_split)
    rows = [e for e in read_manifest(manifest) if e.split == split and e.audio]
    if limit:
        rows = rows[:limit]
    if not rows:
        raise RewardError(f"manifest {manifest} has no '{split}' clip with audio")
    clips = []
    for e in rows:
        if need_truth and not e.truth:
            raise RewardError(f"clip {e.id} of {manifest} has no truth JSON")
        truth = json.loads(Path(e.truth).read_text()) if e.truth else None
        audio = torch.from_numpy(np.ascontiguousarray(load_audio(e.audio, SAMPLE_RATE, channels=2), dtype=np.float32))
        clips.append(RewardClip(e.id, audio, e.caption or "", e.cot or "", truth))
    return clips


def _events(truth: dict) -> list[dict]:
    return [e for e in truth.get("events", []) if e.get("kind") in ("discrete", "continuous")]


def truth_contacts(truth: dict, duration_s: float, fps: float = CONTACT_FPS) -> torch.Tensor:
    """(round(duration_s * fps), 2) contact track of a FoleyWorld truth JSON: 1.0 in the first frame at or after
    each discrete, on-screen, audible onset and its pan (mean of the contacts in that frame), 0 elsewhere."""
    n = int(round(duration_s * fps))
    out = torch.zeros(n, 2)
    count = torch.zeros(n)
    for e in _events(truth):
        if e["kind"] != "discrete" or not e.get("on_screen", True) or not e.get("params", {}).get("audible", True):
            continue
        i = int(math.ceil(e["onset_s"] * fps - 1e-6))
        if 0 <= i < n:
            out[i, 0] = 1.0
            out[i, 1] += float(e.get("pan", 0.0))
            count[i] += 1
    out[:, 1] /= count.clamp(min=1)
    return out


def truth_pan_track(truth: dict, duration_s: float, fps: float = PAN_FPS, *, on_screen_only: bool = True,
                    hold_s: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(pan (F,), mask (F,) bool), F = round(duration_s * fps): the pan of the loudest sounding non-ambience source at
    each frame centre (moving sources follow their pan track). A discrete event sounds from its onset for at most
    hold_s seconds (its decay is quiet after that); a continuous one from onset to offset."""
    from foleyflow.world.spatial import pan_at

    n = int(round(duration_s * fps))
    t = (np.arange(n) + 0.5) / fps
    pan, best = np.zeros(n), np.full(n, -np.inf)
    for e in _events(truth):
        if on_screen_only and not e.get("on_screen", True):
            continue
        end = e.get("offset_s") or duration_s
        if e["kind"] == "discrete":
            end = min(end, e["onset_s"] + hold_s)
        on = (t >= e["onset_s"]) & (t < end) & (float(e.get("gain", 1.0)) > best)
        if on.any():
            pan[on] = np.broadcast_to(pan_at(t, float(e.get("pan", 0.0)), e.get("pan_track")), (n,))[on]
            best[on] = float(e.get("gain", 1.0))
    return torch.from_numpy(pan.astype(np.float32)), torch.from_numpy(np.isfinite(best))


def crop_start_s(duration_s: float, crop_s: float, generator: torch.Generator, *, lo_s: float = 0.0,
                 hi_margin_s: float = 0.0, step_s: float = 0.0) -> float:
    """A random start in [lo_s, duration_s - crop_s - hi_margin_s] (0 when the clip is too short), rounded down to a
    multiple of step_s when step_s > 0 (e.g. to align crops with 10 fps frames)."""
    hi = max(lo_s, duration_s - crop_s - hi_margin_s)
    s = lo_s + (hi - lo_s) * float(torch.rand((), generator=generator))
    return math.floor(s / step_s + 1e-9) * step_s if step_s > 0 else s


def crop(audio: torch.Tensor, start_s: float, crop_s: float) -> torch.Tensor:
    """(C, num_samples) -> (C, round(crop_s * 16000)) from start_s, zero-padded past the end."""
    s, n = int(round(start_s * SAMPLE_RATE)), int(round(crop_s * SAMPLE_RATE))
    return fit_length(audio[:, s:s + n], n, dim=1)


def conditions_from_truth(clips: list[RewardClip], duration_s: float | None = None, *,
                          use_cot: bool = True) -> RewardConditions:
    """Ground-truth conditions of whole `train` clips (what GRPO may use on `train`): texts (the CoT, else the
    caption), contacts at 25 fps and the visible pan track at 10 fps, all clipped or padded to duration_s (default:
    the first clip's)."""
    d = duration_s or clips[0].duration_s
    for c in clips:
        if c.truth is None:
            raise RewardError(f"clip {c.id} has no truth JSON")
    pans = [truth_pan_track(c.truth, d) for c in clips]
    return RewardConditions(texts=[(c.cot if use_cot and c.cot else c.caption) for c in clips],
                            contacts=torch.stack([truth_contacts(c.truth, d) for c in clips]),
                            pan_track=torch.stack([p for p, _ in pans]), pan_mask=torch.stack([m for _, m in pans]))


# ---------------------------------------------------------------- what the four training recipes share
@dataclass
class RewardDataConfig:
    """The data fields of every reward recipe (each recipe subclasses it with its own crop and sampling fields)."""
    manifest: str | None = None
    split: str = TRAIN_SPLIT
    allow_other_split: bool = False  # tests only: train on another split than `train` (never evaltrain)
    val_split: str | None = "val"  # held-out figures at the end (never used to train or choose)
    limit: int = 0


@dataclass
class RewardOptimConfig(OptimConfig):
    """AdamW at a constant 1e-3 (no warm-up, no decay), gradients clipped at norm 5."""
    lr: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float = 5.0


@dataclass
class RewardTrainConfig:
    """The run fields of every reward recipe (foleyflow.train.run); a recipe's TrainConfig adds model and data."""
    optim: RewardOptimConfig = field(default_factory=RewardOptimConfig)
    out_dir: str = "runs/reward"
    batch_size: int = 16
    steps: int = 1500
    log_every: int = 20
    ckpt_every: int = 250
    keep_states: int = 2
    seed: int = 0
    threads: int = 1


def recipe_clips(data: RewardDataConfig, split: str | None = None, *, need_truth: bool = False) -> list[RewardClip]:
    """The training clips of a recipe (data.split, data.limit, data.allow_other_split), or with `split` the clips of
    that held-out split (all of them; only for figures, never trained on)."""
    if split is None:
        return load_clips(data.manifest, data.split, limit=data.limit, need_truth=need_truth,
                          allow_other_split=data.allow_other_split)
    return load_clips(data.manifest, split, need_truth=need_truth, allow_other_split=True)


def batch_generator(seed: int, step: int) -> torch.Generator:
    """The generator of training step `step`'s batch: a function of (seed, step) only, so a resumed run draws the
    same batches as an uninterrupted one."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def reward_provenance(name: str, cfg, step: int, clips: list[RewardClip], figures: dict, **extra) -> dict:
    """The provenance of an exported reward_<name>.safetensors: recipe, steps, seed, config, data, clip ids,
    held-out figures and the command line."""
    import sys

    from foleyflow.config import to_dict

    return {"recipe": f"recipes/train_reward_{name}.py", "steps": step, "seed": cfg.seed, "config": to_dict(cfg),
            "data": f"{cfg.data.manifest} split {cfg.data.split}", "clips": [c.id for c in clips],
            "figures": figures, **extra, "command": " ".join(sys.argv)}


def resume_reward(run_dir: str | Path, kind: str, cfg, model: torch.nn.Module, optimizer, defaults) -> int:
    """Loads the newest training state of the run folder into `model`, `optimizer` and the RNGs (a ResumeError when
    it was written with another config, see foleyflow.train.run.resume_state); returns its step, 0 for a new run."""
    from foleyflow.train.run import resume_state
    from foleyflow.train.state import set_rng_state

    state, path = resume_state(run_dir, kind=kind, config=cfg, defaults=defaults)
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    print(f"resumed from {path.name} at step {int(state['step'])}", flush=True)
    return int(state["step"])


def save_reward_state(run_dir: str | Path, step: int, kind: str, cfg, model: torch.nn.Module, optimizer,
                      name: str) -> Path:
    """Writes the training state of `step` into the run folder, keeping the newest cfg.keep_states."""
    from foleyflow.train.run import save_state
    from foleyflow.train.state import rng_state

    return save_state(run_dir, step, kind=kind, config=cfg, keep=cfg.keep_states,
                      state={"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                             "rng": rng_state()},
                      provenance={"recipe": f"train_reward_{name}", "step": step})


def log_losses(log, step: int, losses: dict[str, torch.Tensor], grad_norm, optimizer) -> None:
    """One row of the run's MetricLog (the named losses, gradient norm, learning rate) and the same on stdout."""
    values = {k: float(v.detach()) for k, v in losses.items()}
    log.log(step, {**values, "train/grad_norm": float(grad_norm), "train/lr": optimizer.param_groups[0]["lr"]})
    print(f"step {step} " + " ".join(f"{k}={v:.4f}" for k, v in values.items()), flush=True)
