"""Preprocessing protocols of the published embedders (foleyflow/eval/published.py) and the EvalModels hook."""
import numpy as np
import pytest

from foleyflow.errors import EvalError, FoleyError, MissingResourceError
from foleyflow.eval.published import (SPECS, PublishedEmbedder, kaldi_fbank, load_published_embedder, prepare,
                                      sync_logmel)
from foleyflow.eval.run import EvalModels


def _tone(seconds, sr, hz=1000.0, channels=2):
    t = np.arange(int(round(seconds * sr))) / sr
    return np.tile(0.5 * np.sin(2 * np.pi * hz * t), (channels, 1))


def _peak_hz(x, sr):
    return np.argmax(np.abs(np.fft.rfft(x))) * sr / len(x)


@pytest.mark.parametrize("name", ["panns_cnn14", "panns_cnn14_16k", "passt", "laion_clap", "ms_clap"])
def test_waveform_protocols_resample_and_keep_a_1khz_tone(name):
    out = prepare(name, _tone(3.0, 44100), 44100)
    sr = SPECS[name].sample_rate
    assert out.dtype == np.float32 and out.ndim == 2
    assert abs(_peak_hz(out[0][: 3 * sr], sr) - 1000.0) < 2.0


def test_panns_keeps_the_whole_clip_at_its_rate():
    assert prepare("panns_cnn14", _tone(8.0, 48000), 48000).shape == (1, 8 * 32000)
    assert prepare("panns_cnn14_16k", _tone(8.0, 48000), 48000).shape == (1, 8 * 16000)


def test_passt_pads_to_10s_windows():
    assert prepare("passt", _tone(8.0, 32000), 32000).shape == (1, 320000)
    out = prepare("passt", _tone(12.5, 32000), 32000)
    assert out.shape == (2, 320000)
    assert np.all(out[1, int(2.5 * 32000) + 10:] == 0) and np.any(out[1, :32000] != 0)


@pytest.mark.parametrize("seconds,examples", [(10.0, 10), (8.0, 8), (2.5, 2), (0.5, 1)])
def test_vggish_examples(seconds, examples):
    out = prepare("vggish", _tone(seconds, 44100), 44100)
    assert out.shape == (examples, 96, 64)
    # a 1 kHz tone peaks in the band centred nearest to 1 kHz (HTK mel, 125-7500 Hz, 64 bands)
    edges = 700 * np.expm1(np.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 66) / 1127)
    assert abs(edges[1:-1][out[0].mean(axis=0).argmax()] - 1000.0) < 60.0


def test_laion_clap_repeat_pads_short_clips_to_10s_at_48k():
    out = prepare("laion_clap", _tone(3.0, 48000, hz=440.0), 48000)[0]
    n = 3 * 48000
    assert out.shape == (480000,)
    np.testing.assert_array_equal(out[:n], out[n:2 * n])
    np.testing.assert_array_equal(out[:n], out[2 * n:3 * n])
    assert np.all(out[3 * n:] == 0)
    assert np.allclose(out[:n] * 32767, np.round(out[:n] * 32767), atol=1e-2)  # int16 round trip


def test_clap_crops_long_clips_reproducibly():
    a = np.random.default_rng(1).standard_normal((1, 12 * 48000)) * 0.1
    one, two = prepare("laion_clap", a, 48000, seed=3), prepare("laion_clap", a, 48000, seed=3)
    np.testing.assert_array_equal(one, two)
    assert one.shape == (1, 480000)
    ms = prepare("ms_clap", _tone(3.0, 44100), 44100)[0]
    assert ms.shape == (7 * 44100,)
    np.testing.assert_allclose(ms[:3 * 44100], ms[3 * 44100:6 * 44100])  # tiled, not zero-padded
    np.testing.assert_allclose(ms[6 * 44100:], ms[:44100])  # ceil(7 / 3) copies cut to 7 s


def test_imagebind_three_2s_clips_of_fbank():
    sr = 16000
    a = np.concatenate([_tone(3.0, sr, 500.0, 1), _tone(2.0, sr, 2000.0, 1), _tone(3.0, sr, 4000.0, 1)], axis=1)
    out = prepare("imagebind", a, sr)
    assert out.shape == (3, 1, 128, 204)
    # clips start at 0, 3 and 6 s: 500 Hz, 2000 Hz, 4000 Hz; the last 6 frames are zero padding -> -mean/std
    peaks = [out[i, 0, :, :190].mean(axis=1).argmax() for i in range(3)]
    assert peaks[0] < peaks[1] < peaks[2]
    np.testing.assert_allclose(out[0, 0, :, 200:], 4.268 / 9.138, rtol=1e-6)
    assert kaldi_fbank(np.zeros(32000)).shape == (198, 128)


