"""Plans over a set (issue 19's ablation rows and plan edits): `generate-set --text truth|monolithic|auto` on two tiny
FoleyWorld clips made here, with a tiny untrained bundle that follows plans (and a copy with a tiny planner); the
plan-edit benchmark's trial mechanics (benchmarks/plan_edits.py) on synthetic audio and end to end."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from foleyflow.models.generator import Generator
from foleyflow.models.text_encoder import TextEncoderConfig

ROOT = Path(__file__).resolve().parents[1]
WINDOW_S = 2.0
TINY_GEN = dict(hidden_dim=32, num_heads=2, num_joint_blocks=1, num_audio_blocks=1, plan_dim=12)
TEXT_CFG = TextEncoderConfig(seq_len=32, part_seq_len=16, overflow="truncate")
TINY_PLANNER = dict(visual_dim=16, sync_dim=16, width=16, layers=1, position_columns=8)


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Two 2 s FoleyWorld `test` clips (64 x 64), made in this process."""
    from foleyflow.world.config import WorldConfig

    cfg = WorldConfig(duration_s=2.0, size=64)
    if not Path(cfg.soundfont).is_file():
        pytest.skip(f"soundfont not installed at {cfg.soundfont} (apt-get install fluid-soundfont-gm)")
    from foleyflow.world.make import make_split

    out = tmp_path_factory.mktemp("world")
    make_split(out, "test", 2, cfg)
    return out


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """A tiny untrained bundle with a plan pathway (plan_dim 12), and a copy with a tiny planner fitted to its
    encoders."""
    from foleyflow.bundle import build_untrained_bundle, read_bundle
    from foleyflow.data.cache import producer_record
    from foleyflow.models.planner import Planner, PlannerConfig, save_planner
    from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig

    d = tmp_path_factory.mktemp("bundles")
    plain = build_untrained_bundle(d / "plain", seed=0, window_s=WINDOW_S, generator_overrides=TINY_GEN,
                                   semantic_cfg=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
                                   sync_cfg=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2,
                                                              out_dim=16),
                                   text_cfg=TEXT_CFG, name="plans")
    planned = d / "planned"
    shutil.copytree(plain, planned)
    files = read_bundle(planned).files
    torch.manual_seed(1)
    model = Planner(PlannerConfig(**TINY_PLANNER, onset_threshold=0.0, contact_threshold=0.0))
    with torch.no_grad():   # presence: impact_wood only
        c = len(model.cfg.classes)
        model.clip_out.weight[:c] = 0
        model.clip_out.bias[:c] = -20
        model.clip_out.bias[model.cfg.classes.index("impact_wood")] = 20
    save_planner(planned / "planner.safetensors", model, provenance={"producers": {
        "semantic_encoder": producer_record(files["semantic_encoder"], "semantic_av"),
        "sync_encoder": producer_record(files["sync_encoder"], "sync_av")}})
    index = json.loads((planned / "bundle.json").read_text())
    (planned / "bundle.json").write_text(json.dumps({**index, "planner": "planner.safetensors"}))
    return {"plain": plain, "planned": planned}


def cli(capsys, *args) -> tuple[int, str, str]:
    from foleyflow.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def spy(monkeypatch) -> tuple[list, list]:
    """Records what FoleyPipeline.generate is given and every plan track the generator's plan pathway receives."""
    from foleyflow.pipeline import FoleyPipeline

    calls, tracks = [], []
    real_generate, real_plan = FoleyPipeline.generate, Generator.plan_condition

    def generate(self, video=None, **kw):
        calls.append({"video": video, "prompt": kw.get("prompt"), "cot": kw.get("cot"), "plan": kw.get("plan")})
        return real_generate(self, video, **kw)

    def plan_condition(self, plan, *args):
        if plan is not None:
            tracks.append(plan.detach().clone())
        return real_plan(self, plan, *args)

    monkeypatch.setattr(FoleyPipeline, "generate", generate)
    monkeypatch.setattr(Generator, "plan_condition", plan_condition)
    return calls, tracks


