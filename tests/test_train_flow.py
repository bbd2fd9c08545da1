"""The generator's training recipe: 2 gloo processes under torchrun, loss goes down, bit-identical resume."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from flow_helpers import MODEL_OVERRIDES, make_caches

ROOT = Path(__file__).resolve().parents[1]


def run_recipe(tmp_path, out, *extra, nproc=2):
    lat, feat = (tmp_path / "caches" / "latents", tmp_path / "caches" / "features")
    if not lat.exists():
        make_caches(tmp_path / "caches")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(ROOT / "recipes" / "train_flow.py"), "--config", str(ROOT / "configs/train_flow/debug.yaml"),
           f"data.latents={lat}", f"data.features={feat}", f"out_dir={out}", *MODEL_OVERRIDES, *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"step"')]


def test_ddp_smoke_loss_goes_down_and_resume_is_exact(tmp_path):
    logs = run_recipe(tmp_path, tmp_path / "run")
    assert logs[0]["step"] == 5 and logs[-1]["step"] == 40
    assert logs[-1]["flow/mse"] < 0.7 * logs[0]["flow/mse"], logs
    first = load_file(str(tmp_path / "run" / "generator_ema.safetensors"))
    # simulate a crash after step 30: drop the newest state and the exported weights, then run again
    (tmp_path / "run" / "checkpoints" / "state_00000040.safetensors").unlink()
    (tmp_path / "run" / "generator_ema.safetensors").unlink()
    logs2 = run_recipe(tmp_path, tmp_path / "run")
    assert logs2[0]["step"] == 35
    second = load_file(str(tmp_path / "run" / "generator_ema.safetensors"))
    for k in first:
        assert (first[k] == second[k]).all(), k
    # training longer resumes from the last state; changing what the model learns from is refused
    logs3 = run_recipe(tmp_path, tmp_path / "run", "steps=45")
    assert [r["step"] for r in logs3] == [45]
    cmd = [sys.executable, str(ROOT / "recipes" / "train_flow.py"), "--config", str(ROOT / "configs/train_flow/debug.yaml"),
           f"data.latents={tmp_path / 'caches' / 'latents'}", f"data.features={tmp_path / 'caches' / 'features'}",
           f"out_dir={tmp_path / 'run'}", *MODEL_OVERRIDES, "steps=50", "optim.lr=0.5"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert proc.returncode != 0 and "(optim.lr differ)" in proc.stderr, proc.stderr[-2000:]


def test_refuses_caches_that_do_not_fit(tmp_path):
    make_caches(tmp_path / "caches")
    cmd = [sys.executable, str(ROOT / "recipes" / "train_flow.py"), "--config",
           str(ROOT / "configs/train_flow/debug.yaml"), f"data.latents={tmp_path / 'caches' / 'latents'}",
           f"data.features={tmp_path / 'caches' / 'features'}", f"out_dir={tmp_path / 'o'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: generator config does not fit the caches")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_init_from_starts_at_the_given_weights(tmp_path):
    """Fine-tuning: a run with init_from starts from that generator (its first loss is the source's level, far below
    a fresh start), records it in the provenance, and refuses a generator of another config."""
    fresh = run_recipe(tmp_path, tmp_path / "a", nproc=1)
    src = tmp_path / "a" / "generator.safetensors"
    tuned = run_recipe(tmp_path, tmp_path / "b", f"init_from={src}", "steps=5", "log_every=5", nproc=1)
    assert tuned[0]["flow/mse"] < 0.8 * fresh[0]["flow/mse"], (fresh[0], tuned[0])
    from foleyflow.checkpoint import load_checkpoint

    assert str(src) in load_checkpoint(tmp_path / "b" / "generator.safetensors")[1]["foleyflow.provenance"]
    cmd = [sys.executable, str(ROOT / "recipes" / "train_flow.py"), "--config", str(ROOT / "configs/train_flow/debug.yaml"),
           f"data.latents={tmp_path / 'caches' / 'latents'}", f"data.features={tmp_path / 'caches' / 'features'}",
           f"out_dir={tmp_path / 'c'}", *MODEL_OVERRIDES, f"init_from={src}", "model.num_joint_blocks=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert proc.returncode != 0 and "another generator config" in proc.stderr, proc.stderr[-2000:]


def test_multitask_draws_one_task_per_step_as_a_pure_function_of_the_step():
    """Omni2Sound's interleaved training: one task per optimisation step, drawn the same on every rank and on resume;
    t2a drops the video of the whole batch, v2a the text."""
    import importlib.util

    import torch

    from foleyflow.errors import FoleyError

    spec = importlib.util.spec_from_file_location("train_flow_mt", Path(__file__).parents[1] / "recipes/train_flow.py")
    tf = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tf   # dataclasses look their module up
    spec.loader.exec_module(tf)
    cfg = tf.TrainFlowConfig(tasks={"t2a": 0.2, "v2a": 0.3, "vt2a": 0.5}, drop_video=0.0, drop_text=0.0)
    draws = [tf.task_at(cfg, s) for s in range(2000)]
    assert draws == [tf.task_at(cfg, s) for s in range(2000)]
    for name, p in cfg.tasks.items():
        assert abs(draws.count(name) / 2000 - p) < 0.04
    assert tf.task_at(tf.TrainFlowConfig(), 5) == ""
    with pytest.raises(FoleyError, match="unknown task"):
        tf.check_tasks(tf.TrainFlowConfig(tasks={"a2v": 1.0}))
    with pytest.raises(FoleyError, match="non-negative"):
        tf.check_tasks(tf.TrainFlowConfig(tasks={"t2a": 0.0}))

    class Net:
        def normalize(self, z):
            return z
    n = 6
    data = {"mean": torch.randn(n, 10, 4), "std": torch.zeros(n, 10, 4), "visual": torch.randn(n, 8, 3),
            "sync": torch.randn(n, 16, 3), "texts": [torch.randn(n, 5, 3)], "has_video": torch.ones(n)}
    cfg.data.text_fields = {"text": 1.0}
    idx = torch.arange(4)
    for task, video, text in (("t2a", 0.0, 1.0), ("v2a", 1.0, 0.0), ("vt2a", 1.0, 1.0)):
        b = tf.make_batch(data, idx, Net(), cfg, torch.Generator().manual_seed(0), task)
        assert b["keep_video"].tolist() == [video] * 4 and b["keep_text"].tolist() == [text] * 4


def test_global_latent_norm_keeps_the_channels_relative_scale(tmp_path):
    """data.latent_norm=global divides every channel by one scale (the RMS of the channels' std), stored in the
    generator so sampling undoes it; the default stays per channel; other values are a one-line error."""
    import importlib.util

    import torch

    from foleyflow.errors import FoleyError

    spec = importlib.util.spec_from_file_location("train_flow_norm", ROOT / "recipes/train_flow.py")
    tf = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tf
    spec.loader.exec_module(tf)
    std = torch.tensor([3.0, 1.0, 0.1, 0.01])
    assert torch.equal(tf.latent_scale(std, "channel"), std)
    g = tf.latent_scale(std, "global")
    assert torch.allclose(g, torch.full((4,), float((std ** 2).mean().sqrt())))
    with pytest.raises(FoleyError, match="latent_norm"):
        tf.latent_scale(std, "layer")
    assert tf.TrainFlowConfig().data.latent_norm == "channel"
    run_recipe(tmp_path, tmp_path / "g", "data.latent_norm=global", "steps=5", "log_every=5", nproc=1)
    weights = load_file(str(tmp_path / "g" / "generator.safetensors"))
    scale = weights["latent_std"].flatten()
    assert torch.allclose(scale, scale[0].expand_as(scale)) and scale[0] > 0


def test_cot_ablation_rows_resolve_to_one_text_field_each():
    """configs/train_flow/cot_ablation.yaml with each row's overrides of scripts/cot_ablation.sh: the v3 architecture
    at the ablation budget, and exactly the row's text field (a `_base` merges mappings, so the rows must set
    text_fields on the command line: cpu.yaml's caption/cot mix must not leak into a row)."""
    import importlib.util
    import re

    from foleyflow.config import load_config

    spec = importlib.util.spec_from_file_location("train_flow_ablcfg", ROOT / "recipes" / "train_flow.py")
    tf = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tf
    spec.loader.exec_module(tf)
    script = (ROOT / "scripts" / "cot_ablation.sh").read_text()
    rows = dict(re.findall(r'\[(\w+)\]="([^"]*)"', script.split("declare -A ROW_ARGS=(")[1].split(")\n")[0]))
    assert set(rows) == {"none", "caption", "monolithic", "cot", "plan"}
    want = {"none": None, "caption": {"caption": 1.0}, "monolithic": {"monolithic": 1.0}, "cot": {"cot": 1.0},
            "plan": {"cot": 1.0}}
    for row, args in rows.items():
        cfg = load_config(tf.TrainFlowConfig, ROOT / "configs/train_flow/cot_ablation.yaml", args.split("|"))
        assert (cfg.steps, cfg.batch_size, cfg.model["text_len"]) == (1500, 16, 480), row
        assert cfg.model.get("plan_dim", 0) == (12 if row == "plan" else 0), row
        assert cfg.model.get("use_text", True) == (row != "none"), row
        if want[row] is not None:
            assert cfg.data.text_fields == want[row], row


def test_task_ablation_rows_and_the_specialists_it_borrows():
    """scripts/task_ablation.sh's rows resolve to the caption and the v3 campaign's task mix (unified) or t2a alone,
    at the CoT ablation's budget; and its claim that the CoT ablation's caption row is the vt2a specialist holds: a
    run with tasks={vt2a: 1} draws vt2a at every step and builds the same batches as a run without tasks."""
    import importlib.util
    import re

    import torch

    from foleyflow.config import load_config

    spec = importlib.util.spec_from_file_location("train_flow_taskabl", ROOT / "recipes" / "train_flow.py")
    tf = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tf
    spec.loader.exec_module(tf)
    script = (ROOT / "scripts" / "task_ablation.sh").read_text()
    rows = dict(re.findall(r'\[(\w+)\]="([^"]*)"', script.split("declare -A ROW_ARGS=(")[1].split(")\n")[0]))
    want = {"unified": {"t2a": 0.25, "v2a": 0.25, "vt2a": 0.5}, "t2a": {"t2a": 1.0}}
    assert set(rows) == set(want)
    for row, arg in rows.items():
        cfg = load_config(tf.TrainFlowConfig, ROOT / "configs/train_flow/cot_ablation.yaml",
                          ["data.text_fields={caption: 1.0}", arg])
        assert (cfg.steps, cfg.batch_size, cfg.model["text_len"]) == (1500, 16, 480), row
        assert cfg.tasks == want[row] and cfg.data.text_fields == {"caption": 1.0}, row
        assert cfg.model.get("plan_dim", 0) == 0 and cfg.model.get("use_text", True), row
    vt2a = tf.TrainFlowConfig(tasks={"vt2a": 1.0})
    assert {tf.task_at(vt2a, s) for s in range(300)} == {"vt2a"}

    class Net:
        def normalize(self, z):
            return z
    n = 6
    data = {"mean": torch.randn(n, 10, 4), "std": torch.rand(n, 10, 4), "visual": torch.randn(n, 8, 3),
            "sync": torch.randn(n, 16, 3), "texts": [torch.randn(n, 5, 3)], "has_video": torch.ones(n)}
    plain = tf.TrainFlowConfig()
    for c in (plain, vt2a):
        c.data.text_fields = {"text": 1.0}
    idx = torch.tensor([0, 2, 3, 5])
    a = tf.make_batch(data, idx, Net(), plain, torch.Generator().manual_seed(3), tf.task_at(plain, 7))
    b = tf.make_batch(data, idx, Net(), vt2a, torch.Generator().manual_seed(3), tf.task_at(vt2a, 7))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
