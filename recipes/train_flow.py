"""Train the foleyflow generator (MMAudio's multimodal flow-matching transformer) on cached latents and features.

Launch (CPU, 2 processes; on GPUs use --nproc_per_node <gpus>, the backend becomes nccl):
    torchrun --standalone --nproc_per_node 2 recipes/train_flow.py --config configs/train_flow/default.yaml \
        data.latents=/data/cache/latents-train data.features=/data/cache/features-train out_dir=/data/runs/flow
The run folder out_dir has the layout of every recipe (foleyflow.train.run): checkpoints/state_<step>.safetensors,
config.yaml, tb/, metrics.jsonl, and generator.safetensors / generator_ema.safetensors. A restarted run resumes from
the newest state (same config required, but for `steps` and the logging/saving settings).

Reads (format in docs/caches.md): a latents cache (VAE posterior mean/std per clip, the latent statistics in its
info) and a features cache (visual, sync and text features per clip, the empty-text features in its extras). Never
decodes video. The recipe follows MMAudio's training (reference.md 1.5): flow matching with logit-normal times,
AdamW (0.9, 0.95), warm-up then step decays, grad clip 1, bf16 autocast without a grad scaler, EMA, condition dropout
(one draw drops visual+sync, an independent draw drops text); clips without video (has_video = 0) always use the
learned empty visual and sync features.

Plan track (issue 19; `model.plan_dim` > 0, e.g. 12 = the track's 8 channels + 4 source slots): each entry's plan is
FoleyWorld's ground truth (the manifest the caches name, its `truth` files) converted by
`foleyflow.cot.plan_from_truth`, laid on the latent timeline of the entry's own window (`plan_window_track`: the
latents' window start in seconds, from the caches' `windows` info, 0 for a clip's first window) once: rank 0
computes them at the first start and keeps them in out_dir/plan_tracks.safetensors (reused on resume while the
entries, windows, manifest, plan_dim and the track code are the same), the other ranks read that file; in memory
after that. Per item the track is replaced by the learned empty plan with probability `drop_plan`, always for
entries without a ground truth, and always in the `v2a` task (video only: no text and no plan); `t2a` keeps the plan
(the plan is part of the prompt, so text-to-audio can be timed by it), `vt2a` keeps it up to `drop_plan`.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foleyflow.config import config_to_json, load_config
from foleyflow.data.cache import Cache
from foleyflow.errors import CacheError, FoleyError
from foleyflow.flow.objective import interpolate, sample_times, target_velocity
from foleyflow.models.generator import Generator, GeneratorConfig
from foleyflow.train.dist import all_reduce_mean, cleanup_distributed, setup_distributed, wrap_ddp
from foleyflow.train.ema import EMA
from foleyflow.train.generator_run import gather_generators, restore_generator_state, save_generator_checkpoint
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, write_config
from foleyflow.train.schedule import OptimConfig, build_optimizer, lr_at, set_lr


LATENT_KINDS = ("latents", "vae_latents")  # `foleyflow extract-latents` writes "vae_latents"
# a resumed run may change only foleyflow.train.run.COMMON_RESUMABLE (steps, log_every, ckpt_every, keep_states,
# threads); states of older runs name the optimiser settings at the top level
RENAMED = {"lr": "optim.lr", "betas": "optim.betas", "weight_decay": "optim.weight_decay",
           "warmup_steps": "optim.warmup_steps", "lr_decay_steps": "optim.decay_steps", "grad_clip": "optim.grad_clip"}


@dataclass
class DataConfig:
    latents: str = ""                  # latents cache folder
    features: str = ""                 # features cache folder
    text_fields: dict[str, float] = field(default_factory=lambda: {"text": 1.0})  # field -> probability per item
    # role -> checkpoint the caches must have been made by, e.g. {semantic_encoder: PATH, sync_encoder: PATH,
    # vae: PATH}: the generator is meant to run with these (in its bundle), so caches made by others are refused
    producers: dict[str, str] = field(default_factory=dict)
    manifest: str = ""                 # plan track: the manifest with each clip's `truth` (default: the one the
                                       # caches were made from, their info.manifest)
    # how the generator normalises its targets: "channel" divides each channel by its own std (MMAudio's, for VAE
    # latents); "global" by one scale, the channels' root-mean-square std (latent diffusion's scale factor), so the
    # loss weighs channels by their variance: for a principal-component mel codec, the flow loss is then the mel
    # token MSE instead of spending the network on the last, near-silent components. Means are per channel either way.
    latent_norm: str = "channel"


@dataclass
class FlowOptimConfig(OptimConfig):  # MMAudio's: AdamW (0.9, 0.95), warm-up, then x0.1 at each of decay_steps
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-6
    warmup_steps: int = 1000
    grad_clip: float = 1.0


@dataclass
class TrainFlowConfig:
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)   # GeneratorConfig overrides on top of the preset
    out_dir: str = "runs/flow"
    seed: int = 0
    steps: int = 10000
    batch_size: int = 16               # per process
    optim: FlowOptimConfig = field(default_factory=FlowOptimConfig)
    bf16: bool = True                  # autocast to bfloat16 where the device supports it
    ema_decay: float = 0.999
    drop_video: float = 0.1            # probability of dropping visual + sync together
    drop_text: float = 0.1             # independent probability of dropping the text
    drop_plan: float = 0.3             # with model.plan_dim > 0: independent probability of the empty plan track
    plan_offscreen: str = "timed"      # off-screen sources in the training plans: "timed" (their true times, as
                                       # the ground truth has them) or "untimed" (class only, no times or place:
                                       # what the planner gives from a prompt at generation, so the text must
                                       # carry them; foleyflow.cot.planner.untimed_offscreen)
    # Omni2Sound's interleaved multi-task training (reference.md 3): task name -> probability; each optimisation
    # step trains ONE task, drawn from this categorical distribution (the same on every rank, a pure function of
    # seed and step): "t2a" (no video), "v2a" (no text), "vt2a" (both). The condition dropouts above still apply
    # inside a task (guidance needs them). Empty: no tasks, every batch mixes them through the dropouts alone.
    tasks: dict[str, float] = field(default_factory=dict)
    overfit_items: int = 0             # > 0: train on the first N items only (smoke tests)
    log_every: int = 50
    ckpt_every: int = 1000
    keep_states: int = 2
    threads: int = 0                   # torch threads per process (0: leave torch's default)
    init_from: str = ""                # a generator checkpoint to start from (fine-tuning, e.g. on new features);
                                       # its config must equal this run's; a resumed run ignores it


def latent_scale(std: torch.Tensor, norm: str) -> torch.Tensor:
    """The per-channel divisor of the generator's targets (C,): `std` itself ("channel") or its root mean square
    broadcast to every channel ("global"; see DataConfig.latent_norm)."""
    if norm == "channel":
        return std
    if norm == "global":
        return torch.full_like(std, float(std.double().pow(2).mean().sqrt()))
    raise FoleyError(f"data.latent_norm must be 'channel' or 'global', got {norm!r}")


class FlowTrainStep(nn.Module):
    """Wraps the generator so condition dropout happens inside forward (DDP sees every parameter used)."""

    def __init__(self, net: Generator):
        super().__init__()
        self.net = net

    def forward(self, xt, t, visual, sync, text, keep_video, keep_text, plan=None, keep_plan=None):
        net = self.net
        kv = keep_video.view(-1, 1, 1).to(visual.dtype)
        kt = keep_text.view(-1, 1, 1).to(text.dtype)
        visual = kv * visual + (1 - kv) * net.empty_clip_feat[None].to(visual.dtype)
        sync = kv * sync + (1 - kv) * net.empty_sync_feat[None].to(sync.dtype)
        text = kt * text + (1 - kt) * net.empty_string_feat[None].to(text.dtype)
        if plan is not None:
            kp = keep_plan.view(-1, 1, 1).to(plan.dtype)
            plan = kp * plan + (1 - kp) * net.empty_plan_feat[None].to(plan.dtype)
        return net(xt, visual, sync, text, t, plan=plan)


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
            "latent_mean": torch.tensor(lat.info["latent_mean"]),
            "latent_std": latent_scale(torch.tensor(lat.info["latent_std"]), cfg.data.latent_norm),
            "empty_text": feat.extras().get("empty_text"), "producers": {**lat.producers, **feat.producers},
            "duration_s": float(lat.info["duration_s"]), "ids": list(lat.ids),
            "windows": {k: entry_window(k, lat.info, feat.info) for k in lat.ids},
            "manifest": cfg.data.manifest or lat.info.get("manifest") or feat.info.get("manifest") or ""}
    if data["empty_text"] is None:
        raise CacheError(f"features cache {feat.folder} has no empty-text features (extras 'empty_text')")
    if cfg.overfit_items:
        for k in ("mean", "std", "visual", "sync", "has_video"):
            data[k] = data[k][: cfg.overfit_items]
        data["texts"] = [t[: cfg.overfit_items] for t in data["texts"]]
        data["ids"] = data["ids"][: cfg.overfit_items]
    return data


def entry_window(entry_id: str, lat_info: dict, feat_info: dict) -> tuple[str, float]:
    """(clip id, start_s) of a latents cache entry: its own `windows` info if it has one, else the features
    cache's for a later window ("id@k"); a clip's first window (`extract-latents` caches only that) starts at 0."""
    for info in (lat_info, feat_info):
        w = (info.get("windows") or {}).get(entry_id)
        if w is not None and (info is lat_info or "@" in entry_id):
            return str(w[0]), float(w[1])
    return entry_id.split("@")[0], 0.0


PLAN_OFFSCREEN = ("timed", "untimed")


def plan_fingerprint(data: dict, gcfg: GeneratorConfig, offscreen: str = "timed") -> dict:
    """What the plan tracks of `data` depend on: entries and their windows, the manifest, the track's shape and
    rate, and the code that converts truth and draws the track."""
    import hashlib
    import inspect

    import foleyflow.conditioning
    import foleyflow.cot.convert
    import foleyflow.cot.track

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()
    code = "".join(inspect.getsource(m) for m in (foleyflow.cot.track, foleyflow.cot.convert, foleyflow.conditioning))
    return {"entries": sha(json.dumps([[k, *data["windows"][k]] for k in data["ids"]])), "code": sha(code),
            "manifest": str(Path(data["manifest"]).resolve()) if data["manifest"] else "", "plan_dim": gcfg.plan_dim,
            "latent_fps": gcfg.latent_fps, "frames": int(data["mean"].shape[1]), "duration_s": data["duration_s"],
            **({"offscreen": offscreen} if offscreen != "timed" else {})}


def load_plans(data: dict, gcfg: GeneratorConfig, cache: Path | None = None,
               write: bool = True, offscreen: str = "timed") -> tuple[torch.Tensor, torch.Tensor]:
    """(plan (N, T_latent, plan_dim) float32, has_plan (N,)) for the entries of `data`: the ground-truth plan of
    each entry's clip on the latent timeline of the entry's window. Entries whose clip has no ground truth get zeros
    and has_plan 0 (they always train with the empty plan). `cache`: a file reused when its fingerprint matches,
    else (with `write`) written after computing. offscreen: TrainFlowConfig.plan_offscreen."""
    from foleyflow.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint

    fingerprint = plan_fingerprint(data, gcfg, offscreen)
    if cache is not None and cache.is_file():
        tensors, meta = load_checkpoint(cache, kind="plan_tracks")
        if checkpoint_config(meta) == fingerprint:
            return tensors["plan"], tensors["has_plan"]
    plan, has = compute_plans(data, gcfg, offscreen)
    if cache is not None and write:
        save_checkpoint(cache, {"plan": plan, "has_plan": has}, kind="plan_tracks", config=fingerprint)
    return plan, has


def compute_plans(data: dict, gcfg: GeneratorConfig, offscreen: str = "timed") -> tuple[torch.Tensor, torch.Tensor]:
    """`load_plans` without the file: reads the manifest and each clip's truth and draws the tracks."""
    from foleyflow.conditioning import plan_window_track
    from foleyflow.cot import plan_from_truth
    from foleyflow.cot.planner import untimed_offscreen
    from foleyflow.events import read_truth
    from foleyflow.manifest import read_manifest

    if offscreen not in PLAN_OFFSCREEN:
        raise FoleyError(f"plan_offscreen must be one of {', '.join(PLAN_OFFSCREEN)}, got {offscreen!r}")
    convert = untimed_offscreen if offscreen == "untimed" else (lambda p: p)

    if not data["manifest"]:
        raise FoleyError("model.plan_dim > 0 needs the clips' ground truth: the caches name no manifest; "
                         "set data.manifest")
    truths = {e.id: e.truth for e in read_manifest(data["manifest"], check_files=False)}
    n, t_len = len(data["ids"]), data["mean"].shape[1]
    plan, has = torch.zeros(n, t_len, gcfg.plan_dim), torch.zeros(n)
    for i, key in enumerate(data["ids"]):
        clip, start = data["windows"][key]
        if truths.get(clip):
            plan[i] = plan_window_track(gcfg, convert(plan_from_truth(read_truth(truths[clip]))), data["duration_s"],
                                        start)
            has[i] = 1.0
    if not has.any():
        raise FoleyError(f"model.plan_dim > 0 but no clip of {data['manifest']} has a ground truth (`truth`)")
    return plan, has


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


