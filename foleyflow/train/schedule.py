"""Learning-rate schedules as pure functions of the step: a factor of the peak learning rate (resumed runs recompute
it from the step, so a schedule never depends on how often a run was restarted)."""
from __future__ import annotations

import math


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
