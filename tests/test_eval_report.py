import json

import numpy as np
import pytest

from foleyflow.errors import EvalError
from foleyflow.eval.report import markdown_table, write_report
from foleyflow.eval.run import EvalModels, run_evaluation
from foleyflow.eval.synthetic import ToneClassifier, labelled_events_clip
from foleyflow.media import write_audio

SR = 16000


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    for d in ("ref", "gen", "truth", "other"):
        (root / d).mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        x, events = labelled_events_clip(i, duration_s=2.5, num_events=4)
        write_audio(root / "ref" / f"clip{i:02d}.wav", x, SR)
        # "generated": the reference with onsets late by 40 ms and a little noise
        g = np.roll(x, int(0.04 * SR), axis=1) + 0.003 * rng.standard_normal(x.shape)
        write_audio(root / "gen" / f"clip{i:02d}.wav", g, SR)
        (root / "truth" / f"clip{i:02d}.json").write_text(json.dumps([e.to_json() for e in events]))
        other = labelled_events_clip(100 + i, duration_s=2.5, num_events=4)[0]
        write_audio(root / "other" / f"val{i:02d}.wav", other, SR)
    return root


def fake_logits(audio, sr):
    """A fake clip classifier: two logits from spectral balance (low vs high band power)."""
    spec = np.abs(np.fft.rfft(audio.mean(0))) ** 2
    half = len(spec) // 8
    return np.array([np.log(spec[:half].sum() + 1e-9), np.log(spec[half:].sum() + 1e-9)])


