"""`foleyflow generate --bundle` on a converted MMAudio release: a fake release (random weights of the released layouts
at reduced widths, `tests/test_mmaudio_release.py::write_fake_release`) -> `foleyflow convert mmaudio` -> generate.
Checks: the written video and .wav (length, rate, mono), the same audio as `MMAudioRelease.synthesize` on frames picked
by MMAudio's own rule (one path), --stereo, the foleyflow options that apply, a 44.1 kHz release's rate, refusals."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from test_mmaudio_release import TINY_VOCODER, _fixture, _net, write_fake_release  # noqa: E402  (skips without extra)

from foleyflow import cli  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.mp4"


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _convert(release: dict, out: Path, parts=("generator", "vae", "vocoder", "synchformer", "clip")) -> Path:
    argv = ["convert", "mmaudio", "-o", str(out)]
    for p in parts:
        argv += [f"--{p}", str(release[p])]
    assert cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory, mmaudio_fixtures):
    root = tmp_path_factory.mktemp("mmgen")
    files = write_fake_release(root / "release", mmaudio_fixtures)
    return files, _convert(files, root / "bundle")


@pytest.fixture(scope="module")
def pipe(release):
    from foleyflow.pipeline import FoleyPipeline

    return FoleyPipeline.from_bundle(release[1], precision="fp32")


def mmaudio_frames(path: Path, fps, n: int, exact: bool = True) -> torch.Tensor:
    """(1, n', 3, H, W) uint8: MMAudio's inference rule written out from its source (mmaudio/data/av_utils.py,
    read_frames): every decoded frame fills each output time it has reached (time >= next, next += 1 / fps), with
    exact times (foleyflow's departure) or, `exact=False`, MMAudio's float sum (which may give fewer than n frames)."""
    import av

    out = []
    next_t, step = (Fraction(0), 1 / Fraction(fps)) if exact else (0.0, 1 / float(fps))
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            t = frame.pts * frame.time_base if exact else frame.time
            while t >= next_t and len(out) < n:
                out.append(frame.to_ndarray(format="rgb24"))
                next_t += step
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)[None]


def _wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data.T, sr


def test_frame_pick_next_is_mmaudios_rule(tmp_path):
    from media_helpers import frame_index, make_video

    from foleyflow.media import iter_frames

    video = make_video(tmp_path / "v.mp4", 45, 30)  # frame j shows j; 1.5 s at 30 fps
    nxt = [frame_index(f) for _, _, f in iter_frames(video, 8, pick="next")]
    last = [frame_index(f) for _, _, f in iter_frames(video, 8, pick="last")]
    assert len(nxt) == len(last) == 12
    assert last == [int(i * 30 / 8) for i in range(12)]
    assert nxt == [-(-i * 30 // 8) for i in range(12)] != last  # first frame at or after i / 8 s
    for exact in (True, False):  # at 8 fps MMAudio's float sum is exact
        ref = mmaudio_frames(video, 8, 12, exact)[0].permute(0, 2, 3, 1).numpy()
        assert nxt == [frame_index(f) for f in ref]
    # at 25 fps on a 25 fps video, MMAudio's float sum skips frames; foleyflow's exact times show frame k at k / 25
    sync = [frame_index(f) for _, _, f in iter_frames(make_video(tmp_path / "p.mp4", 50, 25), 25, pick="next")]
    assert sync == list(range(50))
    assert mmaudio_frames(tmp_path / "p.mp4", 25, 50, exact=False).shape[1] < 50


def test_generate_on_a_converted_release_is_synthesize(release, tmp_path, capsys):
    """The documented command; the audio equals MMAudioRelease.synthesize on MMAudio-sampled frames and the seed."""
    from foleyflow.conditioning import decode_window
    from foleyflow.media import probe
    from foleyflow.models.mmaudio_bundle import load_release

    _, bundle = release
    out = tmp_path / "demo.foley.mp4"
    argv = ["generate", str(DEMO), "--bundle", str(bundle), "--steps", "2", "--prompt", "a dog barks", "--seed", "5",
            "--precision", "fp32", "-o", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "128000 samples at 16000 Hz" in text and "2 euler steps, cfg 4.5" in text and "mono" in text
    audio, sr = _wav(out.with_suffix(".wav"))
    assert sr == 16000 and audio.shape == (1, 128000)
    info = probe(out)
    assert info.audio.channels == 1 and info.audio.sample_rate == 16000 and info.video.duration_s == 8.0

    rel = load_release(bundle)
    frames8, frames25 = mmaudio_frames(DEMO, 8, 64), mmaudio_frames(DEMO, 25, 200)
    assert torch.equal(frames8, mmaudio_frames(DEMO, 8, 64, exact=False))
    stage = load_release(bundle, parts=("clip",)).semantic
    stage.frames_as_mmaudio = True
    assert torch.equal(decode_window(DEMO, stage, 0.0, 8.0, 64), frames8)  # the pipeline decodes those frames
    ref = rel.synthesize(8.0, frames8=frames8, frames25=frames25, texts=["a dog barks"], num_steps=2, seed=5)
    torch.testing.assert_close(torch.from_numpy(audio), ref, rtol=1e-4, atol=1e-5)


def test_text_to_audio_options_stereo_and_refusals(release, tmp_path, capsys):
    _, bundle = release
    base = ["generate", "--bundle", str(bundle), "--duration", "1.3", "--steps", "2", "--precision", "fp32",
            "--negative", "music", "--sampler", "heun", "--seed", "2"]
    assert cli.main(base + ["-o", str(tmp_path / "mono.wav")]) == 0
    assert cli.main(base + ["-o", str(tmp_path / "stereo.wav"), "--stereo"]) == 0
    mono, sr = _wav(tmp_path / "mono.wav")
    stereo, _ = _wav(tmp_path / "stereo.wav")
    assert sr == 16000 and mono.shape == (1, 20800) and stereo.shape == (2, 20800)
    assert np.array_equal(stereo[0], mono[0]) and np.array_equal(stereo[1], mono[0])
    assert cli.main(base[:-2] + ["--seed", "3", "-o", str(tmp_path / "other.wav")]) == 0
    assert not np.array_equal(_wav(tmp_path / "other.wav")[0], mono)  # the seed matters
    capsys.readouterr()
    (tmp_path / "mine.wav").write_bytes(b"not foleyflow's")
    assert cli.main(base + ["-o", str(tmp_path / "mine.wav")]) == 2  # --overwrite safety
    (tmp_path / "cot.txt").write_text("Semantic: a dog.\nTemporal: at 0.5 s.\nAesthetic: dry.\nSpatial: left.\n")
    assert cli.main(base + ["-o", str(tmp_path / "c.wav"), "--cot", str(tmp_path / "cot.txt")]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "not a chain of thought" in err and err.count("\n") == 2


def test_pipeline_progress_cancel_and_exact_length_at_any_frame_rate(pipe, tmp_path):
    from media_helpers import make_video

    from foleyflow.media import probe
    from foleyflow.pipeline import Cancelled

    assert (pipe.sample_rate, pipe.window_s, pipe.defaults["steps"], pipe.defaults["cfg_scale"]) == (16000, 8.0, 25,
                                                                                                  4.5)
    video = make_video(tmp_path / "ntsc.mp4", 40, "30000/1001", size=(48, 32))
    duration = probe(video).video.duration_s
    seen = []
    res = pipe.generate(video, steps=2, progress=lambda i, n: seen.append((i, n)))
    assert res.audio.shape == (1, round(duration * 16000)) and seen == [(1, 2), (2, 2)]
    with pytest.raises(Cancelled):
        pipe.generate(duration_s=1.0, steps=3, cancel=lambda: True)


def test_generate_set_on_a_release_resumes_and_writes_stereo(release, tmp_path, capsys):
    from media_helpers import make_video

    _, bundle = release
    video = make_video(tmp_path / "v.mp4", 30, 25, size=(40, 30))   # 1.2 s
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "video": str(video)}) + "\n")
    argv = ["generate-set", str(manifest), "--bundle", str(bundle), "--out", str(tmp_path / "out"), "--steps", "1",
            "--stereo"]
    assert cli.main(argv) == 0
    audio, sr = _wav(tmp_path / "out" / "a.wav")
    assert sr == 16000 and audio.shape == (2, 19200) and np.array_equal(audio[0], audio[1])
    capsys.readouterr()
    assert cli.main(argv) == 0 and "wrote 0 clips" in capsys.readouterr().out   # the release's record matches


def test_release_missing_parts_is_one_line(release, tmp_path, capsys):
    files, _ = release
    part = _convert(files, tmp_path / "gen_only", parts=("generator",))
    capsys.readouterr()
    assert cli.main(["generate", "--bundle", str(part), "--duration", "1", "-o", str(tmp_path / "a.wav")]) == 2
    err = capsys.readouterr().err
    assert "has no vae" in err and "--vae" in err and err.count("\n") == 1


TINY_VOCODER_44K = {**TINY_VOCODER, "num_mels": 128, "upsample_initial_channel": 128, "sampling_rate": 44100,
                    "hop_size": 512, "upsample_rates": [8, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [16, 8, 4, 4, 4, 4],
                    "use_tanh_at_final": False, "use_bias_at_final": False}


def test_a_44k_release_reports_its_rate(release, tmp_path, mmaudio_fixtures):
    import bigvgan
    from bigvgan.env import AttrDict

    from foleyflow.models.generator import Generator, GeneratorConfig
    from foleyflow.models.mmaudio_convert import to_mmaudio
    from foleyflow.pipeline import FoleyPipeline

    files, _ = release
    files = dict(files)
    torch.manual_seed(1)
    gen = Generator(GeneratorConfig(latent_channels=40, sample_rate=44100, samples_per_latent=1024, visual_dim=16,
                                    sync_dim=96, text_dim=24, hidden_dim=64, num_heads=1, num_joint_blocks=1,
                                    num_audio_blocks=1))
    gen.set_latent_stats(torch.rand(40) - 0.5, torch.rand(40) + 0.5)
    files["generator"] = tmp_path / "mmaudio_small_44k.pth"
    torch.save(to_mmaudio(gen.state_dict()), files["generator"])
    files["vae"] = tmp_path / "v1-44.pth"
    torch.save(_net(_fixture(mmaudio_fixtures, "mmaudio_vae44k_tiny")[0]), files["vae"])
    files["vocoder"] = tmp_path / "bigvgan_v2_44khz"
    files["vocoder"].mkdir()
    (files["vocoder"] / "config.json").write_text(json.dumps(TINY_VOCODER_44K))
    voc = bigvgan.BigVGAN(AttrDict(TINY_VOCODER_44K), use_cuda_kernel=False)
    torch.save({"generator": voc.state_dict()}, files["vocoder"] / "bigvgan_generator.pt")
    bundle = _convert(files, tmp_path / "b44")
    pipe = FoleyPipeline.from_bundle(bundle, precision="fp32")
    assert pipe.sample_rate == 44100
    res = pipe.generate(duration_s=1.0, prompt="rain", steps=1)
    assert res.sample_rate == 44100 and res.audio.shape == (1, 44100) and np.isfinite(res.audio).all()
