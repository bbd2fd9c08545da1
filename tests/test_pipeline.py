"""FoleyPipeline and `foleyflow generate` end to end, with a tiny untrained bundle built by the test (window 2 s)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from foleyflow import media
from foleyflow.bundle import build_untrained_bundle, read_bundle
from foleyflow.models.text_encoder import TextEncoderConfig
from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig
from foleyflow.pipeline import FoleyPipeline, crossfade_join, generation_windows

WINDOW_S = 2.0
TINY_GEN = dict(hidden_dim=32, num_heads=2, num_joint_blocks=1, num_audio_blocks=1)
TEXT_CFG = TextEncoderConfig(seq_len=32, part_seq_len=32)


def tiny_bundle(folder: Path, text_encoder, seed: int = 0) -> Path:
    return build_untrained_bundle(folder, seed=seed, window_s=WINDOW_S, generator_overrides=TINY_GEN,
                                  semantic_cfg=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
                                  sync_cfg=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16),
                                  text_cfg=TEXT_CFG, text_encoder=text_encoder, name="test-untrained")


def make_video(path: Path, duration_s: float, fps: int = 30, size=(48, 32), audio: bool = True) -> Path:
    n = int(duration_s * fps)
    rng = np.random.default_rng(0)
    frames = [np.full((size[1], size[0], 3), (i * 7) % 255, np.uint8) + rng.integers(0, 20, (size[1], size[0], 3),
                                                                                      dtype=np.uint8)
              for i in range(n)]
    sound = (0.1 * np.sin(np.arange(int(duration_s * 16000)) / 10.0))[None].astype(np.float32) if audio else None
    return media.write_video(path, frames, fps, audio=sound, sample_rate=16000 if audio else None)



pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)

@pytest.fixture(scope="module")
def text_encoder():
    from foleyflow.models.text_encoder import load_text_encoder
    return load_text_encoder(TEXT_CFG)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, text_encoder) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", text_encoder)


@pytest.fixture(scope="module")
def pipe(bundle, text_encoder) -> FoleyPipeline:
    return FoleyPipeline.from_bundle(bundle, text_encoder=text_encoder)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {"short": make_video(d / "short.mp4", 1.5, fps=30, audio=True),
            "silent": make_video(d / "silent.mkv", 1.2, fps=24, size=(40, 40), audio=False),
            "long": make_video(d / "long.mp4", 5.0, fps=25, size=(64, 36), audio=True)}


def video_duration(path) -> float:
    return media.probe(path).video.duration_s


# ------------------------------------------------------------------------------------------------ library
def test_bundle_is_self_describing_and_says_untrained(bundle):
    info = read_bundle(bundle)
    assert not info.trained and "UNTRAINED" in info.card and "random" in info.card
    data = json.loads((bundle / "bundle.json").read_text())
    assert data["text_encoder"]["config"]["seq_len"] == 32
    assert all((bundle / data[r]).suffix == ".safetensors" for r in ("generator", "vae", "vocoder",
                                                                    "semantic_encoder", "sync_encoder"))


def test_assembled_bundle_has_a_foleyworld_model_card_and_loads(bundle, tmp_path):
    from foleyflow.bundle import assemble_bundle

    info = read_bundle(bundle)
    out = assemble_bundle(tmp_path / "trained", **{k: info.files[k] for k in info.files}, text_cfg=TEXT_CFG,
                          name="fw-test", trained_on="FoleyWorld train split, 10 clips (test)")
    again = read_bundle(out)
    assert again.trained and "FoleyWorld train split" in again.card
    assert "only FoleyWorld" in again.card and "FoleyWorld-like sounds" in again.card
    assert FoleyPipeline.from_bundle(out).trained


def test_fp16_bundle_with_a_referenced_codec_loads_and_sounds_the_same(bundle, tmp_path):
    from safetensors import safe_open

    from foleyflow.bundle import assemble_bundle
    from foleyflow.checkpoint import checkpoint_identities
    from foleyflow.hashing import file_sha256

    info = read_bundle(bundle)
    shared = tmp_path / "half" / "codec"  # a referenced file must stay inside the bundle (or foleyflow's assets)
    shared.mkdir(parents=True)
    vocoder = shared / "vocoder.safetensors"
    vocoder.write_bytes(info.files["vocoder"].read_bytes())
    out = assemble_bundle(tmp_path / "half", **{**info.files, "vocoder": vocoder}, text_cfg=TEXT_CFG, name="half",
                          trained_on="test", fp16=True, reference=("vocoder",))
    index = json.loads((out / "bundle.json").read_text())
    assert index["vocoder"] == "codec/vocoder.safetensors" and not (out / "vocoder.safetensors").exists()
    gen = out / "generator.safetensors"
    assert gen.stat().st_size < 0.55 * info.files["generator"].stat().st_size
    with safe_open(str(gen), framework="pt") as f:
        assert f.get_tensor(next(iter(f.keys()))).dtype == torch.float16
    # the generator was trained on the fp32 VAE's latents: the half copy is accepted as that VAE
    assert file_sha256(info.files["vae"]) in checkpoint_identities(out / "vae.safetensors")
    # the audio-visual encoders keep only their visual towers, which the pipeline needs; the whole model is refused
    from foleyflow.errors import CheckpointError
    from foleyflow.models.av_ssl import load_semantic_model

    with safe_open(str(out / "semantic_av.safetensors"), framework="pt") as f:
        assert all(k.startswith("visual.") for k in f.keys())
    with pytest.raises(CheckpointError, match="holds only the visual encoder"):
        load_semantic_model(out / "semantic_av.safetensors")
    a = FoleyPipeline.from_bundle(bundle, precision="fp32").generate(duration_s=1.0, prompt="a knock", steps=2)
    b = FoleyPipeline.from_bundle(out, precision="fp32").generate(duration_s=1.0, prompt="a knock", steps=2)
    assert np.abs(a.audio - b.audio).max() < 0.05 * max(1e-6, np.abs(a.audio).max())

def test_a_half_bundle_reassembled_with_a_retrained_generator_keeps_its_encoders_identities(bundle, tmp_path):
    """A fine-tuned generator (e.g. GRPO's, whose provenance keeps the fp32 encoders it was trained on) bundled with
    an fp16 bundle's own encoder files: the copies of copies must still be accepted as those encoders."""
    from foleyflow.bundle import assemble_bundle
    from foleyflow.checkpoint import checkpoint_identities
    from foleyflow.hashing import file_sha256

    info = read_bundle(bundle)
    half = assemble_bundle(tmp_path / "half", **info.files, text_cfg=TEXT_CFG, name="half", trained_on="test",
                           fp16=True)
    half_files = read_bundle(half).files
    again = assemble_bundle(tmp_path / "again", **{**half_files, "generator": info.files["generator"]},
                            text_cfg=TEXT_CFG, name="again", trained_on="test", fp16=True)
    for name in ("semantic_av.safetensors", "sync_av.safetensors", "vae.safetensors"):
        ids = checkpoint_identities(again / name)
        assert file_sha256(half / name) in ids          # what a generator trained on the half bundle recorded
        assert file_sha256(bundle / name) in ids        # what the fp32-trained generator recorded
    FoleyPipeline.from_bundle(again, precision="fp32")  # the producer check passes


def test_windows_cover_the_video_and_crossfade_keeps_power():
    assert generation_windows(1.5, 2.0) == [generation_windows(1.5, 2.0)[0]]
    assert generation_windows(0.3, 2.0)[0].duration_s == 1.0       # at least 1 s, cut afterwards
    ws = generation_windows(5.0, 2.0, 0.5)
    assert ws[0].start_s == 0 and abs(ws[-1].start_s + ws[-1].duration_s - 5.0) < 1e-9
    assert all(b.start_s <= a.start_s + a.duration_s - 0.5 + 1e-9 for a, b in zip(ws, ws[1:]))
    # equal power: two uncorrelated unit-power noises keep unit power through the fade
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1, 3000)).astype(np.float32), rng.standard_normal((1, 3000)).astype(np.float32)
    out = crossfade_join([(0, a), (2000, b)], 5000, 800)
    assert np.allclose(out[:, :2100], a[:, :2100]) and np.allclose(out[:, 2900:], b[:, 900:])
    fade = out[0, 2100:2900]
    assert abs(np.mean(fade ** 2) - 1.0) < 0.15
    ones = crossfade_join([(0, np.ones((1, 10), np.float32)), (5, np.ones((1, 10), np.float32))], 15, 4)
    gains = ones[0, 5:10]
    assert gains.max() <= np.sqrt(2) + 1e-6 and gains.min() >= 1 - 1e-6   # cos + sin of a quarter period


