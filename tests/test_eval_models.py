"""Audio evaluation models: the tiny EventModel/ClapModel built in code, their recipes (debug configs, resume),
loading a models folder into EvalModels, and `foleyflow evaluate --models`."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from foleyflow.checkpoint import save_checkpoint
from foleyflow.config import to_dict
from foleyflow.data.eval_clips import EvalClip, clip_mels, crop_labels, mel_slice, synthetic_clips
from foleyflow.errors import CheckpointError, EvalError
from foleyflow.eval.models import caption_vectors, load_eval_models, read_captions
from foleyflow.eval.truth import classify_events
from foleyflow.events import read_events
from foleyflow.media import write_audio
from foleyflow.models.eval_audio import (CLAP_KIND, EVENT_KIND, ClapModel, ClapModelConfig, EvalCNNConfig,
                                         EventModel, EventModelConfig)

ROOT = Path(__file__).resolve().parent.parent
SR = 16000
TINY = EvalCNNConfig(n_mels=32, channels=(4, 8, 8, 8))


def tiny_event() -> EventModel:
    torch.manual_seed(0)
    return EventModel(EventModelConfig(cnn=TINY)).eval()


def tiny_clap() -> ClapModel:
    torch.manual_seed(1)
    return ClapModel(ClapModelConfig(cnn=EvalCNNConfig(n_mels=32, channels=(4, 8, 8, 8), hop_length=320,
                                                       time_pool=(2, 1, 1, 1)),
                                     text_encoder="hashed", embed_dim=16)).eval()


def save(model, path, kind):
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    save_checkpoint(path, sd, kind=kind, config=to_dict(model.cfg))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A models folder with tiny event and clap models, and a set of 4 synthetic clips with truth and captions."""
    root = tmp_path_factory.mktemp("evalmodels")
    save(tiny_event(), root / "models" / "event.safetensors", EVENT_KIND)
    save(tiny_clap(), root / "models" / "clap.safetensors", CLAP_KIND)
    for d in ("ref", "truth"):
        (root / d).mkdir()
    clips, audio = synthetic_clips(4, duration_s=2.0, seed=3)
    with open(root / "captions.jsonl", "w") as f:
        for c, x in zip(clips, audio):
            write_audio(root / "ref" / f"{c.id}.wav", x, SR)
            (root / "truth" / f"{c.id}.json").write_text(json.dumps(
                [{"sound_class": e["sound_class"], "kind": "discrete", "onset_s": e["onset_s"], "pan": 0.0}
                 for e in c.events]))
            f.write(json.dumps({"id": c.id, "caption": c.caption}) + "\n")
    return root


