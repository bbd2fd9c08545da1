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


def test_on_meta_builds_the_same_shapes_without_pytorchs_python_decompositions():
    """checkpoint.on_meta: a model built on meta has the parameter and persistent-buffer names, shapes and dtypes of
    a real build; loading the default bundle (every build_checked probe) and MiniLM imports neither sympy nor
    torch._dynamo (their first use cost 1.4-2 s of a cold start)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from foleyflow.checkpoint import on_meta
    from foleyflow.models.generator import Generator, GeneratorConfig
    from foleyflow.models.visual import SyncEncoderConfig, SyncEncoder

    for build in (lambda: Generator(GeneratorConfig(hidden_dim=64, num_heads=2, num_joint_blocks=2, num_audio_blocks=1,
                                                    plan_dim=12)),
                  lambda: SyncEncoder(SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16))):
        with on_meta():
            meta = build()
        real = build()
        assert all(p.is_meta for p in meta.parameters())
        a, b = meta.state_dict(), real.state_dict()
        assert list(a) == list(b)
        assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from foleyflow.bundle import load_bundle_models; from foleyflow.planning import "
            "load_video_planner; from foleyflow.models.text_encoder import load_text_encoder; "
            "load_bundle_models('foleyflow/assets/default'); load_video_planner('foleyflow/assets/default'); "
            "load_text_encoder(); heavy = [m for m in ('sympy', 'torch._dynamo') if m in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
