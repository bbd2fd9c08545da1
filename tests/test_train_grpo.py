"""The GRPO recipe (recipes/train_grpo.py) on the tiny untrained test bundle, tiny untrained reward checkpoints and
a few FoleyWorld clips made here: the ratio is exactly 1 before the first update, resume is exact, accumulation
steps as configured, only `train` clips are used, bad inputs are one-line errors, and (slow) one GRPO step of a
small_16k-shaped network with 2 gloo processes under torchrun."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from foleyflow.rewards.common import save_reward
from foleyflow.train.run import read_metrics
from reward_helpers import ROOT, tiny_model, world_manifest

DEBUG = ROOT / "configs" / "train_grpo" / "debug.yaml"


def tiny_bundle(folder: Path, **kw) -> Path:
    """An untrained bundle with a 1.5 s window and tiny models (MiniLM text budget 64: FoleyWorld captions fit)."""
    from foleyflow.bundle import build_untrained_bundle
    from foleyflow.models.text_encoder import TextEncoderConfig
    from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig

    args = dict(seed=0, window_s=1.5, generator_overrides=dict(hidden_dim=32, num_heads=2, num_joint_blocks=1,
                                                               num_audio_blocks=1),
                semantic_cfg=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
                sync_cfg=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16),
                text_cfg=TextEncoderConfig(seq_len=64, part_seq_len=64), name="grpo-test")
    return build_untrained_bundle(folder, **{**args, **kw})


def recipe():
    spec = importlib.util.spec_from_file_location("recipe_train_grpo", ROOT / "recipes" / "train_grpo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def grpo(tmp_path_factory):
    return recipe()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """bundle, manifest (4 train clips of 3 s and 2 val rows), and the semantic and temporal reward checkpoints."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("grpo")
    bundle = tiny_bundle(d / "bundle")
    train = world_manifest(tmp_path_factory)
    rows = [json.loads(line) for line in Path(train).read_text().splitlines()]
    base = Path(train).parent
    for r in rows:  # absolute paths, so the manifest can live elsewhere
        for k in ("video", "audio", "truth"):
            if r.get(k):
                r[k] = str((base / r[k]).resolve())
    val = [dict(r, id=f"val-{r['id']}", split="val") for r in rows[:2]]
    manifest = d / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in val + rows))
    rewards = {}
    for name in ("semantic", "temporal", "aesthetic"):
        rewards[name] = save_reward(d / f"reward_{name}.safetensors", tiny_model(name), f"reward_{name}",
                                    provenance={"config": {"data": {"text_encoder": "hashed"}}})
    return {"bundle": bundle, "manifest": manifest, "rewards": rewards, "train_ids": [r["id"] for r in rows],
            "val_ids": [r["id"] for r in val]}


def argv(inputs, out, *extra):
    return ["--config", str(DEBUG), f"out_dir={out}", f"bundle={inputs['bundle']}", f"manifest={inputs['manifest']}",
            f"rewards.semantic.checkpoint={inputs['rewards']['semantic']}",
            f"rewards.temporal.checkpoint={inputs['rewards']['temporal']}", *extra]


