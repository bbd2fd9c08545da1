"""Plan edits (issue 19's target): with the video given and the same seed, does the audio follow an edited plan where
it disagrees with the picture?

    nice -n 10 python benchmarks/plan_edits.py --bundle DIR --manifest /work/data/foleyworld/manifest.jsonl \
        --split test --clips 100 --events 100 --seed 0 --json plan_edits_test.json [--limit N] [--steps S]

Trials. From the first --clips clips of the split, every discrete onset of a sounding source is a candidate if the
ground truth marks it audible and it can be moved by 0.5 s (earlier or later) to a time at least 0.1 s inside the
clip, with no other onset of the plan (any source, starts of intervals included) within 0.1 s of its old or its new
time (so "an onset at the old time" can only be this event's). --events candidates are drawn without replacement by
--seed, each with a direction (drawn among those that fit). For each drawn event the clip's ground-truth plan
(foleyflow.cot.plan_from_truth) is generated once as it is and once per edit (foleyflow.cot's edits), every
generation with the clip's video, the plan's four-part text and (for a plan-following generator) its track, exactly
as `generate --cot plan.json` conditions (foleyflow.commands.generate.plan_condition), and the clip's seed
(generate-set's clip_seed of --seed and the clip id):
  move    move_event by +-0.5 s. Success: the edited audio has a detected onset within 50 ms of the new time and none
          within 50 ms of the old one. (`original_onset_at_old`: how often the unedited audio had one there.)
  pan     set_pan of the event's source to its mean planned pan + 1 (if <= 0) or - 1 (a change of 1.0). The source's
          pan is measured at its discrete onsets with `foleyflow evaluate`'s per-event pan (foleyflow.eval.spatial.
          event_pans; only events attributable in the clip's true audio, as evaluate scores them; without it, in
          the unedited audio) and averaged. Success: (edited - unedited measured pan) / (new - old planned pan) is at
          least 0.5. Not scored when none of the source's onsets is attributable, or the model is mono.
  remove  remove_source of the event's source. Its onsets are those with no other source's onset within 50 ms that
          the unedited audio has (a detected onset within 50 ms). Success: at least 80% of them have no detection
          within 50 ms in the edited audio. Not scored when the unedited audio has none of them.
Onsets are detected with `foleyflow evaluate`'s detector (foleyflow.eval.onsets.detect_onsets, default config).
Each kind's success rate is printed with a 95% bootstrap interval over its scored trials (2000 resamples, seeded);
the JSON (--json, written atomically) holds the settings, the rates and every trial. --limit N: only the first N of
the drawn events (the same events a full run starts with). Generations: one per clip with a drawn event, plus three
per event.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

MOVE_S = 0.5
CLEAR_S = 0.1           # no other onset of the plan this close to the old or new time
EDGE_S = 0.1            # a moved onset stays this far inside the clip
TOLERANCE_S = 0.05
PAN_CHANGE = 1.0
PAN_FOLLOWS = 0.5       # the measured pan must move by at least this share of the planned change
MIN_PAN_CHANGE = 0.25   # (a moving source's change at its attributable onsets can be smaller than PAN_CHANGE)
REMOVED_SHARE = 0.8
TARGET = 0.8            # the target success rate of every kind
KINDS = ("move", "pan", "remove")


@dataclass
class Candidate:
    """A discrete onset that can be moved: `index` in its plan source's events, `targets` its possible new times."""
    clip: str
    source: str
    index: int
    time_s: float
    on_screen: bool
    sound_class: str
    targets: tuple[float, ...]


@dataclass
class Trial:
    clip: str
    source: str
    kind: str
    success: bool | None          # None: not scored (`reason` says why)
    reason: str = ""
    details: dict = field(default_factory=dict)


def plan_onsets(plan, exclude: str | None = None) -> list[float]:
    """Every onset and interval start of the plan's sounding non-ambience sources (but `exclude`)."""
    from foleyflow.cot.render import kind_of

    out = []
    for s in plan.sources:
        if s.id == exclude or not s.events or kind_of(s) == "ambience":
            continue
        out += [e[0] if isinstance(e, tuple) else float(e) for e in s.events]
    return out


