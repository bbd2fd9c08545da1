"""Converters into the plan: FoleyWorld's ground truth (exact: times, pans, classes, materials, names) and ALIVE-style
structured captions (semantic only: the classes named inside `<I>...</I>` sound-event tags, no times, no places).

FoleyWorld truth -> plan, source by source (ids "source_<object id>"; ambience beds take their class as id):
  - each object that sounds, in object-id order: class = the instrument's class, "engine" for vehicles, a body's
    impact class ("rolling" if it only rolls); events = its discrete onsets and continuous [onset, offset] spans;
    place = a vehicle's pan track as the trajectory; otherwise the pan of each event as a trajectory point at the
    event's start (or one pan when they are all the same); name = the noun phrase FoleyWorld's writer gives it
    (drawn with the clip's seed, so it matches the clip's texts); striker, motion (a ball rolls, others slide) and
    distance (vehicles: far beyond 18 m, close within 13 m) from the truth;
  - then the objects that make no sound (events []), then the ambience beds (one interval over the clip);
  - scene: the room, and loudness "loud" if any hit is faster than 4 m/s, "moderate" if there are hits, else "soft".
`truth_wording(truth)` gives the Wording FoleyWorld's writer uses for the clip's chain of thought, so
`four_part_text(plan_from_truth(truth), truth_wording(truth)) == truth["text"]["cot"]`.
"""
from __future__ import annotations

import re

import numpy as np

from foleyflow.cot.render import AMBIENCE, Wording
from foleyflow.cot.schema import Plan, PlanError, Scene, Source, validate
from foleyflow.world.text import CLASS_WORDS, SOUND_TAG, classes_named

LOUD_IMPACT_MPS = 4.0
FAR_M, CLOSE_M = 18.0, 13.0


def _writer(truth: dict, seed: int | None):
    from foleyflow.world.text import TruthWriter

    w = TruthWriter(truth, truth["seed"] if seed is None else seed)
    return w, {o["id"]: w.name(o) for o in truth["objects"]}


def truth_wording(truth: dict, seed: int | None = None) -> Wording:
    """The Wording (generator state) FoleyWorld's writer has when it starts the clip's chain of thought."""
    w, _ = _writer(truth, seed)
    return Wording(w.rng)


def truth_monolithic(truth: dict) -> str:
    """The ablation's single-paragraph chain of thought of a FoleyWorld clip: `monolithic_text` of its plan, worded as
    FoleyWorld worded the clip's own four-part CoT (the same sentences without the part labels)."""
    from foleyflow.cot.render import monolithic_text

    return monolithic_text(plan_from_truth(truth), truth_wording(truth))


def plan_from_truth(truth: dict, seed: int | None = None, names: dict | None = None) -> Plan:
    """A FoleyWorld ground-truth dict (foleyflow.world.truth) as a validated plan. names: {object id: noun phrase}
    (default: the ones FoleyWorld's writer draws with `seed`, default the clip's seed)."""
    try:
        if names is None:
            names = _writer(truth, seed)[1]
        dur = float(truth["duration_s"])
        objs = {o["id"]: o for o in truth["objects"]}
        by_src: dict[int, list[dict]] = {}
        for e in truth["events"]:
            if e["source_id"] is not None:
                by_src.setdefault(e["source_id"], []).append(e)
        sources = []
        for oid in sorted(by_src):
            sources.append(_source(objs[oid], by_src[oid], names[oid], dur))
        for o in truth["objects"]:
            if o["silent"]:
                cls = "engine" if o["type"] == "vehicle" else o.get("sound_class") or f"impact_{o.get('material')}"
                sources.append(Source(f"source_{o['id']}", cls, bool(o["visible"]), (), material=o.get("material"),
                                      name=names[o["id"]]))
        for e in truth["events"]:
            if e["kind"] == "ambience":
                end = dur if e["offset_s"] is None else min(float(e["offset_s"]), dur)
                sources.append(Source(e["sound_class"], e["sound_class"], bool(e["on_screen"]),
                                      ((float(e["onset_s"]), end),), pan=float(e["pan"])))
        speeds = [e["params"].get("impact_speed", 0) for e in truth["events"] if e["kind"] == "discrete"]
        loud = "loud" if speeds and max(speeds) > LOUD_IMPACT_MPS else ("moderate" if speeds else "soft")
        plan = Plan(dur, tuple(sources), Scene(room=truth["room"], loudness=loud))
    except (KeyError, TypeError, ValueError) as e:
        raise PlanError(f"ground truth {truth.get('id', '?') if isinstance(truth, dict) else '?'} is not a "
                        f"FoleyWorld truth document ({type(e).__name__}: {e})") from None
    return validate(plan, f"truth {truth.get('id', '?')}")


