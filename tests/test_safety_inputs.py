"""Hostile input (issue 16, findings 4-7): generate-set ids and resume records, bundles that name files outside
themselves or whose configs do not fit their tensors, garbage configs and manifests, extract-features' workers and
default text budget. Tiny bundles and videos are made by the test."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from foleyflow.errors import CheckpointError, FoleyError
from test_pipeline import TEXT_CFG, make_video, tiny_bundle

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from foleyflow.models.text_encoder import load_text_encoder

    torch.set_num_threads(1)
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", load_text_encoder(TEXT_CFG))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A FoleyWorld-like folder: two clips with their true .wav next to them and a manifest."""
    d = tmp_path_factory.mktemp("world")
    rows = []
    for i in range(2):
        make_video(d / f"c{i}.mp4", 1.0, fps=10, audio=False)
        sf.write(d / f"c{i}.wav", np.full((16000, 2), 0.25, np.float32), 16000)
        rows.append({"id": f"c{i}", "video": f"c{i}.mp4", "audio": f"c{i}.wav", "split": "test"})
    (d / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


# ------------------------------------------------------------------------------------------------ finding 4
def test_generate_set_refuses_ids_that_leave_out(bundle, world, tmp_path, run_cli):
    m = tmp_path / "escape.jsonl"
    m.write_text(json.dumps({"id": "./../ESCAPE", "video": str(world / "c0.mp4")}) + "\n")
    r = run_cli("generate-set", m, "--out", tmp_path / "gen", "--bundle", bundle, "--steps", "1")
    assert r.code == 2 and "cannot be used as a file name" in r.err, r.err
    assert not (tmp_path / "ESCAPE.wav").exists() and not (tmp_path / "gen").exists()


def test_generate_set_never_trusts_files_it_did_not_make(bundle, world, run_cli):
    """--out pointing at the FoleyWorld folder counted the truth wavs as generated (evaluate would then score the
    truth as the model's output). Now they are refused, and with --overwrite generated."""
    truth = (world / "c0.wav").read_bytes()
    args = ("generate-set", world / "manifest.jsonl", "--out", world, "--bundle", bundle, "--steps", "1",
            "--threads", "1")
    r = run_cli(*args)
    assert r.code == 2 and "was not made by generate-set" in r.err, r.err
    assert (world / "c0.wav").read_bytes() == truth


def test_generate_set_resumes_only_what_it_recorded(bundle, world, tmp_path, run_cli):
    out = tmp_path / "gen"
    args = ("generate-set", world / "manifest.jsonl", "--out", out, "--bundle", bundle, "--steps", "1",
            "--threads", "1")
    r = run_cli(*args)
    assert r.code == 0 and "wrote 2 clips" in r.out, r.err
    record = json.loads((out / "generate_set.json").read_text())
    assert set(record["made"]) == {"c0", "c1"} and len(record["settings"]["bundle_sha256"]) == 64
    assert run_cli(*args).out.startswith("wrote 0 clips")            # resumed: both recorded and unchanged
    sf.write(out / "c1.wav", np.zeros((10, 2), np.float32), 16000)   # changed since: made again
    assert run_cli(*args).out.startswith("wrote 1 clips")
    assert run_cli(*args, "--seed", "5").out.startswith("wrote 2 clips")  # other settings: made again
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------------ finding 5
def _edit_index(folder: Path, **changes) -> None:
    index = json.loads((folder / "bundle.json").read_text())
    index.update(changes)
    (folder / "bundle.json").write_text(json.dumps(index))


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.safetensors", "sub/../../outside.safetensors"])
def test_bundle_files_must_stay_inside_the_bundle(bundle, tmp_path, name):
    from foleyflow.bundle import read_bundle

    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    shutil.copyfile(bundle / "vae.safetensors", tmp_path / "outside.safetensors")
    _edit_index(b, vae=name)
    with pytest.raises(CheckpointError, match="outside the bundle folder"):
        read_bundle(b)


@pytest.mark.parametrize("defaults", [{"steps": "25"}, {"steps": 2.5}, {"cfg": "x"}, {"cfg": None}, {"steps": True},
                                      {"overlap_s": 1e9}, [1, 2], {"bogus": 1}])
def test_bundle_defaults_are_type_checked(bundle, tmp_path, defaults):
    from foleyflow.bundle import read_bundle

    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    _edit_index(b, defaults=defaults)
    with pytest.raises(CheckpointError, match="default"):
        read_bundle(b)


def _rewrite_config(src: Path, dst: Path, config: str) -> None:
    from safetensors.torch import save_file

    from foleyflow.checkpoint import CONFIG, load_checkpoint

    tensors, meta = load_checkpoint(src)
    save_file(tensors, str(dst), metadata={**meta, CONFIG: config})


def test_a_huge_config_is_refused_before_any_allocation(bundle, tmp_path):
    """A config whose width does not fit the tensors used to build the model first (1.2 TB for a huge width)."""
    import resource

    from foleyflow.checkpoint import CONFIG, read_metadata
    from foleyflow.models.generator_io import load_generator

    cfg = json.loads(read_metadata(bundle / "generator.safetensors")[CONFIG])
    cfg["hidden_dim"] = 1 << 20
    dst = tmp_path / "g.safetensors"
    _rewrite_config(bundle / "generator.safetensors", dst, json.dumps(cfg))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="does not fit|does not build"):
        load_generator(dst)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: nothing big was made


