"""Distribution metrics over embeddings and classifier outputs: FD, KAD, KL and IS (float64, numpy/scipy).

Follows the protocols collected by av-benchmark (hkchengrex/av-benchmark) and the survey (see
`../shared/docs/reference.md` section 5):
- FD (Frechet distance, Heusel et al. 2017 as used by FAD): ||mu_g - mu_r||^2 + Tr(S_g + S_r - 2 (S_g S_r)^(1/2)).
  Departure: the trace of the matrix square root is computed from the eigenvalues of the symmetric PSD matrix
  S_r^(1/2) S_g S_r^(1/2) (similar to S_g S_r), which is exact and stable, instead of `scipy.linalg.sqrtm` of a
  non-symmetric product (which can return complex values and needs an epsilon fix). FD is strongly biased by N, so
  the result reports N and can be extrapolated to N -> infinity (fit FD against 1/N, Chong & Forsyth 2020).
- KAD (Chung et al. 2025, "KAD: No More FAD!"): 100 x unbiased MMD^2 with a Gaussian kernel
  k(x, y) = exp(-||x - y||^2 / (2 sigma^2)). Departure from the public code: sigma is the median pairwise distance of
  the REFERENCE set only, so a metric value never depends on what is being evaluated. Unbiased, so small negative
  values are legitimate.
- KL: KL(reference || generated) of softmax class posteriors, paired per clip, averaged over clips.
- IS (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over the generated set in 10 splits; mean and std.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from foleyflow.errors import EvalError


def _embeddings(x, name: str, min_rows: int = 2) -> np.ndarray:
    """(N, D) float64 array, checked: 2-D, at least `min_rows` rows, finite."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise EvalError(f"{name} must be a 2-D array (N, D) of embeddings, got shape {x.shape}")
    if x.shape[0] < min_rows:
        raise EvalError(f"{name} has {x.shape[0]} rows; at least {min_rows} are needed")
    if x.shape[1] == 0:
        raise EvalError(f"{name} has zero-dimensional embeddings")
    if not np.all(np.isfinite(x)):
        raise EvalError(f"{name} contains NaN or infinite values")
    return x


