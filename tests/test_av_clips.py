"""Synthetic audio-visual clips, the stop-gap PyAV clip loader, manifests and windows."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from foleyflow.data.av_clips import (ClipSource, audio_window, bouncing_square_clip, frame_window, load_clip,
                                     video_entries)
from foleyflow.errors import FoleyError


def test_synthetic_clip_is_seeded_and_has_bounce_sounds():
    a, b = bouncing_square_clip(1, 2.0, size=32), bouncing_square_clip(1, 2.0, size=32)
    c = bouncing_square_clip(2, 2.0, size=32)
    assert a.frames.shape == (50, 3, 32, 32) and a.frames.dtype == torch.uint8
    assert a.audio.shape == (2, 32000) and a.audio.dtype == torch.float32
    assert torch.equal(a.frames, b.frames) and torch.equal(a.audio, b.audio)
    assert not torch.equal(a.frames, c.frames)
    assert a.audio.abs().max() > 0.1  # at least one bounce tone in 2 s
    assert a.duration_s == pytest.approx(2.0)


def test_windows():
    clip = bouncing_square_clip(0, 2.0, size=16)
    w8 = frame_window(clip, 0.5, 1.0, 8)
    assert w8.shape == (8, 3, 16, 16)
    assert torch.equal(w8[1], clip.frames[int((0.5 + 1 / 8) * 25)])
    assert torch.equal(frame_window(clip, 0.0, 2.0, 25), clip.frames)
    aw = audio_window(clip, -0.25, 1.0)
    assert aw.shape == (2, 16000)
    assert torch.all(aw[:, :4000] == 0) and torch.equal(aw[:, 4000:], clip.audio[:, :12000])


def test_load_clip_round_trip(tmp_path):
    from foleyflow.media import write_video

    clip = bouncing_square_clip(5, 2.0, size=32)
    path = write_video(tmp_path / "c.mp4", clip.frames.permute(0, 2, 3, 1).numpy(), 25,
                       audio=clip.audio.numpy(), sample_rate=16000)
    (tmp_path / "a.wav").write_bytes(b"")  # an audio-only entry is skipped by the visual recipes
    lines = [{"id": "c", "video": "c.mp4", "caption": "a square"}, {"id": "only-audio", "audio": "a.wav"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rows = video_entries(tmp_path / "m.jsonl")
    assert [r.id for r in rows] == ["c"] and rows[0].video == str(tmp_path / "c.mp4")
    loaded = ClipSource(manifest=str(tmp_path / "m.jsonl"), size=32)[0]
    assert len(ClipSource(manifest=str(tmp_path / "m.jsonl"), size=32)) == 1
    assert loaded.frames.shape == (50, 3, 32, 32)
    assert abs(loaded.audio.shape[1] - 32000) <= 1024  # within one AAC frame
    err = (loaded.frames.float() - clip.frames.float()).abs().mean()
    assert err < 12  # H.264 at crf 23 on a tiny frame
    again = load_clip(path, size=16)
    assert again.frames.shape[2:] == (16, 16)
    assert torch.allclose(again.audio, loaded.audio)


def test_manifest_errors(tmp_path):
    with pytest.raises(FoleyError, match="not found"):
        video_entries(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    (tmp_path / "a.wav").write_bytes(b"")
    bad.write_text('{"id": "x", "audio": "a.wav"}\n')
    with pytest.raises(FoleyError, match="no clip with a video"):
        video_entries(bad)
    with pytest.raises(FoleyError, match="manifest or a number"):
        ClipSource()


def test_clip_source_cache_is_bounded():
    src = ClipSource(synthetic_clips=5, duration_s=1.0, size=16, cache_clips=2)
    assert len(src) == 5
    first = src[0]
    for i in range(5):
        src[i]
    assert len(src.cache) == 2
    assert torch.equal(src[0].frames, first.frames)  # regenerated identically
    assert np.isfinite(src[4].audio.numpy()).all()


def test_real_clip_through_encoders(shared_media):
    """A real 720p, 5.1-audio clip: decoded at 25 fps / 64 px, then through tiny semantic and sync encoders."""
    from foleyflow.models.visual import (SemanticEncoder, SemanticEncoderConfig, SyncEncoder, SyncEncoderConfig,
                                         clip_seq_len, sync_seq_len)

    clip = load_clip(shared_media / "bigbuckbunny.mp4", size=64)
    assert clip.frames.shape == (132, 3, 64, 64) and clip.audio.shape[0] == 2
    assert abs(clip.audio.shape[1] / 16000 - 5.31) < 0.05
    frames8 = frame_window(clip, 0.0, clip.duration_s, 8)[None]
    sem = SemanticEncoder(SemanticEncoderConfig(image_size=32, channels=(8,), embed_dim=8)).eval()
    syn = SyncEncoder(SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=8)).eval()
    with torch.no_grad():
        assert sem(frames8).shape == (1, clip_seq_len(5.28), 8)
        assert syn(clip.frames[None]).shape == (1, sync_seq_len(5.28), 8) == (1, 120, 8)
    with pytest.raises(FoleyError, match="no audio stream"):
        load_clip(shared_media / "carphone_pristine.mp4")


def test_synthetic_bounces_are_heard_when_seen():
    """Every direction reversal of the square (seen in the frames) has a tone burst starting within one frame."""
    clip = bouncing_square_clip(7, 4.0, size=64)
    mask = (clip.frames.float().amax(1) > 40).float()  # (T, H, W): the square
    ys, xs = torch.arange(64).float()[:, None], torch.arange(64).float()[None, :]
    cx = (mask * xs).sum((1, 2)) / mask.sum((1, 2))
    cy = (mask * ys).sum((1, 2)) / mask.sum((1, 2))
    seen = []
    for c in (cx, cy):
        v = c.diff()
        seen += [(i + 1) / 25 for i in range(len(v) - 1) if v[i] * v[i + 1] < 0]
    env = clip.audio.abs().sum(0).unfold(0, 160, 160).amax(1)  # 10 ms peak envelope
    onsets = [k * 0.01 for k in range(1, len(env)) if env[k] > 0.05 >= env[k - 1]]
    assert len(seen) >= 3 and onsets
    for t in seen:
        assert min(abs(t - o) for o in onsets) <= 0.05, (t, onsets)
