"""A plan as text: PrismAudio's four-part chain of thought (Semantic, Temporal, Aesthetic, Spatial) in FoleyWorld's
wording, and a monolithic single-paragraph form of the same sentences (the ablation's "single CoT").

These are the templates FoleyWorld's own writer (`foleyflow.world.text.write_texts`) uses: it builds the clip's plan
from its ground truth and renders it here, so a plan rendered here is in exactly the format the text encoder was
trained on. Wording alternatives are chosen by a `Wording`: the first alternative everywhere (deterministic, the
default), or drawn from a numpy Generator (FoleyWorld passes its per-clip generator, which is why the order of
choices below must not change: a change rewrites every FoleyWorld text).

What each part says:
  Semantic  each sounding source as "a <name> <how>" (instruments: how they are played, or that they are off-screen;
            bodies: falling, or bouncing then rolling; vehicles: passing, engine running), then visible silent objects
            ("that makes no sound"), then ambience beds.
  Temporal  per source its onsets ("is struck at 0.34 s, 1.32 s and 2.41 s") and spans ("rolls along the floor from
            A s to B s", "the van's engine is heard from A s to B s"); ambience "goes on throughout".
  Aesthetic the room's reverberation, loudness, timbre words of up to three classes, rain, and density ("busy and
            layered" above 2 onsets per second, else "sparse and clear"; scene.texture words replace it).
  Spatial   per placed source: "is on the far left" / "moves between left of centre and the far right" / "the unseen
            X comes from the centre"; vehicles with a trajectory "move from left to right" (", far away").
A source without a name is named from its class and material ("wooden object", "snare drum"). Sources whose times
are unknown (events left out) are named in Semantic only; unplaced ones are left out of Spatial.
"""
from __future__ import annotations

import numpy as np

from foleyflow.cot.schema import Plan, Source
from foleyflow.world.text import (INSTRUMENT_NOUN, MATERIAL_ADJ, ROOM_AESTHETIC, STRIKE_VERB, TIMBRE, CoT, and_list,
                                 pan_words, times_list, where_words)

AMBIENCE = ("rain", "wind", "room_tone")
AMBIENCE_WORDS = {"rain": ["steady rain", "falling rain"], "wind": ["gusts of wind", "a blowing wind"],
                  "room_tone": ["a quiet room hum", "a faint electrical hum"]}
AMBIENCE_NAME = {"rain": "the rain", "wind": "the wind", "room_tone": "the room hum"}
LOUDNESS_WORDS = {"loud": ["loud, sharp hits", "hard, punchy impacts"],
                  "moderate": ["moderate, clean hits", "gentle, clear hits"], "soft": ["soft", "smooth"]}
STRIKER_WORDS = {"clave": "second clave", "hand": "pair of hands"}
BUSY_ONSETS_PER_S = 2.0


class Wording:
    """Chooses among wording alternatives: the first one (rng None) or one drawn from `rng` (a numpy Generator, or
    an int seed)."""

    def __init__(self, rng: np.random.Generator | int | None = None):
        self.rng = np.random.default_rng(rng) if isinstance(rng, int) else rng

    def pick(self, options: list[str]) -> str:
        return options[0] if self.rng is None else options[int(self.rng.integers(0, len(options)))]

    def order(self, items: list[str]) -> list[str]:
        return list(items) if self.rng is None else [str(x) for x in self.rng.permutation(items)]


def kind_of(src: Source) -> str:
    """"ambience" | "vehicle" | "instrument" | "body" | "other", from the class."""
    c = src.sound_class
    if c in AMBIENCE:
        return "ambience"
    if c == "engine":
        return "vehicle"
    if c in INSTRUMENT_NOUN:
        return "instrument"
    return "body" if c.startswith("impact_") or c == "rolling" else "other"


def name_of(src: Source) -> str:
    """The source's noun phrase: its name, else one made from its class (and material)."""
    if src.name:
        return src.name
    k, c = kind_of(src), src.sound_class
    if k == "instrument":
        return INSTRUMENT_NOUN[c][0]
    if k == "vehicle":
        return "car"
    if k == "body":
        mat = src.material or (c[len("impact_"):] if c.startswith("impact_") else "")
        return f"{MATERIAL_ADJ.get(mat, mat)} object".strip() if c != "rolling" else "rolling object"
    return c.replace("_", " ")


