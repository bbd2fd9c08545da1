"""The plan track in training (issue 19 item 3): ground-truth plans on the latents' own window, drop_plan, the tasks,
and the recipe end to end with configs/train_flow/debug_plan.yaml."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flow_helpers import LATENT_LEN, MODEL_OVERRIDES, hit_times, make_plan_caches

ROOT = Path(__file__).resolve().parents[1]
FPS = 31.25  # latents per second of the test caches (16 kHz, 512 samples per latent)


def recipe():
    spec = importlib.util.spec_from_file_location("train_flow_plan", ROOT / "recipes/train_flow.py")
    tf = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tf   # dataclasses look their module up
    spec.loader.exec_module(tf)
    return tf


def onset_frames(track: torch.Tensor) -> list[int]:
    """Frames where the onset channel peaks at 1 (the bump's centre)."""
    return [int(f) for f in torch.nonzero(track[:, 0] > 0.999).flatten()]


def test_window_track_puts_an_event_at_its_time_from_the_window_start():
    from foleyflow.conditioning import plan_window_track
    from foleyflow.cot import parse_plan
    from foleyflow.models.generator import GeneratorConfig

    g = GeneratorConfig.preset("tiny", plan_dim=12, duration_s=2.0)
    plan = parse_plan({"schema": "foleyflow-cot/1", "duration_s": 8.0, "sources": [
        {"id": "a", "class": "snare", "on_screen": False, "events": [0.7, 2.3, 3.9], "pan": 0.5},
        {"id": "r", "class": "rain", "on_screen": True, "events": [[0.0, 8.0]]}]})
    for start in (0.0, 1.5, 2.24):
        track = plan_window_track(g, plan, 2.0, start)
        assert track.shape == (g.seq_lengths(2.0)[0], 12)
        want = [math.floor((t - start) * FPS + 0.5) for t in (0.7, 2.3, 3.9)]
        want = [f for f in want if 0 <= f < track.shape[0]]
        assert onset_frames(track) == want, start
        assert torch.equal(track[want, 3], torch.ones(len(want)))          # off-screen channel
        assert (track[want, 2] > track[want, 1]).all()                       # panned right
        assert (track[:, 7] == 1).all()                                      # ambience bed all along
    with pytest.raises(Exception, match="plan_dim 4 cannot hold a plan track"):
        plan_window_track(GeneratorConfig.preset("tiny", plan_dim=4), plan, 2.0)


def load(tf, lat, feat, *overrides):
    from foleyflow.config import load_config

    cfg = load_config(tf.TrainFlowConfig, ROOT / "configs/train_flow/debug_plan.yaml",
                      [f"data.latents={lat}", f"data.features={feat}", *MODEL_OVERRIDES, *overrides])
    data = tf.load_data(cfg)
    return cfg, data, tf.build_model(cfg, data)


def test_tracks_follow_the_latents_window_and_drop_plan(tmp_path):
    tf = recipe()
    lat, feat, (onsets, onsets1) = make_plan_caches(tmp_path)
    cfg, data, net = load(tf, lat, feat)
    assert data["plan"].shape == (4, LATENT_LEN, 12) and data["has_plan"].tolist() == [1, 1, 1, 0]
    # an event at t s of the clip lands on frame round((t - start) * fps) of the window that holds it
    def frames(hits, start):
        near = {math.floor((t - start) * FPS + 0.5) for t in hits}   # the nearest frame, halves up
        return sorted(f for f in near if 0 <= f < LATENT_LEN)
    assert onset_frames(data["plan"][0]) == frames(onsets, 0.0) != []
    assert onset_frames(data["plan"][1]) == frames(onsets, 2.5) != []
    assert frames(onsets, 2.5) != frames(onsets, 2.5 - 1 / FPS)   # the test would see a window off by a frame
    assert onset_frames(data["plan"][2]) == frames(onsets1, 0.0) and not data["plan"][3].any()
    idx = torch.arange(4)
    for drop, task, want in ((1.0, "vt2a", [0, 0, 0, 0]), (0.0, "vt2a", [1, 1, 1, 0]), (0.0, "t2a", [1, 1, 1, 0]),
                             (0.0, "v2a", [0, 0, 0, 0])):
        cfg.drop_plan = drop
        for seed in range(3):
            b = tf.make_batch(data, idx, net, cfg, torch.Generator().manual_seed(seed), task)
            assert b["keep_plan"].tolist() == want, (drop, task)
            assert torch.equal(b["plan"], data["plan"])
    # a dropped plan is the learned empty plan: the same velocity as no plan at all
    with torch.no_grad():
        for p in net.zero_initialised():
            p.normal_(0, 0.1)
    step = tf.FlowTrainStep(net)
    b = tf.make_batch(data, idx, net, cfg, torch.Generator().manual_seed(0), "vt2a")
    args = [b[k] for k in ("xt", "t", "visual", "sync", "text", "keep_video", "keep_text")]
    with torch.no_grad():
        dropped = step(*args, b["plan"], torch.zeros(4))
        none = net(b["xt"], b["visual"], b["sync"], b["text"], b["t"])
        kept = step(*args, b["plan"], torch.ones(4))
    assert torch.allclose(dropped, none, atol=1e-6) and not torch.allclose(kept, none, atol=1e-4)
    # without plan_dim no plan is loaded and the batch draws exactly what it drew before the pathway existed
    cfg0, data0, net0 = load(tf, lat, feat, "model.plan_dim=0")
    assert "plan" not in data0
    b0 = tf.make_batch(data0, idx, net0, cfg0, torch.Generator().manual_seed(0), "vt2a")
    assert set(b0) == {"xt", "t", "target", "visual", "sync", "text", "keep_video", "keep_text"}


def test_untimed_offscreen_plans_leave_off_screen_sources_to_the_text(tmp_path):
    """plan_offscreen: untimed (the off-screen stage): a clip whose sources are all off screen gets no onsets in its
    track (the planner cannot time what the video does not show), on-screen clips keep theirs, and the tracks file
    is drawn again rather than reused across the setting."""
    tf = recipe()
    lat, feat, (onsets, onsets1) = make_plan_caches(tmp_path)
    truth = json.loads((tmp_path / "clip0.json").read_text())
    for o in truth["objects"]:
        o["visible"] = False
    (tmp_path / "clip0.json").write_text(json.dumps(truth))
    _, timed, net = load(tf, lat, feat)
    _, untimed, _ = load(tf, lat, feat, "plan_offscreen=untimed")
    assert onset_frames(timed["plan"][0]) != [] and (timed["plan"][0][:, 3] > 0.999).any()   # off-screen channel
    assert not untimed["plan"][0][:, :7].any() and not untimed["plan"][1][:, :7].any()
    assert torch.equal(untimed["plan"][2], timed["plan"][2]) and onset_frames(untimed["plan"][2]) != []
    assert untimed["has_plan"].tolist() == timed["has_plan"].tolist() == [1, 1, 1, 0]
    file = tmp_path / "plan_tracks.safetensors"
    first, _ = tf.load_plans(timed, net.cfg, file)
    again, _ = tf.load_plans(timed, net.cfg, file, offscreen="untimed")
    assert torch.equal(again, untimed["plan"]) and not torch.equal(first, again)
    from foleyflow.errors import FoleyError

    with pytest.raises(FoleyError, match="plan_offscreen must be one of"):
        load(tf, lat, feat, "plan_offscreen=sometimes")


def test_recipe_trains_three_steps_with_the_plan(tmp_path):
    """3 steps: with every adaLN and output layer at zero, the plan pathway's first gradient comes at step 3."""
    lat, feat, _ = make_plan_caches(tmp_path / "caches")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "recipes" / "train_flow.py"), "--config", str(ROOT / "configs/train_flow/debug_plan.yaml"),
           f"data.latents={lat}", f"data.features={feat}", f"out_dir={out}", *MODEL_OVERRIDES, "steps=3",
           "log_every=1", "ckpt_every=3"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"step"')]
    assert [r["step"] for r in logs] == [1, 2, 3]
    from foleyflow.models.generator_io import load_generator

    net = load_generator(out / "generator.safetensors")
    assert net.cfg.plan_dim == 12
    assert net.plan_input_proj[-1].weight.abs().sum() > 0   # the zero-initialised layer has been trained


