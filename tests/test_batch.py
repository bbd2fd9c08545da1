"""`foleyflow batch` over a folder and a CSV: the failure summary, resume after an interruption (same files, byte for
byte), and CSV rows checked before any model loads. Tiny bundle and videos made by the test."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch

from foleyflow.fileio import is_temp_name
from test_pipeline import TEXT_CFG, cli, make_video, tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from foleyflow.models.text_encoder import load_text_encoder

    torch.set_num_threads(1)
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", load_text_encoder(TEXT_CFG))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A folder: two short videos and one file named like a video that is not one."""
    d = tmp_path_factory.mktemp("clips")
    make_video(d / "a.mp4", 1.0, fps=10, audio=False)
    make_video(d / "b.mkv", 1.2, fps=10, audio=True)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(300))
    (d / "notes.txt").write_text("not a video, ignored")
    return d


def files(folder: Path) -> dict[str, object]:
    """{relative path: content}: a video's bytes; a wav's samples and rate (libsndfile stamps float wavs' PEAK chunk
    with the time of writing, so their bytes differ in those 4 bytes even for identical audio)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "batch.json":
            data = p.read_bytes()
            if p.suffix == ".wav" and data.startswith(b"RIFF"):
                audio, sr = sf.read(p, dtype="float32")
                data = (sr, audio.shape, audio.tobytes())
            out[p.relative_to(folder).as_posix()] = data
    return out


def test_folder_batch_reports_the_bad_file_and_writes_the_others(capsys, bundle, clips, tmp_path):
    out = tmp_path / "out"
    base = ["batch", clips, "--out", out, "--bundle", bundle, "--steps", "1", "--threads", "1"]
    code, stdout, err = cli(capsys, *base)
    assert code == 2, err
    assert sorted(files(out)) == ["a.mp4", "a.wav", "b.mp4", "b.wav"]
    assert "1 of 3 items failed" in err and "broken.wav:" in err      # the summary names the bad item
    assert err.strip().splitlines()[-1].startswith("error: ")
    assert "wrote 2 items" in stdout
    record = json.loads((out / "batch.json").read_text())
    assert [f["id"] for f in record["failures"]] == ["broken.wav"]
    assert record["made"]["a.wav"]["sha256"] and record["made"]["a.wav"]["video_sha256"]
    from foleyflow.outputs import is_own_output
    assert is_own_output(out / "a.wav") and is_own_output(out / "a.mp4")
    before = files(out)
    code, stdout, err = cli(capsys, *base)                     # re-run: only the failed item is tried again
    assert code == 2 and "wrote 0 items" in stdout and "2 already there" in stdout
    assert files(out) == before
    (out / "a.wav").write_bytes(b"changed")                    # a changed output is regenerated
    code, stdout, _ = cli(capsys, *base)
    assert "wrote 1 items" in stdout and files(out) == before


def test_csv_batch_resumes_after_sigterm_with_the_same_bytes(capsys, bundle, clips, tmp_path):
    csv = tmp_path / "jobs.csv"
    csv.write_text("video,prompt,seed,steps,duration,output\n"
                   f"{clips / 'a.mp4'},,3,,,first.wav\n"
                   f"{clips / 'b.mkv'},,,2,,sub/second.mp4\n"
                   ",,5,,1.3,third.wav\n"
                   "missing.mp4,,,,,\n")
    ref = tmp_path / "ref"
    base = ["--bundle", bundle, "--steps", "1", "--threads", "1"]
    code, _, err = cli(capsys, "batch", csv, "--out", ref, *base)
    assert code == 2 and "missing.wav: " in err and "1 of 4 items failed" in err
    assert sorted(files(ref)) == ["first.wav", "sub/second.mp4", "sub/second.wav", "third.wav"]

    out = tmp_path / "resumed"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", FOLEYFLOW_PAUSE_AT="item_done",
               FOLEYFLOW_PAUSE_S="120")
    env.pop("FOLEYFLOW_DEBUG", None)
    p = subprocess.Popen([sys.executable, "-m", "foleyflow", "batch", str(csv), "--out", str(out), *map(str, base)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line, t_end = "", time.monotonic() + 240
    while "paused at" not in line and time.monotonic() < t_end:
        line = p.stderr.readline()
        if not line and p.poll() is not None:
            break
    assert "paused at item_done" in line, p.communicate()[1]
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert sorted(files(out)) == ["first.wav"]                  # one item done, nothing half-written
    assert not [q for q in out.rglob("*") if is_temp_name(q.name)]
    code, stdout, err = cli(capsys, "batch", csv, "--out", out, *base)
    assert code == 2 and "1 already there" in stdout
    assert files(out) == files(ref)                 # same seeds -> the same videos and samples


@pytest.mark.parametrize("text, message", [
    ("video,colour\nx.mp4,red\n", "unknown column"),
    ("video,seed\nx.mp4,abc\n", "seed must be an integer"),
    ("video,steps\nx.mp4,0\n", "steps must be between"),
    ("prompt\nrain\n", "give a video or a duration"),
    ("video,output\nx.mp4,../escape.wav\n", "must be a file inside --out"),
    ("video,output\nx.mp4,o.wav\ny.mp4,o.wav\n", "is also the output of"),
    ("duration,output\n2,clip.mp4\n", "text-only row writes a .wav"),
])
def test_bad_csv_rows_are_one_line_errors_before_models_load(capsys, tmp_path, text, message):
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    code, _, err = cli(capsys, "batch", csv, "--out", tmp_path / "o", "--bundle", tmp_path / "no-bundle-needed")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_refine_rewrites_each_rows_prompt_before_its_key(monkeypatch, tmp_path):
    """--refine: every prompt (a row's or --prompt) is refined once before the item's key is made, so a resumed run
    with --refine never reuses audio made from the unrefined text; a bad similarity is one line, before models load."""
    import argparse

    import foleyflow.commands.plan as plan_cmd
    from foleyflow.commands.batch import build_items

    seen = []

    class Shout:
        def refine_text(self, text):
            seen.append(text)
            return text.upper()

    csv = tmp_path / "rows.csv"
    csv.write_text("prompt,duration,output\na purple lorry,1,a.wav\n,1,b.wav\na purple lorry,1,c.wav\n")
    args = argparse.Namespace(input=str(csv), prompt="rain on a roof", seed=0, wav_only=False, refine=None)
    plain = build_items(args, tmp_path / "o")
    monkeypatch.setattr(plan_cmd, "refiner", lambda similarity: Shout())
    items = build_items(argparse.Namespace(**{**vars(args), "refine": 0.8}), tmp_path / "o")
    assert [i.prompt for i in items] == ["A PURPLE LORRY", "RAIN ON A ROOF", "A PURPLE LORRY"]
    assert sorted(seen) == ["a purple lorry", "rain on a roof"]           # each distinct prompt once
    assert all(a.key != b.key for a, b in zip(plain, items))


def test_refine_similarity_out_of_range_is_one_line(capsys, tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text("prompt,duration\nrain,1\n")
    code, _, err = cli(capsys, "batch", csv, "--out", tmp_path / "o", "--refine", "2", "--bundle", tmp_path / "nb")
    assert code == 2 and "--refine takes a similarity in (0, 1], got 2" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