def _source(o: dict, evs: list[dict], name: str, dur: float) -> Source:
    disc = [e for e in evs if e["kind"] == "discrete"]
    cont = [e for e in evs if e["kind"] == "continuous"]
    if o["type"] == "body":
        cls = disc[0]["sound_class"] if disc else "rolling"
    elif o["type"] == "instrument":
        cls = o["sound_class"]
    else:
        cls = "engine"
    events = []
    for e in evs:
        if e["kind"] == "discrete":
            events.append(float(e["onset_s"]))
        else:
            end = dur if e["offset_s"] is None else min(float(e["offset_s"]), dur)
            events.append((float(e["onset_s"]), end))
    pan, traj = None, None
    if o["type"] == "vehicle" and cont and cont[0].get("pan_track"):
        traj = tuple((float(t), float(p)) for t, p in cont[0]["pan_track"])
    else:
        pans = [float(e["pan"]) for e in evs]
        if len(set(pans)) == 1 and float(np.mean(pans)) == pans[0]:
            pan = pans[0]       # the writer places by the mean of the pans: one pan only when that is exact
        else:
            traj = tuple((float(e["onset_s"]), p) for e, p in zip(evs, pans))
    motion = None
    if o["type"] == "body" and cont:
        motion = "rolls" if cont[0]["params"].get("mode") == "roll" else "slides"
    distance = None
    if o["type"] == "vehicle":
        distance = "far" if o["depth_m"] > FAR_M else ("close" if o["depth_m"] < CLOSE_M else None)
    return Source(f"source_{o['id']}", cls, bool(o["visible"]), tuple(events), pan=pan, trajectory=traj,
                  material=o.get("material"), name=name, striker=o.get("striker") if o["type"] == "instrument"
                  else None, motion=motion, distance=distance)


# ---------------------------------------------------------------------------------------------------- ALIVE captions
_TAG_RE = re.compile(r"<I>(.*?)</I>", re.S)
_OFFSCREEN_RE = re.compile(r"off-screen|out of view|unseen|not seen", re.I)
_TAG_CLASS = {v: k for k, v in SOUND_TAG.items()}


def plan_from_alive(caption: str, duration_s: float = 8.0, refine=None) -> Plan:
    """An ALIVE-style caption ("... Narration: ... <I>sound event</I> ...") as a semantic-only plan: one source per
    tag, its class from the tag's words (FoleyWorld's tag phrases, or any class word of `CLASS_WORDS`); a body's
    "wooden knocks, rolling rumble" is one wooden source; on_screen False when the tag's sentence says
    off-screen; no times (events left out) and no places. refine: optional callable phrase -> class or None (e.g.
    `foleyflow.cot.refine.Refiner.match_class`) for tags no class word names. Raises PlanError when a tag names no
    known sound, or the caption has no tags."""
    tags = list(_TAG_RE.finditer(caption))
    if not tags:
        raise PlanError("caption has no <I>sound event</I> tags")
    if caption.count("<I>") != caption.count("</I>"):
        raise PlanError("caption has unbalanced <I>...</I> tags")
    sources, counts = [], {}
    for i, m in enumerate(tags):
        classes = []
        for phrase in (p.strip() for p in m.group(1).split(",")):
            if not phrase:
                continue
            c = _TAG_CLASS.get(phrase.lower())
            found = [c] if c else sorted(classes_named(phrase))
            if not found and refine is not None:
                c = refine(phrase)
                found = [c] if c else []
            if not found:
                raise PlanError(f"caption tag {i} <I>{m.group(1)}</I>: '{phrase}' names no sound in the vocabulary")
            classes += [c for c in found if c not in classes]
        impacts = [c for c in classes if c.startswith("impact_")]
        cls = impacts[0] if impacts else classes[0]
        start = max(caption.rfind(".", 0, m.start()), caption.rfind(":", 0, m.start())) + 1
        end = caption.find(".", m.end())
        sentence = caption[start:end if end >= 0 else len(caption)]
        counts[cls] = counts.get(cls, 0) + 1
        sid = cls if counts[cls] == 1 else f"{cls}_{counts[cls]}"
        material = cls[len("impact_"):] if cls.startswith("impact_") else None
        sources.append(Source(sid, cls, not _OFFSCREEN_RE.search(_TAG_RE.sub("", sentence)), None,
                              material=material, motion="rolls" if "rolling" in classes and impacts else None))
    return validate(Plan(float(duration_s), tuple(sources)), "caption")


VOCABULARY = tuple(CLASS_WORDS)
KNOWN_CLASSES = frozenset(CLASS_WORDS) | frozenset(AMBIENCE)
