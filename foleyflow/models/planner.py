"""The automatic planner's network (issue 19, item 2): a video's frozen-encoder features -> what a chain-of-thought
plan needs (which sound classes are visible, when each discrete one is struck, where each is, how the room sounds).

No public system writes the plan from the video (PrismAudio and ThinkSound have users type it, or run a large
vision-language model offline); this is our own small model, trained on FoleyWorld `train` (recipes/train_planner.py).

Inputs (one window of D seconds, every tensor float32):
  visual   (B, Tv, Dv)  the bundle's semantic encoder features at 8 fps (Tv = int(D * 8)), no position in them;
  sync     (B, N, Ds)   the bundle's sync encoder tokens (overlapping 16-frame segments with stride 8 at 25 fps,
                        8 tokens of 2 frames each per segment: 24 tokens/s); the sync encoder's contact head was
                        trained on these tokens, so they carry contact timing and some pan;
  position (B, Tp, K, P) optional: low-resolution profiles of the frames (`position_features`) at `position_fps`
                        (default the visual rate, 8 fps; or the sync rate, 25 fps, every frame): per column, the
                        motion energy (|frame - previous frame|) and the difference from the clip's median frame
                        (what is not background), each averaged over rows (K = 2; P columns from left to right);
                        with `position_rows` also the same two per row, averaged over columns (K = 4; P rows from
                        top to bottom: height, so a falling object's approach to the floor). A small CNN over the
                        profiles is the only part that sees *where* things are in the picture;
  appearance (B, Ta, 3, H, W) uint8, optional (`appearance_fps` > 0): the RGB frames themselves at `appearance_fps`
                        (`appearance_size` square, stretched). The encoders' features are too coarse to tell a metal
                        box from a plastic one or a xylophone from a marimba (issue 19's class F1 0.71); a small CNN
                        (`AppearanceNet`) reads each frame at full resolution, its features are max-pooled over the
                        picture, then max- and mean-pooled over time into the clip-level heads (presence, material,
                        room, loudness). Training draws `appearance_train_frames` of the frames per step (all of them
                        at inference), so the CNN's cost stays a fraction of a step.
Everything is laid on the **slot timeline**: slot k is sync frames [k * tubelet, (k + 1) * tubelet), starting at
k * tubelet / fps seconds (0.08 s for the default encoder); the two overlapping segments' tokens of a slot are
averaged (`sync_slots`), visual and 8 fps position frames are repeated onto the slots they cover; 25 fps position
frames are grouped, the tubelet frames of a slot side by side (`position_on_slots`).

Outputs (`forward`, logits unless said): presence (B, C) clip-level "this class sounds on screen"; onset (B, S, Cd)
per discrete class per slot "a visible contact of this class starts here"; contact (B, S) the same for any class (the
class-agnostic contact head, for comparison); active (B, S, C) "this class sounds during the slot" (continuous
classes' intervals); pan (B, S, C) in -1..1 (tanh) where the class sounds; material (B, C, M); room (B, R);
loudness (B, L). C = FoleyWorld's 21 sound classes, Cd = its 16 discrete classes.
Decoding to a plan (peak picking, thresholds) lives in `foleyflow.cot.planner`; the decode thresholds chosen on
`val` are stored in this config so the checkpoint carries them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.events import DISCRETE_CLASSES, MATERIALS, ROOMS, SOUND_CLASSES

KIND = "planner"
LOUDNESS = ("soft", "moderate", "loud")


@dataclass
class PlannerConfig:
    visual_dim: int = 256
    sync_dim: int = 192
    position_columns: int = 32     # P; 0 = no position input
    position_fps: float = 0.0      # rate of the position profiles: 0 = visual_fps (8), or sync_fps (25: every frame)
    position_rows: bool = False    # also row profiles (K = 4 instead of 2)
    visual_fps: float = 8.0
    sync_fps: float = 25.0
    segment_frames: int = 16
    segment_stride: int = 8
    tubelet: int = 2
    width: int = 128
    layers: int = 4
    kernel: int = 5
    dropout: float = 0.1
    classes: tuple[str, ...] = SOUND_CLASSES
    discrete_classes: tuple[str, ...] = DISCRETE_CLASSES
    materials: tuple[str, ...] = MATERIALS
    rooms: tuple[str, ...] = ROOMS
    loudness: tuple[str, ...] = LOUDNESS
    # loss weights (losses are named planner/<head>)
    onset_pos_weight: float = 4.0
    weights: dict[str, float] = field(default_factory=dict)  # head -> loss weight (default 1)
    # decoding (foleyflow.cot.planner), chosen on `val` by the recipe
    presence_threshold: float = 0.5
    onset_threshold: float = 0.5
    active_threshold: float = 0.5
    onset_mode: str = "contact"   # "contact": onsets from the contact head, classed by the onset heads; "classes"
    contact_threshold: float = 0.5
    # appearance: RGB frames through a small CNN into the clip-level heads (0 = none; the module docstring)
    appearance_fps: float = 0.0
    appearance_size: int = 128        # frames decoded at this size (stretched); a multiple of 16
    appearance_width: int = 96        # the CNN's feature width; a multiple of 8
    appearance_train_frames: int = 8  # frames drawn per clip in a training step (0 = all)

    def __post_init__(self):
        from foleyflow.errors import ConfigError

        if self.segment_frames % self.tubelet or self.segment_stride % self.tubelet:
            raise ConfigError("planner: segment_frames and segment_stride must divide by tubelet")
        if not set(self.discrete_classes) <= set(self.classes):
            raise ConfigError("planner: discrete_classes must be a subset of classes")
        if self.onset_mode not in ("contact", "classes"):
            raise ConfigError(f"planner: onset_mode must be contact or classes, got {self.onset_mode!r}")
        if self.width < 1 or self.layers < 0 or self.kernel % 2 == 0:
            raise ConfigError("planner: width >= 1, layers >= 0 and an odd kernel")
        if self.position_fps not in (0.0, self.visual_fps, self.sync_fps):
            raise ConfigError(f"planner: position_fps must be 0, visual_fps ({self.visual_fps:g}) or sync_fps "
                              f"({self.sync_fps:g}), got {self.position_fps:g}")
        if self.appearance_fps < 0 or self.appearance_size < 16 or self.appearance_size % 16 \
                or self.appearance_width < 8 or self.appearance_width % 8 or self.appearance_train_frames < 0:
            raise ConfigError("planner: appearance_fps >= 0, appearance_size a multiple of 16, appearance_width a "
                              "multiple of 8 and appearance_train_frames >= 0")

    @property
    def pos_fps(self) -> float:
        """The rate of the position profiles."""
        return self.position_fps or self.visual_fps

    @property
    def pos_channels(self) -> int:
        return 4 if self.position_rows else 2

    @property
    def pos_frames_per_slot(self) -> int:
        """Position frames side by side in a slot: the tubelet at the sync rate, else 1 (the frame at its centre)."""
        return self.tubelet if self.pos_fps == self.sync_fps else 1

    def appearance_frames(self, duration_s: float) -> int:
        """RGB frames of a window of `duration_s` seconds (0 without the appearance input)."""
        return max(1, int(duration_s * self.appearance_fps + 1e-6)) if self.appearance_fps else 0

    @property
    def tokens_per_segment(self) -> int:
        return self.segment_frames // self.tubelet

    @property
    def slot_s(self) -> float:
        """Seconds per slot (0.08 s by default)."""
        return self.tubelet / self.sync_fps

    def num_slots(self, num_tokens: int) -> int:
        """Slots covered by N sync tokens (N = segments * tokens_per_segment)."""
        segs = num_tokens // self.tokens_per_segment
        return ((segs - 1) * self.segment_stride + self.segment_frames) // self.tubelet if segs else 0


def slot_index(cfg: PlannerConfig, num_tokens: int) -> torch.Tensor:
    """(N,) slot of each sync token, tokens ordered (segment, token in segment) as the sync encoder gives them."""
    tps = cfg.tokens_per_segment
    segs = num_tokens // tps
    return (torch.arange(segs)[:, None] * (cfg.segment_stride // cfg.tubelet) + torch.arange(tps)[None]).reshape(-1)


def sync_slots(cfg: PlannerConfig, sync: torch.Tensor) -> torch.Tensor:
    """sync (B, N, Ds) tokens -> (B, S, Ds): the mean of the tokens of each slot (overlapping segments average)."""
    b, n, d = sync.shape
    n = n - n % cfg.tokens_per_segment
    idx = slot_index(cfg, n).to(sync.device)
    s = cfg.num_slots(n)
    out = torch.zeros(b, s, d, dtype=sync.dtype, device=sync.device).index_add_(1, idx, sync[:, :n])
    count = torch.zeros(s, dtype=sync.dtype, device=sync.device).index_add_(0, idx, torch.ones_like(idx, dtype=sync.dtype))
    return out / count[None, :, None].clamp(min=1)


def frames_on_slots(cfg: PlannerConfig, x: torch.Tensor, num_slots: int, fps: float | None = None) -> torch.Tensor:
    """x (B, T, ...) at `fps` (default visual_fps) -> (B, S, ...): the frame shown at each slot's centre (clamped to
    the last)."""
    centre = (torch.arange(num_slots) + 0.5) * cfg.slot_s
    idx = (centre * (fps or cfg.visual_fps)).floor().long().clamp(max=x.shape[1] - 1).to(x.device)
    return x[:, idx]


def position_on_slots(cfg: PlannerConfig, x: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Per-frame position features x (B, Tp, F) at cfg.pos_fps -> (B, S, pos_frames_per_slot * F): at the sync rate
    slot k holds frames [k * tubelet, (k + 1) * tubelet) side by side (the last frame repeated past the end), else the
    frame at the slot's centre."""
    k = cfg.pos_frames_per_slot
    if k == 1:
        return frames_on_slots(cfg, x, num_slots, cfg.pos_fps)
    idx = torch.arange(num_slots * k).clamp(max=x.shape[1] - 1).to(x.device)
    return x[:, idx].reshape(x.shape[0], num_slots, k * x.shape[2])


