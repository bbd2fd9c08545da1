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
from train_flow import (DataConfig, batch_indices, check_tasks, load_data, make_batch,  # noqa: E402
                        task_at)

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

    def forward(self, xt, t, visual, sync, text, keep_video, keep_text, guidance, steps):
        return self.net.velocity(xt, t, dropped_conditions(self.net, visual, sync, text, keep_video, keep_text),
                                 guidance=guidance, steps=steps)


def dropped_conditions(net: Generator, visual, sync, text, keep_video, keep_text):
    """Prepared conditions with the dropped streams replaced by the network's learned empty features."""
    kv = keep_video.view(-1, 1, 1).to(visual.dtype)
    kt = keep_text.view(-1, 1, 1).to(text.dtype)
    visual = kv * visual + (1 - kv) * net.empty_clip_feat[None].to(visual.dtype)
    sync = kv * sync + (1 - kv) * net.empty_sync_feat[None].to(sync.dtype)
    text = kt * text + (1 - kt) * net.empty_string_feat[None].to(text.dtype)
    return net.prepare_conditions(visual, sync, text)


@torch.no_grad()
def teacher_target(teacher: Generator, batch: dict, guidance: torch.Tensor) -> torch.Tensor:
    """v_u + w (v_c - v_u) at (x_t, t) for the batch's (dropped) conditions, both branches in one call."""
    b = batch["xt"].shape[0]
    cond = dropped_conditions(teacher, batch["visual"], batch["sync"], batch["text"], batch["keep_video"],
                              batch["keep_text"])
    both = cond.cat(teacher.empty_conditions(b))
    v = teacher.velocity(torch.cat([batch["xt"], batch["xt"]]), torch.cat([batch["t"], batch["t"]]), both)
    vc, vu = v[:b], v[b:]
    w = guidance.view(-1, 1, 1)
    return vu + w * (vc - vu)


@torch.no_grad()
def consistency_target(ema_net: Generator, batch: dict, guidance: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Mean velocity of two half steps of the EMA student: steps (B,) -> calls at 2 * steps (0 = instantaneous when
    2 * steps exceeds 2^distill_levels)."""
    cond = dropped_conditions(ema_net, batch["visual"], batch["sync"], batch["text"], batch["keep_video"],
                              batch["keep_text"])
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
    student = Generator(dataclasses.replace(teacher.cfg, distilled=True, distill_levels=cfg.distill_levels))
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
    ctx = setup_distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    lock = lock_run(out, ctx)
    check_tasks(cfg)
    data = load_data(cfg)
    teacher = load_generator(cfg.teacher).eval()
    if (teacher.latent_len, teacher.sync_len) != (data["mean"].shape[1], data["sync"].shape[1]):
        teacher.set_duration(data["duration_s"])
    for p in teacher.parameters():
        p.requires_grad_(False)
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
        target = teacher_target(teacher, batch, w)
        if c.any():
            target = torch.where(c.view(-1, 1, 1).to(ctx.device), consistency_target(ema.model, batch, w, n), target)
        set_lr(opt, lr_at(cfg.optim, step, cfg.steps))
        u = step_module(batch["xt"], batch["t"], batch["visual"], batch["sync"], batch["text"],
                        batch["keep_video"], batch["keep_text"], w, n)
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
