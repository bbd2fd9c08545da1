"""The web UI without a browser: the form's checks (foleyflow.ui.jobs), a Generate click's files with a tiny untrained
bundle made by the test, cancelling, the timeline PNG and its onsets, and `foleyflow ui` as a real process on
127.0.0.1 (the page is served, offline settings are in it, SIGTERM stops it cleanly). The page in a real browser is
tests/test_ui_browser.py."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from foleyflow import media
from foleyflow.errors import FoleyError
from foleyflow.pipeline import Cancelled
from foleyflow.ui.jobs import UIRequest, check_request, run_request
from foleyflow.ui.timeline import soundtrack_onsets, write_timeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(bundle folder, pipeline) of a tiny untrained bundle (2 s window)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_pipeline import TEXT_CFG, tiny_bundle

    from foleyflow.models.text_encoder import load_text_encoder
    from foleyflow.pipeline import FoleyPipeline

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    enc = load_text_encoder(TEXT_CFG)
    folder = tiny_bundle(tmp_path_factory.mktemp("bundle") / "b", enc)
    yield folder, FoleyPipeline.from_bundle(folder, text_encoder=enc, precision="fp32")
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from test_pipeline import make_video

    return make_video(tmp_path_factory.mktemp("video") / "my clip!.mp4", 1.5, fps=25, size=(48, 32))


@pytest.mark.parametrize("req, message", [
    (UIRequest(prompt="rain", cot={"semantic": "rain"}, duration_s=2), "a prompt or a chain of thought, not both"),
    (UIRequest(prompt="rain"), "upload a video, or give a duration"),
    (UIRequest(duration_s=2), "text-to-audio needs a prompt or a chain of thought"),
    (UIRequest(prompt="rain", duration_s=0.01), "duration must be between"),
    (UIRequest(prompt="rain", duration_s=2, variations=9), "variations must be between 1 and 8"),
    (UIRequest(prompt="rain", duration_s=2, steps=0), "steps must be between"),
    (UIRequest(prompt="rain", duration_s=2, steps=2.5), "steps must be a whole number"),
    (UIRequest(prompt="rain", duration_s=2, seed=-1), "seed must be between"),
    (UIRequest(prompt="rain", duration_s=2, cfg_scale=99), "between 0 and 50"),
    (UIRequest(prompt="rain", duration_s=2, cot={"mood": "calm"}), "unknown chain-of-thought parts"),
])
def test_bad_forms_are_one_line_errors(req, message):
    with pytest.raises(FoleyError, match=re.escape(message)) as e:
        check_request(req)
    assert "\n" not in str(e.value)


def test_form_values_become_options_and_cot_parts():
    values, cot, n = check_request(UIRequest(video="v.mp4", negative=" hum ", steps=3.0, cfg_scale=2, seed=7,
                                             variations=3, cot={"semantic": "a bell", "spatial": " left "}))
    assert values == {"steps": 3, "cfg_scale": 2.0, "seed": 7, "negative": "hum"} and n == 3
    assert cot == {"semantic": "a bell", "temporal": "", "aesthetic": "", "spatial": "left"}
    assert check_request(UIRequest(video="v.mp4", cot={"semantic": " "}))[1] is None   # blank parts: no CoT


def test_video_variations_write_video_wav_and_timeline_per_seed(tiny, clip, tmp_path):
    _, pipe = tiny
    seen = []
    res = run_request(pipe, UIRequest(video=str(clip), prompt="a bell", steps=2, seed=5, variations=2), tmp_path,
                      progress=lambda f, text: seen.append(f))
    assert [r.seed for r in res] == [5, 6]
    assert seen[-1] == 1.0 and all(a <= b for a, b in zip(seen, seen[1:]))
    duration = media.probe(clip).video.duration_s
    audios = []
    for r in res:
        assert r.wav.parent == r.video.parent == r.timeline.parent and r.wav.parent.parent == tmp_path
        assert r.wav.name == f"my_clip.foley.seed{r.seed}.wav" and r.video.suffix == ".mp4"
        audio, sr = sf.read(str(r.wav), dtype="float32", always_2d=True)
        assert audio.shape == (round(duration * sr), 2)
        audios.append(audio)
        info = media.probe(r.video)
        assert info.audio is not None and info.audio.channels == 2 and abs(info.video.duration_s - duration) < 1e-3
        assert r.timeline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not np.array_equal(audios[0], audios[1])          # other seed, other audio
    again = run_request(pipe, UIRequest(video=str(clip), prompt="a bell", steps=2, seed=6), tmp_path)
    np.testing.assert_array_equal(sf.read(str(again[0].wav), dtype="float32", always_2d=True)[0], audios[1])


def test_text_to_audio_with_a_chain_of_thought(tiny, tmp_path):
    _, pipe = tiny
    (r,) = run_request(pipe, UIRequest(cot={"semantic": "a bell rings", "temporal": "at 0.5 s"}, duration_s=1.25,
                                       steps=1), tmp_path)
    assert r.video is None and r.wav.name == "text.foley.seed0.wav"
    audio, sr = sf.read(str(r.wav), always_2d=True)
    assert audio.shape == (round(1.25 * sr), 2)


def test_cancel_stops_between_steps_and_writes_nothing(tiny, clip, tmp_path):
    _, pipe = tiny
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        run_request(pipe, UIRequest(video=str(clip), steps=50), tmp_path, cancel=cancel)
    assert len(calls) == 3                                    # stopped at the second step, not after 50
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_timeline_marks_the_onsets_of_clicks_under_the_frames(clip, tmp_path):
    sr = 16000
    audio = np.zeros((2, int(1.5 * sr)), np.float32)
    rng = np.random.default_rng(0)
    clicks = [0.25, 0.7, 1.1]
    for t in clicks:
        i = int(t * sr)
        audio[:, i:i + 800] = rng.normal(0, 0.5, 800).astype(np.float32) * np.exp(-np.arange(800) / 150)
    onsets = soundtrack_onsets(audio, sr)
    assert len(onsets) == len(clicks) and np.abs(onsets - clicks).max() < 0.02
    assert len(soundtrack_onsets(np.zeros((2, sr), np.float32), sr)) == 0
    from PIL import Image

    with_video, got = write_timeline(tmp_path / "v.png", audio, sr, video=clip)
    text_only, _ = write_timeline(tmp_path / "t.png", audio, sr)
    np.testing.assert_allclose(got, onsets)
    hv, ht = Image.open(with_video).size[1], Image.open(text_only).size[1]
    assert hv > ht * 1.2                                       # the frames row sits above the spectrogram
    assert not list(tmp_path.glob("*.tmp*"))


def test_ui_command_errors_are_one_line(run_cli, tmp_path):
    for args, msg in [(["--port", "70000"], "--port must be between"),
                      (["--bundle", str(tmp_path)], "no model bundle at"),
                      (["--max-upload-mb", "0"], "--max-upload-mb must be between")]:
        r = run_cli("ui", *args, timeout=120)
        assert r.code == 2 and r.err.startswith("error: ") and r.err.count("\n") == 1, r.err


def test_ui_command_serves_the_page_on_loopback_and_stops_on_sigterm(tiny, tmp_path):
    pytest.importorskip("gradio")
    bundle, _ = tiny
    env = dict(os.environ, PYTHONPATH=str(ROOT), FOLEYFLOW_TEST="1")
    proc = subprocess.Popen([sys.executable, "-m", "foleyflow", "ui", "--bundle", str(bundle), "--port", "0",
                             "--out-dir", str(tmp_path / "out"), "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        deadline = time.monotonic() + 60
        while True:
            try:
                html = urllib.request.urlopen(m.group(1) + "/", timeout=10).read().decode()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert "foleyflow" in html and '"analytics_enabled":false' in html.replace(" ", "")
        assert "fonts.googleapis" not in html and "cdn." not in html
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopped" in out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------------------ the plan button
def _component(app, elem_id: str):
    return next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def _handler(app, name: str):
    return next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", None) == name)


def test_plan_button_runs_the_bundles_planner_on_the_torch_thread(tiny, clip, tmp_path):
    pytest.importorskip("gradio")
    import shutil
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from test_planner import add_tiny_planner

    from foleyflow.planning import load_video_planner, planned_cot
    from foleyflow.ui.app import build_app, plan_if_unedited
    from foleyflow.ui.jobs import COT_PARTS

    folder, pipe = tiny
    with_planner = add_tiny_planner(Path(shutil.copytree(folder, tmp_path / "with")))
    torch_thread = ThreadPoolExecutor(1, thread_name_prefix="ff-test-torch")
    app = build_app(pipe, tmp_path / "out", torch_thread, bundle=with_planner)
    button = _component(app, "ff-plan")
    assert button.interactive and "no planner" not in button.value
    plan = _handler(app, "plan")
    import foleyflow.planning as planning

    threads, real = [], planning.planned_cot

    def spy(*a, **k):
        threads.append(threading.current_thread().name)
        return real(*a, **k)

    planning.planned_cot = spy
    try:
        *parts, state, prompt, status = plan(str(clip), "rain falls")
    finally:
        planning.planned_cot = real
    assert threads and all(t.startswith("ff-test-torch") for t in threads)      # torch work on the one thread
    assert status.startswith("planned 3 sources") and "prompt was cleared" in status and prompt == ""
    # the same planner and the same text as `generate --cot auto` (planning.planned_cot), prompt included
    want, want_plan = planned_cot(clip, load_video_planner(with_planner), "rain falls")
    assert parts == [want[k] for k in COT_PARTS] and "rain" in parts[0]
    cot = dict(zip(COT_PARTS, parts))
    p = plan_if_unedited(state, str(clip), cot)
    assert p == want_plan and {s.sound_class for s in p.sources if not s.on_screen} == {"rain"}
    assert plan_if_unedited(state, str(clip), {**cot, "temporal": cot["temporal"] + " then a bang"}) is None
    assert plan_if_unedited(state, "other.mp4", cot) is None
    # Generate with the unedited parts hands the plan to the pipeline with the text
    seen = []

    def generate(video, **kw):
        seen.append(kw)
        raise Cancelled("enough")

    pipe.generate, real_generate = generate, pipe.generate
    try:
        with pytest.raises(Cancelled):
            run_request(pipe, UIRequest(video=str(clip), cot=cot, plan=p, steps=1), tmp_path / "gen")
    finally:
        del pipe.generate
    assert pipe.generate == real_generate and seen[0]["plan"] == p and seen[0]["cot"] == cot
    # a bundle that plans by default: Generate with a bare video plans it first (prompt kept as the text)
    from foleyflow.planning import AutoPlanner

    bare_cot, bare_plan = planned_cot(clip, load_video_planner(with_planner))
    pipe.generate = generate
    try:
        for prompt, want_cot in (("", bare_cot), ("rain falls", None)):
            with pytest.raises(Cancelled):
                run_request(pipe, UIRequest(video=str(clip), prompt=prompt, steps=1), tmp_path / "gen",
                            planner=AutoPlanner.of(with_planner, pipe))
            # the prompt's off-screen sources join the plan, untimed (they leave the track as it was)
            assert seen[-1]["plan"] == (bare_plan if not prompt else want_plan) and seen[-1]["cot"] == want_cot
            assert seen[-1]["prompt"] == (prompt or None)
    finally:
        del pipe.generate
    # no video: a one-line error, the fields untouched
    *_, status = plan(None, "")
    assert status == "error: upload a video to plan for"
    torch_thread.shutdown()


def test_plan_button_is_disabled_without_a_planner(tiny, clip, tmp_path):
    pytest.importorskip("gradio")
    from foleyflow.ui.app import build_app

    folder, pipe = tiny
    for bundle in (folder, None):
        app = build_app(pipe, tmp_path / "out", bundle=bundle)
        button = _component(app, "ff-plan")
        assert not button.interactive and "this model has no planner" in button.value
        *_, status = _handler(app, "plan")(str(clip), "")
        assert status.startswith("error: the model 'test-untrained' has no automatic planner")


def test_refine_box_rewrites_the_prompt_before_generation(tiny, tmp_path, monkeypatch):
    import foleyflow.ui.jobs as ui_jobs

    _, pipe = tiny

    class Shout:
        def refine_text(self, text):
            return text.upper()

    monkeypatch.setattr(ui_jobs, "default_refiner", lambda: Shout())
    seen = []
    real = pipe.generate

    def generate(video, **kw):
        seen.append(kw["prompt"])
        return real(video, **kw)

    monkeypatch.setattr(pipe, "generate", generate)
    (r,) = run_request(pipe, UIRequest(prompt="a purple lorry", duration_s=1.0, steps=1, refine=True), tmp_path)
    assert seen == ["A PURPLE LORRY"] and "prompt refined: A PURPLE LORRY" in r.notes
    (r,) = run_request(pipe, UIRequest(prompt="a purple lorry", duration_s=1.0, steps=1), tmp_path)
    assert seen[-1] == "a purple lorry" and not any("refined" in n for n in r.notes)
