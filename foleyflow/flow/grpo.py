"""The GRPO objective for flow models (Shao et al. 2024, "DeepSeekMath" GRPO; Flow-GRPO, Liu et al. 2025; the
multi-reward form of PrismAudio, ICLR 2026), as pure functions over tensors.

- `group_advantages`: each reward dimension is normalised within its group, A_k = (R_k - mean_group(R_k)) /
  (std_group(R_k) + eps), then combined with weights, A = clip(sum_k w_k A_k, -clip, +clip). PrismAudio's paper
  normalises per group; its public code (and Flow-GRPO's default) uses one global std over the batch, and combines
  the raw rewards *before* normalising (R = 0.6 R_sync + 1.0 R_clap + 0.4 R_itd + 0.1 R_aes). We normalise each
  dimension in its group first, so a weight means the same thing whatever the scale of its reward.
- `grpo_loss`: the clipped-ratio (PPO) surrogate with a KL penalty to the frozen starting model,
  loss = mean(max(-A r, -A clip(r, 1 - eps, 1 + eps))) + beta * mean(KL),  r = exp(logp - logp_old),
  with logp from `foleyflow.flow.sde.step_log_prob` (per-element mean by default: see that module for why the
  clip range, 1e-4 in the reference, depends on that choice).
- `plateau_reached`: the stop rule of issue 18's Flow-GRPO runs (a monitored value changed less than a fraction over
  the last part of the iterations).
"""
from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, weights: torch.Tensor | None = None, *,
                     eps: float = 1e-4, clip: float = 5.0) -> dict[str, torch.Tensor]:
    """Per-group, per-dimension normalised advantages combined with weights.

    rewards (N, K) float (K reward dimensions; (N,) is taken as K = 1); group_ids (N,) int, rows with the same id
    form a group (e.g. the branches of one prompt); weights (K,) (default all ones). The std is the population std
    over the group (a group of one gets advantage 0). Returns {"advantages": (N,) clipped to +-clip,
    "per_reward": (N, K) the normalised A_k before weighting and clipping}. Computed in float32 (float64 if given)."""
    if rewards.dim() == 1:
        rewards = rewards[:, None]
    if rewards.dim() != 2 or group_ids.shape != rewards.shape[:1]:
        raise ValueError(f"rewards must be (N, K) and group_ids (N,), got {tuple(rewards.shape)} and "
                         f"{tuple(group_ids.shape)}")
    dtype = torch.float64 if rewards.dtype == torch.float64 else torch.float32
    r = rewards.to(dtype)
    if not bool(torch.isfinite(r).all()):
        raise ValueError("rewards contain non-finite values")
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    num_groups, k = counts.shape[0], r.shape[1]
    n = counts.to(dtype)[:, None]
    sums = torch.zeros(num_groups, k, dtype=dtype, device=r.device).index_add_(0, inverse, r)
    mean = sums / n
    centred = r - mean[inverse]
    var = torch.zeros(num_groups, k, dtype=dtype, device=r.device).index_add_(0, inverse, centred ** 2) / n
    per_reward = centred / (var.sqrt()[inverse] + eps)
    if weights is None:
        weights = torch.ones(k, dtype=dtype, device=r.device)
    weights = torch.as_tensor(weights, dtype=dtype, device=r.device)
    if weights.shape != (k,):
        raise ValueError(f"weights must have shape ({k},), got {tuple(weights.shape)}")
    combined = (per_reward * weights).sum(dim=1).clamp(-clip, clip)
    return {"advantages": combined, "per_reward": per_reward}


def grpo_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, *, clip_range: float,
              kl: torch.Tensor | None = None, kl_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Clipped-ratio policy loss with a KL term, for one or several window steps.

    log_prob (...) under the current policy (with gradients), old_log_prob (...) stored at sampling time, advantages
    broadcastable to log_prob (e.g. (N,) against (N,), or (N,) against (W, N) via advantages[None]); kl (...) per
    item from `step_log_prob` (or None). Returns {"grpo/loss" (scalar to minimise), "grpo/policy",
    "grpo/kl" (0 without kl), "grpo/ratio_mean", "grpo/clip_frac" (share of items whose ratio is clipped),
    "grpo/approx_kl_old" (mean of (logp - logp_old)^2 / 2, a drift monitor)}; all but "grpo/loss" are detached."""
    if clip_range <= 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}")
    adv = torch.as_tensor(advantages).to(log_prob.dtype)
    log_ratio = log_prob - old_log_prob.detach().to(log_prob.dtype)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    policy = torch.maximum(unclipped, clipped).mean()
    kl_mean = kl.mean() if kl is not None else torch.zeros((), dtype=policy.dtype, device=policy.device)
    loss = policy + kl_weight * kl_mean
    with torch.no_grad():
        clip_frac = ((ratio - 1).abs() > clip_range).to(policy.dtype).mean()
    return {"grpo/loss": loss, "grpo/policy": policy.detach(), "grpo/kl": kl_mean.detach(),
            "grpo/ratio_mean": ratio.detach().mean(), "grpo/clip_frac": clip_frac,
            "grpo/approx_kl_old": (0.5 * log_ratio.detach() ** 2).mean()}


def plateau_reached(history: list[tuple[int, float]], iteration: int, *, frac: float = 0.2, rel: float = 0.01,
                    min_iters: int = 0, min_points: int = 3) -> bool:
    """True when the monitored value changed less than `rel` (relative) over the last `frac` of the iterations.

    history: (iteration, value) pairs of the monitor (e.g. `val/weighted` every `val_every` iterations), any order;
    iteration: the current iteration (1-based count of iterations done). The window is the iterations in
    [iteration - frac * iteration, iteration]; it must hold at least `min_points` values and iteration must be
    >= min_iters. The change is (max - min) over the window divided by |mean| over the window (a window whose mean
    is 0 never counts as a plateau unless every value is equal)."""
    if iteration < max(min_iters, 1) or not 0 < frac <= 1 or rel <= 0:
        return False
    lo = iteration - frac * iteration
    window = [v for i, v in history if lo - 1e-9 <= i <= iteration]
    if len(window) < max(min_points, 2):
        return False
    spread, mean = max(window) - min(window), abs(sum(window) / len(window))
    if spread == 0:
        return True
    return mean > 0 and spread / mean < rel
