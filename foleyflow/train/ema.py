"""Exponential moving average of model parameters (kept in fp32), with a state dict for checkpoints."""
from __future__ import annotations

import copy

import torch


class EMA:
    """ema = decay * ema + (1 - decay) * param after every update; buffers are copied. `decay` may warm up as
    min(decay, (1 + step) / (10 + step)) so early averages are not dominated by the random initialisation."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = True):
        self.decay, self.warmup, self.num_updates = decay, warmup, 0
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        own = dict(self.model.named_parameters())
        for name, p in model.named_parameters():
            own[name].lerp_(p.detach().float(), 1.0 - d)
        own_b = dict(self.model.named_buffers())
        for name, b in model.named_buffers():
            own_b[name].copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.num_updates = float(state["decay"]), int(state["num_updates"])
        self.model.load_state_dict(state["model"])
