"""FoleyWorld text, written from the ground truth: a short caption, a four-part chain of thought in PrismAudio's
dimensions (Semantic, Temporal, Aesthetic, Spatial), and an ALIVE-style structured caption (Subjects / Visual /
Narration with <I>...</I> around sound events). Wording is drawn from paraphrase templates with the clip's seed.

Truthfulness rules the writer keeps (and `extract_timed_events` relies on): every sounding class is named with a word
from `CLASS_WORDS`; a class's words appear only if that class sounds in the clip; each Temporal clause (separated by
";") is about one source; a discrete clause names its onsets as "N.NN s" and contains no continuous keyword;
continuous sounds are given as spans ("from A s to B s").

CoT file format (users write these by hand for `generate --cot`): plain UTF-8 text; lines starting with "#" are
comments; four parts, each introduced by its label at the start of a line or inline ("Semantic:", "Temporal:",
"Aesthetic:", "Spatial:", case-insensitive, any order, each at most once, any part may be left out); a part runs
until the next label. `parse_cot` reads it; `CoT.text()` joins the parts in the fixed order on one line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from foleyflow.errors import FoleyError

PARTS = ("semantic", "temporal", "aesthetic", "spatial")

# Words that name each class. Matching is by whole words, longest phrase first; the writer uses only these.
CLASS_WORDS = {
    "marimba": ["marimba"], "xylophone": ["xylophone"], "glockenspiel": ["glockenspiel", "glock"],
    "tubular_bells": ["tubular bells", "tubular bell", "chime tubes", "orchestral chimes"],
    "steel_drum": ["steel drum", "steel pan", "steelpan"], "piano_key": ["piano", "keyboard"],
    "wood_block": ["wood block", "woodblock", "temple block"], "cowbell": ["cowbell", "cow bell"],
    "claves": ["claves", "clave"], "hand_clap": ["hand clap", "hand claps", "clapping hands", "claps", "clap"],
    "snare": ["snare drum", "snare"], "tom": ["tom-tom", "floor tom", "tom"],
    "impact_wood": ["wooden"], "impact_metal": ["metal", "metallic", "iron"], "impact_glass": ["glass"],
    "impact_plastic": ["plastic"], "rolling": ["rolls", "rolling", "slides", "sliding", "scrapes"],
    "engine": ["engine", "car", "van", "truck"], "rain": ["rain", "raindrops"], "wind": ["wind", "gusts"],
    "room_tone": ["room tone", "hum"],
}
CONTINUOUS_WORDS = ("rolling", "engine", "rain", "wind", "room_tone")
_PHRASES = sorted(((w, c) for c, ws in CLASS_WORDS.items() for w in ws), key=lambda p: -len(p[0]))
_PHRASE_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w, _ in _PHRASES) + r")\b", re.IGNORECASE)
_WORD_CLASS = {w.lower(): c for w, c in _PHRASES}
_SPAN_RE = re.compile(r"(?:from|between)\s+(\d+(?:\.\d+)?)\s*s\s+(?:to|and|until)\s+(\d+(?:\.\d+)?)\s*s", re.I)
_TIME_RE = re.compile(r"(\d+(?:\.\d+)?)\s*s\b")
_LABEL_RE = re.compile(r"(?im)(?:^|(?<=\s))(semantic|temporal|aesthetic|spatial)\s*:")


class CotFormatError(FoleyError):
    """A chain-of-thought text does not follow the documented format."""


@dataclass
class CoT:
    semantic: str = ""
    temporal: str = ""
    aesthetic: str = ""
    spatial: str = ""

    def text(self) -> str:
        """The four parts on one line in the fixed order (the form models are conditioned on)."""
        return " ".join(f"{p.capitalize()}: {getattr(self, p).strip()}" for p in PARTS if getattr(self, p).strip())


def parse_cot(text: str) -> CoT:
    """Reads a chain of thought in the documented format; raises CotFormatError with a one-line reason."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    body = "\n".join(lines).strip()
    if not body:
        raise CotFormatError("chain of thought is empty (expected 'Semantic: ... Temporal: ... Aesthetic: ... "
                             "Spatial: ...')")
    marks = list(_LABEL_RE.finditer(body))
    if not marks:
        raise CotFormatError("chain of thought has none of the parts 'Semantic:', 'Temporal:', 'Aesthetic:', "
                             "'Spatial:'")
    if body[:marks[0].start()].strip():
        raise CotFormatError(f"chain of thought has text before its first part: '{body[:40].strip()}...'")
    cot, seen = CoT(), set()
    for m, nxt in zip(marks, marks[1:] + [None]):
        name = m.group(1).lower()
        if name in seen:
            raise CotFormatError(f"chain of thought has the part '{name.capitalize()}:' twice")
        seen.add(name)
        setattr(cot, name, " ".join(body[m.end():nxt.start() if nxt else len(body)].split()))
    return cot