@pytest.mark.parametrize("config", ["not json", "[1, 2]", "{\"hidden_dim\": \"wide\"}", "1e999"])
def test_non_json_or_wrong_config_metadata_is_one_line(bundle, tmp_path, config):
    from foleyflow.models.generator_io import load_generator

    dst = tmp_path / "g.safetensors"
    _rewrite_config(bundle / "generator.safetensors", dst, config)
    with pytest.raises(CheckpointError) as e:
        load_generator(dst)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ finding 6
def test_seed_beyond_64_bits_is_refused_before_models_load(run_cli, tmp_path):
    clip = make_video(tmp_path / "c.mp4", 1.0, fps=10, audio=False)
    r = run_cli("generate", clip, "--seed", str(2 ** 64), "--bundle", tmp_path / "no-bundle")
    assert r.code == 2 and "--seed" in r.err  # (the missing bundle would be the next error: no model was loaded)


def test_garbage_manifests_are_one_line_errors(tmp_path):
    from foleyflow.manifest import ManifestError, read_manifest

    cases = {"binary": b"\xff\xfe\x00garbage", "int_path": b'{"id": "x", "video": 5}\n',
             "nan_duration": b'{"id": "x", "audio": "a.wav", "duration_s": NaN}\n', "deep": b"[" * 100000}
    (tmp_path / "a.wav").write_bytes(b"")
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ManifestError):
            read_manifest(tmp_path / name)


def test_world_make_into_an_unwritable_folder(run_cli, tmp_path):
    (tmp_path / "file").write_text("")
    r = run_cli("world", "make", "--out", tmp_path / "file" / "sub", "--split", "test", "--n", "1")
    assert r.code == 2 and "cannot create the output folder" in r.err
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        r = run_cli("world", "make", "--out", ro, "--split", "test", "--n", "1")
        assert r.code == 2 and "permission denied" in r.err


# ------------------------------------------------------------------------------------------------ finding 7
def test_manifest_paths_are_absolute_even_for_a_relative_manifest(world, monkeypatch):
    """extract-features --workers 2 resolved the clips of a relative manifest against its temporary parts folder."""
    from foleyflow.manifest import read_manifest

    monkeypatch.chdir(world.parent)
    entries = read_manifest(Path(world.name) / "manifest.jsonl")
    assert all(Path(e.video).is_absolute() and Path(e.audio).is_absolute() for e in entries)


def test_extract_features_workers_leave_no_parts_folder_on_failure(world, bundle, tmp_path, run_cli):
    wrong = bundle / "vae.safetensors"  # not an encoder: the workers fail
    r = run_cli("extract-features", world / "manifest.jsonl", "--out", tmp_path / "f", "--semantic-encoder", wrong,
                "--sync-encoder", wrong, "--workers", "2", "--duration", "1")
    assert r.code == 2 and "worker" in r.err, r.err
    assert [p.name for p in tmp_path.iterdir()] == []


def test_default_text_budget_takes_foleyworld_texts():
    """The default budget refused chains of thought that `world make` wrote; now it is the default model's."""
    from foleyflow.commands.extract_features import parse_budget
    from foleyflow.cli import build_parser
    from foleyflow.data.features import cot_parts
    from foleyflow.manifest import read_manifest
    from foleyflow.models.text_encoder import load_text_encoder

    args = build_parser().parse_args(["extract-features", "m", "--out", "o", "--semantic-encoder", "s",
                                      "--sync-encoder", "s"])
    cfg = parse_budget(args.text_budget, args.text_overflow)
    assert cfg.output_len == 480
    enc = load_text_encoder(cfg)
    rows = read_manifest(ROOT / "examples" / "foleyworld" / "manifest.jsonl")
    enc.encode_cot([cot_parts(r.cot) for r in rows])
    enc.encode([r.caption for r in rows])


# ------------------------------------------------------------------------------------------------ promises
class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def test_a_pickle_named_safetensors_is_refused_and_never_runs(tmp_path):
    """No unpickling anywhere: a pickle renamed .safetensors is a CheckpointError and its payload does not run."""
    import pickle

    from foleyflow.bundle import read_bundle
    from foleyflow.checkpoint import load_checkpoint

    marker = tmp_path / "payload-ran"
    evil = tmp_path / "generator.safetensors"
    evil.write_bytes(pickle.dumps({"state": _Payload(str(marker))}))
    torch_file = tmp_path / "t.safetensors"
    torch.save({"x": _Payload(str(marker))}, torch_file)  # torch.save's zip format too
    for path in (evil, torch_file):
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.slow
def test_generate_memory_does_not_grow_with_video_length(bundle, tmp_path):
    """Bounded memory for any video length: the peak RSS of `generate` for a 240 s video is within 150 MB of a 20 s
    one (frames are decoded window by window; only the output audio grows, 2 x 16000 x 4 bytes a second)."""
    import subprocess
    import sys

    peaks = []
    for seconds in (20, 240):
        clip = make_video(tmp_path / f"v{seconds}.mp4", seconds, fps=5, size=(16, 16), audio=False)
        code = ("import resource, sys; from foleyflow.cli import main; rc = main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
        p = subprocess.run([sys.executable, "-c", code, "generate", str(clip), "-o", str(tmp_path / f"o{seconds}.mp4"),
                            "--bundle", str(bundle), "--steps", "1", "--threads", "1"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=1800)
        assert p.returncode == 0, p.stderr
        peaks.append(int(p.stdout.strip().splitlines()[-1]))
    assert peaks[1] - peaks[0] < 150_000, peaks  # KiB
