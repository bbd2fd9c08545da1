import numpy as np
import pytest

from foleyflow.errors import EvalError
from foleyflow.eval.baselines import derangement, noise_set, shuffled_set, silence_set
from foleyflow.eval.features import MELSTATS_DIM, melstats_embedding


def _set():
    rng = np.random.default_rng(0)
    clips = {f"c{i}": (rng.standard_normal((2, 1000 + 100 * i)) * (i + 1), 16000) for i in range(5)}
    return {k: (lambda v=v: (v[0].copy(), v[1])) for k, v in clips.items()}, clips


def test_derangement_has_no_fixed_point():
    for seed in range(20):
        p = derangement(7, seed)
        assert sorted(p) == list(range(7)) and not np.any(p == np.arange(7))
    assert (derangement(7, 3) == derangement(7, 3)).all()
    with pytest.raises(EvalError):
        derangement(1, 0)


def test_baseline_sets_keep_names_and_lengths():
    ref, clips = _set()
    sh, si, no = shuffled_set(ref, seed=1), silence_set(ref), noise_set(ref, seed=1)
    for name, (x, sr) in clips.items():
        for s in (sh, si, no):
            y, sr2 = s[name]()
            assert y.shape == x.shape and sr2 == sr
        assert not np.allclose(sh[name]()[0][:, :1000], x[:, :1000])        # someone else's audio
        assert not si[name]()[0].any()
        rms = np.sqrt((no[name]()[0] ** 2).mean(axis=1))
        assert rms == pytest.approx(np.sqrt((x ** 2).mean(axis=1)), rel=0.1)
    assert np.array_equal(no["c0"]()[0], noise_set(ref, seed=1)["c0"]()[0])


def test_melstats_embedding_shape_and_rate_invariance():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32000)) * 0.1
    e = melstats_embedding(x, 16000)
    assert e.shape == (MELSTATS_DIM,) and np.all(np.isfinite(e))
    assert np.allclose(melstats_embedding(x, 16000), e)
    assert not np.allclose(melstats_embedding(0.5 * x, 16000), e)         # level matters
