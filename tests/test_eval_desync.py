import numpy as np
import pytest

from foleyflow.errors import EvalError
from foleyflow.eval.desync import (OFFSETS_S, av_similarity, desync_windows, evaluate_desync,
                                   text_audio_similarities, text_audio_similarity)

FPS, SR = 25, 1000


class FlashClassifier:
    """Fake offset classifier: correlates frame-brightness flashes with the audio envelope at each offset."""
    sample_rate, video_fps = SR, FPS

    def __call__(self, frames, audio):
        assert frames.shape[0] == int(4.8 * FPS) and audio.shape == (int(4.8 * SR),)
        v = frames.reshape(len(frames), -1).mean(axis=1).astype(np.float64)
        a = np.abs(audio).reshape(len(frames), -1).max(axis=1)
        scores = []
        for off in OFFSETS_S:
            k = int(round(off * FPS))      # audio lags video by k frames: a[t + k] ~ v[t]
            if k >= 0:
                scores.append(np.dot(v[: len(v) - k], a[k:]))
            else:
                scores.append(np.dot(v[-k:], a[: len(a) + k]))
        return np.array(scores)


def make_clip(seed, shift_s=0.0, dur=8.0):
    rng = np.random.default_rng(seed)
    times = np.sort(rng.uniform(0.1, dur - 0.1, 12))
    frames = np.zeros((int(dur * FPS), 2, 2, 3), np.uint8)
    audio = np.zeros(int(dur * SR), np.float32)
    for t in times:
        frames[int(t * FPS)] = 255
        i = int((t + shift_s) * SR)
        if 0 <= i < len(audio):
            audio[i] = 1.0
    return frames, audio


def test_windows_follow_the_protocol():
    assert desync_windows(8.0) == [(0.0, 4.8), (3.2, 8.0)]
    assert desync_windows(4.8) == [(0.0, 4.8)]
    assert len(OFFSETS_S) == 21 and OFFSETS_S[0] == -2.0 and OFFSETS_S[10] == 0.0 and OFFSETS_S[-1] == 2.0
    with pytest.raises(EvalError):
        desync_windows(3.0)


def test_desync_of_aligned_and_shifted_clips():
    clf = FlashClassifier()
    synced, per = evaluate_desync([(f"c{i}", *make_clip(i)) for i in range(3)], clf)
    assert synced["desync_s"] == pytest.approx(0.0) and synced["offset_zero_rate"] == 1.0
    assert per[0].offsets_s == [0.0, 0.0]
    shifted, per = evaluate_desync([(f"c{i}", *make_clip(i, shift_s=0.6)) for i in range(3)], clf)
    assert shifted["desync_s"] == pytest.approx(0.6) and per[0].offsets_s == [0.6, 0.6]
    stereo = np.stack([make_clip(0)[1]] * 2)
    assert evaluate_desync([("s", make_clip(0)[0], stereo)], clf)[0]["desync_s"] == 0.0


def test_bad_classifier_output_and_inputs():
    class Bad(FlashClassifier):
        def __call__(self, frames, audio):
            return np.zeros(5)
    with pytest.raises(EvalError, match="expected \\(21,\\)"):
        evaluate_desync([("c", *make_clip(0))], Bad())
    with pytest.raises(EvalError):
        evaluate_desync([], FlashClassifier())


def test_similarities():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((10, 8))
    assert av_similarity(v, 3 * v) == pytest.approx(100.0)
    assert abs(text_audio_similarity(v, rng.standard_normal((10, 8)))) < 0.5
    # the per-clip CLAP scores are what clap_score averages
    a = rng.standard_normal((10, 8))
    per = text_audio_similarities(v, a)
    assert per.shape == (10,) and per[2] == pytest.approx(v[2] @ a[2] / np.linalg.norm(v[2]) / np.linalg.norm(a[2]))
    assert text_audio_similarity(v, a) == pytest.approx(per.mean())
    with pytest.raises(EvalError):
        av_similarity(v, v[:5])
