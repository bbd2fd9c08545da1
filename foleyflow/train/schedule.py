"""Learning-rate schedules as pure functions of the step: a factor of the peak learning rate (resumed runs recompute
it from the step, so a schedule never depends on how often a run was restarted), and the one optimiser config and
builder every recipe uses (`OptimConfig`, `build_optimizer`, `lr_at`, `set_lr`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal


def warmup(step: int, warmup_steps: int) -> float:
    """Linear warm-up over the first `warmup_steps` steps (step 0 gets 1 / warmup_steps), then 1."""
    return min(1.0, (step + 1) / max(1, warmup_steps))


def warmup_step_decay(step: int, warmup_steps: int, decay_steps=(), gamma: float = 0.1) -> float:
    """Warm-up, then x`gamma` at each step of `decay_steps` already reached."""
    return warmup(step, warmup_steps) * gamma ** sum(step >= s for s in decay_steps)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, floor: float) -> float:
    """Warm-up, then a half cosine from 1 down to `floor` at `total_steps` (and `floor` after it)."""
    if step < warmup_steps:
        return warmup(step, warmup_steps)
    frac = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def exponential(step: int, gamma: float, every: int) -> float:
    """x`gamma` per `every` steps, continuously: gamma ** (step / every)."""
    return gamma ** (step / every)


SCHEDULES = ("step", "cosine", "exponential")
Schedule = Literal["step", "cosine", "exponential"]


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule, the same for every recipe (a recipe sets its own defaults by
    subclassing). `schedule`: "step" (warm-up, then x`gamma` at each of `decay_steps`), "cosine" (warm-up, then a half
    cosine to `floor` at the run's last step), "exponential" (x`gamma` per `decay_every` steps, no warm-up)."""
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01       # torch's AdamW default
    grad_clip: float = 1.0
    schedule: Schedule = "step"
    warmup_steps: int = 0
    decay_steps: list[int] = field(default_factory=list)   # step: where the lr is multiplied by gamma
    gamma: float = 0.1
    decay_every: int = 100           # exponential: steps per factor gamma
    floor: float = 0.0               # cosine: final factor of lr


def lr_factor(cfg: OptimConfig, step: int, total_steps: int) -> float:
    """The factor of `cfg.lr` at 0-based `step` of a run of `total_steps` steps."""
    if cfg.schedule == "step":
        return warmup_step_decay(step, cfg.warmup_steps, cfg.decay_steps, cfg.gamma)
    if cfg.schedule == "cosine":
        return warmup_cosine(step, cfg.warmup_steps, total_steps, cfg.floor)
    if cfg.schedule == "exponential":
        return exponential(step, cfg.gamma, cfg.decay_every)
    from foleyflow.errors import ConfigError

    raise ConfigError(f"optim.schedule must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")


def lr_at(cfg: OptimConfig, step: int, total_steps: int) -> float:
    """The learning rate of 0-based `step`: cfg.lr x lr_factor."""
    return cfg.lr * lr_factor(cfg, step, total_steps)


def build_optimizer(params, cfg: OptimConfig):
    """AdamW over `params` with the config's lr, betas and weight decay (the lr is then set per step by set_lr)."""
    import torch

    lr_factor(cfg, 0, 1)  # an unknown schedule fails before any work
    return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
