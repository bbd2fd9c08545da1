"""The automatic planner's targets and decoding (issue 19, item 2): FoleyWorld truth -> the planner's training targets,
the planner's outputs (foleyflow.models.planner) -> a validated "foleyflow-cot/1" plan, and off-screen sources from a
user's prompt.

Targets (`planner_targets`, on the planner's slot timeline: slot k starts at k * slot_s, slot_s = 0.08 s by default).
Only what the video can show is a target: events with `on_screen` true that the mix does not mark inaudible.
  onset (S, Cd)      1 at the slot holding the first sync frame at or after a discrete event's onset (the sync
                     encoder's contact-head convention, `foleyflow.models.av_ssl.contact_targets`), per class;
  contact (S,)       the same for any class;
  active (S, C)      continuous events over [onset, offset], ambience beds over the clip, discrete hits for 0.3 s;
  pan (S, C), pan_mask (S, C)  a discrete event's pan on its slot and the next two; a continuous event's pan (its
                     pan track interpolated) over its span; ambience has no pan target;
  presence (C,)      the class has a target event; material (C,) index into MATERIALS (a body's material for its
                     impact and rolling classes) or -1; room index; loudness index (as `plan_from_truth`).

Decoding (`decode_plan`), one source per sound class (several objects of one class become one source: an honest
simplification of what the heads can tell apart): a class is present when its presence probability reaches
`presence_threshold`. Discrete onsets (at the slot start, the time the targets use), by `onset_mode`: "contact" (the
default): the local maxima of the class-agnostic contact probability at or above `contact_threshold`, each given to
the present discrete class whose onset probability is highest there (within a slot either side; to the most likely
discrete class overall, which then counts as present, when none is present); "classes": the local maxima of each
present class's own onset probability at or above `onset_threshold`. (On 200 held-out clips after a short training
the contact timing found onsets far better than the per-class peaks, whose probability mass splits between similar
classes: onset F1 0.64 against 0.37; the recipe keeps the better mode on `val`.) A continuous class's intervals are the runs of its
activity at or above `active_threshold` (at least two slots); an ambience class spans the clip. Pan: one pan when the
pans at a source's events agree within 0.1, else a trajectory through them; continuous sources get a trajectory every
0.5 s. Material: the class's own for impact classes, the material head's for rolling. Room and loudness: argmax.
Off-screen sources come only from the user's prompt (`prompt_sources`: FoleyWorld's class words found in it that the
video did not show; no times, no places).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from foleyflow.cot.schema import Plan, Scene, Source, validate
from foleyflow.events import AMBIENCE_CLASSES, CONTINUOUS_CLASSES

DISCRETE_ACTIVE_S = 0.3
PAN_AGREE = 0.1
TRAJECTORY_STEP_S = 0.5
LOUD_IMPACT_MPS = 4.0  # as foleyflow.cot.convert


def time_to_slot(t_s: float, cfg) -> int:
    """The slot holding the first sync frame at or after t_s."""
    return int(math.ceil(t_s * cfg.sync_fps - 1e-6)) // cfg.tubelet


def planner_targets(truth: dict, cfg, num_slots: int) -> dict[str, torch.Tensor]:
    """A FoleyWorld ground-truth dict -> the planner's targets for a window starting at 0 (module docstring).
    cfg: a PlannerConfig (classes, rates)."""
    classes, disc = list(cfg.classes), list(cfg.discrete_classes)
    s, c = num_slots, len(classes)
    t = {"onset": torch.zeros(s, len(disc)), "contact": torch.zeros(s), "active": torch.zeros(s, c),
         "pan": torch.zeros(s, c), "pan_mask": torch.zeros(s, c), "presence": torch.zeros(c),
         "material": torch.full((c,), -1, dtype=torch.long)}
    slot_start = torch.arange(s) * cfg.slot_s
    objects = {o["id"]: o for o in truth.get("objects", [])}
    speeds = []
    for e in truth["events"]:
        if e["kind"] == "discrete":
            speeds.append((e.get("params") or {}).get("impact_speed", 0))
        if not e.get("on_screen", True) or (e.get("params") or {}).get("audible", True) is False:
            continue
        cls = e["sound_class"]
        if cls not in classes:
            continue
        ci = classes.index(cls)
        k = time_to_slot(float(e["onset_s"]), cfg)
        if e["kind"] == "ambience":
            t["presence"][ci] = 1
            t["active"][:, ci] = 1
            continue
        if k >= s:
            continue
        t["presence"][ci] = 1
        mat = (objects.get(e.get("source_id")) or {}).get("material")
        if mat in cfg.materials and (cls.startswith("impact_") or cls == "rolling"):
            t["material"][ci] = cfg.materials.index(mat)
        if e["kind"] == "discrete" and cls in disc:
            t["onset"][k, disc.index(cls)] = 1
            t["contact"][k] = 1
            t["pan"][k:k + 3, ci] = float(e["pan"])
            t["pan_mask"][k:k + 3, ci] = 1
            t["active"][k:k + max(1, round(DISCRETE_ACTIVE_S / cfg.slot_s)), ci] = 1
        else:
            end = float(e["offset_s"]) if e.get("offset_s") is not None else s * cfg.slot_s
            on = (slot_start + cfg.slot_s > float(e["onset_s"])) & (slot_start < end)
            t["active"][on, ci] = 1
            track = e.get("pan_track")
            if track:
                tt = np.array([p[0] for p in track], dtype=float)
                pp = np.array([p[1] for p in track], dtype=float)
                pans = torch.from_numpy(np.interp(slot_start.numpy() + cfg.slot_s / 2, tt, pp)).float()
                t["pan"][on, ci] = pans[on]
            else:
                t["pan"][on, ci] = float(e["pan"])
            t["pan_mask"][on, ci] = 1
    rooms = list(cfg.rooms)
    t["room"] = torch.tensor(rooms.index(truth["room"]) if truth.get("room") in rooms else 0)
    loud = 2 if speeds and max(speeds) > LOUD_IMPACT_MPS else (1 if speeds else 0)
    t["loudness"] = torch.tensor(loud)
    return t


def probabilities(out: dict[str, torch.Tensor], index: int = 0) -> dict[str, np.ndarray]:
    """Clip `index` of the planner's batched outputs (foleyflow.models.planner.Planner.forward) as numpy
    probabilities: sigmoid of the binary heads, softmax of material / room / loudness, pan as is."""
    p = {}
    for k, v in out.items():
        v = v[index].detach().float().cpu()
        if k in ("onset", "contact", "active", "presence"):
            v = torch.sigmoid(v)
        elif k in ("material", "room", "loudness"):
            v = torch.softmax(v, dim=-1)
        p[k] = v.numpy()
    return p


def peaks(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the local maxima of a 1-d probability track at or above threshold (plateaus: their first slot)."""
    x = np.concatenate([[-1.0], prob, [-1.0]])
    mid = x[1:-1]
    return np.nonzero((mid >= threshold) & (mid > x[:-2]) & (mid >= x[2:]))[0]