@torch.no_grad()
def position_features(frames: torch.Tensor, columns: int = 32, rows: bool = False) -> torch.Tensor:
    """frames (T, 3, H, W) uint8 -> (T, K, columns) float32 profiles: column profiles of the motion energy
    (|frame - previous frame|, 0 for the first frame) and of the difference from the median frame over T, each averaged
    over channels and rows and over W / columns pixel columns, in units of 1/255 x 10 (so typical values are 0..1);
    with `rows` (K = 4) also the same two as row profiles (averaged over columns, H / columns pixel rows each, top to
    bottom)."""
    grey = frames.float().mean(1) / 255.0                            # (T, H, W)

    def profiles(x: torch.Tensor) -> list[torch.Tensor]:            # x (T, A, P): mean over A
        motion = torch.zeros_like(x)
        motion[1:] = (x[1:] - x[:-1]).abs()
        fg = (x - x.median(dim=0).values[None]).abs()
        return [motion.mean(1), fg.mean(1)]

    out = profiles(F.adaptive_avg_pool2d(grey[:, None], (grey.shape[1], columns))[:, 0])          # (T, H, P)
    if rows:
        out += profiles(F.adaptive_avg_pool2d(grey[:, None], (columns, grey.shape[2]))[:, 0].transpose(1, 2))
    return torch.stack(out, dim=1) * 10.0


