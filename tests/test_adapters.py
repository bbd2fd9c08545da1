"""Adapters: CLIP (1024-d, 8 fps, 384 px stretched) and Synchformer (768-d, 24 tokens/s, 224 px centre crop)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from foleyflow.errors import CheckpointError
from foleyflow.models.adapters import (CLIP_MEAN, CLIP_STD, AdapterError, ClipFrameAdapter, SynchformerAdapter,
                                       clip_adapter_from_weights, synchformer_adapter_from_weights)
from foleyflow.models.visual import (SemanticEncoder, SemanticEncoderConfig, SyncEncoder, SyncEncoderConfig,
                                     clip_seq_len, sync_seq_len)


class StubClip(nn.Module):
    """(N, 3, 384, 384) -> (N, 1024); remembers its last input."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3 * 4 * 4, 1024)
        self.seen = None

    def forward(self, x):
        assert x.shape[1:] == (3, 384, 384), x.shape
        self.seen = x
        return self.proj(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)) * 5.0


class StubSynchformer(nn.Module):
    """(N, 1, 16, 3, 224, 224) -> (N, 1, 8, 768): token j = features of frames 2j, 2j+1 of the segment."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.proj = nn.Linear(3, dim)
        self.seen = None

    def forward(self, x):
        assert x.shape[1:] == (1, 16, 3, 224, 224), x.shape
        self.seen = x
        pairs = x[:, 0].mean(dim=(3, 4)).reshape(x.shape[0], 8, 2, 3).mean(2)  # (N, 8, 3)
        return self.proj(pairs)[:, None]


def test_clip_adapter_shapes_normalisation_and_preprocessing():
    torch.manual_seed(0)
    stub = StubClip()
    adapter = ClipFrameAdapter(stub)
    frames = torch.full((1, 64, 3, 72, 128), 128, dtype=torch.uint8)  # 8 s at 8 fps, 16:9
    frames[..., :8] = 255  # a white strip at the left edge: kept, because CLIP input is stretched, not cropped
    with torch.no_grad():
        out = adapter(frames)
    assert out.shape == (1, 64, 1024) == (1, clip_seq_len(8.0), 1024)
    assert torch.allclose(out.norm(dim=-1), torch.ones(1, 64), atol=1e-5)
    seen = stub.seen[0]  # last chunk's first frame
    mid = torch.tensor(128 / 255)
    expect_mid = (mid - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(seen[:, 192, 192], expect_mid, atol=1e-3)
    expect_white = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(seen[:, 192, 2], expect_white, atol=1e-2)
    assert adapter.fps == 8 and adapter.out_dim == 1024 and adapter.num_tokens(64) == 64


def test_synchformer_adapter_segments_and_token_order():
    torch.manual_seed(0)
    stub = StubSynchformer()
    adapter = SynchformerAdapter(stub)
    t = 200  # 8 s at 25 fps
    # frame k has grey level k / 255 so that each token's input identifies its frames
    frames = torch.arange(t, dtype=torch.uint8).reshape(1, t, 1, 1, 1).expand(1, t, 3, 90, 160).contiguous()
    with torch.no_grad():
        out = adapter(frames)
    assert out.shape == (1, 192, 768) == (1, sync_seq_len(8.0), 768) and adapter.num_tokens(200) == 192
    # token j of segment s equals the stub applied to frames 8s + 2j and 8s + 2j + 1
    s, j = 5, 3
    levels = torch.tensor([8 * s + 2 * j, 8 * s + 2 * j + 1], dtype=torch.float32) / 255
    expect = stub.proj(((levels.mean() - 0.5) / 0.5).expand(3))
    assert torch.allclose(out[0, 8 * s + j], expect, atol=1e-4)


def test_synchformer_adapter_centre_crop():
    stub = StubSynchformer()
    adapter = SynchformerAdapter(stub)
    frames = torch.zeros(1, 16, 3, 90, 160, dtype=torch.uint8)
    frames[..., :30] = 255  # left 30 of 160 columns: outside the central 90 x 90 crop (columns 35..125)
    frames[..., 130:] = 255
    with torch.no_grad():
        adapter(frames)
    assert stub.seen.shape == (1, 1, 16, 3, 224, 224)
    assert torch.allclose(stub.seen, torch.full_like(stub.seen, -1.0), atol=1e-3)  # all black after the crop


def test_adapters_are_interchangeable_with_our_encoders():
    """Same token counts for the same video: the generator only changes its feature dims (1024 / 768)."""
    ours_sem = SemanticEncoder(SemanticEncoderConfig(image_size=32, channels=(8,), embed_dim=16)).eval()
    ours_sync = SyncEncoder(SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16)).eval()
    clip, sync = ClipFrameAdapter(StubClip()), SynchformerAdapter(StubSynchformer())
    for duration in (2.0, 5.0):
        f8 = torch.rand(1, clip_seq_len(duration), 3, 48, 64)
        f25 = torch.rand(1, int(duration * 25), 3, 48, 64)
        with torch.no_grad():
            assert ours_sem(f8).shape[1] == clip(f8).shape[1]
            assert ours_sync(f25).shape[1] == sync(f25).shape[1] == sync_seq_len(duration)
        for enc in (ours_sem, clip):
            assert enc.fps == 8 and enc.num_tokens(f8.shape[1]) == f8.shape[1]
        for enc in (ours_sync, sync):
            assert enc.fps == 25 and enc.num_tokens(f25.shape[1]) == sync_seq_len(duration)


def test_wrong_feature_shapes_are_refused():
    bad_clip = ClipFrameAdapter(lambda x: torch.zeros(x.shape[0], 512))
    with pytest.raises(AdapterError, match=r"expected \(2, 1024\)"):
        bad_clip(torch.rand(1, 2, 3, 8, 8))
    bad_sync = SynchformerAdapter(lambda x: torch.zeros(x.shape[0], 8, 768))
    with pytest.raises(AdapterError, match="expected"):
        bad_sync(torch.rand(1, 16, 3, 8, 8))
    with pytest.raises(TypeError):
        ClipFrameAdapter("not a model")


def test_from_weights_loads_safetensors_strictly(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    trained = StubSynchformer()
    path = tmp_path / "sync.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    adapter = synchformer_adapter_from_weights(path, StubSynchformer())
    frames = torch.rand(1, 24, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(adapter(frames), SynchformerAdapter(trained)(frames))
    assert adapter.identity["sha256"] and adapter.identity["impl"] == "synchformer_adapter"
    with pytest.raises(CheckpointError, match="does not fit"):
        synchformer_adapter_from_weights(path, StubSynchformer(dim=64))
    renamed = tmp_path / "renamed.safetensors"
    save_file({"encoder." + k: v.contiguous() for k, v in StubClip().state_dict().items()}, str(renamed))
    clip = clip_adapter_from_weights(renamed, StubClip(), convert=lambda sd: {k[8:]: v for k, v in sd.items()},
                                     encode=lambda m, x: m(x))
    assert clip(torch.rand(1, 1, 3, 16, 16)).shape == (1, 1, 1024)
    with pytest.raises(CheckpointError, match="safetensors weights only"):
        (tmp_path / "w.pth").write_bytes(b"x")
        clip_adapter_from_weights(tmp_path / "w.pth", StubClip())
    with pytest.raises(CheckpointError, match="not found"):
        clip_adapter_from_weights(tmp_path / "none.safetensors", StubClip())
