"""The evaluation side's quality predictor: its degradations (identity at severity 0, monotone in severity), the tiny
model and its checkpoint, the recipe on a tiny FoleyWorld evaltrain (and its refusal of other splits),
`foleyflow evaluate`'s `quality` key, and its separation from the RL rewards."""
import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from foleyflow.audio import MelSetting, log_mel_spectrogram
from foleyflow.errors import CheckpointError, ConfigError
from foleyflow.eval.paired import paired_bootstrap
from foleyflow.eval.quality import (KINDS, QualityScorer, degrade, quality_target, random_degradation,
                                    severity_from_score, spearman)
from foleyflow.media import write_audio
from foleyflow.models.eval_quality import (QUALITY_KIND, QualityModel, QualityModelConfig, load_quality_model,
                                           save_quality_model)

ROOT = Path(__file__).resolve().parent.parent
SR = 16000
TINY = QualityModelConfig(n_mels=16, channels=(4, 8), width=16)


def make_clip(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """(2, N): two panned decaying tones, noise bursts every 0.3 s and a quiet noise floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    left = 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-(t % 0.5) * 6)
    right = 0.2 * np.sin(2 * np.pi * 660 * t) * np.exp(-(t % 0.7) * 5)
    burst = 0.05 * rng.standard_normal((2, len(t))) * np.exp(-(t % 0.3) * 20)
    return (np.stack([left, right]) + burst + 0.002 * rng.standard_normal((2, len(t)))).astype(np.float32)


MEL = MelSetting(SR, 1024, 160, 400, 48, 30.0, 8000.0, "log10")


def mel_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute difference of level-normalised log-mels of left, right and side (a simple measure, not the
    model's front end: another window, hop and band count)."""
    def feats(a):
        a = torch.from_numpy(a)
        f = log_mel_spectrogram(torch.cat([a, 0.5 * (a[:1] - a[1:])]), MEL)
        return f - f[:2].mean()
    return float((feats(y) - feats(x)).abs().mean())


@pytest.mark.parametrize("kind", KINDS)
def test_degradation_is_identity_at_zero_monotone_and_seeded(kind):
    x = make_clip()
    y0 = degrade(x, kind, 0.0, np.random.default_rng(5))
    assert y0.shape == x.shape and y0.dtype == np.float32 and np.array_equal(y0, x)
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    outs = [degrade(x, kind, s, np.random.default_rng(5)) for s in grid]
    assert all(o.shape == x.shape and o.dtype == np.float32 and np.isfinite(o).all() for o in outs)
    d = [mel_distance(x, o) for o in outs]
    assert d[0] == 0.0 and all(b >= a - 1e-6 for a, b in zip(d, d[1:])), (kind, d)
    assert d[-1] > 1.5 * d[1] > 0, (kind, d)
    again = degrade(x, kind, 0.6, np.random.default_rng(5))
    assert np.array_equal(again, degrade(x, kind, 0.6, np.random.default_rng(5)))


def test_small_severity_stays_close_and_faults_are_specific():
    x = make_clip()
    for kind in KINDS:
        assert mel_distance(x, degrade(x, kind, 0.02, np.random.default_rng(1))) < 0.1, kind
    mono = np.repeat(x[:1], 2, 0)
    smeared = degrade(mono, "phase", 1.0, np.random.default_rng(0))
    side = smeared[0] - smeared[1]
    assert np.abs(mono[0] - mono[1]).max() == 0 and np.sqrt(np.mean(side ** 2)) > 0.3 * np.sqrt(np.mean(mono ** 2))
    gapped = degrade(x, "gaps", 1.0, np.random.default_rng(0))
    assert (np.abs(gapped).max(0) == 0).sum() > int(0.05 * SR)  # long digital silences
    with pytest.raises(ConfigError, match="unknown degradation"):
        degrade(x, "reverb", 0.5, np.random.default_rng(0))


def test_targets_random_degradation_and_statistics():
    assert quality_target(0.0) == 10.0 and quality_target(1.0) == 1.0 and quality_target(2.0) == 1.0
    assert severity_from_score(quality_target(0.3)) == pytest.approx(0.3)
    x = make_clip(1.0)
    y, kind, s = random_degradation(x, np.random.default_rng(0), p_clean=1.0)
    assert kind == "clean" and s == 0.0 and np.array_equal(y, x)
    a = random_degradation(x, np.random.default_rng(3), p_clean=0.0)
    b = random_degradation(x, np.random.default_rng(3), p_clean=0.0)
    assert a[1] in KINDS and a[1:] == b[1:] and np.array_equal(a[0], b[0])
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    u, v = rng.integers(0, 5, 40), rng.standard_normal(40)
    assert spearman(u, v) == pytest.approx(spearmanr(u, v)[0], abs=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5)))
    gen, ref = 5 + rng.standard_normal(200), 5 + rng.standard_normal(200)
    mean, lo, hi = paired_bootstrap(gen + 1.0, ref, seed=1)
    assert lo < mean < hi and lo > 0.5 and (mean, lo, hi) == paired_bootstrap(gen + 1.0, ref, seed=1)
    assert paired_bootstrap(gen, gen, seed=0) == (0.0, 0.0, 0.0)


