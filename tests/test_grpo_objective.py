"""GRPO objective pieces (foleyflow.flow.grpo): per-group advantages, the clipped-ratio loss, and one end-to-end step
of Fast-GRPO on a tiny velocity network."""
from __future__ import annotations

import copy

import pytest
import torch

from foleyflow.flow import euler, uniform_grid
from foleyflow.flow.grpo import group_advantages, grpo_loss
from foleyflow.flow.sde import draw_window_start, fast_grpo_sample, step_log_prob


def _grouped_rewards(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    num_groups, size, k = 5, 6, 3
    # each group and each dimension has its own offset and scale, as prompts of different difficulty do
    offsets = torch.randn(num_groups, 1, k, generator=g) * 10
    scales = torch.rand(num_groups, 1, k, generator=g) * 5 + 0.1
    rewards = (offsets + scales * torch.randn(num_groups, size, k, generator=g)).reshape(-1, k)
    return rewards, torch.arange(num_groups).repeat_interleave(size)


def test_advantages_are_zero_mean_and_unit_std_per_group_and_dimension():
    rewards, ids = _grouped_rewards()
    out = group_advantages(rewards, ids, torch.tensor([0.6, 1.0, 0.4]))
    per = out["per_reward"].view(5, 6, 3)
    assert torch.allclose(per.mean(1), torch.zeros(5, 3), atol=1e-5)
    assert torch.allclose(per.std(1, unbiased=False), torch.ones(5, 3), atol=1e-3)
    # the combination is the weighted sum (no clipping at these sizes: |A| <= sqrt(G - 1) * sum |w|)
    assert torch.allclose(out["advantages"], (out["per_reward"] * torch.tensor([0.6, 1.0, 0.4])).sum(1))
    assert torch.allclose(out["advantages"].view(5, 6).mean(1), torch.zeros(5), atol=1e-5)


def test_advantages_do_not_depend_on_row_order_or_reward_scale():
    rewards, ids = _grouped_rewards(1)
    base = group_advantages(rewards, ids)["advantages"]
    perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(group_advantages(rewards[perm], ids[perm])["advantages"], base[perm], atol=1e-6)
    # each dimension is normalised on its own, so a reward's units do not change its weight (up to eps)
    scaled = rewards.double() * torch.tensor([1000.0, 1.0, 0.001]) + torch.tensor([5.0, -3.0, 0.0])
    exact = group_advantages(rewards.double(), ids, eps=0.0)["advantages"]
    assert torch.allclose(group_advantages(scaled, ids, eps=0.0)["advantages"], exact, atol=1e-9)
    assert torch.allclose(exact.float(), base, atol=1e-2)


def test_advantage_edge_cases():
    # a constant group and a group of one give zero advantage; an outlier in a large group is clipped to +-5
    ids = torch.tensor([0, 0, 0, 1] + [2] * 64)
    r = torch.tensor([3.0, 3.0, 3.0, 7.0] + [0.0] * 63 + [1.0])
    a = group_advantages(r, ids)["advantages"]
    assert torch.equal(a[:4], torch.zeros(4))
    assert float(a[-1]) == 5.0 and float(a[4:-1].min()) < 0
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        group_advantages(torch.tensor([1.0, float("nan")]), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), torch.ones(3))


def test_loss_gradient_and_clipping():
    theta = torch.zeros(4, requires_grad=True)
    old = torch.zeros(4)
    adv = torch.tensor([1.0, -1.0, 2.0, -0.5])
    out = grpo_loss(old + theta, old, adv, clip_range=0.1)
    out["grpo/loss"].backward()
    # at ratio 1 the loss is -mean(A) and its gradient -A / n (the REINFORCE direction)
    assert torch.isclose(out["grpo/loss"], -adv.mean()) and torch.allclose(theta.grad, -adv / 4)
    # beyond the clip range the objective stops pushing in the advantage's direction, and only there
    theta = torch.tensor([0.5, 0.5, -0.5, -0.5], requires_grad=True)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    out = grpo_loss(old + theta, old, adv, clip_range=0.1)
    out["grpo/loss"].backward()
    assert theta.grad[0] == 0 and theta.grad[3] == 0  # r > 1 + eps with A > 0; r < 1 - eps with A < 0
    assert theta.grad[1] > 0 and theta.grad[2] < 0  # still pulled back toward the old policy
    assert float(out["grpo/clip_frac"]) == 1.0


