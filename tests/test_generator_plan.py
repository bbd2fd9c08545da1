"""The generator's plan pathway (issue 19 item 3): a time-aligned plan track added to the frame-aligned condition."""
from __future__ import annotations

import pytest
import torch

from foleyflow.errors import FoleyError
from foleyflow.models.generator import Conditions, Generator, GeneratorConfig

SMALL = dict(hidden_dim=32, num_heads=2, num_joint_blocks=1, num_audio_blocks=1, latent_channels=4, visual_dim=6,
             sync_dim=5, text_dim=7, text_len=3, duration_s=1.0)
PLAN_DIM = 12


def make(plan_dim: int = PLAN_DIM, seed: int = 0, *, live: bool = True) -> Generator:
    """A small generator; `live`: every zero-initialised tensor but the plan pathway's re-drawn (adaLN and output
    layers start at zero, which would hide every path), so the pathway itself starts as initialised."""
    torch.manual_seed(seed)
    net = Generator(GeneratorConfig.preset("tiny", **SMALL, plan_dim=plan_dim))
    plan = [] if plan_dim == 0 else [net.plan_input_proj[-1].weight, net.plan_input_proj[-1].bias,
                                     net.empty_plan_feat]
    with torch.no_grad():
        for p in net.zero_initialised():
            if live and not any(p is q for q in plan):
                p.normal_(0, 0.1)
        net.set_latent_stats(torch.zeros(4), torch.ones(4))
        net.set_empty_text(torch.randn(3, 7))
    return net


def inputs(net: Generator, b: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    c = net.cfg
    return dict(latent=torch.randn(b, net.latent_len, c.latent_channels, generator=g),
                visual=torch.randn(b, net.visual_len, c.visual_dim, generator=g),
                sync=torch.randn(b, net.sync_len, c.sync_dim, generator=g),
                text=torch.randn(b, c.text_len, c.text_dim, generator=g),
                plan=torch.rand(b, net.latent_len, PLAN_DIM, generator=g))


def test_plan_dim_zero_keeps_the_old_state_dict_and_numbers():
    old = make(0)
    assert not any("plan" in k for k in old.state_dict())
    new = make(PLAN_DIM)
    extra = set(new.state_dict()) - set(old.state_dict())
    assert set(old.state_dict()) <= set(new.state_dict())
    assert extra and all(k.startswith(("plan_input_proj.", "empty_plan_feat")) for k in extra)
    # a plan given to a network without the pathway is carried along and ignored
    x = inputs(old)
    a = old(x["latent"], x["visual"], x["sync"], x["text"], 0.3)
    b = old(x["latent"], x["visual"], x["sync"], x["text"], 0.3, plan=x["plan"])
    assert torch.equal(a, b)


def test_zero_init_pathway_is_an_exact_no_op():
    net = make()
    x = inputs(net)
    with torch.no_grad():
        without = net(x["latent"], x["visual"], x["sync"], x["text"], 0.4)
        with_plan = net(x["latent"], x["visual"], x["sync"], x["text"], 0.4, plan=x["plan"])
        # the same weights without the pathway (plan_dim = 0) give the same numbers
        old = make(0)
        old.load_state_dict({k: v for k, v in net.state_dict().items() if "plan" not in k})
        ref = old(x["latent"], x["visual"], x["sync"], x["text"], 0.4)
    assert torch.equal(without, with_plan)
    assert torch.equal(without, ref)


def test_training_makes_the_plan_change_the_velocity_and_gradients_reach_the_projection():
    net = make()
    x = inputs(net)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    target = torch.randn(x["latent"].shape, generator=torch.Generator().manual_seed(5))
    for step in range(4):
        v = net(x["latent"], x["visual"], x["sync"], x["text"], 0.5, plan=x["plan"])
        loss = (v - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        if step == 0:  # the zero last layer gets a gradient; the layers before it only after it has moved
            assert net.plan_input_proj[-1].weight.grad.abs().sum() > 0
        else:
            assert net.plan_input_proj[0].weight.grad.abs().sum() > 0
        opt.step()
    with torch.no_grad():
        a = net(x["latent"], x["visual"], x["sync"], x["text"], 0.5, plan=x["plan"])
        b = net(x["latent"], x["visual"], x["sync"], x["text"], 0.5)
        c = net(x["latent"], x["visual"], x["sync"], x["text"], 0.5, plan=torch.zeros_like(x["plan"]))
    assert (a - b).abs().max() > 1e-4 and (a - c).abs().max() > 1e-4


def test_empty_plan_is_used_when_absent_and_in_the_unconditional_branch():
    net = make()
    with torch.no_grad():
        for p in net.zero_initialised():
            p.normal_(0, 0.1)
    x = inputs(net)
    empty = net.empty_plan_feat[None].expand(2, net.latent_len, -1)
    with torch.no_grad():
        a = net(x["latent"], x["visual"], x["sync"], x["text"], 0.2)
        b = net(x["latent"], x["visual"], x["sync"], x["text"], 0.2, plan=empty)
        u = net.empty_conditions(2)
        u2 = net.prepare_conditions(net.empty_clip_feat[None].expand(2, net.visual_len, -1),
                                    net.empty_sync_feat[None].expand(2, net.sync_len, -1),
                                    net.empty_string_feat[None].expand(2, -1, -1), plan=empty)
    assert torch.equal(a, b)
    assert torch.allclose(u.sync, u2.sync, atol=1e-6)


def test_prepare_carries_the_plan_of_conditions_with_duration():
    net = make()
    with torch.no_grad():
        for p in net.zero_initialised():
            p.normal_(0, 0.1)
    x = inputs(net)
    c = Conditions(x["visual"], x["sync"], x["text"], 1.0, plan=x["plan"])
    p1 = net.prepare(c)
    p0 = net.prepare(Conditions(x["visual"], x["sync"], x["text"], 1.0))
    assert p1.latent_len == net.latent_len and not torch.allclose(p1.sync, p0.sync)
    assert torch.equal(p1.visual, p0.visual) and torch.equal(p1.global_cond, p0.global_cond)


def test_plan_track_of_the_wrong_length_is_a_one_line_error():
    net = make()
    x = inputs(net)
    with pytest.raises(FoleyError) as e:
        net(x["latent"], x["visual"], x["sync"], x["text"], 0.2, plan=x["plan"][:, :-1])
    assert "\n" not in str(e.value) and "plan track" in str(e.value)
    with pytest.raises(FoleyError):
        net(x["latent"], x["visual"], x["sync"], x["text"], 0.2, plan=x["plan"][..., :-1])


def test_plan_dim_travels_with_the_checkpoint(tmp_path):
    from foleyflow.models.generator_io import load_generator, save_generator

    net = make()
    with torch.no_grad():
        for p in net.zero_initialised():
            p.normal_(0, 0.1)
    save_generator(tmp_path / "g.safetensors", net)
    back = load_generator(tmp_path / "g.safetensors")
    assert back.cfg.plan_dim == PLAN_DIM
    x = inputs(net)
    with torch.no_grad():
        assert torch.equal(net.eval()(x["latent"], x["visual"], x["sync"], x["text"], 0.3, plan=x["plan"]),
                           back(x["latent"], x["visual"], x["sync"], x["text"], 0.3, plan=x["plan"]))
