"""Fuzzing the loaders of untrusted files (issue 16): bundle.json, safetensors headers, manifests and the media probe.

Each loader, given arbitrary or mutated bytes, must either succeed or raise a one-line FoleyError: never another
exception (an internal error), never a hang, never a huge allocation. Property-based with hypothesis; the default run
takes a few seconds per loader (under 30 s in all), `-m slow` runs many more examples."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from foleyflow.errors import FoleyError  # noqa: E402

FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SLOW = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

json_values = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) |
                           st.floats(allow_nan=True) | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids,
                                                                                      max_size=4), max_leaves=12)


def one_line(e: FoleyError) -> None:
    assert "\n" not in str(e)


# ------------------------------------------------------------------------------------------------ bundle.json
BUNDLE_KEYS = ["format", "name", "trained", "generator", "vae", "vocoder", "semantic_encoder", "sync_encoder",
               "text_encoder", "defaults"]


def bundle_indexes():
    valid = {"format": "foleyflow-bundle/1", "generator": "g.safetensors", "vae": "g.safetensors",
             "vocoder": "g.safetensors", "semantic_encoder": "g.safetensors", "sync_encoder": "g.safetensors",
             "text_encoder": {"config": {}}, "defaults": {"steps": 25}}
    mutated = st.fixed_dictionaries({}, optional={k: json_values | st.sampled_from(
        ["g.safetensors", "../g.safetensors", "/etc/hostname", "", "\0", "foleyflow-bundle/1"]) for k in BUNDLE_KEYS})
    return st.builds(lambda m: {**valid, **m}, mutated) | json_values


def check_bundle(tmp_path: Path, index) -> None:
    from foleyflow.bundle import read_bundle

    b = tmp_path / "b"
    b.mkdir(exist_ok=True)
    (b / "g.safetensors").write_bytes(b"")
    (b / "bundle.json").write_text(json.dumps(index))
    try:
        read_bundle(b)
    except FoleyError as e:
        one_line(e)


@FAST
@given(index=bundle_indexes())
def test_fuzz_bundle_json(tmp_path, index):
    check_bundle(tmp_path, index)


@pytest.mark.slow
@SLOW
@given(index=bundle_indexes())
def test_fuzz_bundle_json_long(tmp_path, index):
    check_bundle(tmp_path, index)


# ------------------------------------------------------------------------------------------------ safetensors
def safetensors_files():
    dtypes = st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "XX", ""])
    entry = st.fixed_dictionaries({"dtype": dtypes | json_values,
                                   "shape": st.lists(st.integers(-3, 2 ** 40), max_size=4) | json_values,
                                   "data_offsets": st.lists(st.integers(-3, 2 ** 40), min_size=0, max_size=3)})
    meta = st.dictionaries(st.sampled_from(["foleyflow.kind", "foleyflow.config", "x"]),
                           st.text(max_size=30) | st.just("{\"hidden_dim\": 1e300}"), max_size=3)
    header = st.dictionaries(st.text(max_size=8), entry, max_size=3).flatmap(
        lambda d: meta.map(lambda m: {**d, "__metadata__": m} if m else d))
    return st.tuples(header, st.integers(0, 64), st.sampled_from([None, 0, 7, 2 ** 62]), st.binary(max_size=64))


def check_safetensors(tmp_path: Path, case) -> None:
    from foleyflow.checkpoint import load_checkpoint, read_metadata

    header, pad, claimed, tail = case
    text = json.dumps(header).encode() + b" " * pad
    size = len(text) if claimed is None else claimed
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", size) + text + tail)
    for fn in (read_metadata, load_checkpoint):
        try:
            fn(path)
        except FoleyError as e:
            one_line(e)


@FAST
@given(case=safetensors_files())
def test_fuzz_safetensors_header(tmp_path, case):
    check_safetensors(tmp_path, case)


@pytest.mark.slow
@SLOW
@given(case=safetensors_files())
def test_fuzz_safetensors_header_long(tmp_path, case):
    check_safetensors(tmp_path, case)


# ------------------------------------------------------------------------------------------------ manifests
manifest_lines = st.lists(
    st.fixed_dictionaries({}, optional={"id": json_values | st.sampled_from(["a", "b", "../x"]),
                                        "video": json_values | st.just("v.mp4"), "audio": json_values,
                                        "duration_s": json_values, "caption": json_values, "split": json_values})
    .map(json.dumps) | st.text(max_size=40), max_size=5)


def check_manifest(tmp_path: Path, lines, raw: bytes = b"") -> None:
    from foleyflow.manifest import read_manifest

    (tmp_path / "v.mp4").write_bytes(b"")
    path = tmp_path / "m.jsonl"
    path.write_bytes(("\n".join(lines)).encode("utf-8", "surrogatepass") + raw)
    try:
        read_manifest(path)
    except FoleyError as e:
        one_line(e)


@FAST
@given(lines=manifest_lines, raw=st.binary(max_size=16))
def test_fuzz_manifest(tmp_path, lines, raw):
    check_manifest(tmp_path, lines, raw)


@pytest.mark.slow
@SLOW
@given(lines=manifest_lines, raw=st.binary(max_size=64))
def test_fuzz_manifest_long(tmp_path, lines, raw):
    check_manifest(tmp_path, lines, raw)


# ------------------------------------------------------------------------------------------------ media probe
@pytest.fixture(scope="module")
def small_media(tmp_path_factory) -> dict[str, bytes]:
    import soundfile as sf

    from test_pipeline import make_video

    d = tmp_path_factory.mktemp("media")
    make_video(d / "v.mp4", 0.4, fps=10, size=(16, 16), audio=True)
    sf.write(d / "a.wav", np.zeros((800, 2), np.float32), 16000)
    return {"v.mp4": (d / "v.mp4").read_bytes(), "a.wav": (d / "a.wav").read_bytes()}


def mutations():
    return st.tuples(st.sampled_from(["v.mp4", "a.wav"]),
                     st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8),
                     st.none() | st.integers(0, 1 << 20))


def check_probe(tmp_path: Path, small_media, case) -> None:
    from foleyflow.media import probe

    name, flips, cut = case
    data = bytearray(small_media[name])
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    path = tmp_path / name
    path.write_bytes(bytes(data))
    try:
        probe(path)
    except FoleyError as e:
        one_line(e)


@FAST
@given(case=mutations())
def test_fuzz_media_probe(tmp_path, small_media, case):
    check_probe(tmp_path, small_media, case)


@pytest.mark.slow
@SLOW
@given(case=mutations())
def test_fuzz_media_probe_long(tmp_path, small_media, case):
    check_probe(tmp_path, small_media, case)
