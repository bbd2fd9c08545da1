"""Train the foleyflow generator (MMAudio's multimodal flow-matching transformer) on cached latents and features.

Launch (CPU, 2 processes; on GPUs use --nproc_per_node <gpus>, the backend becomes nccl):
    torchrun --standalone --nproc_per_node 2 recipes/train_flow.py --config configs/train_flow/default.yaml \
        data.latents=/data/cache/latents-train data.features=/data/cache/features-train out_dir=/data/runs/flow
Resumes automatically from the newest state_*.safetensors in out_dir (same config required).

Reads (format in docs/caches.md): a latents cache (VAE posterior mean/std per clip, the latent statistics in its
info) and a features cache (visual, sync and text features per clip, the empty-text features in its extras). Never
decodes video. The recipe follows MMAudio's training (reference.md 1.5): flow matching with logit-normal times,
AdamW (0.9, 0.95), warm-up then step decays, grad clip 1, bf16 autocast without a grad scaler, EMA, condition dropout
(one draw drops visual+sync, an independent draw drops text); clips without video (has_video = 0) always use the
learned empty visual and sync features.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foleyflow.config import config_to_json, load_config, save_config
from foleyflow.data.cache import Cache
from foleyflow.errors import CacheError, FoleyError
from foleyflow.flow.objective import interpolate, sample_times, target_velocity
from foleyflow.models.generator import Generator, GeneratorConfig
from foleyflow.models.generator_io import save_generator
from foleyflow.train.dist import all_reduce_mean, cleanup_distributed, setup_distributed, wrap_ddp
from foleyflow.train.ema import EMA
from foleyflow.train.state import latest_checkpoint, load_train_state, rng_state, save_train_state, set_rng_state


LATENT_KINDS = ("latents", "vae_latents")  # `foleyflow extract-latents` writes "vae_latents"
# config fields a resumed run may change (to train longer or log differently); every other field must match
RESUMABLE_CHANGES = ("steps", "log_every", "ckpt_every", "keep_states", "threads")


@dataclass
class DataConfig:
    latents: str = ""                  # latents cache folder
    features: str = ""                 # features cache folder
    text_fields: dict[str, float] = field(default_factory=lambda: {"text": 1.0})  # field -> probability per item
    # role -> checkpoint the caches must have been made by, e.g. {semantic_encoder: PATH, sync_encoder: PATH,
    # vae: PATH}: the generator is meant to run with these (in its bundle), so caches made by others are refused
    producers: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainFlowConfig:
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)   # GeneratorConfig overrides on top of the preset
    out_dir: str = "runs/flow"
    seed: int = 0
    steps: int = 10000
    batch_size: int = 16               # per process
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-6
    warmup_steps: int = 1000
    lr_decay_steps: list[int] = field(default_factory=list)   # multiply the lr by 0.1 at each
    grad_clip: float = 1.0
    bf16: bool = True                  # autocast to bfloat16 where the device supports it
    ema_decay: float = 0.999
    drop_video: float = 0.1            # probability of dropping visual + sync together
    drop_text: float = 0.1             # independent probability of dropping the text
    overfit_items: int = 0             # > 0: train on the first N items only (smoke tests)
    log_every: int = 50
    ckpt_every: int = 1000
    keep_states: int = 2
    threads: int = 0                   # torch threads per process (0: leave torch's default)
    init_from: str = ""                # a generator checkpoint to start from (fine-tuning, e.g. on new features);
                                       # its config must equal this run's; a resumed run ignores it


class FlowTrainStep(nn.Module):
    """Wraps the generator so condition dropout happens inside forward (DDP sees every parameter used)."""

    def __init__(self, net: Generator):
        super().__init__()
        self.net = net

    def forward(self, xt, t, visual, sync, text, keep_video, keep_text):
        net = self.net
        kv = keep_video.view(-1, 1, 1).to(visual.dtype)
        kt = keep_text.view(-1, 1, 1).to(text.dtype)
        visual = kv * visual + (1 - kv) * net.empty_clip_feat[None].to(visual.dtype)
        sync = kv * sync + (1 - kv) * net.empty_sync_feat[None].to(sync.dtype)
        text = kt * text + (1 - kt) * net.empty_string_feat[None].to(text.dtype)
        return net(xt, visual, sync, text, t)


def load_data(cfg: TrainFlowConfig) -> dict[str, Any]:
    lat = Cache(cfg.data.latents)
    if lat.index["kind"] not in LATENT_KINDS:
        raise CacheError(f"{lat.folder} is a '{lat.index['kind']}' cache, expected a latents cache "
                         "(written by `foleyflow extract-latents`)")
    feat = Cache(cfg.data.features, kind="features")
    index = {k: i for i, k in enumerate(feat.ids)}
    missing = [k for k in lat.ids if k not in index]
    if missing:
        raise CacheError(f"{len(missing)} clips of the latents cache are not in the features cache (e.g. {missing[0]})")
    order = torch.tensor([index[k] for k in lat.ids])
    check_producers(cfg, lat, feat)
    for name in cfg.data.text_fields:
        if name not in feat.fields:
            raise CacheError(f"features cache has no text field '{name}' (has {sorted(feat.fields)})")
    data = {"mean": lat.load("mean"), "std": lat.load("std"), "visual": feat.load("visual")[order],
            "sync": feat.load("sync")[order],
            "texts": [feat.load(name)[order] for name in cfg.data.text_fields],
            "has_video": (feat.load("has_video")[order].flatten().float() if "has_video" in feat.fields
                          else torch.ones(len(lat.ids))),
            "latent_mean": torch.tensor(lat.info["latent_mean"]), "latent_std": torch.tensor(lat.info["latent_std"]),
            "empty_text": feat.extras().get("empty_text"), "producers": {**lat.producers, **feat.producers},
            "duration_s": float(lat.info["duration_s"])}
    if data["empty_text"] is None:
        raise CacheError(f"features cache {feat.folder} has no empty-text features (extras 'empty_text')")
    if cfg.overfit_items:
        for k in ("mean", "std", "visual", "sync", "has_video"):
            data[k] = data[k][: cfg.overfit_items]
        data["texts"] = [t[: cfg.overfit_items] for t in data["texts"]]
    return data


def check_producers(cfg: TrainFlowConfig, lat: Cache, feat: Cache) -> None:
    """Refuses caches made by other checkpoints than `data.producers` names."""
    from foleyflow.data.cache import file_sha256

    for role, path in cfg.data.producers.items():
        if not Path(path).is_file():
            raise CacheError(f"data.producers.{role}: checkpoint not found: {path}")
        cache = feat if role in feat.producers else lat if role in lat.producers else None
        if cache is None:
            raise CacheError(f"neither cache records a '{role}' producer (features: {sorted(feat.producers)}, "
                             f"latents: {sorted(lat.producers)})")
        cache.require_producer(role, file_sha256(path))


def build_model(cfg: TrainFlowConfig, data: dict) -> Generator:
    gcfg = GeneratorConfig.preset(cfg.preset, duration_s=data["duration_s"], **cfg.model)
    shapes = {"latent_channels": data["mean"].shape[-1], "visual_dim": data["visual"].shape[-1],
              "sync_dim": data["sync"].shape[-1], "text_dim": data["texts"][0].shape[-1],
              "text_len": data["empty_text"].shape[0]}
    wrong = {k: (getattr(gcfg, k), v) for k, v in shapes.items() if getattr(gcfg, k) != v}
    if wrong:
        raise FoleyError("generator config does not fit the caches: " +
                         ", ".join(f"{k} is {a} but the caches hold {b}" for k, (a, b) in wrong.items()))
    net = Generator(gcfg)
    if (net.latent_len, net.visual_len, net.sync_len) != (data["mean"].shape[1], data["visual"].shape[1],
                                                          data["sync"].shape[1]):
        raise FoleyError(f"cache sequence lengths {data['mean'].shape[1]}, {data['visual'].shape[1]}, "
                         f"{data['sync'].shape[1]} do not match {data['duration_s']} s for this generator")
    if cfg.init_from:
        init_weights(net, cfg.init_from)
    net.set_latent_stats(data["latent_mean"], data["latent_std"])
    net.set_empty_text(data["empty_text"].float())
    return net


def init_weights(net: Generator, path: str) -> None:
    """Copies the weights of the generator checkpoint at `path` into `net` (same config required). The latent
    statistics and the empty text are then set from this run's caches."""
    from foleyflow.models.generator_io import load_generator

    src = load_generator(path)
    if config_to_json(src.cfg) != config_to_json(net.cfg):
        raise FoleyError(f"init_from {path} has another generator config than this run")
    net.load_state_dict(src.state_dict())


