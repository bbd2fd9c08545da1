"""Write a bundle's codec round trip of the true audio as a generated set: the ceiling of any generator on it.

For each clip of a split: true audio -> log mel -> the bundle's VAE (posterior mean) -> its decoder -> its
vocoder (`--vocoder-only`: the vocoder on the true mel), written as <clip id>.wav like `foleyflow generate-set`
writes. `foleyflow evaluate --generated OUT` then scores it with every metric of the issue's target table: no
generator trained on these latents can beat it, except by chance.

    python benchmarks/codec_ceiling.py /data/foleyworld/test --out eval/ceiling_test --clips 100
    foleyflow evaluate --generated eval/ceiling_test --reference /data/foleyworld/test \
        --truth /data/foleyworld/test --video /data/foleyworld/test -o eval/report_ceiling --no-plots
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import soundfile as sf

    from foleyflow.audio import MEL_SETTINGS, log_mel_spectrogram
    from foleyflow.bundle import read_bundle
    from foleyflow.eval.audio_io import read_stereo
    from foleyflow.models.vae import decode_channels, encode_channels, load_vae, num_latent_frames, samples_per_latent
    from foleyflow.models.vocoder import load_vocoder, vocode_channels

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("split_dir", help="folder of <id>.wav clips (a FoleyWorld split)")
    p.add_argument("--out", required=True)
    p.add_argument("--bundle", default=str(Path(__file__).resolve().parents[1] / "foleyflow/assets/default"))
    p.add_argument("--vae", help="this VAE instead of the bundle's (e.g. a fine-tuned decoder)")
    p.add_argument("--vocoder", help="this vocoder checkpoint instead of the bundle's (e.g. coherent Griffin-Lim)")
    p.add_argument("--vocoder-only", action="store_true", help="skip the VAE: the vocoder on the true mel")
    p.add_argument("--clips", type=int, default=100, help="the first N clips in name order")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.clips < 1 or args.threads < 1:
        p.error("--clips and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    files = dict(read_bundle(args.bundle).files)
    if args.vae:
        files["vae"] = args.vae
    if args.vocoder:
        files["vocoder"] = args.vocoder
    vae, vocoder = load_vae(files["vae"]).eval(), load_vocoder(files["vocoder"]).eval()
    sr = MEL_SETTINGS[vae.cfg.mel_setting].sample_rate
    wavs = sorted(Path(args.split_dir).glob("*.wav"))[:args.clips]
    if not wavs:
        raise SystemExit(f"error: no .wav files in {args.split_dir}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for i, path in enumerate(wavs):
            ref, _ = read_stereo(path, sr)
            n = ref.shape[1]
            padded = num_latent_frames(n, vae.cfg) * samples_per_latent(vae.cfg)
            wav = torch.nn.functional.pad(torch.from_numpy(ref).float(), (0, padded - n))[None]
            mel = log_mel_spectrogram(wav, vae.cfg.mel_setting)
            if not args.vocoder_only:
                mel = decode_channels(vae, encode_channels(vae, mel).mean)
            audio = vocode_channels(vocoder, mel)[0, :, :n]
            sf.write(out / path.name, np.ascontiguousarray(audio.float().numpy().T), sr, subtype="FLOAT")
            print(f"\r{i + 1}/{len(wavs)} clips", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    (out / "codec_ceiling.json").write_text(json.dumps(
        {"bundle": args.bundle, "vae": None if args.vocoder_only else str(files["vae"]),
         "vocoder": str(files["vocoder"]), "split_dir": args.split_dir, "clips": [w.stem for w in wavs]}, indent=1))
    print(f"wrote {len(wavs)} round-trip clips to {out}")


if __name__ == "__main__":
    from foleyflow.errors import FoleyError

    try:
        main()
    except FoleyError as e:
        raise SystemExit(f"error: {e}") from None
