"""Fit a principal-component mel codec (foleyflow.models.mel_codec with `components` > 0) on a `train` latents cache
made with the raw mel-frame codec.

    python recipes/fit_mel_pca.py --cache cache/mel_train2400 --codec runs/melcodec/mel_codec.safetensors \
        --components 64 --clips 800 --out runs/melpca/mel_pca64.safetensors

The cache's tokens (both audio channels, every frame) of `--clips` clips drawn with `--seed` are the sample; every
clip must be a `train` row of the manifest the cache names. Prints the variance kept by the basis. The output is a
codec checkpoint: use it as `--vae` for `foleyflow extract-latents`, `data.producers.vae` and `assemble_bundle`.
"""
from __future__ import annotations

import argparse
import json

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", required=True, help="latents cache of the raw mel-frame codec (train clips)")
    ap.add_argument("--codec", required=True, help="the raw mel codec checkpoint the cache was made with")
    ap.add_argument("--components", type=int, required=True)
    ap.add_argument("--clips", type=int, default=800, help="clips sampled from the cache (default 800)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from foleyflow.data.cache import Cache, file_sha256
    from foleyflow.errors import FoleyError
    from foleyflow.manifest import read_manifest
    from foleyflow.models.mel_codec import MelFrameCodec, fit_principal_components, save_mel_codec
    from foleyflow.models.vae import load_vae

    codec = load_vae(args.codec)
    if not isinstance(codec, MelFrameCodec) or codec.cfg.components:
        raise FoleyError(f"--codec {args.codec} is not a raw mel-frame codec")
    cache = Cache(args.cache)
    cache.require_producer("vae", file_sha256(args.codec))
    manifest = cache.info.get("manifest")
    if not manifest:
        raise FoleyError(f"{args.cache} names no manifest: cannot check that its clips are train clips")
    split = {r.id: r.split for r in read_manifest(manifest, check_files=False)}
    others = [i for i in cache.ids if split.get(i) != "train"]
    if others:
        raise FoleyError(f"{args.cache}: {len(others)} clips are not train clips (e.g. {others[0]}); "
                         "the codec is fitted on train only")
    if not 1 <= args.components <= codec.cfg.stacked_dim:
        raise FoleyError(f"--components must be between 1 and {codec.cfg.stacked_dim}")
    g = torch.Generator().manual_seed(args.seed)
    pick = torch.randperm(len(cache.ids), generator=g)[: args.clips].sort().values
    tokens = cache.load("mean")[pick].float()                       # (N, T, channels * stacked_dim)
    tokens = tokens.reshape(-1, codec.cfg.stacked_dim)              # every channel's token is one sample
    mean, basis = fit_principal_components(tokens, args.components)
    centred = tokens - mean
    kept = float((centred @ basis).pow(2).sum() / centred.pow(2).sum())
    cfg = type(codec.cfg)(**{**codec.cfg.__dict__, "components": args.components})
    prov = {"recipe": "recipes/fit_mel_pca.py", "cache": str(args.cache), "codec_sha256": file_sha256(args.codec),
            "clips": int(pick.numel()), "seed": args.seed, "variance_kept": round(kept, 5)}
    save_mel_codec(args.out, cfg, provenance=prov, mean=mean, basis=basis)
    print(json.dumps({"out": args.out, "components": args.components, "clips": int(pick.numel()),
                      "tokens": int(tokens.shape[0]), "variance_kept": round(kept, 5)}))
    return 0


if __name__ == "__main__":
    from foleyflow.errors import run_main

    run_main(main)
