"""Stochastic sampling with log-probabilities, for GRPO fine-tuning of a flow model: the Flow-GRPO SDE step (Liu et
al. 2025, "Flow-GRPO: Training Flow Matching Models via Online RL"), its Gaussian transition log-density, and the
Fast-GRPO sampler of PrismAudio (ICLR 2026): ODE (Euler) steps everywhere except a window of `w` consecutive SDE
steps, with the group branching off one shared trajectory at the window start. All functions are pure (explicit
`torch.Generator`, no hidden state) and work over any `velocity_fn(x, t)` as in `foleyflow.flow.samplers`.

Time convention (ours, MMAudio's): noise at t = 0, data at t = 1, x_t = (1 - t) x0 + t x1, v = dx/dt = x1 - x0.
Flow-GRPO writes sigma = 1 - t (noise level, running 1 -> 0) and v_ref = dx/dsigma = -v. Its SDE
    dx = [v_ref + s^2 / (2 sigma) (x + (1 - sigma) v_ref)] dsigma + s dW,   s = a sqrt(sigma / (1 - sigma))
becomes, with h = t_next - t > 0 (= -d sigma), in our variables
    mean   = x + h v - h s^2 / (2 (1 - t)) (x - t v),      s = a sqrt((1 - t) / t)
    x_next = mean + s sqrt(h) eps,                          eps ~ N(0, I)
i.e. the forward-time SDE dx = [v + s^2/2 * score] dt + s dW with score(x, t) = -(x - t v) / (1 - t) (x - t v is
the posterior mean of the noise x0), which has the ODE's marginals for any s (Song et al. 2021). The noise level
`a` = 0 gives exactly the Euler step. At t = 0 the coefficient is singular; like the reference (which uses sigma_1,
the second grid point, when sigma = 1) we use t_next in the denominator for a step that starts at t = 0.

Discretisation (measured on the Gaussian toy of tests/test_grpo_sde.py, a = 0.7, 24 steps): Euler-Maruyama keeps the
marginal *mean* exactly and the variance to O(h) once t >~ 0.15, but the diffusion coefficient s^2 ~ a^2 / t is
unresolved near t = 0 at any grid: a window that starts at t = 0 inflates the variance of the first steps by about
a^4/4 (0.06 at a = 0.7) relative to the ODE, and the excess decays only as t grows. The reference behaves the same;
we keep its formula and document it rather than change the published policy.

Log-probability: the transition is N(mean, std^2 I) with std = s sqrt(h); `gaussian_log_prob` returns the per-item
log-density **averaged over latent elements** by default (`reduce="mean"`, as the reference does) or summed
(`reduce="sum"`, the true joint density). The PPO ratio exp(logp - logp_old) therefore is the geometric mean of the
per-element ratios with "mean": the same parameter change moves it by a factor ~1/numel less than the joint ratio,
which is why the reference's clip range is as small as 1e-4 and why a clip range must be re-chosen with "sum" or
with a different latent size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SdeStep:
    """One stochastic step: x_next (B, ...) in x's dtype; mean (B, ...) and std (0-d) in float32 (float64 if x is)."""
    x_next: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


@dataclass
class StepLogProb:
    """A transition re-evaluated under a policy: log_prob (B,), mean (B, ...), std (0-d), and kl (B,) to the
    reference policy's mean (None without a reference)."""
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    kl: torch.Tensor | None


