"""Few-step students with guidance folded in: the generator's extra inputs, the distillation recipe (train, resume),
and sampling through the pipeline with one network call per step."""
import dataclasses
import os
import subprocess
import sys
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flow_helpers import MODEL_OVERRIDES, make_caches
from foleyflow.errors import FoleyError
from foleyflow.models.generator import Generator, GeneratorConfig

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(hidden_dim=32, num_heads=2, num_joint_blocks=1, num_audio_blocks=1)


def _inputs(net: Generator, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lat, vis, syn = net.cfg.seq_lengths(net.cfg.duration_s)
    return (torch.randn(2, lat, net.cfg.latent_channels, generator=g),
            net.prepare_conditions(torch.randn(2, vis, net.cfg.visual_dim, generator=g),
                                   torch.randn(2, syn, net.cfg.sync_dim, generator=g),
                                   torch.randn(2, 5, net.cfg.text_dim, generator=g)))


def test_student_starts_as_the_teacher_and_plain_generators_are_unchanged():
    cfg = GeneratorConfig.preset("tiny", duration_s=2.0, **SMALL)
    torch.manual_seed(0)
    teacher = Generator(cfg).eval()
    for p in teacher.zero_initialised():           # exercise every path
        torch.nn.init.normal_(p, std=0.02)
    student = Generator(dataclasses.replace(cfg, distilled=True)).eval()
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("guidance_embed.", "steps_embed.")) for k in missing)
    assert set(Generator(cfg).state_dict()) == set(teacher.state_dict())          # no new keys without `distilled`
    x, cond = _inputs(teacher)
    with torch.no_grad():
        v = teacher.velocity(x, 0.3, cond)
        for w, n in ((1.0, 1), (4.5, 4), (7.0, 0)):
            assert torch.equal(student.velocity(x, 0.3, cond, guidance=w, steps=n), v)
        with pytest.raises(FoleyError, match="not a distilled student"):
            teacher.velocity(x, 0.3, cond, guidance=4.5, steps=4)
        with pytest.raises(FoleyError, match="needs the guidance scale"):
            student.velocity(x, 0.3, cond)
        # once the new inputs have weights, the guidance scale and the step count change the output
        torch.nn.init.normal_(student.guidance_embed.mlp[2].weight, std=0.1)
        torch.nn.init.normal_(student.steps_embed.mlp[2].weight, std=0.1)
        a = student.velocity(x, 0.3, cond, guidance=1.0, steps=4)
        assert not torch.allclose(a, student.velocity(x, 0.3, cond, guidance=6.0, steps=4))
        assert not torch.allclose(a, student.velocity(x, 0.3, cond, guidance=1.0, steps=1))
    levels = student.step_level(torch.tensor([1.0, 4.0, 0.0]))
    assert levels.tolist() == [0.0, 2.0, student.cfg.distill_levels + 1.0]


