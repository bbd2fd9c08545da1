"""benchmarks/bench_mmaudio.py at tiny widths: both sizes' code paths (16 kHz BigVGAN, 44.1 kHz BigVGAN-v2), the
table and JSON with every stage and both schedules, the two schedules' structure (the reference calls the network
twice per step and recomputes the global condition on each call; foleyflow calls it once on a batch of two), and
the same sampled latents from both in float32."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

if importlib.util.find_spec("bigvgan") is None or importlib.util.find_spec("open_clip") is None:
    pytest.skip("the mmaudio extra (open-clip-torch, bigvgan) is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_mmaudio as B  # noqa: E402


@pytest.fixture(autouse=True)
def _keep_threads():
    n = torch.get_num_threads()   # main(--threads 1) sets torch's global thread count
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("size", B.SIZES)
def test_tiny_run_reports_every_stage_of_both_schedules(size, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert B.main(["--size", size, "--tiny", "--runs", "1", "--duration", "1", "--steps", "2", "--precision", "fp32",
                   "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("CPU: ") and "| stage | reference median s | foleyflow median s | ratio" in text
    for row in ("clip (8 frames)", "synchformer (25 frames)", "text", "sampling (2 steps, guidance 4.5)", "vae",
                "vocoder", "total", *B.GROUPS):
        assert f"| {row} |" in text
    rec = json.loads(out.read_text())
    assert rec["size"] == size and rec["tiny"] and rec["foleyflow"]["precision"] == "fp32"
    for sched in B.SCHEDULES:
        assert len(rec["times"][sched]) == 1 and set(rec["times"][sched][0]) == set(B.STAGES)
        assert set(rec["median"][sched]) == set(B.STAGES) | set(B.GROUPS)
        assert all(v > 0 for v in rec["median"][sched].values())
    assert set(rec["ratio"]) == set(B.STAGES) | set(B.GROUPS)
    # float32 against float32: the schedule changes the speed, not the result
    assert rec["rel_l2"]["latents"] < 1e-5 and rec["rel_l2"]["audio"] < 1e-5
    assert rec["rel_l2"]["visual"] < 1e-6
    assert rec["parameters"]["vocoder"] > 0 and rec["peak_rss_gb"] > 0


def test_schedules_differ_in_calls_not_in_latents():
    pipe = B.build_pipeline("fp32", "large_44k_v2", tiny=True)
    assert pipe.sample_rate == 44100 and pipe.vocoder.cfg.mel_setting == "44k"
    opts = pipe.options(steps=3, cfg_scale=4.5, seed=0)
    net = pipe.generator
    inp = B.inputs(pipe, 1.0, seed=3)
    calls, mlp = [], []
    velocity = net.velocity
    net.velocity = lambda x, t, c, **kw: calls.append(x.shape[0]) or velocity(x, t, c, **kw)
    hook = net.global_cond_mlp.register_forward_hook(lambda *a: mlp.append(1))
    from foleyflow.nn.layers import ConvSwiGLU
    products = []
    as_products = ConvSwiGLU._forward_gemm
    ConvSwiGLU._forward_gemm = lambda self, x: products.append(1) or as_products(self, x)
    got = {}
    try:
        for sched in (B.Reference(pipe, 3, 4.5), B.Foleyflow(pipe, opts)):
            calls.clear()
            mlp.clear()
            products.clear()
            _, out = B.run(sched, inp)
            got[sched.name] = out["latents"]
            if sched.name == "reference":   # two batch-1 calls per step, the global MLP on each (+2 to prepare)
                assert calls == [1] * 6 and len(mlp) == 6 + 2
                assert not products         # the ConvMLP as the reference's convolutions
                assert not any("gemm" in m.__dict__ for m in net.modules())   # restored afterwards
            else:                           # one batch-2 call per step, the global condition prepared once each
                assert calls == [2] * 3 and len(mlp) == 2
                assert products             # fp32: foleyflow's matrix products
    finally:
        ConvSwiGLU._forward_gemm = as_products
        hook.remove()
        del net.velocity
    assert got["reference"].shape == (1, net.cfg.seq_lengths(1.0)[0], 40)
    err = (got["foleyflow"] - got["reference"]).norm() / got["reference"].norm()
    assert err < 1e-5
    # a different guidance scale changes the latents (the comparison is not vacuous)
    other = B.Reference(pipe, 3, 2.0)
    with torch.inference_mode():
        text = other.text(B.PROMPT)
        visual, sync = pipe.semantic(inp["frames8"]), pipe.sync(inp["frames25"])[:, :net.cfg.seq_lengths(1.0)[2]]
    assert (other.sample(visual, sync, text, inp["x0"], 1.0) - got["reference"]).norm() > 1e-3