@dataclass
class GrpoRollout:
    """What `fast_grpo_sample` returns. N = B * group_size rows, in `repeat_interleave` order (rows b*G .. b*G+G-1
    branch from start b); W = window_size.
    samples (N, ...) at t = ts[-1]; branch_point (B, ...) the shared state at the window start (before copying);
    states / next_states (W, N, ...) the state before / after each window step; log_probs (W, N) float32 under the
    sampling policy (reduced as `reduce` said: recompute with the same `reduce`); timesteps / next_timesteps (W,)
    t_k and t_{k+1} of each window step; window_start (int);
    nfe (velocity calls) and nfe_rows (sum of the batch sizes of those calls, for compute accounting)."""
    samples: torch.Tensor
    branch_point: torch.Tensor
    states: torch.Tensor
    next_states: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor
    next_timesteps: torch.Tensor
    window_start: int
    nfe: int
    nfe_rows: int


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def sde_mean_std(v: torch.Tensor, x: torch.Tensor, t, t_next, noise_level: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (B, ...) and std (0-d) of the Flow-GRPO transition from x (B, ...) at time t to t_next > t, given the
    velocity v = velocity_fn(x, t) (B, ...). Computed in float32 (float64 for float64 x), as the reference does for
    bf16 models. With noise_level 0 the mean is x + h v (the Euler step) and std is 0."""
    dtype = _compute_dtype(x)
    t, t_next = torch.as_tensor(t, device=x.device), torch.as_tensor(t_next, device=x.device)
    h = (t_next - t).to(dtype)  # in the grid's dtype first, so that noise_level 0 reproduces `euler` bit for bit
    t, t_next = t.to(dtype), t_next.to(dtype)
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0, got {noise_level}")
    if not bool(h > 0) or not bool(t >= 0) or not bool(t < 1) or not bool(t_next <= 1):
        raise ValueError(f"an SDE step needs 0 <= t < t_next <= 1, got t={float(t)}, t_next={float(t_next)}")
    x, v = x.to(dtype), v.to(dtype)
    t_den = torch.where(t > 0, t, t_next)  # the reference's sigma_1 rule for a step that starts at pure noise
    s2 = noise_level ** 2 * (1 - t) / t_den
    mean = x + h * v - (h * s2 / (2 * (1 - t))) * (x - t * v)
    return mean, torch.sqrt(s2 * h)


def sde_step(velocity_fn: VelocityFn, x: torch.Tensor, t, t_next, *, noise_level: float,
             generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> SdeStep:
    """One Flow-GRPO SDE step from x (B, ...) at t to t_next (0-d tensors or floats, 0 <= t < t_next <= 1).
    x_next = mean + std * eps with eps drawn from `generator` (on the generator's device) unless `noise` (B, ...)
    is given. noise_level 0 returns exactly the Euler step (x_next == mean, std == 0)."""
    t = torch.as_tensor(t)
    v = velocity_fn(x, t)
    mean, std = sde_mean_std(v, x, t, t_next, noise_level)
    if noise_level == 0:
        return SdeStep(mean.to(x.dtype), mean, std)
    if noise is None:
        dev = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=dev, dtype=mean.dtype).to(x.device)
    x_next = (mean + std * noise.to(mean.dtype)).to(x.dtype)
    return SdeStep(x_next, mean, std)


def gaussian_log_prob(x_next: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, reduce: str = "mean"
                      ) -> torch.Tensor:
    """log N(x_next; mean, std^2 I) per item: (B,) in float32 (float64 if mean is), the per-element log-density
    averaged (`reduce="mean"`, the reference's choice) or summed (`"sum"`, the joint density) over all non-batch
    dims. x_next is treated as a constant (detached). std must be > 0 (noise_level > 0)."""
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    if not bool((std > 0).all()):
        raise ValueError("the transition log-prob needs std > 0 (noise_level > 0)")
    z = (x_next.detach().to(mean.dtype) - mean) / std
    per_elem = -0.5 * z ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
    dims = tuple(range(1, per_elem.dim()))
    return per_elem.mean(dim=dims) if reduce == "mean" else per_elem.sum(dim=dims)


def step_log_prob(velocity_fn: VelocityFn, x: torch.Tensor, x_next: torch.Tensor, t, t_next, *,
                  noise_level: float, ref_velocity_fn: VelocityFn | None = None, reduce: str = "mean"
                  ) -> StepLogProb:
    """Re-evaluate a stored transition x (B, ...) -> x_next (B, ...) from t to t_next under `velocity_fn` (the
    current policy; gradients flow through it): log_prob (B,) for the PPO ratio. With `ref_velocity_fn` (the frozen
    starting model, evaluated without gradients) also kl (B,) = KL(N(mean, std^2) || N(mean_ref, std^2)) per
    element, i.e. ||mean - mean_ref||^2 / (2 std^2) averaged (or summed, with reduce="sum") over elements.
    std is the transition std s sqrt(h); the public Flow-GRPO code divides by s^2 instead, i.e. its KL is ours
    times h (its weight beta = 0.04 with 24 steps is about 0.04 / 24 here)."""
    t = torch.as_tensor(t)
    mean, std = sde_mean_std(velocity_fn(x, t), x, t, t_next, noise_level)
    log_prob = gaussian_log_prob(x_next, mean, std, reduce)
    kl = None
    if ref_velocity_fn is not None:
        with torch.no_grad():
            mean_ref, _ = sde_mean_std(ref_velocity_fn(x, t), x, t, t_next, noise_level)
        per_elem = (mean - mean_ref) ** 2 / (2 * std ** 2)
        dims = tuple(range(1, per_elem.dim()))
        kl = per_elem.mean(dim=dims) if reduce == "mean" else per_elem.sum(dim=dims)
    return StepLogProb(log_prob, mean, std, kl)


def draw_window_start(num_steps: int, window_size: int, *, generator: torch.Generator,
                      max_start: int | None = None) -> int:
    """The window's first step index, uniform on {0, ..., min(max_start, num_steps - window_size)}, drawn from the
    caller's `generator` (one draw per iteration; the public PrismAudio code re-seeds per process each call, so
    every worker always used the same window). PrismAudio: 24 steps, window 2, max_start 12."""
    if not 1 <= window_size <= num_steps:
        raise ValueError(f"window_size must be in [1, {num_steps}], got {window_size}")
    hi = num_steps - window_size if max_start is None else min(max_start, num_steps - window_size)
    if hi < 0:
        raise ValueError(f"max_start must be >= 0, got {max_start}")
    return int(torch.randint(0, hi + 1, (1,), generator=generator).item())


def fast_grpo_sample(velocity_fn: VelocityFn, x: torch.Tensor, ts: torch.Tensor, *, window_start: int,
                     window_size: int, group_size: int, noise_level: float, generator: torch.Generator,
                     branch_velocity_fn: VelocityFn | None = None, reduce: str = "mean") -> GrpoRollout:
    """Fast-GRPO rollout: Euler steps on ts[0..window_start] for x (B, ...) (the shared trunk, computed once), then
    copy the state into `group_size` branches (N = B * group_size rows, `repeat_interleave` order), SDE steps
    window_start .. window_start + window_size - 1 (each branch draws its own noise from `generator`, in row
    order), then Euler steps to ts[-1]. Runs under torch.no_grad.

    `velocity_fn` is called with batch B before the window; `branch_velocity_fn` (default velocity_fn) with batch N
    from the window on, so the caller can build it from conditions repeated `group_size` times per row.
    Flow-GRPO (every step stochastic) is window_start = 0, window_size = len(ts) - 1; to give each group member its
    own initial noise as Flow-GRPO does, pass N distinct starts with group_size = 1 and group the rows for the
    advantages by prompt. The steps outside the window are `foleyflow.flow.samplers.euler`'s, bit for bit."""
    num_steps = len(ts) - 1
    if not 1 <= window_size <= num_steps or not 0 <= window_start <= num_steps - window_size:
        raise ValueError(f"window [{window_start}, {window_start + window_size}) does not fit {num_steps} steps")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if noise_level <= 0:
        raise ValueError("fast_grpo_sample needs noise_level > 0 (log-probs); use samplers.euler for the ODE")
    branch_fn = velocity_fn if branch_velocity_fn is None else branch_velocity_fn
    nfe = nfe_rows = 0
    states, next_states, log_probs = [], [], []
    with torch.no_grad():
        for i in range(window_start):
            x = x + (ts[i + 1] - ts[i]) * velocity_fn(x, ts[i])
            nfe, nfe_rows = nfe + 1, nfe_rows + x.shape[0]
        branch_point = x.clone()
        x = x.repeat_interleave(group_size, dim=0)
        for i in range(window_start, window_start + window_size):
            step = sde_step(branch_fn, x, ts[i], ts[i + 1], noise_level=noise_level, generator=generator)
            states.append(x)
            next_states.append(step.x_next)
            log_probs.append(gaussian_log_prob(step.x_next, step.mean, step.std, reduce))
            x = step.x_next
            nfe, nfe_rows = nfe + 1, nfe_rows + x.shape[0]
        for i in range(window_start + window_size, num_steps):
            x = x + (ts[i + 1] - ts[i]) * branch_fn(x, ts[i])
            nfe, nfe_rows = nfe + 1, nfe_rows + x.shape[0]
    window = slice(window_start, window_start + window_size)
    return GrpoRollout(samples=x, branch_point=branch_point, states=torch.stack(states),
                       next_states=torch.stack(next_states), log_probs=torch.stack(log_probs),
                       timesteps=ts[window].clone(), next_timesteps=ts[window_start + 1:window_start + window_size + 1]
                       .clone(), window_start=window_start, nfe=nfe, nfe_rows=nfe_rows)
