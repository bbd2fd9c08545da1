"""Train the mel VAE (foleyflow.models.vae) on stereo audio: L1 on the log-mel plus a small KL term.

    torchrun --nproc_per_node 2 recipes/train_vae.py --config configs/train_vae/default.yaml [key=value ...]
    python recipes/train_vae.py --config configs/train_vae/debug.yaml          # one process, two steps

Data: `data.source` is a folder of .wav/.flac, a JSONL manifest with an `audio` field per clip (FoleyWorld), or
`synthetic`. Each channel of each stereo crop is one training example (the VAE is mono; see models/vae.py).
Before the first step the per-bin log-mel mean/std are measured on `stats_batches` batches (averaged over processes)
and stored in the model. Outputs in `out_dir`: `ckpt/state_<step>.safetensors` (resumable training state; a run
restarted with the same out_dir continues from the newest one), `vae.safetensors` (the model alone, for
`foleyflow.models.vae.load_vae`), `config.yaml`, and TensorBoard logs in `tb/`.

`init_from=VAE` starts from a trained VAE (same model config; its input statistics are kept); with
`decoder_only=true` only the decoder trains, so the latent space, and every latents cache and generator made with
that VAE, stays valid. A run resumes only with the `decoder_only` setting it started with.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.audio import log_mel_spectrogram
from foleyflow.config import config_to_json, load_config, save_config
from foleyflow.data.audio_clips import build_audio_dataset
from foleyflow.models.vae import MelVAE, VAEConfig, samples_per_latent, save_vae
from foleyflow.train.codec_losses import vae_losses, weighted_sum
from foleyflow.train.dist import all_reduce_mean, barrier, cleanup_distributed, setup_distributed, wrap_ddp
from foleyflow.train.state import latest_checkpoint, load_train_state, rng_state, save_train_state, set_rng_state


@dataclass
class DataConfig:
    source: str = "synthetic"  # folder, JSONL manifest, or 'synthetic'
    split: str | None = None  # manifest split to use (None = all entries)
    clip_seconds: float = 2.0  # rounded down to whole latent frames
    synthetic_items: int = 256
    num_workers: int = 0


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup_steps: int = 100
    lr_decay_steps: list[int] = field(default_factory=list)  # lr x0.1 at each (a resumed run may add them)


@dataclass
class TrainVAEConfig:
    model: VAEConfig = field(default_factory=VAEConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss_weights: dict[str, float] = field(default_factory=lambda: {"vae/l1": 1.0, "vae/kl": 1e-4})
    batch_size: int = 8  # stereo clips per process (2x as many mono examples)
    steps: int = 20000
    seed: int = 0
    out_dir: str = "runs/vae"
    log_every: int = 20
    save_every: int = 500
    keep_last: int = 2
    stats_batches: int = 8
    threads: int = 0  # torch threads per process (0 = torch's default)
    device: str = "auto"
    init_from: str | None = None  # start from this VAE checkpoint (weights and input statistics; same model config)
    decoder_only: bool = False  # train only the decoder (needs init_from): the latent space, and with it every
    #                             latents cache and generator made with the checkpoint, stays valid


def lr_factor(optim: OptimConfig, step: int) -> float:
    """Linear warmup, then x0.1 at each of `lr_decay_steps`."""
    from foleyflow.train.schedule import warmup_step_decay

    return warmup_step_decay(step, optim.warmup_steps, optim.lr_decay_steps)


def init_vae(vae: MelVAE, path: str) -> None:
    """Copies a VAE checkpoint's weights and input statistics into `vae`; its config must match."""
    from foleyflow.models.vae import load_vae

    src = load_vae(path)
    theirs, ours = json.loads(config_to_json(src.cfg)), json.loads(config_to_json(vae.cfg))
    differ = [f"{k} {theirs.get(k)!r} (this run: {ours.get(k)!r})" for k in sorted(set(theirs) | set(ours))
              if theirs.get(k) != ours.get(k)]
    if differ:
        raise SystemExit(f"error: init_from {path} has another model config: " + ", ".join(differ))
    vae.load_state_dict(src.state_dict())


