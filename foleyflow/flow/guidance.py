"""Guidance for flow matching: classifier-free guidance (Ho & Salimans 2022), multi-condition guidance with separate
scales for text and video (as ALIVE does for its text and cross-modal signals), and adaptive projected guidance
(APG, Sadat et al. 2024: the guidance difference is split into components parallel and orthogonal to the
conditional prediction and the parallel one, which mostly oversaturates, is damped by `eta`).

All functions combine velocity predictions (B, ...) and are pure. `batched_cfg` turns a velocity callable that
accepts both guidance branches stacked along the batch into a guided `velocity_fn(x, t)` for the samplers, reusing
one input buffer across steps.
"""
from __future__ import annotations

from typing import Callable

import torch


def cfg(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance v = s v_cond + (1 - s) v_uncond (MMAudio's form; s = 1 gives v_cond)."""
    return scale * v_cond + (1 - scale) * v_uncond


def apg(diff: torch.Tensor, pred: torch.Tensor, eta: float = 0.0, norm_threshold: float | None = None) -> torch.Tensor:
    """Adaptive projection of a guidance difference `diff` against the prediction `pred` (both (B, ...)):
    eta * diff_parallel + diff_orthogonal, the projection taken per item over all other dims, in float32.
    With `norm_threshold`, diff is first rescaled so its per-item L2 norm is at most that value."""
    d, p = diff.float(), pred.float()
    dims = tuple(range(1, d.dim()))
    if norm_threshold is not None:
        norm = d.norm(dim=dims, keepdim=True)
        d = d * torch.clamp(norm_threshold / norm.clamp_min(1e-12), max=1.0)
    unit = p / p.norm(dim=dims, keepdim=True).clamp_min(1e-12)
    parallel = (d * unit).sum(dim=dims, keepdim=True) * unit
    return (eta * parallel + (d - parallel)).to(diff.dtype)


def cfg_apg(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float, eta: float = 0.0,
            norm_threshold: float | None = None) -> torch.Tensor:
    """CFG with APG: v_cond + (s - 1) APG(v_cond - v_uncond). eta = 1 and no threshold equals `cfg`."""
    return v_cond + (scale - 1) * apg(v_cond - v_uncond, v_cond, eta, norm_threshold)


def multi_condition(v_full: torch.Tensor, v_no_text: torch.Tensor, v_no_video: torch.Tensor, v_none: torch.Tensor,
                    *, w_joint: float, w_text: float, w_video: float, apg_eta: float | None = None) -> torch.Tensor:
    """Multi-condition guidance with separate scales (after ALIVE) over four predictions: full (text + video),
    without text (negative or empty text), without video (learned empty visual/sync), and with neither:

        v = v_full + (w_joint - 1) A(v_full - v_none) + w_text A(v_full - v_no_text) + w_video A(v_full - v_no_video)

    A is the identity, or APG against v_full with damping `apg_eta`. Without APG this equals ALIVE's
    v_none + w_joint (v_full - v_none) + ...; we write it around v_full so that (w_joint, w_text, w_video) =
    (1, 0, 0) returns v_full also with APG (ALIVE applies A to the whole joint term). With w_text = w_video = 0 it
    is CFG of scale w_joint. ALIVE's audio setting is (2, 10, 2) with eta 0.2, for its text/mutual-attention pair."""
    def a(d):
        return d if apg_eta is None else apg(d, v_full, apg_eta)

    out = v_full + (w_joint - 1) * a(v_full - v_none)
    if w_text:
        out = out + w_text * a(v_full - v_no_text)
    if w_video:
        out = out + w_video * a(v_full - v_no_video)
    return out


def plan_guidance(v_full: torch.Tensor, v_plan: torch.Tensor, v_none: torch.Tensor | None, *, scale: float,
                  plan_scale: float) -> torch.Tensor:
    """Guidance with the time-aligned plan track weighed on its own (our addition, issue 17): v_plan is the
    prediction with the plan track alone (empty visual, sync and text), v_none with nothing:

        v = v_none + plan_scale (v_plan - v_none) + scale (v_full - v_plan)

    so the video and text are guided at `scale` and the plan at `plan_scale`. plan_scale = 1 needs no v_none
    (v = v_plan + scale (v_full - v_plan)); plan_scale = scale is plain CFG of `scale` against v_none."""
    out = cfg(v_full, v_plan, scale)
    if plan_scale != 1.0:
        if v_none is None:
            raise ValueError("plan_guidance needs v_none unless plan_scale is 1")
        out = out + (plan_scale - 1) * (v_plan - v_none)
    return out


def batched_cfg(batched_velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scale: float, *,
                combine: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] = cfg,
                ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Guided velocity_fn(x, t) from `batched_velocity(x2, t)`, where x2 = [x; x] (2B, ...) and the first B rows are
    evaluated with the conditions, the last B without. One network call per step; x2 is a reused buffer."""
    buf: list[torch.Tensor] = []

    def velocity_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if not buf or buf[0].shape[1:] != x.shape[1:] or buf[0].shape[0] != 2 * b or buf[0].dtype != x.dtype:
            buf[:] = [torch.empty((2 * b, *x.shape[1:]), dtype=x.dtype, device=x.device)]
        x2 = buf[0]
        x2[:b].copy_(x)
        x2[b:].copy_(x)
        v = batched_velocity(x2, t)
        return combine(v[:b], v[b:], scale)

    return velocity_fn