def test_plan_needs_a_manifest_with_truth(tmp_path):
    tf = recipe()
    from foleyflow.errors import FoleyError

    lat, feat, _ = make_plan_caches(tmp_path)
    rows = [{"id": "clip0", "audio": "a.wav"}]
    (tmp_path / "none.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(FoleyError, match="has a ground truth"):
        load(tf, lat, feat, f"data.manifest={tmp_path / 'none.jsonl'}")


def test_plan_tracks_are_drawn_once_and_reused_while_their_inputs_stay(tmp_path, monkeypatch):
    tf = recipe()
    lat, feat, _ = make_plan_caches(tmp_path)
    cfg, data, net = load(tf, lat, feat)
    file = tmp_path / "run" / "plan_tracks.safetensors"
    plan, has = tf.load_plans(data, net.cfg, file)
    assert file.is_file() and torch.equal(plan, data["plan"]) and torch.equal(has, data["has_plan"])

    def fail(*args):
        raise AssertionError("recomputed")
    real = tf.compute_plans
    monkeypatch.setattr(tf, "compute_plans", fail)
    again, _ = tf.load_plans(data, net.cfg, file)
    assert torch.equal(again, plan)
    monkeypatch.setattr(tf, "compute_plans", real)
    data["windows"]["c1"] = ("clip0", 2.0)            # another window: drawn again, not the stale file
    moved, _ = tf.load_plans(data, net.cfg, file)
    assert not torch.equal(moved[1], plan[1]) and torch.equal(moved[0], plan[0])


def test_init_from_a_generator_without_plan_adds_the_pathway_at_zero(tmp_path):
    """A plan run may start from a plan-less generator (v3 from v2): every shared weight is copied, the new pathway
    starts at zero so the velocity is the source's with or without a plan, and any other config change is refused."""
    from foleyflow.errors import FoleyError
    from foleyflow.models.generator import Generator, GeneratorConfig
    from foleyflow.models.generator_io import save_generator

    tf = recipe()
    small = dict(hidden_dim=32, num_heads=2, num_joint_blocks=1, num_audio_blocks=1, duration_s=2.0)
    torch.manual_seed(0)
    src = Generator(GeneratorConfig.preset("tiny", **small))
    with torch.no_grad():
        for p in src.zero_initialised():
            p.normal_(0, 0.1)   # a trained-looking source: its zero layers are not zero
    src.set_latent_stats(torch.randn(src.cfg.latent_channels), torch.rand(src.cfg.latent_channels) + 0.5)
    path = save_generator(tmp_path / "src.safetensors", src)
    net = Generator(GeneratorConfig.preset("tiny", plan_dim=12, **small))
    tf.init_weights(net, str(path))
    for k, v in src.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    n_lat, n_vis, n_sync = src.cfg.seq_lengths(2.0)
    g = torch.Generator().manual_seed(1)
    lat = torch.randn(2, n_lat, src.cfg.latent_channels, generator=g)
    vis = torch.randn(2, n_vis, src.cfg.visual_dim, generator=g)
    sync = torch.randn(2, n_sync, src.cfg.sync_dim, generator=g)
    text = torch.randn(2, src.cfg.text_len, src.cfg.text_dim, generator=g)
    plan = torch.rand(2, n_lat, 12, generator=g)
    with torch.no_grad():
        want = src(lat, vis, sync, text, 0.3)
        assert torch.allclose(net(lat, vis, sync, text, 0.3, plan=plan), want, atol=1e-6)
        assert torch.allclose(net(lat, vis, sync, text, 0.3), want, atol=1e-6)
    other = Generator(GeneratorConfig.preset("tiny", **dict(small, num_audio_blocks=2)))
    with pytest.raises(FoleyError, match="num_audio_blocks"):
        tf.init_weights(other, str(path))