def batches(sampler, batch_size: int, epoch: int, skip: int) -> list[list[int]]:
    """This process's batches of one epoch (DistributedSampler order), minus the first `skip` already trained on."""
    sampler.set_epoch(epoch)
    idx = list(sampler)
    out = [idx[i:i + batch_size] for i in range(0, len(idx) - batch_size + 1, batch_size)]
    return out[skip:]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the foleyflow mel VAE")
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. optim.lr=1e-4")
    args = p.parse_args(argv)
    cfg = load_config(TrainVAEConfig, args.config, args.overrides)
    if cfg.decoder_only and not cfg.init_from:
        raise SystemExit("error: decoder_only needs init_from (the VAE whose encoder is kept)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = setup_distributed(cfg.device)
    out = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)

    # data: every process reads its own shard of each epoch
    from foleyflow.audio import MEL_SETTINGS

    sr = MEL_SETTINGS[cfg.model.mel_setting].sample_rate
    spl = samples_per_latent(cfg.model)
    num_samples = max(1, int(cfg.data.clip_seconds * sr) // spl) * spl
    ds = build_audio_dataset(cfg.data.source, sample_rate=sr, num_samples=num_samples, seed=cfg.seed,
                             split=cfg.data.split, synthetic_items=cfg.data.synthetic_items)
    sampler = torch.utils.data.DistributedSampler(ds, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed,
                                                  drop_last=True)
    per_epoch = len(sampler) // cfg.batch_size
    if per_epoch == 0:
        raise SystemExit(f"error: {len(ds)} clips are too few for batch_size {cfg.batch_size} x {ctx.world_size}")

    def loader(epoch: int, skip: int):
        ds.set_epoch(epoch)
        return torch.utils.data.DataLoader(ds, batch_sampler=batches(sampler, cfg.batch_size, epoch, skip),
                                           num_workers=cfg.data.num_workers)

    def mono_mels(wav: torch.Tensor) -> torch.Tensor:  # (B, 2, N) -> (2B, n_mels, frames)
        return log_mel_spectrogram(wav.to(ctx.device), cfg.model.mel_setting).flatten(0, 1)

    vae = MelVAE(cfg.model).to(ctx.device)
    resume_from = latest_checkpoint(out / "ckpt")
    if resume_from is not None:  # the run's own state wins over init_from; the trained parameters must not change
        from foleyflow.checkpoint import checkpoint_config

        _, meta = load_train_state(resume_from, kind="vae")
        was = bool(checkpoint_config(meta).get("decoder_only", False))
        if was != cfg.decoder_only:
            raise SystemExit(f"error: {out} was trained with decoder_only={str(was).lower()}; resume it the same "
                             f"way or choose a new out_dir")
    elif cfg.init_from:
        init_vae(vae, cfg.init_from)
    if cfg.decoder_only:
        vae.encoder.requires_grad_(False)
    init_sha = None
    if cfg.init_from:
        from foleyflow.data.cache import file_sha256

        init_sha = file_sha256(cfg.init_from) if Path(cfg.init_from).is_file() else None
    opt = torch.optim.AdamW([q for q in vae.parameters() if q.requires_grad], lr=cfg.optim.lr, betas=cfg.optim.betas,
                            weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg.optim, s))
    gen = torch.Generator(ctx.device)  # posterior sampling, reseeded from (seed, step, rank): exact on resume
    step = 0
    if resume_from is not None:
        state, _ = load_train_state(resume_from, kind="vae")
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        for group, base in zip(opt.param_groups, sched.base_lrs):  # this config's schedule from the first step on
            group["lr"] = base * lr_factor(cfg.optim, int(state["step"]))
        set_rng_state(state["rng"])
        step = int(state["step"])
    elif not cfg.init_from:  # per-bin input statistics, averaged over processes
        mels = []
        for i, wav in enumerate(loader(0, 0)):
            if i >= cfg.stats_batches:
                break
            mels.append(mono_mels(wav))
        m = torch.cat(mels)
        vae.data_mean.copy_(all_reduce_mean(m.mean(dim=(0, 2)), ctx))
        vae.data_std.copy_(all_reduce_mean(m.std(dim=(0, 2)), ctx).clamp(min=1e-3))
    model = wrap_ddp(vae, ctx)

    writer, bar = None, None
    if ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        writer = SummaryWriter(str(out / "tb"))
        bar = tqdm(total=cfg.steps, initial=step, desc="train_vae", dynamic_ncols=True)
        if resume_from is not None:
            bar.write(f"resumed from {resume_from} at step {step}")

    def save() -> None:
        if ctx.is_main:
            prov = {"recipe": "recipes/train_vae.py", "argv": sys.argv, "config": args.config, "step": step,
                    "init_from": cfg.init_from, "init_sha256": init_sha, "decoder_only": cfg.decoder_only,
                    "seed": cfg.seed, "data": cfg.data.source, "world_size": ctx.world_size}
            save_train_state(out / "ckpt" / f"state_{step:08d}.safetensors", kind="vae",
                             config=config_to_json(cfg), provenance=prov,
                             state={"model": vae.state_dict(), "optimizer": opt.state_dict(),
                                    "scheduler": sched.state_dict(), "rng": rng_state(),
                                    "step": step})
            save_vae(out / "vae.safetensors", vae, provenance=prov)
            for old in sorted((out / "ckpt").glob("state_*.safetensors"))[:-cfg.keep_last]:
                old.unlink()
        barrier(ctx)

    model.train()
    if cfg.decoder_only:  # eval mode: MPConv1d re-normalises its stored weights in place while training
        vae.encoder.eval()
    while step < cfg.steps:
        epoch, skip = divmod(step, per_epoch)
        for wav in loader(epoch, skip):
            mel = mono_mels(wav)
            gen.manual_seed((cfg.seed * 1_000_003 + step) * 64 + ctx.rank)
            rec, post = model(mel, generator=gen)
            terms = vae_losses(rec, mel, post)
            loss = weighted_sum(terms, cfg.loss_weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_([q for q in vae.parameters() if q.requires_grad],
                                                       cfg.optim.grad_clip)
            opt.step()
            sched.step()
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                logged = {k: all_reduce_mean(v, ctx).item() for k, v in terms.items()}
                if ctx.is_main:
                    for k, v in {**logged, "train/grad_norm": grad_norm.item(),
                                 "train/lr": sched.get_last_lr()[0]}.items():
                        writer.add_scalar(k, v, step)
                    bar.set_postfix({k.split("/")[-1]: f"{v:.4f}" for k, v in logged.items()})
            if bar is not None:
                bar.update(1)
            if step % cfg.save_every == 0 or step == cfg.steps:
                save()
            if step >= cfg.steps:
                break
    if ctx.is_main:
        bar.close()
        writer.close()
    del model  # release DDP reducers before the process group goes
    barrier(ctx)  # every process reaches teardown together (gloo aborts if a peer exits mid-teardown)
    cleanup_distributed(ctx)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
