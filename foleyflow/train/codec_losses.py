"""Reconstruction losses for the audio codec (VAE and vocoder). Each returns a dict of named scalar terms.

- Multi-resolution STFT loss of Parallel WaveGAN (Yamamoto et al. 2020): spectral convergence plus L1 of log
  magnitudes, averaged over several (n_fft, hop, win) resolutions.
- Mel L1 as in HiFi-GAN / Vocos, on our MMAudio front-end (`foleyflow.audio.log_mel_spectrogram`).
- VAE: L1 on the log-mel plus the KL of the diagonal posterior to N(0, I) (MMAudio's VAE is trained this way, with
  adversarial terms we leave out).
"""
from __future__ import annotations

import torch

DEFAULT_RESOLUTIONS = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512), (256, 64, 256))


def _magnitude(wav: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    window = torch.hann_window(win, device=wav.device, dtype=torch.float32)
    spec = torch.stft(wav.float(), n_fft, hop, win, window, center=True, return_complex=True)
    return torch.sqrt(spec.real.square() + spec.imag.square() + 1e-7)


def multi_resolution_stft_loss(pred: torch.Tensor, target: torch.Tensor,
                               resolutions=DEFAULT_RESOLUTIONS) -> dict[str, torch.Tensor]:
    """pred, target (N, num_samples) -> {'stft/sc': spectral convergence, 'stft/mag': log-magnitude L1}."""
    sc, mag = 0.0, 0.0
    for n_fft, hop, win in resolutions:
        p, t = _magnitude(pred, n_fft, hop, win), _magnitude(target, n_fft, hop, win)
        sc = sc + torch.linalg.norm(t - p, dim=(-2, -1)).div(torch.linalg.norm(t, dim=(-2, -1)) + 1e-7).mean()
        mag = mag + (p.log() - t.log()).abs().mean()
    return {"stft/sc": sc / len(resolutions), "stft/mag": mag / len(resolutions)}


def mel_l1(pred_wav: torch.Tensor, target_mel: torch.Tensor, setting="16k") -> dict[str, torch.Tensor]:
    """pred_wav (N, num_samples), target_mel (N, n_mels, frames) -> {'mel/l1'} on the front-end's log scale."""
    from foleyflow.audio import log_mel_spectrogram

    mel = log_mel_spectrogram(pred_wav, setting)
    frames = min(mel.shape[-1], target_mel.shape[-1])
    return {"mel/l1": (mel[..., :frames] - target_mel[..., :frames]).abs().mean()}


LOUD_RANGE = 2.0  # log-mel units (log10 magnitude at 16 kHz: 40 dB)


def vae_losses(rec_mel: torch.Tensor, mel: torch.Tensor, posterior) -> dict[str, torch.Tensor]:
    """{'vae/l1': mean |rec - mel| (log-mel units), 'vae/l2': mean squared error, 'vae/l1_loud': |rec - mel|
    weighted towards each example's loud bins (weight rising from 0 at LOUD_RANGE below its loudest bin to 1 at it;
    examples with less dynamics than LOUD_RANGE get none),
    'vae/kl': mean KL per latent element}. Sparse sounds leave most bins near the floor, where plain L1 spends the
    model's capacity; the loud term weights the transients that carry class, timing and pan."""
    err = rec_mel - mel
    m = mel.detach()
    top, low = m.amax(dim=(-2, -1), keepdim=True), m.amin(dim=(-2, -1), keepdim=True)
    # an example without LOUD_RANGE of dynamics (e.g. a silent crop at the floor) has no loud bins: weight 0
    w = ((m - top + LOUD_RANGE) / LOUD_RANGE).clamp(min=0.0) * (top - low >= LOUD_RANGE)
    return {"vae/l1": err.abs().mean(), "vae/l2": err.pow(2).mean(),
            "vae/l1_loud": (err.abs() * w).sum() / w.sum().clamp(min=1e-6), "vae/kl": posterior.kl().mean()}


def weighted_sum(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Sum of terms[k] * weights[k] over the keys in `weights` (a missing term is an error)."""
    missing = [k for k in weights if k not in terms]
    if missing:
        raise KeyError(f"loss weights name unknown terms {missing}; known: {sorted(terms)}")
    return sum(terms[k] * w for k, w in weights.items() if w)
