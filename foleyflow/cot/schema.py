"""The structured chain-of-thought plan ("foleyflow-cot/1"): JSON Schema, dataclasses, parse, validate, edit.

A plan is what PrismAudio's four-part chain of thought says, as data instead of prose: which sources sound (class,
material, a name), when (onsets of discrete hits, [start, end] intervals of continuous sounds), where (a pan or a pan
trajectory, a distance word) and how it sounds (room, loudness, texture words). `foleyflow.cot.render` writes it as
the four-part text FoleyWorld's captions use; `foleyflow.cot.track` as a time-aligned tensor. PrismAudio's users type
the text by hand; here the plan is the editable form and the text is derived from it.

JSON form (UTF-8; unknown keys are errors; times in seconds from the clip start, pans -1 = left .. 1 = right):
  {"schema": "foleyflow-cot/1", "duration_s": 8.0,
   "scene": {"room": "dry" | "small_room" | "hall", "loudness": "soft" | "moderate" | "loud",
             "texture": ["busy and layered", ...]},                                   (scene and its keys optional)
   "sources": [{"id": "source_1", "class": "impact_wood", "on_screen": true,
                "events": [1.42, 2.28, [3.0, 4.5]],    onsets (numbers) and intervals ([start, end], end >= start),
                                                        sorted by start;
                                                        left out = it sounds, but when is not known
                "pan": 0.3  or  "trajectory": [[t, pan], ...],                  (at most one; neither = unplaced)
                optional: "material", "name" (noun phrase), "striker", "motion" ("rolls" | "slides", what a body's
                intervals are), "distance" ("close" | "far"), "loudness", "texture" (words)}, ...]}
A source with "events": [] is an object that makes no sound. Classes are free words (snake_case); FoleyWorld's
vocabulary is `foleyflow.world.text.CLASS_WORDS` (and `refine` maps other words onto it). Ambience classes (rain,
wind, room_tone) and "engine" (vehicles) are sounded with intervals.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from foleyflow.errors import FoleyError

SCHEMA_ID = "foleyflow-cot/1"
ROOMS = ("dry", "small_room", "hall")
LOUDNESS = ("soft", "moderate", "loud")
MATERIALS = ("wood", "metal", "glass", "plastic", "foam")
MOTIONS = ("rolls", "slides")
DISTANCES = ("close", "far")
_ID_RE = r"^[A-Za-z0-9_.-]+$"
_CLASS_RE = r"^[a-z0-9_]+$"

_NUM = {"type": "number"}
_PAN = {"type": "number", "minimum": -1, "maximum": 1}
_INTERVAL = {"type": "array", "items": _NUM, "minItems": 2, "maxItems": 2}
JSON_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "foleyflow chain-of-thought plan",
    "type": "object",
    "required": ["schema", "duration_s", "sources"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "duration_s": {"type": "number", "exclusiveMinimum": 0},
        "scene": {"type": "object", "additionalProperties": False, "properties": {
            "room": {"enum": list(ROOMS)},
            "loudness": {"enum": list(LOUDNESS)},
            "texture": {"type": "array", "items": {"type": "string", "minLength": 1}}}},
        "sources": {"type": "array", "items": {
            "type": "object", "required": ["id", "class", "on_screen"], "additionalProperties": False,
            "not": {"required": ["pan", "trajectory"]},
            "properties": {
                "id": {"type": "string", "pattern": _ID_RE},
                "class": {"type": "string", "pattern": _CLASS_RE},
                "on_screen": {"type": "boolean"},
                "events": {"type": "array", "items": {"oneOf": [{"type": "number", "minimum": 0}, _INTERVAL]}},
                "pan": _PAN,
                "trajectory": {"type": "array", "minItems": 1,
                               "items": {"type": "array", "prefixItems": [_NUM, _PAN], "minItems": 2, "maxItems": 2}},
                "material": {"enum": list(MATERIALS)},
                "name": {"type": "string", "minLength": 1},
                "striker": {"type": "string", "minLength": 1},
                "motion": {"enum": list(MOTIONS)},
                "distance": {"enum": list(DISTANCES)},
                "loudness": {"enum": list(LOUDNESS)},
                "texture": {"type": "string", "minLength": 1}}}},
    },
}


class PlanError(FoleyError):
    """A plan file or dict is malformed; the message says where ("plan.json: sources[2].events[5]: ...")."""


@dataclass(frozen=True)
class Source:
    """One sound source. `events`: onsets (float, s) and intervals ((start_s, end_s)), sorted by start; () = it
    makes no sound; None = it sounds at times the plan does not know (a plan from a caption)."""
    id: str
    sound_class: str
    on_screen: bool = True
    events: tuple | None = None
    pan: float | None = None
    trajectory: tuple[tuple[float, float], ...] | None = None
    material: str | None = None
    name: str | None = None
    striker: str | None = None
    motion: str | None = None
    distance: str | None = None
    loudness: str | None = None
    texture: str | None = None

    @property
    def onsets(self) -> list[float]:
        return [float(e) for e in self.events or () if not isinstance(e, tuple)]

    @property
    def intervals(self) -> list[tuple[float, float]]:
        return [e for e in self.events or () if isinstance(e, tuple)]

    @property
    def sounds(self) -> bool:
        """True unless the plan says the source is silent (events == ())."""
        return self.events is None or len(self.events) > 0

    def pans(self) -> list[float]:
        """The pan values the plan gives (the trajectory's points, or the one pan); [] when unplaced."""
        if self.trajectory:
            return [p for _, p in self.trajectory]
        return [] if self.pan is None else [self.pan]

    def pan_at(self, t: float) -> float | None:
        """Pan at time t (s): the trajectory linearly interpolated (held outside it), else the pan; None if unplaced."""
        if not self.trajectory:
            return self.pan
        pts = self.trajectory
        if t <= pts[0][0]:
            return pts[0][1]
        for (t0, p0), (t1, p1) in zip(pts, pts[1:]):
            if t <= t1:
                return p1 if t1 == t0 else p0 + (p1 - p0) * (t - t0) / (t1 - t0)
        return pts[-1][1]


@dataclass(frozen=True)
class Scene:
    room: str | None = None
    loudness: str | None = None
    texture: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    duration_s: float
    sources: tuple[Source, ...] = ()
    scene: Scene = field(default_factory=Scene)

    def source(self, source_id: str) -> Source:
        for s in self.sources:
            if s.id == source_id:
                return s
        raise PlanError(f"plan has no source '{source_id}' (it has: {', '.join(s.id for s in self.sources)})")


_SOURCE_KEYS = {"id", "class", "on_screen", "events", "pan", "trajectory", "material", "name", "striker", "motion",
                "distance", "loudness", "texture"}
_ENUMS = {"material": MATERIALS, "motion": MOTIONS, "distance": DISTANCES, "loudness": LOUDNESS}


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _fmt(x: float) -> str:
    return f"{x:g}"


def parse_plan(data: dict, where: str = "plan") -> Plan:
    """A validated Plan from its JSON form; raises PlanError naming the place ("<where>: sources[1].pan: ...")."""
    def fail(path: str, msg: str):
        raise PlanError(f"{where}: {path}: {msg}" if path else f"{where}: {msg}")

    if not isinstance(data, dict):
        fail("", f"a plan is a JSON object, not {type(data).__name__}")
    for k in data:
        if k not in ("schema", "duration_s", "scene", "sources"):
            fail(k, "unknown key (allowed: schema, duration_s, scene, sources)")
    if data.get("schema") != SCHEMA_ID:
        fail("schema", f"expected \"{SCHEMA_ID}\", got {json.dumps(data.get('schema'))}")
    dur = data.get("duration_s")
    if not _num(dur) or dur <= 0:
        fail("duration_s", f"must be a positive number of seconds, got {json.dumps(dur)}")
    dur = float(dur)
    scene_d = data.get("scene", {})
    if not isinstance(scene_d, dict):
        fail("scene", "must be an object")
    for k in scene_d:
        if k not in ("room", "loudness", "texture"):
            fail(f"scene.{k}", "unknown key (allowed: room, loudness, texture)")
    for k, allowed in (("room", ROOMS), ("loudness", LOUDNESS)):
        if k in scene_d and scene_d[k] not in allowed:
            fail(f"scene.{k}", f"{json.dumps(scene_d[k])} is not one of {', '.join(allowed)}")
    texture = scene_d.get("texture", [])
    if not isinstance(texture, list) or not all(isinstance(w, str) and w.strip() for w in texture):
        fail("scene.texture", "must be a list of non-empty strings")
    scene = Scene(scene_d.get("room"), scene_d.get("loudness"), tuple(w.strip() for w in texture))
    srcs = data.get("sources")
    if not isinstance(srcs, list):
        fail("sources", "must be a list of sources")
    out, seen = [], {}
    for i, s in enumerate(srcs):
        out.append(_parse_source(s, f"sources[{i}]", dur, fail))
        if out[-1].id in seen:
            fail(f"sources[{i}].id", f"'{out[-1].id}' is already the id of sources[{seen[out[-1].id]}]")
        seen[out[-1].id] = i
    return Plan(dur, tuple(out), scene)


def _parse_source(s, at: str, dur: float, fail) -> Source:
    if not isinstance(s, dict):
        fail(at, "a source is an object")
    for k in s:
        if k not in _SOURCE_KEYS:
            fail(f"{at}.{k}", f"unknown key (allowed: {', '.join(sorted(_SOURCE_KEYS))})")
    for k in ("id", "class", "on_screen"):
        if k not in s:
            fail(at, f"missing '{k}'")
    if not isinstance(s["id"], str) or not re.match(_ID_RE, s["id"]):
        fail(f"{at}.id", f"{json.dumps(s['id'])} is not an id (letters, digits, _ . -)")
    if not isinstance(s["class"], str) or not re.match(_CLASS_RE, s["class"]):
        fail(f"{at}.class", f"{json.dumps(s['class'])} is not a class name (lower-case words joined by _)")
    if not isinstance(s["on_screen"], bool):
        fail(f"{at}.on_screen", f"must be true or false, got {json.dumps(s['on_screen'])}")
    if not isinstance(s.get("events", []), list):
        fail(f"{at}.events", "must be a list of onsets and [start, end] intervals")
    events, last = [], -1.0
    for j, e in enumerate(s.get("events", [])):
        p = f"{at}.events[{j}]"
        if _num(e):
            start = end = float(e)
            what = "onset"
            events.append(start)
        elif isinstance(e, list) and len(e) == 2 and all(_num(x) for x in e):
            start, end = float(e[0]), float(e[1])
            what = "interval start"
            if end < start:
                fail(p, f"interval [{_fmt(start)}, {_fmt(end)}] s ends before it starts")
            events.append((start, end))
        else:
            fail(p, f"{json.dumps(e)} is neither an onset (seconds) nor an interval [start, end]")
        if start < 0:
            fail(p, f"{what} {_fmt(start)} s is before the clip starts")
        if start >= dur or end > dur + 1e-9:
            t = start if start >= dur else end
            fail(p, f"{what if t == start else 'interval end'} {_fmt(t)} s is past the clip's {_fmt(dur)} s")
        if start < last:
            fail(p, f"{what} {_fmt(start)} s comes before the previous event ({_fmt(last)} s); sort the events")
        last = start
    if "pan" in s and "trajectory" in s:
        fail(at, "give either 'pan' or 'trajectory', not both")
    pan = s.get("pan")
    if pan is not None and (not _num(pan) or not -1 <= pan <= 1):
        fail(f"{at}.pan", f"{json.dumps(pan)} is not a pan in -1..1")
    traj = None
    if "trajectory" in s:
        tr = s["trajectory"]
        if not isinstance(tr, list) or not tr:
            fail(f"{at}.trajectory", "must be a non-empty list of [time_s, pan]")
        traj, last = [], -1.0
        for j, pt in enumerate(tr):
            p = f"{at}.trajectory[{j}]"
            if not (isinstance(pt, list) and len(pt) == 2 and all(_num(x) for x in pt)):
                fail(p, f"{json.dumps(pt)} is not a point [time_s, pan]")
            t, v = float(pt[0]), float(pt[1])
            if not 0 <= t <= dur:
                fail(p, f"time {_fmt(t)} s is outside the clip (0..{_fmt(dur)} s)")
            if t < last:
                fail(p, f"time {_fmt(t)} s comes before the previous point ({_fmt(last)} s)")
            if not -1 <= v <= 1:
                fail(p, f"pan {_fmt(v)} is outside -1..1")
            traj.append((t, v))
            last = t
        traj = tuple(traj)
    for k, allowed in _ENUMS.items():
        if k in s and s[k] not in allowed:
            fail(f"{at}.{k}", f"{json.dumps(s[k])} is not one of {', '.join(allowed)}")
    for k in ("name", "striker", "texture"):
        if k in s and (not isinstance(s[k], str) or not s[k].strip()):
            fail(f"{at}.{k}", "must be a non-empty string")
    return Source(id=s["id"], sound_class=s["class"], on_screen=s["on_screen"],
                  events=tuple(events) if "events" in s else None,
                  pan=None if pan is None else float(pan), trajectory=traj, material=s.get("material"),
                  name=s.get("name"), striker=s.get("striker"), motion=s.get("motion"),
                  distance=s.get("distance"), loudness=s.get("loudness"), texture=s.get("texture"))


def plan_to_dict(plan: Plan) -> dict:
    """The plan's JSON form (optional keys left out when unset); parse_plan(plan_to_dict(p)) == p."""
    scene = {k: v for k, v in (("room", plan.scene.room), ("loudness", plan.scene.loudness)) if v is not None}
    if plan.scene.texture:
        scene["texture"] = list(plan.scene.texture)
    srcs = []
    for s in plan.sources:
        d = {"id": s.id, "class": s.sound_class, "on_screen": s.on_screen}
        if s.events is not None:
            d["events"] = [list(e) if isinstance(e, tuple) else e for e in s.events]
        if s.pan is not None:
            d["pan"] = s.pan
        if s.trajectory is not None:
            d["trajectory"] = [list(p) for p in s.trajectory]
        for k in ("material", "name", "striker", "motion", "distance", "loudness", "texture"):
            if getattr(s, k) is not None:
                d[k] = getattr(s, k)
        srcs.append(d)
    out = {"schema": SCHEMA_ID, "duration_s": plan.duration_s}
    if scene:
        out["scene"] = scene
    out["sources"] = srcs
    return out


def validate(plan: Plan, where: str = "plan") -> Plan:
    """Checks a Plan built in code (types, ranges, times within the clip, sorted events, unique ids); returns it."""
    return parse_plan(plan_to_dict(plan), where)


def read_plan(path: str | Path) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"plan file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PlanError(f"{path.name}: not valid JSON ({e})") from None
    return parse_plan(data, path.name)


def write_plan(path: str | Path, plan: Plan) -> Path:
    """Writes the plan's JSON form atomically (a temporary file renamed over the target)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(plan_to_dict(plan), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------- edits
def move_event(plan: Plan, source_id: str, index: int, new_time_s: float) -> Plan:
    """A new plan with event `index` of the source moved to start at new_time_s (an interval keeps its length;
    a trajectory point at the old time moves with it); events are re-sorted. Raises PlanError if out of range."""
    src = plan.source(source_id)
    if not 0 <= index < len(src.events or ()):
        raise PlanError(f"source '{source_id}' has {len(src.events or ())} events; there is no event {index}")
    old = src.events[index]
    old_t = old[0] if isinstance(old, tuple) else old
    new = (new_time_s, new_time_s + old[1] - old[0]) if isinstance(old, tuple) else float(new_time_s)
    events = sorted(src.events[:index] + (new,) + src.events[index + 1:],
                    key=lambda e: e[0] if isinstance(e, tuple) else e)
    traj = src.trajectory
    if traj:
        traj = tuple(sorted(((new_time_s if t == old_t else t), p) for t, p in traj))
    return validate(_replace_source(plan, dataclasses.replace(src, events=tuple(events), trajectory=traj)))


def set_pan(plan: Plan, source_id: str, pan: float) -> Plan:
    """A new plan where the source sits still at `pan` (-1..1); its trajectory, if any, is dropped."""
    src = plan.source(source_id)
    return validate(_replace_source(plan, dataclasses.replace(src, pan=float(pan), trajectory=None)))


def shift_pan(plan: Plan, source_id: str, delta: float) -> Plan:
    """A new plan with the source's pan (or every trajectory point) moved by delta, clipped to -1..1."""
    src = plan.source(source_id)
    clip = lambda p: max(-1.0, min(1.0, p + delta))  # noqa: E731
    traj = tuple((t, clip(p)) for t, p in src.trajectory) if src.trajectory else None
    pan = None if src.pan is None else clip(src.pan)
    return validate(_replace_source(plan, dataclasses.replace(src, pan=pan, trajectory=traj)))


def remove_source(plan: Plan, source_id: str) -> Plan:
    """A new plan without the source."""
    plan.source(source_id)
    return dataclasses.replace(plan, sources=tuple(s for s in plan.sources if s.id != source_id))


def _replace_source(plan: Plan, new: Source) -> Plan:
    return dataclasses.replace(plan, sources=tuple(new if s.id == new.id else s for s in plan.sources))
