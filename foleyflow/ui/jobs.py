"""What one click of the web UI's Generate button does, without Gradio: a `UIRequest` in, files out.

`run_request` checks the request (one-line FoleyErrors, before any sampling), then for each of `variations` seeds
(seed, seed + 1, ...) calls `FoleyPipeline.generate` (video-to-audio, or text-to-audio of `duration_s` seconds without
a video), writes the stereo soundtrack as a .wav, muxes it into a copy of the video (.mp4, the picture copied, not
re-encoded) and draws the timeline PNG (foleyflow.ui.timeline). Progress over all variations goes to
`progress(fraction, text)`; `cancel()` is checked between sampler steps (True raises `foleyflow.pipeline.Cancelled`).
Every file is written atomically into a fresh folder under `out_dir`, and carries foleyflow's own-output tag.
"""
from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from foleyflow.errors import FoleyError

MAX_VARIATIONS = 8
COT_PARTS = ("semantic", "temporal", "aesthetic", "spatial")


@dataclass(frozen=True)
class UIRequest:
    """The form of the page. `video`: path of the uploaded file or None (text-to-audio: `duration_s` seconds);
    `cot`: the four chain-of-thought parts (empty strings = not given); None numbers = the bundle's defaults;
    `plan`: the foleyflow.cot Plan those parts were written from (the plan button's, unedited) or None: a generator
    that follows plans gets its time-aligned track too."""

    video: str | None = None
    prompt: str = ""
    negative: str = ""
    cot: Mapping[str, str] = field(default_factory=dict)
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int = 0
    duration_s: float | None = None
    variations: int = 1
    plan: object | None = None
    refine: bool = False          # map the prompt's unknown sound words onto the model's vocabulary (docs/cot.md)


@dataclass
class Variation:
    """One generated result: its seed, files (video None for text-to-audio) and the detected onsets (s)."""

    seed: int
    wav: Path
    video: Path | None
    timeline: Path
    onsets_s: np.ndarray
    notes: list[str]
    summary: str


def _as_int(value, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise FoleyError(f"{name} must be a whole number, got {value!r}") from None
    if not np.isfinite(f) or f != int(f):
        raise FoleyError(f"{name} must be a whole number, got {value!r}")
    return int(f)


def check_request(req: UIRequest, max_variations: int = MAX_VARIATIONS) -> tuple[dict, dict | None, int]:
    """(generation option values, the chain-of-thought parts or None, number of variations), or a one-line
    FoleyError for the first bad field."""
    from foleyflow.options import canonical
    from foleyflow.pipeline import check_duration

    seed = _as_int(req.seed, "seed")
    variations = _as_int(req.variations, "variations") or 1
    if not 1 <= variations <= max_variations:
        raise FoleyError(f"variations must be between 1 and {max_variations}, got {variations}")
    values = {"steps": _as_int(req.steps, "steps"), "cfg_scale": None if req.cfg_scale is None else float(req.cfg_scale),
              "seed": 0 if seed is None else seed, "negative": (req.negative or "").strip() or None}
    values = canonical({k: v for k, v in values.items() if v is not None})
    if values["seed"] + variations - 1 >= 2 ** 64:
        raise FoleyError("seed + variations - 1 must stay below 2^64")
    unknown = set(req.cot) - set(COT_PARTS)
    if unknown:
        raise FoleyError(f"unknown chain-of-thought parts {sorted(unknown)} (known: {', '.join(COT_PARTS)})")
    cot = {p: (req.cot.get(p) or "").strip() for p in COT_PARTS}
    cot = cot if any(cot.values()) else None
    if cot is not None and (req.prompt or "").strip():
        raise FoleyError("give a prompt or a chain of thought, not both (clear one of them)")
    if req.video is None:
        if req.duration_s is None:
            raise FoleyError("upload a video, or give a duration for text-to-audio")
        check_duration(float(req.duration_s))
        if not (req.prompt or "").strip() and cot is None:
            raise FoleyError("text-to-audio needs a prompt or a chain of thought (or upload a video)")
    return values, cot, variations


def _stem(video: str | None) -> str:
    if video is None:
        return "text"
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(video).stem).strip("_")[:40]
    return stem or "video"


