"""Dynamic int8 quantisation of the generator (`FoleyPipeline(quantize="int8")`, `--quantize int8`) and the closeness
benchmark (benchmarks/closeness.py), on tiny models and media made by the test."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from foleyflow.errors import FoleyError
from foleyflow.models.generator import GeneratorConfig
from foleyflow.models.generator_sampling import generate, int8_copy, int8_targets
from foleyflow.options import check_quantize
from foleyflow.pipeline import FoleyPipeline
from test_generator import SMALL, inputs, randomised
from test_pipeline import TEXT_CFG, cli, make_video, tiny_bundle

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)
ROOT = Path(__file__).resolve().parents[1]


def quantised(module: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return isinstance(module, DynamicLinear)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from foleyflow.models.text_encoder import load_text_encoder

    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", load_text_encoder(TEXT_CFG))


def no_engine(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends, "quantized", SimpleNamespace(engine="none", supported_engines=["none"]))


def test_int8_copy_quantises_the_linears_and_stays_close_to_fp32():
    net = randomised(GeneratorConfig(**SMALL))
    q = int8_copy(net)
    names = int8_targets(net)
    mods = dict(q.named_modules())
    assert names and all(quantised(mods[n]) for n in names)
    assert quantised(q.joint_blocks[0].latent_block.attn.qkv) and quantised(q.fused_blocks[0].adaLN_modulation[1])
    # the time embedder's Linear layers and every convolution stay float32; the original is untouched
    assert type(q.t_embed.mlp[0]) is nn.Linear and q.fused_blocks[0].ffn.w1.weight.dtype == torch.float32
    assert not any(quantised(m) for m in net.modules())
    x, v, s, t = inputs(net)
    with torch.no_grad():
        ref = generate(net, x, v, s, t, num_steps=4)
        low = generate(q, x, v, s, t, num_steps=4)
        other_seed = generate(net, torch.randn_like(x), v, s, t, num_steps=4)
    err = float((low - ref).norm() / ref.norm())
    assert 0 < err < 0.1, err                                  # quantised (not bit-equal), and close
    assert err < 0.1 * float((other_seed - ref).norm() / ref.norm())


def test_no_quantized_engine_and_bad_settings_are_one_line_errors(monkeypatch):
    net = randomised(GeneratorConfig(**SMALL))
    with pytest.raises(FoleyError, match="unknown quantisation 'int4'"):
        check_quantize("int4")
    with pytest.raises(FoleyError, match="use --device cpu"):
        check_quantize("int8", "cuda")
    with pytest.raises(FoleyError, match="leave out --precision bf16"):
        check_quantize("int8", "cpu", "bf16")
    assert check_quantize(None, "cuda", "bf16") is None and check_quantize("int8", "cpu", "fp32") == "int8"
    no_engine(monkeypatch)
    with pytest.raises(FoleyError, match="no quantized CPU engine") as e:
        int8_copy(net)
    assert "\n" not in str(e.value)


def test_pipeline_samples_with_the_quantised_copy(bundle):
    fp32 = FoleyPipeline.from_bundle(bundle, precision="fp32")
    q = fp32.variant(quantize="int8")
    assert q.quantize == "int8" and q.precision == "fp32" and fp32.quantize is None
    assert quantised(q._sampling_net.joint_blocks[0].latent_block.attn.qkv)
    assert q.generator is fp32.generator and not quantised(q.generator.joint_blocks[0].latent_block.attn.qkv)
    c = fp32.conditions(duration_s=2.0)
    opts = fp32.options(steps=3, seed=1)
    a, b = fp32.sample(c, opts), q.sample(c, opts)
    assert not torch.equal(a, b) and float((a - b).norm() / a.norm()) < 0.1
    r = q.generate(None, duration_s=1.5, steps=2)
    assert r.quantize == "int8" and r.precision == "fp32" and r.audio.shape == (2, 24000)
    assert fp32.generate(None, duration_s=1.5, steps=2).quantize is None
    with pytest.raises(FoleyError, match="leave out --precision bf16"):
        FoleyPipeline.from_bundle(bundle, precision="bf16", quantize="int8")


def test_cli_quantize_reaches_the_pipeline(monkeypatch, capsys, bundle, tmp_path):
    seen = []
    real = FoleyPipeline.from_bundle.__func__

    def spy(cls, *a, **kw):
        seen.append(kw.get("quantize"))
        return real(cls, *a, **kw)

    monkeypatch.setattr(FoleyPipeline, "from_bundle", classmethod(spy))
    out = tmp_path / "q.wav"
    code, stdout, err = cli(capsys, "generate", "--duration", "1", "--steps", "2", "--bundle", bundle, "--threads", "1",
                            "--quantize", "int8", "-o", out)
    assert code == 0, err
    assert seen == ["int8"] and "fp32 int8, 2 euler steps" in stdout and out.is_file()
    code, _, err = cli(capsys, "generate", "--duration", "1", "--bundle", bundle, "--quantize", "int8", "--precision",
                       "bf16", "-o", tmp_path / "b.wav")
    assert code == 2 and err.strip().startswith("error: --quantize int8") and len(err.strip().splitlines()) == 1
    no_engine(monkeypatch)
    code, _, err = cli(capsys, "generate", "--duration", "1", "--bundle", bundle, "--quantize", "int8",
                       "-o", tmp_path / "c.wav")
    assert code == 2 and "no quantized CPU engine" in err and len(err.strip().splitlines()) == 1
    assert seen == ["int8"]                                     # refused before any model was loaded
    from foleyflow.cli import build_parser

    parser = build_parser()
    for argv in (["generate-set", "m.jsonl", "--out", "d"], ["batch", "d", "--out", "o"], ["serve", "--jobs", "j"],
                 ["ui"]):
        assert parser.parse_args(argv + ["--quantize", "int8"]).quantize == "int8"
        assert parser.parse_args(argv).quantize is None
    with pytest.raises(SystemExit):
        parser.parse_args(["generate", "--quantize", "int4"])


def load_closeness():
    spec = importlib.util.spec_from_file_location("closeness", ROOT / "benchmarks" / "closeness.py")
    closeness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(closeness)
    return closeness


def test_closeness_benchmark_runs_on_a_tiny_bundle(bundle, tmp_path, capsys):
    closeness = load_closeness()
    assert closeness.parse_candidate("sampler=heun,steps=10,quantize=int8") == ({"sampler": "heun", "steps": 10},
                                                                                 "int8")
    for bad in ("steps", "sampler=rk9", "quantize=int4"):
        with pytest.raises(FoleyError):
            closeness.parse_candidate(bad)
    clips = tmp_path / "clips"
    clips.mkdir()
    make_video(clips / "a.mp4", 1.5, audio=False)
    out = tmp_path / "c.json"
    assert closeness.main(["--bundle", str(bundle), "--clips", str(clips), "--ref-steps", "3", "--candidates",
                           "steps=2", "quantize=int8", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("CPU: ") and "quantize=int8" in text
    rows = json.loads(out.read_text())["settings"]
    assert set(rows) == {"reference", "seed", "steps=2", "quantize=int8"}
    seed, q, fewer = rows["seed"], rows["quantize=int8"], rows["steps=2"]
    assert seed["latent"] > 0.5 and seed["mel_db"] > 0
    assert 0 < q["latent"] < seed["latent"] and 0 < fewer["latent"] < seed["latent"]
    assert q["equal"] == "yes" and q["quantize"] == "int8" and all(r["time_s"] > 0 for r in rows.values())


def test_closeness_mmaudio_mode_samples_random_features(bundle, tmp_path, capsys, monkeypatch):
    """--mmaudio: bench_mmaudio's builder (here replaced by the tiny bundle, the real one needs 6 GB) and seeded random
    features of the generator's shapes instead of clips."""
    import sys

    built = []

    def build_pipeline(precision):
        built.append(precision)
        return FoleyPipeline.from_bundle(bundle, precision=precision)

    spec = importlib.util.spec_from_file_location("bench_mmaudio_real", ROOT / "benchmarks" / "bench_mmaudio.py")
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    sampled = []

    def reference_sample(net, *args):   # MMAudio's schedule, timed beside the settings
        sampled.append(args[-2])
        return real.reference_sample(net, *args)

    monkeypatch.setitem(sys.modules, "bench_mmaudio", SimpleNamespace(
        build_pipeline=build_pipeline, reference_text=real.reference_text, reference_sample=reference_sample))
    closeness = load_closeness()
    out = tmp_path / "m.json"
    assert closeness.main(["--mmaudio", "small_16k", "--num-clips", "2", "--ref-steps", "2", "--candidates",
                           "quantize=int8", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert built == ["fp32"] and "random features 1" in text and "vs MMAudio" in text
    assert sampled == [1, 2, 2]          # a one-step warm-up, then the reference's steps once per clip
    rows = json.loads(out.read_text())["settings"]
    assert len(rows["quantize=int8"]["per_clip"]["latent"]) == 2
    mm = rows["mmaudio_schedule"]["time_s"]
    assert mm > 0 and rows["quantize=int8"]["vs_mmaudio"] == pytest.approx(mm / rows["quantize=int8"]["time_s"])
    assert closeness.main(["--mmaudio", "large_44k"]) == 2          # no builder: one line
