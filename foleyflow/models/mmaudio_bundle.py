"""Loading a converted MMAudio release (`foleyflow convert mmaudio`, see `mmaudio_release`) into runnable stages.

`load_release(folder)` returns an `MMAudioRelease` whose parts have the interfaces foleyflow's pipeline uses:
  generator  `Generator` (foleyflow.models.generator), float32, eval
  vae        `MelVAE` (encode/decode over MMAudio's log-mel: '16k' log10 80 bands, '44k' natural log 128 bands)
  decoder    `BigVGANDecoder`: (N, n_mels, T) -> (N, T * hop) mono at `sample_rate`
  semantic   `ClipFrameAdapter`: fps 8, out_dim 1024, frames (B, T, 3, H, W) -> (B, T, 1024)
  sync       `SynchformerAdapter`: fps 25, out_dim 768, frames (B, T, 3, H, W) -> (B, 24 per s, 768)
  text       `ClipText`: list of strings -> (B, 77, 1024)
Parts whose files the bundle does not hold are None. `latents_to_audio` chains VAE decode and vocoder, with
`stereo=True` duplicating MMAudio's mono output into two equal channels.

`pipeline_models(folder)` gives the same stages as the model set `FoleyPipeline` runs (foleyflow.bundle's
`load_bundle_models` calls it for a folder with `mmaudio.json`): generator, VAE, vocoder (mono: the generator's
latent width is one codec channel, so the pipeline decodes one channel), CLIP image features as the semantic
encoder, Synchformer as the sync encoder, and `ReleaseTextEncoder` (CLIP text, 77 x 1024) as the text encoder. The
visual stages read frames as MMAudio's inference does (`frames_as_mmaudio`, see foleyflow.conditioning).
Generation defaults: MMAudio's (`MMAUDIO_DEFAULTS`: 25 Euler steps, guidance 4.5, `mmaudio/eval_utils.py` callers /
`demo.py`), or the manifest's `defaults`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from foleyflow.errors import CheckpointError, FoleyError

MMAUDIO_DEFAULTS = {"steps": 25, "cfg_scale": 4.5}  # MMAudio's demo.py: num_steps 25, cfg_strength 4.5 (Euler)
PIPELINE_PARTS = ("generator", "vae", "vocoder", "synchformer", "clip")


@dataclass(frozen=True)
class ClipTextConfig:
    """The text budget of MMAudio's CLIP text encoder: `output_len` tokens of `dim` features (the generator's
    text_len x text_dim)."""
    output_len: int = 77
    dim: int = 1024


class TextTokens(NamedTuple):
    tokens: torch.Tensor   # (B, 77, dim) float32, L2-normalised per token


class ReleaseTextEncoder(nn.Module):
    """MMAudio's text path (`ClipText`) behind the interface the pipeline uses for its text encoder: `cfg.output_len`,
    `encode(texts) -> .tokens (B, 77, dim)`. MMAudio has no chain-of-thought input: `encode_cot` is refused."""

    def __init__(self, clip_text: nn.Module):
        super().__init__()
        self.net = clip_text
        self.cfg = ClipTextConfig(int(clip_text.tokenize([""]).shape[1]), int(clip_text.out_dim))

    @torch.no_grad()
    def encode(self, texts: list[str]) -> TextTokens:
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        return TextTokens(self.net(list(texts)).float())

    def encode_cot(self, parts) -> TextTokens:
        raise FoleyError("this MMAudio bundle's text encoder (CLIP) takes a prompt, not a chain of thought")


@dataclass
class MMAudioRelease:
    manifest: dict
    generator: nn.Module | None = None
    vae: nn.Module | None = None
    decoder: nn.Module | None = None
    semantic: nn.Module | None = None
    sync: nn.Module | None = None
    text: nn.Module | None = None

    @property
    def sample_rate(self) -> int:
        return int(self.manifest["sample_rate"])

    @torch.no_grad()
    def latents_to_audio(self, latents: torch.Tensor, *, stereo: bool = False) -> torch.Tensor:
        """(B, latent_dim, T') unnormalised VAE latents -> (B, T' * samples_per_latent) mono, or (B, 2, ...)."""
        from foleyflow.models.bigvgan_io import to_stereo

        if self.vae is None or self.decoder is None:
            raise CheckpointError("this bundle has no VAE or no vocoder: convert with --vae and --vocoder")
        wav = self.decoder(self.vae.decode(latents.float()))
        return to_stereo(wav) if stereo else wav

    @torch.no_grad()
    def synthesize(self, duration_s: float, *, frames8: torch.Tensor | None = None,
                   frames25: torch.Tensor | None = None, texts: list[str] | None = None, num_steps: int = 25,
                   cfg_scale: float = 4.5, seed: int = 0, stereo: bool = False) -> torch.Tensor:
        """MMAudio's inference from decoded frames: frames8 (B, int(8 d), 3, H, W) and frames25 (B, >= the frames of
        d s at 25 fps, 3, H, W), uint8 or float [0, 1], and/or texts (B strings) -> (B, round(d * sr)) mono (or
        (B, 2, ...)). Missing visual inputs take the learned empty features (text-to-audio), a missing text the
        empty string, as MMAudio does. Euler on linspace(0, 1, steps + 1), guidance v = s v_c + (1 - s) v_u, noise
        from `seed`. The video decoding and frame sampling are the pipeline's (foleyflow.video)."""
        from foleyflow.errors import FoleyError
        from foleyflow.models.generator_sampling import generate

        net = self.generator
        if net is None or self.text is None:
            raise CheckpointError("synthesize needs the bundle's generator and CLIP (convert with --clip)")
        net.set_duration(duration_s)
        b = len(texts) if texts is not None else next((x.shape[0] for x in (frames8, frames25) if x is not None), 1)
        text = self.text(texts if texts is not None else [""] * b)
        visual = net.empty_clip_feat[None].expand(b, net.visual_len, -1)
        sync = net.empty_sync_feat[None].expand(b, net.sync_len, -1)
        if frames8 is not None:
            visual = self.semantic(frames8)
        if frames25 is not None:
            if self.sync is None:
                raise CheckpointError("this bundle has no Synchformer: convert with --synchformer")
            sync = self.sync(frames25)[:, : net.sync_len]
        if visual.shape[1] != net.visual_len or sync.shape[1] != net.sync_len:
            raise FoleyError(f"{duration_s} s needs {net.visual_len} frames at 8 fps and {net.sync_len // 8} sync "
                             f"segments, got {visual.shape[1]} and {sync.shape[1] // 8}")
        g = torch.Generator().manual_seed(seed)
        x0 = torch.randn(b, net.latent_len, net.cfg.latent_channels, generator=g)
        z = net.unnormalize(generate(net, x0, visual, sync, text, cfg_scale=cfg_scale, num_steps=num_steps))
        wav = self.latents_to_audio(z.transpose(1, 2), stereo=stereo)
        return wav[..., : round(duration_s * self.sample_rate)]


