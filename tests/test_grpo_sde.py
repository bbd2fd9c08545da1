"""The Flow-GRPO SDE step, its log-prob and the Fast-GRPO sampler (foleyflow.flow.sde) on closed-form problems."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from foleyflow.flow import euler, uniform_grid
from foleyflow.flow.grpo import grpo_loss
from foleyflow.flow.sde import (draw_window_start, fast_grpo_sample, gaussian_log_prob, sde_mean_std, sde_step,
                                step_log_prob)

# data ~ N(MU, S^2) per dimension, noise ~ N(0, 1), independent coupling: the marginal at t is
# N(t MU, (1 - t)^2 + t^2 S^2) and the exact flow-matching velocity is affine in x
MU = torch.tensor([2.0, -1.0], dtype=torch.float64)
S = torch.tensor([0.5, 1.5], dtype=torch.float64)


def velocity_coefficients(t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """v(x, t) = alpha x + beta for the Gaussian toy (E[x1 - x0 | x_t = x])."""
    var = (1 - t) ** 2 + t ** 2 * S ** 2
    alpha = (t * S ** 2 - (1 - t)) / var
    return alpha, MU - alpha * t * MU


def toy_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    alpha, beta = velocity_coefficients(float(t))
    return (alpha * x.double() + beta).to(x.dtype)


def euler_moments(ts: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Exact mean and variance (D,) of the Euler ODE's state after each step, by the affine recursion."""
    m, v, out = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), []
    for i in range(len(ts) - 1):
        h = float(ts[i + 1] - ts[i])
        alpha, beta = velocity_coefficients(float(ts[i]))
        a = 1 + h * alpha
        m, v = a * m + h * beta, a ** 2 * v
        out.append((m, v))
    return out


def reference_step(x, v, sigma, sigma_next, sigma_1, a):
    """The published Flow-GRPO step written in its own convention (sigma = 1 - t, v_ref = -v), independently of
    the module: returns mean and transition std."""
    d = sigma_next - sigma
    s = a * math.sqrt(sigma / (1 - (sigma_1 if sigma == 1 else sigma)))
    v_ref = -v
    mean = x * (1 + s ** 2 / (2 * sigma) * d) + v_ref * (1 + s ** 2 * (1 - sigma) / (2 * sigma)) * d
    return mean, s * math.sqrt(-d)


@pytest.mark.parametrize("i", [0, 1, 5, 12, 23])
def test_step_matches_the_published_formula_in_sigma_convention(i):
    ts = uniform_grid(24).double()
    g = torch.Generator().manual_seed(i)
    x, v = torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, 5, generator=g,
                                                                                dtype=torch.float64)
    mean, std = sde_mean_std(v, x, ts[i], ts[i + 1], 0.7)
    ref_mean, ref_std = reference_step(x, v, 1 - float(ts[i]), 1 - float(ts[i + 1]), 1 - float(ts[1]), 0.7)
    assert torch.allclose(mean, ref_mean, rtol=1e-12, atol=1e-12)
    assert abs(float(std) - ref_std) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_level_zero_is_exactly_euler(dtype):
    ts = uniform_grid(10)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0)).to(dtype)
    y = x
    for i in range(10):
        step = sde_step(toy_velocity, y, ts[i], ts[i + 1], noise_level=0.0, generator=torch.Generator())
        assert float(step.std) == 0.0
        y = step.x_next
    assert y.dtype == dtype and torch.equal(y, euler(toy_velocity, x, ts))


def test_ode_parts_of_the_rollout_are_euler():
    ts = uniform_grid(12)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    r = fast_grpo_sample(toy_velocity, x, ts, window_start=4, window_size=3, group_size=2, noise_level=0.7,
                         generator=torch.Generator().manual_seed(2))
    assert torch.equal(r.branch_point, euler(toy_velocity, x, ts[:5]))
    assert torch.equal(r.states[0], r.branch_point.repeat_interleave(2, dim=0))
    assert torch.equal(r.samples, euler(toy_velocity, r.next_states[-1], ts[7:]))
    assert torch.equal(r.timesteps, ts[4:7]) and torch.equal(r.next_timesteps, ts[5:8])
    assert r.nfe == 12 and r.nfe_rows == 4 * 3 + 8 * 6