def test_synchformer_segments_match_an_independent_mel():
    librosa = pytest.importorskip("librosa")
    sr = 16000
    x = np.random.default_rng(0).standard_normal(10240) * 0.1
    ours = sync_logmel(x, sr)
    ref = np.log(librosa.feature.melspectrogram(y=x, sr=sr, n_fft=1024, hop_length=160, win_length=400,
                                                n_mels=128, htk=True, norm=None, fmin=0.0, fmax=8000.0,
                                                pad_mode="reflect") + 1e-6)
    assert ours.shape == ref.shape == (128, 65)
    np.testing.assert_allclose(ours, ref, atol=1e-3)
    out = prepare("synchformer", _tone(8.0, sr), sr)
    assert out.shape == (2, 14, 1, 128, 66)
    # segment k of the first window starts at k * 0.32 s; the last window ends at the clip's end (8 s)
    x8 = np.random.default_rng(2).standard_normal(8 * sr) * 0.1
    win = prepare("synchformer", x8[None], sr)
    first = (np.pad(sync_logmel(x8[5120:15360], sr), ((0, 0), (0, 1))) + 4.2677393) / (2 * 4.5689974)
    last = (np.pad(sync_logmel(x8[-10240:], sr), ((0, 0), (0, 1))) + 4.2677393) / (2 * 4.5689974)
    np.testing.assert_allclose(win[0, 1, 0], first, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(win[1, -1, 0], last, rtol=1e-5, atol=1e-5)


def test_published_embedder_pools_and_plugs_into_eval_models():
    seen = []

    def forward(batch):  # a fake network: one 4-d row per example, row i = [i, i, i, i]
        seen.append(batch.shape)
        return np.repeat(np.arange(len(batch), dtype=np.float64)[:, None], 4, axis=1)

    emb = PublishedEmbedder("vggish", forward)
    models = EvalModels(audio_embedder=emb)
    out = models.audio_embedder(_tone(10.0, 44100), 44100)
    assert seen == [(10, 96, 64)]
    np.testing.assert_allclose(out, np.full(4, 4.5))  # mean of 0..9
    single = PublishedEmbedder("laion_clap", lambda b: np.ones((len(b), 3)))(_tone(3.0, 48000), 48000)
    assert single.shape == (3,)
    with pytest.raises(EvalError):
        PublishedEmbedder("vggish", lambda b: np.ones((1, 3)))(_tone(3.0, 16000), 16000)


def test_load_published_embedder_errors_are_one_line(tmp_path):
    with pytest.raises(FoleyError) as err:
        load_published_embedder("passt", tmp_path / "missing.pt")
    assert "not found" in str(err.value) and "\n" not in str(err.value)
    weights = tmp_path / "passt.pt"
    weights.write_bytes(b"x")
    with pytest.raises(MissingResourceError) as err:
        load_published_embedder("passt", weights)
    assert "hear21passt" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(EvalError):
        load_published_embedder("nope", weights)


def test_published_embedder_runs_inside_run_evaluation(tmp_path):
    sf = pytest.importorskip("soundfile")
    from foleyflow.eval.run import run_evaluation

    rng = np.random.default_rng(0)
    for folder in ("gen", "ref"):
        (tmp_path / folder).mkdir()
        for i in range(5):
            sf.write(tmp_path / folder / f"clip{i}.wav", (rng.standard_normal((2 * 16000, 2)) * 0.1), 16000)
    calls = []

    def forward(batch):  # band means of the first 8 bands per example
        calls.append(batch.shape)
        return batch.mean(axis=1)[:, :8]

    models = EvalModels(audio_embedder=PublishedEmbedder("vggish", forward))
    report = run_evaluation(tmp_path / "gen", tmp_path / "ref", models=models, baselines=False)
    assert calls and all(c == (2, 96, 64) for c in calls)
    assert "fd_learned" in report["systems"]["generated"]
    assert np.isfinite(report["systems"]["generated"]["fd_learned"])