def lr_at(cfg: TrainFlowConfig, step: int) -> float:
    from foleyflow.train.schedule import warmup_step_decay

    return cfg.lr * warmup_step_decay(step, cfg.warmup_steps, cfg.lr_decay_steps)


def batch_indices(step: int, rank: int, batch_size: int, world_size: int, n_items: int, seed: int) -> torch.Tensor:
    """Items of `rank` at `step`: a pure function of the step, so a resumed run sees exactly the data it would have
    seen. The global stream is a concatenation of per-epoch permutations seeded by (seed, epoch)."""
    start = (step * world_size + rank) * batch_size
    out = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), n_items)
        perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        out.extend(perm[offset: offset + batch_size - len(out)].tolist())
    return torch.tensor(out)


def make_batch(data: dict, idx: torch.Tensor, net: Generator, cfg: TrainFlowConfig, gen: torch.Generator):
    b = idx.numel()
    z = data["mean"][idx].float() + data["std"][idx].float() * torch.randn(data["mean"][idx].shape, generator=gen)
    x1 = net.normalize(z)
    x0 = torch.randn(x1.shape, generator=gen)
    t = sample_times(b, generator=gen)
    probs = torch.tensor(list(cfg.data.text_fields.values()))
    choice = torch.multinomial(probs / probs.sum(), b, replacement=True, generator=gen)
    text = torch.stack([data["texts"][int(c)][int(i)] for c, i in zip(choice, idx)]).float()
    keep_video = (torch.rand(b, generator=gen) >= cfg.drop_video).float() * data["has_video"][idx]
    keep_text = (torch.rand(b, generator=gen) >= cfg.drop_text).float()
    return dict(xt=interpolate(x0, x1, t), t=t, target=target_velocity(x0, x1), visual=data["visual"][idx].float(),
                sync=data["sync"][idx].float(), text=text, keep_video=keep_video, keep_text=keep_text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=None, help="YAML config (configs/train_flow/*.yaml)")
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. lr=3e-4 data.latents=DIR")
    args = ap.parse_args(argv)
    cfg = load_config(TrainFlowConfig, args.config, args.overrides)
    ctx = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    data = load_data(cfg)
    torch.manual_seed(cfg.seed)
    net = build_model(cfg, data).to(ctx.device)
    step_module = wrap_ddp(FlowTrainStep(net), ctx)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    ema = EMA(net, decay=cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)
    step = 0
    resume = latest_checkpoint(out) if out.is_dir() else None
    if resume is not None:
        state, meta = load_train_state(resume, kind="generator")
        was, now = json.loads(meta["foleyflow.config"]), json.loads(config_to_json(cfg))
        changed = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
        if changed:
            raise FoleyError(f"{resume} was written with another config ({', '.join(changed)} differ); use a new "
                             f"out_dir or the same config (only {', '.join(RESUMABLE_CHANGES)} may change)")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        gen.set_state(state["gen"][ctx.rank] if ctx.rank < len(state["gen"]) else state["gen"][0])
        set_rng_state(state["rng"])
        step = int(state["step"])
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    use_bf16 = cfg.bf16 and (ctx.device.type == "cuda" and torch.cuda.is_bf16_supported() or ctx.device.type == "cpu")
    writer = None
    if ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tb"))
    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, initial=step, disable=not ctx.is_main, desc="train_flow", dynamic_ncols=True)
    n_items, t_last, losses = data["mean"].shape[0], time.time(), []
    while step < cfg.steps:
        idx = batch_indices(step, ctx.rank, cfg.batch_size, ctx.world_size, n_items, cfg.seed)
        batch = {k: v.to(ctx.device) for k, v in make_batch(data, idx, net, cfg, gen).items()}
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            v = step_module(batch["xt"], batch["t"], batch["visual"], batch["sync"], batch["text"],
                            batch["keep_video"], batch["keep_text"])
        loss = (v.float() - batch["target"]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(net)
        step += 1
        losses.append(loss.detach())
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            mean_loss = all_reduce_mean(torch.stack(losses).mean(), ctx).item()
            losses = []
            if ctx.is_main:
                rate = cfg.log_every * cfg.batch_size * ctx.world_size / max(1e-9, time.time() - t_last)
                writer.add_scalar("flow/mse", mean_loss, step)
                writer.add_scalar("train/grad_norm", float(gnorm), step)
                writer.add_scalar("train/lr", lr_at(cfg, step - 1), step)
                writer.add_scalar("train/samples_per_s", rate, step)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                bar.write(json.dumps({"step": step, "flow/mse": round(mean_loss, 5),
                                      "samples_per_s": round(rate, 2)}), file=sys.stdout)
            t_last = time.time()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            gens = [torch.zeros_like(gen.get_state()) for _ in range(ctx.world_size)]
            if ctx.backend is not None:
                torch.distributed.all_gather(gens, gen.get_state())
            else:
                gens = [gen.get_state()]
            if ctx.is_main:
                prov = {"recipe": "recipes/train_flow.py", "step": step, "seed": cfg.seed,
                        "producers": data["producers"], "world_size": ctx.world_size}
                if cfg.init_from:
                    prov["init_from"] = cfg.init_from
                save_train_state(out / f"state_{step:08d}.safetensors", kind="generator", config=config_to_json(cfg),
                                 state={"model": net.state_dict(), "optimizer": opt.state_dict(),
                                        "ema": ema.state_dict(), "step": step, "gen": gens, "rng": rng_state()},
                                 provenance=prov)
                for old in sorted(out.glob("state_*.safetensors"))[:-cfg.keep_states]:
                    old.unlink()
                save_generator(out / "generator.safetensors", net, provenance=prov)
                save_generator(out / "generator_ema.safetensors", ema.model, provenance={**prov, "ema": cfg.ema_decay})
    bar.close()
    if writer is not None:
        writer.close()
    cleanup_distributed(ctx)
    return 0


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
