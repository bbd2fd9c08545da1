"""ODE samplers for flow matching, as pure functions over a velocity callable (k-diffusion style).

Every fixed-grid sampler has the signature `sampler(velocity_fn, x, ts, *, generator=None, callback=None) -> x_end`,
where `velocity_fn(x, t) -> dx/dt` takes x (B, ...) and a 0-d float32 tensor t, and `ts` is an increasing (or
decreasing) 1-D grid; the ODE samplers ignore `generator` (it is there so stochastic samplers share the signature).
`callback(i, x)`, if given, is called after step i (1-based) with the new state (progress, cancellation, recording a
trajectory); it may raise to stop. A sampler may also return a tuple whose first item is x_end (e.g. with its
trajectory or per-step log-probabilities; `foleyflow.pipeline.latents_of` takes the first item).
Convention: noise at t = 0, data at t = 1 (see foleyflow.flow.objective); MMAudio samples with `euler` on
`uniform_grid(25)`.
- `euler`: first order, one call per step (error O(h)).
- `heun`: Heun's second-order method (explicit trapezoid), two calls per step except the last (error O(h^2)).
- `midpoint`: explicit midpoint, two calls per step (O(h^2)).
- `dopri5`: adaptive Dormand-Prince 5(4) with error control (Dormand & Prince 1980; Hairer et al. II.4), first same
  as last; takes tolerances instead of a grid (`dopri5_span` puts it behind the fixed-grid signature).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor], None]


def uniform_grid(num_steps: int, t0: float = 0.0, t1: float = 1.0) -> torch.Tensor:
    """torch.linspace(t0, t1, num_steps + 1) in float32 (the grid MMAudio's Euler sampler uses)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return torch.linspace(t0, t1, num_steps + 1)


def euler(velocity_fn: VelocityFn, x: torch.Tensor, ts: torch.Tensor, *,
          generator: torch.Generator | None = None, callback: StepCallback | None = None) -> torch.Tensor:
    """x_{i+1} = x_i + (t_{i+1} - t_i) v(x_i, t_i)."""
    for i in range(len(ts) - 1):
        x = x + (ts[i + 1] - ts[i]) * velocity_fn(x, ts[i])
        if callback is not None:
            callback(i + 1, x)
    return x


def heun(velocity_fn: VelocityFn, x: torch.Tensor, ts: torch.Tensor, *,
         generator: torch.Generator | None = None, callback: StepCallback | None = None) -> torch.Tensor:
    """Heun (explicit trapezoid): predictor x' = x + h v(x, t), corrector x + h/2 (v(x, t) + v(x', t + h))."""
    for i in range(len(ts) - 1):
        h = ts[i + 1] - ts[i]
        v0 = velocity_fn(x, ts[i])
        x_pred = x + h * v0
        x = x + (h / 2) * (v0 + velocity_fn(x_pred, ts[i + 1]))
        if callback is not None:
            callback(i + 1, x)
    return x


def midpoint(velocity_fn: VelocityFn, x: torch.Tensor, ts: torch.Tensor, *,
             generator: torch.Generator | None = None, callback: StepCallback | None = None) -> torch.Tensor:
    """Explicit midpoint: x + h v(x + h/2 v(x, t), t + h/2)."""
    for i in range(len(ts) - 1):
        h = ts[i + 1] - ts[i]
        x_mid = x + (h / 2) * velocity_fn(x, ts[i])
        x = x + h * velocity_fn(x_mid, ts[i] + h / 2)
        if callback is not None:
            callback(i + 1, x)
    return x


# Dormand-Prince 5(4) tableau
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((),
      (1 / 5,),
      (3 / 40, 9 / 40),
      (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def dopri5(velocity_fn: VelocityFn, x: torch.Tensor, t0: float = 0.0, t1: float = 1.0, *, rtol: float = 1e-4,
           atol: float = 1e-5, first_step: float | None = None, max_steps: int = 1000,
           generator: torch.Generator | None = None, stats: dict | None = None,
           callback: StepCallback | None = None) -> torch.Tensor:
    """Adaptive Dormand-Prince 5(4) from t0 to t1. The step is accepted when the RMS of
    err / (atol + rtol * max(|x|, |x_new|)) is <= 1. If `stats` is a dict it receives `nfe`, `accepted`, `rejected`.
    `callback(accepted, x)` after every accepted step. Raises RuntimeError after `max_steps` attempts."""
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    h = min(first_step or 0.05 * span, span) if span > 0 else 0.0
    t, nfe, accepted, rejected = t0, 0, 0, 0

    def f(xx, tt):
        nonlocal nfe
        nfe += 1
        return velocity_fn(xx, torch.tensor(tt, dtype=torch.float32))

    k1 = f(x, t) if span > 0 else None
    while span > 0 and direction * (t1 - t) > 1e-12 * span:
        if accepted + rejected >= max_steps:
            raise RuntimeError(f"dopri5 did not reach t1 within {max_steps} steps (t = {t:.6f})")
        h = min(h, abs(t1 - t))
        hs = direction * h
        ks = [k1]
        for i in range(1, 7):
            xi = x + hs * sum(a * k for a, k in zip(_A[i], ks) if a != 0.0)
            ks.append(f(xi, t + _C[i] * hs))
        x5 = xi  # stage 7 is evaluated at the 5th-order solution (FSAL)
        err = hs * sum((b5 - b4) * k for b5, b4, k in zip(_B5, _B4, ks) if b5 != b4)
        scale = atol + rtol * torch.maximum(x.abs(), x5.abs())
        err_norm = float(torch.sqrt(torch.mean((err.float() / scale.float()) ** 2)))
        if err_norm <= 1.0:
            t, x, k1 = t + hs, x5, ks[6]
            accepted += 1
            if callback is not None:
                callback(accepted, x)
        else:
            rejected += 1
        factor = 5.0 if err_norm == 0 else min(5.0, max(0.2, 0.9 * err_norm ** (-1 / 5)))
        h = h * factor
        if not math.isfinite(h) or h <= 1e-12 * span:
            raise RuntimeError("dopri5 step size underflow (the velocity may be non-finite)")
    if stats is not None:
        stats.update(nfe=nfe, accepted=accepted, rejected=rejected)
    return x


def dopri5_span(velocity_fn: VelocityFn, x: torch.Tensor, ts: torch.Tensor, *,
                generator: torch.Generator | None = None, callback: StepCallback | None = None) -> torch.Tensor:
    """`dopri5` (default tolerances) from ts[0] to ts[-1] behind the fixed-grid signature: the grid's interior points
    are ignored (the solver picks its own steps), and `callback` is called once per grid step, in order, as the
    solution passes each grid time, so a caller's progress over len(ts) - 1 steps stays meaningful."""
    t0, t1 = float(ts[0]), float(ts[-1])
    grid = [float(t) for t in ts[1:]]
    done = [0]
    state = {"t": t0}

    def tracked(xx, tt):
        state["t"] = float(tt)
        return velocity_fn(xx, tt)

    def on_step(_, xx):
        if callback is None:
            return
        while done[0] < len(grid) - 1 and (grid[done[0]] - state["t"]) * (1 if t1 >= t0 else -1) <= 1e-12:
            done[0] += 1
            callback(done[0], xx)

    x = dopri5(tracked, x, t0, t1, generator=generator, callback=on_step)
    if callback is not None:
        while done[0] < len(grid):
            done[0] += 1
            callback(done[0], x)
    return x


FIXED_GRID_SAMPLERS = {"euler": euler, "heun": heun, "midpoint": midpoint, "dopri5": dopri5_span}
