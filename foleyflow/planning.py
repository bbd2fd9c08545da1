"""Video (+ an optional prompt) -> chain-of-thought plan with a bundle's planner (issue 19, item 2; docs/cot.md).

The bundle's own frozen encoders see the whole video as one window (semantic features at 8 fps, sync tokens at
24 tokens/s, decoded exactly as `foleyflow.conditioning` does for the generator), low-resolution column profiles at
8 fps give the position branch what is where (`position_from_video`), the planner network
(`foleyflow.models.planner`) turns them into per-class presence, onsets, activity, pan, material, room and loudness,
and `foleyflow.cot.planner.decode_plan` writes the validated plan. Off-screen sources come only from the prompt.

A bundle names its planner in bundle.json ("planner": "planner.safetensors"); the planner must have been trained on
features of the bundle's own encoders (its provenance records their sha256, checked here), or its inputs would mean
something else.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from foleyflow.errors import FoleyError

MIN_VIDEO_S = 0.64  # one sync segment (16 frames at 25 fps)


class PlannerError(FoleyError):
    """The bundle has no planner, the planner does not fit the bundle, or the video cannot be planned."""


@dataclass
class VideoPlanner:
    planner: torch.nn.Module
    semantic: torch.nn.Module
    sync: torch.nn.Module
    path: Path
    memo: object = None        # a foleyflow.conditioning.FeatureMemo of these encoders (a pipeline's), or None


def bundle_planner_path(bundle: str | Path) -> Path:
    """The planner checkpoint a bundle names, or a one-line PlannerError when it has none."""
    from foleyflow.bundle import read_bundle

    info = read_bundle(bundle)
    path = info.files.get("planner")
    if path is None:
        raise PlannerError(f"the bundle '{info.name}' ({info.folder}) has no planner; train one "
                           "(recipes/train_planner.py) and add it with recipes/assemble_bundle.py --planner, or "
                           "write the plan by hand (docs/cot.md)")
    return path


def plans_by_default(bundle: str | Path) -> bool:
    """Whether the bundle plans every video with its planner unless the user says otherwise (bundle.json
    "plan": "auto", written by recipes/assemble_bundle.py --plan-by-default; its generator follows plans)."""
    from foleyflow.bundle import is_mmaudio_release, read_bundle

    return not is_mmaudio_release(bundle) and read_bundle(bundle).plan == "auto"


def check_planner_fits(planner_path: str | Path, semantic_path: str | Path, sync_path: str | Path) -> None:
    """PlannerError unless the planner was trained on features of these encoder checkpoints (sha256 recorded in its
    provenance under producers; fp16 storage copies count as their originals)."""
    from foleyflow.checkpoint import PROVENANCE, checkpoint_identities, read_metadata

    prov = json.loads(read_metadata(planner_path).get(PROVENANCE, "{}") or "{}")
    producers = prov.get("producers", {}) if isinstance(prov, dict) else {}
    for role, path in (("semantic_encoder", semantic_path), ("sync_encoder", sync_path)):
        want = (producers.get(role) or {}).get("sha256")
        if want and want not in checkpoint_identities(path):
            raise PlannerError(f"planner {Path(planner_path).name} was trained on features of another "
                               f"{role.replace('_', ' ')} than {Path(path).name} (sha256 {want[:12]})")


def load_video_planner(bundle: str | Path, planner_path: str | Path | None = None, *,
                       pipeline=None) -> VideoPlanner:
    """The bundle's planner (or the checkpoint at planner_path) with the bundle's visual encoders, on the CPU.
    pipeline: a FoleyPipeline loaded from the same bundle, whose encoders (on its device) and feature memo the
    planner then shares instead of loading its own copies, so that planning and generating one video decode and
    encode it once (`foleyflow generate` with a bundle that plans)."""
    from foleyflow.bundle import read_bundle
    from foleyflow.models.planner import load_planner

    info = read_bundle(bundle)
    path = Path(planner_path) if planner_path is not None else bundle_planner_path(bundle)
    check_planner_fits(path, info.files["semantic_encoder"], info.files["sync_encoder"])
    planner = load_planner(path)
    if pipeline is not None:
        semantic, sync, memo = pipeline.semantic, pipeline.sync, pipeline.features
    else:
        from foleyflow.models.av_ssl import load_semantic_encoder, load_sync_encoder

        semantic = load_semantic_encoder(info.files["semantic_encoder"]).float()
        sync = load_sync_encoder(info.files["sync_encoder"]).float()
        memo = None
    c = planner.cfg
    if (semantic.out_dim, float(semantic.fps), sync.out_dim, float(sync.fps)) != (c.visual_dim, c.visual_fps,
                                                                                  c.sync_dim, c.sync_fps):
        raise PlannerError(f"planner {path.name} takes {c.visual_dim}-d features at {c.visual_fps:g} fps and "
                           f"{c.sync_dim}-d sync tokens at {c.sync_fps:g} fps; the bundle's encoders give "
                           f"{semantic.out_dim}-d at {semantic.fps:g} and {sync.out_dim}-d at {sync.fps:g}")
    return VideoPlanner(planner, semantic, sync, path, memo)


def position_spec(duration_s: float, fps: float = 8.0) -> tuple:
    """The frame spec (foleyflow.conditioning.window_frames) of the position profiles: int(duration_s * fps) frames,
    64 x 64 stretched, the last source frame at or before each time."""
    return fps, 64, "stretch", "last", int(duration_s * fps + 1e-6)


def appearance_spec(cfg, duration_s: float) -> tuple:
    """The frame spec (foleyflow.conditioning.window_frames) of a planner's RGB frames (cfg: its PlannerConfig with
    appearance_fps > 0): appearance_frames(duration_s) frames at appearance_fps, appearance_size square, stretched, the
    last source frame at or before each time."""
    return cfg.appearance_fps, cfg.appearance_size, "stretch", "last", cfg.appearance_frames(duration_s)


def position_from_frames(frames: torch.Tensor, columns: int, rows: bool = False) -> torch.Tensor:
    """(T, K, columns) profiles (foleyflow.models.planner.position_features) of (1, T, 3, 64, 64) frames."""
    from foleyflow.models.planner import position_features

    return position_features(frames[0], columns, rows)


def position_from_video(path: str | Path, start_s: float, duration_s: float, columns: int,
                        fps: float = 8.0, rows: bool = False) -> torch.Tensor:
    """(int(duration_s * fps), K, columns) profiles (foleyflow.models.planner.position_features; K = 4 with rows,
    else 2) of the window [start_s, start_s + duration_s) of a video (start on the stream's timeline), frames decoded
    at 64 x 64 (stretched) and padded by repeating the last one."""
    from foleyflow.conditioning import window_frames

    try:
        frames = window_frames(path, [position_spec(duration_s, fps)], start_s, duration_s)[0]
    except FoleyError as e:
        if "no video frames between" in str(e):    # window_frames' own error, not a damaged file's MediaError
            raise PlannerError(str(e)) from None
        raise
    return position_from_frames(frames, columns, rows)


def sync_token_count(duration_s: float, sync_fps: float, segment_frames: int = 16, stride: int = 8,
                     tokens_per_segment: int = 8) -> int:
    """Sync tokens of a window: ((int(d * fps) - 16) // 8 + 1) * 8 (the generator's rule)."""
    from foleyflow.conditioning import sync_frame_count

    return ((sync_frame_count(duration_s, sync_fps) - segment_frames) // stride + 1) * tokens_per_segment


@torch.inference_mode()
def plan_features(planner, visual: torch.Tensor, sync: torch.Tensor, position: torch.Tensor | None,
                  duration_s: float, prompt: str | None = None, appearance: torch.Tensor | None = None,
                  **thresholds):
    """A plan from one window's features: visual (1, Tv, Dv), sync (1, N, Ds), position (1, Tp, K, P) or None,
    appearance (1, Ta, 3, H, W) uint8 frames or None."""
    from foleyflow.cot.planner import decode_plan, probabilities

    c = planner.cfg
    out = planner(visual, sync, position if c.position_columns else None, appearance if c.appearance_fps else None)
    return decode_plan(probabilities(out), planner.cfg, duration_s, prompt, **thresholds)


def plan_video(video: str | Path, vp: VideoPlanner, prompt: str | None = None, timings: dict | None = None):
    """The plan of a whole video (one window of its duration) and an optional prompt. timings, if given, gets
    seconds under "decode", "encoders", "position" and "planner" (the planner network and decoding alone)."""
    from foleyflow.conditioning import encode_window_and_frames
    from foleyflow.media import probe

    info = probe(video).video
    if info is None:
        raise PlannerError(f"{video}: has no video stream")
    dur = float(info.duration_s)
    if dur < MIN_VIDEO_S:
        raise PlannerError(f"{video}: {dur:.2f} s is too short to plan (at least {MIN_VIDEO_S} s)")
    c = vp.planner.cfg
    timings = {} if timings is None else timings
    extra = [position_spec(dur, c.pos_fps)] if c.position_columns else []
    if c.appearance_fps:
        extra.append(appearance_spec(c, dur))
    visual, sync, frames = encode_window_and_frames(
        video, vp.semantic, vp.sync, info.start_s, dur, int(dur * c.visual_fps + 1e-6),
        sync_token_count(dur, c.sync_fps, c.segment_frames, c.segment_stride, c.tokens_per_segment), timings,
        vp.memo, extra)
    pos = None
    if c.position_columns:   # its frames come from the same decode as the encoders' (or their own when memoised)
        t0 = time.perf_counter()
        pos = position_from_frames(frames[0], c.position_columns, c.position_rows)[None]
        timings["position"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    app = frames[-1] if c.appearance_fps else None      # (1, Ta, 3, H, W) uint8, after the position frames
    plan = plan_features(vp.planner, visual, sync, pos, dur, prompt, app)
    timings["planner"] = time.perf_counter() - t0
    return plan


def plan_condition(plan, wording=None) -> tuple[dict[str, str], "object"]:
    """How a plan conditions generation: (its four-part text as the four CoT parts {semantic, temporal, aesthetic,
    spatial}, the plan itself, which the pipeline lays on the latent timeline as a time-aligned track when the
    generator follows plans). wording: a foleyflow.cot.Wording or a seed (None: the first alternatives)."""
    from foleyflow.conditioning import cot_parts
    from foleyflow.cot import four_part_text

    return cot_parts(four_part_text(plan, wording)), plan


def planned_cot(video: str | Path, vp: VideoPlanner, prompt: str | None = None,
                timings: dict | None = None) -> tuple[dict[str, str], "object"]:
    """plan_condition of the video's plan: what `foleyflow generate --cot auto`, the web UI's plan button and the
    REST service's cot=auto all condition on."""
    return plan_condition(plan_video(video, vp, prompt, timings))


class AutoPlanner:
    """A bundle's planner, loaded on first use and kept (a server's or page's). `AutoPlanner.of(bundle)` is None
    when the bundle names no planner; `plan(video)` -> (CoT parts, Plan) as `planned_cot`. Thread-safe; the models
    load in the thread of the first call (the one that runs torch in a server). pipeline: the FoleyPipeline of the
    same bundle (or a function returning it, for a service that loads it later), whose encoders and feature memo the
    planner shares (load_video_planner)."""

    def __init__(self, bundle: str | Path, pipeline=None):
        self.bundle = Path(bundle)
        self.path = bundle_planner_path(bundle)          # a bundle without one fails here, before any load
        self.pipeline = pipeline
        self._vp: VideoPlanner | None = None
        import threading

        self._lock = threading.Lock()

    @classmethod
    def of(cls, bundle: str | Path | None, pipeline=None) -> "AutoPlanner | None":
        if bundle is None:
            return None
        try:
            return cls(bundle, pipeline)
        except PlannerError:
            return None

    def load(self) -> VideoPlanner:
        with self._lock:
            if self._vp is None:
                pipe = self.pipeline() if callable(self.pipeline) else self.pipeline
                self._vp = load_video_planner(self.bundle, self.path, pipeline=pipe)
            return self._vp

    def plan(self, video: str | Path, prompt: str | None = None, timings: dict | None = None):
        return planned_cot(video, self.load(), prompt, timings)


def default_plan(planner: "AutoPlanner | VideoPlanner", video: str | Path, prompt: str | None = None):
    """What a bundle that plans by default (`plans_by_default`) does with a video when the user gave no chain of
    thought: (CoT parts or None, Plan or None, note or None). The planner plans the video; with a prompt the prompt
    stays the text (CoT None), the plan gives the time-aligned track and lists the off-screen sources the prompt
    names (without times, so they leave the track alone: foleyflow.cot.planner.prompt_sources); a video too short
    to plan (under MIN_VIDEO_S) is generated without a plan, with a note saying so (asking for a plan explicitly,
    `--cot auto`, is an error there instead). `foleyflow generate`, the web UI and the REST service all call this."""
    from foleyflow.media import probe

    info = probe(video).video
    if info is not None and float(info.duration_s) < MIN_VIDEO_S:
        return None, None, (f"the video lasts {float(info.duration_s):.2f} s, too short to plan (at least "
                            f"{MIN_VIDEO_S} s): generated without a plan")
    vp = planner.load() if isinstance(planner, AutoPlanner) else planner
    parts, plan = planned_cot(video, vp, prompt)   # the prompt adds the off-screen sources it names (untimed)
    return (None if prompt else parts), plan, None


def plan_with_llm(ep, prompt: str, *, video: str | Path | None = None, duration_s: float | None = None,
                  bundle: str | Path | None = None, planner: "AutoPlanner | None" = None) -> tuple["object", list[str]]:
    """(plan, notes) of `--llm-url`: the language model (`foleyflow.cot.llm`, endpoint `ep`) plans the prompt for the
    video's duration (or duration_s without a video); with a video and a bundle that has a planner, the planner's
    plan of the video stays authoritative for what is on screen (`foleyflow.cot.llm.combine`); with a bundle without
    one, the language model's plan is used alone and a note says so. planner: an AutoPlanner already made (the web
    UI's, loaded once) used instead of the bundle's."""
    from foleyflow.cot.llm import combine, plan_from_prompt

    if video is None:
        if duration_s is None:
            raise PlannerError("the language model needs the clip's duration (give a VIDEO or --duration)")
        return plan_from_prompt(ep, prompt, float(duration_s)), []
    from foleyflow.media import probe

    info = probe(video).video
    if info is None:
        raise PlannerError(f"{video}: has no video stream")
    llm_plan = plan_from_prompt(ep, prompt, float(info.duration_s))
    auto = planner if planner is not None else AutoPlanner.of(bundle) if bundle is not None else None
    if auto is None:
        return llm_plan, ["the bundle has no automatic planner: the language model's plan is used alone (its "
                          "on-screen times and places are the model's guesses, not seen in the video)"]
    _, video_plan = auto.plan(video)
    return combine(video_plan, llm_plan), []