@functools.lru_cache(maxsize=1)
def default_refiner():
    """The Refiner of the page's "refine" box (MiniLM, loaded on first use, kept)."""
    from foleyflow.cot.refine import Refiner

    return Refiner()


def run_request(pipe, req: UIRequest, out_dir: str | Path, *,
                progress: Callable[[float, str], None] | None = None,
                cancel: Callable[[], bool] | None = None, planner=None) -> list[Variation]:
    """Generates `req.variations` results with `pipe` (a FoleyPipeline) into a new folder under `out_dir`.
    planner: the AutoPlanner of a bundle that plans by default; a video request without chain-of-thought parts is
    then planned once for all variations (foleyflow.planning.default_plan, as `foleyflow generate VIDEO`)."""
    from foleyflow.media import mux_audio, probe, write_audio
    from foleyflow.outputs import own_tag
    from foleyflow.ui.timeline import write_timeline

    values, cot, variations = check_request(req)
    if req.video is not None:
        info = probe(req.video)
        if info.video is None:
            raise FoleyError(f"{Path(req.video).name}: has no video stream (for text-to-audio remove the video and "
                             "give a duration)")
    opts = pipe.options(**values)
    folder = Path(out_dir) / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True)
    stem = _stem(req.video)
    prompt = (req.prompt or "").strip() or None
    plan, planned = (req.plan if cot is not None else None), []
    if req.refine and prompt:
        if progress is not None:
            progress(0.0, "refining the prompt's sound words")
        refined = default_refiner().refine_text(prompt)       # as `foleyflow generate --refine`
        planned.append(f"prompt refined: {refined}" if refined != prompt else "prompt refined: no word changed")
        prompt = refined
    if planner is not None and req.video is not None and cot is None:
        from foleyflow.planning import default_plan

        if progress is not None:
            progress(0.0, "planning the video")
        cot, plan, note = default_plan(planner, req.video, prompt)
        planned += [note] if note else [f"planned by the model's planner: {len(plan.sources)} sources"
                                        + ("; the prompt is the text, the plan gives the timing" if prompt else "")]
    results = []
    for k in range(variations):
        seed = opts.seed + k

        def step(done: int, total: int, k=k) -> None:
            if progress is not None:
                progress((k + done / max(total, 1)) / variations,
                         f"variation {k + 1}/{variations} (seed {seed}): step {done}/{total}")

        if progress is not None:
            progress(k / variations, f"variation {k + 1}/{variations} (seed {seed}): preparing")
        result = pipe.generate(req.video, prompt=prompt, cot=cot,
                               duration_s=None if req.video is not None else float(req.duration_s),
                               options=opts.replace(seed=seed), progress=step, cancel=cancel,
                               plan=plan)
        name = f"{stem}.foley.seed{seed}"
        wav = write_audio(folder / f"{name}.wav", result.audio, result.sample_rate, tag=own_tag("ui"))
        video = None
        if req.video is not None:
            video = mux_audio(req.video, result.audio, result.sample_rate, folder / f"{name}.mp4",
                              tag=own_tag("ui")).path
        o = result.options
        summary = (f"seed {seed}: {result.duration_s:.2f} s at {result.sample_rate} Hz, {o.steps} {o.sampler} steps, "
                   f"guidance {o.cfg_scale:g}, {result.precision}")
        png, onsets = write_timeline(folder / f"{name}.timeline.png", result.audio, result.sample_rate,
                                     video=req.video, title=f"seed {seed}")
        results.append(Variation(seed, Path(wav), None if video is None else Path(video), png, onsets,
                                 planned + list(result.notes), summary))
    if progress is not None:
        progress(1.0, "done")
    return results
