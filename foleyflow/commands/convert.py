"""`foleyflow convert mmaudio --generator G.pth [...] -o BUNDLE`: released MMAudio files -> a foleyflow bundle folder.

See `foleyflow.models.mmaudio_release` (what is read, how, and what is written) and docs/mmaudio.md.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert released third-party weights (MMAudio) into a foleyflow bundle",
                       description="Converts released model files into a folder of safetensors with provenance and "
                                   "licence. Weights files are read with torch.load(weights_only=True) only: a file "
                                   "that would need unpickling is refused.")
    which = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    m = which.add_parser("mmaudio", help="MMAudio's released files (hkchengrex/MMAudio; weights CC-BY-NC-4.0)")
    m.add_argument("--generator", required=True, metavar="G.pth",
                   help="generator weights, e.g. mmaudio_small_16k.pth or mmaudio_large_44k_v2.pth")
    m.add_argument("--vae", metavar="V.pth", help="the mel VAE of the same sample rate (v1-16.pth or v1-44.pth)")
    m.add_argument("--vocoder", metavar="BIGVGAN",
                   help="16 kHz: MMAudio's BigVGAN file (best_netG.pt); 44.1 kHz: NVIDIA's BigVGAN-v2 folder "
                        "(config.json + bigvgan_generator.pt)")
    m.add_argument("--synchformer", metavar="S.pth", help="Synchformer weights (synchformer_state_dict.pth)")
    m.add_argument("--clip", metavar="DIR",
                   help="open_clip folder of DFN5B-CLIP-ViT-H-14-384 (open_clip_config.json + weights)")
    m.add_argument("-o", "--out", required=True, metavar="BUNDLE", help="output folder (created)")
    m.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size; loaded as float32)")
    m.set_defaults(func=run)


def run(args) -> int:
    from foleyflow.models.mmaudio_release import convert_release

    path = convert_release(args.out, generator=args.generator, vae=args.vae, vocoder=args.vocoder,
                           synchformer=args.synchformer, clip=args.clip, fp16=args.fp16)
    import json

    parts = sorted(json.loads(path.read_text())["components"])
    print(f"wrote {path.parent} ({', '.join(parts)}); licence of MMAudio's weights: CC-BY-NC-4.0 (non-commercial)")
    return 0
