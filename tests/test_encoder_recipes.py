"""The encoder recipes: two debug steps under torchrun with 2 processes (gloo), exact resume, refused mismatches."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from foleyflow.checkpoint import load_checkpoint
from foleyflow.config import load_config
from foleyflow.errors import CheckpointError, ConfigError
from foleyflow.data.av_clips import bouncing_square_clip
from foleyflow.models.av_ssl import load_semantic_encoder, load_sync_encoder, load_sync_model

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"semantic": ("train_semantic_encoder", "semantic_av", load_semantic_encoder),
           "sync": ("train_sync_encoder", "sync_av", load_sync_encoder)}


TRANSIENT = ("DistNetworkError", "EADDRINUSE", "ddress already in use", "Connection reset", "Connection refused",
             "RendezvousConnectionError")


def run_recipe(name: str, out: Path, *overrides: str, nproc: int = 2) -> subprocess.CompletedProcess:
    """torchrun --standalone; retried once when the launch itself fails for a network reason (a port taken by a
    process of another test run on a busy machine), never for an error of the recipe."""
    script = ROOT / "recipes" / f"{name}.py"
    config = ROOT / "configs" / name / "debug.yaml"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(script), "--config", str(config), f"out_dir={out}", *overrides]
    fresh = not out.exists()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    if proc.returncode != 0 and any(t in proc.stderr for t in TRANSIENT):
        if fresh:
            shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    return proc


def why(proc: subprocess.CompletedProcess) -> str:
    """The first worker traceback of a failed torchrun (the launcher's own summary comes last and says little)."""
    err = proc.stderr
    return err[err.find("Traceback"):][:3000] if "Traceback" in err else err[-3000:]


def load_recipe_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def run_in_process(name: str, out: Path, *overrides: str) -> None:
    """The recipe's main() in this process (single process, no torchrun): fast, for checks that need no DDP."""
    threads = torch.get_num_threads()
    try:
        load_recipe_module(name).main(["--config", str(ROOT / "configs" / name / "debug.yaml"), f"out_dir={out}",
                                       *overrides])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("which", ["semantic", "sync"])
def test_recipe_two_steps_under_torchrun_then_resume(which, tmp_path):
    name, kind, loader = RECIPES[which]
    out = tmp_path / "run"
    first = run_recipe(name, out)
    assert first.returncode == 0, why(first)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["state_00000001.safetensors",
                                                                        "state_00000002.safetensors"]
    assert any((out / "tb").iterdir()) and (out / "config.yaml").is_file()
    final = out / f"{kind}.safetensors"
    encoder = loader(final)  # the generator-facing visual encoder loads from the final checkpoint
    assert not encoder.training
    _, meta = load_checkpoint(final, kind=kind)
    assert '"steps": 2' in meta["foleyflow.provenance"] and '"world_size": 2' in meta["foleyflow.provenance"]

    if which == "sync":
        return  # resuming under torchrun is checked once (semantic); exactness of resume for both below
    resumed = run_recipe(name, out, "steps=3")
    assert resumed.returncode == 0, why(resumed)
    assert "resumed from state_00000002.safetensors at step 2" in resumed.stdout
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["state_00000002.safetensors",
                                                                        "state_00000003.safetensors"]
    _, meta = load_checkpoint(final, kind=kind)
    assert '"steps": 3' in meta["foleyflow.provenance"]


@pytest.mark.parametrize("which", ["semantic", "sync"])
def test_resume_is_exact(which, tmp_path, capsys):
    """2 steps, then a resumed run to 3, gives bit-identical weights to 3 steps in one go."""
    name, kind, _ = RECIPES[which]
    run_in_process(name, tmp_path / "a")
    run_in_process(name, tmp_path / "a", "steps=3")
    assert "resumed from state_00000002.safetensors at step 2" in capsys.readouterr().out
    run_in_process(name, tmp_path / "b", "steps=3")
    a, _ = load_checkpoint(tmp_path / "a" / f"{kind}.safetensors", kind=kind)
    b, _ = load_checkpoint(tmp_path / "b" / f"{kind}.safetensors", kind=kind)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_another_config(tmp_path):
    run_in_process("train_semantic_encoder", tmp_path)
    with pytest.raises(CheckpointError, match=r"another config \(model.visual.embed_dim, optim.lr differ\)"):
        run_in_process("train_semantic_encoder", tmp_path, "steps=3", "model.visual.embed_dim=16", "optim.lr=1.0")
    with pytest.raises(ConfigError, match="out_dir=runs/x instead of --out"):
        load_recipe_module("train_semantic_encoder").main(["--config", "x.yaml", "--out", "runs/x"])


def test_sync_windows_stay_inside_clip_and_cover_all_classes():
    mod = load_recipe_module("train_sync_encoder")
    cfg = load_config(mod.TrainConfig, ROOT / "configs" / "train_sync_encoder" / "default.yaml")
    assert len(cfg.model.offsets_s) == 21 and cfg.model.window_s == 4.8
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(2000):
        k, start = mod.sample_window(8.0, cfg, rng)
        off = cfg.model.offsets_s[k]
        seen.add(k)
        assert 0 <= start <= 8.0 - 4.8 + 1e-9 and 0 <= start + off <= 8.0 - 4.8 + 1e-9
        assert abs(start * 25 - round(start * 25)) < 1e-9  # on the 25 fps frame grid
    assert seen == set(range(21))
    with pytest.raises(ValueError, match="too short"):
        mod.sample_window(4.0, cfg, rng)


def test_sync_batch_audio_is_shifted_by_the_label():
    """The audio of class k equals the clip audio starting offsets_s[k] after the video window."""
    mod = load_recipe_module("train_sync_encoder")
    cfg = load_config(mod.TrainConfig, ROOT / "configs" / "train_sync_encoder" / "debug.yaml")

    clip = bouncing_square_clip(3, duration_s=2.0, size=32)
    frames, audio, labels, aligned, *_ = mod.make_batch([clip], cfg, np.random.default_rng(1))
    assert frames.shape == (4, 32, 3, 32, 32) and audio.shape == aligned.shape == (4, 2, 20480)
    assert labels.shape == (4,)
    for b in range(4):
        starts = [i for i in range(clip.frames.shape[0] - 31) if torch.equal(clip.frames[i:i + 32], frames[b])]
        assert starts, "frames are a contiguous 25 fps window of the clip"
        off = cfg.model.offsets_s[int(labels[b])]
        assert any(torch.equal(audio[b], clip.audio[:, round((i / 25 + off) * 16000):][:, :20480]) for i in starts)
        assert any(torch.equal(aligned[b], clip.audio[:, round(i / 25 * 16000):][:, :20480]) for i in starts)


def test_final_sync_model_classifies(tmp_path):
    out = tmp_path / "run"
    run_in_process("train_sync_encoder", out)
    model = load_sync_model(out / "sync_av.safetensors")
    clip = bouncing_square_clip(0, duration_s=2.0, size=32)
    with torch.no_grad():
        off = model.predict_offset_s(clip.frames[None, :32], clip.audio[None, :, :20480])
    assert off.shape == (1,) and round(off.item(), 1) in model.cfg.offsets_s


def test_recipes_read_a_manifest_of_real_files(tmp_path):
    """Both recipes train from a JSONL manifest of mp4 files (decoded with foleyflow.media)."""
    import json

    from foleyflow.media import write_video

    lines = []
    for i in range(2):
        clip = bouncing_square_clip(40 + i, duration_s=2.0, size=32)
        write_video(tmp_path / f"c{i}.mp4", clip.frames.permute(0, 2, 3, 1).numpy(), 25, audio=clip.audio.numpy(),
                    sample_rate=16000)
        lines.append(json.dumps({"id": f"c{i}", "video": f"c{i}.mp4"}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    for name, kind, loader in RECIPES.values():
        run_in_process(name, tmp_path / name, f"data.manifest={tmp_path / 'train.jsonl'}", "steps=1")
        assert loader(tmp_path / name / f"{kind}.safetensors") is not None
        assert str(tmp_path / "train.jsonl") in load_checkpoint(tmp_path / name / f"{kind}.safetensors")[1][
            "foleyflow.provenance"]
