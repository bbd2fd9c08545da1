"""The foleyflow generator: MMAudio's multimodal flow-matching transformer (Cheng et al., "MMAudio: Taming
Multimodal Joint Training for High-Quality Video-to-Audio Synthesis", CVPR 2025), as our own code.

    cfg = GeneratorConfig.preset("small_16k")
    net = Generator(cfg)                        # sequence lengths and RoPE for cfg.duration_s (module state)
    net.set_duration(5.0)                       # training: set lengths + RoPE tables for another duration
    cond = net.prepare_conditions(visual, sync, text)     # once per sample (current duration)
    cond = net.prepare_conditions(visual, sync, text, duration_s=5.0)   # inference: tables travel with the call
    uncond = net.empty_conditions(batch_size)             # learned empty visual/sync/plan + empty-text features
    v = net.velocity(x_t, t, cond)              # once per solver step; x_t (B, N, C) normalised latents

Shapes: visual (B, Nv, visual_dim) at `visual_fps`; sync (B, Ns, sync_dim) made of segments of 8 tokens; text
(B, Nt, text_dim) token features (any Nt; the empty text has `text_len` tokens, so pad prompts to it if the two
guidance branches are batched together); latents (B, N, latent_channels); t (B,) or a float in [0, 1], noise at
t = 0 and data at t = 1 (see foleyflow.flow); plan (B, N, plan_dim), optional, a time-aligned plan track on the
latent timeline (`foleyflow.cot.track`; frame f at f / latent_fps s).

Same network and parameter names as the reference (so released weights load, see `mmaudio_convert.py`), with these
departures, none of which changes the numbers:
- the frozen latent mean/std and empty-text features are persistent buffers rather than frozen parameters;
- the global-condition MLP over the pooled visual + text vectors is computed in `prepare_conditions` (it does
  not depend on t) instead of at every step;
- `PreparedConditions.cat` batches the conditional and unconditional branches into one call (foleyflow.flow.guidance).
Three config flags (`use_sync`, `use_text`, `aligned_rope`; all on by default) remove a pathway for the ablations
of MMAudio's paper; the checkpoint carries them, so an ablated model samples the way it was trained.

Our addition (PrismAudio's plan made time-aligned, issue 19): with `plan_dim > 0` a plan track (B, N, plan_dim) on
the latent timeline is projected (Conv1d k=3 -> SiLU -> Linear, the Linear zero-initialised so a new pathway starts
as a no-op) and ADDED to the frame-aligned sync condition (after the sync features are resized to the latent
length), so it reaches every block through the per-frame adaLN condition, as the sync features do. A learned empty
plan (`empty_plan_feat`, plan_dim wide, zero at init) stands in when the plan is absent or dropped and in the
unconditional guidance branch. `plan_dim = 0` (the default) builds none of it: released weights and older
checkpoints load with the same state dict keys and compute the same numbers.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.errors import ConfigError, FoleyError
from foleyflow.nn.blocks import FinalBlock, JointBlock, StreamBlock
from foleyflow.nn.layers import ChannelLastConv1d, ConvSwiGLU, SwiGLU, TimestepEmbedder
from foleyflow.nn.rope import aligned_rope_tables, rope_tables

SYNC_TOKENS_PER_SEGMENT = 8  # Synchformer: 8 feature frames per 16-frame segment (fixed by `sync_pos_emb`)
SYNC_LAYOUTS = ("segments", "timeline")


@dataclass
class GeneratorConfig:
    """Widths and depth of the generator, and the time grid of its inputs. Defaults are MMAudio small_16k."""

    latent_channels: int = 20
    visual_dim: int = 1024          # per-frame visual features (CLIP in MMAudio)
    sync_dim: int = 768             # synchronisation features (Synchformer in MMAudio)
    text_dim: int = 1024            # per-token text features
    text_len: int = 77              # tokens of the stored empty-text features
    hidden_dim: int = 448
    num_heads: int = 7
    num_joint_blocks: int = 4       # audio + visual + text joint attention (the last one is pre-only for visual/text)
    num_audio_blocks: int = 8       # audio-only blocks
    mlp_ratio: float = 4.0
    v2: bool = False                # v2: SiLU input projections and a D-frequency time embedding (max period 1)
    sample_rate: int = 16000        # audio rate of the codec
    samples_per_latent: int = 512   # audio samples per latent frame (31.25 latents/s at 16 kHz)
    visual_fps: float = 8.0
    sync_fps: float = 25.0
    sync_segment_frames: int = 16
    sync_segment_stride: int = 8
    duration_s: float = 8.0
    # ablations (MMAudio's section 4.4): train and sample with the same setting; the defaults are the full model
    use_sync: bool = True           # False: the sync stream always holds the learned empty sync feature
    use_text: bool = True           # False: the text stream always holds the empty-text features
    aligned_rope: bool = True       # False: visual token j sits at position j (plain RoPE) instead of j * N / Nv
    # How sync tokens reach the latent timeline. "segments" (MMAudio, what its released weights expect): the
    # flattened tokens of the overlapping segments, resized to the latent length by index, so token j of segment k
    # lands at about (8k + j) / 24 s although it shows frames 8k + 2j .. 8k + 2j + 1 (up to 0.27 s off, and every
    # moment appears twice, about 0.17 s apart). "timeline": tokens are placed at the frames they show (the two
    # overlapping segments' tokens of the same frames averaged), then interpolated to the latent frames' centre times.
    sync_layout: str = "segments"
    # few-step students (recipes/distill_flow.py): the guidance scale and the step size are inputs, so one sampling
    # step is one network call. Step sizes go down to 2^-distill_levels; a finer one means "instantaneous velocity".
    distilled: bool = False
    distill_levels: int = 7
    # a student of a teacher with a plan pathway folds the plan track's own guidance weight in (the teacher's target
    # was foleyflow.flow.guidance.plan_guidance with plan_scale = this); generation must use the same plan_scale
    distill_plan_scale: float = 1.0
    # the plan pathway (our addition): channels of the plan track (foleyflow.cot.track: 8 + source slots); 0 = none
    plan_dim: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    def check(self) -> None:
        if self.hidden_dim % self.num_heads or self.head_dim % 2:
            raise ConfigError(f"generator hidden_dim {self.hidden_dim} must split into {self.num_heads} heads "
                              "of even width")
        if self.num_joint_blocks < 1 or self.num_audio_blocks < 0:
            raise ConfigError("generator needs at least one joint block and a non-negative number of audio blocks")
        if self.duration_s <= 0:
            raise ConfigError(f"generator duration_s must be positive, got {self.duration_s}")
        if self.sync_layout not in SYNC_LAYOUTS:
            raise ConfigError(f"generator sync_layout must be one of {', '.join(SYNC_LAYOUTS)}, "
                              f"got {self.sync_layout!r}")
        if self.sync_layout == "timeline":
            fpt = self.sync_segment_frames / SYNC_TOKENS_PER_SEGMENT
            if fpt != int(fpt) or self.sync_segment_stride % int(fpt):
                raise ConfigError("sync_layout timeline needs whole frames per sync token and a segment stride "
                                  f"that is a multiple of them (segment {self.sync_segment_frames}, stride "
                                  f"{self.sync_segment_stride})")
        if self.plan_dim < 0:
            raise ConfigError(f"generator plan_dim must be 0 (no plan pathway) or positive, got {self.plan_dim}")

    @property
    def latent_fps(self) -> float:
        """Latent frames per second of the audio timeline (31.25 for 16 kHz and 512 samples per latent)."""
        return self.sample_rate / self.samples_per_latent

    def seq_lengths(self, duration_s: float | None = None) -> tuple[int, int, int]:
        """(latent, visual, sync) token counts for `duration_s` (default: the config's), as MMAudio computes them."""
        d = self.duration_s if duration_s is None else duration_s
        latent = math.ceil(d * self.sample_rate / self.samples_per_latent)
        visual = int(d * self.visual_fps)
        segments = int((d * self.sync_fps - self.sync_segment_frames) // self.sync_segment_stride) + 1
        if latent < 1 or visual < 1 or segments < 1:
            raise FoleyError(f"duration {d} s is too short for the generator (needs at least "
                             f"{self.sync_segment_frames / self.sync_fps:.2f} s)")
        return latent, visual, segments * SYNC_TOKENS_PER_SEGMENT

    @staticmethod
    def preset(name: str, **overrides) -> "GeneratorConfig":
        if name not in PRESETS:
            raise ConfigError(f"unknown generator preset '{name}' (known: {', '.join(PRESETS)})")
        return dataclasses.replace(PRESETS[name], **overrides)


_MMAUDIO_44K = dict(latent_channels=40, sample_rate=44100, samples_per_latent=1024)
PRESETS: dict[str, GeneratorConfig] = {
    "small_16k": GeneratorConfig(),
    "small_44k": GeneratorConfig(**_MMAUDIO_44K),
    "medium_44k": GeneratorConfig(hidden_dim=896, num_heads=14, **_MMAUDIO_44K),
    "large_44k": GeneratorConfig(hidden_dim=896, num_heads=14, num_joint_blocks=7, num_audio_blocks=14,
                                 **_MMAUDIO_44K),
    "large_44k_v2": GeneratorConfig(hidden_dim=896, num_heads=14, num_joint_blocks=7, num_audio_blocks=14, v2=True,
                                    **_MMAUDIO_44K),
    # Our CPU default for FoleyWorld: stereo latents (2 channels x 20 of the 16 kHz mel VAE), the default encoders'
    # widths (semantic 256-d at 8 fps, sync 192-d at 24 tokens/s) and MiniLM-L6 text tokens (384-d, the text
    # encoder's default budget of 256 tokens: a caption, or a chain of thought in 4 slots of 64).
    "tiny": GeneratorConfig(latent_channels=40, visual_dim=256, sync_dim=192, text_dim=384, text_len=256,
                            hidden_dim=128, num_heads=2, num_joint_blocks=2, num_audio_blocks=4, v2=True),
}


@dataclass
class Conditions:
    """The generator's condition features for one window (not yet projected): what `foleyflow.conditioning` makes
    for a clip, what a features cache stores, what `FoleyPipeline.conditions` returns and `FoleyPipeline.sample`
    takes. visual (B, Nv, visual_dim) at visual_fps, sync (B, Ns, sync_dim), text (B, Nt, text_dim), all float32,
    for a window of `duration_s` seconds. `plan` is an optional time-aligned plan track (B, N, plan_dim) on the
    latent timeline (`foleyflow.conditioning.plan_window_track`): carried through cat/repeat/to, read by a generator
    with a plan pathway (`plan_dim > 0`), ignored by one without."""

    visual: torch.Tensor
    sync: torch.Tensor
    text: torch.Tensor
    duration_s: float
    plan: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.visual.shape[0]

    def _map(self, fn) -> "Conditions":
        return Conditions(fn(self.visual), fn(self.sync), fn(self.text), self.duration_s,
                          None if self.plan is None else fn(self.plan))

    def cat(self, other: "Conditions") -> "Conditions":
        """Stacks two condition sets of the same window length along the batch."""
        if abs(self.duration_s - other.duration_s) > 1e-9:
            raise FoleyError(f"cannot batch conditions of {self.duration_s} s and {other.duration_s} s windows")
        if (self.plan is None) != (other.plan is None):
            raise FoleyError("cannot batch conditions with and without a plan track")
        for a, b in zip(self.fields(), other.fields()):
            if a.shape[1:] != b.shape[1:]:
                raise FoleyError(f"cannot batch condition features of shapes {tuple(a.shape)} and {tuple(b.shape)}")
        plan = None if self.plan is None else torch.cat([self.plan, other.plan])
        return Conditions(*(torch.cat([a, b]) for a, b in zip(self.fields(), other.fields())), self.duration_s, plan)

    def repeat(self, n: int) -> "Conditions":
        """Each item repeated n times along the batch (item-major: a group of n samples per clip)."""
        return self._map(lambda x: x.repeat_interleave(n, dim=0))

    def fields(self) -> tuple[torch.Tensor, ...]:
        return self.visual, self.sync, self.text

    def to(self, *args, **kwargs) -> "Conditions":
        return self._map(lambda x: x.to(*args, **kwargs))


@dataclass
class PreparedConditions:
    """Per-sample conditions projected by the network (`Generator.prepare_conditions`), prepared once and reused at
    every solver step. visual (B, Nv, D), text (B, Nt, D), sync (B, N, D) resized to the latent length N,
    global_cond (B, D); the plan track's projection (if the generator has a plan pathway) is already added to sync;
    `plan` is the raw track, kept for inspection. `latent_rope` / `clip_rope`: the RoPE tables of this window's sequence lengths (None: the
    module's, set by `set_duration`); with them the call needs no module state, so threads can share a network."""

    visual: torch.Tensor
    sync: torch.Tensor
    text: torch.Tensor
    global_cond: torch.Tensor
    latent_rope: torch.Tensor | None = None
    clip_rope: torch.Tensor | None = None
    plan: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.visual.shape[0]

    @property
    def latent_len(self) -> int:
        return self.sync.shape[1]

    def _with(self, fields, plan) -> "PreparedConditions":
        return PreparedConditions(*fields, latent_rope=self.latent_rope, clip_rope=self.clip_rope, plan=plan)

    def cat(self, other: "PreparedConditions") -> "PreparedConditions":
        """Stacks two condition sets along the batch (e.g. conditional then unconditional guidance branch)."""
        if self.text.shape[1] != other.text.shape[1]:
            raise FoleyError(f"cannot batch text conditions of {self.text.shape[1]} and {other.text.shape[1]} "
                             "tokens; pad the prompt features to the same length")
        plan = None if self.plan is None or other.plan is None else torch.cat([self.plan, other.plan])
        return self._with([torch.cat([a, b]) for a, b in zip(self.fields(), other.fields())], plan)

    def repeat(self, n: int) -> "PreparedConditions":
        """Each item repeated n times along the batch (item-major)."""
        plan = None if self.plan is None else self.plan.repeat_interleave(n, dim=0)
        return self._with([f.repeat_interleave(n, dim=0) for f in self.fields()], plan)

    def fields(self) -> tuple[torch.Tensor, ...]:
        return self.visual, self.sync, self.text, self.global_cond

    def to(self, *args, **kwargs) -> "PreparedConditions":
        """Fields moved/cast like Tensor.to; the RoPE tables follow to the new device and stay float32."""
        plan = None if self.plan is None else self.plan.to(*args, **kwargs)
        fields = [f.to(*args, **kwargs) for f in self.fields()]
        dev = fields[0].device
        ropes = [None if r is None else r.to(device=dev) for r in (self.latent_rope, self.clip_rope)]
        return PreparedConditions(*fields, latent_rope=ropes[0], clip_rope=ropes[1], plan=plan)


def sync_on_frames(tokens: torch.Tensor, stride_tokens: int) -> torch.Tensor:
    """(B, S, 8, D) tokens of S overlapping segments -> (B, P, D) on the video's token grid, P = stride_tokens *
    (S - 1) + 8: token j of segment k shows the same frames as position stride_tokens * k + j; positions shown by
    two segments get the mean of both tokens."""
    b, s, n, d = tokens.shape
    pos = (torch.arange(s, device=tokens.device)[:, None] * stride_tokens
           + torch.arange(n, device=tokens.device)[None]).flatten()                      # (S * 8,)
    length = stride_tokens * (s - 1) + n
    sums = tokens.new_zeros(b, length, d).index_add_(1, pos, tokens.reshape(b, s * n, d))
    counts = torch.bincount(pos, minlength=length).to(tokens.dtype)
    return sums / counts[None, :, None]


def resample_by_time(x: torch.Tensor, src_step_s: float, dst_len: int, dst_step_s: float) -> torch.Tensor:
    """(B, P, D) values at the centres of P cells of `src_step_s` seconds from t = 0 -> (B, dst_len, D) linearly
    interpolated at the centres of dst_len cells of `dst_step_s` seconds (held constant beyond the first and last
    centres)."""
    p = x.shape[1]
    centres = (torch.arange(dst_len, device=x.device, dtype=torch.float64) + 0.5) * dst_step_s
    u = (centres / src_step_s - 0.5).clamp(0, p - 1)
    lo = u.floor().long().clamp(max=p - 1)
    hi = (lo + 1).clamp(max=p - 1)
    w = (u - lo).to(x.dtype)[None, :, None]
    return x[:, lo] * (1 - w) + x[:, hi] * w


class Generator(nn.Module):
    """MMAudio's velocity network. See the module docstring for the call sequence and shapes."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        d, act = cfg.hidden_dim, (nn.SiLU if cfg.v2 else nn.SELU)
        self.audio_input_proj = nn.Sequential(ChannelLastConv1d(cfg.latent_channels, d, 7, padding=3), act(),
                                              ConvSwiGLU(d, 4 * d, kernel_size=7))
        sync_act = nn.SiLU() if cfg.v2 else nn.SELU()
        self.sync_input_proj = nn.Sequential(ChannelLastConv1d(cfg.sync_dim, d, 7, padding=3), sync_act,
                                             ConvSwiGLU(d, 4 * d, kernel_size=3))
        if cfg.v2:  # v2 adds a SiLU between the Linear and the SwiGLU of the visual and text projections
            self.clip_input_proj = nn.Sequential(nn.Linear(cfg.visual_dim, d), nn.SiLU(), ConvSwiGLU(d, 4 * d, 3))
            self.text_input_proj = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), SwiGLU(d, 4 * d))
        else:
            self.clip_input_proj = nn.Sequential(nn.Linear(cfg.visual_dim, d), ConvSwiGLU(d, 4 * d, 3))
            self.text_input_proj = nn.Sequential(nn.Linear(cfg.text_dim, d), SwiGLU(d, 4 * d))
        self.clip_cond_proj = nn.Linear(d, d)
        self.text_cond_proj = nn.Linear(d, d)
        self.global_cond_mlp = SwiGLU(d, 4 * d)
        self.sync_pos_emb = nn.Parameter(torch.zeros(1, 1, SYNC_TOKENS_PER_SEGMENT, cfg.sync_dim))
        self.final_layer = FinalBlock(d, cfg.latent_channels)
        if cfg.v2:
            self.t_embed = TimestepEmbedder(d, num_freqs=d, max_period=1)
        else:
            self.t_embed = TimestepEmbedder(d, num_freqs=256, max_period=10000)
        if cfg.distilled:  # inputs ~ 1..10 (guidance scale, log2 of the step count): highest frequency 10 rad/unit
            self.guidance_embed = TimestepEmbedder(d, num_freqs=256, max_period=1000)
            self.steps_embed = TimestepEmbedder(d, num_freqs=256, max_period=1000)
        n = cfg.num_joint_blocks
        self.joint_blocks = nn.ModuleList(JointBlock(d, cfg.num_heads, cfg.mlp_ratio, pre_only=(i == n - 1))
                                          for i in range(n))
        self.fused_blocks = nn.ModuleList(StreamBlock(d, cfg.num_heads, cfg.mlp_ratio, kernel_size=3)
                                          for _ in range(cfg.num_audio_blocks))
        # frozen statistics and features that come with a trained model (NaN mean/std until loaded or set)
        self.register_buffer("latent_mean", torch.full((1, 1, cfg.latent_channels), float("nan")))
        self.register_buffer("latent_std", torch.full((1, 1, cfg.latent_channels), float("nan")))
        self.register_buffer("empty_string_feat", torch.zeros(cfg.text_len, cfg.text_dim))
        # learned "no video" features used for classifier-free guidance and for clips without video
        self.empty_clip_feat = nn.Parameter(torch.zeros(1, cfg.visual_dim))
        self.empty_sync_feat = nn.Parameter(torch.zeros(1, cfg.sync_dim))
        if cfg.plan_dim > 0:  # the plan pathway (module docstring); nothing is built without it
            self.plan_input_proj = nn.Sequential(ChannelLastConv1d(cfg.plan_dim, d, 3, padding=1), nn.SiLU(),
                                                 nn.Linear(d, d))
            self.empty_plan_feat = nn.Parameter(torch.zeros(1, cfg.plan_dim))
        self.reset_parameters()
        self.set_duration(cfg.duration_s)

    # ----------------------------------------------------------------------------------------------- setup
    def reset_parameters(self) -> None:
        """MMAudio's initialisation: Xavier-uniform Linear weights with zero biases, N(0, 0.02) time-embedding MLP,
        zero adaLN modulation and output layers, zero sync position embedding and empty visual/sync features.
        (Convolutions keep PyTorch's default initialisation, as in the reference.)"""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        for m in self.zero_initialised():
            nn.init.zeros_(m)

    def zero_initialised(self) -> list[torch.Tensor]:
        """The tensors `reset_parameters` sets to zero (benchmarks and tests re-draw them to exercise every path)."""
        mods = [s.adaLN_modulation[-1] for b in self.joint_blocks for s in (b.latent_block, b.clip_block, b.text_block)]
        mods += [b.adaLN_modulation[-1] for b in self.fused_blocks]
        mods += [self.final_layer.adaLN_modulation[-1], self.final_layer.conv]
        if self.cfg.distilled:  # a new student starts as its teacher's conditional velocity
            mods += [self.guidance_embed.mlp[2], self.steps_embed.mlp[2]]
        if self.cfg.plan_dim > 0:
            mods.append(self.plan_input_proj[-1])
        out = [p for m in mods for p in (m.weight, m.bias)]
        out += [self.sync_pos_emb, self.empty_clip_feat, self.empty_sync_feat]
        return out + ([self.empty_plan_feat] if self.cfg.plan_dim > 0 else [])

    def set_duration(self, duration_s: float) -> None:
        """Sets the sequence lengths for `duration_s` seconds and rebuilds the RoPE tables."""
        self.set_seq_lengths(*self.cfg.seq_lengths(duration_s))

    def set_seq_lengths(self, latent_len: int, visual_len: int, sync_len: int) -> None:
        """Sets explicit token counts (sync_len a multiple of 8) and rebuilds the RoPE tables."""
        if sync_len % SYNC_TOKENS_PER_SEGMENT:
            raise FoleyError(f"sync_len must be a multiple of {SYNC_TOKENS_PER_SEGMENT}, got {sync_len}")
        self.latent_len, self.visual_len, self.sync_len = latent_len, visual_len, sync_len
        latent, clip = self._rope_tables(latent_len, visual_len, self.latent_mean.device)
        self.register_buffer("latent_rope", latent, persistent=False)
        self.register_buffer("clip_rope", clip, persistent=False)

    def _rope_tables(self, latent_len: int, visual_len: int, device: torch.device):
        """(latent, visual) RoPE tables on `device`; for a module on the meta device they are computed on the CPU and
        moved (arange and cos on meta run PyTorch's Python decompositions, whose first use imports sympy: ~1.5 s of
        a cold start that checks a checkpoint on meta)."""
        dev = torch.device("cpu") if device.type == "meta" else device
        hd = self.cfg.head_dim
        clip = (aligned_rope_tables(visual_len, hd, latent_len, device=dev) if self.cfg.aligned_rope
                else rope_tables(visual_len, hd, device=dev))
        return rope_tables(latent_len, hd, device=dev).to(device), clip.to(device)

    def rope_for(self, latent_len: int, visual_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(latent, visual) RoPE tables (float32) for these sequence lengths, computed once per length pair and kept
        in a dict (no module state changes: safe to call from several threads)."""
        device = self.latent_mean.device
        key = (latent_len, visual_len, str(device))
        cache = self.__dict__.setdefault("_rope_cache", {})
        tables = cache.get(key)
        if tables is None:
            tables = cache[key] = self._rope_tables(latent_len, visual_len, device)
        return tables

    def _apply(self, fn, recurse=True):
        # RoPE tables stay float32 on whatever device/dtype the module moves to
        super()._apply(fn, recurse)
        self.__dict__["_rope_cache"] = {}
        if hasattr(self, "latent_len"):
            self.set_seq_lengths(self.latent_len, self.visual_len, self.sync_len)
        return self

    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-channel latent statistics (C,) used by `normalize` / `unnormalize`."""
        self.latent_mean.copy_(mean.reshape(1, 1, -1))
        self.latent_std.copy_(std.reshape(1, 1, -1))

    def set_empty_text(self, features: torch.Tensor) -> None:
        """Text features (text_len, text_dim) of the empty prompt, used by the unconditional branch."""
        self.empty_string_feat.copy_(features)

    # -------------------------------------------------------------------------------------------- compute
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.latent_mean) / self.latent_std

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.latent_std + self.latent_mean

    def prepare_conditions(self, visual: torch.Tensor, sync: torch.Tensor, text: torch.Tensor, *,
                           duration_s: float | None = None, plan: torch.Tensor | None = None) -> PreparedConditions:
        """Projects the condition features once: visual (B, Nv, visual_dim), sync (B, Ns, sync_dim),
        text (B, Nt, text_dim) -> PreparedConditions. With `duration_s`, Nv and Ns must match that window and the
        result carries its RoPE tables (no module state is read or changed); without, they must match the current
        duration (`set_duration`). `plan` (B, N_latent, plan_dim): the plan track on the latent timeline; with a
        plan pathway it is projected and added to the frame-aligned sync condition (None: the learned empty plan);
        without one (plan_dim = 0) it is carried along unused."""
        if duration_s is None:
            latent_len, visual_len, sync_len = self.latent_len, self.visual_len, self.sync_len
            ropes = (None, None)
        else:
            latent_len, visual_len, sync_len = self.cfg.seq_lengths(duration_s)
            ropes = self.rope_for(latent_len, visual_len)
        self._check_input("visual", visual, visual_len, self.cfg.visual_dim)
        self._check_input("sync", sync, sync_len, self.cfg.sync_dim)
        self._check_input("text", text, None, self.cfg.text_dim)
        b = sync.shape[0]
        if not self.cfg.use_sync:  # ablation: no timing stream
            sync = self.empty_sync_feat[None].to(sync.dtype).expand_as(sync)
        if not self.cfg.use_text:  # ablation: no text
            text = self.empty_string_feat[None].to(text.dtype).expand(b, -1, -1)
        sync = sync.view(b, -1, SYNC_TOKENS_PER_SEGMENT, sync.shape[-1]) + self.sync_pos_emb  # (B, S, 8, D)
        visual = self.clip_input_proj(visual)
        text = self.text_input_proj(text)
        if self.cfg.sync_layout == "timeline":
            sync = self.sync_input_proj(sync_on_frames(sync, self._sync_stride_tokens()))
            sync = resample_by_time(sync, self._sync_token_s(), latent_len,
                                    self.cfg.samples_per_latent / self.cfg.sample_rate)
        else:
            sync = self.sync_input_proj(sync.flatten(1, 2))
            sync = F.interpolate(sync.transpose(1, 2), size=latent_len, mode="nearest-exact").transpose(1, 2)
        if self.cfg.plan_dim > 0:
            sync = sync + self.plan_condition(plan, b, latent_len, sync.dtype)
        pooled = self.clip_cond_proj(visual.mean(dim=1)) + self.text_cond_proj(text.mean(dim=1))
        return PreparedConditions(visual=visual, sync=sync, text=text, global_cond=self.global_cond_mlp(pooled),
                                  latent_rope=ropes[0], clip_rope=ropes[1], plan=plan)

    def _sync_stride_tokens(self) -> int:
        """Sync tokens between the starts of two consecutive segments (4 for 16-frame segments at stride 8)."""
        return int(self.cfg.sync_segment_stride // (self.cfg.sync_segment_frames // SYNC_TOKENS_PER_SEGMENT))

    def _sync_token_s(self) -> float:
        """Seconds of video one sync token shows (2 frames at 25 fps: 0.08 s)."""
        return self.cfg.sync_segment_frames / SYNC_TOKENS_PER_SEGMENT / self.cfg.sync_fps

    def plan_condition(self, plan: torch.Tensor | None, batch_size: int, latent_len: int,
                       dtype: torch.dtype) -> torch.Tensor:
        """The plan pathway: plan (B, latent_len, plan_dim) or None (the learned empty plan) -> (B, latent_len, D),
        added to the frame-aligned condition. The track must already be on the latent timeline (one-line error
        otherwise: it is made at the latent fps for the window, `foleyflow.conditioning.plan_window_track`)."""
        if plan is None:
            plan = self.empty_plan_feat[None].to(dtype).expand(batch_size, latent_len, -1)
        elif plan.dim() != 3 or plan.shape[0] != batch_size or plan.shape[1:] != (latent_len, self.cfg.plan_dim):
            raise FoleyError(f"plan track has shape {tuple(plan.shape)}, the generator expects ({batch_size}, "
                             f"{latent_len}, {self.cfg.plan_dim}) (latent frames of the window, plan channels)")
        return self.plan_input_proj(plan.to(dtype))

    def prepare(self, c: Conditions) -> PreparedConditions:
        """`prepare_conditions` of a Conditions (cast to the network's dtype and device)."""
        p = next(self.parameters())
        c = c.to(device=p.device, dtype=p.dtype)
        return self.prepare_conditions(c.visual, c.sync, c.text, duration_s=c.duration_s, plan=c.plan)

    def empty_conditions(self, batch_size: int, *, text: torch.Tensor | None = None,
                         duration_s: float | None = None, plan: torch.Tensor | None = None) -> PreparedConditions:
        """Unconditional branch: learned empty visual/sync features and the empty-text (or a negative prompt's,
        (B or 1, Nt, text_dim)) features, prepared and expanded to `batch_size`; for `duration_s` (default: the
        current duration). `plan` (batch_size, N_latent, plan_dim): keep this plan track in the branch (the plan
        track alone; None: the learned empty plan)."""
        if plan is not None:
            if plan.shape[0] != batch_size:
                raise FoleyError(f"the plan track has batch {plan.shape[0]}, expected {batch_size}")
            text = self.empty_string_feat[None] if text is None else text
            visual_len, sync_len = ((self.visual_len, self.sync_len) if duration_s is None
                                    else self.cfg.seq_lengths(duration_s)[1:])
            return self.prepare_conditions(
                self.empty_clip_feat[None].expand(batch_size, visual_len, -1),
                self.empty_sync_feat[None].expand(batch_size, sync_len, -1),
                text.expand(batch_size, -1, -1), duration_s=duration_s, plan=plan)
        visual_len, sync_len = ((self.visual_len, self.sync_len) if duration_s is None
                                else self.cfg.seq_lengths(duration_s)[1:])
        visual = self.empty_clip_feat[None].expand(1, visual_len, -1)
        sync = self.empty_sync_feat[None].expand(1, sync_len, -1)
        text = self.empty_string_feat[None] if text is None else text
        if text.shape[0] not in (1, batch_size):
            raise FoleyError(f"negative text features have batch {text.shape[0]}, expected 1 or {batch_size}")
        c = self.prepare_conditions(visual.expand(text.shape[0], -1, -1), sync.expand(text.shape[0], -1, -1), text,
                                    duration_s=duration_s)
        return c._with([f.expand(batch_size, *f.shape[1:]) for f in c.fields()], None)

    def velocity(self, latent: torch.Tensor, t: torch.Tensor | float, cond: PreparedConditions, *,
                 guidance: torch.Tensor | float | None = None,
                 steps: torch.Tensor | float | None = None) -> torch.Tensor:
        """Flow velocity at normalised latents `latent` (B, N, C) and time t ((B,), (1,) or float) -> (B, N, C).
        A distilled student (`cfg.distilled`) also takes the guidance scale it folds in and `steps`, the number of
        uniform steps the call is one of (its output is the mean velocity over a step of 1 / steps; 0 = the
        instantaneous velocity); other generators refuse both."""
        if cond.latent_rope is None:
            latent_rope, clip_rope, want = self.latent_rope, self.clip_rope, self.latent_len
        else:
            latent_rope, clip_rope, want = cond.latent_rope, cond.clip_rope, cond.latent_len
        if latent.shape[1] != want:
            raise FoleyError(f"latent length {latent.shape[1]} does not match the conditions' {want} "
                             "(call set_duration first, or prepare the conditions with duration_s)")
        b = latent.shape[0]
        t = torch.as_tensor(t, dtype=torch.float32, device=latent.device).reshape(-1).expand(b)
        x = self.audio_input_proj(latent)
        global_c = self.t_embed(t).unsqueeze(1) + cond.global_cond.unsqueeze(1)  # (B, 1, D)
        if self.cfg.distilled or guidance is not None or steps is not None:
            global_c = global_c + self._student_inputs(guidance, steps, b, latent.device).unsqueeze(1)
        frame_c = global_c + cond.sync                                          # (B, N, D)
        visual, text = cond.visual, cond.text
        for block in self.joint_blocks:
            x, visual, text = block(x, visual, text, global_c, frame_c, latent_rope, clip_rope)
        for block in self.fused_blocks:
            x = block(x, frame_c, latent_rope)
        return self.final_layer(x, global_c)  # global (not per-frame) condition, as the released weights expect

    def step_level(self, steps: torch.Tensor) -> torch.Tensor:
        """log2 of the step count (B,) as the student reads it; 0 steps (instantaneous) -> distill_levels + 1."""
        steps = steps.float()
        return torch.where(steps > 0, torch.log2(steps.clamp(min=1e-6)),
                           torch.full_like(steps, self.cfg.distill_levels + 1.0))

    def _student_inputs(self, guidance, steps, b: int, device) -> torch.Tensor:
        if not self.cfg.distilled:
            raise FoleyError("this generator is not a distilled student: it takes no guidance or steps input")
        if guidance is None or steps is None:
            raise FoleyError("a distilled generator needs the guidance scale and the step count of each call")
        w = torch.as_tensor(guidance, dtype=torch.float32, device=device).reshape(-1).expand(b)
        n = torch.as_tensor(steps, dtype=torch.float32, device=device).reshape(-1).expand(b)
        return self.guidance_embed(w) + self.steps_embed(self.step_level(n))

    def forward(self, latent: torch.Tensor, visual: torch.Tensor, sync: torch.Tensor, text: torch.Tensor,
                t: torch.Tensor | float, plan: torch.Tensor | None = None) -> torch.Tensor:
        """One-shot velocity (training): prepares the conditions and evaluates the network."""
        return self.velocity(latent, t, self.prepare_conditions(visual, sync, text, plan=plan))

    def _check_input(self, name: str, x: torch.Tensor, length: int | None, dim: int) -> None:
        if x.dim() != 3 or x.shape[-1] != dim or (length is not None and x.shape[1] != length):
            want = f"(B, {length if length is not None else 'N'}, {dim})"
            raise FoleyError(f"{name} features have shape {tuple(x.shape)}, the generator expects {want}")


def count_parameters(net: nn.Module) -> int:
    """Parameters plus persistent buffers (the reference counts its frozen mean/std/empty-text as parameters)."""
    return sum(v.numel() for v in net.state_dict().values())