class _Block(nn.Module):
    def __init__(self, width: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.mix = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, W)
        h = self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(self.mix(F.gelu(h)))


class AppearanceNet(nn.Module):
    """(B, T, 3, H, W) uint8 RGB frames -> (B, T, width) per-frame features: a 4 x 4 patch stem, then two stride-2
    stages (H / 16 x W / 16 cells, each seeing about 40 pixels), max-pooled over the picture (is there such a thing
    anywhere in it)."""

    def __init__(self, width: int):
        super().__init__()

        def stage(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, 2, 1), nn.GroupNorm(8, o), nn.GELU(), nn.Conv2d(o, o, 3, 1, 1), nn.GELU()]
        self.net = nn.Sequential(nn.Conv2d(3, 32, 4, 4), nn.GroupNorm(8, 32), nn.GELU(), nn.Conv2d(32, 48, 3, 1, 1),
                                 nn.GELU(), *stage(48, 64), *stage(64, width))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        x = frames.reshape(b * t, *frames.shape[2:]).float() / 127.5 - 1.0
        return self.net(x).amax((2, 3)).reshape(b, t, -1)


class Planner(nn.Module):
    """Frozen-encoder features of a window -> the planner's heads (see the module docstring)."""

    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        self.cfg = cfg
        w, c = cfg.width, len(cfg.classes)
        self.visual_in = nn.Sequential(nn.LayerNorm(cfg.visual_dim), nn.Linear(cfg.visual_dim, w))
        self.sync_in = nn.Sequential(nn.LayerNorm(cfg.sync_dim), nn.Linear(cfg.sync_dim, w))
        if cfg.position_columns:
            self.position_cnn = nn.Sequential(nn.Conv1d(cfg.pos_channels, 16, 5, padding=2), nn.GELU(),
                                              nn.Conv1d(16, 16, 5, padding=2), nn.GELU())
            self.position_in = nn.Linear(16 * cfg.position_columns * cfg.pos_frames_per_slot, w)
        self.blocks = nn.ModuleList(_Block(w, cfg.kernel, 2 ** (i % 3), cfg.dropout) for i in range(cfg.layers))
        self.norm = nn.LayerNorm(w)
        self.frame_out = nn.Linear(w, len(cfg.discrete_classes) + 1 + 2 * c)   # onset, contact, active, pan
        clip_in = 2 * w
        if cfg.appearance_fps:
            self.appearance = AppearanceNet(cfg.appearance_width)
            clip_in += 2 * cfg.appearance_width
        self.clip_out = nn.Linear(clip_in, c + c * len(cfg.materials) + len(cfg.rooms) + len(cfg.loudness))

    def forward(self, visual: torch.Tensor, sync: torch.Tensor, position: torch.Tensor | None = None,
                appearance: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """visual (B, Tv, Dv), sync (B, N, Ds), position (B, Tp, K, P) or None, appearance (B, Ta, 3, H, W) uint8 or
        None -> the heads' logits (module doc)."""
        cfg = self.cfg
        x = self.sync_in(sync_slots(cfg, sync.float()))
        s = x.shape[1]
        x = x + frames_on_slots(cfg, self.visual_in(visual.float()), s)
        if cfg.position_columns:
            if position is None:
                raise ValueError("this planner takes position features (position_columns > 0)")
            b, t = position.shape[:2]
            p = self.position_cnn(position.float().reshape(b * t, cfg.pos_channels, -1)).reshape(b, t, -1)
            x = x + self.position_in(position_on_slots(cfg, p, s))
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        c, cd, m = len(cfg.classes), len(cfg.discrete_classes), len(cfg.materials)
        fr = self.frame_out(x)
        pooled = [x.mean(1), x.amax(1)]
        if cfg.appearance_fps:
            if appearance is None:
                raise ValueError("this planner takes RGB frames (appearance_fps > 0)")
            a = self.appearance(appearance)
            pooled += [a.amax(1), a.mean(1)]
        cl = self.clip_out(torch.cat(pooled, dim=-1))
        r = len(cfg.rooms)
        return {"onset": fr[..., :cd], "contact": fr[..., cd], "active": fr[..., cd + 1:cd + 1 + c],
                "pan": torch.tanh(fr[..., cd + 1 + c:]), "presence": cl[:, :c],
                "material": cl[:, c:c + c * m].reshape(-1, c, m), "room": cl[:, c + c * m:c + c * m + r],
                "loudness": cl[:, c + c * m + r:]}

    def loss(self, out: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named losses and their weighted sum "planner/total". target (foleyflow.cot.planner.planner_targets,
        stacked): onset (B, S, Cd), contact (B, S), active (B, S, C), pan (B, S, C), pan_mask (B, S, C), presence
        (B, C), material (B, C) index or -1, room (B,), loudness (B,) indices."""
        cfg = self.cfg
        pw = torch.tensor(cfg.onset_pos_weight)
        bce = F.binary_cross_entropy_with_logits
        losses = {
            "planner/onset": bce(out["onset"], target["onset"], pos_weight=pw),
            "planner/contact": bce(out["contact"], target["contact"], pos_weight=pw),
            "planner/active": bce(out["active"], target["active"]),
            "planner/presence": bce(out["presence"], target["presence"]),
            "planner/room": F.cross_entropy(out["room"], target["room"]),
            "planner/loudness": F.cross_entropy(out["loudness"], target["loudness"]),
        }
        mask = target["pan_mask"]
        losses["planner/pan"] = ((out["pan"] - target["pan"]).abs() * mask).sum() / mask.sum().clamp(min=1)
        mat = target["material"].reshape(-1)
        logits = out["material"].reshape(mat.numel(), -1)
        losses["planner/material"] = (F.cross_entropy(logits[mat >= 0], mat[mat >= 0]) if (mat >= 0).any()
                                      else logits.sum() * 0)
        losses["planner/total"] = sum(cfg.weights.get(k.split("/")[1], 1.0) * v for k, v in list(losses.items()))
        return losses


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_planner(path: str | Path, model: Planner, provenance: dict | None = None) -> Path:
    """A self-describing checkpoint of kind "planner" (weights, config with the decode thresholds, provenance)."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import config_to_json

    return save_checkpoint(path, model.state_dict(), kind=KIND, config=config_to_json(model.cfg),
                           provenance=provenance)


def load_planner(path: str | Path) -> Planner:
    """The planner of a "planner" checkpoint, in eval mode (one-line CheckpointError for anything else)."""
    from foleyflow.checkpoint import build_checked, checkpoint_config, load_checkpoint, load_into
    from foleyflow.config import from_dict
    from foleyflow.errors import CheckpointError, ConfigError

    tensors, meta = load_checkpoint(path, kind=KIND)
    try:
        cfg = from_dict(PlannerConfig, checkpoint_config(meta))
    except ConfigError as e:
        raise CheckpointError(f"{path}: its planner config is not valid ({e})") from None
    model = build_checked(lambda: Planner(cfg), tensors, what=f"planner ({path})")
    load_into(model, tensors, what="planner")
    return model.eval()
