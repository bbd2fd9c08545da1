"""`foleyflow extract-latents MANIFEST --out DIR --vae CKPT`: the VAE latent cache for generator training.

For every manifest entry with an `audio` file: load it as stereo at the VAE's sample rate, cut or zero-pad it to the
cache duration, take the log-mel, encode each channel with the VAE and store the posterior mean and std as (T, C)
tensors (C = 2 x latent_dim, left channel first). `info` holds the per-channel mean and std of latents sampled from
these posteriors over the whole set, for normalising the generator's targets. The cache records the VAE checkpoint's
sha256, so a generator is never trained on latents of another VAE. Format: docs/caches.md.
"""
from __future__ import annotations

import argparse

CACHE_KIND = "vae_latents"
MAX_DURATION_S = 600.0  # a cache clip longer than this is a mistake (1e6 s would need 119 GiB per clip)


def register(subparsers) -> None:
    p = subparsers.add_parser("extract-latents", help="encode a manifest's audio into a VAE latent cache",
                              description=__doc__.split("\n\n")[1])
    p.add_argument("manifest", help="JSONL manifest whose entries have an `audio` file")
    p.add_argument("--out", required=True, help="folder of the new cache (must not hold a cache yet)")
    p.add_argument("--vae", required=True, help="VAE checkpoint (kind 'vae')")
    p.add_argument("--duration-s", type=float, default=None,
                   help="clip duration of the cache (default: the manifest's duration_s, which must be one value)")
    p.add_argument("--split", default=None, help="only entries of this split (default: all)")
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from foleyflow.audio import MEL_SETTINGS, load_audio, log_mel_spectrogram
    from foleyflow.data.cache import CacheWriter, producer_record
    from foleyflow.manifest import ManifestError, read_manifest
    from foleyflow.models.vae import encode_channels, load_vae, num_latent_frames, samples_per_latent

    import math

    from foleyflow.errors import ConfigError

    if not 0 <= args.threads <= 1024:
        raise ConfigError(f"--threads must be between 0 (default) and 1024, got {args.threads}")
    if not 1 <= args.shard_size <= 1_000_000:
        raise ConfigError(f"--shard-size must be between 1 and 1000000 clips, got {args.shard_size}")
    if args.duration_s is not None and not (math.isfinite(args.duration_s) and 0 < args.duration_s <= MAX_DURATION_S):
        raise ConfigError(f"--duration-s must be in (0, {MAX_DURATION_S:g}] s, got {args.duration_s}")
    if args.threads:
        torch.set_num_threads(args.threads)
    entries = [e for e in read_manifest(args.manifest) if args.split is None or e.split == args.split]
    if not entries:
        raise ManifestError(f"manifest {args.manifest} has no entries for split '{args.split}'")
    lacking = [e.id for e in entries if not e.audio]
    if lacking:
        raise ManifestError(f"manifest {args.manifest}: entry '{lacking[0]}' has no `audio` file "
                            f"({len(lacking)} entries lack one)")
    duration = args.duration_s
    if duration is None:
        durations = {e.duration_s for e in entries}
        if len(durations) != 1 or None in durations:
            raise ManifestError("clips have no single duration_s in the manifest; pass --duration-s")
        duration = durations.pop()
    if not (math.isfinite(duration) and 0 < duration <= MAX_DURATION_S):
        raise ManifestError(f"the cache duration must be in (0, {MAX_DURATION_S:g}] s, got {duration}")

    vae = load_vae(args.vae)
    setting = MEL_SETTINGS[vae.cfg.mel_setting]
    n_lat = num_latent_frames(round(duration * setting.sample_rate), vae.cfg)
    n_samples = n_lat * samples_per_latent(vae.cfg)
    # the mel codec's tokens are log-mel values (a point-mass posterior): float16 keeps them to 0.004 log10 units and
    # halves a cache that is 8x the VAE's size
    point_mass = getattr(vae.cfg, "frames_per_token", None) is not None
    writer = CacheWriter(args.out, CACHE_KIND, {"vae": producer_record(args.vae, "vae")},
                         shard_size=args.shard_size, dtype=torch.float16 if point_mass else torch.float32)
    s1 = s2 = None
    count = 0
    with torch.inference_mode():
        for e in tqdm(entries, desc="extract-latents", dynamic_ncols=True):
            audio = load_audio(e.audio, setting.sample_rate, channels=2)[:, :n_samples]
            audio = np.pad(audio, ((0, 0), (0, n_samples - audio.shape[1])))
            mel = log_mel_spectrogram(torch.from_numpy(audio)[None], setting)
            post = encode_channels(vae, mel)
            mean, std = post.mean[0].T.contiguous(), post.std[0].T.contiguous()  # (T, C)
            writer.add(e.id, {"mean": mean, "std": std})
            m64, v64 = mean.double(), std.double().square()
            s1 = m64.sum(0) if s1 is None else s1 + m64.sum(0)
            s2 = (m64.square() + v64).sum(0) if s2 is None else s2 + (m64.square() + v64).sum(0)
            count += mean.shape[0]
    lat_mean = s1 / count
    lat_std = (s2 / count - lat_mean.square()).clamp(min=1e-12).sqrt()
    info = {"duration_s": n_samples / setting.sample_rate, "requested_duration_s": duration,
            "sample_rate": setting.sample_rate, "mel_setting": vae.cfg.mel_setting,
            "samples_per_latent": samples_per_latent(vae.cfg),
            "latent_fps": setting.sample_rate / samples_per_latent(vae.cfg), "latent_frames": n_lat,
            "audio_channels": 2, "latent_dim_per_channel": vae.cfg.latent_dim, "layout": "(T, C); C = channel * "
            "latent_dim + k, channel 0 = left", "latent_mean": lat_mean.tolist(), "latent_std": lat_std.tolist(),
            "manifest": str(args.manifest), "split": args.split}
    folder = writer.close(info)
    print(f"wrote {len(entries)} clips ({n_lat} latent frames x {2 * vae.cfg.latent_dim} channels) to {folder}")
    return 0
