"""The mel-frame codec: exact packing of log-mel frames into tokens, loaded through the VAE's loader."""
import pytest
import torch

from foleyflow.errors import CheckpointError
from foleyflow.models.mel_codec import MelCodecConfig, MelFrameCodec, save_mel_codec
from foleyflow.models.vae import decode_channels, encode_channels, load_vae, num_latent_frames, samples_per_latent


def test_round_trip_is_exact_and_frames_stay_in_order(tmp_path):
    path = save_mel_codec(tmp_path / "codec.safetensors", MelCodecConfig(frames_per_token=2))
    codec = load_vae(path)
    assert isinstance(codec, MelFrameCodec)
    assert samples_per_latent(codec.cfg) == 512 and num_latent_frames(16000 * 8, codec.cfg) == 250
    mel = torch.randn(2, 2, 80, 500, generator=torch.Generator().manual_seed(0))
    post = encode_channels(codec, mel)
    assert post.mean.shape == (2, 320, 250) and float(post.std.max()) < 1e-6
    # token 3 of the right channel holds frames 6 and 7 of that channel, frame-major
    assert torch.equal(post.mean[1, 160:240, 3], mel[1, 1, :, 6])
    assert torch.equal(post.mean[1, 240:320, 3], mel[1, 1, :, 7])
    assert torch.equal(decode_channels(codec, post.mean), mel)


def test_bad_configs_and_shapes_are_refused(tmp_path):
    with pytest.raises(ValueError):
        MelFrameCodec(MelCodecConfig(n_mels=64))
    with pytest.raises(ValueError):
        MelFrameCodec(MelCodecConfig()).encode(torch.zeros(1, 80, 5))   # not a multiple of 2 frames
    from foleyflow.checkpoint import save_checkpoint
    bad = save_checkpoint(tmp_path / "bad.safetensors", {}, kind="mel_codec", config={"frames_per_token": 0})
    with pytest.raises(CheckpointError, match="mel codec config"):
        load_vae(bad)
