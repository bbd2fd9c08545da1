"""Published reward models (foleyflow/rewards/published.py) on random-weight models of the real architectures built by
the maintained packages (LAION-CLAP, MS-CLAP; Audiobox Aesthetics with a small WavLM of the package's own class),
saved in the documented layouts and loaded offline: (B,) finite, deterministic scores equal to values computed here
from the packages' own calls, one-line errors for kinds that do not exist, and the GRPO recipe's reward builder."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from foleyflow.audio import resample
from foleyflow.errors import CheckpointError, ConfigError, FoleyError
from foleyflow.models import published_nets as nets
from foleyflow.rewards.common import RewardConditions
from foleyflow.rewards.published import AudioboxReward, ClapReward, kind_problem, load_published_reward
from test_published_metrics import _write_vocab

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
COT = "Semantic: a glass bottle rolls on tiles. Temporal: two hits at 0.4 s. Aesthetic: dry. Spatial: left."
TEXTS = [COT, "a dog barks twice"]
SEMANTIC = ["a glass bottle rolls on tiles.", "a dog barks twice"]  # what CLAP must read


def _audio(seconds: float = 1.5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(16000 * seconds)) / 16000
    tone = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) for f in (220.0, 530.0)])  # (2, N)
    return (tone[:, None] * torch.tensor([1.0, 0.6])[None, :, None] + 0.05 * torch.randn(2, 2, len(t), generator=g))


# ---------------------------------------------------------------- CLAP
@pytest.fixture(scope="module")
def claps(tmp_path_factory):
    """{kind: (weights file, state dict)}: random LAION-CLAP and MS-CLAP (small text towers) beside their text
    folders, as in the evaluation's embedders folder."""
    import transformers

    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = {}
    d = tmp_path_factory.mktemp("clap")
    text = d / "roberta-base"
    text.mkdir()
    transformers.RobertaConfig(vocab_size=300, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                               num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(text)
    _write_vocab(text, "roberta")
    sd = nets.build_laion_clap(text).state_dict()
    torch.save({"epoch": 15, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, d / "laion.pt")
    out["laion_clap"] = (d / "laion.pt", sd)
    text = d / "gpt2"
    text.mkdir()
    transformers.GPT2Config(vocab_size=300, n_layer=1, n_head=2).save_pretrained(text)
    _write_vocab(text, "gpt2")
    sd = nets.build_ms_clap(text).state_dict()
    torch.save({"model": sd}, d / "ms.pth")
    out["ms_clap"] = (d / "ms.pth", sd)
    return out


def _package_cosines(kind: str, net, folder, audio: torch.Tensor) -> np.ndarray:
    """The CLAP score computed here from the package network's own embedding calls and the tokenizer files."""
    import transformers

    mono = audio.mean(1).double().numpy()
    tok = transformers.AutoTokenizer.from_pretrained(str(folder / ("roberta-base" if kind == "laion_clap" else "gpt2")))
    out = []
    with torch.inference_mode():
        for x, text in zip(mono, SEMANTIC):
            if kind == "laion_clap":
                x = resample(x, 16000, 48000, dtype=np.float64)
                x = np.pad(np.tile(x, 480000 // len(x)), (0, 480000 % len(x)))  # repeatpad to 10 s
                a = net.get_audio_embedding([{"waveform": torch.tensor(x, dtype=torch.float32),
                                              "longer": torch.tensor([False])}])[0]
                t = net.get_text_embedding(dict(tok([text], padding="max_length", truncation=True, max_length=77,
                                                    return_tensors="pt")))[0]
            else:
                x = resample(x, 16000, 44100, dtype=np.float64)
                x = np.tile(x, int(np.ceil(308700 / len(x))))[:308700]  # tiled to 7 s
                a = net.audio_encoder(torch.tensor(x, dtype=torch.float32)[None])[0][0]
                tok.add_special_tokens({"pad_token": "!"})
                ids = tok(text + " <|endoftext|>", add_special_tokens=True, max_length=77, padding="max_length",
                          return_tensors="pt")
                t = net.caption_encoder({"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"]})[0]
            a, t = a.double().numpy(), t.double().numpy()
            out.append(a @ t / np.linalg.norm(a) / np.linalg.norm(t))
    return np.array(out)


@pytest.mark.parametrize("kind", ["laion_clap", "ms_clap"])
def test_clap_reward_is_the_cosine_of_the_package_embeddings_finite_and_deterministic(claps, kind):
    from foleyflow.rewards.semantic import semantic_text

    assert [semantic_text(t) for t in TEXTS] == SEMANTIC
    path, sd = claps[kind]
    reward = load_published_reward("semantic", kind, path)
    assert isinstance(reward, ClapReward) and reward.identity["kind"] == kind
    assert reward.identity["weights"] == str(path.resolve()) and len(reward.identity["sha256"]) == 64
    own = reward.net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items() if k in own and not k.endswith("position_ids"))
    audio, cond = _audio(), RewardConditions(texts=TEXTS)
    first = reward.score(audio, cond)
    assert first.shape == (2,) and first.dtype == torch.float32 and torch.isfinite(first).all()
    assert torch.equal(reward.score(audio, cond), first)
    np.testing.assert_allclose(first.numpy(), _package_cosines(kind, reward.net, path.parent, audio), atol=1e-5)


def test_the_evaluation_and_the_reward_share_the_clap_loader(claps, tmp_path):
    """On a clip whose channels are equal (MS-CLAP's channel flattening then equals tiling the mono mix), the
    evaluation's clap_ms_clap per-clip cosine (eval/published_metrics.py) equals the reward's score."""
    from foleyflow.eval.published_metrics import load_published_models

    path, _ = claps["ms_clap"]
    (tmp_path / nets.FILES["ms_clap"]).symlink_to(path)
    (tmp_path / "gpt2").symlink_to(path.parent / "gpt2")
    models, skipped = load_published_models(tmp_path)
    assert [m.name for m in models] == ["ms_clap"] and "laion_clap" in skipped
    audio = _audio()[:, :1].repeat(1, 2, 1)
    a = np.stack([models[0].audio(x.numpy(), 16000)["clap"] for x in audio])
    t = np.stack([models[0].text(text) for text in SEMANTIC])
    cos = (a * t).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(t, axis=1)
    reward = load_published_reward("semantic", "ms_clap", path)
    np.testing.assert_allclose(reward.score(audio, RewardConditions(texts=TEXTS)).numpy(), cos, atol=1e-5)


# ---------------------------------------------------------------- Audiobox Aesthetics
TT = {"CE": {"mean": 5.0, "std": 2.0}, "CU": {"mean": 6.0, "std": 1.5}, "PC": {"mean": 3.0, "std": 1.0},
      "PQ": {"mean": 7.0, "std": 0.5}}


@pytest.fixture
def audiobox(tmp_path, monkeypatch):
    """A released-layout checkpoint.pt of the package's AesMultiOutput with a small WavLM (the package's class,
    3 layers of width 32, patched over the package default for the test) and its state dict."""
    aes = nets.package_module("audiobox_aesthetics", "model.aes")
    small = dict(aes.DEFAULT_AUDIO_CFG.__dict__, encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                 encoder_attention_heads=2, conv_pos=16, conv_pos_groups=4,
                 conv_feature_layers="[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2")
    monkeypatch.setattr(aes, "DEFAULT_AUDIO_CFG", aes.WavLMConfig(small))
    torch.manual_seed(0)
    cfg = {"proj_num_layer": 1, "proj_ln": False, "proj_act_fn": "gelu", "proj_dropout": 0, "nth_layer": 3,
           "use_weighted_layer_sum": True, "precision": "32", "normalize_embed": True, "output_dim": 1}
    net = nets.build_audiobox(cfg, TT)
    for p in net.layer_weights.values():  # the layer mix is not uniform in a trained model
        p.data.normal_()
    sd = net.state_dict()
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "model_cfg": cfg, "target_transform": TT},
               path)
    return path, sd, cfg


