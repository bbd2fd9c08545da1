"""FoleyPipeline's public stages and GenerationOptions: resolution and validation, progress and cancel, samplers and
guidance modes, concurrent calls, the mel representation. Tiny fp32 bundle built in code (tests/golden_pipeline)."""
from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import torch

import golden_pipeline as gp
from foleyflow.errors import CheckpointError, FoleyError
from foleyflow.flow.samplers import euler
from foleyflow.options import DEFAULTS, GenerationOptions, resolve_options
from foleyflow.pipeline import Cancelled, FoleyPipeline, latents_of


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)


@pytest.fixture(scope="module")
def enc():
    from foleyflow.models.text_encoder import load_text_encoder
    return load_text_encoder(gp.text_cfg())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, enc):
    return gp.build_bundle(tmp_path_factory.mktemp("stages") / "b", enc)


@pytest.fixture(scope="module")
def pipe(bundle, enc):
    return gp.load_pipeline(bundle, enc)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return gp.make_videos(tmp_path_factory.mktemp("videos"))


def _edit_defaults(src, dst, defaults=None, **index):
    shutil.copytree(src, dst)
    data = json.loads((dst / "bundle.json").read_text())
    if defaults is not None:
        data["defaults"] = defaults
    data.update(index)
    data = {k: v for k, v in data.items() if v is not None}
    (dst / "bundle.json").write_text(json.dumps(data))
    return dst


# ------------------------------------------------------------------------------------------------ options
def test_options_resolve_call_over_bundle_over_library(bundle, enc, tmp_path):
    b = _edit_defaults(bundle, tmp_path / "b", {"steps": 7, "cfg": 2, "sampler": "heun"})   # old name "cfg"
    p = FoleyPipeline.from_bundle(b, precision="fp32", text_encoder=enc)
    o = p.options()
    assert (o.steps, o.cfg_scale, o.sampler, o.guidance, o.seed) == (7, 2.0, "heun", DEFAULTS.guidance, 0)
    o = p.options(steps=3, cfg=1.5, seed=None)                    # the call wins; None = not given
    assert (o.steps, o.cfg_scale, o.sampler) == (3, 1.5, "heun")
    assert p.options(GenerationOptions(steps=2), seed=5) == GenerationOptions(steps=2, seed=5)
    assert resolve_options({}, {}) == DEFAULTS and DEFAULTS.steps == 25 and DEFAULTS.cfg_scale == 4.5
    r = p.generate(duration_s=0.5, steps=1)
    assert r.options == p.options(steps=1) and r.options.as_record()["steps"] == 1


@pytest.mark.parametrize("defaults, match", [({"stepz": 3}, "unknown generation option 'stepz'"),
                                             ({"steps": "ten"}, "steps must be an integer"),
                                             ({"cfg_scale": True}, "cfg_scale must be a finite number"),
                                             ({"sampler": "rk4"}, "unknown sampler 'rk4'"),
                                             ({"cfg": 2, "cfg_scale": 3}, "given twice"),
                                             ([1, 2], "must be a mapping")])
def test_bad_bundle_defaults_are_one_line_errors(bundle, enc, tmp_path, defaults, match):
    b = _edit_defaults(bundle, tmp_path / "b", defaults)
    with pytest.raises(CheckpointError, match=match) as e:
        FoleyPipeline.from_bundle(b, precision="fp32", text_encoder=enc)
    assert "\n" not in str(e.value) and "defaults" in str(e.value)


@pytest.mark.parametrize("kw, match", [({"steps": 0}, "steps must be between"), ({"steps": 2.5}, "integer"),
                                       ({"cfg_scale": float("nan")}, "finite"), ({"guidance": "pag"}, "guidance"),
                                       ({"overlap_s": -1}, "overlap"), ({"sample_rate": 100}, "sample rate"),
                                       ({"loudness_lufs": 3}, "loudness"), ({"colour": 1}, "unknown generation")])
def test_bad_options_are_one_line_errors(pipe, kw, match):
    with pytest.raises(FoleyError, match=match):
        GenerationOptions(**kw) if "colour" not in kw else None
        pipe.generate(duration_s=0.5, **kw)


