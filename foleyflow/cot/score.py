"""A plan scored against FoleyWorld's ground truth (issue 19's planner targets): what the video shows, and whether the
plan says it. Used to choose the planner's decode thresholds on `val` (recipes/train_planner.py) and to report its
accuracy (benchmarks/planner_accuracy.py). Independent of the evaluation suite (foleyflow/eval), which judges
generated audio; this judges a plan.

Reference (per clip, from the truth's events; only what the video can show: `on_screen` events the mix does not mark
inaudible): visible discrete onsets (time, class, pan); visible sounding classes (discrete, continuous and ambience);
per class the materials of its visible bodies (impact and rolling classes); the room.
Counts (summed over clips, so the F1s are micro-averaged):
  onset     one-to-one matching of the plan's on-screen discrete onsets (any class) to the reference onsets within
            +-tolerance_s, closest pairs first; also `onset_class` where a pair must share the class;
  classes   the plan's on-screen sounding classes against the reference classes;
  material  per matched class that has a reference material: the plan's source material is one of them;
  room      the plan's room equals the truth's;
  pan       |plan pan - truth pan| at each reference event time of a matched class (discrete: at the onset;
            continuous: at its pan-track points, or its onset) where the plan places the source.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from foleyflow.events import DISCRETE_CLASSES

TOLERANCE_S = 0.05


def visible_events(truth: dict) -> list[dict]:
    """The truth's events the video shows and the mix lets one hear."""
    return [e for e in truth["events"] if e.get("on_screen", True)
            and (e.get("params") or {}).get("audible", True) is not False]


def match_times(ref: list[float], est: list[float], tolerance_s: float = TOLERANCE_S) -> list[tuple[int, int]]:
    """One-to-one pairs (i, j) of reference and estimated times within tolerance_s, closest pairs first."""
    cand = sorted((abs(r - e), i, j) for i, r in enumerate(ref) for j, e in enumerate(est) if abs(r - e) <= tolerance_s)
    used_r, used_e, pairs = set(), set(), []
    for _, i, j in cand:
        if i not in used_r and j not in used_e:
            used_r.add(i)
            used_e.add(j)
            pairs.append((i, j))
    return pairs


@dataclass
class PlanScore:
    """Counts over clips; `figures()` turns them into F1s, accuracies and means."""
    counts: dict = field(default_factory=lambda: {k: [0, 0, 0] for k in ("onset", "onset_class", "classes")})
    material: list = field(default_factory=list)
    material_rolling: list = field(default_factory=list)
    room: list = field(default_factory=list)
    pan: list = field(default_factory=list)
    clips: int = 0

    def add_onsets(self, key: str, n_ref: int, n_est: int, n_match: int) -> None:
        c = self.counts.setdefault(key, [0, 0, 0])
        c[0] += n_match
        c[1] += n_est - n_match
        c[2] += n_ref - n_match

    def figures(self) -> dict:
        out = {"clips": self.clips}
        for k, (tp, fp, fn) in self.counts.items():
            p = tp / (tp + fp) if tp + fp else 0.0
            r = tp / (tp + fn) if tp + fn else 0.0
            out[f"{k}_f1"] = 2 * p * r / (p + r) if p + r else 0.0
            out[f"{k}_precision"], out[f"{k}_recall"] = p, r
        out["material_accuracy"] = float(np.mean(self.material)) if self.material else None
        out["material_accuracy_rolling"] = float(np.mean(self.material_rolling)) if self.material_rolling else None
        out["room_accuracy"] = float(np.mean(self.room)) if self.room else None
        out["pan_error"] = float(np.mean(self.pan)) if self.pan else None
        out["pan_samples"] = len(self.pan)
        return out


def _truth_pan(e: dict) -> list[tuple[float, float]]:
    if e.get("pan_track"):
        return [(float(t), float(p)) for t, p in e["pan_track"]]
    return [(float(e["onset_s"]), float(e["pan"]))]


def score_plan(plan, truth: dict, score: PlanScore | None = None, tolerance_s: float = TOLERANCE_S,
               est_onsets: list[float] | None = None) -> PlanScore:
    """Adds one clip's plan (foleyflow.cot.Plan) against its truth to `score` (a new one if None); returns it.
    est_onsets: score these class-agnostic onsets instead of the plan's (e.g. a contact head's)."""
    score = score or PlanScore()
    score.clips += 1
    vis = visible_events(truth)
    ref = [e for e in vis if e["kind"] == "discrete" and e["sound_class"] in DISCRETE_CLASSES]
    ref_t = [float(e["onset_s"]) for e in ref]
    on = [s for s in plan.sources if s.on_screen]
    est = [(t, s.sound_class) for s in on for t in s.onsets]
    if est_onsets is not None:
        score.add_onsets("onset", len(ref_t), len(est_onsets), len(match_times(ref_t, list(est_onsets), tolerance_s)))
        return score
    score.add_onsets("onset", len(ref_t), len(est), len(match_times(ref_t, [t for t, _ in est], tolerance_s)))
    n = 0
    for cls in {e["sound_class"] for e in ref} | {c for _, c in est}:
        r = [t for t, e in zip(ref_t, ref) if e["sound_class"] == cls]
        n += len(match_times(r, [t for t, c in est if c == cls], tolerance_s))
    score.add_onsets("onset_class", len(ref_t), len(est), n)
    ref_cls = {e["sound_class"] for e in vis}
    est_cls = {s.sound_class for s in on if s.sounds}
    score.add_onsets("classes", len(ref_cls), len(est_cls), len(ref_cls & est_cls))
    objects = {o["id"]: o for o in truth.get("objects", [])}
    by_cls = {s.sound_class: s for s in on}
    for cls in ref_cls & est_cls:
        mats = {(objects.get(e.get("source_id")) or {}).get("material") for e in vis if e["sound_class"] == cls}
        mats.discard(None)
        if mats and (cls.startswith("impact_") or cls == "rolling"):
            ok = by_cls[cls].material in mats
            score.material.append(ok)
            if cls == "rolling":
                score.material_rolling.append(ok)
        for e in vis:
            if e["sound_class"] != cls or e["kind"] == "ambience":
                continue
            for t, p in _truth_pan(e):
                got = by_cls[cls].pan_at(t)
                if got is not None:
                    score.pan.append(abs(got - p))
    if truth.get("room") is not None:
        score.room.append(plan.scene.room == truth["room"])
    return score