def _aes_window(net, x: torch.Tensor, axis: str) -> torch.Tensor:
    """The package model on one 10 s window per clip of x (B, n <= 160000), zero-padded and masked."""
    wav = torch.nn.functional.pad(x, (0, 160000 - x.shape[1]))[:, None]
    mask = torch.zeros_like(wav, dtype=torch.bool)
    mask[..., :x.shape[1]] = True
    with torch.inference_mode():
        return net({"wav": wav, "mask": mask})[axis] * TT[axis]["std"] + TT[axis]["mean"]


def test_audiobox_reward_is_the_package_prediction_of_the_axis_finite_and_deterministic(audiobox):
    path, sd, _ = audiobox
    audio = _audio()
    scores = {}
    for axis in ("PQ", "CE"):
        reward = load_published_reward("aesthetic", "audiobox", path, axis=axis)
        assert isinstance(reward, AudioboxReward) and reward.identity["axis"] == axis
        assert all(torch.equal(reward.net.state_dict()[k], v) for k, v in sd.items())
        s = reward.score(audio, RewardConditions())
        assert s.shape == (2,) and torch.isfinite(s).all() and torch.equal(reward.score(audio, None), s)
        torch.testing.assert_close(s, _aes_window(reward.net, audio.mean(1), axis), atol=1e-5, rtol=1e-5)
        scores[axis] = s
    assert not torch.allclose(scores["PQ"], scores["CE"])


def test_audiobox_reward_weights_10s_windows_by_their_length(audiobox):
    reward = load_published_reward("aesthetic", "audiobox", audiobox[0])
    audio = _audio(12.0)  # a full 10 s window and a 2 s one
    mono = audio.mean(1)
    first, last = _aes_window(reward.net, mono[:, :160000], "PQ"), _aes_window(reward.net, mono[:, 160000:], "PQ")
    torch.testing.assert_close(reward.score(audio), (first + 0.2 * last) / 1.2, atol=1e-5, rtol=1e-5)


