import numpy as np
import pytest

from foleyflow.errors import EvalError
from foleyflow.eval.spatial import (LOUDNESS_FLOOR_LUFS, clip_spatial, clipping_ratio, event_pans, gcc_phat, ild_db,
                                    loudness_lufs, noise_floor_db, pan_from_ild, pan_gains)
from foleyflow.events import SoundEvent

SR = 16000


def _delayed(x, delay_samples):
    n = len(x)
    f = np.fft.rfftfreq(2 * n)
    return np.fft.irfft(np.fft.rfft(x, 2 * n) * np.exp(-2j * np.pi * f * delay_samples), 2 * n)[:n]


@pytest.mark.parametrize("delay", [7.0, -5.0, 3.25, 0.0])
def test_gcc_phat_recovers_known_delay(delay):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SR)
    right = _delayed(x, delay) + 0.05 * rng.standard_normal(SR)
    est = gcc_phat(x, right, SR)
    assert est * SR == pytest.approx(delay, abs=1 / 16 + 1e-9)
    assert clip_spatial(np.stack([x, right]), SR)["itd_ms"] == pytest.approx(1000 * delay / SR, abs=0.01)


def test_ild_and_pan_inversion_of_constant_power_law():
    x = np.random.default_rng(1).standard_normal(SR)
    for p in np.linspace(-0.95, 0.95, 9):
        gl, gr = pan_gains(p)
        st = np.stack([gl * x, gr * x])
        assert pan_from_ild(ild_db(st)) == pytest.approx(p, abs=1e-6)
    assert ild_db(np.stack([x, 0.5 * x])) == pytest.approx(20 * np.log10(2))


def _burst(rng, n):
    t = np.arange(n) / SR
    return rng.standard_normal(n) * np.exp(-t / 0.03)


def test_event_pans_recover_labels_over_an_ambience_bed():
    rng = np.random.default_rng(2)
    dur, pans = 4.0, [-0.8, -0.3, 0.0, 0.5, 0.9]
    x = 0.02 * rng.standard_normal((2, int(dur * SR)))          # centred noise bed
    events = [SoundEvent("rain", "ambience", 0.0, dur)]
    for k, p in enumerate(pans):
        t0 = 0.3 + 0.7 * k
        gl, gr = pan_gains(p)
        b = _burst(rng, int(0.3 * SR))
        i = int(t0 * SR)
        x[0, i:i + len(b)] += gl * b
        x[1, i:i + len(b)] += gr * b
        events.append(SoundEvent("snare", "discrete", t0, pan=p))
    events.append(SoundEvent("tom", "discrete", 0.305, pan=0.7))    # starts with the first: cannot be attributed
    res = event_pans(x, SR, events)
    statuses = [m.status for m in res]
    assert statuses == ["overlapped", "ok", "ok", "ok", "ok", "overlapped"]
    errs = [m.error for m in res if m.status == "ok"]
    assert max(errs) < 0.05
    # without background subtraction the centred bed biases the estimate toward 0
    raw = event_pans(x, SR, events, subtract_background=False)
    assert max(m.error for m in raw if m.status == "ok") > max(errs)


def test_event_pan_uses_pan_track_and_reports_silent():
    x = np.zeros((2, SR))
    ev = SoundEvent("engine", "continuous", 0.2, 0.8, pan_track=[(0.0, -1.0), (1.0, 1.0)])
    (m,) = event_pans(x, SR, [ev])
    assert m.status == "silent" and m.label == pytest.approx(-1 + 2 * 0.215)


def test_aesthetic_proxies():
    t = np.arange(2 * SR) / SR
    sine = 0.1 * np.sin(2 * np.pi * 997 * t)
    assert loudness_lufs(np.stack([sine, sine]), SR) == pytest.approx(-20.0, abs=0.3)
    assert loudness_lufs(np.zeros((2, SR)), SR) == LOUDNESS_FLOOR_LUFS
    x = np.zeros((2, 1000))
    x[0, :10] = 1.0
    assert clipping_ratio(x) == pytest.approx(10 / 2000)
    noise = 0.01 * np.random.default_rng(3).standard_normal((2, 4 * SR))
    assert noise_floor_db(noise, SR) == pytest.approx(-40.0, abs=1.0)


def test_bad_inputs():
    with pytest.raises(EvalError):
        gcc_phat(np.ones(10), np.ones(11), SR)
    with pytest.raises(EvalError):
        ild_db(np.ones((1, 100)))
    with pytest.raises(EvalError):
        event_pans(np.ones((100, 2)), SR, [])
