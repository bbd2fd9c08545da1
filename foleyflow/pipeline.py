"""FoleyPipeline: the one inference entry point (video and/or text -> stereo soundtrack), as public stages.

Follows MMAudio's inference (reference.md 1.4): frames at 8 fps (semantic) and 25 fps (sync) through the visual
encoders, text through the text encoder, Euler sampling with classifier-free guidance against the learned empty
conditions (or a negative prompt), then the codec: VAE decoder (or the mel-frame codec) and vocoder, per channel.

    pipe = FoleyPipeline.from_bundle("path/to/bundle")            # see foleyflow.bundle
    result = pipe.generate("clip.mp4", prompt="rain on a tin roof", steps=25, cfg_scale=4.5, seed=0)
    result.audio (2, round(duration_s * sample_rate)) float32, result.sample_rate, result.options
    (a converted MMAudio release, foleyflow.models.mmaudio_bundle, is mono: (1, ...), as MMAudio makes it)

Stages (what `generate` loops over the windows; each is public, so samplers, RL and benchmarks compose them):
    opts = pipe.options(steps=10, seed=3)                     # GenerationOptions: call > bundle > library defaults
    c = pipe.conditions("clip.mp4", Window(0, 8), prompt=...)  # Conditions (foleyflow.conditioning's path)
    fn = pipe.velocity_fn(c, opts)                            # guided velocity_fn(x, t) a sampler integrates
    x1 = pipe.sample(c, opts, generator, sampler=euler)        # normalised latents (B, N, C) (or the sampler's output)
    audio = pipe.decode(x1)                                   # (B, 2, num_samples) float32
A sampler is a pure function `sampler(velocity_fn, x0, ts, *, generator=None, callback=None)` (foleyflow.flow.samplers);
it may return a tuple whose first item is the latents (e.g. with its trajectory and per-step log-probabilities).
`progress(done, total)` is called after every sampler step and `cancel()` is checked between steps (True raises
`Cancelled`). No stage changes model state (the RoPE tables of each window travel with its conditions), so several
threads can generate with one pipeline at once.

Length. The output always spans the whole video: exactly round(duration_s * sample_rate) samples, where duration_s is
the video stream's duration. Text-only generation takes `duration_s` instead of a video.

Windows (departure: MMAudio generates one window and users ask for long videos, reference.md 6; see
foleyflow.conditioning.generation_windows). A video of D <= W seconds (W the generator's window) is generated in one
window of D seconds (at least 1 s); a longer one in windows of W seconds overlapping by at least `overlap_s`. Each
window is generated independently (its own noise, drawn in order from the seed) and neighbours are joined with an
equal-power crossfade (gains cos and sin of a quarter period) of `overlap_s`, centred in their overlap.

Precision: the generator samples in bfloat16 where the hardware supports it (CPU: native units, AVX512-BF16
or AMX; GPU: `torch.cuda.is_bf16_supported()`), otherwise float32; encoders and codec run in float32. The same seed,
inputs and machine give identical audio. `quantize="int8"` (CPU only; not with precision bf16) samples with a float32
copy of the generator whose Linear layers are dynamically quantised to int8 (foleyflow.models.generator_sampling.
int8_copy; convolutions stay float32); the unquantised generator is kept for everything else.

Post-processing: optional resampling (`sample_rate`, polyphase) and loudness normalisation (`loudness_lufs`,
ITU-R BS.1770 integrated loudness via pyloudnorm); if the result would clip, it is scaled down to a 0.99 peak (the
returned `notes` say so).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from foleyflow.conditioning import Window, generation_windows  # noqa: F401
from foleyflow.errors import FoleyError
from foleyflow.options import GenerationOptions, check_bundle_defaults, check_quantize, resolve_options

MAX_DURATION_S = 3600.0


class Cancelled(FoleyError):
    """Generation stopped because the caller's cancel check returned True (between sampler steps)."""


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 runs on native units: CUDA's check on GPUs; on x86 CPUs AVX512-BF16 or AMX, elsewhere
    oneDNN's check. oneDNN alone also says yes on AVX-512 CPUs without bf16 instructions (e.g. Xeons before Cooper
    Lake), where it emulates bf16: a 1024^3 matmul there ran at 33 against 123 GFLOP/s in fp32 (session 13)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    import platform

    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        return _x86_native_bf16()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _x86_native_bf16() -> bool:
    """AVX512-BF16 or AMX tiles, by torch's CPU probe (its private torch.cpu._is_* functions), else /proc/cpuinfo."""
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(p) for p in probes):
        try:
            return any(bool(p()) for p in probes)
        except RuntimeError:
            pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_student_options(opts: GenerationOptions, levels: int, plan_scale: float | None = None) -> None:
    """A distilled student (guidance and step size as inputs) samples with Euler on the uniform grid of its steps,
    guidance folded in: other samplers, guidance modes and negative prompts are one-line errors. `plan_scale`: the
    plan track's weight a student with a plan pathway folded in (GeneratorConfig.distill_plan_scale), when the
    conditions carry a plan track; options asking for another one are an error."""
    if plan_scale is not None and opts.plan_scale is not None and opts.plan_scale != plan_scale:
        raise FoleyError(f"this bundle's generator is a distilled few-step model that folds the plan track's weight "
                         f"{plan_scale:g} in: use --plan-scale {plan_scale:g} (or leave it unset), not "
                         f"{opts.plan_scale:g}")
    if opts.sampler != "euler":
        raise FoleyError(f"this bundle's generator is a distilled few-step model: it samples with euler, not "
                         f"{opts.sampler}")
    if opts.guidance != "cfg" or opts.negative:
        raise FoleyError("this bundle's generator is a distilled few-step model: guidance is folded into it "
                         "(--guidance cfg, no negative prompt)")
    if not 1 <= opts.steps <= 2 ** levels:
        raise FoleyError(f"this distilled model samples 1 to {2 ** levels} steps, not {opts.steps}")