def candidates(clip: str, plan, truth_events) -> list[Candidate]:
    """The movable onsets of a clip's plan (rules in the module docstring); truth_events: its SoundEvents (for the
    audibility marks; plan source "source_<k>" holds the events of object k)."""
    from foleyflow.cot.render import kind_of
    from foleyflow.events import marked_audible

    inaudible = {(f"source_{e.source_id}", round(e.onset_s, 6)) for e in truth_events
                 if e.kind == "discrete" and not marked_audible(e)}
    everything = plan_onsets(plan)
    out = []
    for s in plan.sources:
        if not s.events or kind_of(s) == "ambience":
            continue
        for i, e in enumerate(s.events):
            if isinstance(e, tuple) or (s.id, round(float(e), 6)) in inaudible:
                continue
            t = float(e)
            others = list(everything)
            others.remove(t)
            if any(abs(o - t) < CLEAR_S for o in others):
                continue
            targets = tuple(t + d for d in (-MOVE_S, MOVE_S)
                            if EDGE_S <= t + d <= plan.duration_s - EDGE_S
                            and not any(abs(o - (t + d)) < CLEAR_S for o in others))
            if targets:
                out.append(Candidate(clip, s.id, i, t, s.on_screen, s.sound_class, targets))
    return out


def draw(cands: list[Candidate], n: int, seed: int) -> list[tuple[Candidate, float]]:
    """n candidates (all if fewer) drawn without replacement by `seed`, each with a new time drawn among its
    targets; in draw order."""
    rng = np.random.default_rng(seed)
    picked = rng.permutation(len(cands))[:n]
    return [(cands[i], cands[i].targets[int(rng.integers(len(cands[i].targets)))]) for i in picked]


def near(detected, t: float, tol: float = TOLERANCE_S) -> bool:
    return bool(np.any(np.abs(np.asarray(detected, dtype=float) - t) <= tol))


def move_success(detected, old_s: float, new_s: float, tol: float = TOLERANCE_S) -> bool:
    """An onset within tol of the new time and none within tol of the old one."""
    return near(detected, new_s, tol) and not near(detected, old_s, tol)


def pan_target(planned_pan: float) -> float:
    """The edited pan: PAN_CHANGE toward the side with room (-1..1 both ways)."""
    return planned_pan + PAN_CHANGE if planned_pan <= 0 else planned_pan - PAN_CHANGE


def source_pan(audio, sample_rate: int, events, indices: list[int], scored: list[bool]) -> float | None:
    """Mean measured pan (foleyflow.eval.spatial.event_pans) over the non-ambience events `indices` that `scored`
    flags; None when none is flagged. audio (2, num_samples)."""
    from foleyflow.eval.spatial import event_pans

    pans = event_pans(audio, sample_rate, events, scored=scored)
    vals = [pans[i].estimate for i in indices if scored[i] and pans[i].estimate is not None]
    return float(np.mean(vals)) if vals else None


def removed_share(detected_before, detected_after, onsets: list[float], others: list[float],
                  tol: float = TOLERANCE_S) -> tuple[int, int]:
    """(gone, counted): of the source's `onsets` with no `others` within tol that `detected_before` has, how many
    have no detection within tol in `detected_after`."""
    counted = [t for t in onsets if not near(others, t, tol) and near(detected_before, t, tol)]
    return sum(not near(detected_after, t, tol) for t in counted), len(counted)


