"""Distil any foleyflow generator into a few-step student with guidance folded in (shortcut-model self-distillation).

Launch (CPU, 2 processes; the caches are those the teacher was trained on, see recipes/train_flow.py):
    torchrun --standalone --nproc_per_node 2 recipes/distill_flow.py --config configs/distill_flow/default.yaml \
        teacher=BUNDLE/generator.safetensors data.latents=DIR data.features=DIR out_dir=DIR
Then `recipes/assemble_bundle.py --generator DIR/generator_ema.safetensors ... --steps 4` makes a bundle that
`foleyflow generate` samples in that many network calls (no unconditional branch: one call per step).

The student is the teacher's network plus two inputs (`GeneratorConfig.distilled`): the guidance scale w and the
step count n of the call (it predicts the mean velocity over a step of 1/n). It starts as the teacher (the new
inputs' last layers are zero). Each item of a batch is one of two kinds:
  - instantaneous (n = 0, a fraction 1 - `consistency_fraction`): target = the teacher's guided velocity at x_t,
    v_u + w (v_c - v_u), with x_t on the data-noise path at a logit-normal t (the teacher's training times);
  - self-consistency (n = 2^k, k uniform in 0..distill_levels): t on the grid of that step, target = the mean of two
    half steps of the student's EMA (n' = 2n; a half step finer than 2^-distill_levels is the instantaneous one):
    u1 = S(x_t, t, 2n), u2 = S(x_t + u1 / (2n), t + 1 / (2n), 2n), target (u1 + u2) / 2.
w is drawn uniformly from [guidance_min, guidance_max] per item. Condition dropout and tasks as in train_flow (the
teacher sees the same dropped conditions). The run folder is the recipes' usual one (foleyflow.train.run).

A teacher with a plan pathway (`plan_dim` > 0, as default model v3) is distilled with its plan: the tracks are drawn
from the ground truth of the manifest the caches name, as train_flow draws them (`drop_plan`, `plan_offscreen`, kept
in out_dir/plan_tracks.safetensors), and the teacher's target guides the track at its own weight W = `plan_scale`
as generation does (foleyflow.flow.guidance.plan_guidance: v_none + W (v_plan - v_none) + w (v_full - v_plan), the
plan-only branch in the same batched call, the empty one only when W != 1). The student folds W in
(GeneratorConfig.distill_plan_scale); generating with another --plan-scale is refused. Give the bundle of the student
the teacher bundle's plan scale (assemble_bundle.py --plan-scale).
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_flow's data functions: one implementation
from train_flow import (DataConfig, batch_indices, check_tasks, load_data, load_plans,  # noqa: E402
                        make_batch, task_at)

from foleyflow.config import load_config  # noqa: E402
from foleyflow.errors import FoleyError  # noqa: E402
from foleyflow.flow.objective import interpolate  # noqa: E402
from foleyflow.models.generator import Generator  # noqa: E402
from foleyflow.models.generator_io import load_generator  # noqa: E402
from foleyflow.train.dist import all_reduce_mean, cleanup_distributed, setup_distributed, wrap_ddp  # noqa: E402
from foleyflow.train.ema import EMA  # noqa: E402
from foleyflow.train.generator_run import (gather_generators, restore_generator_state,  # noqa: E402
                                           save_generator_checkpoint)
from foleyflow.train.run import MetricLog, lock_run, recipe_args, release_run, resume_state, write_config  # noqa: E402
from foleyflow.train.schedule import OptimConfig, build_optimizer, lr_at, set_lr  # noqa: E402


@dataclass
class DistillOptimConfig(OptimConfig):
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    decay_steps: list[int] = field(default_factory=list)
    grad_clip: float = 1.0


@dataclass
class DistillFlowConfig:
    teacher: str = ""                     # the teacher generator checkpoint (kind "generator")
    data: DataConfig = field(default_factory=DataConfig)
    out_dir: str = ""
    steps: int = 2000
    batch_size: int = 8
    optim: DistillOptimConfig = field(default_factory=DistillOptimConfig)
    distill_levels: int = 7               # smallest step 2^-7 (128 steps)
    consistency_fraction: float = 0.25
    guidance_min: float = 1.0
    guidance_max: float = 7.0
    drop_video: float = 0.1
    drop_text: float = 0.2
    drop_plan: float = 0.3                # a teacher with a plan pathway: as train_flow (its learned empty plan)
    plan_offscreen: str = "timed"         # as train_flow's
    plan_scale: float = 1.0               # the plan track's guidance weight W folded into the student
    tasks: dict[str, float] = field(default_factory=dict)
    ema_decay: float = 0.999
    seed: int = 0
    overfit_items: int = 0
    log_every: int = 50
    ckpt_every: int = 250
    keep_states: int = 2
    threads: int = 0


class StudentStep(nn.Module):
    """The student with condition dropout inside forward (DDP sees every parameter used)."""

    def __init__(self, net: Generator):
        super().__init__()
        self.net = net

    def forward(self, xt, t, visual, sync, text, keep_video, keep_text, guidance, steps, plan=None, keep_plan=None):
        cond = dropped_conditions(self.net, visual, sync, text, keep_video, keep_text, plan, keep_plan)
        return self.net.velocity(xt, t, cond, guidance=guidance, steps=steps)


def dropped_plan(net: Generator, plan, keep_plan):
    """The plan tracks (B, N, plan_dim) with the dropped ones replaced by the learned empty plan (None: no plan, or
    a network without a plan pathway)."""
    if plan is None or net.cfg.plan_dim == 0:
        return None
    kp = keep_plan.view(-1, 1, 1).to(plan.dtype)
    return kp * plan + (1 - kp) * net.empty_plan_feat[None].to(plan.dtype)


def dropped_conditions(net: Generator, visual, sync, text, keep_video, keep_text, plan=None, keep_plan=None):
    """Prepared conditions with the dropped streams replaced by the network's learned empty features."""
    kv = keep_video.view(-1, 1, 1).to(visual.dtype)
    kt = keep_text.view(-1, 1, 1).to(text.dtype)
    visual = kv * visual + (1 - kv) * net.empty_clip_feat[None].to(visual.dtype)
    sync = kv * sync + (1 - kv) * net.empty_sync_feat[None].to(sync.dtype)
    text = kt * text + (1 - kt) * net.empty_string_feat[None].to(text.dtype)
    return net.prepare_conditions(visual, sync, text, plan=dropped_plan(net, plan, keep_plan))