def test_event_model_outputs_and_mel_path_matches_waveform_path():
    m = tiny_event()
    clips, audio = synthetic_clips(2, duration_s=2.0, seed=0)
    mels = clip_mels(clips, m.cnn, audio=audio)
    assert mels.shape == (2, 32, 201) and mels.dtype == np.float16
    onset = 1.0
    n = m.cfg.segment_samples()
    start = int(round((onset - m.cfg.pre_s) * SR))
    with torch.no_grad():
        wave = m.event_logits(torch.from_numpy(audio[0][:, start: start + n]).mean(0, keepdim=True))
        frames = n // m.cfg.cnn.hop_length + 1
        cached = m.event_logits_from_mel(torch.from_numpy(mel_slice(mels[0], start // 160, frames))[None])
    assert wave.shape == (1, 18)
    # the cached log-mel slice is what the front end gives on the waveform slice (up to fp16 and edge frames)
    assert torch.allclose(wave, cached, atol=0.05 * float(wave.abs().max()) + 1e-3)
    prob, emb = m.clip_outputs(torch.from_numpy(audio[0])[None])
    assert prob.shape == (1, 21) and emb.shape == (1, 16) and bool(((prob > 0) & (prob < 1)).all())


def test_crop_labels_and_mel_slice_padding():
    clip = EvalClip("c", None, [{"sound_class": "marimba", "kind": "discrete", "onset_s": 1.0, "offset_s": 3.0},
                                {"sound_class": "engine", "kind": "continuous", "onset_s": 2.0, "offset_s": 5.0},
                                {"sound_class": "rain", "kind": "ambience", "onset_s": 0.0, "offset_s": None}],
                    "", 8.0)
    classes = ("marimba", "engine", "rain", "wind")
    assert crop_labels(clip, 0.0, 1.5, classes).tolist() == [1, 0, 1, 0]
    assert crop_labels(clip, 1.1, 2.5, classes).tolist() == [1, 1, 1, 0]      # onset 0.1 s before: still ringing
    assert crop_labels(clip, 1.5, 1.9, classes).tolist() == [0, 0, 1, 0]
    mel = np.zeros((4, 10), np.float16)
    s = mel_slice(mel, -3, 5)
    assert s.shape == (4, 5) and (s[:, :3] < -11).all() and (s[:, 3:] == 0).all()


def test_load_eval_models_gives_every_audio_and_text_metric(folder):
    models = load_eval_models(folder / "models", text_file=folder / "captions.jsonl")
    clf = models.event_classifier
    assert len(clf.class_names) == 18 and clf.sample_rate == SR and clf.segment_s == pytest.approx(0.64)
    x, _ = __import__("soundfile").read(folder / "ref" / "synthetic_0000.wav", dtype="float32", always_2d=True)
    x = x.T
    post = clf(np.zeros((2, int(round(clf.segment_s * SR))), np.float32))
    assert post.shape == (18,) and post.sum() == pytest.approx(1.0) and (post >= 0).all()
    res = classify_events(x, SR, read_events(folder / "truth" / "synthetic_0000.json"), clf)
    assert res and all(r["predicted"] in clf.class_names for r in res)
    emb = models.audio_embedder(x, SR)
    assert emb.shape == (16,) and np.isfinite(emb).all()
    # resampled input gives nearly the same embedding
    from foleyflow.audio import resample
    assert np.allclose(models.audio_embedder(resample(x, SR, 32000), 32000), emb, rtol=0.05, atol=0.05)
    logits = models.audio_classifier(x, SR)
    p, _ = clf.clip_outputs(x, SR)
    soft = np.exp(logits - logits.max())
    assert np.allclose(soft / soft.sum(), p / p.sum())                 # softmax = normalised presence
    t = models.text_embedding("synthetic_0001")
    a = models.text_audio_embedder(x, SR)
    assert t.shape == a.shape == (16,) and np.linalg.norm(t) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(EvalError, match="no caption for clip 'nope'"):
        models.text_embedding("nope")
    assert set(models.skipped) == {"offset", "av", "quality"} and "not in" in models.skipped["offset"]


def test_folder_without_text_or_av_module(folder, tmp_path, monkeypatch):
    models = load_eval_models(folder / "models")
    assert models.text_embedding is None and models.skipped["clap"] == "--text not given"
    # offset/av files present but the audio-visual module missing: skipped with the reason, no crash
    (tmp_path / "m").mkdir()
    for name in ("offset", "av"):
        (tmp_path / "m" / f"{name}.safetensors").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "foleyflow.eval.av_models", None)
    models = load_eval_models(tmp_path / "m", video_dir=tmp_path)
    assert "not available" in models.skipped["offset"] and "not available" in models.skipped["av"]
    assert "event.safetensors not in" in models.skipped["event"]
    assert not models.desync and models.event_classifier is None


def test_wrong_checkpoint_kind_and_bad_captions(folder, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "event.safetensors").write_bytes((folder / "models" / "clap.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="is a 'eval_clap' checkpoint, expected 'eval_event'"):
        load_eval_models(tmp_path / "m")
    with pytest.raises(EvalError, match="not found"):
        load_eval_models(tmp_path / "none")
    (tmp_path / "c.txt").write_text("clip1\ta ball\nclip2 no tab\n")
    with pytest.raises(EvalError, match="c.txt:2"):
        read_captions(tmp_path / "c.txt")
    (tmp_path / "c.txt").write_text("# captions\nclip1\ta ball\n")
    assert read_captions(tmp_path / "c.txt") == {"clip1": "a ball"}


def test_hashed_text_vectors_are_deterministic_and_word_based():
    v = caption_vectors(["A red ball", "a red BALL.", "a blue cube"], "hashed")
    assert v.shape == (3, 384) and np.allclose(v[0], v[1]) and abs(float(v[0] @ v[2])) < 0.9


def test_evaluate_cli_with_models(folder, tmp_path, run_cli):
    r = run_cli("evaluate", "--generated", folder / "ref", "--reference", folder / "ref", "--truth", folder / "truth",
                "--text", folder / "captions.jsonl", "--models", folder / "models", "-o", tmp_path / "rep",
                "--no-plots", "--no-baselines")
    assert r.code == 0, r.err
    g = json.loads((tmp_path / "rep" / "report.json").read_text())["systems"]["generated"]
    for key in ("fd_learned", "kad_learned", "kl", "class_accuracy", "clap_score"):
        assert g.get(key) is not None, key
    assert g["kl"] == pytest.approx(0.0, abs=1e-9)                     # the reference against itself
    assert "skipped desync" in r.out and "offset.safetensors not in" in r.out
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "clap.safetensors").write_bytes((folder / "models" / "event.safetensors").read_bytes())
    bad = run_cli("evaluate", "--generated", folder / "ref", "--reference", folder / "ref", "--text",
                  folder / "captions.jsonl", "--models", tmp_path / "bad", "-o", tmp_path / "x")
    assert bad.code == 2 and bad.err.startswith("error: ") and bad.err.count("\n") == 1
    assert "expected 'eval_clap'" in bad.err
    off = run_cli("evaluate", "--generated", folder / "ref", "--reference", folder / "ref", "--no-models",
                  "--no-baselines", "--no-plots", "-o", tmp_path / "y")
    assert off.code == 0 and "skipped kl/is" in off.out


def _recipe(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name,out", [("train_event_classifier", "event"), ("train_clap", "clap")])
def test_recipe_debug_runs_resumes_and_exports(name, out, tmp_path, capsys):
    recipe = _recipe(name)
    cfg = ROOT / "configs" / name / "debug.yaml"
    recipe.main(["--config", str(cfg), f"out_dir={tmp_path}"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("state_*")) == [
        "state_00000001.safetensors", "state_00000002.safetensors"]
    recipe.main(["--config", str(cfg), f"out_dir={tmp_path}", "steps=3"])
    assert "resumed from state_00000002.safetensors at step 2" in capsys.readouterr().out
    models = load_eval_models(tmp_path, text_file=None)
    assert (models.event_classifier is not None) == (out == "event")
    meta = json.loads(__import__("foleyflow.checkpoint", fromlist=["read_metadata"]).read_metadata(
        tmp_path / f"{out}.safetensors")["foleyflow.provenance"])
    assert meta["steps"] == 3 and "synthetic" in meta["data"]
    with pytest.raises(CheckpointError, match=r"another config \(model.cnn.channels differ\)"):
        recipe.main(["--config", str(cfg), f"out_dir={tmp_path}", "model.cnn.channels=[4,8,8,16]"])


def test_minilm_caption_vectors():
    v = caption_vectors(["A marimba and a red ball outdoors.", "A marimba and a blue ball outdoors.",
                         "A truck passes in the rain."], "minilm")
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    with pytest.raises(CheckpointError, match="unknown caption encoder"):
        caption_vectors(["x"], "bert")
