"""Distributed setup for recipes launched with torchrun (gloo on CPU, nccl on GPU), and plain single-process runs.

    ctx = setup_distributed()        # reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK at call time
    model = wrap_ddp(model, ctx)
    ...
    cleanup_distributed(ctx)
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None when not distributed

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistContext:
    """Initialises the process group when launched by torchrun (WORLD_SIZE > 1); picks nccl on CUDA, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    backend = None
    if world > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
    return DistContext(rank, world, local, dev, backend)


def wrap_ddp(model: torch.nn.Module, ctx: DistContext, **kwargs) -> torch.nn.Module:
    """DistributedDataParallel when distributed, the model itself otherwise."""
    if ctx.backend is None:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, **kwargs)


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean over processes of a tensor (a copy; the input is untouched)."""
    out = value.detach().clone()
    if ctx.backend is not None:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= ctx.world_size
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.backend is not None:
        dist.barrier()


def cleanup_distributed(ctx: DistContext) -> None:
    if ctx.backend is not None and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int | None = 0) -> None:
    """Ends a recipe process. Under torchrun (WORLD_SIZE > 1) it leaves with os._exit after flushing: torch 2.13's
    gloo backend sometimes aborts ("terminate called without an active exception") while the interpreter shuts down
    after destroy_process_group (5 of 30 runs of a minimal DDP script; seen in CI-like runs of train_flow too), and
    by then every file is written and closed, so the C++ static destructors are skipped. Otherwise sys.exit(code)."""
    import os
    import sys

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code or 0))
    sys.exit(code)


def run_recipe(main) -> None:
    """A recipe's entry point: runs main(); a FoleyError (missing or bad file, bad config) becomes a one-line
    "error: ..." on stderr and its exit code instead of a traceback; otherwise ends through exit_process."""
    import sys

    from foleyflow.errors import FoleyError

    try:
        code = main()
    except FoleyError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.stderr.flush()
        exit_process(e.exit_code)
        return
    exit_process(code)