def build_model(cfg: TrainFlowConfig, data: dict, plan_cache: Path | None = None, write_plans: bool = True
                ) -> Generator:
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
    if gcfg.plan_dim > 0:
        data["plan"], data["has_plan"] = load_plans(data, gcfg, plan_cache, write_plans, cfg.plan_offscreen)
    return net


def init_weights(net: Generator, path: str) -> None:
    """Copies the weights of the generator checkpoint at `path` into `net`. The configs must be equal, except that
    `net` may add a plan pathway (plan_dim > 0) to a source without one: that pathway keeps its initialisation, whose
    output projection and empty plan are zero, so the run starts as the source's network exactly. The latent
    statistics and the empty text are then set from this run's caches."""
    from foleyflow.models.generator_io import load_generator

    src = load_generator(path)
    theirs, ours = json.loads(config_to_json(src.cfg)), json.loads(config_to_json(net.cfg))
    adds_plan = theirs.get("plan_dim", 0) == 0 and ours.get("plan_dim", 0) > 0
    if adds_plan:
        theirs["plan_dim"] = ours["plan_dim"]
    if theirs != ours:
        diff = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        raise FoleyError(f"init_from {path} has another generator config than this run ({', '.join(diff)} differ)")
    missing, unexpected = net.load_state_dict(src.state_dict(), strict=False)
    new_params = [k for k in missing if not (adds_plan and ("plan_input_proj" in k or k == "empty_plan_feat"))]
    if new_params or unexpected:
        raise FoleyError(f"init_from {path}: weights do not match this run's generator "
                         f"(missing {new_params[:3]}, unexpected {unexpected[:3]})")


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


