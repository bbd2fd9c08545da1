"""Train the mel VAE (foleyflow.models.vae) on stereo audio: L1 on the log-mel plus a small KL term.

    torchrun --nproc_per_node 2 recipes/train_vae.py --config configs/train_vae/default.yaml [key=value ...]
    python recipes/train_vae.py --config configs/train_vae/debug.yaml          # one process, two steps

Data: `data.source` is a folder of .wav/.flac, a JSONL manifest with an `audio` field per clip (FoleyWorld), or
`synthetic`. Each channel of each stereo crop is one training example (the VAE is mono; see models/vae.py).
Before the first step the per-bin log-mel mean/std are measured on `stats_batches` batches (averaged over processes)
and stored in the model. The run folder `out_dir` has the layout of every recipe (foleyflow.train.run):
`checkpoints/state_<step>.safetensors` (resumable training states; a run restarted with the same out_dir continues
from the newest one), `config.yaml`, `tb/` and `metrics.jsonl`, plus `vae.safetensors` (the model alone, for
`foleyflow.models.vae.load_vae`).

`init_from=VAE` starts from a trained VAE (same model config; its input statistics are kept); with
`decoder_only=true` only the decoder trains, so the latent space, and every latents cache and generator made with
that VAE, stays valid. A resumed run may change only `steps`, `optim.decay_steps` and the logging/saving settings
(init_from is then ignored: the run's own state wins).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.audio import log_mel_spectrogram
from foleyflow.config import config_to_json, load_config
from foleyflow.data.audio_clips import build_audio_dataset
from foleyflow.errors import ConfigError
from foleyflow.models.vae import MelVAE, VAEConfig, samples_per_latent, save_vae
from foleyflow.train.codec_losses import vae_losses, weighted_sum
from foleyflow.train.dist import all_reduce_mean, barrier, cleanup_distributed, setup_distributed, wrap_ddp
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import OptimConfig, build_optimizer, lr_at, set_lr
from foleyflow.train.state import rng_state, set_rng_state

# config fields a resumed run may change besides foleyflow.train.run.COMMON_RESUMABLE (init_from is ignored then)
RESUMABLE = ("optim.decay_steps", "init_from", "data.num_workers")
RENAMED = {"optim.lr_decay_steps": "optim.decay_steps"}  # old names in states of older runs


@dataclass
class DataConfig:
    source: str = "synthetic"  # folder, JSONL manifest, or 'synthetic'
    split: str | None = None  # manifest split to use (None = all entries)
    clip_seconds: float = 2.0  # rounded down to whole latent frames
    synthetic_items: int = 256
    num_workers: int = 0


@dataclass
class VAEOptimConfig(OptimConfig):
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup_steps: int = 100  # then lr x gamma (0.1) at each of decay_steps (a resumed run may add them)


@dataclass
class TrainVAEConfig:
    model: VAEConfig = field(default_factory=VAEConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: VAEOptimConfig = field(default_factory=VAEOptimConfig)
    loss_weights: dict[str, float] = field(default_factory=lambda: {"vae/l1": 1.0, "vae/kl": 1e-4})
    batch_size: int = 8  # stereo clips per process (2x as many mono examples)
    steps: int = 20000
    seed: int = 0
    out_dir: str = "runs/vae"
    log_every: int = 20
    ckpt_every: int = 500
    keep_states: int = 2
    stats_batches: int = 8
    threads: int = 0  # torch threads per process (0 = torch's default)
    device: str = "auto"
    init_from: str | None = None  # start from this VAE checkpoint (weights and input statistics; same model config)
    decoder_only: bool = False  # train only the decoder (needs init_from): the latent space, and with it every
    #                             latents cache and generator made with the checkpoint, stays valid


def init_vae(vae: MelVAE, path: str) -> None:
    """Copies a VAE checkpoint's weights and input statistics into `vae`; its config must match."""
    from foleyflow.models.vae import load_vae

    src = load_vae(path)
    theirs, ours = json.loads(config_to_json(src.cfg)), json.loads(config_to_json(vae.cfg))
    differ = [f"{k} {theirs.get(k)!r} (this run: {ours.get(k)!r})" for k in sorted(set(theirs) | set(ours))
              if theirs.get(k) != ours.get(k)]
    if differ:
        raise ConfigError(f"init_from {path} has another model config: " + ", ".join(differ))
    vae.load_state_dict(src.state_dict())


def batches(sampler, batch_size: int, epoch: int, skip: int) -> list[list[int]]:
    """This process's batches of one epoch (DistributedSampler order), minus the first `skip` already trained on."""
    sampler.set_epoch(epoch)
    idx = list(sampler)
    out = [idx[i:i + batch_size] for i in range(0, len(idx) - batch_size + 1, batch_size)]
    return out[skip:]


