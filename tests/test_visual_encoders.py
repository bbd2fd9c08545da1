"""Visual encoders (semantic 8 fps, sync 25 fps in Synchformer's layout), the SSL audio branch and their checkpoints."""
from __future__ import annotations

import pytest
import torch

from foleyflow.errors import CheckpointError, ConfigError, FoleyError
from foleyflow.models.av_ssl import (AudioEncoder, AudioEncoderConfig, SemanticAVConfig, SemanticAVModel,
                                     SyncAVConfig, SyncAVModel, info_nce, load_semantic_encoder, load_semantic_model,
                                     load_sync_encoder, load_sync_model, save_av_model)
from foleyflow.models.visual import (FrameError, SemanticEncoder, SemanticEncoderConfig, SyncEncoder,
                                     SyncEncoderConfig, clip_seq_len, num_sync_segments, resize_frames,
                                     segment_frames, sync_seq_len, sync_token_times)


def tiny_semantic(**kw) -> SemanticEncoderConfig:
    return SemanticEncoderConfig(**{"image_size": 32, "channels": (8, 16), "embed_dim": 24, **kw})


def tiny_sync(**kw) -> SyncEncoderConfig:
    return SyncEncoderConfig(**{"image_size": 32, "patch_size": 16, "width": 32, "depth": 1, "num_heads": 2,
                                "out_dim": 20, **kw})


def tiny_audio(**kw) -> AudioEncoderConfig:
    return AudioEncoderConfig(**{"channels": (8, 16), "n_mels": 32, "embed_dim": 16, **kw})


@pytest.mark.parametrize("duration_s, clip, sync", [(8.0, 64, 192), (10.0, 80, 240), (4.8, 38, 112), (1.0, 8, 16),
                                                    (0.64, 5, 8), (0.6, 4, 0), (2.5, 20, 48), (1.16, 9, 16), (5.0, 40, 112)])
def test_token_count_rules(duration_s, clip, sync):
    assert clip_seq_len(duration_s) == clip
    assert sync_seq_len(duration_s) == sync
    assert sync_seq_len(duration_s) == max(0, (int(round(duration_s * 25, 6)) - 16) // 8 + 1) * 8


@pytest.mark.parametrize("num_frames", [16, 17, 23, 24, 40, 57, 200])
def test_sync_encoder_token_count_matches_rule(num_frames):
    torch.manual_seed(0)
    enc = SyncEncoder(tiny_sync()).eval()
    frames = torch.randint(0, 256, (2, num_frames, 3, 36, 48), dtype=torch.uint8)
    with torch.no_grad():
        out = enc(frames)
    assert out.shape == (2, num_sync_segments(num_frames) * 8, 20) == (2, enc.num_tokens(num_frames), 20)
    assert torch.isfinite(out).all()


def test_sync_segments_are_independent_and_chunking_is_exact():
    """Token block s depends only on frames [8 s, 8 s + 16): changing later frames leaves earlier segments alone."""
    torch.manual_seed(0)
    enc = SyncEncoder(tiny_sync(segments_per_batch=2)).eval()
    frames = torch.rand(1, 40, 3, 32, 32)  # 4 segments
    with torch.no_grad():
        base = enc(frames)
        unchunked = SyncEncoder(tiny_sync(segments_per_batch=64)).eval()
        unchunked.load_state_dict(enc.state_dict())
        assert torch.allclose(unchunked(frames), base, atol=1e-5)
        changed = frames.clone()
        changed[:, 32:] = torch.rand(1, 8, 3, 32, 32)  # frames only in the last segment [24, 40)
        out = enc(changed)
    assert torch.allclose(out[:, :24], base[:, :24], atol=1e-6)
    assert not torch.allclose(out[:, 24:], base[:, 24:], atol=1e-4)


def test_segment_frames_layout_and_token_times():
    frames = torch.arange(40).float().reshape(1, 40, 1, 1, 1).expand(1, 40, 3, 2, 2)
    seg = segment_frames(frames)
    assert seg.shape == (1, 4, 16, 3, 2, 2)
    assert seg[0, :, 0, 0, 0, 0].tolist() == [0, 8, 16, 24] and seg[0, 2, 15, 0, 0, 0].item() == 31
    times = sync_token_times(3)
    assert times.shape == (24,)
    assert times[0].item() == pytest.approx(1 / 25) and times[8].item() == pytest.approx(9 / 25)
    with pytest.raises(FrameError, match="at least 16 frames"):
        segment_frames(frames[:, :15])


def test_semantic_encoder_per_frame_normalised():
    torch.manual_seed(0)
    enc = SemanticEncoder(tiny_semantic()).eval()
    frames = torch.randint(0, 256, (2, 5, 3, 40, 60), dtype=torch.uint8)
    with torch.no_grad():
        out = enc(frames)
        alone = enc(frames[:1, 2:3])
        as_float = enc(frames.float() / 255)
    assert out.shape == (2, 5, 24)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2, 5), atol=1e-5)
    assert torch.allclose(alone[0, 0], out[0, 2], atol=1e-5)  # per frame, batch-independent (GroupNorm)
    assert torch.allclose(as_float, out, atol=1e-5)


