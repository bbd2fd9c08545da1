"""Train the Vocos-style vocoder (foleyflow.models.vocoder) with mel, multi-resolution STFT and adversarial losses.

    torchrun --nproc_per_node 2 recipes/train_vocoder.py --config configs/train_vocoder/default.yaml [key=value ...]
    python recipes/train_vocoder.py --config configs/train_vocoder/debug.yaml      # one process, two steps

Each channel of each stereo crop is one mono example (the vocoder is mono, stereo is vocoded per channel). The
generator sees the true log-mel of the crop; losses: mel L1 (weight 45 as in Vocos / HiFi-GAN), multi-resolution
STFT (Parallel WaveGAN), and after `disc_start_step` the adversarial loss of multi-period + multi-resolution
discriminators (hinge or LSGAN) with feature matching. The discriminators see one random `disc_segment`-sample
window (8192, HiFi-GAN's segment length; the same window of real and generated audio) of each crop, and the
generator's adversarial pass gives them no weight gradients. Data work as in recipes/train_vae.py; the run folder
`out_dir` has the layout of every recipe (foleyflow.train.run: checkpoints/, config.yaml, tb/, metrics.jsonl; resumed
from the newest state when restarted) and the model alone goes to `out_dir/vocoder.safetensors` (`load_vocoder`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.audio import MEL_SETTINGS, log_mel_spectrogram
from foleyflow.config import load_config
from foleyflow.data.audio_clips import build_audio_dataset
from foleyflow.errors import ConfigError
from foleyflow.models.discriminators import (DiscriminatorConfig, Discriminators, discriminator_loss,
                                             feature_matching_loss, generator_adversarial_loss)
from foleyflow.models.vocoder import Vocoder, VocoderConfig, save_vocoder
from foleyflow.train.codec_losses import mel_l1, multi_resolution_stft_loss, weighted_sum
from foleyflow.train.dist import all_reduce_mean, barrier, cleanup_distributed, setup_distributed, wrap_ddp
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import OptimConfig, Schedule, build_optimizer, lr_at, set_lr
from foleyflow.train.state import rng_state, set_rng_state

RESUMABLE = ("data.num_workers",)  # besides foleyflow.train.run.COMMON_RESUMABLE
RENAMED = {"optim.lr_decay": "optim.gamma"}  # old names in states of older runs


@dataclass
class DataConfig:
    source: str = "synthetic"  # folder, JSONL manifest, or 'synthetic'
    split: str | None = None
    clip_seconds: float = 1.0
    synthetic_items: int = 256
    num_workers: int = 0


@dataclass
class VocoderOptimConfig(OptimConfig):  # both optimisers (generator and discriminators)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.8, 0.9)
    grad_clip: float = 1000.0
    schedule: Schedule = "exponential"
    gamma: float = 0.999  # per decay_every (100) steps


@dataclass
class TrainVocoderConfig:
    model: VocoderConfig = field(default_factory=VocoderConfig)
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: VocoderOptimConfig = field(default_factory=VocoderOptimConfig)
    adversarial: str = "hinge"  # or "lsgan"
    disc_start_step: int = 2000
    disc_segment: int = 8192  # samples of the random crop the discriminators see (HiFi-GAN's segment); 0 = whole clip
    loss_weights: dict[str, float] = field(default_factory=lambda: {
        "mel/l1": 45.0, "stft/sc": 1.0, "stft/mag": 1.0, "adv/gen": 1.0, "adv/fm": 2.0})
    batch_size: int = 8
    steps: int = 50000
    seed: int = 0
    out_dir: str = "runs/vocoder"
    log_every: int = 20
    ckpt_every: int = 500
    keep_states: int = 2
    threads: int = 0
    device: str = "auto"


def batches(sampler, batch_size: int, epoch: int, skip: int) -> list[list[int]]:
    """This process's batches of one epoch (DistributedSampler order), minus the first `skip` already trained on."""
    sampler.set_epoch(epoch)
    idx = list(sampler)
    return [idx[i:i + batch_size] for i in range(0, len(idx) - batch_size + 1, batch_size)][skip:]