def test_generate_set_truth_gives_the_clips_cot_text_and_its_plan_track(capsys, world, bundles, tmp_path,
                                                                         monkeypatch):
    from foleyflow.conditioning import cot_parts
    from foleyflow.cot import plan_from_truth
    from foleyflow.events import read_truth
    from foleyflow.manifest import read_manifest

    rows = {r.id: r for r in read_manifest(world / "manifest.jsonl")}
    calls, tracks = spy(monkeypatch)
    out = tmp_path / "truth"
    base = ["generate-set", world / "manifest.jsonl", "--out", out, "--bundle", bundles["plain"], "--steps", "1"]
    code, stdout, err = cli(capsys, *base, "--text", "truth")
    assert code == 0, err
    assert sorted(p.stem for p in out.glob("*.wav")) == sorted(rows)
    by_video = {c["video"]: c for c in calls}
    for r in rows.values():
        c = by_video[r.video]
        assert c["prompt"] is None and c["cot"] == cot_parts(r.cot)        # the text is the clip's own CoT
        assert c["plan"] == plan_from_truth(read_truth(r.truth))
    # the track reaches the network, its onset channel peaking at the plan's onsets (frame round(t * fps))
    fps = 16000 / 512
    first = next(iter(rows.values()))
    onsets = plan_from_truth(read_truth(first.truth))
    want = sorted({math.floor(t * fps + 0.5) for s in onsets.sources for t in s.onsets})
    got = [sorted(torch.nonzero(t[0, :, 0] > 0.999).flatten().tolist()) for t in tracks]
    assert want in got
    record = json.loads((out / "generate_set.json").read_text())
    assert record["settings"]["text"] == "truth" and record["settings"]["plan_track"] is True
    code, stdout, _ = cli(capsys, *base, "--text", "truth")                 # resumable
    assert code == 0 and "wrote 0 clips" in stdout
    # the text-only rows of the ablation: cot gives the same text without a plan; monolithic one paragraph
    calls.clear()
    code, _, err = cli(capsys, *base[:3], tmp_path / "cot", *base[4:], "--text", "cot")
    assert code == 0, err
    assert calls and all(c["plan"] is None and c["cot"] == rows_by_video(rows)[c["video"]].cot for c in calls)
    calls.clear()
    code, _, err = cli(capsys, *base[:3], tmp_path / "mono", *base[4:], "--text", "monolithic")
    assert code == 0, err
    from foleyflow.cot import monolithic_text, truth_wording

    for c in calls:
        truth = read_truth(rows_by_video(rows)[c["video"]].truth)
        assert c["cot"] is None and c["plan"] is None
        assert c["prompt"] == monolithic_text(plan_from_truth(truth), truth_wording(truth))
        assert c["prompt"].startswith("A ") and "Semantic:" not in c["prompt"]
    assert json.loads((tmp_path / "mono" / "generate_set.json").read_text())["settings"]["text"] == "monolithic"


def rows_by_video(rows: dict) -> dict:
    return {r.video: r for r in rows.values()}


def test_generate_set_auto_plans_each_video_with_the_bundles_planner(capsys, world, bundles, tmp_path, monkeypatch):
    from foleyflow.cot import Plan

    calls, tracks = spy(monkeypatch)
    base = ["generate-set", world / "manifest.jsonl", "--bundle", bundles["planned"], "--steps", "1", "--text", "auto"]
    code, _, err = cli(capsys, *base, "--out", tmp_path / "auto")
    assert code == 0, err
    assert len(calls) == 2 and len(tracks) >= 2
    for c in calls:
        assert isinstance(c["plan"], Plan) and c["cot"]["semantic"] and c["prompt"] is None
        assert {s.sound_class for s in c["plan"].sources if s.on_screen} == {"impact_wood"}
    assert json.loads((tmp_path / "auto" / "generate_set.json").read_text())["settings"]["text"] == "auto"
    # caption+auto: the row's caption is the text, the planner's plan only the track
    calls.clear()
    code, _, err = cli(capsys, *base[:-1], "caption+auto", "--out", tmp_path / "both")
    assert code == 0, err
    captions = {json.loads(line)["caption"] for line in (world / "manifest.jsonl").read_text().splitlines()}
    assert len(calls) == 2 and {c["prompt"] for c in calls} == captions
    for c in calls:
        assert isinstance(c["plan"], Plan) and c["cot"] is None
        assert {s.sound_class for s in c["plan"].sources if s.on_screen} == {"impact_wood"}
    record = json.loads((tmp_path / "both" / "generate_set.json").read_text())["settings"]
    assert record["text"] == "caption+auto" and record["plan_track"] is True
    # one-line errors before anything is generated
    for extra, words in ((["--no-video"], "cannot go with --no-video"), ([], "has no planner"),
                         (["--text", "caption+auto", "--no-video"], "cannot go with --no-video")):
        b = base if extra else [a if a != bundles["planned"] else bundles["plain"] for a in base]
        code, _, err = cli(capsys, *b, "--out", tmp_path / "x", *extra)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_generate_set_truth_needs_ground_truth(capsys, world, bundles, tmp_path):
    rows = [json.loads(line) for line in (world / "manifest.jsonl").read_text().splitlines()]
    rows[1].pop("truth")
    manifest = world / "no_truth.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for mode in ("truth", "monolithic"):
        code, _, err = cli(capsys, "generate-set", manifest, "--out", tmp_path / "o", "--bundle", bundles["plain"],
                           "--text", mode)
        assert code == 2 and "1 rows have no truth" in err and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------------------------------------------- plan edits