def classes_of(src: Source) -> list[str]:
    """The sound classes a source makes (a body's intervals are "rolling")."""
    if not src.sounds:
        return []
    if kind_of(src) == "body" and src.sound_class != "rolling":
        return ([src.sound_class] if src.onsets or src.events is None else []) + (["rolling"] if src.intervals
                                                                                   else [])
    return [src.sound_class]


def _sounding(plan: Plan) -> list[Source]:
    return [s for s in plan.sources if s.sounds and kind_of(s) != "ambience"]


def _semantic(plan: Plan, w: Wording) -> str:
    parts = []
    for s in _sounding(plan):
        n, k = name_of(s), kind_of(s)
        if k == "instrument":
            if not s.on_screen:
                how = w.pick(["struck off-screen", "played out of view", "heard but not seen"])
            elif s.sound_class == "hand_clap":
                how = w.pick(["meeting again and again", "coming together"])
            else:
                striker = STRIKER_WORDS.get(s.striker, s.striker or "stick")
                how = w.pick(["hit by a", "played with a", "struck with a"]) + " " + striker
            parts.append(f"a {n} {how}")
        elif k == "vehicle":
            how = w.pick(["passing off-screen", "going by out of view"]) if not s.on_screen else \
                w.pick(["driving past", "crossing the picture", "passing by"])
            parts.append(f"a {n} {how}, {w.pick(['engine humming', 'its engine running'])}")
        elif k == "body":
            verb = w.pick(["that bounces and rolls", "bouncing, then rolling"]) if s.intervals else \
                w.pick(["that falls", "that drops", "dropping to the floor", "tumbling down"])
            parts.append(f"a {n} {verb}{'' if s.on_screen else ' off-screen'}")
        else:
            parts.append(f"a {n}{' heard off-screen' if not s.on_screen else ''}")
    parts += [f"a {name_of(s)} {w.pick(['that makes no sound', 'that lands silently', 'moving without a sound'])}"
              for s in plan.sources if not s.sounds and s.on_screen and kind_of(s) != "ambience"]
    parts += [w.pick(AMBIENCE_WORDS[s.sound_class]) for s in plan.sources if kind_of(s) == "ambience" and s.sounds]
    return "; ".join(parts) + "."


def _temporal(plan: Plan, w: Wording) -> str:
    clauses = []
    for s in _sounding(plan):
        disc, n, k = s.onsets, name_of(s), kind_of(s)
        off = "" if s.on_screen else " off-screen"
        if disc and k in ("instrument", "other"):
            verb = w.pick(STRIKE_VERB.get(s.sound_class, ["is struck at", "is hit at", "sounds at"]))
            clauses.append(f"the {n}{off} {verb} {times_list(disc)}")
        elif disc:
            verb = w.pick(["hits at", "lands and bounces at", "knocks at", "strikes the ground at"])
            clauses.append(f"the {n}{off} {verb} {times_list(disc)}")
        subject = "it" if disc else f"the {n}"
        for a, b in s.intervals:
            span = f"from {a:.2f} s to {b:.2f} s"
            if k == "body":
                clauses.append(f"{subject} {s.motion or 'rolls'} along the floor {span}")
            elif k == "vehicle":
                clauses.append(f"the {n.split()[-1]}'s engine is heard{off} {span}")
            else:
                clauses.append(f"{subject}{off} is heard {span}")
    whole = []
    for s in plan.sources:
        if kind_of(s) != "ambience" or not s.events:
            continue
        spans = s.intervals
        if len(spans) == 1 and spans[0][0] <= 0.01 and spans[0][1] >= plan.duration_s - 0.01:
            whole.append(s.sound_class)
            continue
        clauses += [f"{AMBIENCE_NAME[s.sound_class]} is heard from {a:.2f} s to {b:.2f} s" for a, b in spans]
        if s.onsets:
            clauses.append(f"{AMBIENCE_NAME[s.sound_class]} sounds at {times_list(s.onsets)}")
    if whole:
        verbs = [" goes on throughout", " lasts the whole clip"] if len(whole) == 1 else \
            [" go on throughout", " last the whole clip"]
        clauses.append(" and ".join(AMBIENCE_NAME[a] for a in whole) + w.pick(verbs))
    if not clauses and any(s.events is None for s in plan.sources):
        return ""
    return ("; ".join(clauses) or "nothing sounds") + "."