TASKS = ("t2a", "v2a", "vt2a")


def task_at(cfg: TrainFlowConfig, step: int) -> str:
    """The task of optimisation step `step` ("" without `tasks`): a pure function of (seed, step), so every rank
    and a resumed run draw the same one."""
    if not cfg.tasks:
        return ""
    names = sorted(cfg.tasks)
    probs = torch.tensor([float(cfg.tasks[n]) for n in names], dtype=torch.float64)
    k = torch.multinomial(probs / probs.sum(), 1, generator=torch.Generator().manual_seed(cfg.seed * 7919 + step))
    return names[int(k)]


def check_tasks(cfg: TrainFlowConfig) -> None:
    unknown = sorted(set(cfg.tasks) - set(TASKS))
    if unknown:
        raise FoleyError(f"tasks: unknown task {unknown[0]!r} (known: {', '.join(TASKS)})")
    if cfg.tasks and (any(p < 0 for p in cfg.tasks.values()) or sum(cfg.tasks.values()) <= 0):
        raise FoleyError("tasks: probabilities must be non-negative with a positive sum")


def make_batch(data: dict, idx: torch.Tensor, net: Generator, cfg: TrainFlowConfig, gen: torch.Generator,
               task: str = ""):
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
    if task == "t2a":
        keep_video = torch.zeros_like(keep_video)
    elif task == "v2a":
        keep_text = torch.zeros_like(keep_text)
    out = dict(xt=interpolate(x0, x1, t), t=t, target=target_velocity(x0, x1), visual=data["visual"][idx].float(),
               sync=data["sync"][idx].float(), text=text, keep_video=keep_video, keep_text=keep_text)
    if "plan" in data:  # drawn after the rest, so runs without a plan see the same random stream as before
        keep_plan = (torch.rand(b, generator=gen) >= cfg.drop_plan).float() * data["has_plan"][idx]
        if task == "v2a":
            keep_plan = torch.zeros_like(keep_plan)
        out.update(plan=data["plan"][idx], keep_plan=keep_plan)
    return out