def plan_edits():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import plan_edits as pe

    return pe


SR = 16000
EDIT_PLAN = {"schema": "foleyflow-cot/1", "duration_s": 2.0, "sources": [
    {"id": "source_1", "class": "impact_wood", "on_screen": True, "events": [0.3, 1.65], "pan": -0.6},
    {"id": "source_2", "class": "marimba", "on_screen": True, "events": [1.0], "pan": 0.5},
    {"id": "rain", "class": "rain", "on_screen": True, "events": [[0.0, 2.0]], "pan": 0.0}]}


def truth_events(plan, inaudible=()):
    from foleyflow.events import SoundEvent

    out = []
    for s in plan.sources:
        if s.id == "rain":
            out.append(SoundEvent("rain", "ambience", 0.0, 2.0))
            continue
        out += [SoundEvent(s.sound_class, "discrete", t, source_id=int(s.id.split("_")[1]), pan=s.pan_at(t),
                           params={"audible": t not in inaudible}) for t in s.onsets]
    return sorted(out, key=lambda e: e.onset_s)


def render(plan, sr: int = SR):
    """A perfect plan follower: a 30 ms decaying noise burst at every onset, panned by the constant-power law."""
    import numpy as np

    audio = np.zeros((2, round(plan.duration_s * sr)))
    rng = np.random.default_rng(0)
    n = int(0.03 * sr)
    for s in plan.sources:
        for t in s.onsets:
            a = ((s.pan_at(t) or 0.0) + 1) * math.pi / 4
            burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.006 * sr)) * 0.5
            i = round(t * sr)
            audio[0, i:i + n] += math.cos(a) * burst
            audio[1, i:i + n] += math.sin(a) * burst
    return audio, sr


def test_movable_onsets_and_their_draw():
    from foleyflow.cot import parse_plan

    pe = plan_edits()
    plan = parse_plan(EDIT_PLAN)
    cands = pe.candidates("c", plan, truth_events(plan))
    # 0.3 s: -0.5 leaves the clip, +0.5 is 0.2 s from the marimba; 1.65 s: +0.5 leaves it; 1.0 s: both ways
    assert {(c.source, c.index): c.targets for c in cands} == {
        ("source_1", 0): (pytest.approx(0.8),), ("source_1", 1): (pytest.approx(1.15),),
        ("source_2", 0): (pytest.approx(0.5), pytest.approx(1.5))}
    assert [c.source for c in pe.candidates("c", plan, truth_events(plan, inaudible=(0.3,)))] == ["source_1",
                                                                                                  "source_2"]
    crowded = parse_plan({**EDIT_PLAN, "sources": EDIT_PLAN["sources"][:1] + [
        {"id": "source_2", "class": "marimba", "on_screen": True, "events": [0.35, 1.0], "pan": 0.5}]})
    assert (("source_1", 0) not in {(c.source, c.index) for c in pe.candidates("c", crowded, truth_events(crowded))})
    a, b = pe.draw(cands, 2, seed=3), pe.draw(cands, 3, seed=3)
    assert a == pe.draw(cands, 2, seed=3) and len(b) == 3 and all(t in c.targets for c, t in b)


