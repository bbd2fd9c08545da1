"""The codec recipes run under torchrun with 2 processes (debug configs) and resume exactly from their checkpoints."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def torchrun(recipe: str, config: str, *overrides: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(ROOT / "recipes" / recipe), "--config", str(ROOT / "configs" / config), *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def state_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize("recipe,config,model_file,loader", [
    ("train_vae.py", "train_vae/debug.yaml", "vae.safetensors", "foleyflow.models.vae:load_vae"),
    ("train_vocoder.py", "train_vocoder/debug.yaml", "vocoder.safetensors", "foleyflow.models.vocoder:load_vocoder"),
])
def test_recipe_runs_on_two_processes_and_resumes(tmp_path, recipe, config, model_file, loader):
    import importlib

    a, b = tmp_path / "a", tmp_path / "b"
    torchrun(recipe, config, f"out_dir={a}", "steps=2")
    assert (a / "checkpoints" / "state_00000002.safetensors").is_file()
    assert any((a / "tb").iterdir()) and (a / "config.yaml").is_file()
    module, fn = loader.split(":")
    model = getattr(importlib.import_module(module), fn)(a / model_file)
    assert sum(p.numel() for p in model.parameters()) > 0

    shutil.copytree(a, b)
    resumed = torchrun(recipe, config, f"out_dir={b}", "steps=3")
    resumed_from = b / "checkpoints" / "state_00000002.safetensors"
    assert f"resumed from {resumed_from} at step 2" in resumed.stderr + resumed.stdout
    assert (b / "checkpoints" / "state_00000003.safetensors").is_file()
    before, after = state_tensors(a / model_file), state_tensors(b / model_file)
    assert any(not torch.equal(before[k], after[k]) for k in after)  # the third step did train


@pytest.mark.slow
@pytest.mark.parametrize("recipe,config,model_file", [
    ("train_vae.py", "train_vae/debug.yaml", "vae.safetensors"),
    ("train_vocoder.py", "train_vocoder/debug.yaml", "vocoder.safetensors"),
])
def test_resumed_run_equals_uninterrupted_run(tmp_path, recipe, config, model_file):
    b, straight = tmp_path / "b", tmp_path / "c"
    torchrun(recipe, config, f"out_dir={b}", "steps=2")
    torchrun(recipe, config, f"out_dir={b}", "steps=3")
    torchrun(recipe, config, f"out_dir={straight}", "steps=3")
    got = state_tensors(b / model_file)
    want = state_tensors(straight / model_file)
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=k)


def test_recipe_reads_a_folder_of_wavs(tmp_path):
    import numpy as np

    from foleyflow.media import write_audio

    wavs = tmp_path / "wavs"
    wavs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        write_audio(wavs / f"clip{i}.wav", 0.1 * rng.standard_normal((2, 16000)).astype(np.float32), 16000)
    proc = torchrun("train_vae.py", "train_vae/debug.yaml", f"out_dir={tmp_path / 'run'}", f"data.source={wavs}",
                    "batch_size=1", "steps=1", nproc=1)
    assert proc.returncode == 0
    assert (tmp_path / "run" / "vae.safetensors").is_file()


def test_vae_learning_rate_warms_up_then_decays():
    from foleyflow.train.schedule import lr_factor

    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        from train_vae import VAEOptimConfig
    finally:
        sys.path.pop(0)
    o = VAEOptimConfig(warmup_steps=10, decay_steps=[100, 200])
    assert lr_factor(o, 0, 10**6) == pytest.approx(0.1) and lr_factor(o, 9, 10**6) == 1.0
    assert lr_factor(o, 99, 10**6) == 1.0
    assert lr_factor(o, 100, 10**6) == pytest.approx(0.1) and lr_factor(o, 250, 10**6) == pytest.approx(0.01)
    assert lr_factor(VAEOptimConfig(warmup_steps=10), 10**6, 10**6) == 1.0  # no decay unless asked


def test_vae_decoder_only_finetune_keeps_the_encoder(tmp_path):
    """init_from + decoder_only: the encoder (and so every latents cache made with it) is unchanged, the decoder
    trains; decoder_only without init_from is refused."""
    base = tmp_path / "base"
    torchrun("train_vae.py", "train_vae/debug.yaml", f"out_dir={base}", "steps=1", nproc=1)
    ft = tmp_path / "ft"
    torchrun("train_vae.py", "train_vae/debug.yaml", f"out_dir={ft}", "steps=2", f"init_from={base / 'vae.safetensors'}",
             "decoder_only=true", "loss_weights.vae/l2=1.0", nproc=1)
    before, after = state_tensors(base / "vae.safetensors"), state_tensors(ft / "vae.safetensors")
    enc = [k for k in after if k.startswith("encoder.") or k.startswith("data_")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("decoder."))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_vae.py"), "--config",
                           str(ROOT / "configs" / "train_vae" / "debug.yaml"), f"out_dir={tmp_path / 'x'}",
                           "decoder_only=true"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode != 0 and "decoder_only needs init_from" in proc.stderr
    flipped = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_vae.py"), "--config",
                              str(ROOT / "configs" / "train_vae" / "debug.yaml"), f"out_dir={ft}", "steps=3"],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert flipped.returncode == 2 and "decoder_only" in flipped.stderr and "differ" in flipped.stderr
    assert "Traceback" not in flipped.stderr