# ------------------------------------------------------------------------------------------------ stages
def test_stages_compose_to_generate(pipe):
    opts = pipe.options(steps=2, seed=4, cfg_scale=2.0)
    r = pipe.generate(duration_s=0.7, options=opts, prompt="a bell")
    c = pipe.conditions(None, duration_s=0.7, prompt="a bell")
    audio = pipe.decode(pipe.sample(c, opts))                   # generator from opts.seed
    assert audio.shape == (1, 2, 32 * 512) and not r.notes      # 32 latents of a 1 s window, cut to 0.7 s
    assert np.allclose(audio[0, :, :r.audio.shape[1]].numpy(), r.audio, atol=1e-6)


def test_progress_per_step_over_windows_and_cancel_between_steps(pipe, videos):
    seen = []
    r = pipe.generate(videos["two"], steps=3, overlap_s=0.5, progress=lambda d, t: seen.append((d, t)))
    assert len(r.windows) == 2 and seen == [(k, 6) for k in range(1, 7)]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2                  # before the first step, after step 1: go on; after step 2: stop
    with pytest.raises(Cancelled, match="cancelled"):
        pipe.generate(duration_s=0.5, steps=5, cancel=cancel)
    assert len(calls) == 3


def test_a_sampler_passed_in_may_return_its_trajectory(pipe):
    opts = pipe.options(steps=3, seed=2)

    def recording_euler(fn, x, ts, *, generator=None, callback=None):
        traj = [x]

        def cb(i, xi):
            traj.append(xi)
            if callback:
                callback(i, xi)
        return euler(fn, x, ts, generator=generator, callback=cb), torch.stack(traj, 1)

    c = pipe.conditions(None, duration_s=1.0)
    out = pipe.sample(c, opts, sampler=recording_euler)
    x1, traj = out
    assert traj.shape[1] == 4 and torch.equal(traj[:, -1], x1)
    assert torch.equal(latents_of(out), pipe.sample(c, opts))
    a = pipe.generate(duration_s=1.0, options=opts, sampler=recording_euler)
    assert np.array_equal(a.audio, pipe.generate(duration_s=1.0, options=opts).audio)


def test_samplers_and_guidance_modes_are_options(pipe):
    c = pipe.conditions(None, duration_s=0.5, prompt="a bell")

    def latents(**kw):
        return pipe.sample(c, pipe.options(steps=2, **kw))
    base = latents()
    heun, mid = latents(sampler="heun"), latents(sampler="midpoint")
    assert not torch.allclose(base, heun, atol=1e-3) and not torch.allclose(heun, mid, atol=1e-3)
    # APG keeping the whole parallel component (eta 1, no threshold) is plain CFG; eta 0 is not (the untrained
    # model's guidance difference is small, so compare the sizes of the differences)
    d1 = float((latents(guidance="apg", apg_eta=1.0) - base).abs().max())
    d0 = float((latents(guidance="apg") - base).abs().max())
    assert d1 < 1e-5 and d0 > 1e-5 and d0 > 20 * d1
    # multi-condition guidance with no extra text/video weight is CFG of the joint scale; with weights it is not
    assert torch.allclose(latents(guidance="multi"), base, atol=1e-5)
    d = float((latents(guidance="multi", text_scale=2.0, video_scale=1.0) - base).abs().max())
    assert d > 1e-5
    # the adaptive sampler reaches what fine Euler steps reach; progress still runs over the requested steps
    seen = []
    ode = pipe.sample(c, pipe.options(steps=4, sampler="dopri5"), progress=lambda i, n: seen.append((i, n)))
    fine = pipe.sample(c, pipe.options(steps=200))
    assert seen == [(k, 4) for k in range(1, 5)] and float((ode - fine).abs().max()) < 2e-2
    assert float((ode - fine).abs().max()) < float((latents() - fine).abs().max())
    # through generate too (names as options)
    r = pipe.generate(duration_s=0.5, steps=2, sampler="heun", guidance="apg")
    assert (r.options.sampler, r.options.guidance) == ("heun", "apg")


def test_concurrent_calls_with_different_durations_match_sequential_ones(pipe, videos):
    """Generation changes no model state: threads sharing one pipeline get what sequential calls get."""
    jobs = [dict(duration_s=0.7, seed=1, steps=2), dict(duration_s=1.4, seed=2, steps=2, prompt="rain"),
            dict(video=videos["one"], seed=3, steps=2), dict(video=videos["two"], seed=4, steps=2, overlap_s=0.5)]
    sequential = [pipe.generate(**j).audio for j in jobs]
    got: dict[int, np.ndarray] = {}
    errors = []

    def run(k):
        try:
            for _ in range(2):
                got[k] = pipe.generate(**jobs[k]).audio
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, want in enumerate(sequential):
        assert np.array_equal(got[k], want), k
    assert pipe.generator.latent_len == pipe.generator.cfg.seq_lengths(gp.WINDOW_S)[0]