def main(argv: list[str] | None = None) -> int:
    args = recipe_args(__doc__.split("\n")[0], argv)
    cfg = load_config(TrainFlowConfig, args.config, args.overrides)
    ctx = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    lock = lock_run(out, ctx)  # a second trainer on this folder stops here
    check_tasks(cfg)
    data = load_data(cfg)
    torch.manual_seed(cfg.seed)
    plan_cache = out / "plan_tracks.safetensors"
    if ctx.backend is not None and not ctx.is_main:   # rank 0 draws the plan tracks once; the others read its file
        torch.distributed.barrier()
    net = build_model(cfg, data, plan_cache, write_plans=ctx.is_main).to(ctx.device)
    if ctx.backend is not None and ctx.is_main:
        torch.distributed.barrier()
    step_module = wrap_ddp(FlowTrainStep(net), ctx)
    opt = build_optimizer(net.parameters(), cfg.optim)
    ema = EMA(net, decay=cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)
    step = 0
    state, resume = resume_state(out, kind="generator", config=cfg, renamed=RENAMED, defaults=TrainFlowConfig())
    if resume is not None:
        step = restore_generator_state(state, net, opt, ema, gen, ctx)
    write_config(out, cfg, ctx)
    # bf16 only where the hardware has bf16 units: on a CPU without them (e.g. AVX2-only) autocast runs bf16 in
    # software: on an AVX2-only EPYC the mel pilot's first bf16 step took 38 s, fp32 steps take about 2.7 s
    from foleyflow.pipeline import bf16_supported
    use_bf16 = cfg.bf16 and bf16_supported(ctx.device)
    log = MetricLog(out) if ctx.is_main else None
    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, initial=step, disable=not ctx.is_main, desc="train_flow", dynamic_ncols=True)
    n_items, t_last, losses = data["mean"].shape[0], time.time(), []
    while step < cfg.steps:
        idx = batch_indices(step, ctx.rank, cfg.batch_size, ctx.world_size, n_items, cfg.seed)
        batch = {k: v.to(ctx.device) for k, v in make_batch(data, idx, net, cfg, gen, task_at(cfg, step)).items()}
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            v = step_module(batch["xt"], batch["t"], batch["visual"], batch["sync"], batch["text"],
                            batch["keep_video"], batch["keep_text"], batch.get("plan"), batch.get("keep_plan"))
        loss = (v.float() - batch["target"]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
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
                log.log(step, {"flow/mse": mean_loss, "train/grad_norm": float(gnorm),
                               "train/lr": lr_at(cfg.optim, step - 1, cfg.steps), "train/samples_per_s": rate})
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                bar.write(json.dumps({"step": step, "flow/mse": round(mean_loss, 5),
                                      "samples_per_s": round(rate, 2)}), file=sys.stdout)
            t_last = time.time()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            gens = gather_generators(gen, ctx)
            if ctx.is_main:
                prov = {"recipe": "recipes/train_flow.py", "step": step, "seed": cfg.seed,
                        "producers": data["producers"], "world_size": ctx.world_size}
                if cfg.init_from:
                    prov["init_from"] = cfg.init_from
                save_generator_checkpoint(out, step, cfg, prov, net, opt, ema, gens)
    bar.close()
    if log is not None:
        log.close()
    release_run(lock)
    cleanup_distributed(ctx)
    return 0


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