def _same_dim(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise EvalError(f"{names}: embedding sizes differ ({a.shape[1]} vs {b.shape[1]})")


# ---------------------------------------------------------------------------------------------- Frechet distance
def gaussian_stats(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of embeddings (N, D), float64."""
    x = _embeddings(x, "embeddings")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _one_blas_thread():
    """Runs small dense linear algebra on one BLAS thread: on a shared 2-core machine multi-threaded OpenBLAS
    eigendecompositions of 256 x 256 matrices were measured 30-150x slower (spin-waiting threads). No-op without
    threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu1, s1, mu2, s2) -> float:
    """Frechet distance between Gaussians N(mu1, s1) and N(mu2, s2); covariances (D, D) must be PSD."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise EvalError(f"Gaussian statistics do not match: means {mu1.shape} {mu2.shape}, covs {s1.shape} {s2.shape}")
    with _one_blas_thread():
        r = _psd_sqrt(s2)
        m = r @ s1 @ r
        tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    d = mu1 - mu2
    return float(max(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt, 0.0))


@dataclass
class FDResult:
    value: float                      # FD at the given sizes
    n_generated: int
    n_reference: int
    extrapolated: float | None = None  # intercept of FD = a + b / N, when asked for
    fit_points: list | None = None     # [(N, mean FD)] used for the fit

    def to_json(self) -> dict:
        return asdict(self)


def frechet_distance(generated, reference, *, extrapolate: bool = False, num_points: int = 5,
                     min_fraction: float = 0.2, repeats: int = 3, seed: int = 0) -> FDResult:
    """FD between generated (N_g, D) and reference (N_r, D) embeddings; reports N.

    extrapolate: also subsample both sets to N_i = linspace(min_fraction, 1, num_points) x min(N_g, N_r) rows (without
    replacement, `repeats` draws each, seeded), fit mean FD = a + b / N_i by least squares and report a (the N -> inf
    value). Needs N_i > 1 at the smallest size; sizes must exceed D for a meaningful covariance (not enforced).
    """
    g, r = _embeddings(generated, "generated"), _embeddings(reference, "reference")
    _same_dim(g, r, "FD")
    res = FDResult(frechet_distance_from_stats(*gaussian_stats(g), *gaussian_stats(r)), len(g), len(r))
    if not extrapolate:
        return res
    n_max = min(len(g), len(r))
    sizes = np.unique(np.linspace(min_fraction * n_max, n_max, num_points).astype(int))
    sizes = sizes[sizes >= 2]
    if len(sizes) < 2:
        raise EvalError(f"FD extrapolation needs at least 2 distinct subset sizes; got {sizes.tolist()} from N={n_max}")
    rng = np.random.default_rng(seed)
    points = []
    for n in sizes:
        fds = []
        for _ in range(repeats if n < n_max or len(g) != len(r) else 1):
            gi = g[rng.choice(len(g), n, replace=False)]
            ri = r[rng.choice(len(r), n, replace=False)]
            fds.append(frechet_distance_from_stats(*gaussian_stats(gi), *gaussian_stats(ri)))
        points.append((int(n), float(np.mean(fds))))
    inv_n = np.array([1.0 / n for n, _ in points])
    fd = np.array([f for _, f in points])
    slope, intercept = np.polyfit(inv_n, fd, 1)
    res.extrapolated, res.fit_points = float(intercept), points
    return res


# ----------------------------------------------------------------------------------------- Kernel audio distance
def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.clip(d, 0.0, None)


def median_pairwise_distance(x) -> float:
    """Median Euclidean distance over distinct pairs (i < j) of rows of x (N, D)."""
    x = _embeddings(x, "reference")
    with _one_blas_thread():
        d = _sq_dists(x, x)[np.triu_indices(len(x), k=1)]
    return float(np.sqrt(np.median(d)))


def _subsample(x: np.ndarray, max_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_samples is None or len(x) <= max_samples:
        return x
    return x[np.sort(rng.choice(len(x), max_samples, replace=False))]


@dataclass
class KADResult:
    value: float          # 100 x unbiased MMD^2
    bandwidth: float      # sigma, from the reference set
    n_generated: int      # rows used (after subsampling)
    n_reference: int

    def to_json(self) -> dict:
        return asdict(self)


def kernel_audio_distance(generated, reference, *, bandwidth: float | None = None, max_samples: int | None = 4000,
                          seed: int = 0, scale: float = 100.0) -> KADResult:
    """KAD = scale x unbiased MMD^2 with a Gaussian kernel between generated (N_g, D) and reference (N_r, D).

    bandwidth: sigma of exp(-d^2 / (2 sigma^2)); None -> median pairwise distance of the (subsampled) reference set.
    max_samples: each set is subsampled (seeded, without replacement) to at most this many rows; kernels are N^2.
    """
    g, r = _embeddings(generated, "generated"), _embeddings(reference, "reference")
    _same_dim(g, r, "KAD")
    rng = np.random.default_rng(seed)
    r, g = _subsample(r, max_samples, rng), _subsample(g, max_samples, rng)
    sigma = median_pairwise_distance(r) if bandwidth is None else float(bandwidth)
    if not np.isfinite(sigma) or sigma <= 0:
        raise EvalError(f"KAD bandwidth must be positive and finite, got {sigma} (are the reference embeddings all "
                        "identical?)")
    gamma = 1.0 / (2.0 * sigma * sigma)
    with _one_blas_thread():
        kgg, krr, kgr = (np.exp(-gamma * _sq_dists(a, b)) for a, b in ((g, g), (r, r), (g, r)))
    m, n = len(g), len(r)
    mmd = ((kgg.sum() - np.trace(kgg)) / (m * (m - 1)) + (krr.sum() - np.trace(krr)) / (n * (n - 1))
           - 2.0 * kgr.mean())
    return KADResult(float(scale * mmd), sigma, m, n)


# ---------------------------------------------------------------------------------- classifier-output metrics
def _probs(x, name: str, from_logits: bool) -> np.ndarray:
    p = _embeddings(x, name, min_rows=1)
    if from_logits:
        p = p - p.max(axis=1, keepdims=True)
        p = np.exp(p)
        return p / p.sum(axis=1, keepdims=True)
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise EvalError(f"{name} must hold probabilities (non-negative rows summing to 1); pass from_logits=True "
                        "for logits")
    return p / p.sum(axis=1, keepdims=True)


def kl_divergences(reference, generated, *, from_logits: bool = True, eps: float = 1e-6) -> np.ndarray:
    """(N,) KL(p_ref || p_gen) per clip for paired class outputs (N, C) (row i of each is the same clip).

    from_logits: rows are logits (softmax applied); False: rows are already probabilities. eps guards log(0).
    """
    p = _probs(reference, "reference outputs", from_logits)
    q = _probs(generated, "generated outputs", from_logits)
    if p.shape != q.shape:
        raise EvalError(f"KL needs paired outputs of the same shape: reference {p.shape} vs generated {q.shape}")
    return (p * (np.log(p + eps) - np.log(q + eps))).sum(axis=1)


def kl_divergence(reference, generated, *, from_logits: bool = True, eps: float = 1e-6) -> float:
    """Mean over clips of `kl_divergences` (the `kl` key)."""
    return float(kl_divergences(reference, generated, from_logits=from_logits, eps=eps).mean())


def inception_score(generated, *, splits: int = 10, from_logits: bool = True, eps: float = 1e-12
                    ) -> tuple[float, float]:
    """IS over generated class outputs (N, C): exp(mean_x KL(p(y|x) || p(y))) in `splits` contiguous splits;
    returns (mean, std) over splits. N must be at least `splits`."""
    p = _probs(generated, "generated outputs", from_logits)
    if len(p) < splits:
        raise EvalError(f"IS with {splits} splits needs at least {splits} clips, got {len(p)}")
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + eps) - np.log(py + eps))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def paired_cosines(a, b) -> np.ndarray:
    """(N,) cosine similarity of each pair of rows of a (N, D) and b (N, D), float64 (the per-clip values that
    `paired_cosine` averages). A pair with an all-zero embedding (e.g. of silence) has similarity 0."""
    a, b = _embeddings(a, "first embeddings", 1), _embeddings(b, "second embeddings", 1)
    if a.shape != b.shape:
        raise EvalError(f"paired similarity needs equal shapes: {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return np.where((na > 0) & (nb > 0), (a * b).sum(1) / np.maximum(na * nb, 1e-300), 0.0)


def paired_cosine(a, b, *, scale: float = 1.0) -> float:
    """Mean cosine similarity of paired rows of a (N, D) and b (N, D), times `scale` (100 for the IB score): the mean
    of `paired_cosines`."""
    return float(scale * np.mean(paired_cosines(a, b)))