def test_long_video_spans_whole_video_to_the_sample(pipe, videos):
    r = pipe.generate(videos["long"], steps=2, seed=3)
    d = video_duration(videos["long"])
    assert len(r.windows) >= 3
    assert r.audio.shape == (2, round(d * pipe.sample_rate)) and r.audio.dtype == np.float32
    assert np.isfinite(r.audio).all() and np.abs(r.audio).max() <= 1.0 and np.abs(r.audio).max() > 0
    # the output at the end comes from the last window, not from silence padding
    assert np.abs(r.audio[:, -1000:]).max() > 0


def test_same_seed_same_audio_other_seed_differs(pipe, videos, tmp_path):
    a = pipe.generate(videos["short"], steps=2, seed=7)
    b = pipe.generate(videos["short"], steps=2, seed=7)
    c = pipe.generate(videos["short"], steps=2, seed=8)
    media.write_audio(tmp_path / "a.wav", a.audio, a.sample_rate)
    media.write_audio(tmp_path / "b.wav", b.audio, b.sample_rate)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert not np.array_equal(a.audio, c.audio)


def test_precision_follows_the_hardware(bundle, text_encoder):
    from foleyflow.pipeline import bf16_supported

    auto = FoleyPipeline.from_bundle(bundle, text_encoder=text_encoder)
    assert auto.precision == ("bf16" if bf16_supported(torch.device("cpu")) else "fp32")
    fp32 = FoleyPipeline.from_bundle(bundle, text_encoder=text_encoder, precision="fp32")
    assert fp32.precision == "fp32" and next(fp32._sampling_net.parameters()).dtype == torch.float32


