"""Fine-tune a bundle's generator with multi-reward Fast-GRPO (PrismAudio, ICLR 2026; Flow-GRPO, Liu et al. 2025).

Launch (CPU, 2 processes; on GPUs use --nproc_per_node <gpus>, the backend becomes nccl):
    torchrun --standalone --nproc_per_node 2 recipes/train_grpo.py --config configs/train_grpo/default.yaml \
        bundle=foleyflow/assets/default manifest=/data/foleyworld/manifest.jsonl out_dir=/data/runs/grpo \
        rewards.semantic.checkpoint=runs/reward_semantic/reward_semantic.safetensors ...
The run folder has the layout of every recipe (foleyflow.train.run): checkpoints/state_<iteration>.safetensors,
config.yaml, tb/, metrics.jsonl, and generator.safetensors / generator_ema.safetensors (the tuned generator with any
LoRA merged, the starting generator's producers kept in its provenance, so `recipes/assemble_bundle.py --generator`
takes it). A restarted run resumes from the newest state (same config, but for `steps` and the logging settings).

One iteration (per process): `clips_per_iter` FoleyWorld `train` clips (a pure function of seed, iteration and rank;
their ids go to metrics.jsonl), their conditions through the pipeline's stage (`FoleyPipeline.conditions`), one
Fast-GRPO rollout per micro-batch of `micro_clips` clips (group of `group_size` branches per clip, an SDE window of
`window` steps whose start is drawn per micro-batch from a generator seeded by (seed, iteration, rank)), decode, the
configured rewards (weight 0: not loaded), per-group per-reward advantages, then the clipped-ratio loss with a KL
term to the frozen starting generator over every (micro-batch, window step): one backward each, an optimiser step
every `accum` of them (gradients averaged over processes). docs/rl.md explains the keys and what is logged.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from foleyflow.config import load_config
from foleyflow.errors import ConfigError, FoleyError
from foleyflow.flow.grpo import group_advantages, grpo_loss, plateau_reached
from foleyflow.flow.sde import draw_window_start, fast_grpo_sample, step_log_prob
from foleyflow.train.dist import all_reduce_mean, cleanup_distributed, setup_distributed
from foleyflow.train.ema import EMA
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, save_state, write_config
from foleyflow.train.schedule import OptimConfig, build_optimizer, lr_at, set_lr
from foleyflow.train.state import rng_state, set_rng_state

REWARDS = ("semantic", "temporal", "aesthetic", "spatial")
# settings a resumed run may change besides foleyflow.train.run.COMMON_RESUMABLE
RESUMABLE = ("sample_every", "val_every", "val_clips", "stop", "bundle")   # bundle: the same files (checked below)


@dataclass
class RewardSpec:
    checkpoint: str = ""      # kind foleyflow: reward_<name>.safetensors (recipes/train_reward_<name>.py); a
                              # published kind: the user's weights file (foleyflow/rewards/published.py)
    weight: float = 0.0       # weight of its group-normalised advantage; 0: not loaded
    kind: str = "foleyflow"   # foleyflow (ours); semantic: laion_clap, ms_clap; aesthetic: audiobox
    axis: str = "PQ"          # kind audiobox: the Audiobox Aesthetics axis (CE, CU, PC, PQ)


@dataclass
class RewardsConfig:
    semantic: RewardSpec = field(default_factory=RewardSpec)
    temporal: RewardSpec = field(default_factory=RewardSpec)
    aesthetic: RewardSpec = field(default_factory=RewardSpec)
    spatial: RewardSpec = field(default_factory=RewardSpec)


@dataclass
class SamplingConfig:          # the rollout policy (PrismAudio: 24 steps, window 2, start <= 12, a = 0.7)
    steps: int = 24
    window: int = 2
    max_start: int = 12
    group_size: int = 8
    noise_level: float = 0.7
    cfg_scale: float = 4.5     # guidance is part of the policy (1: no guidance, half the cost)
    reduce: str = "mean"       # log-prob over latent elements: "mean" (reference) or "sum"; sets the clip range


@dataclass
class LoraConfig:
    rank: int = 0              # 0: full fine-tuning
    alpha: float = 16.0
    targets: list[str] = field(default_factory=lambda: ["attn.qkv"])  # dotted name suffixes of Linear layers


@dataclass
class StopConfig:              # issue 18's Flow-GRPO rule: stop when the val monitor has flattened
    frac: float = 0.0          # > 0: stop once `key` changed less than `rel` over the last `frac` of the iterations
    rel: float = 0.01
    min_iters: int = 0
    key: str = "val/weighted"  # a val/<name> key (val_every > 0 is required)


@dataclass
class GrpoOptimConfig(OptimConfig):
    lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0


@dataclass
class TrainGrpoConfig:
    bundle: str = ""                       # the starting bundle folder
    manifest: str = ""                     # FoleyWorld manifest: GRPO uses its `train` rows only
    text: str = "caption"                  # the generator's text condition: "caption" or "cot"
    plan: str = "bundle"                   # the plan track of a generator that follows plans: "bundle" (auto when
                                           # the bundle plans by default, else none), "auto" (the bundle's planner
                                           # plans each clip's video, as generation does), "truth" (the clip's
                                           # ground truth) or "none"; guided as the bundle's plan_scale says
    crop_s: float = 0.0                    # clip window from 0 s (0: the generator's window)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    clip_range: float = 1e-4
    kl_weight: float = 0.0017              # exact-Gaussian KL (docs/rl.md: the reference's 0.04 is about 0.04 / 24)
    adv_clip: float = 5.0
    clips_per_iter: int = 4                # per process
    micro_clips: int = 1                   # clips per rollout / backward (rows = micro_clips * group_size)
    accum: int = 2                         # backwards (micro-batch x window step) per optimiser step
    optim: GrpoOptimConfig = field(default_factory=GrpoOptimConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    ema_decay: float = 0.99
    bf16: bool = False                     # autocast where the device has bf16 units
    out_dir: str = "runs/grpo"
    seed: int = 0
    steps: int = 100                       # iterations
    log_every: int = 1                     # stdout; metrics.jsonl gets every iteration
    ckpt_every: int = 10
    keep_states: int = 2
    sample_every: int = 10                 # audio + spectrogram of one rollout sample in TensorBoard (0: never)
    val_every: int = 0                     # reward-model scores of ODE samples of `val_clips` val clips (0: never)
    val_clips: int = 4
    threads: int = 0


PLAN_SOURCES = ("bundle", "auto", "truth", "none")


def check_config(cfg: TrainGrpoConfig) -> None:
    s = cfg.sampling
    problems = []
    if not cfg.bundle or not cfg.manifest:
        problems.append("bundle and manifest are required")
    if cfg.text not in ("caption", "cot"):
        problems.append(f"text must be caption or cot, got {cfg.text!r}")
    if cfg.plan not in PLAN_SOURCES:
        problems.append(f"plan must be one of {', '.join(PLAN_SOURCES)}, got {cfg.plan!r}")
    if not 1 <= s.window <= s.steps or s.max_start < 0:
        problems.append("sampling.window must be in [1, sampling.steps] and max_start >= 0")
    if s.group_size < 2:
        problems.append("sampling.group_size must be >= 2 (a group of one has no advantage)")
    if s.noise_level <= 0 or s.reduce not in ("mean", "sum") or cfg.clip_range <= 0:
        problems.append("sampling.noise_level and clip_range must be > 0, sampling.reduce mean or sum")
    if cfg.micro_clips < 1 or cfg.clips_per_iter % cfg.micro_clips:
        problems.append(f"clips_per_iter {cfg.clips_per_iter} must be a multiple of micro_clips {cfg.micro_clips}")
    elif cfg.accum < 1 or (cfg.clips_per_iter // cfg.micro_clips * s.window) % cfg.accum:
        problems.append(f"accum {cfg.accum} must divide the backwards per iteration "
                        f"({cfg.clips_per_iter // cfg.micro_clips} micro-batches x window {s.window})")
    weights = {n: getattr(cfg.rewards, n).weight for n in REWARDS}
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        problems.append("reward weights must be >= 0 with at least one > 0")
    if cfg.stop.frac and (not 0 < cfg.stop.frac <= 1 or cfg.stop.rel <= 0 or not cfg.val_every
                          or not cfg.stop.key.startswith("val/")):
        problems.append("stop.frac must be in (0, 1] with stop.rel > 0, val_every > 0 and stop.key a val/ key")
    elif cfg.stop.frac and cfg.stop.key != "val/weighted" and weights.get(cfg.stop.key[4:], 0) <= 0:
        problems.append(f"stop.key {cfg.stop.key} is not a reward with weight > 0 (nor val/weighted)")
    from foleyflow.rewards.published import kind_problem

    problems += [p for n in REWARDS if weights[n] > 0
                 for p in [kind_problem(n, getattr(cfg.rewards, n).kind, getattr(cfg.rewards, n).axis)] if p]
    if problems:
        raise ConfigError("; ".join(problems))


# ------------------------------------------------------------------------------------------------ rewards
def load_rewards(cfg: TrainGrpoConfig) -> dict:
    """name -> loaded reward model for every reward with weight > 0 (in REWARDS order): ours (kind foleyflow) or a
    published one (foleyflow.rewards.published). Every spec (kind, file) is checked before any model loads."""
    from importlib import import_module

    from foleyflow.rewards.published import check_reward_spec, load_published_reward

    specs = {n: getattr(cfg.rewards, n) for n in REWARDS if getattr(cfg.rewards, n).weight > 0}
    for name, spec in specs.items():
        check_reward_spec(name, spec.kind, spec.checkpoint, spec.axis)
    out = {}
    for name, spec in specs.items():
        if spec.kind == "foleyflow":
            model = getattr(import_module(f"foleyflow.rewards.{name}"), f"load_{name}_reward")(spec.checkpoint)
        else:
            model = load_published_reward(name, spec.kind, spec.checkpoint, axis=spec.axis, seed=cfg.seed)
        out[name] = model.requires_grad_(False)
    return out


def rewards_provenance(cfg: TrainGrpoConfig, models: dict) -> dict:
    """name -> {kind, weights file, sha256, weight (and axis for Audiobox)} of every loaded reward."""
    return {n: {"kind": getattr(cfg.rewards, n).kind, "weights": m.identity["weights"], "sha256": m.identity["sha256"],
                "weight": getattr(cfg.rewards, n).weight, **({"axis": m.identity["axis"]} if "axis" in m.identity
                                                              else {})} for n, m in models.items()}


def semantic_training_data(models: dict) -> dict:
    """The data section of our semantic reward's training config ({} for none or a published CLAP)."""
    if "semantic" not in models or models["semantic"].identity["kind"] != "reward_semantic":
        return {}
    return models["semantic"].identity["provenance"].get("config", {}).get("data", {}) or {}


