import pytest
import torch

from foleyflow.checkpoint import (checkpoint_config, flatten_state, load_checkpoint, load_into, save_checkpoint,
                                  unflatten_state)
from foleyflow.errors import CheckpointError


def test_roundtrip_kind_and_config(tmp_path):
    net = torch.nn.Linear(3, 2)
    p = save_checkpoint(tmp_path / "a.safetensors", net.state_dict(), kind="vae", config={"w": 3},
                        provenance={"seed": 1})
    tensors, meta = load_checkpoint(p, kind="vae")
    assert checkpoint_config(meta) == {"w": 3}
    other = torch.nn.Linear(3, 2)
    load_into(other, tensors)
    assert torch.equal(other.weight, net.weight)
    with pytest.raises(CheckpointError, match="'vae' checkpoint, expected 'vocoder'"):
        load_checkpoint(p, kind="vocoder")
    with pytest.raises(CheckpointError, match="shape"):
        load_into(torch.nn.Linear(4, 2), tensors)
    assert not list(tmp_path.glob(".*tmp"))


def test_corrupt_and_missing(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors")


def test_flatten_optimizer_state():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, skel = flatten_state(opt.state_dict())
    back = unflatten_state(tensors, skel)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    opt2.load_state_dict(back)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
