"""Vocoder (Vocos-style), discriminators and codec losses."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from foleyflow.audio import istft_same, log_mel_spectrogram
from foleyflow.checkpoint import save_checkpoint
from foleyflow.errors import CheckpointError
from foleyflow.models import discriminators as D
from foleyflow.models import vocoder as W
from foleyflow.train import codec_losses as L


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)


def tiny() -> W.Vocoder:
    torch.manual_seed(0)
    return W.build_vocoder("tiny_16k")


def test_istft_same_inverts_front_end_framing():
    x = 0.1 * torch.randn(2, 5 * 256, generator=torch.Generator().manual_seed(0))
    pad = (1024 - 256) // 2
    xp = torch.nn.functional.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]
    w = torch.hann_window(1024)
    spec = torch.stft(xp, 1024, 256, window=w, center=False, return_complex=True)
    assert spec.shape[-1] == 5
    torch.testing.assert_close(istft_same(spec, 1024, 256, w), x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("frames", [1, 2, 17])
def test_output_length_is_frames_times_hop(frames):
    voc = tiny().eval()
    with torch.no_grad():
        assert voc(torch.randn(3, 80, frames)).shape == (3, frames * 256)
        stereo = torch.randn(1, 2, 80, frames)
        out = W.vocode_channels(voc, stereo)
        assert out.shape == (1, 2, frames * 256)
        torch.testing.assert_close(out[:, 1], voc(stereo[:, 1]), atol=1e-6, rtol=1e-5)


def test_vocoder_fits_a_tone_and_degenerate_mels_stay_finite():
    voc = tiny()
    t = torch.arange(4096) / 16000
    wav = 0.5 * torch.sin(2 * torch.pi * 440 * t)[None]
    mel = log_mel_spectrogram(wav, "16k")
    opt = torch.optim.Adam(voc.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        out = voc(mel)
        loss = L.mel_l1(out, mel)["mel/l1"] + sum(L.multi_resolution_stft_loss(out, wav).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.75 * first
    with torch.no_grad():
        for m in (torch.full((1, 80, 8), -5.0), torch.full((1, 80, 8), 3.0)):
            assert torch.isfinite(voc(m)).all()


def test_discriminators_and_adversarial_losses():
    disc = D.Discriminators(D.DiscriminatorConfig(channel_mult=0.0625))
    wav = torch.randn(2, 4000)
    logits, feats = disc(wav)
    assert len(logits) == len(feats) == 5 + 3
    assert all(l.shape[0] == 2 for l in logits)
    fake_logits, fake_feats = disc(wav * 0.5)
    for kind in ("hinge", "lsgan"):
        d = D.discriminator_loss(logits, [f.detach() for f in fake_logits], kind)
        g = D.generator_adversarial_loss(fake_logits, kind)
        assert d.ndim == 0 and torch.isfinite(d) and torch.isfinite(g)
    # hinge: perfect separation costs nothing
    assert D.discriminator_loss([torch.full((1, 3), 2.0)], [torch.full((1, 3), -2.0)]).item() == 0.0
    assert D.feature_matching_loss(feats, feats).item() == 0.0
    fm = D.feature_matching_loss(feats, fake_feats)
    fm.backward()
    assert fm.item() > 0


def test_stft_loss_is_zero_for_identical_and_grows_with_noise():
    x = torch.randn(2, 8000)
    same = L.multi_resolution_stft_loss(x, x)
    assert same["stft/sc"].item() < 1e-4 and same["stft/mag"].item() < 1e-4
    small = L.multi_resolution_stft_loss(x + 0.01 * torch.randn_like(x), x)
    big = L.multi_resolution_stft_loss(x + 0.5 * torch.randn_like(x), x)
    assert big["stft/sc"] > small["stft/sc"] and big["stft/mag"] > small["stft/mag"]
    with pytest.raises(KeyError):
        L.weighted_sum(same, {"nope": 1.0})


def test_vocoder_checkpoint_round_trip_and_refusals(tmp_path):
    voc = tiny().eval()
    path = W.save_vocoder(tmp_path / "v.safetensors", voc)
    again = W.load_vocoder(path)
    mel = torch.randn(1, 80, 4)
    with torch.no_grad():
        torch.testing.assert_close(again(mel), voc(mel))
    vae_like = save_checkpoint(tmp_path / "vae.safetensors", {"a": torch.zeros(1)}, kind="vae", config={})
    with pytest.raises(CheckpointError, match="expected 'vocoder'"):
        W.load_vocoder(vae_like)
    from foleyflow.config import config_to_json
    big = W.build_vocoder(W.VocoderConfig(dim=48, intermediate_dim=64, num_layers=2))
    bad = save_checkpoint(tmp_path / "bad.safetensors", big.state_dict(), kind="vocoder",
                          config=config_to_json(voc.cfg))
    with pytest.raises(CheckpointError, match="shape"):
        W.load_vocoder(bad)


def test_griffin_lim_vocoder_checkpoint_loads_behind_the_vocoder_interface(tmp_path):
    import numpy as np

    from foleyflow.audio import log_mel_spectrogram
    from foleyflow.models.vocoder import GriffinLimVocoder, load_vocoder, save_griffin_lim, vocode_channels

    path = save_griffin_lim(tmp_path / "gl.safetensors")
    voc = load_vocoder(path)
    assert isinstance(voc, GriffinLimVocoder) and voc.cfg.mel_setting == "16k" and voc.cfg.n_mels == 80
    t = torch.arange(15872) / 16000                         # 62 hops of 256 samples
    wav = torch.stack([0.5 * torch.sin(2 * np.pi * 440 * t), 0.1 * torch.sin(2 * np.pi * 880 * t)])
    out = vocode_channels(voc, log_mel_spectrogram(wav)[None])[0]
    assert out.shape == (2, 15872)
    rms = out[:, 2000:-2000].pow(2).mean(1).sqrt() / wav[:, 2000:-2000].pow(2).mean(1).sqrt()
    assert ((rms > 0.7) & (rms < 1.4)).all(), rms               # each channel keeps its level
    assert torch.equal(out, vocode_channels(voc, log_mel_spectrogram(wav)[None])[0])  # deterministic


def test_vae_loud_loss_weights_the_loud_bins():
    """vae/l1_loud weights each example's bins by how close they are to its loudest (0 at LOUD_RANGE below it, 1 at
    it, linear between), per example; a silent example counts for nothing. l1 and l2 are the plain means."""
    assert L.LOUD_RANGE == 2.0
    mel = torch.full((2, 4, 10), -5.0)                      # example 1 stays silent at the floor
    mel[0, 0, 3] = -1.0                                     # example 0: a loud bin (weight 1) ...
    mel[0, 1, 3] = -2.0                                     # ... and one 1 unit below it (weight 0.5)
    post = SimpleNamespace(kl=lambda: torch.zeros(1))

    def err_at(*idx):
        rec = mel.clone()
        rec[idx] += 1.0
        return L.vae_losses(rec, mel, post)

    floor, loud, half, silent = err_at(0, 2, 5), err_at(0, 0, 3), err_at(0, 1, 3), err_at(1, 2, 5)
    assert floor["vae/l1"] == loud["vae/l1"] == pytest.approx(1 / 80) and floor["vae/l2"] == pytest.approx(1 / 80)
    assert floor["vae/l1_loud"] == 0.0 and silent["vae/l1_loud"] == 0.0
    assert loud["vae/l1_loud"] == pytest.approx(1 / 1.5) and half["vae/l1_loud"] == pytest.approx(0.5 / 1.5)


def test_coherent_griffin_lim_keeps_a_panned_source_one_waveform_at_two_levels(tmp_path):
    """A source panned left (the same waveform at two levels): per-channel Griffin-Lim gives uncorrelated channels,
    the coherent mode channels correlated as the true audio is, with the same level difference; the independent
    mode is the old output exactly; a bad stereo mode in a checkpoint is refused."""
    import numpy as np

    from foleyflow.audio import griffin_lim, log_mel_spectrogram
    from foleyflow.models.vocoder import GriffinLimConfig, load_vocoder, save_griffin_lim, vocode_channels

    g = torch.Generator().manual_seed(0)
    t = torch.arange(31744) / 16000
    src = sum(torch.sin(2 * np.pi * f * t + float(torch.rand((), generator=g)) * 6) for f in (330, 660, 990, 1700))
    src = src * (0.3 + 0.2 * torch.sin(2 * np.pi * 3 * t)) + 0.02 * torch.randn(t.shape, generator=g)
    wav = torch.stack([0.6 * src, 0.2 * src])                        # panned left: ILD 9.5 dB, correlation 1
    mel = log_mel_spectrogram(wav)[None]
    corr = lambda x: float(np.corrcoef(x[0, 0, 2000:-2000], x[0, 1, 2000:-2000])[0, 1])  # noqa: E731
    ild = lambda x: 10 * float(torch.log10(x[0, 0].pow(2).mean() / x[0, 1].pow(2).mean()))  # noqa: E731
    old = load_vocoder(save_griffin_lim(tmp_path / "gl.safetensors"))
    new = load_vocoder(save_griffin_lim(tmp_path / "glc.safetensors", GriffinLimConfig(stereo="coherent")))
    a, b = vocode_channels(old, mel), vocode_channels(new, mel)
    assert torch.equal(a, griffin_lim(mel, "16k", n_iter=32, seed=0))              # independent = before
    assert abs(corr(a)) < 0.3 and corr(b) > 0.95, (corr(a), corr(b))
    assert abs(ild(b) - ild(wav[None])) < 1.0 and abs(ild(a) - ild(wav[None])) < 1.0
    assert torch.equal(b, vocode_channels(new, mel))                                 # deterministic
    part = load_vocoder(save_griffin_lim(tmp_path / "glp.safetensors", GriffinLimConfig(
        stereo="coherent", n_iter=16, channel_iters=16)))                            # shared start, then per channel
    c = vocode_channels(part, mel)
    assert corr(c) > 0.8 and abs(ild(c) - ild(wav[None])) < 1.0 and not torch.allclose(c, b), corr(c)
    with pytest.raises(CheckpointError, match="stereo must be one of"):
        load_vocoder(save_griffin_lim(tmp_path / "bad.safetensors", GriffinLimConfig(stereo="wide")))
