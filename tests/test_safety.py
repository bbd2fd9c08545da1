"""Data safety (issue 16, findings 1-3): atomic outputs that survive SIGINT/SIGTERM at every stage of `generate`,
outputs checked against inputs and against files foleyflow did not write, and non-finite audio refused where made.
A tiny untrained bundle (window 2 s) and short videos are made by the test."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from foleyflow.fileio import atomic_write, atomic_write_text, is_temp_name, safe_component, temp_path
from test_pipeline import TEXT_CFG, make_video, tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from foleyflow.models.text_encoder import load_text_encoder

    torch.set_num_threads(1)
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", load_text_encoder(TEXT_CFG))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", 1.5, fps=25, audio=True)


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if is_temp_name(p.name) or "partial" in p.name]


def spawn(*args, env=None, cwd=None) -> subprocess.Popen:
    e = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **(env or {}))
    e.pop("FOLEYFLOW_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "foleyflow", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e, cwd=cwd)


def run(*args, env=None, cwd=None, timeout=300):
    p = spawn(*args, env=env, cwd=cwd)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


# ------------------------------------------------------------------------------------------------ atomic_write
def test_atomic_write_keeps_the_previous_file_on_any_exception(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")
    for exc in (ValueError, KeyboardInterrupt, SystemExit):
        with pytest.raises(exc):
            with atomic_write(target) as tmp:
                tmp.write_text("half")
                raise exc()
        assert target.read_text() == "old" and temporaries(tmp_path) == []
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and temporaries(tmp_path) == []


def test_temporaries_are_unique_per_call_and_keep_the_suffix(tmp_path):
    names = {temp_path(tmp_path / "a.wav") for _ in range(100)}
    assert len(names) == 100 and all(n.suffix == ".wav" and is_temp_name(n.name) for n in names)
    assert str(os.getpid()) in next(iter(names)).name
    assert temp_path(tmp_path / "\udcff.wav").name.isascii()  # writers that need UTF-8 names can open it


def test_two_writers_of_one_output_both_succeed(tmp_path):
    """Finding 1: two runs writing the same output shared one temporary name and one failed."""
    from foleyflow.media import write_audio

    target, errors = tmp_path / "same.wav", []

    def write(k):
        try:
            for _ in range(5):
                write_audio(target, np.full((2, 40000), 0.1 * k, np.float32), 16000)
        except Exception as e:  # pragma: no cover - the failure this test catches
            errors.append(e)

    threads = [threading.Thread(target=write, args=(k,)) for k in (1, 2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    data, _ = sf.read(target)
    assert data.shape == (40000, 2) and np.allclose(data, data[0, 0]) and temporaries(tmp_path) == []


def test_mux_leaves_no_partial_file_on_failure(tmp_path, clip):
    from foleyflow.errors import MediaError
    from foleyflow.media import mux_audio

    out = tmp_path / "o.mp4"
    out.write_bytes(b"previous")
    bad = np.zeros((2, 16000), np.float32)
    bad[0, 5] = np.nan
    with pytest.raises(MediaError, match="NaN"):
        mux_audio(clip, bad, 16000, out)
    assert out.read_bytes() == b"previous" and temporaries(tmp_path) == []


# ------------------------------------------------------------------------------------------------ signals
@pytest.mark.parametrize("stage", ["sampling", "audio_write", "mux"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_at_each_stage_keeps_the_previous_result(bundle, clip, tmp_path, stage, sig):
    """Acceptance: SIGINT or SIGTERM while generate samples, writes the wav or muxes leaves the previous result
    (byte for byte) and no temporary file. Before the fix the wav was written in place (an 88-byte, 0-frame file
    after an interrupt) and SIGTERM during mux left `.NAME.partial.mp4`."""
    out = tmp_path / "take.mp4"
    args = ("generate", clip, "-o", out, "--bundle", bundle, "--steps", "2", "--threads", "1")
    code, _, err = run(*args)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in (out, out.with_suffix(".wav"))}
    p = spawn(*args, "--seed", "7", env={"FOLEYFLOW_PAUSE_AT": stage, "FOLEYFLOW_PAUSE_S": "60"})
    line, t_end = "", time.monotonic() + 120
    while "paused at" not in line and time.monotonic() < t_end:
        line = p.stderr.readline()
        if not line and p.poll() is not None:
            break
    assert "paused at " + stage in line, p.communicate()[1]
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == (130 if sig == signal.SIGINT else 143), err
    assert err.strip().splitlines()[-1] in ("error: interrupted", "error: terminated")
    assert "Traceback" not in err
    assert temporaries(tmp_path) == []
    after = {p.name: p.read_bytes() for p in (out, out.with_suffix(".wav"))}
    if stage != "mux":
        assert after == before
    else:  # the wav is complete (new), the video is the previous one
        assert after["take.mp4"] == before["take.mp4"]
        assert sf.info(str(out.with_suffix(".wav"))).frames == sf.info(str(tmp_path / "take.wav")).frames > 0


# ------------------------------------------------------------------------------------------------ outputs vs inputs
def test_side_wav_that_is_the_input_is_refused_before_any_work(bundle, clip, tmp_path, run_cli):
    """Finding 2: `cp clip.mp4 clip.wav; generate clip.wav -o clip.mp4` overwrote its input before failing."""
    src = tmp_path / "clip.wav"
    src.write_bytes(clip.read_bytes())
    r = run_cli("generate", src, "-o", tmp_path / "clip.mp4", "--bundle", bundle, "--steps", "1")
    assert r.code == 2 and "is also an input" in r.err and len(r.err.strip().splitlines()) == 1
    assert src.read_bytes() == clip.read_bytes() and not (tmp_path / "clip.mp4").exists()


def test_existing_files_not_written_by_foleyflow_are_refused_unless_overwrite(bundle, clip, tmp_path, run_cli):
    """Finding 2: `generate take.mp4 -o take.mkv` silently replaced an existing take.wav."""
    mine = tmp_path / "take.wav"
    sf.write(mine, np.zeros((100, 2), np.float32), 16000)
    keep = mine.read_bytes()
    args = ("generate", clip, "-o", tmp_path / "take.mkv", "--bundle", bundle, "--steps", "1", "--threads", "1")
    r = run_cli(*args)
    assert r.code == 2 and "take.wav exists and was not written by foleyflow" in r.err
    assert mine.read_bytes() == keep and not (tmp_path / "take.mkv").exists()
    r = run_cli(*args, "--overwrite")
    assert r.code == 0, r.err
    # foleyflow's own outputs are recorded inside them: re-running the same command replaces them
    from foleyflow.outputs import is_own_output

    assert is_own_output(mine) and is_own_output(tmp_path / "take.mkv")
    r = run_cli(*args, "--seed", "3")
    assert r.code == 0, r.err


def test_mux_refuses_its_input_and_unnamed_files(clip, tmp_path, run_cli):
    wav = tmp_path / "s.wav"
    sf.write(wav, np.zeros((16000, 2), np.float32), 16000)
    r = run_cli("mux", clip, wav, "-o", wav.with_suffix(".wav"))
    assert r.code == 2 and "also an input" in r.err
    other = tmp_path / "other.mp4"
    other.write_bytes(b"user data")
    r = run_cli("mux", clip, wav, "-o", other)
    assert r.code == 2 and "not written by foleyflow" in r.err and other.read_bytes() == b"user data"
    assert run_cli("mux", clip, wav, "-o", other, "--overwrite").code == 0
    assert run_cli("mux", clip, wav, "-o", other).code == 0  # now it is foleyflow's own


# ------------------------------------------------------------------------------------------------ non-finite audio
def nan_bundle(bundle: Path, folder: Path) -> Path:
    import shutil

    from foleyflow.checkpoint import load_checkpoint
    from safetensors.torch import save_file

    shutil.copytree(bundle, folder)
    tensors, meta = load_checkpoint(folder / "generator.safetensors")
    tensors = {k: torch.full_like(v, float("nan")) if v.is_floating_point() and "latent" not in k else v
               for k, v in tensors.items()}
    save_file(tensors, str(folder / "generator.safetensors"), metadata=meta)
    return folder


def test_nan_weights_are_an_error_at_sampling_naming_the_file(bundle, clip, tmp_path, run_cli):
    """Finding 3: a bundle with NaN weights wrote a 100% NaN wav, then failed with 'Invalid argument'."""
    bad = nan_bundle(bundle, tmp_path / "nan")
    r = run_cli("generate", clip, "-o", tmp_path / "o.mp4", "--bundle", bad, "--steps", "1", "--threads", "1")
    last = r.err.strip().splitlines()[-1]  # (after the UNTRAINED warning)
    assert r.code == 2 and "Traceback" not in r.err, r.err
    assert last.startswith("error: sampling produced NaN") and str(clip) in last
    assert not (tmp_path / "o.wav").exists() and not (tmp_path / "o.mp4").exists()


def test_mux_and_write_audio_name_the_file_with_nans(clip, tmp_path, run_cli):
    from foleyflow.errors import MediaError
    from foleyflow.media import write_audio

    wav = tmp_path / "nan.wav"
    data = np.zeros((16000, 2), np.float32)
    data[100] = np.nan
    sf.write(wav, data, 16000, subtype="FLOAT")
    r = run_cli("mux", clip, wav, "-o", tmp_path / "o.mp4")
    assert r.code == 2 and "nan.wav" in r.err and "NaN" in r.err and "Invalid argument" not in r.err
    with pytest.raises(MediaError, match="x.wav.*NaN"):
        write_audio(tmp_path / "x.wav", data.T, 16000)
    assert not (tmp_path / "x.wav").exists()


def test_evaluate_names_the_file_with_nans(tmp_path, run_cli):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir(), ref.mkdir()
    data = np.full((16000, 2), 0.1, np.float32)
    for i in range(3):
        sf.write(ref / f"c{i}.wav", data, 16000, subtype="FLOAT")
        sf.write(gen / f"c{i}.wav", data, 16000, subtype="FLOAT")
    data[10, 1] = np.nan
    sf.write(gen / "c1.wav", data, 16000, subtype="FLOAT")
    r = run_cli("evaluate", "--generated", gen, "--reference", ref, "-o", tmp_path / "r", "--no-models",
                "--no-baselines", "--no-plots")
    assert r.code == 2 and "c1.wav" in r.err and "NaN" in r.err, r.err


def test_all_zero_audio_is_a_warning_not_an_error(bundle, tmp_path):
    import shutil

    from foleyflow.checkpoint import load_checkpoint
    from foleyflow.errors import FoleyError
    from foleyflow.pipeline import FoleyPipeline, Window, _check_finite
    from safetensors.torch import save_file

    silent = tmp_path / "silent"
    shutil.copytree(bundle, silent)
    tensors, meta = load_checkpoint(silent / "vocoder.safetensors")
    save_file({k: torch.zeros_like(v) for k, v in tensors.items()}, str(silent / "vocoder.safetensors"),
              metadata=meta)
    res = FoleyPipeline.from_bundle(silent, precision="fp32").generate(duration_s=1.0, steps=1)
    assert not res.audio.any() and any(n.startswith("warning:") and "all-zero" in n for n in res.notes)
    with pytest.raises(FoleyError, match="decode produced NaN.*text-only"):
        _check_finite(torch.tensor([1.0, float("inf")]), "decode", None, Window(0.0, 1.0))


def test_safe_component_refuses_what_leaves_a_folder():
    for bad in ("../x", "./../ESCAPE", "/etc/passwd", "a/b", "a\\b", "..", ".", "x\0y", "", ".hidden", "x" * 300):
        with pytest.raises(Exception, match="cannot be used as a file name"):
            safe_component(bad)
    assert safe_component("test_200000001") == "test_200000001"


def test_non_utf8_output_names_are_written(bundle, clip, tmp_path):
    """A non-UTF-8 output name ended in an internal error (soundfile and PyAV cannot open such names)."""
    out = tmp_path / os.fsdecode(b"take-\xff.mp4")
    code, stdout, err = run("generate", clip, "-o", out, "--bundle", bundle, "--steps", "1", "--threads", "1")
    assert code == 0, err
    assert out.is_file() and out.with_suffix(".wav").is_file() and "take-\\udcff" in stdout
    assert temporaries(tmp_path) == []
