import json

import numpy as np
import pytest

from foleyflow.errors import EvalError
from foleyflow.eval.truth import evaluate_truth, score_clip
from foleyflow.eval.synthetic import ToneClassifier, labelled_events_clip
from foleyflow.events import read_events
from foleyflow.media import write_audio

SR = 16000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    (root / "audio").mkdir()
    (root / "truth").mkdir()
    (root / "shuffled").mkdir()
    clips = [labelled_events_clip(s, duration_s=4.0, num_events=6) for s in range(4)]
    for i, (x, events) in enumerate(clips):
        write_audio(root / "audio" / f"c{i}.wav", x, SR)
        write_audio(root / "shuffled" / f"c{(i + 1) % 4}.wav", x, SR)
        (root / "truth" / f"c{i}.json").write_text(json.dumps({"events": [e.to_json() for e in events]}))
    return root


def test_ground_truth_scored_against_itself(world):
    summary, per_clip = evaluate_truth(world / "audio", world / "truth", classifier=ToneClassifier())
    assert summary["clips"] == 4 and len(per_clip) == 4
    assert summary["onset_f1@50ms"] >= 0.95 and summary["onset_f1@25ms"] >= 0.95
    assert summary["onset_mean_abs_error_ms"] < 5.0
    assert summary["pan_error"] <= 0.05 and summary["pan_events_ok"] >= 20
    assert summary["class_accuracy"] >= 0.9 and summary["class_events"] == 4 * 6
    assert summary["class_events_not_covered"] == 4          # the engine hums
    assert -60 < summary["loudness_lufs"] < -10 and summary["clipping_ratio"] == 0.0
    assert per_clip[0].to_json()["reference_onsets"]


def test_shuffled_audio_scores_badly(world):
    summary, _ = evaluate_truth(world / "shuffled", world / "truth", reference_dir=world / "audio")
    assert summary["onset_f1@50ms"] <= 0.3
    assert summary["pan_error"] > 0.2           # measured at the events attributable in the reference
    alone, _ = evaluate_truth(world / "shuffled", world / "truth")
    assert alone["pan_events_ok"] < summary["pan_events_ok"]   # self-judged: most windows look masked
    assert summary["class_accuracy"] is None and "no event classifier" in summary["class_accuracy_skipped"]


def test_silence_finds_nothing_and_classifier_is_wrong():
    x, events = labelled_events_clip(0, duration_s=4.0)
    r = score_clip("s", np.zeros_like(x), SR, events, classifier=ToneClassifier())
    assert r.onsets.counts[0.05].tp == 0 and r.onsets.counts[0.05].fn > 0
    assert r.pan_status.get("ok", 0) == 0
    assert np.mean([c["label"] == c["predicted"] for c in r.classes if c["predicted"]]) < 1.0


def test_truth_input_errors(world, tmp_path):
    (tmp_path / "bad.json").write_text('{"events": [{"nope": 1}]}')
    with pytest.raises(EvalError, match="malformed"):
        read_events(tmp_path / "bad.json")
    (tmp_path / "gen").mkdir()
    write_audio(tmp_path / "gen" / "zzz.wav", np.zeros((2, 100)), SR)
    with pytest.raises(EvalError, match="no ground truth"):
        evaluate_truth(tmp_path / "gen", world / "truth")
    with pytest.raises(EvalError, match="no .wav"):
        evaluate_truth(tmp_path, world / "truth")


def test_events_marked_inaudible_are_optional():
    x, events = labelled_events_clip(3, duration_s=4.0, num_events=4)
    silent = np.zeros_like(x)
    base = score_clip("a", silent, SR, events)
    for e in events:
        if e.kind == "discrete":
            e.params["audible"] = False
    r = score_clip("a", silent, SR, events)
    assert base.onsets.counts[0.05].fn == 4 and r.onsets.counts[0.05].fn == 0
    assert r.onsets.counts[0.05].f1 == 1.0          # nothing expected, nothing found


def test_listed_ambience_transients_are_not_false_positives():
    x, events = labelled_events_clip(4, duration_s=4.0, num_events=3, continuous=False)
    drops = [0.5, 1.7, 3.1]
    for t in drops:                                   # loud clicks in the bed, not labelled as events
        i = int(t * SR)
        x[:, i:i + 40] += 0.5
    assert score_clip("a", x, SR, events).onsets.counts[0.05].fp >= 2
    events[0].params["transients_s"] = drops          # events[0] is the rain bed
    r = score_clip("a", x, SR, events).onsets.counts[0.05]
    assert r.fp == 0 and r.tp == 3


class _ClipHead:
    """A classifier with a clip head whose presence is high for the classes it is told are in the clip."""
    class_names = ["knock", "bell", "engine"]
    clip_class_names = ["knock", "bell", "engine"]
    sample_rate, segment_s, pre_s = 16000, 0.25, 0.0

    def __init__(self, present):
        self.present = present

    def __call__(self, segment):
        return np.full(3, 1 / 3)

    def clip_outputs(self, audio, sr):
        return np.array([0.9 if c in self.present else 0.1 for c in self.clip_class_names]), np.zeros(4)


def test_offscreen_sources_scored_by_the_clip_head():
    from foleyflow.eval.paired import clip_record, pool
    from foleyflow.eval.truth import summarize
    from foleyflow.events import SoundEvent

    events = [SoundEvent("knock", "discrete", 1.0, source_id=0),
              SoundEvent("bell", "discrete", 2.0, source_id=1, on_screen=False),
              SoundEvent("bell", "discrete", 3.0, source_id=1, on_screen=False),
              SoundEvent("engine", "discrete", 4.0, source_id=2, on_screen=False, params={"audible": False}),
              SoundEvent("engine", "ambience", 0.0, on_screen=False)]
    audio = np.zeros((2, 16000 * 5), np.float32)
    heard = score_clip("a", audio, 16000, events, classifier=_ClipHead({"bell"}))
    missed = score_clip("b", audio, 16000, events, classifier=_ClipHead({"knock"}))
    # one off-screen source: the inaudible event and the ambience do not count
    assert [(o["class"], o["presence"]) for o in heard.offscreen] == [("bell", 0.9)]
    assert heard.to_json()["offscreen_presence"] == 0.9 and missed.to_json()["offscreen_presence"] == 0.1
    onscreen = score_clip("c", audio, 16000, events[:1], classifier=_ClipHead({"knock"}))
    assert onscreen.offscreen == []
    out = summarize([heard, missed, onscreen], classifier_used=True)
    assert out["offscreen_clips"] == 2
    assert out["offscreen_presence"] == pytest.approx(0.5) and out["offscreen_detected"] == pytest.approx(0.5)
    assert "offscreen_clips" not in summarize([onscreen], classifier_used=True)
    records = [clip_record(r.name, truth=r, classifier_used=True) for r in (heard, missed, onscreen)]
    assert pool(records, "offscreen_detected") == pytest.approx(0.5)
    assert pool(records, "offscreen_presence") == pytest.approx(0.5)