def _moments_tolerance(var: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    # 5 standard errors of the sample mean / variance, plus the SDE's O(h) discretisation error (about 0.013 here;
    # a wrong sign, factor or time translation of the correction term moves the variance by 0.09 or more)
    return 5 * (var / n).sqrt() + 1e-3, 5 * var * math.sqrt(2 / n) + 0.02


def test_sde_keeps_the_ode_marginals_on_a_gaussian_toy():
    n, ts = 20_000, uniform_grid(24).double()
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = fast_grpo_sample(toy_velocity, x, ts, window_start=6, window_size=18, group_size=1, noise_level=0.7,
                         generator=torch.Generator().manual_seed(1))
    ode = euler_moments(ts)
    for k in range(18):
        m_ode, v_ode = ode[6 + k]
        y = r.next_states[k]
        tol_m, tol_v = _moments_tolerance(v_ode, n)
        assert ((y.mean(0) - m_ode).abs() < tol_m).all(), (k, y.mean(0), m_ode)
        assert ((y.var(0) - v_ode).abs() < tol_v).all(), (k, y.var(0), v_ode)
    # and the steps are really stochastic: the final samples differ from the ODE's by O(1)
    assert float((r.samples - euler(toy_velocity, x, ts)).std()) > 0.2


def test_window_at_pure_noise_inflates_the_first_variance_as_documented():
    """From t = 0 the first SDE step (with the reference's t_1 rule) gives variance (1 - h - a^2/2)^2 + a^2 where
    the ODE gives (1 - h)^2: an excess h a^2 + a^4 / 4, independent of the grid's fineness (module docstring)."""
    n, a, ts = 20_000, 0.7, uniform_grid(24).double()
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    r = fast_grpo_sample(toy_velocity, x, ts, window_start=0, window_size=1, group_size=1, noise_level=a,
                         generator=torch.Generator().manual_seed(4))
    h = float(ts[1])
    expected = (1 - h - a ** 2 / 2) ** 2 + a ** 2
    assert abs(expected - (1 - h) ** 2 - (h * a ** 2 + a ** 4 / 4)) < 1e-12
    assert ((r.next_states[0].var(0) - expected).abs() < 5 * expected * math.sqrt(2 / n)).all()


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_log_prob_equals_the_gaussian_density(reduce):
    from scipy.stats import norm

    ts = uniform_grid(24)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, 6, generator=g)
    step = sde_step(lambda y, t: 0.3 * y + 1.0, x, ts[7], ts[8], noise_level=0.7, generator=g)
    lp = gaussian_log_prob(step.x_next, step.mean, step.std, reduce)
    assert lp.shape == (4,) and lp.dtype == torch.float32
    h, t = 1 / 24, 7 / 24
    std = 0.7 * math.sqrt((1 - t) / t) * math.sqrt(h)
    xn, x64 = step.x_next.double().numpy(), x.double().numpy()
    v = 0.3 * x64 + 1.0
    mean = x64 + h * v - h * (0.7 ** 2 * (1 - t) / t) / (2 * (1 - t)) * (x64 - t * v)
    dens = norm.logpdf(xn, loc=mean, scale=std).reshape(4, -1)
    expected = dens.mean(1) if reduce == "mean" else dens.sum(1)
    assert np.allclose(lp.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_log_prob_rejects_zero_noise():
    with pytest.raises(ValueError):
        gaussian_log_prob(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor(0.0))


class SmallVelocity(torch.nn.Module):
    """A tiny velocity network v(x, t) over (B, T, C) latents."""

    def __init__(self, channels: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(channels + 1, 16), torch.nn.SiLU(),
                                       torch.nn.Linear(16, channels))

    def forward(self, x, t):
        tt = torch.as_tensor(t, dtype=x.dtype).expand(*x.shape[:-1], 1)
        return self.net(torch.cat([x, tt], dim=-1))


def test_ratio_is_one_before_the_first_update_and_kl_is_zero_to_itself():
    model = SmallVelocity()
    ts = uniform_grid(10)
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    r = fast_grpo_sample(model, x, ts, window_start=3, window_size=2, group_size=4, noise_level=0.7,
                         generator=torch.Generator().manual_seed(1))
    adv = torch.linspace(-1, 1, 8)
    for k in range(2):
        re = step_log_prob(model, r.states[k], r.next_states[k], r.timesteps[k], r.next_timesteps[k],
                           noise_level=0.7, ref_velocity_fn=model)
        assert torch.equal(re.log_prob, r.log_probs[k])
        assert torch.equal(re.kl, torch.zeros(8))
        out = grpo_loss(re.log_prob, r.log_probs[k], adv, clip_range=1e-4, kl=re.kl, kl_weight=0.04)
        assert float(out["grpo/ratio_mean"]) == 1.0 and float(out["grpo/clip_frac"]) == 0.0
        out["grpo/loss"].backward()  # gradients reach the policy through the recomputed log-prob
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_kl_to_a_different_reference_is_the_gaussian_kl():
    ts = uniform_grid(8)
    g = torch.Generator().manual_seed(2)
    x, x_next = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    ref = lambda y, t: y * 0.5  # noqa: E731
    pol = lambda y, t: y * 0.5 + 0.2  # noqa: E731
    re = step_log_prob(pol, x, x_next, ts[2], ts[3], noise_level=0.7, ref_velocity_fn=ref)
    m_ref, std = sde_mean_std(ref(x, ts[2]), x, ts[2], ts[3], 0.7)
    # KL(N(m, s^2) || N(m_ref, s^2)) per element = (m - m_ref)^2 / (2 s^2)
    assert torch.allclose(re.kl, ((re.mean - m_ref) ** 2 / (2 * std ** 2)).mean(1))
    assert float(re.kl.min()) > 0


def test_branches_share_the_trunk_and_differ_after_it():
    model = SmallVelocity(seed=1)
    ts = uniform_grid(10)
    x = torch.randn(3, 5, 3, generator=torch.Generator().manual_seed(0))

    def run(seed):
        return fast_grpo_sample(model, x, ts, window_start=4, window_size=2, group_size=4, noise_level=0.7,
                                generator=torch.Generator().manual_seed(seed))

    r = run(7)
    assert r.samples.shape == (12, 5, 3) and r.states.shape == (2, 12, 5, 3) and r.log_probs.shape == (2, 12)
    start = r.states[0].view(3, 4, 5, 3)
    assert torch.equal(start, start[:, :1].expand_as(start))  # the group shares the state at the window start
    assert not torch.equal(start[0, 0], start[1, 0])  # different prompts have different trunks
    after = r.next_states[0].view(3, 4, 5, 3)
    for b in range(3):
        for i in range(4):
            for j in range(i + 1, 4):
                assert float((after[b, i] - after[b, j]).abs().min()) > 0  # every branch draws its own noise
    assert torch.equal(r.samples, run(7).samples) and torch.equal(r.log_probs, run(7).log_probs)
    assert not torch.equal(r.samples, run(8).samples)


def test_flow_grpo_is_the_window_over_all_steps():
    ts = uniform_grid(6)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    r = fast_grpo_sample(toy_velocity, x, ts, window_start=0, window_size=6, group_size=1, noise_level=0.5,
                         generator=torch.Generator().manual_seed(1))
    assert r.states.shape[0] == 6 and torch.equal(r.states[0], x) and torch.equal(r.next_states[-1], r.samples)
    assert torch.equal(r.states[1:], r.next_states[:-1])


def test_window_start_is_drawn_per_call_from_the_callers_generator():
    g = torch.Generator().manual_seed(0)
    starts = [draw_window_start(24, 2, generator=g, max_start=12) for _ in range(200)]
    assert min(starts) == 0 and max(starts) == 12 and len(set(starts)) == 13
    g2 = torch.Generator().manual_seed(0)
    assert starts == [draw_window_start(24, 2, generator=g2, max_start=12) for _ in range(200)]
    assert max(draw_window_start(4, 3, generator=g) for _ in range(50)) == 1


@pytest.mark.parametrize("kwargs", [dict(window_start=5, window_size=2), dict(window_start=0, window_size=0),
                                    dict(window_start=-1, window_size=2)])
def test_bad_window_is_refused(kwargs):
    with pytest.raises(ValueError):
        fast_grpo_sample(toy_velocity, torch.zeros(1, 2), uniform_grid(6), group_size=1, noise_level=0.7,
                         generator=torch.Generator(), **kwargs)


def test_trunk_and_branches_use_their_own_velocity_callables():
    """The trunk runs at batch B with the prompts' conditions, the branches at batch B * G with the conditions
    repeated per row, so a conditional model sees the right condition in every row."""
    cond = torch.tensor([[1.0], [-2.0], [3.0]])  # one scalar "condition" per prompt
    calls = []

    def trunk(x, t):
        calls.append(("trunk", x.shape[0]))
        return cond.expand_as(x)

    def branches(x, t):
        calls.append(("branch", x.shape[0]))
        return cond.repeat_interleave(2, dim=0).expand_as(x)

    ts = uniform_grid(8)
    r = fast_grpo_sample(trunk, torch.zeros(3, 4), ts, window_start=3, window_size=2, group_size=2, noise_level=0.5,
                         generator=torch.Generator().manual_seed(0), branch_velocity_fn=branches)
    assert calls == [("trunk", 3)] * 3 + [("branch", 6)] * 5
    assert torch.allclose(r.branch_point, cond.expand(3, 4) * 3 / 8)
    assert r.samples.shape == (6, 4)


def test_bf16_states_keep_their_dtype_and_log_probs_are_float32():
    ts = uniform_grid(6)
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    r = fast_grpo_sample(lambda y, t: -y, x, ts, window_start=1, window_size=2, group_size=3, noise_level=0.7,
                         generator=torch.Generator().manual_seed(1))
    assert r.samples.dtype == r.states.dtype == torch.bfloat16 and r.log_probs.dtype == torch.float32
    re = step_log_prob(lambda y, t: -y, r.states[0], r.next_states[0], r.timesteps[0], r.next_timesteps[0],
                       noise_level=0.7)
    assert torch.equal(re.log_prob, r.log_probs[0]) and re.kl is None
