import random

import numpy as np
import torch

from foleyflow.train.ema import EMA
from foleyflow.train.run import list_states
from foleyflow.train.state import load_train_state, rng_state, save_train_state, set_rng_state


def _step(net, opt, gen):
    x = torch.randn(8, 4, generator=gen)
    loss = (net(x) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_resume_is_identical(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    ema = EMA(net, decay=0.9)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        _step(net, opt, gen)
        ema.update(net)
    save_train_state(tmp_path / "state_00000003.safetensors", kind="toy", config={"a": 1},
                     state={"model": net.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                            "step": 3, "gen": gen.get_state(), "rng": rng_state()})
    # continue the original run
    for _ in range(2):
        _step(net, opt, gen)
        ema.update(net)
    # a fresh process resumes
    net2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-2)
    ema2 = EMA(net2, decay=0.9)
    state, _ = load_train_state(list_states(tmp_path)[-1], kind="toy")
    net2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optimizer"])
    ema2.load_state_dict(state["ema"])
    gen2 = torch.Generator()
    gen2.set_state(state["gen"])
    assert state["step"] == 3
    for _ in range(2):
        _step(net2, opt2, gen2)
        ema2.update(net2)
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(ema.model.parameters(), ema2.model.parameters()):
        assert torch.equal(a, b)


def test_rng_state_roundtrip():
    s = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(s)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_schedules_warm_up_then_decay():
    import math

    import pytest

    from foleyflow.train.schedule import warmup_cosine, warmup_step_decay

    assert warmup_step_decay(0, 10) == pytest.approx(0.1) and warmup_step_decay(9, 10) == 1.0
    assert warmup_step_decay(99, 10, [100, 200]) == 1.0
    assert warmup_step_decay(100, 10, [100, 200]) == pytest.approx(0.1)
    assert warmup_step_decay(200, 10, [100, 200]) == pytest.approx(0.01)
    assert warmup_cosine(4, 10, 110, floor=0.1) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 110, floor=0.1) == 1.0
    assert warmup_cosine(60, 10, 110, floor=0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert warmup_cosine(110, 10, 110, floor=0.1) == pytest.approx(0.1)
    assert warmup_cosine(10**6, 10, 110, floor=0.02) == pytest.approx(0.02)


def test_optim_config_schedules_and_builder():
    import pytest

    from foleyflow.errors import ConfigError
    from foleyflow.train.schedule import OptimConfig, build_optimizer, lr_at, set_lr

    step = OptimConfig(lr=2.0, warmup_steps=10, decay_steps=[100])
    assert lr_at(step, 0, 1000) == pytest.approx(0.2) and lr_at(step, 100, 1000) == pytest.approx(0.2)
    cos = OptimConfig(lr=1.0, schedule="cosine", warmup_steps=10, floor=0.1)
    assert lr_at(cos, 110, 110) == pytest.approx(0.1) and lr_at(cos, 10, 110) == 1.0
    exp = OptimConfig(lr=2e-4, schedule="exponential", gamma=0.999, warmup_steps=5)  # no warm-up: as the vocoder's
    assert lr_at(exp, 250, 1000) == 2e-4 * 0.999 ** 2.5 and lr_at(exp, 0, 1000) == 2e-4
    net = torch.nn.Linear(2, 2)
    opt = build_optimizer(net.parameters(), OptimConfig(lr=0.5, betas=(0.8, 0.9), weight_decay=0.0))
    assert opt.param_groups[0]["betas"] == (0.8, 0.9) and opt.param_groups[0]["weight_decay"] == 0.0
    set_lr(opt, 0.25)
    assert opt.param_groups[0]["lr"] == 0.25
    with pytest.raises(ConfigError, match="optim.schedule"):
        build_optimizer(net.parameters(), OptimConfig(schedule="linear"))