def test_resize_modes():
    frames = torch.zeros(1, 1, 3, 40, 80)
    frames[..., 10:] = 1.0  # white except the 10 leftmost columns
    stretch = resize_frames(frames, 16, "stretch")
    crop = resize_frames(frames, 16, "center_crop")
    assert stretch.shape == crop.shape == (1, 1, 3, 16, 16)
    # stretch keeps the whole width (7/8 of it white); the centre crop sees columns 20..60 of 80: all white
    assert stretch[0, 0, 0, 0].mean().item() == pytest.approx(0.875, abs=0.04)
    assert stretch[0, 0, 0, 0, 0].item() < 0.05
    assert crop.min().item() > 0.99


def test_bad_frames():
    enc = SemanticEncoder(tiny_semantic())
    with pytest.raises(FrameError, match=r"\(B, T, 3, H, W\)"):
        enc(torch.zeros(2, 3, 32, 32))
    with pytest.raises(FrameError, match="uint8 or float"):
        enc(torch.zeros(1, 2, 3, 8, 8, dtype=torch.int32))
    assert issubclass(FrameError, FoleyError)
    with pytest.raises(ConfigError):
        SyncEncoderConfig(image_size=100, patch_size=16)


def test_audio_encoder_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ref = torch.tensor(librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmax=8000.0))
    assert torch.allclose(AudioEncoder(AudioEncoderConfig()).mel_fb, ref, atol=1e-7)


@pytest.mark.parametrize("num_samples", [16000, 76800, 128000])
def test_audio_encoder_rate(num_samples):
    enc = AudioEncoder(tiny_audio())
    assert enc.cfg.token_rate == 25.0
    out = enc(torch.randn(2, 2, num_samples) * 0.1)
    assert out.shape[0] == 2 and out.shape[2] == 16
    assert abs(out.shape[1] - num_samples / 16000 * 25) <= 1


def test_info_nce_prefers_matching_pairs():
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(2.0)
    good = info_nce(a, a, scale)
    bad = info_nce(a, a.roll(1, 0), scale)
    assert good["contrastive/infonce"] < bad["contrastive/infonce"]
    assert good["contrastive/acc"].item() == 1.0


