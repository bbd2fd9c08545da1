"""`foleyflow extract-latents`: a latent cache per manifest, with producer record and set statistics."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from foleyflow.models import vae as V


@pytest.fixture
def setup(tmp_path):
    from foleyflow.media import write_audio

    torch.manual_seed(0)
    ckpt = V.save_vae(tmp_path / "vae.safetensors", V.MelVAE(V.VAEConfig(hidden_dim=8)).eval())
    rng = np.random.default_rng(0)
    lines = []
    for i, n in enumerate([16000, 12000, 20000]):  # shorter clips are padded, longer ones cut
        chans = 2 if i != 1 else 1
        write_audio(tmp_path / f"c{i}.wav", 0.2 * rng.standard_normal((chans, n)).astype(np.float32), 16000)
        lines.append(json.dumps({"id": f"clip{i}", "audio": f"c{i}.wav", "duration_s": 1.0, "split": "train"}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path, ckpt


def test_extract_latents_writes_cache(setup, run_cli):
    from foleyflow.audio import load_audio, log_mel_spectrogram
    from foleyflow.data.cache import Cache
    from foleyflow.hashing import file_sha256

    tmp, ckpt = setup
    res = run_cli("extract-latents", tmp / "m.jsonl", "--out", tmp / "cache", "--vae", ckpt, "--threads", "1")
    assert res.code == 0, res.err
    cache = Cache(tmp / "cache", kind="vae_latents")
    cache.require_producer("vae", file_sha256(ckpt))
    mean, std = cache.load("mean"), cache.load("std")
    n_lat = -(-16000 // 512)
    assert cache.ids == ["clip0", "clip1", "clip2"] and mean.shape == std.shape == (3, n_lat, 40)
    assert (std > 0).all()
    vae = V.load_vae(ckpt)
    audio = load_audio(tmp / "c0.wav", 16000, channels=2)
    padded = torch.zeros(1, 2, n_lat * 512)
    padded[..., :16000] = torch.from_numpy(audio)
    with torch.no_grad():
        want = V.encode_channels(vae, log_mel_spectrogram(padded, "16k")).mean[0].T
    torch.testing.assert_close(mean[0], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mean[1][:, :20], mean[1][:, 20:])  # mono file -> identical channels
    info = cache.info
    assert info["latent_fps"] == 31.25 and len(info["latent_mean"]) == 40
    m = mean.double().reshape(-1, 40)
    want_std = ((m.square() + std.double().reshape(-1, 40).square()).mean(0) - m.mean(0).square()).sqrt()
    np.testing.assert_allclose(info["latent_mean"], m.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info["latent_std"], want_std.numpy(), rtol=1e-5, atol=1e-6)
    again = run_cli("extract-latents", tmp / "m.jsonl", "--out", tmp / "cache", "--vae", ckpt, "--threads", "1")
    assert again.code != 0 and "already exists" in again.err and len(again.err.strip().splitlines()) == 1


def test_extract_latents_refuses_bad_inputs(setup, run_cli):
    from foleyflow.checkpoint import save_checkpoint

    tmp, ckpt = setup
    other = save_checkpoint(tmp / "voc.safetensors", {"x": torch.zeros(1)}, kind="vocoder", config={})
    res = run_cli("extract-latents", tmp / "m.jsonl", "--out", tmp / "c1", "--vae", other)
    assert res.code != 0 and "expected 'vae'" in res.err and len(res.err.strip().splitlines()) == 1
    (tmp / "video.jsonl").write_text(json.dumps({"id": "v", "video": "m.jsonl"}) + "\n")
    res = run_cli("extract-latents", tmp / "video.jsonl", "--out", tmp / "c2", "--vae", ckpt, "--duration-s", "1")
    assert res.code != 0 and "no `audio`" in res.err
    (tmp / "mixed.jsonl").write_text(json.dumps({"id": "a", "audio": "c0.wav", "duration_s": 1.0}) + "\n" +
                                     json.dumps({"id": "b", "audio": "c1.wav", "duration_s": 2.0}) + "\n")
    res = run_cli("extract-latents", tmp / "mixed.jsonl", "--out", tmp / "c3", "--vae", ckpt)
    assert res.code != 0 and "--duration-s" in res.err
