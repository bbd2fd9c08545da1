import numpy as np
import pytest

from foleyflow.errors import EvalError
from foleyflow.eval.onsets import (OnsetCounts, detect_onsets, match_onsets, merge_onsets, score_onsets)

SR = 16000


def click_track(onsets, *, dur=6.0, noise=0.0, seed=0, tonal=False, sr=SR):
    """Stereo (2, N): decaying noise bursts (or 1 s decaying tones) at `onsets`, plus white noise."""
    rng = np.random.default_rng(seed)
    x = np.zeros(int(dur * sr))
    for k, t in enumerate(onsets):
        i = int(round(t * sr))
        tt = np.arange(int(1.0 * sr)) / sr
        if tonal:   # a struck bar: a decaying partial plus the mallet's short click
            s = np.sin(2 * np.pi * (250 + 60 * (k % 9)) * tt) * np.exp(-tt / 0.1) * np.minimum(1, tt / 0.003)
            s += 0.3 * rng.standard_normal(len(tt)) * np.exp(-tt / 0.002)
        else:
            s = rng.standard_normal(len(tt)) * np.exp(-tt / 0.02)
        s *= 0.3 + 0.7 * rng.random()
        x[i:i + len(s)] += s[: len(x) - i]
    x += noise * rng.standard_normal(len(x))
    return np.stack([x, 0.6 * x])


def spaced_onsets(n, seed, dur=6.0, min_gap=0.08):
    rng = np.random.default_rng(seed)
    while True:
        t = np.sort(rng.uniform(0.1, dur - 0.3, n))
        if np.all(np.diff(t) > min_gap):
            return t


@pytest.mark.parametrize("noise", [0.0, 0.01])
@pytest.mark.parametrize("tonal", [False, True])
def test_detector_finds_clicks_within_a_few_ms(noise, tonal):
    on = spaced_onsets(20, seed=int(noise * 100) + tonal)
    det = detect_onsets(click_track(on, noise=noise, tonal=tonal), SR)
    s = score_onsets(on, det, span_s=(0.02, 5.98))
    assert s.counts[0.025].f1 >= 0.95
    assert s.mean_abs_error_ms < 5.0


def test_detector_on_silence_and_steady_noise_finds_nothing():
    assert len(detect_onsets(np.zeros((2, SR * 2)), SR)) == 0
    noise = 0.05 * np.random.default_rng(0).standard_normal((2, SR * 4))
    det = detect_onsets(noise, SR)
    assert len(det[(det > 0.05) & (det < 3.95)]) <= 1


def test_detector_works_at_other_rates():
    on = spaced_onsets(10, seed=3)
    det = detect_onsets(click_track(on, sr=44100)[0], 44100)
    assert score_onsets(on, det).counts[0.025].f1 == 1.0


def test_scoring_jitter_missing_and_extra():
    ref = np.arange(10) * 0.5 + 0.25
    rng = np.random.default_rng(0)
    est = ref + rng.uniform(-0.04, 0.04, 10)
    est[0] = ref[0] + 0.01
    est = np.concatenate([np.delete(est, [3, 7]), [4.9, 5.1]])    # two missing, two extra
    s = score_onsets(ref, est)
    far = np.abs(est[:8] - np.delete(ref, [3, 7]))
    c100 = s.counts[0.1]
    assert (c100.tp, c100.fp, c100.fn) == (8, 2, 2)
    assert c100.precision == pytest.approx(0.8) and c100.recall == pytest.approx(0.8)
    assert c100.f1 == pytest.approx(0.8)
    assert s.counts[0.025].tp == int((far <= 0.025).sum())
    assert s.mean_abs_error_ms == pytest.approx(1000 * far.mean())


def test_matching_is_optimal_one_to_one():
    # greedy nearest-first would pair 1.00 with 1.04 and leave 0.97 unmatched; the optimum matches both
    pairs = match_onsets([1.0, 1.08], [0.97, 1.04], 0.05)
    assert sorted(pairs) == [(0, 0), (1, 1)]
    assert match_onsets([1.0], [1.0, 1.01], 0.05) == [(0, 0)]
    assert match_onsets([], [1.0], 0.05) == []


def test_near_simultaneous_reference_onsets_merge():
    assert merge_onsets([1.0, 1.01, 1.029, 1.03, 2.0]).tolist() == [1.0, 1.03, 2.0]
    s = score_onsets([1.0, 1.01, 2.0], [1.002, 2.001])
    assert (s.counts[0.05].tp, s.counts[0.05].fn, s.counts[0.05].fp) == (2, 0, 0)


def test_counts_edge_cases_and_aggregation():
    assert OnsetCounts(0, 0, 0).f1 == 1.0           # nothing expected, nothing found
    assert OnsetCounts(0, 3, 0).precision == 0.0
    total = score_onsets([1.0], [1.0]) + score_onsets([1.0, 2.0], [])
    assert total.counts[0.05].tp == 1 and total.counts[0.05].fn == 2
    assert total.to_json()["onset_recall@50ms"] == pytest.approx(1 / 3)


def test_bad_audio_raises():
    with pytest.raises(EvalError):
        detect_onsets(np.zeros(0), SR)
    with pytest.raises(EvalError):
        detect_onsets(np.zeros((16000, 2)), SR)
    with pytest.raises(EvalError):
        score_onsets([np.nan], [1.0])


def test_optional_onsets_are_not_false_positives():
    s = score_onsets([1.0], [1.0, 2.01, 3.0], optional=[2.0])
    assert (s.counts[0.05].tp, s.counts[0.05].fp, s.counts[0.05].fn) == (1, 1, 0)
    s = score_onsets([1.0], [1.0], optional=[2.0])       # an undetected optional onset is no miss
    assert s.counts[0.05].fn == 0