def tiny_model(seed: int = 0) -> QualityModel:
    torch.manual_seed(seed)
    return QualityModel(TINY).eval()


def test_tiny_model_scores_checkpoint_round_trip_and_scorer(tmp_path):
    model = tiny_model()
    x = torch.from_numpy(np.stack([make_clip(1.0, 0), make_clip(1.0, 1)]))
    with torch.no_grad():
        s = model(x)
    assert s.shape == (2,) and bool(((s > 1) & (s < 10)).all())
    f = model.features(x)
    assert f.shape == (2, 3, TINY.n_mels, SR // TINY.hop_length)
    with torch.no_grad():  # level-normalised: a 6 dB quieter clip has the same features where above the floor
        assert torch.allclose(model.features(0.5 * x)[:, :, :, 5:-5], f[:, :, :, 5:-5], atol=1e-3)
    path = save_quality_model(tmp_path / "quality.safetensors", model, {"data": "test"})
    loaded, meta = load_quality_model(path)
    assert meta["foleyflow.kind"] == QUALITY_KIND and json.loads(meta["foleyflow.provenance"])["data"] == "test"
    with torch.no_grad():
        assert torch.equal(loaded(x), s)
    scorer = QualityScorer(loaded)
    assert scorer(x[0].numpy(), SR) == pytest.approx(float(s[0]), abs=1e-5)
    mono44 = make_clip(1.0)[0]
    from foleyflow.audio import resample

    assert 1 < scorer(resample(mono44, SR, 44100), 44100) < 10 and 1 < scorer(np.zeros((2, 10)), SR) < 10
    from foleyflow.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "other.safetensors", {"w": torch.zeros(2)}, kind="reward_aesthetic", config={})
    with pytest.raises(CheckpointError, match="eval_quality"):
        load_quality_model(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=r"\(B, 2, num_samples\)"):
        model(x[:, :1])


def _recipe():
    spec = importlib.util.spec_from_file_location("train_eval_quality", ROOT / "recipes" / "train_eval_quality.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_eval_quality"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def evaltrain_world(tmp_path_factory):
    """A tiny FoleyWorld: 3 evaltrain clips and 1 train clip of 2 s in one manifest."""
    from foleyflow.world.config import WorldConfig

    cfg = WorldConfig(duration_s=2.0, size=64)
    if not Path(cfg.soundfont).is_file():
        pytest.skip(f"soundfont not installed at {cfg.soundfont}")
    from foleyflow.world.make import make_split

    out = tmp_path_factory.mktemp("quality_world")
    make_split(out, "evaltrain", 3, cfg)
    make_split(out, "train", 1, cfg)
    return out / "manifest.jsonl"


def test_recipe_debug_trains_on_evaltrain_only_resumes_and_exports(evaltrain_world, tmp_path, capsys):
    recipe = _recipe()
    cfg = ROOT / "configs" / "train_eval_quality" / "debug.yaml"
    args = ["--config", str(cfg), f"out_dir={tmp_path}", f"data.manifest={evaltrain_world}"]
    recipe.main(args)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("state_*")) == [
        "state_00000001.safetensors", "state_00000002.safetensors"]
    out = capsys.readouterr().out
    assert "2 evaltrain clips to train on, 1 held out" in out and "held-out Spearman" in out
    held = json.loads((tmp_path / "heldout.json").read_text())
    assert held["clips"] == 1 and held["versions"] == 1 + len(KINDS) and set(held["spearman_by_kind"]) == set(KINDS)
    assert all(i.startswith("evaltrain_") for i in held["heldout_ids"])
    recipe.main(args + ["steps=3"])
    assert "resumed from state_00000002.safetensors at step 2" in capsys.readouterr().out
    model, meta = load_quality_model(tmp_path / "quality.safetensors")
    prov = json.loads(meta["foleyflow.provenance"])
    assert prov["steps"] == 3 and prov["split"] == "evaltrain" and prov["train_clips"] == 2
    assert "spearman" in prov["heldout"] and model.cfg.channels == (4, 8)


