"""`foleyflow info` and `foleyflow mux` through the command line, including every bad-input case."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from media_helpers import make_corrupt_header, make_truncated, make_unknown_codec, make_video


def _one_line_error(r):
    assert r.code != 0, r.out
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert "Traceback" not in r.err
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from foleyflow.media import write_audio

    d = tmp_path_factory.mktemp("cli")
    tone = (0.3 * np.sin(np.arange(8000) / 8000 * 2 * np.pi * 300)).astype(np.float32)
    good = make_video(d / "good.mp4", 50, "30000/1001", audio=np.stack([tone, tone]), sample_rate=16000)
    (d / "notes.txt").write_text("hello\n" * 40)
    (d / "empty.mp4").write_bytes(b"")
    write_audio(d / "sound.wav", tone, 16000)
    return {"good": good, "missing": d / "nope.mp4", "text": d / "notes.txt", "empty": d / "empty.mp4",
            "audio_only": d / "sound.wav", "truncated": make_truncated(good, d / "truncated.mp4"),
            "corrupt": make_corrupt_header(good, d / "corrupt.mp4"),
            "unknown_codec": make_unknown_codec(good, d / "unknown.mp4"), "dir": d}


def test_info_text_and_json(run_cli, files):
    r = run_cli("info", files["good"])
    assert r.code == 0, r.err
    assert "30000/1001 fps" in r.out and "50 frames" in r.out and "16000 Hz" in r.out
    r = run_cli("info", files["good"], "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["video"]["frame_rate"] == "30000/1001" and d["video"]["frame_count"] == 50
    assert d["has_audio"] and d["audio"]["channels"] == 2 and d["audio"]["num_samples"] == 8000


def test_info_describes_a_file_it_cannot_decode(run_cli, files):
    r = run_cli("info", files["unknown_codec"])
    assert r.code == 0 and "unsupported codec" in r.out and "aac" in r.out


def test_info_decode(run_cli, files):
    r = run_cli("info", files["good"], "--decode", "--fps", "8", "--size", "16", "--json")
    assert r.code == 0, r.err
    dec = json.loads(r.out)["decoded"]
    assert dec["frames"] == 13 and dec["frame_shape"] == [16, 16, 3]  # floor(50 * 1001 / 30000 * 8) = 13
    assert dec["audio_samples"] == 8000


def test_help_of_subcommands(run_cli):
    for cmd in ("info", "mux"):
        r = run_cli(cmd, "--help")
        assert r.code == 0 and cmd in r.out


@pytest.mark.parametrize("case,words", [
    ("missing", "no such file"), ("text", "not a media file"), ("empty", "empty"), ("truncated", "truncated"),
    ("corrupt", "corrupt"), ("dir", "folder")])
def test_info_bad_input(run_cli, files, case, words):
    line = _one_line_error(run_cli("info", files[case]))
    assert words in line


@pytest.mark.parametrize("case,args,words", [
    ("unknown_codec", (), "unsupported video codec"), ("audio_only", (), "no video stream"),
    ("good", ("--size", "0"), "out of range"), ("good", ("--size", "100000"), "out of range"),
    ("good", ("--fps", "0"), "out of range"), ("good", ("--fps", "1e12"), "out of range"),
    ("good", ("--fps", "fast"), "invalid frame rate")])
def test_info_decode_bad_input(run_cli, files, case, args, words):
    line = _one_line_error(run_cli("info", files[case], "--decode", *args))
    assert words in line


def test_mux_cli(run_cli, files, tmp_path):
    out = tmp_path / "out.mp4"
    r = run_cli("mux", files["good"], files["audio_only"], "-o", out)
    assert r.code == 0, r.err
    assert "replaced" in r.out and out.is_file()
    for target, words in [(tmp_path / "missing" / "o.mp4", "does not exist"), (tmp_path, "folder")]:
        assert words in _one_line_error(run_cli("mux", files["good"], files["audio_only"], "-o", target))
    assert "no video stream" in _one_line_error(run_cli("mux", files["audio_only"], files["audio_only"], "-o", out))
    assert "not a readable" in _one_line_error(run_cli("mux", files["good"], files["text"], "-o", out))
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert "permission" in _one_line_error(run_cli("mux", files["good"], files["audio_only"], "-o", ro / "o.mp4"))