def test_audiobox_loads_the_hub_layout_and_refuses_other_files(audiobox, tmp_path):
    from safetensors.torch import save_file

    path, sd, cfg = audiobox
    hub = tmp_path / "hub"
    hub.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(hub / "model.safetensors"))
    (hub / "config.json").write_text(json.dumps({**cfg, "target_transform": TT}))
    net = nets.load_audiobox(hub / "model.safetensors")
    assert all(torch.equal(net.state_dict()[k], v) for k, v in sd.items())
    torch.save({"x": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an Audiobox Aesthetics checkpoint") as info:
        load_published_reward("aesthetic", "audiobox", tmp_path / "other.pt")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- kinds that cannot be selected
@pytest.mark.parametrize("name,kind,axis,message", [
    ("temporal", "synchformer", "PQ", "no maintained package defines Synchformer"),
    ("spatial", "StereoCRM", "PQ", "StereoCRM has no package"),
    ("semantic", "audiobox", "PQ", "rewards.semantic.kind must be one of foleyflow, laion_clap, ms_clap"),
    ("aesthetic", "clap", "PQ", "rewards.aesthetic.kind must be one of foleyflow, audiobox"),
    ("aesthetic", "audiobox", "XQ", "axis must be one of CE, CU, PC, PQ"),
])
def test_unavailable_or_unknown_kinds_are_one_line_errors(tmp_path, name, kind, axis, message):
    assert kind_problem(name, kind, axis) is not None and "\n" not in kind_problem(name, kind, axis)
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=message):
        load_published_reward(name, kind, tmp_path / "w.pt", axis=axis)
    assert kind_problem("temporal", "foleyflow") is None and kind_problem("semantic", "ms_clap") is None
    with pytest.raises(FoleyError, match="rewards.semantic.checkpoint not found: /nowhere/x.pt"):
        load_published_reward("semantic", "ms_clap", "/nowhere/x.pt")


# ---------------------------------------------------------------- the GRPO recipe's reward builder
def _cfg(grpo, **specs):
    cfg = grpo.TrainGrpoConfig(bundle="b", manifest="m.jsonl")
    for name, spec in specs.items():
        setattr(cfg.rewards, name, grpo.RewardSpec(**spec))
    return cfg


def test_grpo_builds_published_rewards_from_the_config_and_records_them(claps, audiobox):
    from test_train_grpo import recipe

    grpo = recipe()
    ms, _ = claps["ms_clap"]
    cfg = _cfg(grpo, semantic=dict(kind="ms_clap", checkpoint=str(ms), weight=1.0),
               aesthetic=dict(kind="audiobox", checkpoint=str(audiobox[0]), weight=0.5, axis="CE"))
    grpo.check_config(cfg)
    models = grpo.load_rewards(cfg)
    assert list(models) == ["semantic", "aesthetic"]
    assert isinstance(models["semantic"], ClapReward) and models["semantic"].clap.name == "ms_clap"
    assert isinstance(models["aesthetic"], AudioboxReward) and models["aesthetic"].axis == "CE"
    assert not any(p.requires_grad for m in models.values() for p in m.parameters())
    assert grpo.reward_texts_encoder(models) is None  # CLAP encodes the texts itself
    prov = grpo.rewards_provenance(cfg, models)
    assert prov["semantic"]["kind"] == "ms_clap" and prov["semantic"]["weights"] == str(ms.resolve())
    assert prov["aesthetic"] == {"kind": "audiobox", "weights": str(audiobox[0].resolve()),
                                 "sha256": models["aesthetic"].identity["sha256"], "weight": 0.5, "axis": "CE"}
    clips = [{"reward": {"text": t}} for t in TEXTS]
    scores = grpo.score(models, _audio(), clips, 1, 16000)
    assert scores.shape == (2, 2) and torch.isfinite(scores).all()


@pytest.mark.parametrize("spec,message", [
    (dict(kind="synchformer"), "rewards.temporal.kind synchformer: no maintained package defines Synchformer"),
    (dict(kind="laion_clap"), "rewards.temporal.kind must be one of foleyflow, got 'laion_clap'"),
])
def test_grpo_refuses_a_bad_kind_in_one_line_before_loading_anything(tmp_path, monkeypatch, spec, message):
    from test_train_grpo import recipe

    grpo = recipe()
    (tmp_path / "w.pt").write_bytes(b"")
    loaded = []
    monkeypatch.setattr("foleyflow.rewards.published.load_published_reward", lambda *a, **k: loaded.append(a))
    cfg = _cfg(grpo, semantic=dict(kind="ms_clap", checkpoint=str(tmp_path / "w.pt"), weight=1.0),
               temporal=dict(checkpoint=str(tmp_path / "w.pt"), weight=1.0, **spec))
    for call in (grpo.check_config, grpo.load_rewards):
        with pytest.raises(ConfigError, match=message) as info:
            call(cfg)
        assert "\n" not in str(info.value)
    cfg = _cfg(grpo, semantic=dict(kind="ms_clap", checkpoint=str(tmp_path / "w.pt"), weight=1.0),
               aesthetic=dict(kind="audiobox", checkpoint=str(tmp_path / "missing.pt"), weight=1.0))
    with pytest.raises(FoleyError, match="rewards.aesthetic.checkpoint not found"):
        grpo.load_rewards(cfg)
    assert loaded == []
