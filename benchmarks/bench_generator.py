"""Generator inference speed: MMAudio small_16k, batch 1, 8 s, 25 Euler steps, guidance 4.5, generator only.

    /work/main/.venv/bin/python benchmarks/bench_generator.py                   # fp32 + bf16, 3 runs each
    /work/main/.venv/bin/python benchmarks/bench_generator.py --modes fp32-separate,fp32,bf16,autocast --runs 5
    /work/main/.venv/bin/python benchmarks/bench_generator.py --profile         # top ops of one bf16 guided step

Weights come from a fixed seed with every zero-initialised tensor (adaLN, output layer, empty features, sync
position embedding) re-drawn from N(0, 0.02), so no path is skipped and precision differences show (as in the
parity fixtures). Modes:
  reference      MMAudio's own math and schedule: float32, the two guidance branches as two calls per step, the
                 ConvMLP as k = 3 convolutions (what issue 20's "same math" ratio divides by); unlike the reference
                 code, the small global-condition MLP runs once, not on every call (bench_mmaudio.py's reference
                 schedule has that too)
  fp32-separate  float32, conditional and unconditional branches as two calls per step, ConvMLP as products
  fp32           float32, both branches in one batched call
  fp32-conv      fp32 with the ConvMLP run as convolutions (before session 18) instead of matrix products
  bf16           bfloat16 weights and activations (cast once), float32 sampler state, batched branches, the
                 SwiGLU gate/value projections fused into one GEMM (`inference_copy`)
  bf16-unfused   the same without the SwiGLU fusion
  autocast       float32 weights under torch.autocast(cpu, bfloat16), batched branches
  bf16-compile   bf16 with torch.compile of the velocity network (first run includes compilation; excluded)
  fp32-compile   fp32 (batched, ConvMLP as products) with torch.compile of the velocity network, likewise
Modes run interleaved (run 1 of every mode, then run 2...) so that load from other processes affects all alike.
Reports the median and min wall time per clip, the FLOP count (torch.utils.flop_counter), a FLOP-based lower bound
from a measured large-matmul peak, and the relative L2 distance of each mode's final latents to fp32's.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from foleyflow.flow import euler, uniform_grid  # noqa: E402
from foleyflow.models.generator import Generator, GeneratorConfig  # noqa: E402
from foleyflow.models.generator_sampling import guided_velocity, inference_copy  # noqa: E402
from foleyflow.nn.layers import ConvSwiGLU  # noqa: E402
from foleyflow.options import DEFAULTS  # noqa: E402
from machine import cpu_summary  # noqa: E402  (benchmarks/machine.py)


def build(preset: str, duration_s: float, seed: int) -> Generator:
    torch.manual_seed(seed)
    net = Generator(GeneratorConfig.preset(preset, duration_s=duration_s)).eval()
    with torch.no_grad():
        for p in net.zero_initialised():
            p.normal_(0.0, 0.02)
    return net


def inputs(net: Generator, seed: int):
    g = torch.Generator().manual_seed(seed)
    c = net.cfg
    return (torch.randn(1, net.latent_len, c.latent_channels, generator=g),
            torch.randn(1, net.visual_len, c.visual_dim, generator=g),
            torch.randn(1, net.sync_len, c.sync_dim, generator=g),
            torch.randn(1, c.text_len, c.text_dim, generator=g))


def matmul_peak(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    """Best observed FLOP/s of an n x n x n matmul."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


MODES = ("reference", "fp32-separate", "fp32", "fp32-conv", "bf16", "bf16-unfused", "autocast", "bf16-compile",
         "fp32-compile")