def reward_text(entry, models: dict) -> str:
    """The text the semantic reward scores a clip against, the kind it was trained on: the caption for a reward
    trained on captions (recipes/train_reward_semantic.py data.text=caption), else the CoT (the reward reads its
    Semantic part), else the caption."""
    if semantic_training_data(models).get("text") == "caption":
        return entry.caption or entry.cot or ""
    return entry.cot or entry.caption or ""


def reward_texts_encoder(models: dict):
    """The semantic reward's text features function, as its recipe trained it (hashed words or MiniLM)."""
    if "semantic" not in models or models["semantic"].identity["kind"] != "reward_semantic":
        return None  # a published CLAP encodes the texts itself
    from foleyflow.rewards.semantic import hashed_text_features, text_features

    data = semantic_training_data(models)
    if data.get("text_encoder") == "hashed":
        return hashed_text_features
    holder = {}

    def minilm(texts):
        if "enc" not in holder:
            from foleyflow.models.text_encoder import TextEncoderConfig, load_text_encoder
            holder["enc"] = load_text_encoder(TextEncoderConfig(overflow="truncate"))
        return text_features(texts, holder["enc"])
    return minilm


@torch.no_grad()
def score(models: dict, audio: torch.Tensor, clips: list, repeat: int, sample_rate: int) -> torch.Tensor:
    """(N, K) raw scores of audio (N, 2, S) (N = len(clips) * repeat, clip-major), one column per loaded reward."""
    from foleyflow.rewards.common import SAMPLE_RATE, RewardConditions

    if sample_rate != SAMPLE_RATE:
        from foleyflow.audio import resample
        audio = torch.from_numpy(resample(audio.numpy(), sample_rate, SAMPLE_RATE))

    def rep(key):
        if clips[0]["reward"].get(key) is None:
            return None
        return torch.cat([c["reward"][key] for c in clips]).repeat_interleave(repeat, dim=0)
    cond = RewardConditions(texts=[c["reward"]["text"] for c in clips for _ in range(repeat)],
                            text_features=rep("text_features"), contacts=rep("contacts"), pan_track=rep("pan"),
                            pan_mask=rep("mask"))
    return torch.stack([m.score(audio, cond).float() for m in models.values()], dim=1)