def main(argv: list[str] | None = None) -> None:
    args = recipe_args("Train the foleyflow mel VAE", argv)
    cfg = load_config(TrainVAEConfig, args.config, args.overrides)
    if cfg.decoder_only and not cfg.init_from:
        raise ConfigError("decoder_only needs init_from (the VAE whose encoder is kept)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = setup_distributed(cfg.device)
    out = Path(cfg.out_dir)
    lock = lock_run(out, ctx)  # a second trainer on this folder stops here
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
        raise ConfigError(f"{len(ds)} clips are too few for batch_size {cfg.batch_size} x {ctx.world_size}")

    def loader(epoch: int, skip: int):
        ds.set_epoch(epoch)
        return torch.utils.data.DataLoader(ds, batch_sampler=batches(sampler, cfg.batch_size, epoch, skip),
                                           num_workers=cfg.data.num_workers)

    def mono_mels(wav: torch.Tensor) -> torch.Tensor:  # (B, 2, N) -> (2B, n_mels, frames)
        return log_mel_spectrogram(wav.to(ctx.device), cfg.model.mel_setting).flatten(0, 1)

    vae = MelVAE(cfg.model).to(ctx.device)
    # the run's own state wins over init_from; the config (decoder_only included) must match but for RESUMABLE
    state, resume_from = resume_state(out, kind="vae", config=cfg, resumable=RESUMABLE, renamed=RENAMED,
                                      defaults=TrainVAEConfig())
    if resume_from is None and cfg.init_from:
        init_vae(vae, cfg.init_from)
    if cfg.decoder_only:
        vae.encoder.requires_grad_(False)
    init_sha = None
    if cfg.init_from:
        from foleyflow.data.cache import file_sha256

        init_sha = file_sha256(cfg.init_from) if Path(cfg.init_from).is_file() else None
    opt = build_optimizer([q for q in vae.parameters() if q.requires_grad], cfg.optim)
    gen = torch.Generator(ctx.device)  # posterior sampling, reseeded from (seed, step, rank): exact on resume
    step = 0
    if resume_from is not None:  # the lr is a function of the step (set before each step)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
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

    log, bar = None, None
    write_config(out, cfg, ctx)
    if ctx.is_main:
        from tqdm import tqdm

        log = MetricLog(out)
        bar = tqdm(total=cfg.steps, initial=step, desc="train_vae", dynamic_ncols=True)
        if resume_from is not None:
            bar.write(f"resumed from {resume_from} at step {step}")

    def save() -> None:
        if ctx.is_main:
            prov = {"recipe": "recipes/train_vae.py", "argv": sys.argv, "config": args.config, "step": step,
                    "init_from": cfg.init_from, "init_sha256": init_sha, "decoder_only": cfg.decoder_only,
                    "seed": cfg.seed, "data": cfg.data.source, "world_size": ctx.world_size}
            save_state(out, step, kind="vae", config=cfg, provenance=prov, keep=cfg.keep_states,
                       state={"model": vae.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                              "step": step})
            save_vae(out / "vae.safetensors", vae, provenance=prov)
        barrier(ctx)

    model.train()
    if cfg.decoder_only:  # eval mode: MPConv1d re-normalises its stored weights in place while training
        vae.encoder.eval()
    while step < cfg.steps:
        epoch, skip = divmod(step, per_epoch)
        for wav in loader(epoch, skip):
            mel = mono_mels(wav)
            lr = lr_at(cfg.optim, step, cfg.steps)
            set_lr(opt, lr)
            gen.manual_seed((cfg.seed * 1_000_003 + step) * 64 + ctx.rank)
            rec, post = model(mel, generator=gen)
            terms = vae_losses(rec, mel, post)
            loss = weighted_sum(terms, cfg.loss_weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_([q for q in vae.parameters() if q.requires_grad],
                                                       cfg.optim.grad_clip)
            opt.step()
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                logged = {k: all_reduce_mean(v, ctx).item() for k, v in terms.items()}
                if ctx.is_main:
                    log.log(step, {**logged, "train/grad_norm": grad_norm.item(), "train/lr": lr})
                    bar.set_postfix({k.split("/")[-1]: f"{v:.4f}" for k, v in logged.items()})
            if bar is not None:
                bar.update(1)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                save()
            if step >= cfg.steps:
                break
    if ctx.is_main:
        bar.close()
        log.close()
    del model  # release DDP reducers before the process group goes
    barrier(ctx)  # every process reaches teardown together (gloo aborts if a peer exits mid-teardown)
    release_run(lock)
    cleanup_distributed(ctx)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