class Mode:
    def __init__(self, name: str, net: Generator, feats, cfg_scale: float, steps: int):
        self.name, self.steps = name, steps
        if name.startswith("bf16"):
            self.net = inference_copy(net, torch.bfloat16, fuse=name != "bf16-unfused")
        elif name in ("fp32-conv", "reference"):   # the ConvMLP as oneDNN convolutions (same weights)
            self.net = copy.deepcopy(net)
            for m in self.net.modules():
                if isinstance(m, ConvSwiGLU):
                    m.gemm = False
        else:
            self.net = net
        dtype = next(self.net.parameters()).dtype
        self.autocast = name == "autocast"
        with torch.inference_mode(), self._ctx():
            v, s, t = (f.to(dtype) for f in feats)
            cond = self.net.prepare_conditions(v, s, t)
            self.fn = guided_velocity(self.net, cond, self.net.empty_conditions(1), cfg_scale,
                                      batched=name not in ("fp32-separate", "reference"),
                                      compile=name.endswith("compile"))

    def _ctx(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast else torch.autocast("cpu", enabled=False)

    def run(self, x0: torch.Tensor) -> tuple[float, float, torch.Tensor]:
        """(wall s, process CPU s, final latents)."""
        with torch.inference_mode(), self._ctx():
            t0, c0 = time.perf_counter(), time.process_time()
            out = euler(self.fn, x0, uniform_grid(self.steps))
            return time.perf_counter() - t0, time.process_time() - c0, out.float()


def profile_step(mode: Mode, x0: torch.Tensor, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), mode._ctx():
        mode.fn(x0, torch.tensor(0.5))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(2):
                mode.fn(x0, torch.tensor(0.5))
    print(f"\nprofile of 2 guided steps, mode {mode.name}:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small_16k")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--steps", type=int, default=DEFAULTS.steps)
    ap.add_argument("--cfg", type=float, default=DEFAULTS.cfg_scale)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default=None, help="comma-separated modes (default: fp32, plus bf16 where the CPU has "
                    "bf16 matrix kernels)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="profile one guided step of the last mode instead")
    ap.add_argument("--rows", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from foleyflow.pipeline import bf16_supported

    has_bf16 = bf16_supported(torch.device("cpu"))
    if args.modes is None:
        args.modes = "fp32,bf16" if has_bf16 else "fp32"
    unknown = [m for m in args.modes.split(",") if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(MODES)}")
    print(f"CPU: {cpu_summary()}; bf16 matrix kernels: "
          f"{'yes' if has_bf16 else 'no (bf16 modes are skipped unless asked)'}")

    net = build(args.preset, args.duration, args.seed)
    x0, *feats = inputs(net, args.seed + 1)
    print(f"{args.preset}: {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters, "
          f"{args.duration} s -> latents {net.latent_len}, visual {net.visual_len}, sync {net.sync_len}; "
          f"{args.steps} Euler steps, cfg {args.cfg}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    modes = [Mode(m, net, feats, args.cfg, args.steps) for m in args.modes.split(",")]
    if args.profile:
        profile_step(modes[-1], x0, args.rows)
        return

    from torch.utils.flop_counter import FlopCounterMode
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        modes[0].fn(x0, torch.tensor(0.5))
    flops = fc.get_total_flops() * args.steps
    # the bf16 peak is only probed where bf16 kernels exist: elsewhere a 2048^3 bf16 matmul takes minutes
    peaks = {"fp32": matmul_peak(torch.float32),
             "bf16": matmul_peak(torch.bfloat16) if has_bf16 else float("nan")}
    print(f"compute: {flops / 1e12:.2f} TFLOP per clip ({flops / args.steps / 2e9:.1f} GFLOP per network call on "
          f"one branch); measured 2048^3 matmul peak fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s -> lower bound fp32 {flops / peaks['fp32']:.2f} s, "
          f"bf16 {flops / peaks['bf16']:.2f} s (with reference.md's unloaded peaks of 200 / 670 GFLOP/s: "
          f"{flops / 200e9:.2f} s / {flops / 670e9:.2f} s)", flush=True)

    for m in modes:  # warm-up (and compilation)
        t0 = time.perf_counter()
        if m.name.endswith("compile"):
            m.run(x0)
        else:
            with torch.inference_mode(), m._ctx():
                m.fn(x0, torch.tensor(0.5))
        if m.name.endswith("compile"):
            print(f"{m.name}: warm-up incl. compilation {time.perf_counter() - t0:.1f} s")
    times: dict[str, list[float]] = {m.name: [] for m in modes}
    cpu: dict[str, list[float]] = {m.name: [] for m in modes}
    outs: dict[str, torch.Tensor] = {}
    for r in range(args.runs):
        for m in modes:
            dt, ct, outs[m.name] = m.run(x0)
            times[m.name].append(dt)
            cpu[m.name].append(ct)
            print(f"  run {r + 1} {m.name}: {dt:.2f} s wall, {ct:.2f} s CPU, load {os.getloadavg()[0]:.1f}", flush=True)
    ref = outs.get("fp32", outs.get("reference", outs.get("fp32-separate")))
    print(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print(f"{'mode':<14} {'median s':>9} {'min s':>7} {'GFLOP/s':>8} {'median CPU s':>13} {'rel L2 vs fp32':>15}")
    for m in modes:
        med = statistics.median(times[m.name])
        err = float((outs[m.name] - ref).norm() / ref.norm()) if ref is not None else float("nan")
        print(f"{m.name:<14} {med:>9.2f} {min(times[m.name]):>7.2f} {flops / med / 1e9:>8.0f} "
              f"{statistics.median(cpu[m.name]):>13.2f} {err:>15.2e}")
    first = modes[0].name
    for m in modes[1:]:    # paired by run: robust to the machine's speed drifting between runs
        for what, d in (("wall", times), ("CPU", cpu)):
            r = [a / b for a, b in zip(d[first], d[m.name])]
            print(f"{first} / {m.name}, {what} time, per run: {' '.join(f'{x:.2f}' for x in r)}; "
                  f"median {statistics.median(r):.2f}")
    print("(on a loaded machine, wall time with several threads degrades far more than CPU time; with --threads 1 "
          "the CPU time is a load-robust measure of the work, and CPU time / 2 estimates an unloaded 2-thread run)")


if __name__ == "__main__":
    main()