@pytest.mark.parametrize("machine,avx512_bf16,amx,onednn,expected", [
    ("x86_64", False, False, True, False),   # AVX-512 without bf16 units: oneDNN emulates, 4x slower than fp32
    ("x86_64", True, False, True, True),     # Cooper Lake / Zen 4
    ("x86_64", False, True, True, True),     # Sapphire Rapids (AMX)
    ("x86_64", False, False, False, False),  # AVX2 only
    ("aarch64", False, False, True, True),   # elsewhere oneDNN decides
    ("aarch64", False, False, False, False),
])
def test_bf16_only_on_native_units(monkeypatch, machine, avx512_bf16, amx, onednn, expected):
    import platform

    from foleyflow.pipeline import bf16_supported

    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn, raising=False)
    assert bf16_supported(torch.device("cpu")) is expected


def test_text_only_prompt_cot_negative_resample_and_loudness(pipe):
    r = pipe.generate(None, duration_s=2.5, prompt="a ball bounces on a wooden floor", negative="speech",
                      steps=2, sample_rate=44100, loudness_lufs=-20.0)
    assert r.sample_rate == 44100 and r.audio.shape == (2, round(2.5 * 44100))
    import pyloudnorm
    assert any(n.startswith("loudness") and "-> -20.0 LUFS" in n for n in r.notes), r.notes
    if not any("clipping" in n for n in r.notes):
        assert abs(pyloudnorm.Meter(44100).integrated_loudness(r.audio.T.astype(np.float64)) + 20.0) < 0.5
    cot = "Semantic: a marimba.\nTemporal: struck at 0.50 s.\nAesthetic: dry.\nSpatial: left."
    p = pipe.generate(None, duration_s=1.0, prompt="a marimba", steps=2, seed=1)
    c = pipe.generate(None, duration_s=1.0, cot=cot, steps=2, seed=1)
    e = pipe.generate(None, duration_s=1.0, steps=2, seed=1)
    assert not np.array_equal(p.audio, c.audio) and not np.array_equal(c.audio, e.audio)
    with pytest.raises(Exception, match="prompt or a chain of thought"):
        pipe.generate(None, duration_s=1.0, prompt="x", cot=cot)