def runs(mask: np.ndarray, min_len: int = 2) -> list[tuple[int, int]]:
    """[(first, last)] slots of the runs of True at least min_len long."""
    out, start = [], None
    for i, m in enumerate(list(mask) + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            if i - start >= min_len:
                out.append((start, i - 1))
            start = None
    return out


def _r(x: float, nd: int = 2) -> float:
    return float(round(float(x), nd))


def decode_plan(prob: dict[str, np.ndarray], cfg, duration_s: float, prompt: str | None = None, *,
                presence_threshold: float | None = None, onset_threshold: float | None = None,
                active_threshold: float | None = None, contact_threshold: float | None = None,
                onset_mode: str | None = None) -> Plan:
    """The planner's probabilities for one clip (`probabilities`) -> a validated Plan (module docstring). Thresholds
    default to the ones stored in cfg (chosen on `val`). prompt: a user's text; classes it names that the video did
    not show become off-screen sources."""
    pt = cfg.presence_threshold if presence_threshold is None else presence_threshold
    ot = cfg.onset_threshold if onset_threshold is None else onset_threshold
    at = cfg.active_threshold if active_threshold is None else active_threshold
    ct = cfg.contact_threshold if contact_threshold is None else contact_threshold
    mode = cfg.onset_mode if onset_mode is None else onset_mode
    classes, disc = list(cfg.classes), list(cfg.discrete_classes)
    slot_s, dur = cfg.slot_s, float(duration_s)
    n_slots = prob["pan"].shape[0]
    last_t = dur - 1e-3
    present = {ci for ci in range(len(classes)) if prob["presence"][ci] >= pt}
    by_class: dict[str, list[int]] = {}
    if mode == "contact":
        onset = np.maximum.reduce([np.roll(prob["onset"], d, axis=0) for d in (-1, 0, 1)])  # +-1 slot
        seen = [j for j, c in enumerate(disc) if classes.index(c) in present] or list(range(len(disc)))
        for k in peaks(prob["contact"], ct):
            if k * slot_s >= last_t:
                continue
            cand = seen
            j = max(cand, key=lambda j: onset[k, j])
            by_class.setdefault(disc[j], []).append(int(k))
            present.add(classes.index(disc[j]))
    sources = []
    for ci, cls in enumerate(classes):
        if ci not in present:
            continue
        src = {"id": cls, "sound_class": cls, "on_screen": True}
        pan_col = prob["pan"][:, ci]
        if cls in AMBIENCE_CLASSES:
            src["events"] = ((0.0, _r(dur)),)
        elif cls in disc:
            ks = by_class.get(cls, []) if mode == "contact" else \
                [k for k in peaks(prob["onset"][:, disc.index(cls)], ot) if k * slot_s < last_t]
            src["events"] = tuple(_r(k * slot_s) for k in ks) or None
            if ks:
                pans = [_r(pan_col[k]) for k in ks]
                if max(pans) - min(pans) <= PAN_AGREE:
                    src["pan"] = _r(np.mean(pans))
                else:
                    src["trajectory"] = tuple((_r(k * slot_s), p) for k, p in zip(ks, pans))
        elif cls in CONTINUOUS_CLASSES:
            spans = [(a, b) for a, b in runs(prob["active"][:, ci] >= at) if a * slot_s < last_t]
            src["events"] = tuple((_r(a * slot_s), _r(min((b + 1) * slot_s, dur))) for a, b in spans) or None
            step = max(1, round(TRAJECTORY_STEP_S / slot_s))
            pts = []
            for a, b in spans:
                for k in sorted(set(range(a, b + 1, step)) | {b}):
                    pts.append((_r(min(k * slot_s, dur)), _r(pan_col[min(k, n_slots - 1)])))
            pts = sorted(dict(pts).items())
            if pts:
                src["trajectory"] = tuple(pts)
        if cls.startswith("impact_") and cls[len("impact_"):] in cfg.materials:
            src["material"] = cls[len("impact_"):]
        elif cls == "rolling":
            src["material"] = cfg.materials[int(np.argmax(prob["material"][ci]))]
        sources.append(Source(**src))
    seen = {s.sound_class for s in sources}
    sources += prompt_sources(prompt, seen) if prompt else []
    scene = Scene(room=cfg.rooms[int(np.argmax(prob["room"]))],
                  loudness=cfg.loudness[int(np.argmax(prob["loudness"]))])
    return validate(Plan(dur, tuple(sources), scene), "planner output")


def prompt_sources(prompt: str, seen: set[str] = frozenset()) -> list[Source]:
    """Off-screen sources named in a user's prompt: FoleyWorld's class words (`foleyflow.world.text.classes_named`)
    for classes not in `seen` (what the video showed), one source each, id "<class>_offscreen", no times or place."""
    from foleyflow.world.text import classes_named

    out = []
    for cls in sorted(classes_named(prompt) - set(seen)):
        mat = cls[len("impact_"):] if cls.startswith("impact_") else None
        out.append(Source(f"{cls}_offscreen", cls, False, None, material=mat))
    return out


def untimed_offscreen(plan: Plan) -> Plan:
    """`plan` as the automatic planner can know it: a sounding off-screen source (which only the user's prompt can
    name, `prompt_sources`) keeps its class, material and name but loses its times and place (events None, no pan),
    so it leaves the time-aligned plan track; on-screen and silent sources are unchanged. The plan v3's generator
    trains on with `plan_offscreen: untimed` (recipes/train_flow.py), so that it voices a source named only in the
    text instead of waiting for the track to time it."""
    from dataclasses import replace

    return validate(replace(plan, sources=tuple(
        s if s.on_screen or s.events == () else replace(s, events=None, pan=None, trajectory=None)
        for s in plan.sources)), "untimed_offscreen")


def contact_onsets(prob: dict[str, np.ndarray], cfg, duration_s: float, threshold: float = 0.5) -> list[float]:
    """Class-agnostic onsets (s) from the contact head alone: local maxima of the contact probability at or above
    threshold, at the slot start (what the sync encoder's contact head gives, for comparison with the per-class
    onset heads)."""
    return [_r(k * cfg.slot_s) for k in peaks(prob["contact"], threshold) if k * cfg.slot_s < duration_s - 1e-3]
