"""Conditional flow matching with the linear (rectified-flow / OT) path (Lipman et al. 2023; Liu et al. 2023), as
MMAudio trains it.

Time convention (the same as MMAudio's): **noise at t = 0, data at t = 1**.
    x_t = (1 - t) x0 + t x1,   x0 ~ N(0, I),   x1 = the (normalised) data latent,
    target velocity u = dx_t/dt = x1 - x0,   loss = mean over (time, channel) of (v(x_t, t) - u)^2.
Training times are logit-normal, t = sigmoid(n) with n ~ N(mean, std) (Esser et al. 2024; MMAudio: N(0, 1)).
Samplers integrate dx/dt = v(x, t) from t = 0 to t = 1 (foleyflow.flow.samplers). Note that flow-GRPO style code
uses the opposite convention (sigma = 1 - t running from 1 to 0).
"""
from __future__ import annotations

from typing import Callable

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t x1 for t (B,) and x0, x1 (B, ...)."""
    t = _bcast(t, x0)
    return (1 - t) * x0 + t * x1


def target_velocity(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The regression target x1 - x0 (independent of t on the linear path)."""
    return x1 - x0


def sample_times(batch_size: int, *, generator: torch.Generator | None = None, mean: float = 0.0,
                 std: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """Logit-normal training times (batch_size,) in (0, 1): sigmoid(N(mean, std^2))."""
    n = torch.randn(batch_size, generator=generator, device=device)
    return torch.sigmoid(n * std + mean)


def flow_matching_loss(velocity_fn: VelocityFn, x1: torch.Tensor, *, t: torch.Tensor | None = None,
                       x0: torch.Tensor | None = None, generator: torch.Generator | None = None,
                       weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Flow-matching loss of `velocity_fn(x_t, t) -> v` on a batch of data latents x1 (B, ...).

    t (B,) defaults to logit-normal samples and x0 to standard normal noise, both drawn from `generator`.
    Returns {"flow/mse": scalar (weighted mean over items), "flow/mse_per_item": (B,)}; `weight` (B,) optional
    per-item weights (e.g. to balance data sources).
    """
    b = x1.shape[0]
    if t is None:
        t = sample_times(b, generator=generator, device=x1.device)
    if x0 is None:
        x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    v = velocity_fn(interpolate(x0, x1, t), t)
    per_item = (v.float() - target_velocity(x0, x1).float()).pow(2).flatten(1).mean(dim=1)
    if weight is None:
        loss = per_item.mean()
    else:
        loss = (per_item * weight).sum() / weight.sum().clamp_min(1e-12)
    return {"flow/mse": loss, "flow/mse_per_item": per_item}