def disc_crop(real: torch.Tensor, fake: torch.Tensor, segment: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random window (global torch RNG, saved in checkpoints) of real and generated audio (N, samples)."""
    if segment <= 0 or segment >= real.shape[-1]:
        return real, fake
    start = int(torch.randint(0, real.shape[-1] - segment + 1, ()))
    return real[..., start:start + segment], fake[..., start:start + segment]


def main(argv: list[str] | None = None) -> None:
    args = recipe_args("Train the foleyflow vocoder", argv)
    cfg = load_config(TrainVocoderConfig, args.config, args.overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = setup_distributed(cfg.device)
    out = Path(cfg.out_dir)
    lock = lock_run(out, ctx)  # a second trainer on this folder stops here
    torch.manual_seed(cfg.seed)

    setting = MEL_SETTINGS[cfg.model.mel_setting]
    hop = setting.hop_length
    num_samples = max(2, int(cfg.data.clip_seconds * setting.sample_rate) // hop) * hop
    ds = build_audio_dataset(cfg.data.source, sample_rate=setting.sample_rate, num_samples=num_samples,
                             seed=cfg.seed, split=cfg.data.split, synthetic_items=cfg.data.synthetic_items)
    sampler = torch.utils.data.DistributedSampler(ds, ctx.world_size, ctx.rank, shuffle=True, seed=cfg.seed,
                                                  drop_last=True)
    per_epoch = len(sampler) // cfg.batch_size
    if per_epoch == 0:
        raise ConfigError(f"{len(ds)} clips are too few for batch_size {cfg.batch_size} x {ctx.world_size}")

    def loader(epoch: int, skip: int):
        ds.set_epoch(epoch)
        return torch.utils.data.DataLoader(ds, batch_sampler=batches(sampler, cfg.batch_size, epoch, skip),
                                           num_workers=cfg.data.num_workers)

    vocoder = Vocoder(cfg.model).to(ctx.device)
    disc = Discriminators(cfg.disc).to(ctx.device)
    opt_g = build_optimizer(vocoder.parameters(), cfg.optim)
    opt_d = build_optimizer(disc.parameters(), cfg.optim)
    step = 0
    state, resume_from = resume_state(out, kind="vocoder", config=cfg, resumable=RESUMABLE, renamed=RENAMED,
                                      defaults=TrainVocoderConfig())
    if resume_from is not None:
        vocoder.load_state_dict(state["model"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        set_rng_state(state["rng"])
        step = int(state["step"])
    gen_model, disc_model = wrap_ddp(vocoder, ctx), wrap_ddp(disc, ctx)

    log, bar = None, None
    write_config(out, cfg, ctx)
    if ctx.is_main:
        from tqdm import tqdm

        log = MetricLog(out)
        bar = tqdm(total=cfg.steps, initial=step, desc="train_vocoder", dynamic_ncols=True)
        if resume_from is not None:
            bar.write(f"resumed from {resume_from} at step {step}")

    def save() -> None:
        if ctx.is_main:
            prov = {"recipe": "recipes/train_vocoder.py", "argv": sys.argv, "config": args.config, "step": step,
                    "seed": cfg.seed, "data": cfg.data.source, "world_size": ctx.world_size}
            save_state(out, step, kind="vocoder", config=cfg, provenance=prov, keep=cfg.keep_states,
                       state={"model": vocoder.state_dict(), "disc": disc.state_dict(),
                              "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                              "rng": rng_state(), "step": step})
            save_vocoder(out / "vocoder.safetensors", vocoder, provenance=prov)
        barrier(ctx)

    gen_model.train()
    disc_model.train()
    while step < cfg.steps:
        epoch, skip = divmod(step, per_epoch)
        for wav in loader(epoch, skip):
            wav = wav.to(ctx.device).flatten(0, 1)  # (2B, num_samples) mono examples
            lr = lr_at(cfg.optim, step, cfg.steps)  # a function of the step: exact on resume
            set_lr(opt_g, lr)
            set_lr(opt_d, lr)
            mel = log_mel_spectrogram(wav, setting)
            fake = gen_model(mel)
            adversarial = step >= cfg.disc_start_step
            terms = {}
            if adversarial:  # discriminator step on detached audio
                real_seg, fake_seg = disc_crop(wav, fake, cfg.disc_segment)
                real_logits, _ = disc_model(real_seg)
                fake_logits, _ = disc_model(fake_seg.detach())
                terms["disc/loss"] = discriminator_loss(real_logits, fake_logits, cfg.adversarial)
                opt_d.zero_grad(set_to_none=True)
                terms["disc/loss"].backward()
                torch.nn.utils.clip_grad_norm_(disc.parameters(), cfg.optim.grad_clip)
                opt_d.step()
            terms.update(mel_l1(fake, mel, setting))
            terms.update(multi_resolution_stft_loss(fake, wav))
            weights = dict(cfg.loss_weights)
            if adversarial:  # the updated discriminators score the generator; their weights get no gradient here
                disc.requires_grad_(False)
                with torch.no_grad():
                    _, real_feats = disc(real_seg)
                fake_logits, fake_feats = disc(fake_seg)
                terms["adv/gen"] = generator_adversarial_loss(fake_logits, cfg.adversarial)
                terms["adv/fm"] = feature_matching_loss(real_feats, fake_feats)
            else:
                weights = {k: w for k, w in weights.items() if not k.startswith("adv/")}
            loss = weighted_sum(terms, weights)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(vocoder.parameters(), cfg.optim.grad_clip)
            opt_g.step()
            disc.requires_grad_(True)
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                logged = {k: all_reduce_mean(v.detach(), ctx).item() for k, v in terms.items()}
                if ctx.is_main:
                    log.log(step, {**logged, "train/grad_norm": grad_norm.item(), "train/lr": lr})
                    bar.set_postfix({k: f"{v:.3f}" for k, v in logged.items()})
            if bar is not None:
                bar.update(1)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                save()
            if step >= cfg.steps:
                break
    if ctx.is_main:
        bar.close()
        log.close()
    del gen_model, disc_model  # release DDP reducers before the process group goes
    barrier(ctx)  # every process reaches teardown together (gloo aborts if a peer exits mid-teardown)
    release_run(lock)
    cleanup_distributed(ctx)


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
