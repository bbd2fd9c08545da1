import numpy as np
import pytest
import scipy.linalg

from foleyflow.errors import EvalError, FoleyError
from foleyflow.eval.metrics import (frechet_distance, frechet_distance_from_stats, inception_score,
                                    kernel_audio_distance, kl_divergence, median_pairwise_distance, paired_cosine,
                                    paired_cosines)


def _random_cov(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fd_identical_sets_is_zero():
    x = np.random.default_rng(0).standard_normal((300, 8))
    res = frechet_distance(x, x.copy())
    assert abs(res.value) < 1e-9 and res.n_generated == res.n_reference == 300


def test_fd_closed_form_diagonal_and_full():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    expect = 1 + 0 + 4 + sum(a + b - 2 * np.sqrt(a * b) for a, b in [(1, 4), (4, 1), (9, 1)])
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expect, abs=1e-10)
    rng = np.random.default_rng(1)
    s1, s2 = _random_cov(rng, 12), _random_cov(rng, 12)   # non-commuting covariances
    m1, m2 = rng.standard_normal(12), rng.standard_normal(12)
    ref = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance_from_stats(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)


def test_fd_of_samples_matches_formula_and_extrapolation_removes_bias():
    rng = np.random.default_rng(2)
    d = 6
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    m1, m2 = np.zeros(d), np.full(d, 0.5)
    exact = frechet_distance_from_stats(m1, s1, m2, s2)
    x = rng.multivariate_normal(m1, s1, 20000)
    y = rng.multivariate_normal(m2, s2, 20000)
    assert frechet_distance(x, y).value == pytest.approx(exact, rel=0.05)
    # same distribution, small N: FD is biased upward; the N -> inf intercept is much closer to 0
    a, b = rng.standard_normal((400, 32)), rng.standard_normal((400, 32))
    res = frechet_distance(a, b, extrapolate=True, seed=0)
    assert res.value > 1.0
    assert abs(res.extrapolated) < 0.3 * res.value
    assert len(res.fit_points) == 5 and res.fit_points[-1][0] == 400


def test_kad_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(3)
    vals = [kernel_audio_distance(rng.standard_normal((300, 16)), rng.standard_normal((300, 16))).value
            for _ in range(4)]
    far = kernel_audio_distance(rng.standard_normal((300, 16)) + 1.0, rng.standard_normal((300, 16))).value
    assert abs(np.mean(vals)) < 0.05 * far
    assert far > 1.0


def test_kad_bandwidth_from_reference_only():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((200, 8))
    r1 = kernel_audio_distance(rng.standard_normal((150, 8)), ref)
    r2 = kernel_audio_distance(10.0 * rng.standard_normal((150, 8)) + 5.0, ref)
    assert r1.bandwidth == r2.bandwidth == pytest.approx(median_pairwise_distance(ref))
    assert r2.value > r1.value


def test_kad_subsamples_with_seed():
    rng = np.random.default_rng(5)
    g, r = rng.standard_normal((500, 4)), rng.standard_normal((500, 4)) + 0.3
    a = kernel_audio_distance(g, r, max_samples=100, seed=7)
    b = kernel_audio_distance(g, r, max_samples=100, seed=7)
    assert a.n_generated == a.n_reference == 100 and a.value == b.value


def test_kl_and_is():
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((50, 10))
    assert kl_divergence(logits, logits) == pytest.approx(0.0, abs=1e-12)
    p = np.array([[0.5, 0.5]])
    q = np.array([[0.9, 0.1]])
    expect = 0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1)
    assert kl_divergence(p, q, from_logits=False, eps=0) == pytest.approx(expect)
    # IS of confident, uniformly spread predictions over C classes is C; of identical predictions, 1
    onehot = np.eye(10)[np.arange(100) % 10]
    mean, std = inception_score(onehot, from_logits=False)
    assert mean == pytest.approx(10.0, rel=1e-6) and std < 1e-6
    assert inception_score(np.tile(p, (20, 1)), from_logits=False)[0] == pytest.approx(1.0)


def test_paired_cosine():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert paired_cosine(a, a, scale=100) == pytest.approx(100.0)
    assert paired_cosine(a, -a) == pytest.approx(-1.0)
    assert paired_cosine(a, np.array([[1.0, 0.0], [0.0, 0.0]])) == pytest.approx(0.5)    # zero embedding: 0


def test_paired_cosines_are_the_per_row_values_paired_cosine_averages():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((7, 5))
    b[3] = 0.0
    per = paired_cosines(a, b)
    want = [float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) if y.any() else 0.0 for x, y in zip(a, b)]
    assert per.shape == (7,) and per == pytest.approx(want) and per[3] == 0.0
    assert paired_cosine(a, b, scale=100) == pytest.approx(100 * per.mean())
    assert paired_cosines(a[:1], 2 * a[:1]) == pytest.approx([1.0])


@pytest.mark.parametrize("call", [
    lambda: frechet_distance(np.zeros((0, 4)), np.zeros((5, 4))),
    lambda: frechet_distance(np.ones((5, 4)), np.ones((5, 3))),
    lambda: frechet_distance(np.ones(5), np.ones((5, 3))),
    lambda: kernel_audio_distance(np.ones((5, 4)), np.ones((5, 4))),      # zero bandwidth
    lambda: kernel_audio_distance(np.full((5, 4), np.nan), np.ones((5, 4))),
    lambda: kl_divergence(np.ones((5, 3)), np.ones((4, 3))),
    lambda: kl_divergence(np.ones((5, 3)), np.ones((5, 3)), from_logits=False),
    lambda: inception_score(np.ones((5, 3))),
    lambda: paired_cosine(np.ones((5, 3)), np.ones((4, 3))),
    lambda: paired_cosines(np.ones((5, 3)), np.full((5, 3), np.nan)),
])
def test_bad_inputs_raise_eval_error(call):
    with pytest.raises(EvalError) as e:
        call()
    assert isinstance(e.value, FoleyError) and "\n" not in str(e.value)