# ------------------------------------------------------------------------------------------------ data
def train_entries(manifest: str, crop_s: float, split: str = "train") -> list:
    """The manifest rows of `split` with a video at least crop_s long (GRPO trains on `train` only)."""
    from foleyflow.manifest import read_manifest

    rows = [e for e in read_manifest(manifest) if e.split == split and e.video
            and (e.duration_s is None or e.duration_s >= crop_s - 1e-6)]
    if not rows:
        raise FoleyError(f"manifest {manifest} has no '{split}' clip with a video of at least {crop_s:g} s")
    return rows


def clip_indices(it: int, rank: int, world: int, per_rank: int, n: int, seed: int) -> list[int]:
    """The clips of `rank` at iteration `it`: epochs of seeded permutations, a pure function of its arguments (so
    rank 0 can record every rank's ids and a resumed run draws the same clips)."""
    start, out = (it * world + rank) * per_rank, []
    while len(out) < per_rank:
        epoch, offset = divmod(start + len(out), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.extend(perm[offset: offset + per_rank - len(out)].tolist())
    return out


def plan_source(cfg: TrainGrpoConfig, pipe, info) -> str:
    """The plan track GRPO conditions on: `cfg.plan`, with "bundle" resolved as generation resolves it (the
    bundle's planner's plan when bundle.json says "plan": "auto"), and "none" for a generator without a plan pathway."""
    if not pipe.follows_plan:
        return "none"
    if cfg.plan == "bundle":
        return "auto" if info.plan == "auto" else "none"
    return cfg.plan


def clip_data(pipe, entry, cfg: TrainGrpoConfig, crop_s: float, models: dict, text_fn, cache: dict,
              planner=None) -> dict:
    """Generator conditions (B = 1) and reward conditions of one clip's window [0, crop_s), cached by id. planner:
    None (no plan track), "truth" (the plan of the clip's ground truth) or a loaded foleyflow.planning.VideoPlanner
    (its plan of the clip's whole video, as generation conditions on it)."""
    if entry.id in cache:
        return cache[entry.id]
    from foleyflow.conditioning import Window
    from foleyflow.rewards.common import RewardError, truth_contacts, truth_pan_track

    if cfg.text == "cot" and entry.cot:
        feats = pipe.text_features(cot=entry.cot)  # its four parts encoded apart, as generation does
    else:
        feats = pipe.text_features(prompt=entry.caption or None)
    plan = None
    if planner == "truth":
        from foleyflow.cot import plan_from_truth

        if not entry.truth:
            raise RewardError(f"clip {entry.id} has no truth JSON (plan=truth needs it)")
        plan = plan_from_truth(json.loads(Path(entry.truth).read_text()))
    elif planner is not None:
        from foleyflow.planning import plan_video

        plan = plan_video(entry.video, planner)
    cond = pipe.conditions(entry.video, Window(0.0, crop_s), text=feats, plan=plan)
    reward = {"text": reward_text(entry, models)}
    if text_fn is not None:
        reward["text_features"] = text_fn([reward["text"]])
    if "temporal" in models or "spatial" in models:
        if not entry.truth:
            raise RewardError(f"clip {entry.id} has no truth JSON (the temporal and spatial rewards need it)")
        truth = json.loads(Path(entry.truth).read_text())
        pan, mask = truth_pan_track(truth, crop_s)
        reward.update(contacts=truth_contacts(truth, crop_s)[None], pan=pan[None], mask=mask[None])
    cache[entry.id] = {"id": entry.id, "cond": cond, "reward": reward}
    return cache[entry.id]


# ------------------------------------------------------------------------------------------------ policy
def policy_velocity(net, conds, cfg_scale: float, plan_scale: float | None = None):
    """Guided velocity_fn(x, t) of `net` for Conditions `conds` (gradients flow when enabled), as
    FoleyPipeline.velocity_fn guides with guidance "cfg": with a plan track and a plan_scale, against the plan track
    alone and (unless plan_scale is 1) the empty conditions; else against the empty conditions."""
    from foleyflow.models.generator_sampling import guided_velocity, plan_guided_velocity

    b, d = conds.batch_size, conds.duration_s
    if cfg_scale != 1.0 and plan_scale is not None and conds.plan is not None and net.cfg.plan_dim > 0:
        plan_only = net.empty_conditions(b, duration_s=d, plan=conds.plan)
        none = None if plan_scale == 1.0 else net.empty_conditions(b, duration_s=d)
        return plan_guided_velocity(net, net.prepare(conds), plan_only, none, cfg_scale=cfg_scale,
                                    plan_scale=plan_scale)
    uncond = net.empty_conditions(b, duration_s=d) if cfg_scale != 1.0 else None
    return guided_velocity(net, net.prepare(conds), uncond, cfg_scale)


def build_policy(pipe, cfg: TrainGrpoConfig):
    """(policy, frozen reference): the policy a float32 copy of the bundle's generator (LoRA-adapted if
    lora.rank > 0), the reference the generator itself, frozen."""
    from foleyflow.train.lora import add_lora

    ref = pipe.generator.float().eval().requires_grad_(False)
    net = copy.deepcopy(ref).requires_grad_(True)  # eval mode throughout: sampling and training see one network
    if cfg.lora.rank > 0:
        add_lora(net, cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets, seed=cfg.seed)
    return net, ref


def merged(net):
    from foleyflow.train.lora import merge_lora
    return merge_lora(net)


def iteration_generator(seed: int, it: int, rank: int) -> torch.Generator:
    """The generator of one iteration on one rank (per micro-batch: window start, starting noise, SDE noise)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + it) * 4099 + rank)


# ------------------------------------------------------------------------------------------------ logging
def log_sample(log, audio: torch.Tensor, sample_rate: int, it: int) -> None:
    """Audio (2, S) of one rollout sample and its log-mel spectrogram (low frequencies at the bottom) to TB."""
    from foleyflow.audio import log_mel_spectrogram

    mono = audio.float().mean(0).clamp(-1, 1)
    log.writer.add_audio("sample/audio", mono[None], it, sample_rate=sample_rate)
    if sample_rate == 16000:
        mel = log_mel_spectrogram(mono[None])[0]
        img = ((mel - mel.min()) / (mel.max() - mel.min()).clamp(min=1e-6)).flip(0)
        log.writer.add_image("sample/spectrogram", img[None], it, dataformats="CHW")


@torch.no_grad()
def val_scores(pipe, net, models, clips: list, cfg: TrainGrpoConfig, plan_scale: float | None = None
               ) -> dict[str, float]:
    """Mean reward-model scores of ODE samples (Euler, fixed noise) of the val clips under `net`."""
    from foleyflow.flow.samplers import euler, uniform_grid

    conds = clips[0]["cond"]
    for c in clips[1:]:
        conds = conds.cat(c["cond"])
    latent_len = net.cfg.seq_lengths(conds.duration_s)[0]
    x0 = torch.randn((len(clips), latent_len, net.cfg.latent_channels),
                     generator=torch.Generator().manual_seed(cfg.seed))
    x1 = euler(policy_velocity(net, conds, cfg.sampling.cfg_scale, plan_scale), x0, uniform_grid(cfg.sampling.steps))
    r = score(models, pipe.decode(x1), clips, 1, pipe.sample_rate)
    out = {f"val/{name}": float(r[:, k].mean()) for k, name in enumerate(models)}
    weights = torch.tensor([getattr(cfg.rewards, n).weight for n in models])
    out["val/weighted"] = float((r * weights).sum(1).mean())
    return out


def all_reduce_grads(params: list, ctx) -> None:
    """Averages the gradients over processes (one flat buffer; a no-op for one process)."""
    if ctx.backend is None:
        return
    have = [p for p in params if p.grad is not None]  # the same parameters on every rank (same graph)
    if not have:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in have])
    torch.distributed.all_reduce(flat)
    flat /= ctx.world_size
    i = 0
    for p in have:
        p.grad = flat[i:i + p.numel()].view_as(p).clone()
        i += p.numel()


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    args = recipe_args(__doc__.split("\n")[0], argv)
    cfg = load_config(TrainGrpoConfig, args.config, args.overrides)
    check_config(cfg)
    ctx = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    from foleyflow.checkpoint import PROVENANCE, read_metadata
    from foleyflow.commands.generate_set import bundle_sha256
    from foleyflow.hashing import file_sha256
    from foleyflow.models.generator_io import save_generator
    from foleyflow.pipeline import FoleyPipeline, bf16_supported
    from foleyflow.bundle import read_bundle
    from foleyflow.flow.samplers import uniform_grid

    models = load_rewards(cfg)  # bad reward checkpoints fail before the bundle is loaded or the run folder is made
    info = read_bundle(cfg.bundle)
    pipe = FoleyPipeline.from_bundle(cfg.bundle, precision="fp32")
    crop_s = cfg.crop_s or pipe.window_s
    plan_mode = plan_source(cfg, pipe, info)
    if plan_mode == "auto":
        from foleyflow.planning import load_video_planner

        planner = load_video_planner(cfg.bundle, pipeline=pipe)
    else:
        planner = "truth" if plan_mode == "truth" else None
    ps = pipe.options().plan_scale if plan_mode != "none" else None
    entries = train_entries(cfg.manifest, crop_s)
    val_entries = train_entries(cfg.manifest, crop_s, "val")[: cfg.val_clips] if cfg.val_every else []
    lock = lock_run(out, ctx)
    torch.manual_seed(cfg.seed)
    net, ref = build_policy(pipe, cfg)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = build_optimizer(params, cfg.optim)
    ema = EMA(net, decay=cfg.ema_decay)
    it = updates = 0
    state, resumed = resume_state(out, kind="grpo", config=cfg, resumable=RESUMABLE, defaults=TrainGrpoConfig())
    if resumed is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        it, updates = int(state["step"]), int(state["updates"])
    if resumed is not None:    # the policy's start and the KL reference come from the bundle: it must be the same one
        was = (json.loads(read_metadata(resumed).get(PROVENANCE, "{}") or "{}").get("grpo") or {})
        now = {"bundle_sha256": bundle_sha256(cfg.bundle),
               "start_generator_sha256": file_sha256(info.files["generator"])}
        changed = [k for k, v in now.items() if was.get(k) not in (None, v)]
        if changed:
            from foleyflow.train.run import ResumeError

            raise ResumeError(f"{out}: the run started from bundle {was.get('bundle')} (sha256 "
                              f"{str(was.get('bundle_sha256'))[:12]}), but {cfg.bundle} is now sha256 "
                              f"{now['bundle_sha256'][:12]}; resume with bundle= the original files, or start a new "
                              "out_dir")
    write_config(out, cfg, ctx)
    start_prov = json.loads(read_metadata(info.files["generator"]).get(PROVENANCE, "{}") or "{}")
    grpo_prov = {"recipe": "recipes/train_grpo.py", "seed": cfg.seed, "world_size": ctx.world_size,
                 "bundle": str(Path(cfg.bundle).resolve()), "bundle_sha256": bundle_sha256(cfg.bundle),
                 "start_generator_sha256": file_sha256(info.files["generator"]),
                 "rewards": rewards_provenance(cfg, models),
                 "lora": {"rank": cfg.lora.rank, "alpha": cfg.lora.alpha, "targets": list(cfg.lora.targets)}
                 if cfg.lora.rank else None, "data": f"{cfg.manifest} split train",
                 "plan": plan_mode, "plan_scale": ps}
    use_bf16 = cfg.bf16 and bf16_supported(ctx.device)
    text_fn = reward_texts_encoder(models)
    cache: dict = {}
    weights = torch.tensor([getattr(cfg.rewards, n).weight for n in models])
    s = cfg.sampling
    ts = uniform_grid(s.steps)
    n_micro = cfg.clips_per_iter // cfg.micro_clips
    updates_per_iter = n_micro * s.window // cfg.accum
    total_updates = cfg.steps * updates_per_iter
    log = MetricLog(out) if ctx.is_main else None
    guide = 2 if s.cfg_scale != 1.0 else 1   # rows per row through the network with guidance
    from foleyflow.train.run import read_metrics
    history = [(r["step"], r[cfg.stop.key]) for r in read_metrics(out)
               if 0 < r["step"] <= it and cfg.stop.key in r]     # step 0: the start's monitor, not a stop point
    if val_entries and it == 0 and log is not None:   # the val monitor of the starting weights (no compute spent)
        vclips = [clip_data(pipe, e, cfg, crop_s, models, text_fn, cache, planner) for e in val_entries]
        log.log(0, {**val_scores(pipe, net, models, vclips, cfg, ps), "train/iter_s": 0.0, "compute/core_s": 0.0,
                    "compute/net_evals": 0.0, "train/updates": 0.0})
    stop = bool(cfg.stop.frac) and plateau_reached(history, it, frac=cfg.stop.frac, rel=cfg.stop.rel,
                                                   min_iters=cfg.stop.min_iters)
    while it < cfg.steps and not stop:
        t0, cpu0 = time.time(), time.process_time()
        ids = {r: [entries[i].id for i in clip_indices(it, r, ctx.world_size, cfg.clips_per_iter, len(entries),
                                                        cfg.seed)] for r in range(ctx.world_size)}
        mine = [entries[i] for i in clip_indices(it, ctx.rank, ctx.world_size, cfg.clips_per_iter, len(entries),
                                                 cfg.seed)]
        clips = [clip_data(pipe, e, cfg, crop_s, models, text_fn, cache, planner) for e in mine]
        g = iteration_generator(cfg.seed, it, ctx.rank)
        # 1. rollouts with the current policy (no gradients), decode, rewards, advantages per group and reward
        rollouts, raw, nfe_rows, starts = [], [], 0, []
        for m in range(n_micro):
            start = draw_window_start(s.steps, s.window, generator=g, max_start=s.max_start)  # per micro-batch
            starts.append(start)
            part = clips[m * cfg.micro_clips:(m + 1) * cfg.micro_clips]
            conds = part[0]["cond"]
            for c in part[1:]:
                conds = conds.cat(c["cond"])
            latent_len = net.cfg.seq_lengths(conds.duration_s)[0]
            x0 = torch.randn((len(part), latent_len, net.cfg.latent_channels), generator=g)
            with torch.no_grad(), torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                ro = fast_grpo_sample(policy_velocity(net, conds, s.cfg_scale, ps), x0, ts, window_start=start,
                                      window_size=s.window, group_size=s.group_size, noise_level=s.noise_level,
                                      generator=g, reduce=s.reduce,
                                      branch_velocity_fn=policy_velocity(net, conds.repeat(s.group_size),
                                                                         s.cfg_scale, ps))
            audio = pipe.decode(ro.samples)
            raw.append(score(models, audio, part, s.group_size, pipe.sample_rate))
            rollouts.append((conds.repeat(s.group_size), ro))
            nfe_rows += ro.nfe_rows
            if log is not None and m == 0 and cfg.sample_every and (it + 1) % cfg.sample_every == 0:
                log_sample(log, audio[0], pipe.sample_rate, it + 1)
        rewards = torch.cat(raw)                                                    # (clips x G, K)
        groups = torch.arange(len(clips)).repeat_interleave(s.group_size)
        adv = group_advantages(rewards, groups, weights, clip=cfg.adv_clip)["advantages"]
        # 2. the clipped-ratio loss over every (micro-batch, window step); an optimiser step every `accum`
        sums: dict[str, float] = {}
        first_dev, gnorm, backwards = None, torch.zeros(()), 0
        rows = cfg.micro_clips * s.group_size
        for m, (conds_g, ro) in enumerate(rollouts):
            a = adv[m * rows:(m + 1) * rows]
            for k in range(s.window):
                with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    with torch.no_grad():
                        ref_fn = policy_velocity(ref, conds_g, s.cfg_scale, ps)
                    re = step_log_prob(policy_velocity(net, conds_g, s.cfg_scale, ps), ro.states[k], ro.next_states[k],
                                       ro.timesteps[k], ro.next_timesteps[k], noise_level=s.noise_level,
                                       ref_velocity_fn=ref_fn, reduce=s.reduce)
                    loss = grpo_loss(re.log_prob, ro.log_probs[k], a, clip_range=cfg.clip_range, kl=re.kl,
                                     kl_weight=cfg.kl_weight)
                if first_dev is None:  # before any update of this iteration: exactly 0 when the code is right
                    first_dev = float((re.log_prob.detach() - ro.log_probs[k]).exp().sub(1).abs().max())
                (loss["grpo/loss"] / cfg.accum).backward()
                backwards += 1
                for key, v in loss.items():
                    sums[key] = sums.get(key, 0.0) + float(v.detach())
                if backwards % cfg.accum == 0:
                    all_reduce_grads(params, ctx)
                    gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
                    set_lr(opt, lr_at(cfg.optim, updates, total_updates))
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    ema.update(net)
                    updates += 1
        it += 1
        values = {k: v / backwards for k, v in sums.items()}
        for k, name in enumerate(models):
            values[f"reward/{name}"] = float(rewards[:, k].mean())
            values[f"reward/{name}_group_std"] = float(rewards[:, k].view(len(clips), -1).std(1, unbiased=False)
                                                       .mean())
        values["reward/weighted"] = float((rewards * weights).sum(1).mean())
        values["compute/core_s"] = (time.process_time() - cpu0) * ctx.world_size  # CPU seconds, all processes
        # generator row-evaluations, all processes (the reduction below averages): sampling rows, and per backward
        # `rows` policy forwards, `rows` reference forwards and `rows` backwards, all doubled by guidance
        train_rows = backwards * rows * guide
        values["compute/sample_rows"] = nfe_rows * guide * ctx.world_size
        values["compute/train_rows"] = train_rows * ctx.world_size
        values["compute/net_evals"] = (nfe_rows * guide + 3 * train_rows) * ctx.world_size
        values["compute/fwd_equiv"] = (nfe_rows * guide + 4 * train_rows) * ctx.world_size  # backward = 2 forwards
        values = {k: float(all_reduce_mean(torch.tensor(float(v), dtype=torch.float64), ctx))  # ints too
                  for k, v in values.items()}
        values.update({"grpo/ratio_dev_first": first_dev, "train/window_start": sum(starts) / len(starts),
                       "train/updates": updates,
                       "train/lr": lr_at(cfg.optim, max(0, updates - 1), total_updates), "train/grad_norm":
                       float(gnorm), "train/iter_s": time.time() - t0, "compute/nfe_rows": nfe_rows})
        if val_entries and it % cfg.val_every == 0 and ctx.is_main:
            vclips = [clip_data(pipe, e, cfg, crop_s, models, text_fn, cache, planner) for e in val_entries]
            values.update(val_scores(pipe, net, models, vclips, cfg, ps))
        if cfg.stop.frac:   # every rank decides alike: rank 0's val monitor is broadcast
            v = torch.tensor(values.get(cfg.stop.key, float("nan")) if ctx.is_main else 0.0, dtype=torch.float64)
            if ctx.backend is not None:
                torch.distributed.broadcast(v, 0)
            if it % cfg.val_every == 0:
                history.append((it, float(v)))
                stop = plateau_reached(history, it, frac=cfg.stop.frac, rel=cfg.stop.rel,
                                       min_iters=cfg.stop.min_iters)
                values["train/stopped"] = float(stop)
        if log is not None:
            log.log(it, values, extra={"clips": ids})
            if it % cfg.log_every == 0 or it == cfg.steps or stop:
                print(json.dumps({"step": it, **{k: round(v, 6) for k, v in values.items()}}), flush=True)
        if it % cfg.ckpt_every == 0 or it == cfg.steps or stop:
            prov = {**start_prov, "grpo": {**grpo_prov, "iteration": it, "updates": updates}}
            if ctx.is_main:
                save_state(out, it, kind="grpo", config=cfg, provenance=prov, keep=cfg.keep_states,
                           state={"model": net.state_dict(), "optimizer": opt.state_dict(), "ema": ema.state_dict(),
                                  "step": it, "updates": updates, "rng": rng_state()})
                save_generator(out / "generator.safetensors", merged(net), provenance=prov)
                save_generator(out / "generator_ema.safetensors", merged(ema.model),
                               provenance={**prov, "ema": cfg.ema_decay})
    if log is not None:
        log.close()
    release_run(lock)
    cleanup_distributed(ctx)
    return 0


if __name__ == "__main__":
    from foleyflow.train.dist import run_recipe

    run_recipe(main)
