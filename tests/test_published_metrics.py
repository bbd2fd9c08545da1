"""Published metrics from user-supplied embedders (eval/published_metrics.py, models/published_nets.py,
`foleyflow evaluate --embedders`): av-benchmark's preprocessing checked against values computed by hand, its KL / IS
/ FD formulas against independent implementations, the package loaders without hub access, and (slow) the CLI on a
folder of random-weight models of the real architectures in the documented layout."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from foleyflow.errors import CheckpointError, EvalError
from foleyflow.eval import published_metrics as pm
from foleyflow.models import published_nets as nets
from foleyflow.eval.metrics import frechet_distance, kernel_audio_distance

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- preprocessing, by hand
def test_av_clip_mono_mean_removed_and_cut_to_8s():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 16000 * 9)) + 0.5
    x = pm.av_clip(a, 16000, 16000)
    mono = a.mean(axis=0)
    assert len(x) == 128000  # first 8 s, not padded
    np.testing.assert_allclose(x, (mono - mono.mean())[:128000])
    short = pm.av_clip(a[:, :1000], 16000, 16000)
    assert len(short) == 1000 and abs(short.mean()) < 1e-12  # never padded


def test_passt_and_laion_inputs_pad_and_tile_as_documented():
    x = np.arange(1, 300001, dtype=np.float64)
    p = pm.passt_input(x)
    assert p.shape == (1, 320000) and p[0, 299999] == 300000 and not p[0, 300000:].any()
    assert pm.passt_input(np.ones(400000)).shape == (1, 320000)
    y = np.arange(1, 200001, dtype=np.float64)  # 480000 // 200000 = 2 copies, then zeros
    lai = pm.laion_input(y)
    assert lai.shape == (480000,)
    np.testing.assert_array_equal(lai[:400000], np.concatenate([y, y]).astype(np.float32))
    assert not lai[400000:].any()
    long = np.arange(500000, dtype=np.float64)
    crop = pm.laion_input(long, seed=3)
    assert crop[-1] - crop[0] == 479999 and np.all(np.diff(crop) == 1)


def test_ms_clap_input_flattens_channels_tiles_and_crops():
    a = np.stack([np.full(44100, 1.0), np.full(44100, 2.0)])  # 1 s stereo at 44.1 kHz -> 2 s flattened
    x = pm.ms_clap_input(a, 44100)
    assert x.shape == (308700,)
    np.testing.assert_array_equal(x[:44100], 1.0)
    np.testing.assert_array_equal(x[44100:88200], 2.0)
    np.testing.assert_array_equal(x[88200:132300], 1.0)  # tiled ceil(7 / 2) = 4 times, cut to 7 s
    ramp = np.arange(400000, dtype=np.float64)[None]
    c = pm.ms_clap_input(ramp, 44100, seed=1)
    assert c[0] < 400000 - 308700 and np.all(np.diff(c) == 1)


def test_vggish_examples_are_consecutive_096s_logmel_patches():
    x = np.random.default_rng(1).standard_normal(16000 * 3)
    ex = pm.vggish_examples(x)
    # frames: 1 + (48000 - 400) // 160 = 298 -> 3 examples of 96
    assert ex.shape == (3, 96, 64)
    from foleyflow.eval.published import vggish_logmel
    np.testing.assert_allclose(ex[1], vggish_logmel(x)[96:192], rtol=1e-6)
    assert pm.vggish_examples(np.zeros(100)).shape == (1, 96, 64)


def test_kaldi_mel_banks_match_the_kaldi_formula_by_hand():
    banks, centers = nets.kaldi_mel_banks(128, 1024, 32000, 0.0, 15000.0)
    assert banks.shape == (128, 512) and centers.shape == (128,)
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    delta = (mel(15000.0) - mel(0.0)) / 129
    # bin k's frequency 31.25 k Hz; filter m rises from mel m*delta to (m+1)*delta, falls to (m+2)*delta
    for m, k in ((0, 1), (10, 20), (100, 300), (127, 470)):
        b = mel(31.25 * k)
        up, down = (b - m * delta) / delta, ((m + 2) * delta - b) / delta
        assert banks[m, k].item() == pytest.approx(max(0.0, min(up, down)), abs=1e-6)
    assert centers[5].item() == pytest.approx(6 * delta, rel=1e-6)
    _, c2 = nets.kaldi_mel_banks(4, 512, 16000, 20.0, -400.0)  # high_freq <= 0 counts from Nyquist
    assert c2[-1].item() == pytest.approx(mel(20.0) + 4 * (mel(7600.0) - mel(20.0)) / 5, rel=1e-6)


# ---------------------------------------------------------------- metrics vs independent implementations
def test_kl_and_is_equal_av_benchmark_torch_formulas():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(2)
    ref, gen = rng.standard_normal((23, 527)) * 3, rng.standard_normal((23, 527)) * 3
    want = F.kl_div(F.log_softmax(torch.tensor(gen), dim=1), F.log_softmax(torch.tensor(ref), dim=1),
                    reduction="sum", log_target=True) / 23
    assert pm.kl_softmax(ref, gen) == pytest.approx(float(want), rel=1e-10)
    feats = torch.tensor(gen)[np.random.RandomState(2020).permutation(23)]
    p, logp, n, scores = feats.softmax(1), feats.log_softmax(1), 23, []
    for i in range(10):
        pc, lc = p[i * n // 10:(i + 1) * n // 10], logp[i * n // 10:(i + 1) * n // 10]
        scores.append((pc * (lc - pc.mean(0, keepdim=True).log())).sum(1).mean().exp().item())
    mean, std = pm.inception_score_av(gen)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10) and std == pytest.approx(np.std(scores), rel=1e-8)
    with pytest.raises(EvalError):
        pm.inception_score_av(gen[:9])


def test_fd_and_kad_on_embeddings_equal_independent_formulas():
    from scipy import linalg

    rng = np.random.default_rng(3)
    g, r = rng.standard_normal((60, 8)) + 0.3, rng.standard_normal((50, 8)) * 1.2
    # av-benchmark metrics/fad.py (audioldm_eval): np.cov + scipy sqrtm of the product
    mu1, s1, mu2, s2 = g.mean(0), np.cov(g, rowvar=False), r.mean(0), np.cov(r, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    want = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(g, r).value == pytest.approx(want, rel=1e-8)
    # KAD: 100 x unbiased MMD^2, Gaussian kernel, bandwidth = median pairwise distance of the reference set
    d = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))  # noqa: E731
    drr = d(r, r)
    sigma = np.median(drr[np.triu_indices(len(r), 1)])
    k = lambda dist: np.exp(-dist ** 2 / (2 * sigma ** 2))  # noqa: E731
    kgg, krr = k(d(g, g)), k(drr)
    mmd = ((kgg.sum() - np.trace(kgg)) / (60 * 59) + (krr.sum() - np.trace(krr)) / (50 * 49)
           - 2 * k(d(g, r)).mean())
    got = kernel_audio_distance(g, r)
    assert got.value == pytest.approx(100 * mmd, rel=1e-8) and got.bandwidth == pytest.approx(sigma)


# ---------------------------------------------------------------- files and loading
class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_published",))


def test_a_pth_that_needs_unpickling_is_refused_and_its_payload_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / nets.FILES["vggish"]
    bad.write_bytes(pickle.dumps({"x": _Payload()}))
    with pytest.raises(CheckpointError, match="refused"):
        nets.read_pth(bad)
    assert not (tmp_path / "PWNED_published").exists()
    with pytest.raises(CheckpointError):
        pm.load_published_models(tmp_path)


def test_package_modules_load_without_torchaudio_timm_or_torchvision():
    pre = nets.package_module("hear21passt", "models.preprocess")
    for name in ("torchaudio", "timm", "torchvision"):
        if name not in sys.modules:
            continue
        assert getattr(sys.modules[name], "__file__", None), f"stub {name} left in sys.modules"
    assert pre.torchaudio.compliance.kaldi.get_mel_banks is not None
    assert nets.package_module("msclap", "models.clap").CLAP is not None


def _write_vocab(folder: Path, kind: str) -> None:
    """A byte-level BPE tokenizer (every byte a token, no merges): '!' is id 0 as in GPT-2's vocabulary."""
    # GPT-2's byte -> printable character table: printable Latin-1 bytes map to themselves, the others to 256 + n
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    chars = [chr(b) for b in keep] + [chr(256 + n) for n in range(256 - len(keep))]
    specials = ["<|endoftext|>"] if kind == "gpt2" else ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = {c: i for i, c in enumerate(chars)} | {s: len(chars) + i for i, s in enumerate(specials)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def write_embedders(folder: Path, names=pm.NAMES) -> None:
    """Random-weight models of the real architectures (built by the packages), saved as the documented files."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if "vggish" in names:
        torch.save(nets.build_vggish().state_dict(), folder / nets.FILES["vggish"])
    if "panns" in names:
        torch.save({"model": nets.build_panns().state_dict()}, folder / nets.FILES["panns"])
    if "passt" in names:
        torch.save(nets.build_passt().net.state_dict(), folder / nets.FILES["passt"])
    if "laion_clap" in names:
        text = folder / "roberta-base"
        text.mkdir()
        transformers.RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                                   pad_token_id=1).save_pretrained(text)
        _write_vocab(text, "roberta")
        sd = nets.build_laion_clap(text).state_dict()
        torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in sd.items()}},
                   folder / nets.FILES["laion_clap"])
    if "ms_clap" in names:
        text = folder / "gpt2"
        text.mkdir()
        transformers.GPT2Config().save_pretrained(text)
        _write_vocab(text, "gpt2")
        torch.save({"model": nets.build_ms_clap(text).state_dict()}, folder / nets.FILES["ms_clap"])


def _clips(folder: Path, n: int, seed: int, sr: int = 16000, seconds: float = 1.0) -> None:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    for i in range(n):
        tone = 0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.05 * rng.standard_normal(len(t))
        sf.write(folder / f"clip{i:02d}.wav", np.stack([tone, 0.8 * tone], 1), sr)


def _evaluate(tmp_path: Path, embedders: Path, n: int, *extra: str) -> subprocess.CompletedProcess:
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    _clips(gen, n, 1)
    _clips(ref, n, 2)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "foleyflow", "evaluate", "--generated", str(gen), "--reference",
                           str(ref), "--embedders", str(embedders), "--no-models", "--no-plots", "-o",
                           str(tmp_path / "report"), *extra], capture_output=True, text=True, env=env, timeout=1800)


def test_cli_embedders_errors_are_one_line(tmp_path, capsys):
    from foleyflow.cli import main

    empty = tmp_path / "emb"
    empty.mkdir()
    _clips(tmp_path / "gen", 2, 1)
    _clips(tmp_path / "ref", 2, 2)
    for folder in (empty, tmp_path / "missing"):
        code = main(["evaluate", "--generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"),
                     "--embedders", str(folder), "--no-models", "--no-plots", "--no-baselines", "-o",
                     str(tmp_path / "report")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "report").exists()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 3 min on the shared 2-core machine (VGGish is 72 M parameters)
def test_cli_vggish_folder_gives_fd_and_kad(tmp_path):
    emb = tmp_path / "emb"
    write_embedders(emb, ["vggish"])
    res = _evaluate(tmp_path, emb, 4, "--no-baselines")
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    gen = report["systems"]["generated"]
    assert np.isfinite(gen["fd_vggish"]) and gen["fd_vggish"] > 0 and np.isfinite(gen["kad_vggish"])
    assert "published passt" in report["skipped"] and "FD VGGish" in res.stdout


@pytest.mark.slow
@pytest.mark.timeout(3600)  # builds ~600 M parameters twice: 15-25 min on the shared 2-core machine
def test_cli_all_published_embedders_give_finite_metrics(tmp_path):
    emb = tmp_path / "emb"
    write_embedders(emb)
    captions = tmp_path / "captions.txt"
    captions.write_text("".join(f"clip{i:02d}\ta tone at {200 + 40 * i} hertz\n" for i in range(10)))
    res = _evaluate(tmp_path, emb, 10, "--no-baselines", "--text", str(captions))
    assert res.returncode == 0, res.stderr[-3000:]
    gen = json.loads((tmp_path / "report" / "report.json").read_text())["systems"]["generated"]
    for key in ("fd_passt", "fd_panns", "fd_vggish", "kad_passt", "kl_passt", "kl_panns", "is_passt", "is_panns",
                "clap_laion_clap", "clap_ms_clap"):
        assert key in gen and np.isfinite(gen[key]), key
    assert gen["kl_panns"] >= 0 and gen["is_passt"] >= 1.0 and -1.0 <= gen["clap_ms_clap"] <= 1.0


def test_run_evaluation_reports_published_metrics_paired_by_name(tmp_path):
    """run.py's use of EvalModels.published: FD/KAD over stacked rows, KL paired by clip name (a reference set with an
    extra clip, generated = the same audio -> KL 0), IS from 10 clips, CLAP over captioned clips only."""
    import shutil

    from foleyflow.eval.run import EvalModels, run_evaluation

    gen, ref = tmp_path / "gen", tmp_path / "ref"
    _clips(ref, 11, 5, seconds=0.25)
    gen.mkdir()
    for i in range(1, 11):  # generated = reference clips 1..10 (clip00 only in the reference set)
        shutil.copy(ref / f"clip{i:02d}.wav", gen / f"clip{i:02d}.wav")

    def audio(a, sr):
        spec = np.abs(np.fft.rfft(a.mean(0)[:2048], 64))[:16]
        return {"embedding": np.stack([spec, spec[::-1]]), "logits": np.log(spec + 1e-3), "clap": spec}

    fake = pm.PublishedModel("fake", audio, text=lambda c: np.full(16, float(len(c))),
                             captions={f"clip{i:02d}": "x" * i for i in range(1, 6)})
    report = run_evaluation(gen, ref, models=EvalModels(published=[fake]), baselines=False)
    out = report["systems"]["generated"]
    assert out["kl_fake"] == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(out["fd_fake"]) and np.isfinite(out["kad_fake"]) and out["is_fake"] >= 1.0
    import soundfile as sf

    def outputs(i):
        data, sr = sf.read(gen / f"clip{i:02d}.wav", always_2d=True)
        return audio(data.T, sr)

    cos = [o["clap"].sum() / np.linalg.norm(o["clap"]) / 4.0 for o in map(outputs, range(1, 6))]  # text: all equal
    assert out["clap_fake"] == pytest.approx(np.mean(cos), rel=1e-5)
    logits = np.stack([outputs(i)["logits"] for i in range(1, 11)])
    assert out["is_fake"] == pytest.approx(pm.inception_score_av(logits)[0], rel=1e-6)