def test_kl_term_is_weighted_in():
    lp = torch.zeros(3)
    kl = torch.tensor([0.1, 0.2, 0.3])
    out = grpo_loss(lp, lp, torch.zeros(3), clip_range=1e-4, kl=kl, kl_weight=0.5)
    assert torch.isclose(out["grpo/loss"], torch.tensor(0.1)) and torch.isclose(out["grpo/kl"], torch.tensor(0.2))
    # advantages (N,) broadcast over window steps (W, N)
    out = grpo_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([1.0, 2.0, 3.0])[None], clip_range=0.1)
    assert torch.isclose(out["grpo/loss"], torch.tensor(-2.0))


class TinyVelocity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def forward(self, x, t):
        tt = torch.as_tensor(t, dtype=x.dtype).expand(*x.shape[:-1], 1)
        return self.net(torch.cat([x, tt], dim=-1))


def _grpo_step_changes_reward(sign: float, seed: int) -> float:
    """One Fast-GRPO update toward reward = sign * mean(output); returns the change of that reward on fresh ODE
    samples (same noise before and after)."""
    torch.manual_seed(seed)
    policy = TinyVelocity()
    ref = copy.deepcopy(policy).requires_grad_(False)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-2)
    ts, g = uniform_grid(10), torch.Generator().manual_seed(seed)
    num_prompts, group, a = 4, 8, 0.7

    def reward(x):
        return sign * x.mean(dim=(1, 2))

    start = draw_window_start(10, 2, generator=g, max_start=5)
    x = torch.randn(num_prompts, 6, 2, generator=g)
    r = fast_grpo_sample(policy, x, ts, window_start=start, window_size=2, group_size=group, noise_level=a,
                         generator=g)
    adv = group_advantages(reward(r.samples), torch.arange(num_prompts).repeat_interleave(group))["advantages"]
    opt.zero_grad()
    for k in range(2):  # accumulate over the window steps
        re = step_log_prob(policy, r.states[k], r.next_states[k], r.timesteps[k], r.next_timesteps[k],
                           noise_level=a, ref_velocity_fn=ref)
        out = grpo_loss(re.log_prob, r.log_probs[k], adv, clip_range=1e-4, kl=re.kl, kl_weight=0.04)
        (out["grpo/loss"] / 2).backward()
    fresh = torch.randn(512, 6, 2, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        before = float(reward(euler(policy, fresh, ts)).mean())
        opt.step()
        after = float(reward(euler(policy, fresh, ts)).mean())
    return after - before


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_grpo_step_moves_the_reward_the_right_way(sign):
    # with reward +mean(output) the outputs grow, with -mean(output) they shrink (catches sign errors anywhere)
    gains = [_grpo_step_changes_reward(sign, seed) for seed in range(3)]
    assert all(gain > 0 for gain in gains), gains


def test_plateau_rule_stops_only_on_a_flat_last_part():
    from foleyflow.flow.grpo import plateau_reached

    rising = [(i, 1.0 + 0.05 * i) for i in range(1, 21)]
    assert not plateau_reached(rising, 20, frac=0.2, rel=0.01)        # 1.85 .. 2.0 over the last 20%: 7.8%
    flat = rising[:10] + [(i, 1.5 + 0.001 * (i % 2)) for i in range(11, 21)]
    assert plateau_reached(flat, 20, frac=0.2, rel=0.01)              # spread 0.001 / 1.5
    assert not plateau_reached(flat, 20, frac=0.2, rel=1e-4)
    assert not plateau_reached(flat, 20, frac=0.2, rel=0.01, min_iters=21)
    # the window is the last 20% of *iterations*: a jump at iteration 17 is inside it, one at 15 is not
    jump = [(i, 1.0 if i < 17 else 1.2) for i in range(1, 21)]
    assert not plateau_reached(jump, 20, frac=0.2, rel=0.01)
    assert plateau_reached([(i, 1.0 if i < 15 else 1.2) for i in range(1, 21)], 20, frac=0.2, rel=0.01)
    # too few monitor points in the window (val every 5 iterations: only 20 in [16, 20]) is not a plateau yet
    assert not plateau_reached([(i, 1.0) for i in range(5, 21, 5)], 20, frac=0.2, rel=0.01)
    assert plateau_reached([(i, 1.0) for i in range(5, 21, 5)], 20, frac=0.25, rel=0.01, min_points=2)
    # a window whose mean is 0 with any spread is never flat (relative change undefined)
    assert not plateau_reached([(18, -0.1), (19, 0.0), (20, 0.1)], 20, frac=0.2, rel=0.5)