@torch.no_grad()
def teacher_target(teacher: Generator, batch: dict, guidance: torch.Tensor, plan_scale: float = 1.0) -> torch.Tensor:
    """The teacher's guided velocity at (x_t, t) for the batch's (dropped) conditions, every branch in one call:
    v_u + w (v_c - v_u); with a plan track and a plan pathway, the track guided at its own weight `plan_scale` as
    generation guides it (plan_guidance over the full conditions, the plan track alone and, unless the weight is 1,
    nothing)."""
    from foleyflow.flow.guidance import plan_guidance

    b = batch["xt"].shape[0]
    plan = dropped_plan(teacher, batch.get("plan"), batch.get("keep_plan"))
    cond = dropped_conditions(teacher, batch["visual"], batch["sync"], batch["text"], batch["keep_video"],
                              batch["keep_text"], batch.get("plan"), batch.get("keep_plan"))
    branches = [cond, teacher.empty_conditions(b, plan=plan)]
    if plan is not None and plan_scale != 1.0:
        branches.append(teacher.empty_conditions(b))
    both = branches[0]
    for c in branches[1:]:
        both = both.cat(c)
    k = len(branches)
    v = teacher.velocity(batch["xt"].repeat(k, 1, 1), batch["t"].repeat(k), both)
    w = guidance.view(-1, 1, 1)
    if plan is None:
        vc, vu = v[:b], v[b:]
        return vu + w * (vc - vu)
    return plan_guidance(v[:b], v[b:2 * b], v[2 * b:] if k == 3 else None, scale=w, plan_scale=plan_scale)


