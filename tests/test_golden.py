"""The pipeline's outputs (conditions, latents, waveform) match the committed golden outputs of a tiny fp32 model
(tests/golden_pipeline.py builds it and says how to regenerate them)."""
from __future__ import annotations

import numpy as np
import pytest

import golden_pipeline as gp

TOL = 1e-5


@pytest.fixture(scope="module")
def current(tmp_path_factory):
    return gp.compute(tmp_path_factory.mktemp("golden"))


def test_golden_outputs_are_unchanged(current):
    want = np.load(gp.GOLDEN)
    assert sorted(want.files) == sorted(current)
    for key in want.files:
        a, b = current[key], want[key]
        assert a.shape == b.shape, key
        tol = TOL * max(1.0, float(np.abs(b).max())) if key.endswith("wav_stats") else TOL
        diff = float(np.abs(a.astype(np.float64) - b).max())
        assert diff <= tol, f"{key}: max |diff| {diff:.3g}"
    # the cases are not degenerate: real audio, different per case, windows differ
    assert want["video/wav_stats"][2] > 0 and want["long/wav_stats"][0] == round(2.2 * 16000)
    assert not np.allclose(want["long/latents.0"], want["long/latents.1"])
    assert not np.allclose(want["video/text.0"], want["long/text.0"])
