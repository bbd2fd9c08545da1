"""Reward recipes on a few tiny FoleyWorld `train` clips made here: the debug configs run and write loadable
checkpoints, each loss goes down, other splits are refused; after a tiny overfit the temporal reward prefers aligned
audio to shifted audio and the aesthetic reward prefers clean audio to heavily degraded audio."""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest
import torch

from foleyflow.rewards.common import RewardConditions, RewardError, conditions_from_truth, crop, load_clips
from reward_helpers import NAMES, ROOT, click_clip, tiny_model, world_manifest

LOSS = {"semantic": "semantic/infonce", "temporal": "temporal/shift_ce", "aesthetic": "aesthetic/total",
        "spatial": "spatial/total"}


def recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_reward_{name}", ROOT / "recipes" / f"train_reward_{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the recipe is executed
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return world_manifest(tmp_path_factory)


@pytest.mark.parametrize("name", NAMES)
def test_debug_recipe_writes_a_loadable_reward(tmp_path, manifest, name):
    from importlib import import_module

    torch.set_num_threads(1)
    recipe(name).main(["--config", str(ROOT / "configs" / f"train_reward_{name}" / "debug.yaml"),
                       f"out_dir={tmp_path}", f"data.manifest={manifest}", "data.val_split=train"])
    module = import_module(f"foleyflow.rewards.{name}")
    model = getattr(module, f"load_{name}_reward")(tmp_path / f"reward_{name}.safetensors")
    prov = model.identity["provenance"]
    assert prov["data"].endswith("split train") and prov["steps"] == 3
    figures = prov["figures"]["train"]  # the held-out report's code path, here on the training clips
    assert figures["clips"] == 4 and all(v is None or v == v for v in figures.values())
    clips = load_clips(manifest)
    cond = conditions_from_truth(clips)
    if name == "semantic":
        from foleyflow.rewards.semantic import hashed_text_features

        cond.text_features = hashed_text_features(cond.texts)
    with torch.no_grad():
        scores = model.score(torch.stack([c.audio for c in clips]), cond)
    assert scores.shape == (len(clips),) and torch.isfinite(scores).all()
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("state_*.safetensors")) == [
        "state_00000002.safetensors", "state_00000003.safetensors"]


def test_recipe_resumes_prunes_and_refuses_another_config(tmp_path, manifest):
    from foleyflow.train.run import ResumeError, read_metrics

    torch.set_num_threads(1)
    mod = recipe("aesthetic")
    argv = ["--config", str(ROOT / "configs" / "train_reward_aesthetic" / "debug.yaml"), f"out_dir={tmp_path}",
            f"data.manifest={manifest}"]
    mod.main(argv)
    with pytest.raises(ResumeError, match="optim.lr"):
        mod.main([*argv, "steps=5", "optim.lr=0.01"])
    mod.main([*argv, "steps=5", "keep_states=1"])  # resumes at step 3, keeps only the newest state
    assert [p.name for p in (tmp_path / "checkpoints").glob("state_*.safetensors")] == ["state_00000005.safetensors"]
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "run.lock").is_file()
    from foleyflow.rewards.aesthetic import load_aesthetic_reward

    assert load_aesthetic_reward(tmp_path / "reward_aesthetic.safetensors").identity["provenance"]["steps"] == 5


@pytest.mark.parametrize("name", NAMES)
def test_loss_goes_down_on_a_fixed_batch(manifest, name):
    torch.set_num_threads(1)
    mod = recipe(name)
    cfg = mod.load_config(mod.TrainConfig, ROOT / "configs" / f"train_reward_{name}" / "debug.yaml",
                          [f"data.manifest={manifest}"])
    clips = load_clips(manifest, need_truth=True)
    g = torch.Generator().manual_seed(0)
    if name == "semantic":
        args = mod.batch(clips, mod.vectors(clips, cfg.data), cfg, g)
    elif name == "temporal":
        from foleyflow.rewards.common import truth_contacts

        args = mod.batch(clips, [truth_contacts(c.truth, c.duration_s) for c in clips], cfg, g, 0.0)
    elif name == "aesthetic":
        args = mod.batch(clips, cfg, g)
    else:
        from foleyflow.rewards.common import truth_pan_track

        args = mod.batch(clips, [truth_pan_track(c.truth, c.duration_s, on_screen_only=False) for c in clips], cfg, g)
    model = tiny_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model.loss(*args)[LOSS[name]]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], losses


def test_recipes_refuse_other_splits(tmp_path, manifest):
    mod = recipe("aesthetic")
    config = str(ROOT / "configs" / "train_reward_aesthetic" / "debug.yaml")
    with pytest.raises(RewardError, match="'train' only"):
        mod.main(["--config", config, f"out_dir={tmp_path}", f"data.manifest={manifest}", "data.split=val"])
    with pytest.raises(RewardError, match="evaltrain"):
        mod.main(["--config", config, f"out_dir={tmp_path}", f"data.manifest={manifest}", "data.split=evaltrain",
                  "data.allow_other_split=true"])


