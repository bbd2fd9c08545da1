"""BigVGAN vocoders of the released MMAudio pipeline, through NVIDIA's maintained `bigvgan` package.

- 16 kHz: the BigVGAN MMAudio trained for its 80-band 16 kHz mel (hkchengrex/MMAudio, `mmaudio/ext/bigvgan/`,
  config `BIGVGAN_16K_CONFIG` below, hop 256). The package's `BigVGAN` class with this config is the same network:
  `tests/test_mmaudio_release.py::test_bigvgan16k_matches_fixture` checks it against the reference to 1e-5.
- 44.1 kHz: BigVGAN-v2 128-band (NVIDIA's release folder: `config.json` + `bigvgan_generator.pt`), built from that
  config by the same class.
Checkpoints store weight-normalised convolutions (`weight_g`/`weight_v`, or `parametrizations.weight.original0/1`
in newer torch); `fold_weight_norm` turns them into plain weights (w = g * v / ||v||, norm over all dims but 0), which
is what the network uses after `remove_weight_norm()` at inference, so a converted bundle stores plain weights.
Output is mono, as MMAudio makes it; `to_stereo` duplicates it when two channels are wanted.
"""
from __future__ import annotations

import contextlib
import io

import torch
from torch import nn

from foleyflow.errors import CheckpointError, MissingResourceError

# MMAudio's 16 kHz BigVGAN (`mmaudio/ext/bigvgan/bigvgan_vocoder.yml`); only the keys that shape the network.
BIGVGAN_16K_CONFIG = {
    "resblock": "1", "num_mels": 80, "upsample_rates": [4, 4, 2, 2, 2, 2], "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4],
    "upsample_initial_channel": 1536, "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "activation": "snakebeta", "snake_logscale": True,
    "sampling_rate": 16000, "hop_size": 256,
}
_WN = (("weight_g", "weight_v"), ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replaces every weight-norm pair (g, v) by the plain `weight` g * v / ||v|| (norm over all dims but 0)."""
    out = {}
    for key, value in state.items():
        for g_name, v_name in _WN:
            if key.endswith(v_name):
                base = key[: -len(v_name)]
                g = state.get(base + g_name)
                if g is None:
                    raise CheckpointError(f"weight-norm factor '{base + g_name}' is missing beside '{key}'")
                v = value.float()
                norm = torch.linalg.vector_norm(v, dim=tuple(range(1, v.ndim)), keepdim=True)
                out[base + "weight"] = (g.float() * v / norm).to(value.dtype)
                break
            if key.endswith(g_name):
                if key[: -len(g_name)] + v_name not in state:
                    raise CheckpointError(f"weight-norm factor '{key[: -len(g_name)] + v_name}' is missing")
                break
        else:
            out[key] = value
    return out


def unwrap_generator(state: dict) -> dict:
    """BigVGAN training checkpoints keep the network under 'generator'."""
    inner = state.get("generator")
    return inner if isinstance(inner, dict) else state


def build_bigvgan(config: dict) -> nn.Module:
    """NVIDIA's `bigvgan.BigVGAN` for `config`, weight norm removed (plain `weight`s), eval mode, no CUDA kernel.
    Build it under `torch.device('meta')` for shapes only."""
    try:
        import bigvgan
        from bigvgan.env import AttrDict
    except ImportError:
        raise MissingResourceError("NVIDIA's bigvgan package is not installed (bash scripts/setup.sh installs it, "
                                   "see docs/mmaudio.md)") from None
    try:
        net = bigvgan.BigVGAN(AttrDict(dict(config)), use_cuda_kernel=False)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"BigVGAN config not understood ({type(e).__name__}: {e})") from None
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line here
        net.remove_weight_norm()
    return net.eval()


class BigVGANDecoder(nn.Module):
    """(N, num_mels, T) log-mel (MMAudio's scale) -> (N, T * hop) mono waveform at `sample_rate`."""

    def __init__(self, config: dict, net: nn.Module | None = None):
        super().__init__()
        self.config = dict(config)
        self.net = net if net is not None else build_bigvgan(config)
        self.sample_rate = int(config["sampling_rate"])
        self.hop_length = int(config["hop_size"])
        self.n_mels = int(config["num_mels"])

    @property
    def cfg(self):
        """What the pipeline's fit check reads from a vocoder: its mel setting ("16k": MMAudio's 80-band 16 kHz mel,
        "44k": the 128-band 44.1 kHz one) and band count."""
        from types import SimpleNamespace

        return SimpleNamespace(mel_setting="44k" if self.sample_rate == 44100 else "16k", n_mels=self.n_mels,
                               sample_rate=self.sample_rate, hop_length=self.hop_length)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(mel.to(next(self.net.parameters()).dtype))[:, 0]


def to_stereo(wav: torch.Tensor) -> torch.Tensor:
    """(N, samples) mono -> (N, 2, samples), both channels equal (MMAudio's output is mono)."""
    return wav[:, None].expand(-1, 2, -1).contiguous()