def _run(args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    lat, feat = make_caches(tmp / "caches")
    proc = _run([ROOT / "recipes" / "train_flow.py", "--config", ROOT / "configs/train_flow/debug.yaml",
                 f"data.latents={lat}", f"data.features={feat}", f"out_dir={tmp / 'teacher'}", *MODEL_OVERRIDES,
                 "steps=10", "ckpt_every=10"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, lat, feat, tmp / "teacher" / "generator_ema.safetensors"


def _distill(tmp, lat, feat, ckpt, out, *extra):
    proc = _run([ROOT / "recipes" / "distill_flow.py", "--config", ROOT / "configs/distill_flow/debug.yaml",
                 f"teacher={ckpt}", f"data.latents={lat}", f"data.features={feat}", f"out_dir={out}", *extra])
    return proc, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"step"')]


def test_distillation_runs_resumes_exactly_and_records_its_teacher(teacher):
    tmp, lat, feat, ckpt = teacher
    proc, logs = _distill(tmp, lat, feat, ckpt, tmp / "s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in logs] == [5, 10, 15, 20]
    assert all(r["distill/flow_mse"] == r["distill/flow_mse"] for r in logs)       # finite, not NaN
    first = load_file(str(tmp / "s" / "generator_ema.safetensors"))
    (tmp / "s" / "checkpoints" / "state_00000020.safetensors").unlink()
    proc, logs2 = _distill(tmp, lat, feat, ckpt, tmp / "s")
    assert proc.returncode == 0 and logs2[0]["step"] == 15, proc.stderr[-2000:]
    second = load_file(str(tmp / "s" / "generator_ema.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    from foleyflow.checkpoint import load_checkpoint
    from foleyflow.models.generator_io import load_generator

    prov = json.loads(load_checkpoint(tmp / "s" / "generator.safetensors")[1]["foleyflow.provenance"])
    assert prov["teacher"] == str(ckpt) and len(prov["teacher_sha256"]) == 64
    assert load_generator(tmp / "s" / "generator.safetensors").cfg.distilled


def test_bad_teacher_is_a_one_line_error(teacher, tmp_path):
    tmp, lat, feat, ckpt = teacher
    proc, _ = _distill(tmp, lat, feat, tmp_path / "nope.safetensors", tmp_path / "o")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: teacher: generator checkpoint not found")
    assert len(proc.stderr.strip().splitlines()) == 1
    proc, _ = _distill(tmp, lat, feat, ckpt, tmp_path / "p", "plan_scale=2")     # no plan pathway to weigh
    assert proc.returncode == 2 and "has no plan pathway" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_pipeline_samples_a_student_with_one_call_per_step(tmp_path):
    from foleyflow.bundle import build_untrained_bundle
    from foleyflow.pipeline import FoleyPipeline

    bundle = build_untrained_bundle(tmp_path / "b", window_s=2.0, generator_overrides=dict(distilled=True, **SMALL))
    pipe = FoleyPipeline.from_bundle(bundle, precision="fp32")
    calls = []
    real = pipe._sampling_net.velocity

    def counting(*a, **k):
        calls.append(k.get("steps"))
        return real(*a, **k)

    pipe._sampling_net.velocity = counting
    r = pipe.generate(prompt="a ball bounces", duration_s=2.0, steps=4, cfg_scale=3.0, seed=1)
    assert calls == [4, 4, 4, 4] and r.audio.shape[0] == 2 and torch.isfinite(torch.from_numpy(r.audio)).all()
    for bad, match in ((dict(sampler="heun"), "samples with euler"), (dict(negative="noise"), "folded"),
                       (dict(steps=1000), "samples 1 to")):
        with pytest.raises(FoleyError, match=match):
            pipe.generate(prompt="a ball", duration_s=2.0, **bad)


def _distill_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("distill_flow_plan", ROOT / "recipes" / "distill_flow.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _plan_net_and_batch(distilled: bool = False):
    """A tiny generator with a plan pathway (every zero-initialised tensor, the empty plan included, drawn non-zero)
    and a batch of 3 items: all kept; the plan dropped; the video dropped and the text dropped, the plan kept."""
    cfg = GeneratorConfig.preset("tiny", duration_s=1.0, plan_dim=12, distilled=distilled, **SMALL)
    torch.manual_seed(0)
    net = Generator(cfg).eval()
    with torch.no_grad():
        for p in net.zero_initialised():
            p.normal_(0, 0.1)
    assert net.empty_plan_feat.abs().sum() > 0
    lat, vis, syn = cfg.seq_lengths(1.0)
    g = torch.Generator().manual_seed(1)
    rnd = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    batch = dict(xt=rnd(3, lat, cfg.latent_channels), t=torch.full((3,), 0.3), visual=rnd(3, vis, cfg.visual_dim),
                 sync=rnd(3, syn, cfg.sync_dim), text=rnd(3, cfg.text_len, cfg.text_dim),
                 keep_video=torch.tensor([1.0, 1.0, 0.0]), keep_text=torch.tensor([1.0, 1.0, 0.0]),
                 plan=rnd(3, lat, 12), keep_plan=torch.tensor([1.0, 0.0, 1.0]))
    return net, batch


@pytest.mark.parametrize("plan_scale", [1.0, 2.5])
def test_a_plan_teachers_target_is_generations_plan_guided_velocity(plan_scale):
    """With a plan track, each item's distillation target is what generation samples for that item's conditions
    (plan_guided_velocity over the full conditions, the plan alone and nothing); an item whose plan is dropped gets
    plain guidance against nothing; without a plan the old target."""
    from foleyflow.models.generator_sampling import guided_velocity, plan_guided_velocity

    dm = _distill_module()
    net, batch = _plan_net_and_batch()
    w = 3.0
    got = dm.teacher_target(net, batch, torch.full((3,), w), plan_scale)
    t = torch.tensor(0.3)
    with torch.no_grad():
        for i in range(3):   # generation's view of item i: its streams, or the learned empty ones where dropped
            empty = lambda feat, like: feat[None].expand_as(like[i:i + 1])  # noqa: E731
            visual = batch["visual"][i:i + 1] if batch["keep_video"][i] else empty(net.empty_clip_feat, batch["visual"])
            sync = batch["sync"][i:i + 1] if batch["keep_video"][i] else empty(net.empty_sync_feat, batch["sync"])
            text = batch["text"][i:i + 1] if batch["keep_text"][i] else empty(net.empty_string_feat, batch["text"])
            x = batch["xt"][i:i + 1]
            if batch["keep_plan"][i]:
                plan = batch["plan"][i:i + 1]
                full = net.prepare_conditions(visual, sync, text, plan=plan)
                want = plan_guided_velocity(net, full, net.empty_conditions(1, plan=plan), net.empty_conditions(1),
                                            cfg_scale=w, plan_scale=plan_scale)(x, t)
            else:
                want = guided_velocity(net, net.prepare_conditions(visual, sync, text), net.empty_conditions(1),
                                       w)(x, t)
            assert torch.allclose(got[i:i + 1], want, atol=1e-4), i
        plain = dm.teacher_target(net, {k: v for k, v in batch.items() if "plan" not in k}, torch.full((3,), w))
    assert not torch.allclose(got[0], plain[0], atol=1e-3)     # the plan counts where it is kept


def test_the_student_and_its_consistency_target_see_the_plan():
    dm = _distill_module()
    net, batch = _plan_net_and_batch(distilled=True)
    with torch.no_grad():
        for name in ("guidance_embed", "steps_embed"):
            torch.nn.init.normal_(getattr(net, name).mlp[2].weight, std=0.1)
    w, n = torch.full((3,), 3.0), torch.tensor([0.0, 2.0, 4.0])
    args = [batch[k] for k in ("xt", "t", "visual", "sync", "text", "keep_video", "keep_text")]
    step = dm.StudentStep(net)
    with torch.no_grad():
        kept = step(*args, w, n, batch["plan"], torch.ones(3))
        dropped = step(*args, w, n, batch["plan"], torch.zeros(3))
        none = step(*args, w, n)
        a = dm.consistency_target(net, batch, w, n)
        b = dm.consistency_target(net, dict(batch, keep_plan=torch.zeros(3)), w, n)
    assert not torch.allclose(kept, dropped, atol=1e-4) and torch.allclose(dropped, none, atol=1e-5)
    assert not torch.allclose(a, b, atol=1e-4)


def test_a_plan_teacher_distils_with_its_plan_and_generation_keeps_its_plan_weight(tmp_path):
    """recipes/distill_flow.py on a teacher with a plan pathway: the student keeps the pathway, folds the plan weight
    in (config and provenance), the tracks are drawn from the caches' manifest; a pipeline asked for another plan
    weight refuses with one line."""
    from flow_helpers import make_plan_caches
    from foleyflow.checkpoint import load_checkpoint
    from foleyflow.models.generator_io import load_generator

    lat, feat, _ = make_plan_caches(tmp_path / "caches")
    proc = _run([ROOT / "recipes" / "train_flow.py", "--config", ROOT / "configs/train_flow/debug_plan.yaml",
                 f"data.latents={lat}", f"data.features={feat}", f"out_dir={tmp_path / 'teacher'}", *MODEL_OVERRIDES,
                 "steps=4", "ckpt_every=4"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    teacher = tmp_path / "teacher" / "generator_ema.safetensors"
    proc, logs = _distill(tmp_path, lat, feat, teacher, tmp_path / "s", "steps=10", "overfit_items=0",
                          "plan_scale=2.0", "drop_plan=0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in logs] == [5, 10]
    student = load_generator(tmp_path / "s" / "generator.safetensors")
    assert student.cfg.distilled and student.cfg.plan_dim == 12 and student.cfg.distill_plan_scale == 2.0
    prov = json.loads(load_checkpoint(tmp_path / "s" / "generator.safetensors")[1]["foleyflow.provenance"])
    assert prov["plan"] == {"drop_plan": 0.5, "plan_offscreen": "timed", "plan_scale": 2.0}
    assert (tmp_path / "s" / "plan_tracks.safetensors").is_file()
    # generation: the folded weight is accepted (or unset), another one is refused
    from foleyflow.pipeline import GenerationOptions, check_student_options

    opts = GenerationOptions(steps=4, plan_scale=1.0)
    check_student_options(GenerationOptions(steps=4, plan_scale=2.0), 3, 2.0)
    check_student_options(GenerationOptions(steps=4, plan_scale=None), 3, 2.0)
    check_student_options(opts, 3, None)             # no plan track in the conditions: nothing to check
    with pytest.raises(FoleyError, match="folds the plan track's weight 2 in: use --plan-scale 2"):
        check_student_options(opts, 3, 2.0)


def test_the_pipeline_refuses_another_plan_weight_than_a_students_folded_one(tmp_path):
    from foleyflow.bundle import build_untrained_bundle
    from foleyflow.cot import parse_plan
    from foleyflow.pipeline import FoleyPipeline

    bundle = build_untrained_bundle(tmp_path / "b", window_s=2.0, generator_overrides=dict(
        distilled=True, plan_dim=12, distill_plan_scale=2.0, **SMALL))
    pipe = FoleyPipeline.from_bundle(bundle, precision="fp32")
    plan = parse_plan({"schema": "foleyflow-cot/1", "duration_s": 2.0, "sources": [
        {"id": "a", "class": "snare", "on_screen": True, "events": [0.5, 1.2], "pan": 0.3}]})
    for scale in (2.0, None):
        r = pipe.generate(prompt="a snare", duration_s=2.0, steps=2, seed=0, plan=plan, plan_scale=scale)
        assert torch.isfinite(torch.from_numpy(r.audio)).all()
    with pytest.raises(FoleyError, match="folds the plan track's weight 2 in"):
        pipe.generate(prompt="a snare", duration_s=2.0, steps=2, seed=0, plan=plan, plan_scale=1.0)
    pipe.generate(prompt="a snare", duration_s=2.0, steps=2, seed=0, plan_scale=1.0)   # no plan track: no check


def test_the_v3_distillation_config_matches_v3s_training_and_bundle():
    from foleyflow.config import load_config

    dm = _distill_module()
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_flow_v3cfg", ROOT / "recipes" / "train_flow.py")
    tf = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tf
    spec.loader.exec_module(tf)
    d = load_config(dm.DistillFlowConfig, ROOT / "configs/distill_flow/v3.yaml", [])
    v3 = load_config(tf.TrainFlowConfig, ROOT / "configs/train_flow/v3.yaml", [])
    assert (d.tasks, d.drop_video, d.drop_text, d.drop_plan) == (v3.tasks, v3.drop_video, v3.drop_text, v3.drop_plan)
    assert d.plan_offscreen == v3.plan_offscreen
    assert d.data.text_fields == v3.data.text_fields
    bundle = json.loads((ROOT / "foleyflow/assets/default/bundle.json").read_text())
    assert Path(ROOT / d.teacher).is_file() and d.plan_scale == bundle["defaults"]["plan_scale"]