def resolve_device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FoleyError("--device cuda: no CUDA GPU is available here (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise FoleyError(f"unsupported device {device!r} (use cpu or cuda)")
    return dev


def crossfade_join(segments: list[tuple[int, np.ndarray]], num_samples: int, fade_samples: int) -> np.ndarray:
    """Joins (start_sample, audio (C, n)) segments in start order into (C, num_samples): each segment is used from
    the middle of its overlap with the previous one, through an equal-power crossfade of `fade_samples`."""
    channels = segments[0][1].shape[0]
    out = np.zeros((channels, num_samples), np.float32)
    end = 0
    for k, (start, audio) in enumerate(segments):
        seg_end = min(start + audio.shape[1], num_samples)
        if k == 0 or end <= start:
            out[:, start:seg_end] = audio[:, :seg_end - start]
        else:
            overlap = end - start
            fade = max(0, min(fade_samples, overlap))
            fs = start + (overlap - fade) // 2
            fe = fs + fade
            x = (np.arange(fade) + 0.5) / max(fade, 1)
            a_gain, b_gain = np.cos(0.5 * np.pi * x), np.sin(0.5 * np.pi * x)
            out[:, fs:fe] = out[:, fs:fe] * a_gain + audio[:, fs - start:fe - start] * b_gain
            out[:, fe:seg_end] = audio[:, fe - start:seg_end - start]
        end = max(end, seg_end)
    return out


def latents_of(sample_output) -> torch.Tensor:
    """The latents of a sampler's output: the tensor itself, or the first item of a tuple/list."""
    return sample_output[0] if isinstance(sample_output, (tuple, list)) else sample_output


@dataclass
class GenerationResult:
    audio: np.ndarray                 # (2, num_samples) float32; (1, num_samples) for a mono model (MMAudio's)
    sample_rate: int
    duration_s: float
    windows: list[Window]
    precision: str                    # "bf16" or "fp32" (the generator's sampling precision)
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    options: GenerationOptions | None = None   # the resolved options the audio was generated with
    quantize: str | None = None       # "int8": the generator's Linear layers ran dynamically quantised


class FoleyPipeline:
    """Loaded models plus the text-encoder config of a bundle. Build with `from_bundle` (or directly from modules).
    `representation` ("vae" or "mel"), if given, must match the codec."""

    def __init__(self, generator, vae, vocoder, semantic, sync, text_cfg, *, device: str | torch.device = "cpu",
                 precision: str = "auto", text_encoder=None, trained: bool = True, name: str = "",
                 card: str = "", defaults: dict | None = None, representation: str | None = None,
                 quantize: str | None = None):
        from foleyflow.bundle import check_models_fit

        self.device = resolve_device(device)
        self.quantize = check_quantize(quantize, self.device.type, precision)
        self.representation = check_models_fit(generator, vae, vocoder, semantic, sync, text_cfg, representation)
        self.generator = generator.to(self.device).eval()
        self.vae, self.vocoder = vae.to(self.device).eval(), vocoder.to(self.device).eval()
        self.semantic, self.sync = semantic.to(self.device).eval(), sync.to(self.device).eval()
        from foleyflow.conditioning import FeatureMemo

        self.features = FeatureMemo(self.semantic, self.sync)   # shared with a planner on these encoders
        self.text_cfg, self._text_encoder = text_cfg, text_encoder
        self.trained, self.name, self.card = trained, name, card
        self.defaults = check_bundle_defaults(defaults or {}, f"bundle {name or '(unnamed)'}")
        self._negatives: dict[str, torch.Tensor] = {}
        if precision not in ("auto", "fp32", "bf16"):
            raise FoleyError(f"precision must be auto, fp32 or bf16, got {precision!r}")
        if precision == "bf16" and not bf16_supported(self.device):
            raise FoleyError(f"bf16 is not supported on this {self.device.type}; use precision fp32 or auto")
        self.precision = "bf16" if quantize is None and (
            precision == "bf16" or (precision == "auto" and bf16_supported(self.device))) else "fp32"
        if quantize == "int8":
            from foleyflow.models.generator_sampling import int8_copy
            self._sampling_net = int8_copy(self.generator)
        elif self.precision == "bf16":
            from foleyflow.models.generator_sampling import bf16_copy
            self._sampling_net = bf16_copy(self.generator)
        else:
            self._sampling_net = self.generator

    # ------------------------------------------------------------------------------------------------ loading
    @classmethod
    def from_bundle(cls, folder: str | Path, device: str | torch.device = "cpu", precision: str = "auto",
                    text_encoder=None, quantize: str | None = None) -> "FoleyPipeline":
        """Loads every model of a bundle folder (see foleyflow.bundle); a wrong or inconsistent bundle gives a
        one-line CheckpointError. `quantize`: None or "int8" (see the module docstring)."""
        from foleyflow.bundle import load_bundle_models

        dev = resolve_device(device)
        check_quantize(quantize, dev.type, precision)
        info, text_cfg, m = load_bundle_models(folder)
        if text_encoder is None and m.get("text_encoder") is not None:   # a bundle's own (MMAudio's CLIP text)
            text_encoder = m["text_encoder"].to(dev)
        return cls(m["generator"], m["vae"], m["vocoder"], m["semantic_encoder"], m["sync_encoder"], text_cfg,
                   device=dev, precision=precision, text_encoder=text_encoder, trained=info.trained, name=info.name,
                   card=info.card, defaults=info.defaults, representation=info.representation, quantize=quantize)

    def variant(self, *, precision: str = "auto", quantize: str | None = None) -> "FoleyPipeline":
        """Another pipeline over the same models (no copy of the encoders or the codec) sampling with another
        `precision` / `quantize` (benchmarks compare them in one process)."""
        return FoleyPipeline(self.generator, self.vae, self.vocoder, self.semantic, self.sync, self.text_cfg,
                             device=self.device, precision=precision, text_encoder=self._text_encoder,
                             trained=self.trained, name=self.name, card=self.card, defaults=self.defaults,
                             representation=self.representation, quantize=quantize)

    @property
    def window_s(self) -> float:
        return float(self.generator.cfg.duration_s)

    @property
    def sample_rate(self) -> int:
        return int(self.generator.cfg.sample_rate)

    @property
    def follows_plan(self) -> bool:
        """True when the generator has a plan pathway (plan_dim > 0): a plan given to `generate` / `conditions`
        reaches it as a time-aligned track; otherwise a plan only counts through its text."""
        return self.generator.cfg.plan_dim > 0

    @property
    def text_encoder(self):
        """MiniLM with the bundle's token budget, loaded on first use (only prompts, CoTs and negatives need it)."""
        if self._text_encoder is None:
            import dataclasses
            import json
            self._text_encoder = _load_text_encoder(json.dumps(dataclasses.asdict(self.text_cfg)), str(self.device))
        if self._text_encoder.cfg.output_len != self.text_cfg.output_len:
            raise FoleyError("the text encoder given to the pipeline has another token budget than the bundle")
        return self._text_encoder

    # ------------------------------------------------------------------------------------------------ stages
    def options(self, options: GenerationOptions | None = None, **values: Any) -> GenerationOptions:
        """The GenerationOptions of a call: `options` as given (with `values` replacing fields), or `values` (None =
        not given) over the bundle's defaults over the library's. Unknown names and bad values: one-line FoleyError."""
        if options is not None:
            if not isinstance(options, GenerationOptions):
                raise FoleyError(f"options must be a GenerationOptions, got {type(options).__name__}")
            return options.replace(**{k: v for k, v in values.items() if v is not None})
        return resolve_options(values, self.defaults)

    def text_features(self, prompt: str | None = None, cot: str | Mapping[str, str] | None = None) -> torch.Tensor:
        """(1, text_len, 384): a prompt, a chain of thought (FoleyWorld's text format or a mapping of its four parts),
        or neither (the generator's stored empty-text features)."""
        from foleyflow.conditioning import text_features

        return text_features(lambda: self.text_encoder, prompt, cot, empty=self.generator.empty_string_feat)

    def negative_features(self, negative: str | None) -> torch.Tensor | None:
        """(1, text_len, 384) features of a negative prompt (kept per text), or None."""
        if not negative:
            return None
        feats = self._negatives.get(negative)
        if feats is None:
            feats = self._negatives[negative] = self.text_encoder.encode([negative]).tokens.float()
        return feats

    def conditions(self, video: str | Path | None = None, window: Window | None = None, *, prompt: str | None = None,
                   cot: str | Mapping[str, str] | None = None, text: torch.Tensor | None = None,
                   duration_s: float | None = None, video_start_s: float | None = None,
                   timings: dict | None = None, plan=None):
        """Conditions (foleyflow.models.generator) of one window: the video's visual and sync features over `window`
        (start relative to the video's first frame; default: the whole video, which must fit one window) or, without
        a video, the generator's learned empty features for `window` (default: `duration_s`, at least 1 s); the text
        features `text` (1, Nt, 384) if given, else those of `prompt` / `cot` / the empty text. `plan` (a
        foleyflow.cot Plan, times in seconds of the clip): with a plan pathway (`follows_plan`) its track over the
        window (1, T_latent, plan_dim) becomes `Conditions.plan`; without one it is left out."""
        from foleyflow.conditioning import window_conditions

        if video is not None and (video_start_s is None or window is None):
            info = _probe_video(video)
            video_start_s = float(info.start_s) if video_start_s is None else video_start_s
            duration_s = float(info.duration_s)
        if window is None:
            if duration_s is None:
                raise FoleyError("conditions without a video need a window or a duration")
            windows = generation_windows(duration_s, self.window_s, 0.0)
            if len(windows) > 1:
                raise FoleyError(f"{duration_s:g} s do not fit one {self.window_s:g} s window; pass a window "
                                 "(see foleyflow.conditioning.generation_windows)")
            window = windows[0]
        if text is None:
            text = self.text_features(prompt, cot)
        g = self.generator
        c = window_conditions(g.cfg, self.semantic, self.sync, video, window, text,
                              video_start_s=video_start_s or 0.0, empty_visual=g.empty_clip_feat,
                              empty_sync=g.empty_sync_feat, timings=timings, memo=self.features)
        if plan is not None and self.follows_plan:
            from foleyflow.conditioning import plan_window_track

            c.plan = plan_window_track(g.cfg, plan, window.duration_s, window.start_s)[None]
        return c

    def velocity_fn(self, conditions, options: GenerationOptions | None = None
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The guided velocity_fn(x, t) -> dx/dt (x: (B, N, C) normalised latents on the pipeline's device, t a 0-d
        float32 tensor) for `conditions`: the sampling network (bf16 or fp32), guidance `options.guidance` of scale
        `options.cfg_scale` against the learned empty conditions (with `options.negative`'s text if given; for
        "multi", also the branches without text and without video; with `options.plan_scale` and a plan track, the
        branch with the plan track alone and, unless plan_scale is 1, the empty one; guidance "cfg" only: apg and
        multi guide the plan with everything else; a distilled student has the plan weight it was distilled with
        folded in). Built without gradients (inference mode)."""
        from foleyflow.models.generator import Conditions
        from foleyflow.models.generator_sampling import (combine_fn, guided_velocity, multi_guided_velocity,
                                                         student_velocity)

        opts = options or self.options()
        net = self._sampling_net
        p = next(net.parameters())
        c, b = conditions, conditions.batch_size
        with torch.inference_mode():
            cond = net.prepare(c.to(device=self.device))
            if net.cfg.distilled:
                folded = net.cfg.distill_plan_scale if c.plan is not None and net.cfg.plan_dim > 0 else None
                check_student_options(opts, net.cfg.distill_levels, folded)
                return student_velocity(net, cond, opts.cfg_scale, opts.steps)
            neg = self.negative_features(opts.negative)
            neg = None if neg is None else neg.to(device=self.device, dtype=p.dtype)
            if opts.guidance == "multi":
                text0 = (net.empty_string_feat[None] if neg is None else neg).expand(b, -1, -1)
                no_text = Conditions(c.visual, c.sync, text0, c.duration_s)
                # the plan belongs with the text (the user's description): kept without video, dropped without text
                no_video = Conditions(net.empty_clip_feat[None].expand(b, c.visual.shape[1], -1),
                                      net.empty_sync_feat[None].expand(b, c.sync.shape[1], -1), c.text, c.duration_s,
                                      c.plan)
                none = net.empty_conditions(b, text=neg, duration_s=c.duration_s)
                return multi_guided_velocity(net, cond, net.prepare(no_text), net.prepare(no_video), none,
                                             w_joint=opts.cfg_scale, w_text=opts.text_scale, w_video=opts.video_scale)
            if (opts.plan_scale is not None and opts.guidance == "cfg" and c.plan is not None
                    and net.cfg.plan_dim > 0):    # apg and multi guide the plan with the rest (plan_scale unused)
                from foleyflow.models.generator_sampling import plan_guided_velocity

                plan = c.plan.to(device=self.device)
                plan_only = net.empty_conditions(b, text=neg, duration_s=c.duration_s, plan=plan)
                none = (None if opts.plan_scale == 1.0
                        else net.empty_conditions(b, text=neg, duration_s=c.duration_s))
                return plan_guided_velocity(net, cond, plan_only, none, cfg_scale=opts.cfg_scale,
                                            plan_scale=opts.plan_scale)
            uncond = None
            if opts.cfg_scale != 1.0:
                uncond = net.empty_conditions(b, text=neg, duration_s=c.duration_s)
            return guided_velocity(net, cond, uncond, opts.cfg_scale, combine=combine_fn(opts.guidance, opts.apg_eta))

    def sample(self, conditions, options: GenerationOptions | None = None, generator: torch.Generator | None = None,
               *, sampler: Callable | None = None, x0: torch.Tensor | None = None,
               progress: Callable[[int, int], None] | None = None, cancel: Callable[[], bool] | None = None):
        """Runs `sampler` (default: `options.sampler` of foleyflow.flow.samplers) on `velocity_fn(conditions,
        options)` over `options.steps` uniform steps from noise x0 (default: (B, N, C) normal noise drawn from
        `generator`, default torch.Generator seeded with `options.seed`). Returns the sampler's output: normalised
        latents (B, N, C) float32 for the built-in samplers. `progress(step, steps)` after each step; `cancel()`
        checked before the first and after each step (True raises Cancelled)."""
        from foleyflow.flow.samplers import FIXED_GRID_SAMPLERS, uniform_grid

        opts = options or self.options()
        if isinstance(sampler, str):
            opts, sampler = opts.replace(sampler=sampler), None
        sampler = sampler or FIXED_GRID_SAMPLERS[opts.sampler]
        if x0 is None:
            gen = generator if generator is not None else torch.Generator().manual_seed(opts.seed)
            latent_len = self.generator.cfg.seq_lengths(conditions.duration_s)[0]
            x0 = torch.randn((conditions.batch_size, latent_len, self.generator.cfg.latent_channels), generator=gen)
        if cancel is not None and cancel():
            raise Cancelled("generation was cancelled")

        def callback(step: int, x: torch.Tensor) -> None:
            if progress is not None:
                progress(step, opts.steps)
            if cancel is not None and cancel():
                raise Cancelled("generation was cancelled")

        fn = self.velocity_fn(conditions, opts)
        with torch.inference_mode():
            return sampler(fn, x0.to(self.device).float(), uniform_grid(opts.steps), generator=generator,
                           callback=callback)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, N, C) -> waveforms (B, 2, N * samples_per_latent) float32 on the CPU ((B, 1, ...)
        for a mono model): unnormalise, then the codec's decoder (VAE, or unpacking of mel frames) and the vocoder,
        per channel."""
        from foleyflow.models.vae import decode_channels
        from foleyflow.models.vocoder import vocode_channels

        z = self.generator.unnormalize(latents.to(self.device).float()).transpose(1, 2)   # (B, C, N)
        return vocode_channels(self.vocoder, decode_channels(self.vae, z)).float().cpu()

    # ------------------------------------------------------------------------------------------------ generation
    def generate(self, video: str | Path | None = None, *, prompt: str | None = None,
                 cot: str | Mapping[str, str] | None = None, duration_s: float | None = None,
                 options: GenerationOptions | None = None, progress: Callable[[int, int], None] | None = None,
                 cancel: Callable[[], bool] | None = None, sampler: Callable | None = None,
                 edit_conditions: Callable | None = None, plan=None, **option_values: Any) -> GenerationResult:
        """Generates the stereo soundtrack of `video` (or, without a video, `duration_s` seconds from the text).
        Options: `options` and/or GenerationOptions fields as keywords (steps, cfg_scale (or cfg), seed, sampler,
        guidance, apg_eta, overlap_s, negative, sample_rate, loudness_lufs). `progress(done, total)` after every
        sampler step (total = steps x windows); `cancel()` between steps; `sampler`: a sampler's name (an option)
        or a sampler function that replaces the options' one;
        `edit_conditions(conditions, window) -> conditions` may change each window's conditions before sampling.
        `plan` (a foleyflow.cot Plan): its time-aligned track joins each window's conditions when the generator
        follows plans (`follows_plan`; otherwise a note warns that only its text, if given as `cot`, counts)."""
        if isinstance(sampler, str):               # a sampler's name is an option; a callable replaces it
            option_values["sampler"], sampler = sampler, None
        opts = self.options(options, **option_values)
        if video is None and duration_s is not None:
            check_duration(duration_s)
        timings = {k: 0.0 for k in ("decode", "encoders", "text", "sampling", "codec", "post")}
        video_start = 0.0
        if video is not None:
            info = _probe_video(video)
            duration_s, video_start = float(info.duration_s), float(info.start_s)
        elif duration_s is None:
            raise FoleyError("text-only generation needs a duration (--duration S)")
        t0 = time.perf_counter()
        text = self.text_features(prompt, cot)
        self.negative_features(opts.negative)
        timings["text"] += time.perf_counter() - t0

        sr = self.sample_rate
        windows = generation_windows(duration_s, self.window_s, opts.overlap_s)
        gen = torch.Generator().manual_seed(opts.seed)
        total = opts.steps * len(windows)
        segments = []
        for k, w in enumerate(windows):
            c = self.conditions(video, w, text=text, video_start_s=video_start, timings=timings, plan=plan)
            if edit_conditions is not None:
                c = edit_conditions(c, w)
            t0 = time.perf_counter()
            step_progress = None if progress is None else (lambda i, n, k=k: progress(k * opts.steps + i, total))
            x1 = latents_of(self.sample(c, opts, gen, sampler=sampler, progress=step_progress, cancel=cancel))
            timings["sampling"] += time.perf_counter() - t0
            _check_finite(x1, "sampling", video, w)  # safety: NaN/inf is an error where it is made
            t0 = time.perf_counter()
            wav = self.decode(x1)[0].numpy()
            timings["codec"] += time.perf_counter() - t0
            _check_finite(wav, "decode", video, w)
            take = min(wav.shape[1], round(w.duration_s * sr))
            segments.append((round(w.start_s * sr), wav[:, :take]))
        t0 = time.perf_counter()
        audio = crossfade_join(segments, round(duration_s * sr), round(opts.overlap_s * sr))
        audio, out_sr, notes = postprocess(audio, sr, duration_s, opts.sample_rate, opts.loudness_lufs)
        timings["post"] = time.perf_counter() - t0
        if plan is not None and not self.follows_plan:
            notes.append(f"warning: the bundle '{self.name}' has no plan pathway: the plan's timing and places reach "
                         "it only through the chain-of-thought text")
        if not np.any(audio):  # a silent video may rightly give silence: a warning, not an error
            notes.append("warning: the model produced all-zero audio (silence)")
        return GenerationResult(audio, out_sr, float(duration_s), windows, self.precision, notes, timings, opts,
                                quantize=self.quantize)


def _probe_video(video):
    """The video stream of `video` (one-line FoleyErrors: no video stream, too long)."""
    from foleyflow.media import probe

    info = probe(video)
    if info.video is None:
        raise FoleyError(f"{video}: has no video stream (for text-to-audio leave out VIDEO and give a duration)")
    if info.video.duration_s > MAX_DURATION_S:
        raise FoleyError(f"{video}: lasts {info.video.duration_s:.0f} s; at most {MAX_DURATION_S:.0f} s are "
                         "supported")
    return info.video


def _check_finite(values, stage: str, video, window: Window) -> None:
    """One-line FoleyError if a stage (sampling: latents; decode: the codec's waveform) made NaN or infinite values,
    naming the stage, the video (or text-only) and the window."""
    finite = torch.isfinite(values).all() if isinstance(values, torch.Tensor) else np.isfinite(values).all()
    if not bool(finite):
        what = f"video {video}" if video is not None else "text-only generation"
        raise FoleyError(f"{stage} produced NaN/infinite values for {what} (window at {window.start_s:g} s): the "
                         "model bundle's weights are broken")


@lru_cache(maxsize=2)
def _load_text_encoder(cfg_json: str, device: str):
    """MiniLM loads in seconds: pipelines of one process with the same token budget share one instance."""
    import json

    from foleyflow.conditioning import load_text_encoder
    from foleyflow.models.text_encoder import TextEncoderConfig
    return load_text_encoder(TextEncoderConfig(**json.loads(cfg_json)), device)


def check_duration(duration_s: float) -> None:
    """One-line FoleyError for a text-only duration out of range."""
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s)
            and 0.1 <= duration_s <= MAX_DURATION_S):
        raise FoleyError(f"duration must be between 0.1 and {MAX_DURATION_S:.0f} s, got {duration_s}")


