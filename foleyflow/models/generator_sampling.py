"""Sampling with the generator: guided velocity callables and a fast inference path.

`guided_velocity` builds the `velocity_fn(x, t)` the samplers in foleyflow.flow.samplers integrate, with the
conditions prepared once; by default both guidance branches run as one batched call (the reference runs two).
`GUIDANCE` names the ways the two branches are combined (`cfg`, MMAudio's; `apg`, adaptive projected guidance).
`generate` runs a sampler from given noise, optionally in bfloat16: the network weights and activations are bf16
(on CPU this uses the avx512_bf16 / AMX kernels of oneDNN), while the sampler state, the time embedding, RoPE and
the guidance combination stay float32. `int8_copy` is the other inference copy: dynamic int8 quantisation of the
Linear layers (weights int8 per output channel, activations quantised per call; convolutions stay float32).
Convention: noise at t = 0, data at t = 1; latents are in the network's
normalised space (use `net.unnormalize` afterwards).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch

from foleyflow.errors import FoleyError
from foleyflow.flow.guidance import batched_cfg, cfg, cfg_apg, multi_condition, plan_guidance
from foleyflow.flow.samplers import euler, uniform_grid
from foleyflow.models.generator import Generator, PreparedConditions
from foleyflow.nn.layers import ConvSwiGLU, SwiGLU
from foleyflow.options import DEFAULTS, GUIDANCE  # noqa: F401 (GUIDANCE: the modes' names)


def combine_fn(guidance: str = "cfg", apg_eta: float = 0.0):
    """The guidance combination `combine(v_cond, v_uncond, scale)`: "cfg" = s v_cond + (1 - s) v_uncond;
    "apg" = v_cond + (s - 1) APG(v_cond - v_uncond) with parallel damping `apg_eta` (foleyflow.flow.guidance)."""
    if guidance == "cfg":
        return cfg
    if guidance == "apg":
        return lambda vc, vu, s: cfg_apg(vc, vu, s, apg_eta)
    raise ValueError(f"guidance {guidance!r} has no two-branch combination (one of cfg, apg)")


def multi_guided_velocity(net: Generator, full: PreparedConditions, no_text: PreparedConditions,
                          no_video: PreparedConditions, none: PreparedConditions, *, w_joint: float, w_text: float,
                          w_video: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """velocity_fn(x, t) with multi-condition guidance (foleyflow.flow.guidance.multi_condition, after ALIVE) over
    four branches evaluated as one batched call: full conditions, without text, without video, with neither."""
    dtype = next(net.parameters()).dtype
    allc = full.cat(no_text).cat(no_video).cat(none)

    def velocity_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        v = net.velocity(x.repeat(4, *([1] * (x.dim() - 1))).to(dtype), t, allc).float()
        return multi_condition(v[:b], v[b:2 * b], v[2 * b:3 * b], v[3 * b:], w_joint=w_joint, w_text=w_text,
                               w_video=w_video)

    return velocity_fn


def plan_guided_velocity(net: Generator, full: PreparedConditions, plan_only: PreparedConditions,
                         none: PreparedConditions | None, *, cfg_scale: float, plan_scale: float,
                         ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """velocity_fn(x, t) with the plan track guided at its own weight (foleyflow.flow.guidance.plan_guidance) over
    the full conditions, the plan track alone and (unless plan_scale is 1) nothing, as one batched call."""
    dtype = next(net.parameters()).dtype
    branches = [full, plan_only] + ([] if plan_scale == 1.0 else [none])
    allc = branches[0]
    for c in branches[1:]:
        allc = allc.cat(c)
    k = len(branches)

    def velocity_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        v = net.velocity(x.repeat(k, *([1] * (x.dim() - 1))).to(dtype), t, allc).float()
        return plan_guidance(v[:b], v[b:2 * b], v[2 * b:] if k == 3 else None, scale=cfg_scale,
                             plan_scale=plan_scale)

    return velocity_fn


def guided_velocity(net: Generator, cond: PreparedConditions, uncond: PreparedConditions | None = None,
                    cfg_scale: float = DEFAULTS.cfg_scale, *, batched: bool = True, compile: bool = False, combine=cfg,
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """velocity_fn(x, t) with classifier-free guidance `cfg_scale` (v = s v_cond + (1 - s) v_uncond, or another
    `combine`, see `combine_fn`) against `uncond` (default: the learned empty conditions of the current duration);
    scale 1 -> the plain conditional velocity, one branch. `compile=True` wraps the network call in torch.compile
    (static shapes; the first call compiles, which takes minutes on a small CPU; needs a C++ compiler)."""
    dtype = next(net.parameters()).dtype
    velocity = torch.compile(net.velocity, dynamic=False) if compile else net.velocity

    def run(x, t, c):
        return velocity(x.to(dtype), t, c).float()

    if cfg_scale == 1.0:
        return lambda x, t: run(x, t, cond)
    if uncond is None:
        uncond = net.empty_conditions(cond.batch_size)
    if batched:
        both = cond.cat(uncond)
        return batched_cfg(lambda x2, t: run(x2, t, both), cfg_scale, combine=combine)
    return lambda x, t: combine(run(x, t, cond), run(x, t, uncond), cfg_scale)


def student_velocity(net: Generator, cond: PreparedConditions, guidance: float, steps: int,
                     ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """velocity_fn(x, t) of a distilled student (`net.cfg.distilled`) for Euler sampling over `steps` uniform
    steps: one network call per step, guidance folded in (no unconditional branch)."""
    if not net.cfg.distilled:
        raise FoleyError("student_velocity needs a distilled generator (recipes/distill_flow.py)")
    dtype = next(net.parameters()).dtype
    return lambda x, t: net.velocity(x.to(dtype), t, cond, guidance=guidance, steps=steps).float()


def inference_copy(net: Generator, dtype: torch.dtype = torch.bfloat16, *, fuse: bool = True) -> Generator:
    """A copy of the network for inference in `dtype` (the original is left untouched); with `fuse`, the gate and
    value projections of every SwiGLU run as one GEMM/convolution. RoPE tables and time frequencies stay float32.
    The copy is for inference only (the fused weights do not follow later changes of w1/w3). Each parameter is cast
    as it is copied, so building it never holds a second full-precision copy of the network (its peak is the copy's
    own size)."""
    memo = {id(p): torch.nn.Parameter(p.detach().to(dtype, copy=True), requires_grad=p.requires_grad)
            for p in net.parameters() if p.is_floating_point()}
    out = copy.deepcopy(net, memo).to(dtype).eval()
    if fuse:
        for m in out.modules():
            if isinstance(m, (SwiGLU, ConvSwiGLU)):
                m.fuse_for_inference()
    return out


def bf16_copy(net: Generator) -> Generator:
    """A bfloat16 inference copy of the network (see `inference_copy`)."""
    return inference_copy(net, torch.bfloat16)


def int8_engine() -> str:
    """The quantized engine that runs dynamic int8 Linear layers here (torch.backends.quantized.engine: x86 or fbgemm
    on x86-64, qnnpack on ARM). One-line FoleyError where this torch has none, or lacks dynamic quantisation."""
    q = torch.backends.quantized
    engine = str(q.engine)
    if engine == "none" or engine not in [str(e) for e in q.supported_engines]:
        raise FoleyError(f"--quantize int8 is not supported here: this torch ({torch.__version__}) has no quantized "
                         "CPU engine (fbgemm/x86/qnnpack); generate without --quantize")
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic  # noqa: F401
    except ImportError:
        raise FoleyError(f"--quantize int8 is not supported here: this torch ({torch.__version__}) has no dynamic "
                         "quantisation (torch.ao.quantization.quantize_dynamic); generate without --quantize") from None
    return engine


def int8_targets(net: Generator) -> list[str]:
    """Names of the Linear layers `int8_copy` quantises: all of the network's except those of the time (and a
    student's guidance and step) embedders, whose few rows carry the sampling time into every token."""
    from torch import nn

    from foleyflow.nn.layers import TimestepEmbedder

    skip = {f"{name}.{sub}" for name, m in net.named_modules() if isinstance(m, TimestepEmbedder)
            for sub, _ in m.named_modules() if sub}
    return [name for name, m in net.named_modules() if isinstance(m, nn.Linear) and name not in skip]