def test_pipeline_refuses_models_that_do_not_fit(bundle, text_encoder, tmp_path):
    from foleyflow.errors import CheckpointError

    other = tiny_bundle(tmp_path / "other", text_encoder, seed=1)
    # swap in the semantic encoder of another bundle: the generator's recorded producer no longer matches
    (other / "semantic_av.safetensors").write_bytes((bundle / "semantic_av.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="another semantic encoder"):
        FoleyPipeline.from_bundle(other, text_encoder=text_encoder)
    (other / "bundle.json").write_text("{}")
    with pytest.raises(CheckpointError, match="format"):
        FoleyPipeline.from_bundle(other, text_encoder=text_encoder)


# ------------------------------------------------------------------------------------------------ the CLI
def cli(capsys, *args) -> tuple[int, str, str]:
    """`foleyflow ARGS` in this process (MiniLM loads once per process); returns (exit code, stdout, stderr)."""
    from foleyflow.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_video_in_video_and_wav_out_replacing_the_soundtrack(run_cli, bundle, videos, tmp_path):
    out = tmp_path / "out.mp4"
    r = run_cli("generate", videos["short"], "-o", out, "--bundle", bundle, "--steps", "2", "--seed", "1",
                "--threads", "1")
    assert r.code == 0, r.err
    assert "UNTRAINED" in r.err and "untrained" in r.out.lower()
    assert "replaced the video's original soundtrack" in r.out
    d = video_duration(videos["short"])
    wav, sr = sf.read(out.with_suffix(".wav"), dtype="float32", always_2d=True)
    assert sr == 16000 and wav.shape == (round(d * sr), 2)
    info = media.probe(out)
    assert info.audio.channels == 2 and abs(info.audio.num_samples - round(d * sr)) <= 1024
    assert info.video.frame_count == media.probe(videos["short"]).video.frame_count


def test_cli_text_only_with_cot_file_writes_wav(capsys, bundle, text_encoder, tmp_path):
    cot = tmp_path / "scene.cot.txt"
    cot.write_text("# a FoleyWorld-style chain of thought\nSemantic: a wooden ball that falls. Temporal: the "
                   "ball hits at 0.40 s. Aesthetic: dry, close. Spatial: centre.\n")
    out = tmp_path / "t2a.wav"
    code, stdout, err = cli(capsys, "generate", "--cot", cot, "--duration", "1.7", "-o", out, "--bundle", bundle,
                            "--steps", "2", "--sample-rate", "22050")
    assert code == 0, err
    assert f"wrote {out}" in stdout
    wav, sr = sf.read(out, dtype="float32", always_2d=True)
    assert sr == 22050 and wav.shape == (round(1.7 * 22050), 2)


def test_cli_video_without_audio_and_other_frame_rate(run_cli, bundle, videos, tmp_path):
    out = tmp_path / "silent_in.mp4"
    r = run_cli("generate", videos["silent"], "-o", out, "--bundle", bundle, "--steps", "1", "--threads", "1")
    assert r.code == 0, r.err
    assert "replaced" not in r.out
    d = video_duration(videos["silent"])
    assert sf.info(str(out.with_suffix(".wav"))).frames == round(d * 16000)
    assert media.probe(out).audio is not None


@pytest.mark.parametrize("case", ["missing_video", "bad_cot", "empty_cot", "steps", "cfg", "duration", "no_duration",
                                  "duration_with_video", "wrong_bundle", "no_bundle", "out_folder_missing",
                                  "out_is_folder", "not_a_video", "cuda", "sample_rate", "loudness"])
def test_cli_bad_inputs_give_one_line_errors(capsys, bundle, videos, tmp_path, case):
    bad_cot = tmp_path / "bad.txt"
    bad_cot.write_text("just some words without any part label\n")
    empty_cot = tmp_path / "empty.txt"
    empty_cot.write_text("# only a comment\n")
    not_video = tmp_path / "notes.txt"
    not_video.write_text("hello\n")
    (tmp_path / "nobundle").mkdir()
    v, b, o = str(videos["short"]), str(bundle), str(tmp_path / "o.mp4")
    args, expect = {
        "missing_video": (["generate", str(tmp_path / "nope.mp4"), "--bundle", b], "nope.mp4"),
        "bad_cot": (["generate", v, "--cot", str(bad_cot), "--bundle", b, "-o", o], "chain of thought"),
        "empty_cot": (["generate", v, "--cot", str(empty_cot), "--bundle", b, "-o", o], "empty"),
        "steps": (["generate", v, "--steps", "0", "--bundle", b, "-o", o], "steps"),
        "cfg": (["generate", v, "--cfg", "1e9", "--bundle", b, "-o", o], "cfg"),
        "duration": (["generate", "--duration", "-3", "--bundle", b], "duration"),
        "no_duration": (["generate", "--prompt", "rain", "--bundle", b], "--duration"),
        "duration_with_video": (["generate", v, "--duration", "2", "--bundle", b, "-o", o], "text-only"),
        "wrong_bundle": (["generate", v, "--bundle", str(tmp_path / "nobundle"), "-o", o], "not a foleyflow bundle"),
        "no_bundle": (["generate", v, "--bundle", str(tmp_path / "missing"), "-o", o], "bundle folder not found"),
        "out_folder_missing": (["generate", v, "--bundle", b, "-o", str(tmp_path / "no" / "x.mp4")],
                               "does not exist"),
        "out_is_folder": (["generate", "--duration", "1", "--bundle", b, "-o", str(tmp_path)], "folder"),
        "not_a_video": (["generate", str(not_video), "--bundle", b, "-o", o], "notes.txt"),
        "cuda": (["generate", v, "--device", "cuda", "--bundle", b, "-o", o], "CUDA"),
        "sample_rate": (["generate", v, "--sample-rate", "12345", "--bundle", b, "-o", o], "AAC"),
        "loudness": (["generate", v, "--loudness", "20", "--bundle", b, "-o", o], "loudness"),
    }[case]
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = cli(capsys, *args)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], err
    assert not (tmp_path / "o.mp4").exists()


def test_cli_error_in_a_real_process(run_cli, tmp_path):
    r = run_cli("generate", tmp_path / "missing.mp4", "--steps", "3")
    assert r.code == 2 and r.err.strip().count("\n") == 0 and r.err.startswith("error:") and "missing.mp4" in r.err


# ------------------------------------------------------------------------------------------------ real clips
def test_real_clips_output_lasts_as_long_as_the_video(shared_media, pipe, tmp_path):
    for name in ("bigbuckbunny.mp4", "carphone_pristine.mp4"):
        src = shared_media / name
        d = video_duration(src)
        r = pipe.generate(src, steps=1, seed=0)
        assert r.audio.shape == (2, round(d * 16000)), name          # the wav: to the sample
        media.write_audio(tmp_path / f"{name}.wav", r.audio, r.sample_rate)
        assert sf.info(str(tmp_path / f"{name}.wav")).frames == round(d * 16000)
        mux = media.mux_audio(src, r.audio, r.sample_rate, tmp_path / name)
        assert mux.replaced_audio == (name == "bigbuckbunny.mp4")
        decoded = media.decode_audio(tmp_path / name, 16000, channels=2).samples
        assert abs(decoded.shape[1] - round(d * 16000)) <= 1024, name  # the mp4: within one AAC frame


def test_loudness_normalisation_of_quiet_and_silent_audio():
    """Audio far below BS.1770's -70 LUFS gate (an untrained model's) is still normalised; zeros are reported silent."""
    import pyloudnorm

    from foleyflow.pipeline import postprocess

    t = np.arange(2 * 16000) / 16000
    quiet = (1e-5 * np.sin(2 * np.pi * 440 * t))[None].repeat(2, 0).astype(np.float32)
    out, sr, notes = postprocess(quiet, 16000, 2.0, None, -23.0)
    assert abs(pyloudnorm.Meter(sr).integrated_loudness(out.T.astype(np.float64)) + 23.0) < 0.1, notes
    out, _, notes = postprocess(np.zeros((2, 32000), np.float32), 16000, 2.0, None, -23.0)
    assert "silent" in notes[0] and not out.any()


def test_generate_set_writes_one_wav_per_clip_resumes_and_checks_rows(capsys, bundle, videos, tmp_path):
    import json

    from foleyflow.commands.generate_set import clip_seed

    rows = [{"id": "a", "video": str(videos["short"]), "caption": "a ball", "split": "test"},
            {"id": "b", "video": str(videos["short"]), "split": "test"},
            {"id": "c", "video": str(videos["short"]), "caption": "x", "split": "val"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "gen"
    base = ["generate-set", manifest, "--out", out, "--bundle", bundle, "--steps", "2", "--split", "test"]
    code, stdout, err = cli(capsys, *base)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.wav")) == ["a.wav", "b.wav"]
    a, sr = sf.read(out / "a.wav", dtype="float32", always_2d=True)
    assert sr == 16000 and a.shape == (round(video_duration(videos["short"]) * sr), 2)
    assert not np.array_equal(a, sf.read(out / "b.wav", dtype="float32", always_2d=True)[0])  # own seed per clip
    assert clip_seed(0, "a") == clip_seed(0, "a") != clip_seed(1, "a")
    code, stdout, _ = cli(capsys, *base)                        # resumable: nothing left to do
    assert code == 0 and "wrote 0 clips" in stdout and "2 already there" in stdout
    code, _, err = cli(capsys, *base, "--text", "caption")     # row b has no caption
    assert code != 0 and "have no caption" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, "generate-set", manifest, "--out", tmp_path / "file" / "sub", "--bundle", bundle)
    assert code != 0 and "cannot create the output folder" in err and len(err.strip().splitlines()) == 1


def test_generate_set_text_to_audio_mode_never_reads_the_video(capsys, bundle, videos, tmp_path, monkeypatch):
    """--no-video (T2A): each clip is generated from its text alone, for its video's duration."""
    import json

    from foleyflow.pipeline import FoleyPipeline

    rows = [{"id": "a", "video": str(videos["short"]), "caption": "a ball", "split": "test"}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = []
    real = FoleyPipeline.generate

    def spy(self, video=None, **kw):
        seen.append((video, kw.get("prompt"), kw.get("duration_s")))
        return real(self, video, **kw)

    monkeypatch.setattr(FoleyPipeline, "generate", spy)
    out = tmp_path / "t2a"
    base = ["generate-set", manifest, "--out", out, "--bundle", bundle, "--steps", "2", "--no-video"]
    code, _, err = cli(capsys, *base)
    assert code != 0 and "give --text caption or --text cot" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, *base, "--text", "caption")
    assert code == 0, err
    assert seen == [(None, "a ball", pytest.approx(video_duration(videos["short"]), abs=1e-3))]
    a, sr = sf.read(out / "a.wav", dtype="float32", always_2d=True)
    assert a.shape == (round(video_duration(videos["short"]) * sr), 2)
    code, stdout, _ = cli(capsys, *base, "--text", "caption")       # resumable like any set
    assert code == 0 and "wrote 0 clips" in stdout


def test_cli_warns_that_a_text_ablated_bundle_ignores_the_prompt(capsys, text_encoder, tmp_path):
    from foleyflow.bundle import build_untrained_bundle

    b = build_untrained_bundle(tmp_path / "b", seed=0, window_s=WINDOW_S,
                               generator_overrides={**TINY_GEN, "use_text": False},
                               semantic_cfg=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
                               sync_cfg=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16),
                               text_cfg=TEXT_CFG, text_encoder=text_encoder, name="test-notext")
    base = ["generate", "--duration", "1.7", "--bundle", b, "--steps", "1", "--threads", "1"]
    code, _, err = cli(capsys, *base, "--prompt", "a ball bounces", "-o", tmp_path / "a.wav")
    assert code == 0, err
    assert "trained without text" in err
    code, _, err = cli(capsys, *base, "--negative", "hum", "-o", tmp_path / "b.wav")
    assert code == 0 and "trained without text" in err
    code, _, err = cli(capsys, *base, "-o", tmp_path / "c.wav")
    assert code == 0 and "trained without text" not in err
