"""The retrieval baseline: nearest neighbours, the borrowed audio, and the whole run with a tiny semantic encoder
built in code (saved to tmp_path) as the pipeline's encoder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from foleyflow.errors import EvalError
from foleyflow.eval.av_models import load_video_embedder
from foleyflow.eval.baselines import nearest_neighbours, retrieval_set
from foleyflow.eval.run import run_evaluation
from foleyflow.eval.synthetic import labelled_events_clip
from foleyflow.media import write_audio, write_video
from foleyflow.models.av_ssl import AudioEncoderConfig, SemanticAVConfig, SemanticAVModel, save_av_model
from foleyflow.models.visual import SemanticEncoderConfig

SR = 16000
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 40)}


def test_nearest_neighbours_is_cosine():
    pool = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    queries = np.array([[10.0, 0.5], [0.1, 3.0], [2.0, 2.1]])
    assert nearest_neighbours(queries, pool).tolist() == [0, 1, 2]           # not the largest dot product (2)
    assert nearest_neighbours(queries, pool * [[7.0], [1.0], [0.1]]).tolist() == [0, 1, 2]   # scale is ignored
    with pytest.raises(EvalError):
        nearest_neighbours(queries, np.zeros((0, 2)))
    with pytest.raises(EvalError):
        nearest_neighbours(queries, np.zeros((3, 5)))


def test_retrieval_set_borrows_the_nearest_clip_audio():
    ref = {"a": lambda: (np.zeros((2, 100)), SR), "b": lambda: (np.zeros((2, 300)), SR)}
    train = {"t0": lambda: (np.full((2, 200), 0.5), SR), "t1": lambda: (np.full((2, 200), -0.25), SR),
             "t2": lambda: (np.ones((2, 200)), SR)}
    emb_train = {"t0": np.array([1.0, 0.0]), "t1": np.array([0.0, 1.0])}   # t2 has no video: never chosen
    rset, match = retrieval_set(ref, {"a": np.array([0.2, 1.0]), "b": np.array([1.0, 0.1])}, train, emb_train)
    assert match == {"a": "t1", "b": "t0"}
    a, _ = rset["a"]()
    b, _ = rset["b"]()
    assert a.shape == (2, 100) and np.all(a == -0.25)              # cut to the clip's length
    assert b.shape == (2, 300) and np.all(b[:, :200] == 0.5) and not b[:, 200:].any()   # zero-padded
    with pytest.raises(EvalError, match="no training clip"):
        retrieval_set(ref, {"a": np.ones(2)}, train, {"zz": np.ones(2)})


def tiny_encoder(path):
    torch.manual_seed(0)
    model = SemanticAVModel(SemanticAVConfig(
        visual=SemanticEncoderConfig(image_size=16, channels=(8, 8), embed_dim=16),
        audio=AudioEncoderConfig(n_mels=16, channels=(8, 8), time_downsample=4, embed_dim=16)))
    return save_av_model(path, model)


def solid_video(path, colour, seconds=2.5, fps=8):
    frames = [np.full((32, 32, 3), colour, np.uint8) for _ in range(int(seconds * fps))]
    return write_video(path, frames, fps, crf=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """ref/ (3 clips with videos in video/) and train/ (4 clips of which 3 share a colour and the audio of one
    reference clip, a copy at half level)."""
    root = tmp_path_factory.mktemp("retrieval")
    for d in ("ref", "truth", "video", "train"):
        (root / d).mkdir()
    for i, colour in enumerate(("red", "green", "blue")):
        x, events = labelled_events_clip(i, duration_s=2.5, num_events=4, continuous=False)
        write_audio(root / "ref" / f"c{i}.wav", x, SR)
        (root / "truth" / f"c{i}.json").write_text(json.dumps([e.to_json() for e in events]))
        solid_video(root / "video" / f"c{i}.mp4", COLOURS[colour])
        write_audio(root / "train" / f"t_{colour}.wav", 0.5 * x, SR)
        solid_video(root / "train" / f"t_{colour}.mp4", COLOURS[colour])
    write_audio(root / "train" / "t_yellow.wav", labelled_events_clip(9, duration_s=2.5, num_events=4)[0], SR)
    solid_video(root / "train" / "t_yellow.mp4", COLOURS["yellow"])
    write_audio(root / "train" / "no_video.wav", np.zeros((2, SR)), SR)
    tiny_encoder(root / "semantic_av.safetensors")
    return root


def test_video_embedder(world):
    embed = load_video_embedder(world / "semantic_av.safetensors")
    e = embed(world / "video" / "c0.mp4")
    assert e.shape == (16,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    assert embed.identity["kind"] == "semantic" and len(embed.identity["sha256"]) == 64


def test_run_with_retrieval_baseline(world):
    embed = load_video_embedder(world / "semantic_av.safetensors")
    report = run_evaluation(world / "ref", world / "ref", truth_dir=world / "truth", video_dir=world / "video",
                            train_dir=world / "train", retrieval_embedder=embed)
    info = report["settings"]["retrieval"]
    assert info["matches"] == {"c0": "t_red", "c1": "t_green", "c2": "t_blue"} and info["train_clips"] == 4
    s = report["systems"]
    assert "retrieval" in s and "retrieval" not in report["skipped"]
    assert s["retrieval"]["onset_f1@50ms"] >= 0.95 > s["shuffled"]["onset_f1@50ms"]   # the right clips' audio
    assert "video_embeddings" in report["timings_s"]["retrieval_embeddings"]


def test_retrieval_skipped_or_refused(world):
    embed = load_video_embedder(world / "semantic_av.safetensors")
    report = run_evaluation(world / "ref", world / "ref", train_dir=world / "train", retrieval_embedder=embed)
    assert "--video" in report["skipped"]["retrieval"] and "retrieval" not in report["systems"]
    assert "--retrieval-encoder" in run_evaluation(world / "ref", world / "ref")["skipped"]["retrieval"]
    with pytest.raises(EvalError, match="retrieve each clip itself"):
        run_evaluation(world / "ref", world / "ref", video_dir=world / "video", train_dir=world / "ref",
                       retrieval_embedder=embed)
    with pytest.raises(EvalError, match="no video"):
        run_evaluation(world / "ref", world / "ref", video_dir=world / "train", train_dir=world / "train",
                       retrieval_embedder=embed)


def test_evaluate_command_retrieval(world, tmp_path, run_cli):
    r = run_cli("evaluate", "--generated", world / "ref", "--reference", world / "ref", "--video", world / "video",
                "--train", world / "train", "--retrieval-encoder", world / "semantic_av.safetensors",
                "-o", tmp_path / "rep", "--no-plots")
    assert r.code == 0, r.err
    assert "retrieval" in json.loads((tmp_path / "rep" / "report.json").read_text())["systems"]
    bad = run_cli("evaluate", "--generated", world / "ref", "--reference", world / "ref",
                  "--retrieval-encoder", tmp_path / "missing.safetensors", "-o", tmp_path / "x")
    assert bad.code == 2 and "--retrieval-encoder" in bad.err


def test_caption_retrieval_baseline_for_text_to_audio(world, tmp_path, run_cli):
    """--retrieval-by caption: each clip gets the training clip whose caption is nearest (here the one of its
    colour, so the right audio); the CLI embeds captions with MiniLM; captions are required."""
    rows = [{"id": f"c{i}", "caption": f"a {c} cube knocks"} for i, c in enumerate(("red", "green", "blue"))]
    rows += [{"id": f"t_{c}", "caption": f"the {c} cube, knocking"} for c in ("red", "green", "blue", "yellow")]
    text = tmp_path / "captions.jsonl"
    text.write_text("\n".join(json.dumps(r) for r in rows))
    words = ("red", "green", "blue", "yellow")

    def embed(texts):
        return np.array([[float(w in t) for w in words] for t in texts])

    report = run_evaluation(world / "ref", world / "ref", truth_dir=world / "truth", text_file=text,
                            train_dir=world / "train", caption_embedder=embed)
    info = report["settings"]["retrieval"]
    assert info["by"] == "caption" and info["train_clips"] == 4     # no_video.wav has no caption
    assert info["matches"] == {"c0": "t_red", "c1": "t_green", "c2": "t_blue"}
    assert report["systems"]["retrieval"]["onset_f1@50ms"] >= 0.95
    with pytest.raises(EvalError, match="retrieve each clip itself"):
        run_evaluation(world / "ref", world / "ref", text_file=text, train_dir=world / "ref", caption_embedder=embed)
    r = run_cli("evaluate", "--generated", world / "ref", "--reference", world / "ref", "--text", text,
                "--train", world / "train", "--retrieval-by", "caption", "-o", tmp_path / "rep", "--no-plots")
    assert r.code == 0, r.err
    got = json.loads((tmp_path / "rep" / "report.json").read_text())["settings"]["retrieval"]["matches"]
    assert got == {"c0": "t_red", "c1": "t_green", "c2": "t_blue"}
    bad = run_cli("evaluate", "--generated", world / "ref", "--reference", world / "ref", "--retrieval-by",
                  "caption", "-o", tmp_path / "x")
    assert bad.code == 2 and "needs --train" in bad.err