@torch.no_grad()
def consistency_target(ema_net: Generator, batch: dict, guidance: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Mean velocity of two half steps of the EMA student: steps (B,) -> calls at 2 * steps (0 = instantaneous when
    2 * steps exceeds 2^distill_levels)."""
    cond = dropped_conditions(ema_net, batch["visual"], batch["sync"], batch["text"], batch["keep_video"],
                              batch["keep_text"], batch.get("plan"), batch.get("keep_plan"))
    half = 2 * steps
    call = torch.where(half > 2 ** ema_net.cfg.distill_levels, torch.zeros_like(half), half)
    u1 = ema_net.velocity(batch["xt"], batch["t"], cond, guidance=guidance, steps=call)
    x_mid = batch["xt"] + u1 / half.view(-1, 1, 1)
    u2 = ema_net.velocity(x_mid, batch["t"] + 1.0 / half, cond, guidance=guidance, steps=call)
    return 0.5 * (u1 + u2)


def draw_kinds(b: int, cfg: DistillFlowConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Per item: guidance w, the step count n (0 = instantaneous) and, for consistency items, a grid index."""
    w = cfg.guidance_min + (cfg.guidance_max - cfg.guidance_min) * torch.rand(b, generator=gen)
    consistent = torch.rand(b, generator=gen) < cfg.consistency_fraction
    k = torch.randint(0, cfg.distill_levels + 1, (b,), generator=gen)
    n = torch.where(consistent, (2.0 ** k), torch.zeros(b))
    cell = torch.floor(torch.rand(b, generator=gen) * n.clamp(min=1)).clamp(max=n.clamp(min=1) - 1)
    return {"guidance": w, "steps": n, "grid_t": cell / n.clamp(min=1), "consistent": consistent}


def build_student(teacher: Generator, cfg: DistillFlowConfig) -> Generator:
    import dataclasses

    if teacher.cfg.distilled:
        raise FoleyError(f"teacher {cfg.teacher} is already a distilled student")
    folded = float(cfg.plan_scale) if teacher.cfg.plan_dim > 0 else 1.0   # only a plan pathway has a plan weight
    student = Generator(dataclasses.replace(teacher.cfg, distilled=True, distill_levels=cfg.distill_levels,
                                            distill_plan_scale=folded))
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("guidance_embed.", "steps_embed.")) for k in missing):
        raise FoleyError(f"student does not take the teacher's weights (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]})")
    student.set_seq_lengths(teacher.latent_len, teacher.visual_len, teacher.sync_len)
    return student