def test_temporal_reward_prefers_aligned_audio_after_overfitting():
    from foleyflow.rewards.temporal import contact_window, shifted_windows

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    clips = []
    for k in range(4):  # 4 s clips with 4 to 6 contacts at random times
        times = sorted((0.2 + 3.6 * torch.rand(int(torch.randint(4, 7, (), generator=g)), generator=g)).tolist())
        track = torch.zeros(100, 2)
        for t in times:
            track[int(t * 25 + 0.999), 0] = 1.0
        clips.append((click_clip(times, 4.0, seed=k), track))
    model = tiny_model("temporal")
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    starts = [0.8, 1.0, 1.2, 1.4]
    for step in range(40):
        cands, conts = [], []
        for audio, track in clips:
            start = starts[step % 4]
            shifts = [0.3, -0.5, 0.8, -0.2]
            cands.append(shifted_windows(audio, start, 1.6, shifts))
            conts.append(contact_window(track, start, 1.6))
        loss = model.loss(torch.stack(cands), torch.stack(conts))["temporal/shift_ce"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    wins = 0
    with torch.no_grad():
        for audio, track in clips:
            cands = shifted_windows(audio, 1.1, 1.6, [0.4, -0.4])  # an unseen start and unseen shifts
            c = contact_window(track, 1.1, 1.6)[None].expand(3, -1, -1)
            s = model.score(cands, RewardConditions(contacts=c))
            wins += int(s[0] > s[1]) + int(s[0] > s[2])
    assert wins >= 7, wins  # of 8 comparisons


def test_aesthetic_reward_ranks_clean_above_heavily_degraded(manifest):
    from foleyflow.rewards.degrade import KINDS_V1 as KINDS  # the kinds this 30-step overfit was sized for
    from foleyflow.rewards.degrade import degrade

    torch.set_num_threads(1)
    clips = load_clips(manifest)
    model = tiny_model("aesthetic")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(30):
        audio, sev = [], []
        for c in clips:
            x = crop(c.audio, 0.5 * (step % 3), 1.0)
            kind, s = KINDS[(step + len(audio)) % len(KINDS)], float(torch.rand((), generator=g))
            s = 0.0 if s < 0.3 else s
            audio.append(degrade(x, kind, s, g))
            sev.append(s)
        loss = model.loss(torch.stack(audio), torch.tensor(sev))["aesthetic/total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        clean = torch.stack([crop(c.audio, 1.0, 1.0) for c in clips])
        q_clean = model.score(clean)
        for kind in ("noise", "clip", "lowpass", "codec"):
            bad = torch.stack([degrade(x, kind, 1.0, torch.Generator().manual_seed(1)) for x in clean])
            assert (q_clean > model.score(bad)).float().mean() >= 0.75, kind


def test_recipe_errors_are_one_line(tmp_path, manifest):
    import subprocess

    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_reward_spatial.py"), "--config",
                           str(ROOT / "configs" / "train_reward_spatial" / "debug.yaml"), f"out_dir={tmp_path}",
                           f"data.manifest={manifest}", "data.split=evaltrain", "data.allow_other_split=true"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "evaltrain" in proc.stderr


def test_aesthetic_recipe_draws_only_the_kinds_it_is_given_and_refuses_unknown_ones(tmp_path, manifest, monkeypatch):
    import subprocess

    from foleyflow.config import load_config
    from foleyflow.rewards import degrade

    mod = recipe("aesthetic")
    drawn = []

    def spy(x, g, p_clean, kinds):
        y, s, kind = degrade.random_degradation(x, g, p_clean, kinds)
        drawn.append(kind)
        return y, s, kind

    monkeypatch.setattr(mod, "random_degradation", spy)
    for kinds, want in (("[damp,flatten]", {"damp", "flatten"}), (None, set(degrade.KINDS))):
        extra = [f"data.kinds={kinds}"] if kinds else []
        cfg = load_config(mod.TrainConfig, ROOT / "configs" / "train_reward_aesthetic" / "debug.yaml",
                          [f"data.manifest={manifest}", "data.p_clean=0", "batch_size=64", *extra])
        drawn.clear()
        mod.batch(mod.recipe_clips(cfg.data), cfg, torch.Generator().manual_seed(0))
        assert set(drawn) == want, (kinds, set(drawn))
    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_reward_aesthetic.py"), "--config",
                           str(ROOT / "configs" / "train_reward_aesthetic" / "debug.yaml"), f"out_dir={tmp_path}",
                           f"data.manifest={manifest}", "data.kinds=[noise,vinyl]"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "'vinyl'" in proc.stderr