# ------------------------------------------------------------------------------------------------ representation
def test_mel_representation_bundle_generates_audio_of_the_right_length(enc, tmp_path):
    from foleyflow.bundle import build_untrained_bundle, read_bundle
    from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig

    b = build_untrained_bundle(tmp_path / "mel", seed=0, window_s=1.5, generator_overrides=gp.TINY_GEN,
                               semantic_cfg=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
                               sync_cfg=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16),
                               text_cfg=gp.text_cfg(), text_encoder=enc, representation="mel")
    assert read_bundle(b).representation == "mel" and "mel-frame codec" in read_bundle(b).card
    p = FoleyPipeline.from_bundle(b, precision="fp32", text_encoder=enc)
    assert p.representation == "mel" and p.generator.cfg.latent_channels == 2 * 80 * 2
    r = p.generate(duration_s=1.3, steps=2, prompt="a knock")
    assert r.audio.shape == (2, round(1.3 * 16000)) and np.isfinite(r.audio).all() and np.abs(r.audio).max() > 0
    with pytest.raises(CheckpointError, match="representation 'vae'.*'mel' codec"):
        FoleyPipeline.from_bundle(_edit_defaults(b, tmp_path / "wrong", representation="vae"), text_encoder=enc)


def test_representation_is_recorded_checked_and_defaults_to_vae(bundle, enc, tmp_path):
    from foleyflow.bundle import read_bundle

    assert json.loads((bundle / "bundle.json").read_text())["representation"] == "vae"
    old = _edit_defaults(bundle, tmp_path / "old", representation=None)           # bundles before the field
    assert "representation" not in json.loads((old / "bundle.json").read_text())
    assert read_bundle(old).representation == "vae"
    assert FoleyPipeline.from_bundle(old, precision="fp32", text_encoder=enc).representation == "vae"
    with pytest.raises(CheckpointError, match="'mel'.*'vae' codec"):
        FoleyPipeline.from_bundle(_edit_defaults(bundle, tmp_path / "m", representation="mel"), text_encoder=enc)
    with pytest.raises(CheckpointError, match="representation 'wav'"):
        read_bundle(_edit_defaults(bundle, tmp_path / "w", representation="wav"))


# ------------------------------------------------------------------------------------------------ CLI
def cli(capsys, *args):
    from foleyflow.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_sampler_and_guidance_options(capsys, bundle, tmp_path):
    import soundfile as sf

    code, out, err = cli(capsys, "generate", "--duration", "0.5", "--bundle", bundle, "--steps", "2", "--sampler",
                         "heun", "--guidance", "apg", "--apg-eta", "0.5", "--cfg", "3", "-o", tmp_path / "a.wav")
    assert code == 0, err
    assert "2 heun steps, apg 3, seed 0" in out and sf.info(str(tmp_path / "a.wav")).frames == 8000
    for bad, match in ((["--steps", "0"], "steps must be between"), (["--apg-eta", "2"], "apg_eta"),
                       (["--overlap", "20"], "overlap")):
        code, _, err = cli(capsys, "generate", "--duration", "0.5", "--bundle", bundle, *bad, "-o", tmp_path / "b.wav")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and match in lines[0], err


def test_generate_set_records_the_resolved_options(capsys, bundle, videos, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "video": str(videos["one"])}) + "\n")
    code, _, err = cli(capsys, "generate-set", manifest, "--out", tmp_path / "gen", "--bundle", bundle,
                       "--sampler", "midpoint", "--steps", "1")
    assert code == 0, err
    settings = json.loads((tmp_path / "gen" / "generate_set.json").read_text())["settings"]
    assert settings["steps"] == 1 and settings["cfg_scale"] == DEFAULTS.cfg_scale == settings["cfg"]
    assert settings["sampler"] == "midpoint" and settings["seed"] == 0 and settings["overlap_s"] == DEFAULTS.overlap_s
