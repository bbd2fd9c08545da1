"""The principal-component mel codec: fitting, the projection round trip, the checkpoint, and the pipeline's codec
interface (latent_dim, load_vae)."""
import pytest
import torch

from foleyflow.models.mel_codec import MelCodecConfig, MelFrameCodec, fit_principal_components, save_mel_codec
from foleyflow.models.vae import decode_channels, encode_channels, load_vae


def _low_rank_mels(n=6, t=64, rank=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, 160, generator=g)
    coef = torch.randn(n * t // 2, rank, generator=g)
    tokens = coef @ basis + 3.0                                       # (N * T/2, 160) stacked tokens, rank 5
    raw = MelFrameCodec(MelCodecConfig())
    return raw.decode(tokens.reshape(n, t // 2, 160).transpose(1, 2)), tokens


def test_fit_finds_the_principal_directions_and_the_round_trip_is_exact_at_full_rank(tmp_path):
    mel, tokens = _low_rank_mels()
    mean, basis = fit_principal_components(tokens, 5)
    assert torch.allclose(basis.T @ basis, torch.eye(5), atol=1e-5)                    # orthonormal
    assert torch.allclose(mean, tokens.mean(0), atol=1e-4)
    save_mel_codec(tmp_path / "pca.safetensors", MelCodecConfig(components=5), mean=mean, basis=basis)
    codec = load_vae(tmp_path / "pca.safetensors")
    assert codec.cfg.latent_dim == 5
    z = codec.encode(mel).mean
    assert z.shape == (mel.shape[0], 5, mel.shape[-1] // 2)
    assert torch.allclose(codec.decode(z), mel, atol=1e-3)                             # the data have rank 5
    # fewer components than the data's rank lose what the dropped directions held, and nothing else
    mean3, basis3 = fit_principal_components(tokens, 3)
    small = MelFrameCodec(MelCodecConfig(components=3))
    small.pca_mean.copy_(mean3)
    small.pca_basis.copy_(basis3)
    err = (small.decode(small.encode(mel).mean) - mel).pow(2).mean()
    assert 0 < err < mel.var()
    # stereo through the pipeline's helpers: channel c at [c * latent_dim, ...)
    st = torch.stack([mel[:2], mel[2:4]], dim=1)                                         # (2, 2, 80, T)
    post = encode_channels(codec, st)
    assert post.mean.shape == (2, 10, mel.shape[-1] // 2)
    assert torch.allclose(decode_channels(codec, post.mean), st, atol=1e-3)


def test_bad_component_checkpoints_are_refused(tmp_path):
    mean, basis = torch.zeros(160), torch.zeros(160, 4)
    with pytest.raises(ValueError, match="needs mean"):
        save_mel_codec(tmp_path / "x.safetensors", MelCodecConfig(components=5), mean=mean, basis=basis)
    with pytest.raises(ValueError, match="components must be"):
        MelFrameCodec(MelCodecConfig(components=161))
    raw = MelFrameCodec(MelCodecConfig())
    assert raw.cfg.latent_dim == 160 and not list(raw.buffers())                       # the raw codec is unchanged
