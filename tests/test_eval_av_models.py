"""Evaluation-model loaders (foleyflow/eval/av_models.py): tiny models saved to tmp_path and loaded back, the DeSync
sign convention against the sync recipe's own labels, the frame reader and the IB-style embedders."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from foleyflow.data.av_clips import AVClip
from foleyflow.errors import CheckpointError, EvalError
from foleyflow.eval.av_models import (SyncOffsetClassifier, frame_reader, load_av_embedding,
                                      load_offset_classifier)
from foleyflow.eval.desync import OFFSETS_S, clip_desync
from foleyflow.models.av_ssl import (AudioEncoderConfig, SemanticAVConfig, SemanticAVModel, SyncAVConfig,
                                     SyncAVModel, pool_segments, save_av_model)
from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig

ROOT = Path(__file__).resolve().parents[1]
FPS, SR = 25, 16000


def tiny_sync_config() -> SyncAVConfig:
    return SyncAVConfig(visual=SyncEncoderConfig(image_size=16, patch_size=16, width=16, depth=1, num_heads=2,
                                                 out_dim=16),
                        audio=AudioEncoderConfig(n_mels=16, channels=(8, 8), time_downsample=4, embed_dim=16),
                        head_width=16, head_depth=1, head_heads=2)


def tiny_semantic_model() -> SemanticAVModel:
    torch.manual_seed(0)
    return SemanticAVModel(SemanticAVConfig(
        visual=SemanticEncoderConfig(image_size=16, channels=(8, 8), embed_dim=16),
        audio=AudioEncoderConfig(n_mels=16, channels=(8, 8), time_downsample=4, embed_dim=16)))


def flash_click(duration_s: float, flash_s: float, click_s: float, size: int = 16):
    """(T, H, W, 3) frames, black but one white frame at flash_s; (N,) audio, silent but one click at click_s."""
    frames = np.zeros((int(round(duration_s * FPS)), size, size, 3), np.uint8)
    frames[int(round(flash_s * FPS))] = 255
    audio = np.zeros(int(round(duration_s * SR)), np.float32)
    audio[int(round(click_s * SR))] = 1.0
    return frames, audio


class OracleSync(torch.nn.Module):
    """Reads the offset off a flash and a click and scores the recipe's classes (recipe convention: class k = the
    audio window starts offsets_s[k] s after the video window): offset = flash time - click time in the windows."""

    def __init__(self):
        super().__init__()
        self.cfg = tiny_sync_config()

    def forward(self, frames, audio):  # frames (B, T, 3, H, W), audio (B, [C,] N)
        audio = audio.mean(1) if audio.ndim == 3 else audio
        t_flash = frames.float().mean((2, 3, 4)).argmax(1) / FPS
        t_click = audio.abs().argmax(1) / SR
        grid = torch.tensor(self.cfg.offsets_s)
        return -(grid[None] - (t_flash - t_click)[:, None]).abs()


def test_oracle_reads_the_recipe_labels():
    """The oracle's convention is the recipe's: on the recipe's own batches it predicts the label it was given."""
    spec = importlib.util.spec_from_file_location("train_sync_encoder", ROOT / "recipes" / "train_sync_encoder.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = recipe  # dataclasses look their module up while the class is built
    spec.loader.exec_module(recipe)
    frames, audio = flash_click(8.0, 4.0, 4.0)
    clip = AVClip(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),
                  torch.from_numpy(np.stack([audio, audio])), FPS, SR)
    cfg = recipe.TrainConfig(model=tiny_sync_config(), batch_size=64)
    f, a, labels, *_ = recipe.make_batch([clip], cfg, np.random.default_rng(0))
    seen = (f.amax((1, 2, 3, 4)) > 128) & (a.abs().amax((1, 2)) > 0.5)  # flash and click inside both windows
    assert seen.sum() >= 10 and len(set(labels[seen].tolist())) >= 5
    pred = OracleSync()(f, a).argmax(1)
    assert torch.equal(pred[seen], labels[seen])


@pytest.mark.parametrize("lag_s", [0.4, -0.6, 0.0, 2.0, -2.0])
def test_desync_sign_convention(lag_s):
    """Audio heard lag_s after the video event gives a DeSync offset of +lag_s (desync.py: positive = audio lags)."""
    clf = SyncOffsetClassifier(OracleSync())
    frames, audio = flash_click(4.8, 2.4, 2.4 + lag_s)
    assert clip_desync("x", frames, audio, clf).offsets_s == [pytest.approx(lag_s)]


