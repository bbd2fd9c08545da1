"""The chain-of-thought plan (foleyflow.cot): schema, parse/validate errors, edits, four-part and monolithic text,
FoleyWorld truth and ALIVE caption converters (the plan's text is FoleyWorld's own CoT), the plan track, the CLI."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from foleyflow.cot import (JSON_SCHEMA, SCHEMA_ID, Plan, PlanError, Scene, Source, four_part, four_part_text,
                           monolithic_text, move_event, parse_plan, plan_from_alive, plan_from_truth, plan_to_dict,
                           read_plan, remove_source, set_pan, shift_pan, truth_wording, validate, write_plan)
from foleyflow.world.text import classes_named, extract_timed_events, parse_cot

SOURCE_ROOT = Path(__file__).resolve().parents[1]


def _plan_dict() -> dict:
    return {"schema": SCHEMA_ID, "duration_s": 8.0, "scene": {"room": "hall", "loudness": "loud"},
            "sources": [
                {"id": "m", "class": "marimba", "on_screen": True, "events": [0.5, 1.25, 3.0], "pan": -0.8,
                 "striker": "mallet"},
                {"id": "b", "class": "impact_wood", "material": "wood", "on_screen": True, "name": "red wooden ball",
                 "events": [2.0, [2.5, 4.0]], "trajectory": [[2.0, -0.5], [4.0, 0.5]], "motion": "rolls"},
                {"id": "s", "class": "snare", "on_screen": False, "events": [6.0], "pan": 0.9},
                {"id": "rain", "class": "rain", "on_screen": True, "events": [[0.0, 8.0]]}]}


def test_parse_round_trip_and_schema_lists_the_same_keys():
    plan = parse_plan(_plan_dict())
    assert plan.source("b").onsets == [2.0] and plan.source("b").intervals == [(2.5, 4.0)]
    assert plan.source("b").pan_at(3.0) == pytest.approx(0.0) and plan.source("m").pan_at(5.0) == -0.8
    assert parse_plan(json.loads(json.dumps(plan_to_dict(plan)))) == plan
    assert plan_to_dict(plan) == _plan_dict()
    item = JSON_SCHEMA["properties"]["sources"]["items"]
    from foleyflow.cot.schema import _SOURCE_KEYS
    assert JSON_SCHEMA["$id"] == SCHEMA_ID and set(item["properties"]) == _SOURCE_KEYS
    assert set(JSON_SCHEMA["properties"]) == {"schema", "duration_s", "scene", "sources"}


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["sources"][2]["events"].append(9.3),
     "plan.json: sources[2].events[1]: onset 9.3 s is past the clip's 8 s"),
    (lambda d: d["sources"][0]["events"].insert(0, 2.0),
     "plan.json: sources[0].events[1]: onset 0.5 s comes before the previous event (2 s); sort the events"),
    (lambda d: d["sources"][1]["events"].__setitem__(1, [3.0, 2.9]),
     "plan.json: sources[1].events[1]: interval [3, 2.9] s ends before it starts"),
    (lambda d: d["sources"][1]["events"].__setitem__(1, [3.0, 8.5]),
     "plan.json: sources[1].events[1]: interval end 8.5 s is past the clip's 8 s"),
    (lambda d: d["sources"][0].__setitem__("pan", 1.5), "plan.json: sources[0].pan: 1.5 is not a pan in -1..1"),
    (lambda d: d["sources"][3].__setitem__("id", "m"),
     "plan.json: sources[3].id: 'm' is already the id of sources[0]"),
    (lambda d: d["sources"][0].__setitem__("colour", "red"),
     "plan.json: sources[0].colour: unknown key (allowed: class, distance, events, id, loudness, material, motion, "
     "name, on_screen, pan, striker, texture, trajectory)"),
    (lambda d: d["sources"][1]["trajectory"].append([1.0, 0.0]),
     "plan.json: sources[1].trajectory[2]: time 1 s comes before the previous point (4 s)"),
    (lambda d: d["sources"][1].__setitem__("pan", 0.0), "plan.json: sources[1]: give either 'pan' or 'trajectory', "
                                                        "not both"),
    (lambda d: d["scene"].__setitem__("room", "cave"), 'plan.json: scene.room: "cave" is not one of dry, '
                                                       'small_room, hall'),
    (lambda d: d.__setitem__("schema", "foleyflow-cot/0"),
     'plan.json: schema: expected "foleyflow-cot/1", got "foleyflow-cot/0"'),
    (lambda d: d["sources"][0].__setitem__("on_screen", "yes"),
     'plan.json: sources[0].on_screen: must be true or false, got "yes"'),
    (lambda d: d["sources"][2].pop("class"), "plan.json: sources[2]: missing 'class'"),
])
def test_malformed_plans_name_the_place_in_one_line(edit, message):
    d = _plan_dict()
    edit(d)
    with pytest.raises(PlanError) as e:
        parse_plan(d, "plan.json")
    assert str(e.value) == message and "\n" not in str(e.value)


def test_plan_files(tmp_path):
    plan = parse_plan(_plan_dict())
    path = write_plan(tmp_path / "p.json", plan)
    assert read_plan(path) == plan and not list(tmp_path.glob(".*tmp"))
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(PlanError, match=r"^bad.json: not valid JSON"):
        read_plan(tmp_path / "bad.json")
    with pytest.raises(PlanError, match="plan file not found"):
        read_plan(tmp_path / "none.json")


def test_edits_are_pure_and_validated():
    plan = parse_plan(_plan_dict())
    before = copy.deepcopy(plan_to_dict(plan))
    moved = move_event(plan, "m", 0, 1.5)
    assert moved.source("m").onsets == [1.25, 1.5, 3.0]
    rolled = move_event(plan, "b", 1, 3.0)           # an interval keeps its length
    assert rolled.source("b").intervals == [(3.0, 4.5)]
    assert move_event(plan, "b", 0, 1.0).source("b").trajectory[0] == (1.0, -0.5)   # the point moves with it
    assert set_pan(plan, "b", 0.25).source("b").pans() == [0.25]
    assert shift_pan(plan, "m", -0.5).source("m").pan == -1.0
    assert [s.id for s in remove_source(plan, "s").sources] == ["m", "b", "rain"]
    assert plan_to_dict(plan) == before
    with pytest.raises(PlanError, match="past the clip"):
        move_event(plan, "m", 2, 8.5)
    with pytest.raises(PlanError, match="no event 7"):
        move_event(plan, "m", 7, 1.0)
    with pytest.raises(PlanError, match="plan has no source 'x'"):
        remove_source(plan, "x")
    with pytest.raises(PlanError, match="pan in -1..1"):
        set_pan(plan, "m", 2.0)


def test_four_part_text_in_foleyworld_wording_and_monolithic_form():
    plan = parse_plan(_plan_dict())
    text = four_part_text(plan)
    assert text == (
        "Semantic: a marimba hit by a mallet; a red wooden ball that bounces and rolls; a snare drum struck "
        "off-screen; steady rain. "
        "Temporal: the marimba is struck at 0.50 s, 1.25 s and 3.00 s; the red wooden ball hits at 2.00 s; it rolls "
        "along the floor from 2.50 s to 4.00 s; the snare drum off-screen is struck at 6.00 s; the rain goes on "
        "throughout. "
        "Aesthetic: a long, spacious hall reverberation, loud, sharp hits, dull wooden knocks, mellow, woody marimba "
        "tones and a low rolling rumble, a hiss of rain underneath, sparse and clear. "
        "Spatial: the marimba is on the far left; the red wooden ball moves between left of centre and right of "
        "centre; the unseen snare drum comes from the far right.")
    cot = parse_cot(text)                              # the text encoder's parser reads it back
    assert extract_timed_events(cot.temporal) == [
        {"class": "marimba", "onset_s": 0.5}, {"class": "marimba", "onset_s": 1.25},
        {"class": "marimba", "onset_s": 3.0}, {"class": "impact_wood", "onset_s": 2.0},
        {"class": "rolling", "onset_s": 2.5, "offset_s": 4.0}, {"class": "snare", "onset_s": 6.0}]
    mono = monolithic_text(plan)
    assert mono == " ".join(p[0].upper() + p[1:] for p in (cot.semantic, cot.temporal, cot.aesthetic, cot.spatial))
    assert "Semantic:" not in mono and "\n" not in mono
    assert four_part_text(plan, 3) == four_part_text(plan, 3) and len({four_part_text(plan, s) for s in range(6)}) > 1


def test_plan_without_times_or_places_leaves_those_parts_out():
    plan = Plan(8.0, (Source("c", "cowbell", True), Source("w", "wind", False)))
    cot = four_part(plan)
    assert cot.semantic == "a cowbell hit by a stick; gusts of wind." and cot.temporal == "" and cot.spatial == ""
    assert cot.text().startswith("Semantic: ") and "Temporal" not in cot.text()


def _truths():
    from foleyflow.world.config import WorldConfig, split_seed_range
    from foleyflow.world.physics import plan_clip
    from foleyflow.world.truth import build_truth

    cfg = WorldConfig(duration_s=8.0, size=64)
    for split in ("train", "test-hard", "test-offscreen"):
        for k in range(6):
            scene, sim = plan_clip(split_seed_range(split)[0] + k, split, cfg)
            yield build_truth(f"{split}_{k}", scene, sim, sim.events, cfg)


def test_plan_from_truth_renders_foleyworlds_own_cot():
    from foleyflow.world.text import write_texts

    for truth in _truths():
        plan = plan_from_truth(truth)
        reread = parse_plan(json.loads(json.dumps(plan_to_dict(plan))))
        assert reread == plan
        want = write_texts(truth)
        assert four_part_text(reread, truth_wording(truth)) == want["cot"], truth["id"]
        # with the default (first) wording only the paraphrases differ, and which three classes' timbre words
        # Aesthetic names when more than three classes sound: same classes, same times and spans
        mine, theirs = parse_cot(four_part_text(reread)), parse_cot(want["cot"])
        for part in ("semantic", "temporal", "spatial"):
            assert classes_named(getattr(mine, part)) == classes_named(getattr(theirs, part)), part
        a, b = classes_named(mine.aesthetic), classes_named(theirs.aesthetic)
        assert a == b if len(classes_named(mine.semantic + mine.temporal)) <= 3 else len(a - {"rain"}) == 3
        assert extract_timed_events(mine.temporal) == extract_timed_events(theirs.temporal)
        discrete = sorted(e["onset_s"] for e in truth["events"] if e["kind"] == "discrete")
        assert sorted(t for s in plan.sources for t in s.onsets) == discrete


def test_plan_from_alive_caption_names_the_sources():
    from foleyflow.world.text import write_texts

    for truth in list(_truths())[::3]:
        alive = write_texts(truth)["alive"]
        plan = plan_from_alive(alive, truth["duration_s"])
        got = {c for s in plan.sources for c in ([s.sound_class] + (["rolling"] if s.motion else []))}
        assert got == {e["sound_class"] for e in truth["events"]}, alive
        assert all(s.events is None and s.pan is None for s in plan.sources)
        visible = {o["id"]: o["visible"] for o in truth["objects"]}
        offscreen = sum(1 for o in truth["objects"] if not o["visible"] and not o["silent"])
        assert sum(1 for s in plan.sources if not s.on_screen) == offscreen, (alive, visible)
    plan = plan_from_alive("Narration: A mallet strikes it <I>warm marimba notes</I>. Off-screen, a snare is "
                           "played <I>snare drum cracks</I>. <I>rain patter</I> throughout.", 4.0)
    assert [(s.id, s.on_screen) for s in plan.sources] == [("marimba", True), ("snare", False), ("rain", True)]
    with pytest.raises(PlanError, match="names no sound"):
        plan_from_alive("Narration: <I>a tuba solo</I>.")
    with pytest.raises(PlanError, match="no <I>sound event</I> tags"):
        plan_from_alive("Narration: silence.")
    assert plan_from_alive("Narration: <I>a tuba solo</I>.", refine=lambda p: "tom").sources[0].sound_class == "tom"


def test_plan_track_puts_onsets_on_the_latent_timeline():
    from foleyflow.cot.track import plan_track, track_channels

    fps, n = 31.25, 250
    plan = parse_plan(_plan_dict())
    tr = plan_track(plan, fps, n)
    names = track_channels()
    assert tr.shape == (n, len(names)) and tr.dtype == torch.float32
    ch = {k: tr[:, i] for i, k in enumerate(names)}
    peaks = [i for i in range(1, n - 1) if ch["onset"][i] > ch["onset"][i - 1] and ch["onset"][i] >= ch["onset"][i + 1]]
    assert peaks == [16, 39, 63, 94, 188]     # round(t * fps); 2.0 s and 6.0 s are frames 62.5 and 187.5: round up
    assert peaks[:2] + peaks[3:4] == [round(t * fps) for t in (0.5, 1.25, 3.0)]
    assert all(ch["onset"][p] == 1 for p in peaks) and ch["onset"][45] < 1e-3
    m = round(0.5 * fps)                     # marimba at pan -0.8: mostly left
    assert ch["onset_left"][m] > 0.9 * ch["onset"][m] and ch["onset_right"][m] < 0.35 * ch["onset"][m]
    s = 188                                  # the snare is off-screen and right
    assert ch["onset_offscreen"][s] == ch["onset"][s] and ch["onset_offscreen"][m] == 0
    assert ch["onset_right"][s] > ch["onset_left"][s]
    roll = (torch.arange(n) / fps >= 2.5) & (torch.arange(n) / fps < 4.0)
    assert torch.equal(ch["continuous"] > 0, roll)
    t_a, t_b = round(2.6 * fps), round(3.9 * fps)  # the rolling ball moves from left to right
    assert ch["continuous_left"][t_a] > ch["continuous_right"][t_a] and ch["continuous_right"][t_b] > \
        ch["continuous_left"][t_b]
    assert bool((ch["ambience"] == 1).all())
    assert ch["source_0"][m] == 1 and ch["source_0"][round(0.9 * fps)] == 0 and ch["source_2"][s] == 1
    assert ch["source_3"].sum() == 0        # only three non-ambience sources
    moved = plan_track(move_event(plan, "s", 0, 7.0), fps, n)
    assert moved[round(7.0 * fps), 0] == 1 and moved[s, 0] < 1e-3
    assert plan_track(Plan(8.0, (Source("c", "cowbell", True),)), fps, n).abs().sum() == 0


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "foleyflow", "plan", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_cli_from_truth_validate_and_errors(tmp_path):
    truth = next(_truths())
    (tmp_path / "clip.json").write_text(json.dumps(truth))
    r = _cli("--from-truth", str(tmp_path / "clip.json"), "-o", str(tmp_path / "plan.json"))
    assert r.returncode == 0, r.stderr
    assert read_plan(tmp_path / "plan.json") == plan_from_truth(truth)
    r = _cli("--validate", str(tmp_path / "plan.json"), "--text", "four-part")
    assert r.returncode == 0 and "valid foleyflow-cot/1 plan" in r.stdout
    assert r.stdout.splitlines()[-1] == four_part_text(plan_from_truth(truth))
    bad = plan_to_dict(plan_from_truth(truth))
    bad["sources"][0]["events"].append(9.3)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    for args, msg in ((("--validate", str(tmp_path / "bad.json")), "error: bad.json: sources[0].events["),
                      (("clip.mp4",), "error: clip.mp4: no such file"),
                      (("--from-truth", str(tmp_path / "none.json")), "error: ground truth not found")):
        r = _cli(*args)
        assert r.returncode == 2 and r.stderr.startswith(msg) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _cli("--from-caption", "Narration: <I>hand claps</I>.", "--duration", "2")
    assert r.returncode == 0 and json.loads(r.stdout)["sources"][0]["class"] == "hand_clap"
    tuba = {"schema": SCHEMA_ID, "duration_s": 2, "sources": [{"id": "t", "class": "tuba", "on_screen": True}]}
    (tmp_path / "tuba.json").write_text(json.dumps(tuba))
    r = _cli("--validate", str(tmp_path / "tuba.json"), "--text", "monolithic")
    assert r.returncode == 0 and "note: sources[0].class 'tuba' is not in FoleyWorld's vocabulary" in r.stdout
    assert r.stdout.splitlines()[-1] == "A tuba. Tuba sounds."
    r = _cli("--validate", str(tmp_path / "tuba.json"), "-o", str(tmp_path / "x.json"))
    assert r.returncode == 2 and r.stderr.startswith("error: --validate checks a plan in place")


def test_validate_checks_plans_built_in_code():
    plan = Plan(2.0, (Source("a", "tom", True, (0.5, 2.5)),), Scene(room="hall"))
    with pytest.raises(PlanError, match=r"^plan: sources\[0\]\.events\[1\]: onset 2.5 s is past the clip's 2 s$"):
        validate(plan)


def test_plan_of_a_made_clip_renders_the_cot_foleyworld_wrote(tmp_path):
    pytest.importorskip("foleyflow.world.mixer")
    from foleyflow.world.config import WorldConfig, split_seed_range
    from foleyflow.world.make import load_bank, make_clip
    from foleyflow.world.truth import read_truth

    cfg = WorldConfig(duration_s=2.0, size=64)
    if not Path(cfg.soundfont).is_file():
        pytest.skip(f"soundfont not installed at {cfg.soundfont}")
    bank = load_bank(cfg)
    for split in ("train", "test-offscreen"):
        row = make_clip(tmp_path, split, split_seed_range(split)[0] + 1, cfg, bank)
        truth = read_truth(tmp_path / row["truth"])
        r = _cli("--from-truth", str(tmp_path / row["truth"]), "-o", str(tmp_path / "plan.json"))
        assert r.returncode == 0, r.stderr
        plan = read_plan(tmp_path / "plan.json")
        assert four_part_text(plan, truth_wording(truth)) == truth["text"]["cot"] == row["cot"]


def test_json_schema_agrees_with_the_parser():
    jsonschema = pytest.importorskip("jsonschema")     # not a dependency; checked where it is installed
    jsonschema.Draft202012Validator.check_schema(JSON_SCHEMA)
    v = jsonschema.Draft202012Validator(JSON_SCHEMA)
    assert not list(v.iter_errors(_plan_dict()))
    assert all(not list(v.iter_errors(plan_to_dict(plan_from_truth(t)))) for t in _truths())
    for edit in (lambda d: d["sources"][0].__setitem__("pan", 1.5), lambda d: d["sources"][1].__setitem__("pan", 0),
                 lambda d: d["sources"][0].__setitem__("colour", "r"), lambda d: d["scene"].__setitem__("room", "x"),
                 lambda d: d["sources"][0]["events"].__setitem__(0, -1), lambda d: d.__setitem__("duration_s", 0),
                 lambda d: d["sources"][1]["events"].__setitem__(1, [1, 2, 3])):
        d = _plan_dict()
        edit(d)
        assert list(v.iter_errors(d))
        with pytest.raises(PlanError):
            parse_plan(d)


def _synthetic_truth():
    """A hand-built FoleyWorld truth covering every kind of source the writer describes."""
    def ev(cls, kind, on, src, pan, off=None, on_screen=True, track=None, **params):
        return {"sound_class": cls, "kind": kind, "onset_s": on, "offset_s": off, "source_id": src,
                "on_screen": on_screen, "gain": 1.0, "pan": pan, "pan_track": track, "param_track": None,
                "params": params}
    objects = [
        {"id": 1, "type": "body", "visible": True, "silent": False, "material": "metal", "shape": "box",
         "size_m": 0.2, "color": [220, 45, 45], "release_s": 0.0},
        {"id": 2, "type": "instrument", "visible": True, "silent": False, "sound_class": "claves",
         "color": [140, 95, 55], "striker": "clave"},
        {"id": 3, "type": "instrument", "visible": False, "silent": False, "sound_class": "tom",
         "color": [35, 35, 35], "pan": -0.7},
        {"id": 4, "type": "vehicle", "visible": True, "silent": False, "kind": "truck", "color": [45, 105, 225],
         "depth_m": 20.0, "speed_mps": 9.0},
        {"id": 5, "type": "body", "visible": True, "silent": True, "material": "foam", "shape": "ball",
         "size_m": 0.6, "color": [245, 200, 40], "release_s": 1.0},
    ]
    events = [
        ev("rain", "ambience", 0.0, None, 0.0, off=4.0, intensity=0.3),
        ev("wind", "ambience", 0.0, None, 0.3, off=4.0, intensity=0.2),
        ev("claves", "discrete", 0.25, 2, 0.1, impact_speed=2.0),
        ev("impact_metal", "discrete", 0.5, 1, -0.9, impact_speed=5.5),
        ev("impact_metal", "discrete", 0.9, 1, -0.6, impact_speed=2.0),
        ev("rolling", "continuous", 1.0, 1, -0.5, off=2.2, track=[[1.0, -0.5], [2.2, 0.2]], mode="slide"),
        ev("tom", "discrete", 1.5, 3, -0.7, on_screen=False, impact_speed=3.0),
        ev("engine", "continuous", 1.8, 4, 0.9, off=3.9, track=[[1.8, 0.9], [3.9, -0.8]]),
        ev("claves", "discrete", 2.75, 2, 0.1, impact_speed=2.5),
    ]
    return {"version": 1, "id": "synthetic", "seed": 1234, "split": "train", "duration_s": 4.0, "room": "hall",
            "ambience": {"rain": 0.3, "wind": 0.2, "room_tone": 0.0}, "objects": objects, "events": events,
            "stats": {"num_discrete": 5, "event_density_per_s": 1.25}}


# FoleyWorld's CoT for _synthetic_truth() as its writer wrote it before the writer went through the plan (main at
# 6e54efe): FoleyWorld's texts must not change when the templates move (datasets and caches hold them)
SYNTHETIC_COT = (
    "Semantic: a small red metal cube that bounces and rolls; a pair of claves struck with a second clave; a floor "
    "tom struck off-screen; a blue truck passing by, engine humming; a large yellow foam ball that lands silently; "
    "falling rain; a blowing wind. Temporal: the small red metal cube lands and bounces at 0.50 s and 0.90 s; it "
    "slides along the floor from 1.00 s to 2.20 s; the pair of claves is hit at 0.25 s and 2.75 s; the floor tom "
    "off-screen is hit at 1.50 s; the truck's engine is heard from 1.80 s to 3.90 s; the rain and the wind go on "
    "throughout. Aesthetic: a long, spacious hall reverberation, hard, punchy impacts, a throaty engine, a low "
    "rolling rumble and a metallic ring, a hiss of rain underneath, sparse and clear. Spatial: the small red metal "
    "cube is on the far left; the pair of claves is in the centre; the unseen floor tom comes from the far left; the "
    "blue truck moves from right to left, far away.")


def test_foleyworld_cot_is_unchanged_by_going_through_the_plan():
    from foleyflow.world.text import write_texts

    truth = _synthetic_truth()
    assert write_texts(truth)["cot"] == SYNTHETIC_COT
    plan = plan_from_truth(truth)
    assert four_part_text(plan, truth_wording(truth)) == SYNTHETIC_COT
    assert [(s.id, s.sound_class, s.sounds) for s in plan.sources] == [
        ("source_1", "impact_metal", True), ("source_2", "claves", True), ("source_3", "tom", True),
        ("source_4", "engine", True), ("source_5", "impact_foam", False), ("rain", "rain", True),
        ("wind", "wind", True)]
    body = plan.source("source_1")
    assert body.events == (0.5, 0.9, (1.0, 2.2)) and body.motion == "slides" and body.material == "metal"
    assert body.trajectory == ((0.5, -0.9), (0.9, -0.6), (1.0, -0.5))
    assert plan.source("source_3").pan == -0.7 and not plan.source("source_3").on_screen
    assert plan.source("source_4").trajectory == ((1.8, 0.9), (3.9, -0.8)) and plan.source("source_4").distance == "far"
    assert plan.scene.room == "hall" and plan.scene.loudness == "loud"


def test_bundled_example_clips_plans_render_their_stored_cot():
    from foleyflow.world.truth import read_truth

    paths = sorted((SOURCE_ROOT / "examples" / "foleyworld").glob("*.json"))
    if not paths:
        pytest.skip("no bundled example clips")
    for path in paths:                      # written by an earlier FoleyWorld: the format has not moved
        truth = read_truth(path)
        assert four_part_text(plan_from_truth(truth), truth_wording(truth)) == truth["text"]["cot"], path.name
