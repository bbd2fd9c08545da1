"""Mel VAE: parity with MMAudio's VAE (fixture), released-shape conversion, lengths, stability, checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from foleyflow.audio import log_mel_spectrogram
from foleyflow.checkpoint import load_into, save_checkpoint
from foleyflow.errors import CheckpointError
from foleyflow.models import vae as V


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)


def tiny_cfg(**kw) -> V.VAEConfig:
    return V.VAEConfig(**{"hidden_dim": 8, **kw})


def test_parity_with_mmaudio_vae_fixture(mmaudio_fixtures):
    from safetensors.torch import load_file

    t = load_file(str(mmaudio_fixtures / "mmaudio_vae16k_tiny.safetensors"))
    cfg, state = V.convert_mmaudio_vae({k: v for k, v in t.items() if k.startswith("net.")})
    assert (cfg.hidden_dim, cfg.n_mels, cfg.latent_dim, cfg.ch_mult) == (32, 80, 20, (1, 2, 4))
    vae = V.MelVAE(cfg)
    load_into(vae, state)
    vae.eval()
    with torch.no_grad():
        post = vae.encode(t["in.mel"])
        mel = vae.decode(t["in.z"])
    torch.testing.assert_close(post.mean, t["out.posterior_mean"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(post.std, t["out.posterior_std"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mel, t["out.decoded_mel"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["vae_16k", "vae_44k"])
def test_converter_accounts_for_every_released_key(mmaudio_fixtures, name):
    shapes = json.loads((mmaudio_fixtures / "mmaudio_released_ext_shapes.json").read_text())[name]
    fake = {k: torch.empty(s) for k, s in shapes.items()}
    cfg, state = V.convert_mmaudio_vae(fake)
    assert cfg == V.PRESETS["mmaudio_16k" if name == "vae_16k" else "mmaudio_44k"]
    with torch.device("meta"):
        ours = V.MelVAE(cfg).state_dict()
    assert set(state) == set(ours)
    assert all(tuple(state[k].shape) == tuple(ours[k].shape) for k in ours)


@pytest.mark.parametrize("num_samples", [1, 511, 512, 513, 4000, 16000 + 77])
def test_round_trip_length_follows_convention(num_samples):
    cfg = tiny_cfg()
    vae = V.MelVAE(cfg).eval()
    n_lat = V.num_latent_frames(num_samples, cfg)
    assert n_lat == -(-num_samples // 512)
    wav = torch.zeros(1, 2, n_lat * V.samples_per_latent(cfg))
    wav[..., :num_samples] = 0.1 * torch.randn(1, 2, num_samples, generator=torch.Generator().manual_seed(0))
    mel = log_mel_spectrogram(wav, cfg.mel_setting)
    assert mel.shape[-1] == 2 * n_lat
    with torch.no_grad():
        post = V.encode_channels(vae, mel)
        assert post.mean.shape == (1, 2 * cfg.latent_dim, n_lat)
        out = V.decode_channels(vae, post.mean)
    assert out.shape == mel.shape


@pytest.mark.parametrize("frames", [7, 8, 33])
def test_mel_level_lengths(frames):
    vae = V.MelVAE(tiny_cfg()).eval()
    with torch.no_grad():
        post = vae.encode(torch.randn(2, 80, frames))
        assert post.mean.shape == (2, 20, frames // 2)
        assert vae.decode(post.mean).shape == (2, 80, 2 * (frames // 2))


@pytest.mark.parametrize("kind", ["silent", "clipped", "dc"])
def test_degenerate_inputs_give_finite_outputs(kind):
    n = 8192
    wav = {"silent": torch.zeros(1, 2, n), "clipped": torch.sign(torch.randn(1, 2, n)) * 3.0,
           "dc": torch.full((1, 2, n), 0.7)}[kind]
    vae = V.MelVAE(tiny_cfg())
    mel = log_mel_spectrogram(wav, "16k")
    rec, post = vae(mel.flatten(0, 1), generator=torch.Generator().manual_seed(0))
    loss = (rec - mel.flatten(0, 1)).abs().mean() + post.kl().mean()
    loss.backward()
    assert torch.isfinite(rec).all() and torch.isfinite(post.std).all() and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in vae.parameters() if p.grad is not None)


def test_channels_are_encoded_independently():
    vae = V.MelVAE(tiny_cfg()).eval()
    mel = torch.randn(1, 2, 80, 16)
    with torch.no_grad():
        both = V.encode_channels(vae, mel).mean
        left = vae.encode(mel[:, 0]).mean
        right = vae.encode(mel[:, 1]).mean
    torch.testing.assert_close(both[:, :20], left)
    torch.testing.assert_close(both[:, 20:], right)


def test_training_step_reduces_reconstruction_error():
    torch.manual_seed(0)
    vae = V.MelVAE(tiny_cfg())
    mel = torch.randn(2, 80, 16)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(10):
        rec, post = vae(mel, sample=False)
        loss = (rec - mel).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    # forced weight normalisation keeps every stored filter at RMS ~1
    w = vae.encoder.conv_in.weight.detach()
    torch.testing.assert_close(w.flatten(1).pow(2).mean(1).sqrt(), torch.ones(w.shape[0]), atol=0.05, rtol=0)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    vae = V.MelVAE(tiny_cfg()).eval()
    path = V.save_vae(tmp_path / "vae.safetensors", vae, provenance={"test": True})
    again = V.load_vae(path)
    mel = torch.randn(1, 80, 8)
    with torch.no_grad():
        torch.testing.assert_close(again.encode(mel).mean, vae.encode(mel).mean)
    other = save_checkpoint(tmp_path / "voc.safetensors", {"x": torch.zeros(1)}, kind="vocoder", config={})
    with pytest.raises(CheckpointError, match="expected 'vae'"):
        V.load_vae(other)
    state = V.vae_to_checkpoint_tensors(vae)
    state["encoder.conv_in.weight"] = torch.zeros(9, 80, 3)
    from foleyflow.config import config_to_json
    bad = save_checkpoint(tmp_path / "bad.safetensors", state, kind="vae", config=config_to_json(vae.cfg))
    with pytest.raises(CheckpointError, match="shape"):
        V.load_vae(bad)
    badcfg = save_checkpoint(tmp_path / "badcfg.safetensors", state, kind="vae", config={"widths": 3})
    with pytest.raises(CheckpointError, match="config"):
        V.load_vae(badcfg)


def test_length_property_over_random_lengths():
    """For any clip length: ceil(n / 512) latents, and the decoded mel maps back to that many samples x 512."""
    from foleyflow.models.vocoder import VocoderConfig, Vocoder, vocode_channels

    cfg = tiny_cfg()
    vae = V.MelVAE(cfg).eval()
    voc = Vocoder(VocoderConfig(dim=8, intermediate_dim=8, num_layers=1)).eval()
    rng = torch.Generator().manual_seed(3)
    for n in torch.randint(1, 40000, (12,), generator=rng).tolist():
        n_lat = V.num_latent_frames(n, cfg)
        padded = n_lat * V.samples_per_latent(cfg)
        assert padded >= n > padded - 512
        wav = torch.nn.functional.pad(0.1 * torch.randn(1, 2, n, generator=rng), (0, padded - n))
        with torch.no_grad():
            z = V.encode_channels(vae, log_mel_spectrogram(wav, "16k")).mean
            out = vocode_channels(voc, V.decode_channels(vae, z))
        assert z.shape[-1] == n_lat and out.shape == (1, 2, padded)