def test_edit_trials_succeed_for_a_plan_follower_and_fail_for_one_that_ignores_the_plan():
    from foleyflow.cot import parse_plan

    pe = plan_edits()
    plan = parse_plan(EDIT_PLAN)
    events = truth_events(plan)
    cand = next(c for c in pe.candidates("c", plan, events) if c.source == "source_1" and c.index == 0)

    def run(generate):
        clip = pe.Clip("c", None, None, plan, events)
        return {t.kind: t for t in pe.trials_of_event(clip, cand, 0.8, generate, lambda sr: None)}

    good = run(render)
    assert all(good[k].success is True for k in pe.KINDS), good
    assert good["pan"].details["planned_change"] == pytest.approx(1.0)
    assert good["pan"].details["share"] == pytest.approx(1.0, abs=0.1)
    assert good["remove"].details["onsets_counted"] == 2 and good["move"].details["original_onset_at_old"]
    bad = run(lambda p: render(plan))
    assert all(bad[k].success is False for k in pe.KINDS), bad
    mono = run(lambda p: (render(p)[0][:1], SR))
    assert mono["pan"].success is None and mono["pan"].reason == "mono model" and mono["move"].success is True
    s = pe.summarize(list(good.values()) + list(bad.values()))
    assert s["move"]["rate"] == 0.5 and s["move"]["scored"] == 2 and 0.0 <= s["move"]["ci95"][0] <= 0.5
    assert pe.bootstrap_ci([True] * 5) == (1.0, 1.0) and pe.bootstrap_ci([]) is None


@pytest.mark.slow
def test_plan_edits_benchmark_end_to_end(world, bundles, tmp_path, monkeypatch, capsys):
    pe = plan_edits()
    _, tracks = spy(monkeypatch)
    out = tmp_path / "edits.json"
    code = pe.main(["--bundle", str(bundles["plain"]), "--manifest", str(world / "manifest.jsonl"), "--clips", "2",
                    "--events", "3", "--limit", "2", "--steps", "1", "--json", str(out), "--precision", "fp32"])
    stdout = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    assert report["events"] == report["events_done"] == 2 and report["follows_plan"] and report["candidates"] >= 2
    assert len(report["trials"]) == 6 and all(report["results"][k]["trials"] == 2 for k in pe.KINDS)
    for k in pe.KINDS:
        assert f"  {k}" in stdout
    # the edited plan reaches the network: a track peaks at a moved event's new time and not at its old one
    fps = 16000 / 512
    move = next(t for t in report["trials"] if t["kind"] == "move")["details"]
    new, old = (math.floor(move[k] * fps + 0.5) for k in ("new_s", "old_s"))
    assert any(t[0, new, 0] > 0.999 and t[0, old, 0] < 0.5 for t in tracks)


def test_generate_set_refine_rewrites_the_captions_it_conditions_on(capsys, world, bundles, tmp_path, monkeypatch):
    """--refine (retrieval refinement) rewrites each caption before it is encoded, records its similarity, and is a
    one-line error for text modes without a caption or a similarity outside (0, 1]."""
    import foleyflow.commands.plan as plan_cmd

    class Shout:                   # a stand-in Refiner: the rewrite is visible in what reaches the pipeline
        def refine_text(self, text):
            return text.upper()

    monkeypatch.setattr(plan_cmd, "refiner", lambda similarity: Shout())
    calls, _ = spy(monkeypatch)
    base = ["generate-set", world / "manifest.jsonl", "--bundle", bundles["plain"], "--steps", "1"]
    code, stdout, err = cli(capsys, *base, "--text", "caption", "--refine", "--out", tmp_path / "r")
    assert code == 0, err
    captions = {json.loads(line)["caption"] for line in (world / "manifest.jsonl").read_text().splitlines()}
    assert {c["prompt"] for c in calls} == {c.upper() for c in captions}
    assert "2 of 2 captions rewritten" in stdout
    assert json.loads((tmp_path / "r" / "generate_set.json").read_text())["settings"]["refine"] == 0.8
    monkeypatch.undo()
    for extra, words in ((["--text", "cot", "--refine"], "give --text caption or caption+auto"),
                         (["--text", "caption", "--refine", "0"], "--refine takes a similarity in (0, 1]")):
        code, _, err = cli(capsys, *base, *extra, "--out", tmp_path / "x")
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()