def main(argv: list[str] | None = None) -> int:
    args = recipe_args(__doc__.split("\n")[0], argv)
    cfg = load_config(DistillFlowConfig, args.config, args.overrides)
    if not cfg.teacher or not Path(cfg.teacher).is_file():
        raise FoleyError(f"teacher: generator checkpoint not found: {cfg.teacher or '(not set)'}")
    if not 0.0 <= cfg.consistency_fraction <= 1.0 or cfg.guidance_min < 0 or cfg.guidance_max < cfg.guidance_min:
        raise FoleyError("consistency_fraction must be in [0, 1] and 0 <= guidance_min <= guidance_max")
    if not 0.0 <= cfg.drop_plan <= 1.0 or not 0.0 <= cfg.plan_scale <= 50.0:
        raise FoleyError("drop_plan must be in [0, 1] and plan_scale in [0, 50] (generation's range)")
    ctx = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    lock = lock_run(out, ctx)
    check_tasks(cfg)
    data = load_data(cfg)
    teacher = load_generator(cfg.teacher).eval().to(ctx.device)
    if (teacher.latent_len, teacher.sync_len) != (data["mean"].shape[1], data["sync"].shape[1]):
        teacher.set_duration(data["duration_s"])
    for p in teacher.parameters():
        p.requires_grad_(False)
    if teacher.cfg.plan_dim == 0 and cfg.plan_scale != 1.0:
        raise FoleyError(f"plan_scale {cfg.plan_scale:g}: the teacher {cfg.teacher} has no plan pathway to weigh")
    if teacher.cfg.plan_dim > 0:   # rank 0 draws the plan tracks once (as train_flow); the others read its file
        if ctx.backend is not None and not ctx.is_main:
            torch.distributed.barrier()
        data["plan"], data["has_plan"] = load_plans(data, teacher.cfg, out / "plan_tracks.safetensors",
                                                    ctx.is_main, cfg.plan_offscreen)
        if ctx.backend is not None and ctx.is_main:
            torch.distributed.barrier()
    torch.manual_seed(cfg.seed)
    net = build_student(teacher, cfg).to(ctx.device)
    step_module = wrap_ddp(StudentStep(net), ctx)
    opt = build_optimizer(net.parameters(), cfg.optim)
    ema = EMA(net, decay=cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + ctx.rank)
    step = 0
    state, resume = resume_state(out, kind="generator", config=cfg, defaults=DistillFlowConfig())
    if resume is not None:
        step = restore_generator_state(state, net, opt, ema, gen, ctx)
    write_config(out, cfg, ctx)
    log = MetricLog(out) if ctx.is_main else None
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=not ctx.is_main, desc="distill_flow", dynamic_ncols=True)
    n_items, t_last, losses = data["mean"].shape[0], time.time(), {"flow": [], "consistency": []}
    while step < cfg.steps:
        idx = batch_indices(step, ctx.rank, cfg.batch_size, ctx.world_size, n_items, cfg.seed)
        batch = make_batch(data, idx, net, cfg, gen, task_at(cfg, step))
        kinds = draw_kinds(idx.numel(), cfg, gen)
        # consistency items move to their step's grid on the same data-noise path
        x0 = batch["xt"] - batch["t"].view(-1, 1, 1) * batch["target"]
        x1 = x0 + batch["target"]
        c = kinds["consistent"]
        batch["t"] = torch.where(c, kinds["grid_t"], batch["t"])
        batch["xt"] = torch.where(c.view(-1, 1, 1), interpolate(x0, x1, batch["t"]), batch["xt"])
        batch = {k: v.to(ctx.device) for k, v in batch.items()}
        w, n = kinds["guidance"].to(ctx.device), kinds["steps"].to(ctx.device)
        target = teacher_target(teacher, batch, w, cfg.plan_scale)
        if c.any():
            target = torch.where(c.view(-1, 1, 1).to(ctx.device), consistency_target(ema.model, batch, w, n), target)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        u = step_module(batch["xt"], batch["t"], batch["visual"], batch["sync"], batch["text"],
                        batch["keep_video"], batch["keep_text"], w, n, batch.get("plan"), batch.get("keep_plan"))
        per_item = (u.float() - target).pow(2).mean(dim=(1, 2))
        loss = per_item.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
        opt.step()
        ema.update(net)
        step += 1
        for kind, mask in (("flow", ~c), ("consistency", c)):
            if mask.any():
                losses[kind].append(per_item[mask.to(per_item.device)].mean().detach())
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            means = {f"distill/{k}_mse": all_reduce_mean(torch.stack(v).mean() if v else torch.tensor(math.nan),
                                                        ctx).item() for k, v in losses.items()}
            losses = {"flow": [], "consistency": []}
            if ctx.is_main:
                rate = cfg.log_every * cfg.batch_size * ctx.world_size / max(1e-9, time.time() - t_last)
                log.log(step, {**means, "train/grad_norm": float(gnorm), "train/samples_per_s": rate,
                               "train/lr": lr_at(cfg.optim, step - 1, cfg.steps)})
                bar.write(json.dumps({"step": step, **{k: round(v, 5) for k, v in means.items()}}), file=sys.stdout)
            t_last = time.time()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            gens = gather_generators(gen, ctx)
            if ctx.is_main:
                from foleyflow.hashing import file_sha256

                prov = {"recipe": "recipes/distill_flow.py", "step": step, "seed": cfg.seed,
                        "teacher": cfg.teacher, "teacher_sha256": file_sha256(cfg.teacher),
                        "producers": data["producers"], "world_size": ctx.world_size}
                if "plan" in data:
                    prov["plan"] = {"drop_plan": cfg.drop_plan, "plan_offscreen": cfg.plan_offscreen,
                                    "plan_scale": cfg.plan_scale}
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
