"""The bundled codec weights (foleyflow/assets/codec) and the fp16 export recipe that makes them."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from foleyflow.audio import log_mel_spectrogram
from foleyflow.errors import CheckpointError
from foleyflow.models import vae as V
from foleyflow.models import vocoder as W
from foleyflow.models.codec import ASSET_DIR, bundled_codec_paths, load_bundled_codec

ROOT = Path(__file__).resolve().parents[1]


def export_module():
    spec = importlib.util.spec_from_file_location("export_codec", ROOT / "recipes" / "export_codec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def panned_bursts(seconds: float = 1.024, sr: int = 16000, gain_right: float = 0.25) -> torch.Tensor:
    """(1, 2, n): four decaying 660 Hz bursts with a little noise, the right channel `gain_right` x the left."""
    n = int(seconds * sr)
    t = torch.arange(n) / sr
    env = torch.zeros(n)
    for k in range(4):
        i = k * n // 4
        env[i:i + 2000] = torch.exp(-torch.arange(min(2000, n - i)) / 400.0)
    noise = torch.randn(n, generator=torch.Generator().manual_seed(0))
    src = (0.5 * torch.sin(2 * math.pi * 660 * t) + 0.01 * noise) * env
    return torch.stack([src, gain_right * src])[None]


def test_bundled_codec_is_fp16_stored_small_and_described():
    from safetensors import safe_open

    from foleyflow.checkpoint import read_metadata

    vae_path, voc_path = bundled_codec_paths()
    assert vae_path.stat().st_size + voc_path.stat().st_size <= 10 * 1024 * 1024
    for path, kind in ((vae_path, "vae"), (voc_path, "vocoder")):
        with safe_open(str(path), framework="pt") as f:
            dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes == {"F16"}, (path, dtypes)
        meta = read_metadata(path)
        assert meta["foleyflow.kind"] == kind
        prov = json.loads(meta["foleyflow.provenance"])
        assert prov["storage"] == "float16" and len(prov["source_sha256"]) == 64 and prov["step"] > 0
    readme = (ASSET_DIR / "README.md").read_text()
    for needed in ("FoleyWorld", "train", "seed", "recipes/train_vae.py", "recipes/train_vocoder.py",
                   "recipes/export_codec.py"):
        assert needed in readme


def test_bundled_codec_loads_in_fp32_and_round_trips_stereo():
    vae, voc = load_bundled_codec()
    assert {p.dtype for p in list(vae.parameters()) + list(voc.parameters())} == {torch.float32}
    assert vae.cfg.mel_setting == voc.cfg.mel_setting == "16k" and vae.cfg.latent_dim == 20
    wav = panned_bursts()
    n = wav.shape[-1]
    assert n % V.samples_per_latent(vae.cfg) == 0
    with torch.inference_mode():
        mel = log_mel_spectrogram(wav, "16k")
        z = V.encode_channels(vae, mel).mean
        out = W.vocode_channels(voc, V.decode_channels(vae, z))
    assert z.shape == (1, 40, V.num_latent_frames(n, vae.cfg))
    assert out.shape == wav.shape and torch.isfinite(out).all()
    # the louder left channel stays clearly louder (input: 12 dB)
    energy = out.pow(2).mean(-1)[0]
    assert 10 * torch.log10(energy[0] / energy[1]) > 6.0
    # the decoded audio's mel is much closer to the input's than silence is (trained weights, not random ones);
    # bundled weights measured 0.43 here (silence: 1.34)
    mel_out = log_mel_spectrogram(out, "16k")
    assert (mel_out - mel).abs().mean() < 0.7 < (log_mel_spectrogram(torch.zeros_like(out), "16k") - mel).abs().mean()


def test_export_fp16_from_model_and_train_state_matches_fp32(tmp_path):
    from foleyflow.config import config_to_json
    from foleyflow.train.state import save_train_state

    export = export_module()
    torch.manual_seed(0)
    vae = V.build_vae(V.VAEConfig(hidden_dim=8, ch_mult=(1, 2), num_res_blocks=1)).eval()
    voc = W.build_vocoder("tiny_16k").eval()
    V.save_vae(tmp_path / "vae32.safetensors", vae)
    # the vocoder comes from a training state, as the recipe's checkpoints store it
    save_train_state(tmp_path / "state.safetensors", kind="vocoder", config={"model": json.loads(
        config_to_json(voc.cfg)), "seed": 0}, state={"model": voc.state_dict(), "step": 7}, provenance={"step": 7})
    vae16 = export.export_fp16(tmp_path / "vae32.safetensors", tmp_path / "out" / "vae.safetensors", "vae")
    voc16 = export.export_fp16(tmp_path / "state.safetensors", tmp_path / "out" / "vocoder.safetensors", "vocoder")
    a_vae, a_voc = V.load_vae(vae16), W.load_vocoder(voc16)
    from foleyflow.checkpoint import read_metadata
    assert json.loads(read_metadata(voc16)["foleyflow.provenance"])["step"] == 7
    wav = panned_bursts(0.256)
    with torch.inference_mode():
        ref = export.round_trip(vae, voc, wav)
        got = export.round_trip(a_vae, a_voc, wav)
        for name, p in a_voc.named_parameters():  # weights equal the fp16-rounded originals
            torch.testing.assert_close(p, dict(voc.named_parameters())[name].half().float())
    assert ((got - ref).norm() / ref.norm()) < 1e-2
    with pytest.raises(CheckpointError, match="expected 'vocoder'"):
        export.export_fp16(tmp_path / "vae32.safetensors", tmp_path / "bad.safetensors", "vocoder")


def test_missing_bundled_weights_fail_clearly(monkeypatch, tmp_path):
    import foleyflow.models.codec as C

    monkeypatch.setattr(C, "ASSET_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="bundled codec weights are missing"):
        C.load_bundled_codec()