def _part(folder: Path, manifest: dict, name: str):
    from foleyflow.checkpoint import checkpoint_config, load_checkpoint

    entry = manifest["components"].get(name)
    if entry is None:
        return None
    tensors, meta = load_checkpoint(folder / entry["file"], kind=entry["kind"])
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, checkpoint_config(meta)


def load_release(folder: str | Path, parts: tuple[str, ...] = ("generator", "vae", "vocoder", "synchformer", "clip")
                 ) -> MMAudioRelease:
    """Builds the stages a converted bundle holds (only those in `parts`)."""
    from foleyflow.checkpoint import load_into
    from foleyflow.models.mmaudio_release import FORMAT, MANIFEST

    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder} is not a converted MMAudio bundle ({MANIFEST}: {type(e).__name__})") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{folder / MANIFEST}: unknown format {manifest.get('format')!r}, expected {FORMAT!r}")
    rel = MMAudioRelease(manifest)
    if "generator" in parts and "generator" in manifest["components"]:
        from foleyflow.models.generator_io import load_generator

        rel.generator = load_generator(folder / manifest["components"]["generator"]["file"])
    if "vae" in parts and "vae" in manifest["components"]:
        from foleyflow.models.vae import load_vae

        rel.vae = load_vae(folder / manifest["components"]["vae"]["file"])
    if "vocoder" in parts and (got := _part(folder, manifest, "vocoder")):
        from foleyflow.models.bigvgan_io import BigVGANDecoder

        tensors, config = got
        rel.decoder = BigVGANDecoder(config)
        load_into(rel.decoder.net, tensors, what="vocoder")
        rel.decoder.eval()
    if "synchformer" in parts and (got := _part(folder, manifest, "synchformer")):
        from foleyflow.config import from_dict
        from foleyflow.models.adapters import SynchformerAdapter, SynchformerAdapterConfig
        from foleyflow.models.motionformer import MotionFormer, MotionFormerConfig

        tensors, config = got
        net = MotionFormer(from_dict(MotionFormerConfig, config))
        load_into(net, tensors, what="synchformer")
        net.eval().requires_grad_(False)
        rel.sync = SynchformerAdapter(net, SynchformerAdapterConfig(dim=net.cfg.width),
                                      {"impl": "mmaudio_synchformer"})
    if "clip" in parts and (got := _part(folder, manifest, "clip")):
        from foleyflow.models import clip_open

        tensors, config = got
        clip = clip_open.build_clip(config["model_cfg"])
        load_into(clip, tensors, what="CLIP")
        clip.eval().requires_grad_(False)
        bpe = folder / clip_open.BPE_NAME
        rel.semantic = clip_open.image_features(clip, config["model_cfg"])
        rel.text = clip_open.ClipText(clip, bpe if bpe.is_file() else None)
    return rel


def pipeline_models(folder: str | Path) -> tuple[dict, dict, ClipTextConfig]:
    """(manifest, {role: module} as foleyflow.bundle names the roles, text config) of a converted release, for
    FoleyPipeline: generator, vae, vocoder, semantic_encoder (CLIP images), sync_encoder (Synchformer), text_encoder
    (`ReleaseTextEncoder`). Every part must be present (one-line CheckpointError naming the missing ones)."""
    from foleyflow.models.mmaudio_release import MANIFEST

    rel = load_release(folder)
    missing = [p for p in PIPELINE_PARTS if p not in rel.manifest.get("components", {})]
    if missing:
        flags = " ".join(f"--{p}" for p in missing)
        raise CheckpointError(f"{Path(folder) / MANIFEST}: the bundle has no {', '.join(missing)}; generating needs "
                              f"every part (convert again with {flags})")
    for stage in (rel.semantic, rel.sync):
        stage.frames_as_mmaudio = True   # foleyflow.conditioning.frames_as_mmaudio
    text = ReleaseTextEncoder(rel.text).eval()
    models = {"generator": rel.generator, "vae": rel.vae, "vocoder": rel.decoder, "semantic_encoder": rel.semantic,
              "sync_encoder": rel.sync, "text_encoder": text}
    return rel.manifest, models, text.cfg
