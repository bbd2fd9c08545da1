"""Flow matching objective, samplers and guidance on closed-form problems."""
from __future__ import annotations

import math

import pytest
import torch

from foleyflow.flow import (apg, cfg, cfg_apg, dopri5, euler, flow_matching_loss, heun, interpolate, midpoint,
                            multi_condition, sample_times, uniform_grid)

MU, S = 2.0, 0.5  # data ~ N(MU, S^2), noise ~ N(0, 1), independent coupling


def gaussian_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact marginal velocity E[x1 - x0 | x_t = x] of the linear path between N(0, 1) and N(MU, S^2)."""
    t = float(t)
    var = (1 - t) ** 2 + t ** 2 * S ** 2
    return MU + (t * S ** 2 - (1 - t)) / var * (x - t * MU)


def exact_transport(x0: torch.Tensor) -> torch.Tensor:
    return MU + S * x0  # the ODE maps noise quantiles to data quantiles


@pytest.fixture
def x0() -> torch.Tensor:
    return torch.randn(4096, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_gaussian_transported_exactly(x0):
    x1 = heun(gaussian_velocity, x0, uniform_grid(128).double())
    assert torch.allclose(x1, exact_transport(x0), atol=1e-4)
    assert abs(x1.mean().item() - MU) < 0.05 and abs(x1.std().item() - S) < 0.02


@pytest.mark.parametrize("sampler,order", [(euler, 1), (heun, 2), (midpoint, 2)])
def test_error_order(x0, sampler, order):
    errs = [float((sampler(gaussian_velocity, x0, uniform_grid(n).double()) - exact_transport(x0)).abs().max())
            for n in (16, 32, 64)]
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    # at least the method's order (midpoint happens to reach third order on this linear problem)
    assert all(r > order - 0.25 for r in rates), (errs, rates)
    if sampler is not midpoint:
        assert all(r < order + 0.25 for r in rates), (errs, rates)


def test_heun_beats_euler_at_equal_calls(x0):
    e = (euler(gaussian_velocity, x0, uniform_grid(32).double()) - exact_transport(x0)).abs().max()
    h = (heun(gaussian_velocity, x0, uniform_grid(16).double()) - exact_transport(x0)).abs().max()
    assert h < e / 5


def test_dopri5_meets_tolerance(x0):
    stats: dict = {}
    x1 = dopri5(gaussian_velocity, x0, 0.0, 1.0, rtol=1e-7, atol=1e-8, stats=stats)
    assert torch.allclose(x1, exact_transport(x0), atol=1e-6)
    assert stats["nfe"] < 400 and stats["accepted"] > 0
    back = dopri5(gaussian_velocity, x1, 1.0, 0.0, rtol=1e-7, atol=1e-8)  # and backwards, data -> noise
    assert torch.allclose(back, x0, atol=1e-5)


def test_euler_step_matches_definition():
    calls = []

    def v(x, t):
        calls.append(float(t))
        return torch.ones_like(x) * (1 + float(t))

    out = euler(v, torch.zeros(2, 3), uniform_grid(4))
    assert calls == [0.0, 0.25, 0.5, 0.75]
    assert torch.allclose(out, torch.full((2, 3), sum(0.25 * (1 + t) for t in calls)))


def test_objective_conventions():
    x0, x1 = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    t = torch.tensor([0.0, 1.0])
    xt = interpolate(x0, x1, t)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[1], x1[1])  # noise at t = 0, data at t = 1
    out = flow_matching_loss(lambda x, tt: x1 - x0, x1, t=t, x0=x0)  # exact target -> zero loss
    assert float(out["flow/mse"]) == 0.0 and out["flow/mse_per_item"].shape == (2,)
    out = flow_matching_loss(lambda x, tt: torch.zeros_like(x), x1, t=t, x0=x0, weight=torch.tensor([1.0, 0.0]))
    assert float(out["flow/mse"]) == pytest.approx(1.0)


def test_loss_gradient_reaches_network_and_is_seeded():
    net = torch.nn.Linear(4, 4)
    x1 = torch.randn(8, 5, 4, generator=torch.Generator().manual_seed(1))
    a = flow_matching_loss(lambda x, t: net(x), x1, generator=torch.Generator().manual_seed(3))
    b = flow_matching_loss(lambda x, t: net(x), x1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a["flow/mse"], b["flow/mse"])
    a["flow/mse"].backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


def test_logit_normal_times():
    t = sample_times(20000, generator=torch.Generator().manual_seed(0))
    assert t.min() > 0 and t.max() < 1
    assert abs(float(t.median()) - 0.5) < 0.02
    logit = torch.log(t / (1 - t))
    assert abs(float(logit.std()) - 1.0) < 0.03
    assert torch.equal(t, sample_times(20000, generator=torch.Generator().manual_seed(0)))


def test_guidance_scale_one_is_conditional():
    g = torch.Generator().manual_seed(0)
    vc, vu, vt, vv = (torch.randn(3, 10, 4, generator=g) for _ in range(4))
    assert torch.allclose(cfg(vc, vu, 1.0), vc)
    assert torch.allclose(cfg_apg(vc, vu, 1.0, eta=0.3), vc)
    assert torch.allclose(multi_condition(vc, vt, vv, vu, w_joint=1, w_text=0, w_video=0), vc)
    assert torch.allclose(multi_condition(vc, vt, vv, vu, w_joint=1, w_text=0, w_video=0, apg_eta=0.2), vc, atol=1e-6)
    # CFG is multi-condition guidance without the separate terms; APG with eta 1 is plain CFG
    assert torch.allclose(multi_condition(vc, vt, vv, vu, w_joint=4.5, w_text=0, w_video=0), cfg(vc, vu, 4.5), atol=1e-5)
    assert torch.allclose(cfg_apg(vc, vu, 4.5, eta=1.0), cfg(vc, vu, 4.5), atol=1e-5)
    # separate scales: the text term only moves along v_full - v_no_text
    d = multi_condition(vc, vt, vv, vu, w_joint=1, w_text=2, w_video=0) - vc
    assert torch.allclose(d, 2 * (vc - vt), atol=1e-5)


def test_apg_projection():
    g = torch.Generator().manual_seed(0)
    diff, pred = torch.randn(2, 6, 3, generator=g), torch.randn(2, 6, 3, generator=g)
    orth = apg(diff, pred, eta=0.0)
    assert torch.allclose((orth * pred).sum(dim=(1, 2)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(apg(diff, pred, eta=1.0), diff, atol=1e-6)
    capped = apg(diff, pred, eta=1.0, norm_threshold=0.1)
    assert torch.all(capped.flatten(1).norm(dim=1) <= 0.1 + 1e-6)