def test_debug_run_ratio_one_before_update_train_clips_only_and_accumulation(grpo, inputs, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    # 4 clips per iteration, 1 per micro-batch, window 2: 8 backwards per iteration; accum 4 -> 2 updates each
    assert grpo.main(argv(inputs, out, "clips_per_iter=4", "accum=4", "steps=2", "val_every=2", "val_clips=2")) == 0
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [0, 1, 2]
    start, rows = rows[0], rows[1:]      # step 0: the starting weights' val monitor, no compute
    assert {"val/semantic", "val/temporal"} <= set(start) and start["compute/core_s"] == 0 == start["train/updates"]
    for r in rows:
        assert r["grpo/ratio_dev_first"] == 0.0          # the recipe's recompute equals the rollout bit for bit
        ids = [i for rank_ids in r["clips"].values() for i in rank_ids]
        assert len(ids) == 4 and set(ids) <= set(inputs["train_ids"])   # never the val rows
        assert {"reward/semantic", "reward/temporal", "grpo/loss", "grpo/kl", "grpo/clip_frac"} <= set(r)
    assert [r["train/updates"] for r in rows] == [2, 4]
    assert "val/semantic" not in rows[0] and {"val/semantic", "val/temporal"} <= set(rows[1])   # reward models only
    # the window start varies with the iteration (drawn from (seed, iteration, rank), not a fixed per-process seed)
    starts = {grpo.draw_window_start(4, 2, generator=grpo.iteration_generator(0, i, 0), max_start=2)
              for i in range(12)}
    assert len(starts) > 1
    # exports: a generator checkpoint with the starting producers and the GRPO provenance; TB has samples
    from foleyflow.checkpoint import PROVENANCE, read_metadata
    from foleyflow.models.generator_io import load_generator

    prov = json.loads(read_metadata(out / "generator_ema.safetensors")[PROVENANCE])
    assert "producers" in prov and len(prov["grpo"]["bundle_sha256"]) == 64
    assert set(prov["grpo"]["rewards"]) == {"semantic", "temporal"}      # aesthetic weight 0: not loaded
    assert all(len(v["sha256"]) == 64 for v in prov["grpo"]["rewards"].values())
    start = load_generator(Path(inputs["bundle"]) / "generator.safetensors")
    tuned = load_generator(out / "generator.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(start.state_dict().values(), tuned.state_dict().values()))
    assert any((out / "tb").iterdir())
    # the export is bundle-ready: assemble_bundle (what recipes/assemble_bundle.py --generator calls) takes it
    from foleyflow.bundle import assemble_bundle, load_bundle_models, read_bundle, text_config_from_bundle

    info = read_bundle(inputs["bundle"])
    f = info.files
    tuned_bundle = assemble_bundle(tmp_path / "tuned", generator=out / "generator_ema.safetensors", vae=f["vae"],
                                   vocoder=f["vocoder"], semantic_encoder=f["semantic_encoder"],
                                   sync_encoder=f["sync_encoder"], text_cfg=text_config_from_bundle(info),
                                   name="grpo-tuned", trained_on="test")
    assert load_bundle_models(tuned_bundle)[2]["generator"].cfg == start.cfg


def test_accumulation_steps_the_optimiser_every_accum_backwards(grpo, inputs, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    calls = []
    real = torch.optim.AdamW.step

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", counting)
    # 2 clips x window 2 = 4 backwards per iteration; accum 1 -> 4 updates, accum 4 -> 1 update per iteration
    grpo.main(argv(inputs, tmp_path / "a1", "accum=1", "steps=1"))
    assert len(calls) == 4
    calls.clear()
    grpo.main(argv(inputs, tmp_path / "a4", "accum=4", "steps=1"))
    assert len(calls) == 1
    from foleyflow.errors import ConfigError

    with pytest.raises(ConfigError, match="accum 3 must divide"):
        grpo.main(argv(inputs, tmp_path / "a3", "accum=3"))


def test_resumed_run_equals_uninterrupted_run_with_lora(grpo, inputs, tmp_path):
    torch.set_num_threads(1)
    extra = ("lora.rank=2", "lora.targets=[attn.qkv,clip_input_proj.0]", "ckpt_every=2")
    grpo.main(argv(inputs, tmp_path / "full", "steps=4", *extra))
    grpo.main(argv(inputs, tmp_path / "split", "steps=2", *extra))
    import shutil

    same = tmp_path / "moved_bundle"               # the same files elsewhere: the run resumes from them
    shutil.copytree(inputs["bundle"], same)
    grpo.main(argv(inputs, tmp_path / "split", "steps=4", *extra, f"bundle={same}"))
    for name in ("generator.safetensors", "generator_ema.safetensors"):
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(tmp_path / "split" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), (name, k)
    # the LoRA export has the plain generator's keys (assemble_bundle takes it) and only adapted layers changed
    start = load_file(str(Path(inputs["bundle"]) / "generator.safetensors"))
    tuned = load_file(str(tmp_path / "full" / "generator.safetensors"))
    assert start.keys() == tuned.keys()
    changed = {k for k in start if not torch.equal(start[k], tuned[k])}
    assert changed and all(("attn.qkv" in k or "clip_input_proj.0" in k) and k.endswith("weight") for k in changed)
    assert [r["step"] for r in read_metrics(tmp_path / "split")] == [1, 2, 3, 4]
    # another bundle at the run's bundle path (e.g. a new default model) would change the policy's start and the KL
    # reference under a resumed run: refused with one line, nothing written
    from foleyflow.train.run import ResumeError

    other = tiny_bundle(tmp_path / "other", seed=1)
    before = sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir())
    with pytest.raises(ResumeError, match="resume with bundle= the original files") as e:
        grpo.main(argv(inputs, tmp_path / "split", "steps=6", *extra, f"bundle={other}"))
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in (tmp_path / "split" / "checkpoints").iterdir()) == before


def run_cli(inputs, out, *extra, nproc=0, timeout=300):
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc
           else [sys.executable])
    cmd += [str(ROOT / "recipes" / "train_grpo.py"), *argv(inputs, out, *extra)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize("extra, message", [
    (("rewards.temporal.checkpoint=/nonexistent/reward.safetensors",), "rewards.temporal.checkpoint not found"),
    (("rewards.temporal.checkpoint={aesthetic}",), "expected 'reward_temporal'"),
    (("rewards.semantic.weightt=1",), "weightt"),
    (("rewards.spatial.weight=1",), "rewards.spatial.checkpoint is required"),
    (("sampling.window=9",), "sampling.window must be"),
    (("plan=sometimes",), "plan must be one of bundle, auto, truth, none"),
    (("stop.frac=0.2",), "stop.frac must be in"),                       # the stop rule needs the val monitor
    (("stop.frac=0.2", "val_every=1", "stop.key=val/aesthetic"), "stop.key val/aesthetic is not a reward"),
])
def test_bad_reward_checkpoint_or_config_is_a_one_line_error(grpo, inputs, tmp_path, extra, message):
    from foleyflow.errors import FoleyError

    extra = [e.format(**inputs["rewards"]) for e in extra]
    with pytest.raises(FoleyError, match=message) as info:
        grpo.main(argv(inputs, tmp_path / "bad", *extra))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bad").exists()   # refused before the run folder is made


def test_plateau_stop_compute_logs_and_a_zero_weight_reward_is_not_loaded(grpo, inputs, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    loaded = []
    from foleyflow.rewards import aesthetic

    real = aesthetic.load_aesthetic_reward
    monkeypatch.setattr(aesthetic, "load_aesthetic_reward", lambda p: loaded.append(p) or real(p))
    starts, sample = [], grpo.fast_grpo_sample
    monkeypatch.setattr(grpo, "fast_grpo_sample", lambda *a, **k: starts.append(k["window_start"]) or sample(*a, **k))
    out = tmp_path / "run"
    # aesthetic weight 0 with a checkpoint that does not exist: never opened, never scored. The stop rule with a
    # huge tolerance over all iterations (frac 1) stops at the first val point with 3 monitor values: iteration 3.
    extra = ("rewards.aesthetic.checkpoint=/nonexistent/reward_aesthetic.safetensors", "steps=6", "val_every=1",
             "val_clips=1", "stop.frac=1.0", "stop.rel=1.0e9", "ckpt_every=5", "sample_every=0")
    assert grpo.main(argv(inputs, out, *extra)) == 0
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [0, 1, 2, 3] and "train/stopped" not in rows[0]   # 0: the start's monitor
    rows = rows[1:]
    assert [r["train/stopped"] for r in rows] == [0.0, 0.0, 1.0]
    from foleyflow.train.run import state_path
    assert state_path(out, 3).is_file()                                    # saved at the stop
    assert not loaded and not any("aesthetic" in k for r in rows for k in r)
    # one window start per micro-batch (2 per iteration here), not one per iteration or process
    assert len(starts) == 6 and any(starts[i] != starts[i + 1] for i in (0, 2, 4))
    assert [r["train/window_start"] for r in rows] == [sum(starts[i:i + 2]) / 2 for i in (0, 2, 4)]
    # the weighted val monitor is the weighted sum of the loaded rewards' val scores (debug: weights 1, 1)
    assert rows[0]["val/weighted"] == pytest.approx(rows[0]["val/semantic"] + rows[0]["val/temporal"], rel=1e-5)
    # compute: debug = 2 clips x group 3, 4 steps, window 2, no guidance, one process
    for r in rows:
        start = r["train/window_start"]
        assert r["compute/sample_rows"] == r["compute/nfe_rows"] == 2 * (start + 3 * (4 - start))
        assert r["compute/train_rows"] == 2 * 2 * 3                         # backwards x rows
        assert r["compute/net_evals"] == r["compute/sample_rows"] + 3 * 12
        assert r["compute/fwd_equiv"] == r["compute/sample_rows"] + 4 * 12 and r["compute/core_s"] > 0
    # a restart of a stopped run does nothing more
    assert grpo.main(argv(inputs, out, *extra)) == 0
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2, 3]
    # guidance doubles every row
    assert grpo.main(argv(inputs, tmp_path / "g", "steps=1", "sampling.cfg_scale=2.0", "sample_every=0")) == 0
    r = read_metrics(tmp_path / "g")[0]
    assert r["compute/sample_rows"] == 2 * r["compute/nfe_rows"] and r["compute/train_rows"] == 24


def test_the_recipe_exits_2_with_one_line_on_a_bad_reward_checkpoint(inputs, tmp_path):
    proc = run_cli(inputs, tmp_path / "bad", f"rewards.temporal.checkpoint={inputs['rewards']['aesthetic']}",
                   timeout=180)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "expected 'reward_temporal'" in err


def test_train_entries_refuse_a_manifest_without_train_clips(grpo, inputs, tmp_path):
    from foleyflow.errors import FoleyError

    rows = [json.loads(line) for line in Path(inputs["manifest"]).read_text().splitlines()]
    only_val = tmp_path / "m.jsonl"
    only_val.write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == "val"))
    with pytest.raises(FoleyError, match="no 'train' clip"):
        grpo.train_entries(str(only_val), 1.5)
    assert [e.id for e in grpo.train_entries(str(inputs["manifest"]), 1.5)] == inputs["train_ids"]
    # the recipe never imports the evaluation package (its val monitor scores with the reward models)
    import ast

    tree = ast.parse((ROOT / "recipes" / "train_grpo.py").read_text())
    names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
        [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert names and not any(m and (m == "foleyflow.eval" or m.startswith("foleyflow.eval.")) for m in names)


@pytest.mark.slow
def test_one_grpo_step_of_a_small_16k_shaped_generator_with_two_gloo_processes(inputs, tmp_path):
    """MMAudio small_16k's widths (hidden 448, 7 heads, its MLP ratio) at depth 1 + 1 (the full depth takes minutes
    per step on 2 cores), 1 s windows; 2 processes under torchrun each take one clip, one optimiser step."""
    bundle = tiny_bundle(tmp_path / "b", window_s=1.0, preset="small_16k",
                         generator_overrides=dict(num_joint_blocks=1, num_audio_blocks=1), name="small16k-shaped")
    proc = run_cli(dict(inputs, bundle=bundle), tmp_path / "run", "clips_per_iter=1", "accum=2", "steps=1",
                   "sampling.group_size=2", nproc=2, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_metrics(tmp_path / "run")
    assert len(rows) == 1 and rows[0]["train/updates"] == 1 and rows[0]["grpo/ratio_dev_first"] == 0.0
    assert sorted(rows[0]["clips"]) == ["0", "1"]
    from foleyflow.models.generator_io import load_generator

    net = load_generator(tmp_path / "run" / "generator.safetensors")
    assert net.cfg.hidden_dim == 448 and net.cfg.num_heads == 7


@pytest.mark.slow
def test_two_gloo_processes_reduce_the_integer_compute_logs_and_stop_together(inputs, tmp_path):
    """The compute counts are ints (a Long all-reduce once failed on them) and the stop decision is rank 0's val
    monitor broadcast to every rank: both processes stop at iteration 3 and the run exits 0."""
    proc = run_cli(inputs, tmp_path / "run", "clips_per_iter=1", "accum=2", "steps=5", "val_every=1", "val_clips=1",
                   "stop.frac=1.0", "stop.rel=1.0e9", "sample_every=0", nproc=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["train/stopped"] == 1.0
    assert rows[0]["compute/train_rows"] == 2 * 1 * 2 * 3         # 2 processes x 1 clip x window 2 x group 3


def test_lora_starts_as_the_original_and_merges_to_the_same_function():
    from foleyflow.errors import ConfigError
    from foleyflow.train.lora import LoraLinear, add_lora, merge_lora, trainable_parameters

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Sequential(torch.nn.Linear(8, 3)))
    x = torch.randn(5, 6)
    before = net(x)
    names = add_lora(net, 2, 4.0, ["0", "2.0"], seed=1)
    assert names == ["0", "2.0"] and isinstance(net[2][0], LoraLinear)
    assert torch.equal(net(x), before)                          # B = 0: exactly the original network
    assert {id(p) for p in trainable_parameters(net)} == {id(m.lora_a) for m in (net[0], net[2][0])} | \
        {id(m.lora_b) for m in (net[0], net[2][0])}
    with torch.no_grad():
        net[2][0].lora_b.normal_()
    plain = merge_lora(net)
    assert not isinstance(plain[2][0], LoraLinear) and set(plain.state_dict()) == {"0.weight", "0.bias", "2.0.weight",
                                                                                    "2.0.bias"}
    assert not torch.allclose(net(x), before) and torch.allclose(plain(x), net(x), atol=1e-5)
    with pytest.raises(ConfigError, match="match no Linear"):
        add_lora(torch.nn.Sequential(torch.nn.Linear(2, 2)), 2, 4.0, ["attn.qkv"])


def test_issue_18_experiment_configs_are_valid_and_differ_only_where_they_should(grpo):
    """fast / flow / single_* (configs/train_grpo): valid; Flow = Fast but the window over every step (and accum
    for the same 2 updates per iteration) and the stop rule; each single run one reward at half Fast's iterations."""
    from dataclasses import asdict

    from foleyflow.config import load_config

    d = ROOT / "configs" / "train_grpo"
    load = lambda name: load_config(grpo.TrainGrpoConfig, d / f"{name}.yaml", ["manifest=m.jsonl"])  # noqa: E731
    fast, flow = load("fast"), load("flow")
    for cfg in (fast, flow):
        grpo.check_config(cfg)
    s = fast.sampling
    assert (s.steps, s.window, s.group_size, fast.crop_s, fast.clips_per_iter) == (10, 2, 8, 4.0, 2)
    assert s.cfg_scale > 1 and fast.rewards.aesthetic.weight < min(fast.rewards.semantic.weight,
                                                                   fast.rewards.temporal.weight,
                                                                   fast.rewards.spatial.weight)
    assert flow.sampling.window == flow.sampling.steps and flow.stop.frac == 0.2 and flow.stop.rel == 0.01
    a, b = asdict(fast), asdict(flow)
    assert {k for k in a if a[k] != b[k]} == {"sampling", "accum", "steps", "stop"}
    assert {k for k in a["sampling"] if a["sampling"][k] != b["sampling"][k]} == {"window", "max_start"}
    per_iter = lambda c: c.clips_per_iter // c.micro_clips * c.sampling.window // c.accum  # noqa: E731
    assert per_iter(fast) == per_iter(flow) == 2
    v3 = load("fast_v3")     # fast.yaml on the v3 bundle: its plan, a larger learning rate, fewer iterations
    grpo.check_config(v3)
    c = asdict(v3)
    assert {k for k in c if c[k] != a[k]} == {"optim", "steps"} and v3.plan == "bundle"
    assert v3.optim.lr > fast.optim.lr
    flow_v3 = load("flow_v3")   # Flow-GRPO on v3: fast_v3 with flow.yaml's differences and nothing else
    grpo.check_config(flow_v3)
    fv = asdict(flow_v3)
    assert {k for k in fv if fv[k] != c[k]} == {"sampling", "accum", "steps", "stop"}
    assert {k: fv[k] for k in ("accum", "steps", "stop")} == {k: b[k] for k in ("accum", "steps", "stop")}
    window = {k: b["sampling"][k] for k in ("window", "max_start")}
    assert fv["sampling"] == {**c["sampling"], **window}
    for name in grpo.REWARDS:  # the entanglement runs: fast_v3 with one reward, half its iterations
        single = load(f"single_{name}")
        grpo.check_config(single)
        assert {n for n in grpo.REWARDS if getattr(single.rewards, n).weight > 0} == {name}
        assert single.steps == v3.steps // 2
        c, f = asdict(single), asdict(v3)
        assert {k for k in c if c[k] != f[k]} == {"rewards", "steps"}


def test_a_generator_that_follows_plans_is_tuned_on_the_plan_and_guided_as_generation_guides(grpo, inputs, tmp_path,
                                                                                             monkeypatch):
    """A bundle whose generator has a plan pathway: GRPO conditions on the plan (here the ground truth's), its
    policy velocity equals the pipeline's at generation for the same conditions (plan kept in the unguided branch at
    plan_scale 1, a third branch otherwise, none without a plan_scale), and the ratio is still 1 before the update."""
    torch.set_num_threads(1)
    from foleyflow.models.generator import Generator
    from foleyflow.pipeline import FoleyPipeline

    planned = tiny_bundle(tmp_path / "planned", generator_overrides=dict(hidden_dim=32, num_heads=2,
                                                                         num_joint_blocks=1, num_audio_blocks=1,
                                                                         plan_dim=12))
    seen = []
    original = Generator.plan_condition

    def recording(self, plan, *args):
        seen.append(plan is not None and bool(plan.abs().sum() > 0))
        return original(self, plan, *args)
    monkeypatch.setattr(Generator, "plan_condition", recording)
    out = tmp_path / "run"
    assert grpo.main(argv(inputs, out, f"bundle={planned}", "plan=truth", "steps=1", "sampling.cfg_scale=3.0")) == 0
    assert any(seen), "the plan track never reached the generator"
    assert read_metrics(out)[0]["grpo/ratio_dev_first"] == 0.0
    from foleyflow.checkpoint import PROVENANCE, read_metadata

    prov = json.loads(read_metadata(out / "generator_ema.safetensors")[PROVENANCE])["grpo"]
    assert prov["plan"] == "truth"
    # the plan-less bundle of the other tests resolves any plan setting to none
    pipe0 = FoleyPipeline.from_bundle(inputs["bundle"], precision="fp32")
    cfg = grpo.TrainGrpoConfig(bundle="b", manifest="m", plan="auto")
    from foleyflow.bundle import read_bundle

    assert grpo.plan_source(cfg, pipe0, read_bundle(inputs["bundle"])) == "none"
    # policy velocity == generation's velocity, with and without the plan's own guidance
    from foleyflow.cot import plan_from_truth
    from foleyflow.conditioning import Window
    from foleyflow.manifest import read_manifest

    pipe = FoleyPipeline.from_bundle(planned, precision="fp32")
    row = [r for r in read_manifest(inputs["manifest"]) if r.split == "train"][0]
    plan = plan_from_truth(json.loads(Path(row.truth).read_text()))
    conds = pipe.conditions(row.video, Window(0.0, 1.5), plan=plan)
    assert conds.plan is not None
    net = pipe.generator.float()
    x = torch.randn(1, net.cfg.seq_lengths(1.5)[0], net.cfg.latent_channels, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(0.3)
    for ps in (None, 1.0, 2.5):
        with torch.inference_mode():   # as the pipeline's samplers call it
            want = pipe.velocity_fn(conds, pipe.options(cfg_scale=3.0, plan_scale=ps))(x, t)
            got = grpo.policy_velocity(net, conds, 3.0, ps)(x, t)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_the_semantic_reward_scores_the_kind_of_text_it_was_trained_on(grpo, tmp_path):
    """A semantic reward trained on captions is given the caption, one trained on the CoT (or published) the CoT."""
    from types import SimpleNamespace

    from foleyflow.rewards.semantic import load_semantic_reward

    entry = SimpleNamespace(caption="a bell rings twice", cot="Semantic: a brass bell. Temporal: ...")
    for text, want in (("caption", entry.caption), ("cot", entry.cot), (None, entry.cot)):
        data = {"text_encoder": "hashed", **({"text": text} if text else {})}
        path = save_reward(tmp_path / f"sem_{text}.safetensors", tiny_model("semantic"), "reward_semantic",
                           provenance={"config": {"data": data}})
        assert grpo.reward_text(entry, {"semantic": load_semantic_reward(path)}) == want
    assert grpo.reward_text(SimpleNamespace(caption="", cot=None), {}) == ""
    assert grpo.reward_text(SimpleNamespace(caption="steps", cot=None), {}) == "steps"
