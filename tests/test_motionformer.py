"""MotionFormer (Synchformer's visual branch): parity with the reference fixture, released layout, adapter use."""
from __future__ import annotations

import json

import pytest
import torch

from foleyflow.checkpoint import load_into
from foleyflow.models.adapters import SynchformerAdapter, SynchformerAdapterConfig
from foleyflow.models.motionformer import MotionFormer, MotionFormerConfig

PREFIX = "net.vfeat_extractor."


@pytest.fixture(scope="module")
def fixture_tensors(mmaudio_fixtures):
    from safetensors.torch import load_file

    return load_file(str(mmaudio_fixtures / "mmaudio_synchformer_visual_tiny.safetensors"))


def tiny_reference(tensors) -> MotionFormer:
    model = MotionFormer(MotionFormerConfig(width=96, depth=2, num_heads=2)).eval()
    load_into(model, {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}, what="synchformer")
    return model


def test_matches_reference_synchformer_visual(fixture_tensors):
    model = tiny_reference(fixture_tensors)
    with torch.no_grad():
        out = model(fixture_tensors["in.video"].float())
    ref = fixture_tensors["out.features"]
    assert out.shape == ref.shape == (1, 1, 8, 96)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_reference_through_adapter(fixture_tensors):
    """The adapter's segmenting feeds the reference network exactly as MMAudio does."""
    model = tiny_reference(fixture_tensors)
    adapter = SynchformerAdapter(model, SynchformerAdapterConfig(dim=96))
    video = fixture_tensors["in.video"].float()[0]  # (1, 16, 3, 224, 224): one segment, already normalised
    with torch.no_grad():
        out = adapter(video, preprocessed=True)
    assert out.shape == (1, 8, 96)
    assert torch.allclose(out, fixture_tensors["out.features"].reshape(1, 8, 96), atol=1e-5)


def test_default_config_has_the_released_layout(mmaudio_fixtures):
    shapes = json.loads((mmaudio_fixtures / "mmaudio_released_ext_shapes.json").read_text())
    released = {k[len("vfeat_extractor."):]: tuple(v) for k, v in shapes["synchformer"].items()}
    with torch.device("meta"):
        model = MotionFormer()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == released
    assert sum(p.numel() for p in model.parameters()) == shapes["synchformer_num_params"]


def test_segments_are_independent_and_trainable():
    torch.manual_seed(0)
    model = MotionFormer(MotionFormerConfig(image_size=32, width=32, depth=1, num_heads=2))
    x = torch.randn(2, 3, 16, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 3, 8, 32)
    with torch.no_grad():
        assert torch.allclose(model(x[1:, 2:]), out[1:, 2:], atol=1e-5)
    out.square().mean().backward()
    assert model.blocks[0].timeattn.qkv.weight.grad is not None
    assert model.patch_embed.proj.weight.grad is None  # the unused 2-D embedding stays frozen