def test_offset_classifier_round_trip(tmp_path):
    torch.manual_seed(0)
    model = SyncAVModel(tiny_sync_config()).eval()
    path = save_av_model(tmp_path / "offset.safetensors", model)
    clf = load_offset_classifier(path)
    assert (clf.sample_rate, clf.video_fps, clf.frame_size) == (SR, FPS, 16)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (120, 16, 16, 3), dtype=np.uint8)
    audio = rng.standard_normal(int(4.8 * SR)).astype(np.float32) * 0.1
    scores = clf(frames, audio)
    assert scores.shape == (len(OFFSETS_S),)
    with torch.no_grad():
        direct = model(torch.from_numpy(frames).permute(0, 3, 1, 2)[None], torch.from_numpy(audio)[None])[0]
    np.testing.assert_allclose(scores, direct.numpy()[::-1], rtol=1e-4, atol=1e-5)  # symmetric grid: reversed
    # a window one frame and a few samples short is padded, not refused
    assert clf(frames[:-1], audio[:-100]).shape == (21,)
    with pytest.raises(EvalError):
        clf(frames[..., 0], audio)


def test_offset_classifier_refuses_other_checkpoints(tmp_path):
    path = save_av_model(tmp_path / "sem.safetensors", tiny_semantic_model())
    with pytest.raises(CheckpointError):
        load_offset_classifier(path)
    cfg = tiny_sync_config()
    cfg.offsets_s = (0.0, 0.2, 0.4)
    with pytest.raises(EvalError, match="do not cover"):
        SyncOffsetClassifier(SyncAVModel(cfg))


def write_clip(folder: Path, name: str, colour, n: int = 16, fps: int = 8) -> Path:
    from foleyflow.media import write_video

    folder.mkdir(exist_ok=True)
    frames = [np.full((32, 32, 3), colour, np.uint8) for _ in range(n)]
    return write_video(folder / f"{name}.mp4", frames, fps, crf=5)


def test_frame_reader(tmp_path):
    write_clip(tmp_path / "v", "a", (200, 30, 30), n=16, fps=8)
    read = frame_reader(tmp_path / "v", 25, 24)
    frames = read("a")
    assert frames.dtype == np.uint8 and frames.shape == (50, 24, 24, 3)
    assert frames[..., 0].mean() > 150 and frames[..., 1].mean() < 80
    assert read("a") is frames  # cached
    with pytest.raises(EvalError, match="no video"):
        read("missing")
    with pytest.raises(EvalError, match="not found"):
        frame_reader(tmp_path / "nope", 25, 24)


def test_av_embedding_round_trip(tmp_path):
    model = tiny_semantic_model().eval()
    path = save_av_model(tmp_path / "av.safetensors", model)
    write_clip(tmp_path / "v", "red", (220, 20, 20))
    video_embedding, audio_embedder = load_av_embedding(path, tmp_path / "v")
    v = video_embedding("red")
    assert v.shape == (16,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():
        frames = torch.from_numpy(frame_reader(tmp_path / "v", 8, 16)("red")).permute(0, 3, 1, 2)[None]
        np.testing.assert_allclose(v, pool_segments(model.visual(frames), 1)[0, 0].numpy(), atol=1e-5)
    rng = np.random.default_rng(1)
    mono16k = rng.standard_normal(16000) * 0.1
    a = audio_embedder(np.stack([mono16k, mono16k]), 16000)  # stereo is mixed to mono
    with torch.no_grad():
        direct = pool_segments(model.audio_head(model.audio(torch.tensor(mono16k[None], dtype=torch.float32))), 1)
    np.testing.assert_allclose(a, direct[0, 0].numpy(), atol=1e-5)
    a48 = audio_embedder(np.repeat(mono16k, 3), 48000)  # resampled to the model's rate
    assert a48.shape == (16,) and np.linalg.norm(a48) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(EvalError):
        audio_embedder(np.zeros((0,)), 16000)


def test_motion_input(tmp_path):
    from foleyflow.eval.av_models import MOTION_GAIN, motion_frames

    frames = np.zeros((4, 8, 8, 3), np.uint8)
    frames[2, 2:4, 2:4] = 30                      # a small grey square appears in frame 2 only
    m = motion_frames(frames)
    assert m.shape == frames.shape and m.dtype == np.uint8
    assert m[2, 2, 2, 0] == 30 and m[2, 2, 2, 1] == 30 * MOTION_GAIN and m[2, 2, 2, 2] == 30 * MOTION_GAIN
    assert m[1, 2, 2, 2] == 30 * MOTION_GAIN and m[3, 2, 2, 1] == 30 * MOTION_GAIN and not m[0].any()
    # the checkpoint's provenance tells the loader to apply it
    torch.manual_seed(0)
    model = SyncAVModel(tiny_sync_config()).eval()
    path = save_av_model(tmp_path / "m.safetensors", model, provenance={"frame_input": "motion"})
    clf = load_offset_classifier(path)
    assert clf.frame_input == "motion"
    rng = np.random.default_rng(0)
    f = rng.integers(0, 256, (120, 16, 16, 3), dtype=np.uint8)
    a = rng.standard_normal(int(4.8 * SR)).astype(np.float32)
    with torch.no_grad():
        direct = model(torch.from_numpy(motion_frames(f)).permute(0, 3, 1, 2)[None], torch.from_numpy(a)[None])[0]
    np.testing.assert_allclose(clf(f, a), direct.numpy()[::-1], rtol=1e-4, atol=1e-5)
    with pytest.raises(EvalError):
        SyncOffsetClassifier(model, "depth")