def test_semantic_av_model_trains_one_step():
    torch.manual_seed(0)
    model = SemanticAVModel(SemanticAVConfig(visual=tiny_semantic(), audio=tiny_audio(), segments=2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = model(torch.rand(3, 8, 3, 32, 32), torch.randn(3, 16000) * 0.1)
    losses["contrastive/infonce"].backward()
    assert all(p.grad is not None for p in model.parameters())
    opt.step()
    assert model.similarity(torch.rand(3, 8, 3, 32, 32), torch.randn(3, 16000)).shape == (3,)


def test_sync_av_model_logits_and_offsets():
    torch.manual_seed(0)
    model = SyncAVModel(SyncAVConfig(visual=tiny_sync(), audio=tiny_audio(), head_width=32, head_depth=1,
                                     head_heads=2, window_s=1.28))
    frames, audio = torch.rand(2, 32, 3, 32, 32), torch.randn(2, 20480) * 0.1
    logits = model(frames, audio)
    assert logits.shape == (2, 21) and model.num_classes == 21
    logits.sum().backward()
    assert model.visual.patch.weight.grad is not None and model.audio.proj.weight.grad is not None
    off = model.predict_offset_s(frames, audio)
    assert all(round(x, 1) in model.cfg.offsets_s for x in off.tolist())


def test_checkpoints_round_trip_and_refuse_wrong_kind(tmp_path):
    torch.manual_seed(0)
    sem = SemanticAVModel(SemanticAVConfig(visual=tiny_semantic(), audio=tiny_audio())).eval()
    syn = SyncAVModel(SyncAVConfig(visual=tiny_sync(), audio=tiny_audio(), head_width=32, head_depth=1,
                                   head_heads=2)).eval()
    p_sem = save_av_model(tmp_path / "sem.safetensors", sem, provenance={"data": "test"})
    p_syn = save_av_model(tmp_path / "syn.safetensors", syn)
    frames8, frames25 = torch.rand(1, 4, 3, 32, 32), torch.rand(1, 24, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_semantic_encoder(p_sem)(frames8), sem.visual(frames8))
        assert torch.equal(load_sync_encoder(p_syn)(frames25), syn.visual(frames25))
        assert torch.equal(load_sync_model(p_syn)(frames25, torch.zeros(1, 15360)), syn(frames25, torch.zeros(1, 15360)))
    assert load_semantic_model(p_sem).cfg == sem.cfg
    ident = load_sync_encoder(p_syn).identity
    assert ident["kind"] == "sync" and ident["fps"] == 25 and ident["dim"] == 20 and len(ident["sha256"]) == 64
    assert load_semantic_encoder(p_sem).identity["sha256"] != ident["sha256"]
    with pytest.raises(CheckpointError, match="is a 'semantic_av' checkpoint, expected 'sync_av'"):
        load_sync_encoder(p_sem)
    with pytest.raises(CheckpointError, match="expected 'semantic_av'"):
        load_semantic_encoder(p_syn)


def test_first_last_offsets_cover_clip_ends():
    torch.manual_seed(0)
    model = SyncAVModel(SyncAVConfig(visual=tiny_sync(), audio=tiny_audio(), head_width=32, head_depth=1,
                                     head_heads=2, window_s=1.28)).eval()
    frames, audio = torch.rand(2, 60, 3, 32, 32), torch.randn(2, 2, 38400) * 0.1  # 2.4 s
    with torch.no_grad():
        out = model.first_last_offsets_s(frames, audio)
        last = model.predict_offset_s(frames[:, 28:60], audio[..., 17920:17920 + 20480])
    assert out.shape == (2, 2) and torch.equal(out[:, 1], last)
    with pytest.raises(ValueError, match="at least 1.28 s"):
        model.first_last_offsets_s(frames[:, :20], audio)


def test_prepare_frames_chunking_is_exact():
    from foleyflow.models.visual import normalize_frames, prepare_frames

    frames = torch.randint(0, 256, (2, 70, 3, 24, 40), dtype=torch.uint8)
    whole = normalize_frames(resize_frames(frames.float() / 255, 16, "center_crop"), (0.5,) * 3, (0.5,) * 3)
    chunked = prepare_frames(frames, 16, "center_crop", (0.5,) * 3, (0.5,) * 3, chunk_frames=8)
    assert chunked.shape == (2, 70, 3, 16, 16) and torch.allclose(chunked, whole, atol=1e-6)
    with pytest.raises(FrameError):
        prepare_frames([1, 2], 16, "stretch", (0.5,) * 3, (0.5,) * 3)


def test_sync_segment_contrastive_pools_audio_per_segment():
    torch.manual_seed(0)
    model = SyncAVModel(SyncAVConfig(visual=tiny_sync(), audio=tiny_audio(), head_width=32, head_depth=1,
                                     head_heads=2, window_s=1.28, segment_embed_dim=8))
    frames, audio = torch.rand(2, 32, 3, 32, 32), torch.randn(2, 20480) * 0.1  # 3 segments
    v, a = model.visual(frames), model.audio(audio)
    out = model.segment_contrastive(v, a)
    assert set(out) == {"sync/segment_infonce", "sync/segment_acc"} and torch.isfinite(out["sync/segment_infonce"])
    out["sync/segment_infonce"].backward()
    assert model.seg_v.weight.grad is not None and model.seg_a.weight.grad is not None
    with torch.no_grad():
        v_seg, a_seg = model.segment_embeddings(v, a)
        assert v_seg.shape == a_seg.shape == (2, 3, 8)
        # segment 1 covers frames 8..24 = 0.32..0.96 s: audio tokens (25/s) with centres in that span are 8..23
        expect = torch.nn.functional.normalize(model.seg_a(a[:, 8:24].mean(1)), dim=-1)
        assert torch.allclose(a_seg[:, 1], expect, atol=1e-5)
        expect_v = torch.nn.functional.normalize(model.seg_v(v[:, 16:24].mean(1)), dim=-1)
        assert torch.allclose(v_seg[:, 2], expect_v, atol=1e-5)
    assert not hasattr(SyncAVModel(SyncAVConfig(visual=tiny_sync(), audio=tiny_audio(), head_width=32,
                                                head_depth=1, head_heads=2)), "seg_v")
