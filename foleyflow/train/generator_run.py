"""The generator recipes' training state in their run folder (recipes/train_flow.py, recipes/distill_flow.py): what a
resumable state holds, how a run resumes from one, and the checkpoint written every `ckpt_every` steps.

    step = 0
    state, path = resume_state(out, kind="generator", config=cfg, ...)
    if path is not None:
        step = restore_generator_state(state, net, opt, ema, gen, ctx)
    ...
    if step % cfg.ckpt_every == 0 or step == cfg.steps:
        gens = gather_generators(gen, ctx)              # on every rank: a collective under torchrun
        if ctx.is_main:
            save_generator_checkpoint(out, step, cfg, prov, net, opt, ema, gens)

A state is {"model", "optimizer", "ema", "step", "gen": one data-generator state per rank, "rng"}; the exports are
`generator.safetensors` (the trained network) and `generator_ema.safetensors` (its EMA, provenance adds "ema").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def restore_generator_state(state: dict, net, opt, ema, gen, ctx) -> int:
    """Loads a resumable state into the network, optimizer, EMA, this rank's data generator (rank 0's when the saved
    run had fewer ranks) and the global RNGs; returns the step to continue from."""
    from foleyflow.train.state import set_rng_state

    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    ema.load_state_dict(state["ema"])
    gen.set_state(state["gen"][ctx.rank] if ctx.rank < len(state["gen"]) else state["gen"][0])
    set_rng_state(state["rng"])
    return int(state["step"])


def gather_generators(gen, ctx) -> list:
    """Every rank's data-generator state (a list of world_size uint8 tensors), gathered onto every rank; call it on
    all ranks at the same step."""
    import torch

    if ctx.backend is None:
        return [gen.get_state()]
    gens = [torch.zeros_like(gen.get_state()) for _ in range(ctx.world_size)]
    torch.distributed.all_gather(gens, gen.get_state())
    return gens


def save_generator_checkpoint(out: str | Path, step: int, cfg: Any, provenance: dict, net, opt, ema,
                              gens: list) -> None:
    """Rank 0's checkpoint at `step`: the resumable state in out/checkpoints/ (the newest `cfg.keep_states` kept) and
    the exports generator.safetensors and generator_ema.safetensors (provenance plus "ema": cfg.ema_decay), each
    written atomically."""
    from foleyflow.models.generator_io import save_generator
    from foleyflow.train.run import save_state
    from foleyflow.train.state import rng_state

    out = Path(out)
    save_state(out, step, kind="generator", config=cfg, provenance=provenance, keep=cfg.keep_states,
               state={"model": net.state_dict(), "optimizer": opt.state_dict(), "ema": ema.state_dict(),
                      "step": step, "gen": gens, "rng": rng_state()})
    save_generator(out / "generator.safetensors", net, provenance=provenance)
    save_generator(out / "generator_ema.safetensors", ema.model, provenance={**provenance, "ema": cfg.ema_decay})