def int8_copy(net: Generator) -> Generator:
    """An inference copy (float32, on the CPU) whose Linear layers (`int8_targets`: attention qkv, the text stream's
    output projection and SwiGLU, adaLN modulation, condition projections) are dynamically quantised with PyTorch's
    `quantize_dynamic`: int8 weights with one scale per output channel, activations quantised per call, int32
    accumulation, float32 output. Convolutions (ConvMLP, input projections, the final layer) stay float32 (dynamic
    quantisation has no Conv1d kernels). The original is left untouched. One-line FoleyError where this CPU/torch
    has no quantized engine (`int8_engine`)."""
    import warnings

    int8_engine()
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    out = copy.deepcopy(net).float().eval()
    for m in out.modules():   # the fused float32 gate/value weight would bypass the quantised w1 and w3
        if isinstance(m, (SwiGLU, ConvSwiGLU)):
            m.w13 = None
    spec = {name: per_channel_dynamic_qconfig for name in int8_targets(out)}
    with warnings.catch_warnings():   # torch >= 2.9 marks torch.ao.quantization deprecated (in favour of torchao)
        warnings.simplefilter("ignore")
        return quantize_dynamic(out, spec, dtype=torch.qint8, inplace=True)


@torch.inference_mode()
def generate(net: Generator, x0: torch.Tensor, visual: torch.Tensor, sync: torch.Tensor, text: torch.Tensor, *,
             cfg_scale: float = DEFAULTS.cfg_scale, num_steps: int = DEFAULTS.steps, sampler=euler,
             negative_text: torch.Tensor | None = None, batched: bool = True,
             duration_s: float | None = None) -> torch.Tensor:
    """Normalised latents (B, N, C) from noise x0 (B, N, C) and features (float32; cast to the network's dtype),
    for a window of `duration_s` (default: the network's current duration). Pass `bf16_copy(net)` as `net` for the
    bfloat16 path. Returns float32. (FoleyPipeline.sample is the full-featured path.)"""
    dtype = next(net.parameters()).dtype
    cond = net.prepare_conditions(visual.to(dtype), sync.to(dtype), text.to(dtype), duration_s=duration_s)
    uncond = None
    if cfg_scale != 1.0:
        neg = None if negative_text is None else negative_text.to(dtype)
        uncond = net.empty_conditions(x0.shape[0], text=neg, duration_s=duration_s)
    fn = guided_velocity(net, cond, uncond, cfg_scale, batched=batched)
    return sampler(fn, x0.float(), uniform_grid(num_steps))