def _aesthetic(plan: Plan, w: Wording) -> str:
    sc, sounding = plan.scene, _sounding(plan)
    unknown = any(s.events is None for s in plan.sources)
    onsets = sum(len(s.onsets) for s in plan.sources)
    loud = sc.loudness or (None if unknown else ("moderate" if onsets else "soft"))
    loud_words = [w.pick(LOUDNESS_WORDS[loud])] if loud else []      # drawn before the room's words (FoleyWorld)
    parts = ([w.pick(ROOM_AESTHETIC[sc.room])] if sc.room else []) + loud_words
    parts += [f"a {s.loudness} {name_of(s)}" for s in sounding if s.loudness]
    present = sorted({c for s in sounding for c in classes_of(s)})
    if present:
        texture = {c: s.texture for s in sounding if s.texture for c in classes_of(s)}
        chosen = w.order(present)[:3]
        parts.append(and_list([texture.get(c) or (w.pick(TIMBRE[c]) if c in TIMBRE else c.replace("_", " ") + " sounds")
                           for c in chosen]))
    if any(s.sound_class == "rain" and s.sounds for s in plan.sources):
        parts.append("a hiss of rain underneath")
    if sc.texture:
        parts += list(sc.texture)
    elif not unknown:
        parts.append("busy and layered" if onsets / plan.duration_s > BUSY_ONSETS_PER_S else "sparse and clear")
    return ", ".join(parts) + "." if parts else ""


def _spatial(plan: Plan) -> str:
    parts, unplaced = [], False
    for s in _sounding(plan):
        n = name_of(s)
        far = {"far": ", far away", "close": ", close by"}.get(s.distance, "")
        if kind_of(s) == "vehicle" and s.trajectory:
            a, b = s.trajectory[0][1], s.trajectory[-1][1]
            d = "left to right" if b > a else "right to left"
            parts.append(f"the {n}{'' if s.on_screen else ' (unseen)'} moves from {d}{far}")
            continue
        pans = s.pans()
        if not pans:
            unplaced = True
            continue
        lo, hi, mean = min(pans), max(pans), float(np.mean(pans))
        if not s.on_screen:
            parts.append(f"the unseen {n} comes from {pan_words(mean)}{far}")
        elif hi - lo > 0.6:
            parts.append(f"the {n} moves between {pan_words(lo)} and {pan_words(hi)}{far}")
        else:
            parts.append(f"the {n} is {where_words(mean)}{far}")
    if not parts and unplaced:
        return ""
    return ("; ".join(parts) or "nothing to place") + "."


def four_part(plan: Plan, wording: Wording | int | None = None) -> CoT:
    """The plan as PrismAudio's four parts (a `foleyflow.world.text.CoT`; `.text()` is the one-line form the text
    encoder reads). wording: a Wording, an int seed, or None (first alternatives)."""
    w = wording if isinstance(wording, Wording) else Wording(wording)
    return CoT(_semantic(plan, w), _temporal(plan, w), _aesthetic(plan, w), _spatial(plan))


def four_part_text(plan: Plan, wording: Wording | int | None = None) -> str:
    """"Semantic: ... Temporal: ... Aesthetic: ... Spatial: ..." on one line (empty parts left out)."""
    return four_part(plan, wording).text()


def monolithic_text(plan: Plan, wording: Wording | int | None = None) -> str:
    """The same sentences as `four_part_text` (same wording for the same `wording`) as one paragraph without the
    part labels, in the same order: the ablation's single, undivided chain of thought."""
    cot = four_part(plan, wording)
    parts = [getattr(cot, p).strip() for p in ("semantic", "temporal", "aesthetic", "spatial")]
    return " ".join(p[0].upper() + p[1:] for p in parts if p)