def test_recipe_refuses_other_splits(tmp_path):
    recipe = _recipe()
    cfg = ROOT / "configs" / "train_eval_quality" / "debug.yaml"
    with pytest.raises(ConfigError, match="evaltrain split only") as e:
        recipe.main(["--config", str(cfg), f"out_dir={tmp_path / 'a'}", "data.split=train"])
    assert "\n" not in str(e.value) and not (tmp_path / "a").exists()
    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_eval_quality.py"), "--config", str(cfg),
                           f"out_dir={tmp_path / 'b'}", "data.split=val"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "'val'" in proc.stderr


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality_eval")
    (root / "ref").mkdir()
    for i in range(3):
        write_audio(root / "ref" / f"clip_{i}.wav", make_clip(1.5, i), SR)
    save_quality_model(root / "models" / "quality.safetensors", tiny_model())
    (root / "empty").mkdir()
    return root


def test_evaluate_reports_quality_with_the_model_and_skips_it_without(clips, tmp_path, run_cli):
    r = run_cli("evaluate", "--generated", clips / "ref", "--reference", clips / "ref", "--models", clips / "models",
                "--no-plots", "-o", tmp_path / "rep")
    assert r.code == 0, r.err
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    gen, ref = rep["systems"]["generated"], rep["systems"]["reference"]
    expected = QualityScorer(tiny_model())
    from foleyflow.eval.audio_io import read_stereo

    want = {f"clip_{i}": expected(*read_stereo(clips / "ref" / f"clip_{i}.wav")) for i in range(3)}
    assert gen["quality_per_clip"] == pytest.approx(want, abs=1e-4)
    assert gen["quality"] == pytest.approx(np.mean(list(want.values())), abs=1e-4)
    assert gen["quality_minus_reference"] == 0.0 and gen["quality_minus_reference_ci95"] == [0.0, 0.0]
    assert ref["quality"] == pytest.approx(gen["quality"]) and "quality" in rep["systems"]["silence"]
    assert "quality (1..10, eval predictor)" in r.out and "skipped quality" not in r.out
    assert "quality" not in rep["skipped"]
    r = run_cli("evaluate", "--generated", clips / "ref", "--reference", clips / "ref", "--models", clips / "empty",
                "--no-plots", "--no-baselines", "-o", tmp_path / "rep2")
    assert r.code == 0, r.err
    rep = json.loads((tmp_path / "rep2" / "report.json").read_text())
    assert "quality" not in rep["systems"]["generated"] and "quality.safetensors not in" in rep["skipped"]["quality"]
    assert "skipped quality: audio quality predictor: quality.safetensors not in" in r.out


QUALITY_FILES = ("foleyflow/eval/quality.py", "foleyflow/models/eval_quality.py", "recipes/train_eval_quality.py")


def test_quality_predictor_does_not_import_rewards():
    for rel in QUALITY_FILES:
        for node in ast.walk(ast.parse((ROOT / rel).read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "foleyflow.rewards" or n.startswith("foleyflow.rewards.") for n in names), rel
    code = ("import sys, numpy as np, torch\n"
            "from foleyflow.eval.quality import degrade, KINDS, load_quality_scorer\n"
            "from foleyflow.models.eval_quality import QualityModel, QualityModelConfig\n"
            "x = np.zeros((2, 16000), np.float32)\n"
            "[degrade(x, k, 0.5, np.random.default_rng(0)) for k in KINDS]\n"
            "QualityModel(QualityModelConfig(n_mels=16, channels=(4, 8), width=16))(torch.zeros(1, 2, 16000))\n"
            "print(sorted(m for m in sys.modules if m.startswith('foleyflow.rewards')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
