"""FoleyWorld's audibility labels: params["audible"] on discrete events, params["transients_s"] on rain and engines.

They must leave the audio (and the texts made from the truth) exactly as they were, be deterministic, and say what
they claim: a soft hit under a ringing bell is not audible, a droplet under a loud engine is not listed."""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from foleyflow.events import SoundEvent
from foleyflow.world import audibility, soundbank, synth
from foleyflow.world.config import WorldConfig
from foleyflow.world.mixer import render_scene_audio
from foleyflow.world.physics import plan_clip

SR = 16000
SEEDS = (6019, 6025, 6028)     # val clips with rain and discrete events; engine and rain; engine and many strikes


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    if not (shutil.which("fluidsynth") and soundbank.Path(soundbank.DEFAULT_SOUNDFONT).is_file()):
        pytest.skip(f"fluidsynth or the FluidR3 soundfont is missing ({soundbank.INSTALL_HINT})")
    return soundbank.load_soundbank(SR, cache_dir=tmp_path_factory.mktemp("bank"))


def _render(seed, bank, label=True):
    cfg = WorldConfig()
    scene, sim = plan_clip(seed, "val", cfg)
    return scene, sim, render_scene_audio(sim.events, cfg.duration_s, cfg.sample_rate, scene.room, cfg.binaural,
                                          seed, bank, label=label)


def _strip(ev: SoundEvent) -> SoundEvent:
    p = {k: v for k, v in ev.params.items() if k not in ("audible", "transients_s")}
    return dataclasses.replace(ev, params=p)


@pytest.mark.parametrize("seed", SEEDS)
def test_labels_leave_audio_events_and_texts_unchanged(seed, bank):
    from foleyflow.world.text import write_texts
    from foleyflow.world.truth import build_truth

    scene, sim, a = _render(seed, bank, label=True)
    _, _, b = _render(seed, bank, label=False)
    assert a.mix.tobytes() == b.mix.tobytes() and a.gain == b.gain
    assert a.stems.keys() == b.stems.keys()
    assert all(a.stems[k].tobytes() == b.stems[k].tobytes() for k in a.stems)
    assert [_strip(e) for e in a.events] == b.events
    assert not any("audible" in e.params or "transients_s" in e.params for e in b.events)
    cfg = WorldConfig()
    ta, tb = (build_truth("x", scene, sim, au.events, cfg) for au in (a, b))
    assert write_texts(ta) == write_texts(tb)


@pytest.mark.parametrize("seed", SEEDS)
def test_labels_are_present_valid_and_deterministic(seed, bank):
    _, _, a = _render(seed, bank)
    _, _, again = _render(seed, bank)
    assert a.events == again.events
    kinds = {e.sound_class for e in a.events}
    for e in a.events:
        if e.kind == "discrete":
            assert isinstance(e.params["audible"], bool)
        if e.sound_class in ("rain", "engine"):
            t = e.params["transients_s"]
            assert t == sorted(t) and len(t) == len(set(t))
            assert all(0 <= x < 8.0 for x in t)
            if e.sound_class == "engine":      # firing cycles lie inside the engine's span
                assert all(e.onset_s - 1e-3 <= x <= e.offset_s + 1e-3 for x in t)
        else:
            assert "transients_s" not in e.params
    assert kinds & {"rain", "engine"}
    assert any(e.params.get("transients_s") for e in a.events)
    assert any(e.params.get("audible") for e in a.events) or not any(e.kind == "discrete" for e in a.events)


def test_rain_info_draws_nothing_more_and_holds_the_clicks():
    plain = synth.rain(SR * 2, SR, np.random.default_rng(3), 0.7)
    info: dict = {}
    bed = synth.rain(SR * 2, SR, np.random.default_rng(3), 0.7, info=info)
    assert bed.tobytes() == plain.tobytes()
    assert 50 < len(info["drop_pos"]) < 200 and np.all(np.diff(info["drop_pos"]) >= 0)
    clicks = info["clicks"]
    assert clicks.shape == bed.shape
    w = int(audibility.DROPLET_S * SR)
    p = int(info["drop_pos"][5])
    assert np.abs(clicks[:, p:p + w]).max() > 0          # a droplet's click is where its position says
    assert np.abs(clicks).sum() < np.abs(bed).sum()
    info_e: dict = {}
    hum = synth.engine_hum(np.full(SR, 5.0), SR, np.random.default_rng(1), f0_hz=40.0, info=info_e)
    assert hum.tobytes() == synth.engine_hum(np.full(SR, 5.0), SR, np.random.default_rng(1), f0_hz=40.0).tobytes()
    assert abs(len(info_e["cycle_starts"]) - 40) <= 1      # one per firing cycle at 40 Hz for 1 s


def test_soft_hit_under_a_ringing_bell_is_not_audible_but_alone_it_is():
    ring = SoundEvent("impact_metal", "discrete", 0.50, source_id=1, params={"size": 0.2, "impact_speed": 6.0})
    soft = SoundEvent("impact_metal", "discrete", 0.60, source_id=1, params={"size": 0.2, "impact_speed": 0.05})
    alone = SoundEvent("impact_wood", "discrete", 1.50, source_id=2, params={"impact_speed": 0.05})
    out = render_scene_audio([ring, soft, alone], 2.0, SR, seed=1).events
    assert [e.params["audible"] for e in out] == [True, False, True]


def test_droplets_under_a_loud_engine_are_not_listed():
    rain = SoundEvent("rain", "ambience", 0.0, params={"intensity": 1.0})
    engine = SoundEvent("engine", "continuous", 0.0, offset_s=1.0, source_id=1, gain=8.0,
                        params={"distance": 2.0, "f0_hz": 40.0})
    alone = render_scene_audio([rain], 2.0, SR, seed=2).events[0].params["transients_s"]
    both = render_scene_audio([rain, engine], 2.0, SR, seed=2).events
    masked = both[0].params["transients_s"]
    assert len(alone) > 20
    first, second = [sum(1 for t in ts if lo <= t < hi) for ts in (alone, masked) for lo, hi in [(0.1, 0.9)]]
    assert second < first / 4                       # the engine covers the first second
    assert [t for t in masked if t >= 1.1] == [t for t in alone if t >= 1.1]
    assert both[1].params["transients_s"]           # the loud engine's firing cycles are listed


def test_ground_truth_scored_against_itself_gains_from_the_labels(bank):
    from foleyflow.eval.truth import score_clip

    for seed in (6025, 6028):
        _, _, a = _render(seed, bank)
        labelled = score_clip("x", a.mix, SR, a.events).onsets.counts[0.05]
        bare = score_clip("x", a.mix, SR, [_strip(e) for e in a.events]).onsets.counts[0.05]
        assert labelled.fp < bare.fp and labelled.fn <= bare.fn
        assert labelled.f1 > bare.f1