def classes_named(text: str) -> set[str]:
    """Every sound class whose words appear in `text`."""
    return {_WORD_CLASS[m.group(1).lower()] for m in _PHRASE_RE.finditer(text)}


def class_word_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, class) of every class word in `text`, longest phrases first where they overlap."""
    return [(m.start(1), m.end(1), _WORD_CLASS[m.group(1).lower()]) for m in _PHRASE_RE.finditer(text)]


def extract_timed_events(temporal: str) -> list[dict]:
    """Timed sounds named in a Temporal part: [{"class", "onset_s"} for discrete ones, plus "offset_s" for spans].

    Each ";"-separated clause is about one source. Spans ("from A s to B s", "between A s and B s") are continuous
    sounds; other times in a clause are onsets of the clause's discrete class.
    """
    out = []
    for clause in re.split(r"[;\n]", temporal):
        classes = classes_named(clause)
        cont = [c for c in classes if c in CONTINUOUS_WORDS]
        disc = [c for c in classes if c not in CONTINUOUS_WORDS]
        spans = [(float(a), float(b)) for a, b in _SPAN_RE.findall(clause)]
        rest = _SPAN_RE.sub(" ", clause)
        if cont:
            cls = "rolling" if "rolling" in cont else cont[0]
            out += [{"class": cls, "onset_s": a, "offset_s": b} for a, b in spans]
            continue
        for cls in disc:
            out += [{"class": cls, "onset_s": float(t)} for t in _TIME_RE.findall(rest)]
    return out


# ---------------------------------------------------------------------------------------------------- the writer
COLORS = {"red": (220, 45, 45), "yellow": (245, 200, 40), "blue": (45, 105, 225), "green": (50, 180, 80),
          "purple": (200, 70, 200), "pink": (245, 185, 205), "white": (235, 235, 235), "grey": (140, 145, 155),
          "silver": (185, 185, 190), "brown": (140, 95, 55), "tan": (195, 160, 105), "black": (35, 35, 35),
          "pale blue": (190, 220, 245), "pale green": (165, 230, 195), "cream": (245, 238, 200)}
INSTRUMENT_NOUN = {
    "marimba": ["marimba", "rosewood marimba"], "xylophone": ["xylophone"], "glockenspiel": ["glockenspiel"],
    "tubular_bells": ["set of tubular bells", "row of chime tubes"], "steel_drum": ["steel drum", "steel pan"],
    "piano_key": ["piano keyboard", "small keyboard"], "wood_block": ["wood block", "temple block"],
    "cowbell": ["cowbell"], "claves": ["pair of claves"], "hand_clap": ["pair of clapping hands"],
    "snare": ["snare drum"], "tom": ["tom", "floor tom"]}
STRIKE_VERB = {"hand_clap": ["claps at", "claps sharply at"], "piano_key": ["is played at", "sounds a key at"]}
SHAPE_NOUN = {"ball": ["ball", "sphere"], "box": ["box", "cube"], "wedge": ["wedge", "triangular block"],
              "plank": ["plank", "slab"]}
MATERIAL_ADJ = {"wood": "wooden", "metal": "metal", "glass": "glass", "plastic": "plastic", "foam": "foam"}
ROOM_VISUAL = {"dry": ["outdoors beside a road under an open sky", "an open-air scene by a road with hills behind"],
               "small_room": ["a small papered room with floorboards", "a cosy little room with a parquet floor"],
               "hall": ["a tall hall with columns and high windows", "a large hall with a checkered floor"]}
ROOM_AESTHETIC = {"dry": ["dry and close, with no reverberation", "open-air and dry, every hit short and clean"],
                  "small_room": ["a short, boxy room reverberation", "close, with a brief small-room reflection"],
                  "hall": ["a long, spacious hall reverberation", "ringing out with a long hall tail"]}


TIMBRE = {  # how each class sounds; only the class's own words and neutral ones
    "marimba": ["mellow, woody marimba tones", "soft, round marimba notes"],
    "xylophone": ["bright, dry xylophone notes", "hard, short xylophone notes"],
    "glockenspiel": ["sparkling glockenspiel pings", "high, bell-like glockenspiel notes"],
    "tubular_bells": ["long-ringing tubular bell tolls", "deep, sustained tubular bell tones"],
    "steel_drum": ["round, shimmering steel drum notes"], "piano_key": ["clear piano notes", "soft piano tones"],
    "wood_block": ["hollow wood block knocks", "dry, hollow woodblock clicks"],
    "cowbell": ["clanky cowbell hits", "a bright, nasal cowbell"], "claves": ["sharp clicks of the claves"],
    "hand_clap": ["crisp hand claps", "dry, fleshy claps"], "snare": ["a snappy snare drum", "a rattling snare"],
    "tom": ["deep tom thuds", "a booming floor tom"], "impact_wood": ["dull wooden knocks", "warm wooden thuds"],
    "impact_metal": ["ringing metal clangs", "a metallic ring"], "impact_glass": ["bright glass clinks",
                                                                              "thin, high glass chimes"],
    "impact_plastic": ["light plastic clacks", "hollow plastic taps"],
    "rolling": ["a low rolling rumble", "a gritty, sliding scrape"], "engine": ["a low engine drone",
                                                                              "a throaty engine"]}


def _color_name(rgb) -> str:
    rgb = np.asarray(rgb, float)
    return min(COLORS, key=lambda k: float(np.sum((np.asarray(COLORS[k]) - rgb) ** 2)))


def pan_words(pan: float) -> str:
    if pan < -0.6:
        return "the far left"
    if pan < -0.2:
        return "left of centre"
    if pan <= 0.2:
        return "the centre"
    return "right of centre" if pan < 0.6 else "the far right"


def where_words(pan: float) -> str:
    p = pan_words(pan)
    return p if p.endswith("of centre") else ("in " if p == "the centre" else "on ") + p


def and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def times_list(ts: list[float]) -> str:
    s = [f"{t:.2f} s" for t in ts]
    return s[0] if len(s) == 1 else ", ".join(s[:-1]) + " and " + s[-1]


class TruthWriter:
    def __init__(self, truth: dict, seed: int):
        self.t = truth
        self.rng = np.random.default_rng([seed, 0x7E87])
        self.events = truth["events"]
        self.by_src: dict[int, list[dict]] = {}
        for e in self.events:
            if e["source_id"] is not None:
                self.by_src.setdefault(e["source_id"], []).append(e)
        self.objs = {o["id"]: o for o in truth["objects"]}

    def pick(self, options):
        return options[int(self.rng.integers(0, len(options)))]

    def name(self, o: dict) -> str:
        """A noun phrase for an object; class words only when the object sounds."""
        evs = self.by_src.get(o["id"], [])
        if o["type"] == "body":
            size = "small" if o["size_m"] < 0.3 else ("large" if o["size_m"] > 0.5 else "")
            mat = MATERIAL_ADJ[o["material"]] if any(e["kind"] == "discrete" for e in evs) or o["material"] == \
                "foam" else ""
            words = [size, _color_name(o["color"]), mat, self.pick(SHAPE_NOUN[o["shape"]])]
            return " ".join(w for w in words if w)
        if o["type"] == "instrument":
            return self.pick(INSTRUMENT_NOUN[o["sound_class"]])
        return f"{_color_name(o['color'])} {o['kind']}" if evs else f"{_color_name(o['color'])} vehicle"

    def sources(self):
        return [self.objs[i] for i in sorted(self.by_src)]

    def striker(self, o) -> str:
        """What hits the instrument, as drawn."""
        return {"clave": "second clave", "hand": "pair of hands"}.get(o.get("striker"), o.get("striker", "stick"))

    def caption(self, names) -> str:
        room = {"dry": self.pick(["outdoors", "by a road"]), "small_room": "in a small room", "hall": "in a hall"}
        seen = ["a " + names[o["id"]] for o in self.sources() if o["visible"]]
        unseen = ["a " + names[o["id"]] for o in self.sources() if not o["visible"]]
        amb = [e["sound_class"] for e in self.events if e["kind"] == "ambience" and e["sound_class"] != "room_tone"]
        tail = (" in the " + " and ".join(amb)) if amb else ""
        s = (and_list(seen) if seen else self.pick(["a quiet scene", "an empty stage"])) + f" {room[self.t['room']]}{tail}"
        if unseen:
            s += self.pick([f", with {and_list(unseen)} heard off-screen", f", while {and_list(unseen)} sounds out of view"])
        return s[0].upper() + s[1:] + "."

    def alive(self, names) -> str:
        subj = [names[o["id"]] for o in self.t["objects"] if o["visible"]]
        visual = f"{self.pick(ROOM_VISUAL[self.t['room']])}"
        if self.t["ambience"]["rain"] > 0:
            visual += ", rain streaking down"
        if self.t["ambience"]["wind"] != 0:
            visual += ", leaves blown across the frame"
        narr = []
        for o in self.sources():
            n = names[o["id"]]
            kinds = sorted({e["sound_class"] for e in self.by_src[o["id"]]})
            sounds = ", ".join(SOUND_TAG[k] for k in kinds)
            if o["type"] == "instrument":
                who = f"Off-screen, a {n} is played" if not o["visible"] else \
                    ("Two hands come together" if o["sound_class"] == "hand_clap" else
                     f"A {self.striker(o)} strikes the {n}")
            elif o["type"] == "vehicle":
                who = f"A {n} passes{'' if o['visible'] else ' off-screen'}"
            else:
                who = f"The {n} falls and hits the floor"
            narr.append(f"{who} <I>{sounds}</I>.")
        for e in self.events:
            if e["kind"] == "ambience":
                narr.append(f"<I>{SOUND_TAG[e['sound_class']]}</I> throughout.")
        return (f"Subjects: {'; '.join(subj) if subj else 'none'}. Visual: {visual}. "
                f"Narration: {' '.join(narr) if narr else 'Silence.'}")


SOUND_TAG = {"marimba": "warm marimba notes", "xylophone": "bright xylophone notes", "glockenspiel": "glockenspiel pings",
             "tubular_bells": "tubular bell tolls", "steel_drum": "steel drum notes", "piano_key": "piano notes",
             "wood_block": "wood block knocks", "cowbell": "cowbell clanks", "claves": "claves clicks",
             "hand_clap": "hand claps", "snare": "snare drum cracks", "tom": "tom thuds",
             "impact_wood": "wooden knocks", "impact_metal": "metal clangs", "impact_glass": "glass clinks",
             "impact_plastic": "plastic clacks", "rolling": "rolling rumble", "engine": "engine drone",
             "rain": "rain patter", "wind": "wind gusts", "room_tone": "room hum"}


def write_texts(truth: dict, seed: int | None = None) -> dict:
    """{"caption", "cot" (one line), "alive"} for a clip's ground truth; deterministic in `seed` (default: the clip's).

    The chain of thought is the clip's plan (`foleyflow.cot.plan_from_truth`) rendered by `foleyflow.cot.render`
    with this writer's generator, so hand-written or planned CoTs and FoleyWorld's share one set of templates."""
    from foleyflow.cot.convert import plan_from_truth
    from foleyflow.cot.render import Wording, four_part

    w = TruthWriter(truth, truth["seed"] if seed is None else seed)
    names = {o["id"]: w.name(o) for o in truth["objects"]}
    cot = four_part(plan_from_truth(truth, names=names), Wording(w.rng))
    return {"caption": w.caption(names), "cot": cot.text(), "alive": w.alive(names)}
