"""Export trained codec weights for bundling: fp16-stored copies of a VAE and a vocoder, checked against fp32.

    python recipes/export_codec.py --vae VAE --vocoder VOC --out foleyflow/assets/codec [--check DIR] [--clips 8]

VAE / VOC: a model checkpoint (`vae.safetensors`, `vocoder.safetensors`) or a training state of that kind
(`ckpt/state_*.safetensors`, its "model" entry is taken). Writes OUT/vae.safetensors and OUT/vocoder.safetensors:
every floating tensor stored as float16, same kind and config, provenance naming the source file (path, sha256,
training step and the source's own provenance). `load_vae` / `load_vocoder` cast the weights to the model's float32
on load, so the copies compute in fp32. With --check, the first --clips wavs of DIR go through the round trip
(mel -> VAE encode -> decode -> vocoder) with the fp32 sources and with the fp16 copies; the largest absolute sample
difference and the relative L2 difference are printed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from foleyflow.hashing import file_sha256


def model_tensors(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], str, dict]:
    """(model state dict, config JSON, provenance) of a `kind` checkpoint or of a `train_state/kind` file."""
    from foleyflow.checkpoint import CONFIG, KIND, PROVENANCE, load_checkpoint
    from foleyflow.errors import CheckpointError
    from foleyflow.train.state import load_train_state

    tensors, meta = load_checkpoint(path)
    prov = json.loads(meta.get(PROVENANCE, "{}"))
    if meta.get(KIND) == kind:
        return tensors, meta[CONFIG], prov
    if meta.get(KIND) == f"train_state/{kind}":
        state, meta = load_train_state(path, kind=kind)
        return state["model"], json.dumps(json.loads(meta[CONFIG])["model"], sort_keys=True), prov
    raise CheckpointError(f"{path} is a '{meta.get(KIND)}' checkpoint, expected '{kind}' or 'train_state/{kind}'")


def export_fp16(src: Path, dst: Path, kind: str) -> Path:
    from foleyflow.checkpoint import save_checkpoint

    tensors, config, prov = model_tensors(src, kind)
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    provenance = {"exported_from": str(src), "source_sha256": file_sha256(src), "step": prov.get("step"),
                  "storage": "float16", "source_provenance": prov}
    return save_checkpoint(dst, half, kind=kind, config=config, provenance=provenance)


def _load_fp32(src: Path, kind: str, tmp: Path):
    """The source as a model in fp32 (a training state is first written out as a plain fp32 checkpoint)."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.models.vae import load_vae
    from foleyflow.models.vocoder import load_vocoder

    tensors, config, _ = model_tensors(src, kind)
    save_checkpoint(tmp, tensors, kind=kind, config=config)
    return (load_vae if kind == "vae" else load_vocoder)(tmp)


def round_trip(vae, voc, wav: torch.Tensor) -> torch.Tensor:
    from foleyflow.audio import log_mel_spectrogram
    from foleyflow.models.vae import decode_channels, encode_channels
    from foleyflow.models.vocoder import vocode_channels

    with torch.inference_mode():
        return vocode_channels(voc, decode_channels(vae, encode_channels(vae, log_mel_spectrogram(wav, "16k")).mean))


def main() -> None:
    import tempfile

    from foleyflow.eval.audio_io import read_stereo
    from foleyflow.models.vae import load_vae, num_latent_frames, samples_per_latent
    from foleyflow.models.vocoder import load_vocoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vae", required=True, type=Path)
    p.add_argument("--vocoder", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--check", type=Path, help="folder of 16 kHz wavs for the fp16-vs-fp32 round-trip check")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    vae_out = export_fp16(args.vae, args.out / "vae.safetensors", "vae")
    voc_out = export_fp16(args.vocoder, args.out / "vocoder.safetensors", "vocoder")
    for f in (vae_out, voc_out):
        print(f"wrote {f} ({f.stat().st_size / 1e6:.2f} MB, sha256 {file_sha256(f)})")
    if args.check is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        vae32, voc32 = _load_fp32(args.vae, "vae", Path(tmp) / "vae.safetensors"), \
            _load_fp32(args.vocoder, "vocoder", Path(tmp) / "voc.safetensors")
    vae16, voc16 = load_vae(vae_out), load_vocoder(voc_out)
    worst_abs, worst_rel, peak = 0.0, 0.0, 0.0
    wavs = sorted(args.check.glob("*.wav"))[:args.clips]
    for path in wavs:
        x, _ = read_stereo(path, 16000)
        n = x.shape[1]
        padded = num_latent_frames(n, vae32.cfg) * samples_per_latent(vae32.cfg)
        wav = torch.nn.functional.pad(torch.from_numpy(x).float(), (0, padded - n))[None]
        a, b = round_trip(vae32, voc32, wav), round_trip(vae16, voc16, wav)
        worst_abs = max(worst_abs, (a - b).abs().max().item())
        worst_rel = max(worst_rel, ((a - b).norm() / a.norm().clamp(min=1e-12)).item())
        peak = max(peak, a.abs().max().item())
    print(f"fp16-stored vs fp32 round trip on {len(wavs)} clips of {args.check}: max |diff| {worst_abs:.2e} "
          f"(fp32 output peak {peak:.3f}), max relative L2 diff {worst_rel:.2e}")


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