def bootstrap_ci(successes: list[bool], seed: int = 0, resamples: int = 2000) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the success rate; None without trials."""
    x = np.asarray(successes, dtype=float)
    if x.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarize(trials: list[Trial], seed: int = 0) -> dict:
    out = {}
    for kind in KINDS:
        mine = [t for t in trials if t.kind == kind]
        ok = [bool(t.success) for t in mine if t.success is not None]
        out[kind] = {"trials": len(mine), "scored": len(ok), "successes": int(sum(ok)),
                     "rate": float(np.mean(ok)) if ok else None, "ci95": bootstrap_ci(ok, seed), "target": TARGET}
    moves = [t.details["original_onset_at_old"] for t in trials if t.kind == "move"]
    out["move"]["original_onset_at_old"] = float(np.mean(moves)) if moves else None
    return out


# ---------------------------------------------------------------------------------------------------- the run
@dataclass
class Clip:
    """One clip: its video, true audio (None: unknown), ground-truth plan and SoundEvents, and (made on first use)
    its unedited generation (audio, sample rate, detected onsets)."""
    id: str
    video: str | None
    audio: str | None
    plan: object
    events: list
    original: tuple | None = None

    @property
    def timed(self) -> list:
        return [e for e in self.events if e.kind != "ambience"]

    @classmethod
    def from_row(cls, row) -> "Clip":
        from foleyflow.cot import plan_from_truth
        from foleyflow.events import SoundEvent, read_truth

        truth = read_truth(row.truth)
        return cls(row.id, row.video, row.audio, plan_from_truth(truth),
                   [SoundEvent.from_json(d) for d in truth["events"]])


def trials_of_event(clip: Clip, cand: Candidate, new_s: float, generate, reference_flags) -> list[Trial]:
    """The three trials of one drawn event. generate(plan) -> (2 or 1, num_samples) audio, sample rate;
    reference_flags(sample_rate) -> per non-ambience event, attributable in the true audio (None: unknown)."""
    from foleyflow.cot import move_event, remove_source, set_pan
    from foleyflow.eval.onsets import detect_onsets

    if clip.original is None:
        audio, sr = generate(clip.plan)
        clip.original = (audio, sr, detect_onsets(audio, sr))
    audio0, sr, det0 = clip.original
    src = clip.plan.source(cand.source)
    timed = clip.timed
    base = {"source": cand.source, "class": cand.sound_class, "on_screen": cand.on_screen}
    out = []
    # move
    audio, _ = generate(move_event(clip.plan, cand.source, cand.index, new_s))
    det = detect_onsets(audio, sr)
    out.append(Trial(clip.id, cand.source, "move", move_success(det, cand.time_s, new_s), details={
        **base, "old_s": cand.time_s, "new_s": new_s, "original_onset_at_old": near(det0, cand.time_s),
        "onset_at_new": near(det, new_s), "onset_at_old": near(det, cand.time_s)}))
    # pan
    oid = int(cand.source.split("_", 1)[1])
    idx = [i for i, e in enumerate(timed) if e.source_id == oid and e.kind == "discrete"]
    old_pans = [src.pan_at(timed[i].onset_s) for i in idx]
    if audio0.shape[0] != 2:
        out.append(Trial(clip.id, cand.source, "pan", None, "mono model", base))
    elif any(p is None for p in old_pans):
        out.append(Trial(clip.id, cand.source, "pan", None, "the plan does not place the source", base))
    else:
        from foleyflow.eval.spatial import event_pans

        flags = reference_flags(sr)
        if flags is None:
            flags = [m.status == "ok" for m in event_pans(audio0, sr, clip.events)]
        new = pan_target(float(np.mean(old_pans)))
        audio, _ = generate(set_pan(clip.plan, cand.source, new))
        before = source_pan(audio0, sr, clip.events, idx, flags)
        after = source_pan(audio, sr, clip.events, idx, flags)
        scored = [k for k, i in enumerate(idx) if flags[i]]
        planned = new - float(np.mean([old_pans[k] for k in scored])) if scored else 0.0
        if before is None or after is None or not scored:
            out.append(Trial(clip.id, cand.source, "pan", None, "no attributable onset of the source", base))
        elif abs(planned) < MIN_PAN_CHANGE:
            out.append(Trial(clip.id, cand.source, "pan", None, "the planned change at its attributable onsets "
                             f"is under {MIN_PAN_CHANGE}", base))
        else:
            follows = (after - before) / planned
            out.append(Trial(clip.id, cand.source, "pan", follows >= PAN_FOLLOWS, details={
                **base, "planned_change": planned, "measured_before": before, "measured_after": after,
                "share": follows, "onsets_measured": len(scored)}))
    # remove
    audio, _ = generate(remove_source(clip.plan, cand.source))
    det = detect_onsets(audio, sr)
    gone, counted = removed_share(det0, det, src.onsets, plan_onsets(clip.plan, exclude=cand.source))
    if counted == 0:
        out.append(Trial(clip.id, cand.source, "remove", None, "the unedited audio has none of its onsets", base))
    else:
        out.append(Trial(clip.id, cand.source, "remove", gone / counted >= REMOVED_SHARE, details={
            **base, "onsets_counted": counted, "onsets_gone": gone, "share": gone / counted}))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True, help="model bundle (a plan-following generator: plan_dim > 0)")
    ap.add_argument("--manifest", required=True, help="FoleyWorld manifest (rows with video, truth and audio)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=100, help="the first N clips of the split")
    ap.add_argument("--events", type=int, default=100, help="events drawn (each gives a move, pan and remove trial)")
    ap.add_argument("--seed", type=int, default=0, help="draws the events and seeds every clip's generation")
    ap.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N drawn events")
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the bundle's)")
    ap.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the bundle's)")
    ap.add_argument("--plan-scale", type=float, default=None, metavar="W",
                    help="guidance weight of the plan track alone (default: the bundle's; see docs/default_model.md)")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", default="plan_edits.json", help="write the settings, rates and trials here")
    args = ap.parse_args(argv)

    import torch
    from tqdm import tqdm

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import cpu_summary

    from foleyflow.commands.generate import plan_condition
    from foleyflow.commands.generate_set import bundle_sha256, clip_seed
    from foleyflow.errors import FoleyError
    from foleyflow.fileio import atomic_write_text
    from foleyflow.manifest import read_manifest
    from foleyflow.pipeline import FoleyPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("clips", "events", "limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise FoleyError(f"--{name} must be at least 1")
    rows = [r for r in read_manifest(args.manifest) if r.split == args.split and r.video and r.truth][:args.clips]
    if not rows:
        raise FoleyError(f"{args.manifest}: no rows of split '{args.split}' with a video and a truth")
    clips = {r.id: Clip.from_row(r) for r in rows}
    cands = [c for r in rows for c in candidates(r.id, clips[r.id].plan, clips[r.id].events)]
    drawn = draw(cands, args.events, args.seed)[:args.limit]
    if not drawn:
        raise FoleyError(f"no movable onsets in the {len(rows)} clips (see the rules in {Path(__file__).name})")
    pipe = FoleyPipeline.from_bundle(args.bundle, precision=args.precision)
    if not pipe.follows_plan:
        print(f"warning: the bundle '{pipe.name}' has no plan pathway: the plans reach it only as text", file=sys.stderr)
    options = pipe.options(steps=args.steps, cfg_scale=args.cfg, plan_scale=args.plan_scale)
    refs: dict[tuple[str, int], list[bool] | None] = {}

    def run_event(clip: Clip, cand: Candidate, new_s: float) -> list[Trial]:
        seed = clip_seed(args.seed, clip.id)

        def generate(plan):
            cot, plan = plan_condition(plan)
            res = pipe.generate(clip.video, cot=cot, plan=plan, options=options.replace(seed=seed))
            return res.audio.astype(np.float64), res.sample_rate

        def reference_flags(sr: int):
            key = (clip.id, sr)
            if key not in refs:
                refs[key] = None
                if clip.audio and Path(clip.audio).is_file():
                    from foleyflow.eval.audio_io import read_stereo
                    from foleyflow.eval.spatial import event_pans

                    ref, _ = read_stereo(clip.audio, sr)
                    refs[key] = [m.status == "ok" for m in event_pans(ref, sr, clip.events)]
            return refs[key]

        return trials_of_event(clip, cand, new_s, generate, reference_flags)

    sha = bundle_sha256(args.bundle)
    t0 = time.perf_counter()
    trials: list[Trial] = []

    def save(done: int) -> dict:
        """The report so far (written after every event, so an interrupted run keeps what it measured)."""
        results = summarize(trials, args.seed)
        report = {"bundle": str(Path(args.bundle).resolve()), "bundle_sha256": sha, "follows_plan": pipe.follows_plan,
                  "manifest": str(Path(args.manifest).resolve()), "split": args.split, "clips": len(rows),
                  "candidates": len(cands), "events": len(drawn), "events_done": done, "seed": args.seed,
                  "options": {k: v for k, v in options.as_record().items() if k != "seed"},
                  "clip_seed": "generate-set's clip_seed(--seed, clip id)", "precision": pipe.precision,
                  "rules": {"move_s": MOVE_S, "clear_s": CLEAR_S, "edge_s": EDGE_S, "tolerance_s": TOLERANCE_S,
                            "pan_change": PAN_CHANGE, "pan_follows": PAN_FOLLOWS, "min_pan_change": MIN_PAN_CHANGE,
                            "removed_share": REMOVED_SHARE},
                  "results": results, "wall_s": round(time.perf_counter() - t0, 1), "cpu": cpu_summary(),
                  "trials": [asdict(t) for t in trials]}
        atomic_write_text(Path(args.json), json.dumps(report, indent=1))
        return results

    for k, (cand, new_s) in enumerate(tqdm(drawn, desc="plan edits", unit="event", file=sys.stderr, disable=None)):
        trials += run_event(clips[cand.clip], cand, new_s)
        results = save(k + 1)
    wall = time.perf_counter() - t0
    print(f"plan edits: {len(drawn)} events from {len(rows)} {args.split} clips ({len(cands)} movable onsets), "
          f"bundle {pipe.name}{'' if pipe.follows_plan else ' (text only: no plan pathway)'}, "
          f"{options.steps} steps, seed {args.seed}")
    for kind in KINDS:
        r = results[kind]
        rate = "-" if r["rate"] is None else f"{r['rate']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"
        met = "" if r["rate"] is None else ("met" if r["rate"] >= TARGET else "NOT met")
        print(f"  {kind:7s} {rate:>20s}  ({r['successes']}/{r['scored']} scored of {r['trials']})  target >= "
              f"{TARGET}  {met}")
    print(f"  the unedited audio had an onset at the moved event's time in "
          f"{results['move']['original_onset_at_old']:.0%} of the move trials")
    print(f"wrote {args.json} ({wall:.0f} s; {cpu_summary()})")
    return 0


if __name__ == "__main__":
    from foleyflow.errors import run_main

    run_main(main)