def postprocess(audio: np.ndarray, sr: int, duration_s: float, sample_rate: int | None,
                loudness_lufs: float | None) -> tuple[np.ndarray, int, list[str]]:
    """Resample to `sample_rate` (length fixed to round(duration_s * rate)), normalise loudness, keep peaks <= 0.99."""
    from foleyflow.audio import resample

    notes = []
    out_sr = int(sample_rate or sr)
    if out_sr != sr:
        audio = resample(audio, sr, out_sr)
    n = round(duration_s * out_sr)
    audio = audio[:, :n] if audio.shape[1] >= n else np.pad(audio, ((0, 0), (0, n - audio.shape[1])))
    if loudness_lufs is not None:
        import pyloudnorm

        if n < round(0.4 * out_sr):
            notes.append("loudness not normalised: the audio is shorter than 0.4 s")
        else:
            # Measured on a copy scaled to a 0.5 peak: loudness scales with gain, and this keeps very quiet audio
            # (below BS.1770's -70 LUFS absolute gate, e.g. from an untrained model) measurable.
            peak_in = float(np.abs(audio).max()) if audio.size else 0.0
            measured = float("-inf")
            if peak_in > 0:
                pre = 0.5 / peak_in
                scaled = (audio.astype(np.float64) * pre).T
                measured = pyloudnorm.Meter(out_sr).integrated_loudness(scaled) - 20 * math.log10(pre)
            if not math.isfinite(measured):
                notes.append("loudness not normalised: the audio is silent")
            else:
                audio = audio * np.float32(10 ** ((loudness_lufs - measured) / 20))
                notes.append(f"loudness {measured:.1f} -> {loudness_lufs:.1f} LUFS")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.99:
        audio = audio * np.float32(0.99 / peak)
        notes.append(f"scaled down by {20 * math.log10(peak / 0.99):.1f} dB to avoid clipping")
    return np.ascontiguousarray(audio, dtype=np.float32), out_sr, notes