def test_report_from_small_synthetic_inputs(sets, tmp_path):
    report = run_evaluation(sets / "gen", sets / "ref", truth_dir=sets / "truth", baseline_set_dir=sets / "other",
                            models=EvalModels(audio_classifier=fake_logits, event_classifier=ToneClassifier()))
    s = report["systems"]
    assert list(s) == ["generated", "reference", "shuffled", "silence", "noise", "baseline_set"]
    # ground-truth ceiling and floors
    assert s["reference"]["onset_f1@50ms"] >= 0.95 and s["reference"]["pan_error"] <= 0.05
    assert s["shuffled"]["onset_f1@50ms"] <= 0.3 and s["silence"]["onset_f1@50ms"] == 0.0
    assert s["generated"]["onset_f1@50ms"] >= 0.9 and s["generated"]["onset_f1@25ms"] <= 0.1
    assert 35 <= s["generated"]["onset_mean_abs_error_ms"] <= 45         # the 40 ms shift is measured
    assert s["generated"]["pan_error"] <= 0.05                             # ...and is not a pan error too
    assert s["generated"]["fd_melstats"] < s["noise"]["fd_melstats"]
    assert s["generated"]["kad_melstats"] < s["silence"]["kad_melstats"]
    assert "fd_melstats" not in s["reference"] and "onset_f1@50ms" not in s["baseline_set"]
    assert "fd_melstats" not in s["shuffled"] and s["shuffled"]["pan_error"] > s["generated"]["pan_error"]
    assert s["generated"]["kl"] < s["noise"]["kl"] and "is" in s["generated"]
    assert s["generated"]["class_accuracy"] >= 0.8
    assert "desync" in report["skipped"] and "retrieval" in report["skipped"]
    assert "fd_melstats" in report["timings_s"]["generated"]

    written = write_report(report, tmp_path / "out")
    for kind in ("json", "markdown", "metric_bars", "onset_timelines", "spectrograms"):
        assert written[kind].is_file() and written[kind].stat().st_size > 100
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["systems"]["generated"]["onset_f1@50ms"] == pytest.approx(s["generated"]["onset_f1@50ms"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| onset F1 +-50 ms (higher is better) |" in md and "## Not computed" in md
    assert "![metric_bars](metric_bars.png)" in md


def test_report_without_truth_or_baselines(sets, tmp_path):
    report = run_evaluation(sets / "gen", sets / "ref", baselines=False)
    assert list(report["systems"]) == ["generated"]
    assert "ground_truth" in report["skipped"] and "kl/is" in report["skipped"]
    assert "loudness_lufs" in report["systems"]["generated"]
    table = markdown_table(report)
    assert "FD (melstats)" in table and "onset" not in table
    written = write_report(report, tmp_path / "r2", plots=False)
    assert set(written) == {"json", "markdown", "per_clip"}           # per_clip.jsonl: see test_paired_eval.py


def test_mismatched_sets_raise(sets, tmp_path):
    with pytest.raises(EvalError, match="no reference of the same name"):
        run_evaluation(sets / "other", sets / "ref")
    with pytest.raises(EvalError, match="no scored systems"):
        write_report({"systems": {}}, tmp_path)


def test_evaluate_command(sets, tmp_path, run_cli):
    r = run_cli("evaluate", "--generated", sets / "gen", "--reference", sets / "ref", "--truth", sets / "truth",
                "-o", tmp_path / "rep", "--no-plots")
    assert r.code == 0, r.err
    assert "onset F1 +-50 ms" in r.out and "skipped desync" in r.out
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert set(data["systems"]) == {"generated", "reference", "shuffled", "silence", "noise"}
    bad = run_cli("evaluate", "--generated", sets / "other", "--reference", sets / "ref", "-o", tmp_path / "x")
    assert bad.code == 2 and bad.err.startswith("error: ") and bad.err.count("\n") == 1


def test_fd_extrapolation_option(sets):
    report = run_evaluation(sets / "gen", sets / "ref", baselines=False, extrapolate_fd=True)
    g = report["systems"]["generated"]
    assert "fd_melstats_inf" in g and np.isfinite(g["fd_melstats_inf"]) and g["fd_n"] == 10


def test_alignment_metrics_with_fake_models(tmp_path):
    """DeSync, IB and CLAP scores through the run, with fake models that see flashes at the labelled onsets."""
    fps, dur = 25, 5.0
    for d in ("ref", "truth"):
        (tmp_path / d).mkdir()
    for i in range(6):
        x, events = labelled_events_clip(50 + i, duration_s=dur, num_events=6, continuous=False)
        write_audio(tmp_path / "ref" / f"v{i}.wav", x, SR)
        (tmp_path / "truth" / f"v{i}.json").write_text(json.dumps([e.to_json() for e in events]))

    def frames(name):
        f = np.zeros((int(dur * fps), 2, 2, 3), np.uint8)
        for e in json.loads((tmp_path / "truth" / f"{name}.json").read_text()):
            if e["kind"] == "discrete":
                f[int(e["onset_s"] * fps)] = 255
        return f

    class Offsets:
        sample_rate, video_fps = SR, fps

        def __call__(self, f, a):
            v = f.reshape(len(f), -1).mean(1)
            env = np.abs(a)[: len(f) * (SR // fps)].reshape(len(f), -1).max(1)
            env = np.diff(env, prepend=0).clip(0)
            return np.array([np.dot(v[: len(v) - k], env[k:]) if k >= 0 else np.dot(v[-k:], env[: len(env) + k])
                             for k in np.round(np.linspace(-2, 2, 21) * fps).astype(int)])

    def audio_emb(audio, sr):
        return np.abs(audio).reshape(2, 10, -1).max(axis=(0, 2))      # loudness profile over 10 slices

    def video_emb(name):
        return frames(name).reshape(10, -1).max(1).astype(float) + 1

    models = EvalModels(offset_classifier=Offsets(), video_frames=frames, video_embedding=video_emb,
                        av_audio_embedder=audio_emb, text_embedding=video_emb, text_audio_embedder=audio_emb)
    report = run_evaluation(tmp_path / "ref", tmp_path / "ref", models=models, truth_dir=tmp_path / "truth")
    s = report["systems"]
    assert s["reference"]["desync_s"] == 0.0 and s["shuffled"]["desync_s"] >= 0.4
    assert s["reference"]["ib_score"] > s["shuffled"]["ib_score"] and "clap_score" in s["generated"]
    assert not {"desync", "ib_score", "clap_score"} & set(report["skipped"])


def test_markdown_settings_keep_long_values_out():
    from foleyflow.eval.report import _markdown

    matches = {f"clip{i}": f"train{i}" for i in range(20)}
    md = _markdown({"systems": {}, "skipped": {}, "timings_s": {}, "examples": [],
                    "settings": {"seed": 0, "retrieval": {"train_clips": 20, "matches": matches}}}, [])
    assert "20 entries, see report.json" in md and "train19" not in md and "seed: `0`" in md
