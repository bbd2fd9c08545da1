"""FoleyWorld scene sampling: from a seed, what is in a clip (objects, instruments, vehicles, ambience, room).

A scene is a plan, not a simulation: bodies get their starting state (physics.py decides when they hit things),
instruments get their strike schedule (the striker is animated to meet it), vehicles get their lane and speed.
World units are metres; the stage is `WORLD_W` wide and as tall (square frames), y up, the floor at `FLOOR_Y`.
Split profiles (PrismAudio's AudioCanvas for dense scenes, Omni2Sound for off-screen sources):
  test-hard       at least 3 sounding sources, about twice the strike rate;
  test-offscreen  at least one source that is heard but never seen.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from foleyflow.events import MATERIALS, ROOMS
from foleyflow.world.config import WorldConfig

WORLD_W = 4.0          # metres across the frame (and up it)
FLOOR_Y = 0.5          # floor height in metres
SHAPES = ("ball", "box", "wedge", "plank")
SILENT_MATERIAL = "foam"  # a visible material that makes no sound

# GM percussion keys and pitched ranges (the sound bank maps class + midi_note to a sample).
PITCHED = {"marimba": (48, 84), "xylophone": (60, 96), "glockenspiel": (72, 96), "tubular_bells": (60, 77),
           "steel_drum": (52, 76), "piano_key": (48, 84)}
BAR_CLASSES = ("marimba", "xylophone", "glockenspiel")
KIT_NOTES = {"wood_block": (76, 77), "cowbell": (56, 56), "claves": (75, 75), "hand_clap": (39, 39),
             "snare": (38, 40), "tom": (41, 50)}
INSTRUMENT_CLASSES = tuple(PITCHED) + tuple(KIT_NOTES)
PENTATONIC = (0, 2, 4, 7, 9)

PALETTE = {
    "wood": [(150, 100, 55), (181, 131, 77), (120, 78, 40), (196, 160, 105)],
    "metal": [(150, 155, 165), (110, 120, 135), (185, 185, 190), (160, 140, 110)],
    "glass": [(170, 225, 235), (160, 235, 190), (200, 215, 250)],
    "plastic": [(225, 40, 45), (250, 200, 30), (40, 110, 230), (40, 190, 80), (220, 60, 200)],
    SILENT_MATERIAL: [(250, 190, 210), (205, 235, 250), (245, 240, 200)],
}
ELASTICITY = {"wood": 0.5, "metal": 0.45, "glass": 0.55, "plastic": 0.65, SILENT_MATERIAL: 0.05}
FRICTION = {"wood": 0.6, "metal": 0.35, "glass": 0.25, "plastic": 0.5, SILENT_MATERIAL: 0.9}
DENSITY = {"wood": 0.7, "metal": 7.8, "glass": 2.5, "plastic": 1.0, SILENT_MATERIAL: 0.05}


@dataclass
class Body:
    """A physics object. size_m: diameter (ball) or side (box, wedge) or length (plank).

    Bodies released later than t = 0 start above the top of the frame and fall into view.
    """
    id: int
    material: str
    shape: str
    size_m: float
    color: tuple[int, int, int]
    x_m: float
    y_m: float
    vx: float
    vy: float
    angle: float
    spin: float
    silent: bool = False
    release_s: float = 0.0     # before this time the body waits above the frame (or at its start, if t = 0)


@dataclass
class Instrument:
    """A struck instrument on the floor at x_m (centre), hit by a visible striker (or heard off-screen).

    notes: midi note per bar/key/tube/spot (one for kit pieces). strikes: [(time_s, note_index, lift_time_s)],
    where lift_time_s is how long the striker takes to travel its lift height (shorter = harder hit).
    """
    id: int
    sound_class: str
    x_m: float
    notes: list[int]
    strikes: list[tuple[float, int, float]]
    color: tuple[int, int, int]
    scale: float = 1.0
    on_screen: bool = True
    offscreen_pan: float = 0.0


@dataclass
class Vehicle:
    """A vehicle crossing along a road at depth_m (real metres); speed_mps signed (+ = left to right).

    x_frac(t) = x0_frac + speed_mps * t / road_width_m, where the frame spans road_width_m at that depth.
    """
    id: int
    kind: str
    color: tuple[int, int, int]
    depth_m: float
    speed_mps: float
    x0_frac: float
    on_screen: bool = True

    @property
    def road_width_m(self) -> float:
        return 1.15 * self.depth_m  # a 60 degree horizontal field of view

    def x_frac(self, t):
        return self.x0_frac + self.speed_mps * np.asarray(t) / self.road_width_m


@dataclass
class Scene:
    seed: int
    split: str
    room: str
    duration_s: float
    bodies: list[Body] = field(default_factory=list)
    instruments: list[Instrument] = field(default_factory=list)
    vehicles: list[Vehicle] = field(default_factory=list)
    rain: float = 0.0          # intensity 0..1 (0 = none)
    wind: float = 0.0          # signed strength -1..1 (+ blows to the right; 0 = none)
    room_tone: float = 0.0

    @property
    def outdoor(self) -> bool:
        return self.room == "dry"

    def to_json(self) -> dict:
        return asdict(self)


def _strike_times(rng, rate: float, duration_s: float, min_gap: float = 0.3) -> list[float]:
    times, t = [], 0.3 + rng.exponential(1.0 / rate)
    while t < duration_s - 0.4:
        times.append(round(float(t), 4))
        t += min_gap + rng.exponential(1.0 / rate)
    return times or [round(float(rng.uniform(0.3, max(0.31, duration_s - 0.4))), 4)]


def _instrument(rng, iid: int, cls: str, x_m: float, rate: float, duration_s: float) -> Instrument:
    if cls in PITCHED:
        lo, hi = PITCHED[cls]
        n = 1 if cls == "steel_drum" and rng.random() < 0.2 else int(rng.integers(4, 8))
        root = int(rng.integers(lo, max(lo + 1, hi - 14)))
        scale = [root + 12 * (k // 5) + PENTATONIC[k % 5] for k in range(n + 3)]
        start = int(rng.integers(0, 3))
        notes = [min(hi, s) for s in scale[start:start + n]]
        notes = sorted(set(notes)) if len(set(notes)) == len(notes) else sorted(notes)
    else:
        lo, hi = KIT_NOTES[cls]
        notes = [int(rng.integers(lo, hi + 1))]
    strikes = [(t, int(rng.integers(0, len(notes))), round(float(rng.uniform(0.07, 0.14)), 4))
               for t in _strike_times(rng, rate, duration_s)]
    palette = {"marimba": (120, 70, 40), "xylophone": (170, 110, 60), "glockenspiel": (200, 200, 210),
               "tubular_bells": (210, 190, 120), "steel_drum": (190, 195, 205), "piano_key": (245, 245, 240),
               "wood_block": (160, 95, 45), "cowbell": (90, 90, 95), "claves": (190, 130, 70),
               "hand_clap": (235, 190, 160), "snare": (230, 230, 235), "tom": (170, 40, 40)}[cls]
    return Instrument(iid, cls, float(x_m), notes, strikes, palette, float(rng.uniform(0.85, 1.15)))


def _body(rng, bid: int, silent: bool, slide: bool, duration_s: float) -> Body:
    material = SILENT_MATERIAL if silent else str(rng.choice(MATERIALS))
    shape = str(rng.choice(SHAPES if not slide else ("box", "plank")))
    size = float(rng.uniform(0.25, 0.5)) if shape != "plank" else float(rng.uniform(0.5, 0.8))
    colors = PALETTE[material]
    color = tuple(int(c) for c in colors[int(rng.integers(0, len(colors)))])
    if slide:  # starts on the floor, pushed sideways: slides with friction
        x = float(rng.uniform(0.5, 1.2))
        vx = float(rng.uniform(2.0, 3.5))
        if rng.random() < 0.5:
            x, vx = WORLD_W - x, -vx
        return Body(bid, material, shape, size, color, x, FLOOR_Y + 0.6, vx, 0.0, 0.0, 0.0, silent)
    release = 0.0 if rng.random() < 0.4 else round(float(rng.uniform(0.0, max(0.0, duration_s - 2.5))), 3)
    y = float(rng.uniform(1.8, 3.4)) if release == 0.0 else WORLD_W + size
    return Body(bid, material, shape, size, color, float(rng.uniform(0.5, WORLD_W - 0.5)), y,
                float(rng.uniform(-1.5, 1.5)), float(rng.uniform(-1.0, 0.5)), float(rng.uniform(0, 2 * np.pi)),
                float(rng.uniform(-4, 4)), silent, release)


def _separate(bodies: list[Body]) -> None:
    """Lifts bodies that would start overlapping a body placed before them (same release time) above it."""
    for k, b in enumerate(bodies):
        for other in bodies[:k]:
            if other.release_s != b.release_s:
                continue
            reach = 0.75 * (b.size_m + other.size_m)
            if abs(b.x_m - other.x_m) < reach and abs(b.y_m - other.y_m) < reach:
                b.y_m = other.y_m + reach + 0.05


def sample_scene(seed: int, split: str, cfg: WorldConfig, attempt: int = 0) -> Scene:
    """The scene of clip `seed` in `split` (the split only changes the profile; seeds of splits never overlap).
    `attempt` > 0 draws another scene for the same seed (used when a split's requirement is not met)."""
    rng = np.random.default_rng([seed, 0x5CE2E] + ([attempt] if attempt else []))
    hard, offscreen = split == "test-hard", split == "test-offscreen"
    room = str(rng.choice(ROOMS, p=[0.45, 0.3, 0.25]))
    scene = Scene(int(seed), split, room, float(cfg.duration_s))
    dur = cfg.duration_s
    if scene.outdoor:
        scene.rain = float(rng.uniform(0.3, 1.0)) if rng.random() < cfg.p_rain else 0.0
        scene.wind = float(rng.uniform(0.3, 1.0) * rng.choice([-1, 1])) if rng.random() < cfg.p_wind else 0.0
    else:
        scene.room_tone = float(rng.uniform(0.2, 0.6))

    n_obj = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    n_ins = int(rng.integers(cfg.instruments[0], cfg.instruments[1] + 1))
    rate = cfg.strike_rate * (2.0 if hard else 1.0)
    if hard:
        n_obj, n_ins = max(n_obj, 2), max(n_ins, 2)
    has_vehicle = rng.random() < (0.5 if hard else cfg.p_vehicle) and scene.outdoor  # roads are outdoors
    want_offscreen = offscreen or rng.random() < cfg.p_offscreen
    if n_obj + n_ins + int(has_vehicle) == 0:
        n_obj = 1
    next_id = 1
    # Instruments stand in distinct horizontal slots; bodies fall anywhere in front of them.
    slots = rng.permutation(np.linspace(0.75, WORLD_W - 0.75, 4))[:n_ins]
    classes = rng.choice(INSTRUMENT_CLASSES, size=n_ins, replace=False)
    for cls, x in zip(classes, slots):
        scene.instruments.append(_instrument(rng, next_id, str(cls), float(x), rate, dur))
        next_id += 1
    silent_idx = int(rng.integers(0, n_obj)) if n_obj and rng.random() < cfg.p_silent else -1
    for k in range(n_obj):
        slide = k != silent_idx and rng.random() < 0.2
        scene.bodies.append(_body(rng, next_id, k == silent_idx, slide, dur))
        next_id += 1
    _separate(scene.bodies)
    if sum(not b.silent for b in scene.bodies) + n_ins == 0 and not has_vehicle:
        scene.bodies.append(_body(rng, next_id, False, False, dur))
        next_id += 1
    if has_vehicle:
        scene.vehicles.append(_vehicle(rng, next_id, dur, on_screen=True))
        next_id += 1
    if want_offscreen:
        if rng.random() < 0.35:
            scene.vehicles.append(_vehicle(rng, next_id, dur, on_screen=False))
        else:
            used = {i.sound_class for i in scene.instruments}
            cls = str(rng.choice([c for c in INSTRUMENT_CLASSES if c not in used]))
            ins = _instrument(rng, next_id, cls, -1.0, rate, dur)
            ins.on_screen = False
            ins.offscreen_pan = float(rng.choice([-1, 1]) * rng.uniform(0.6, 1.0))
            scene.instruments.append(ins)
        next_id += 1
    return scene


def _vehicle(rng, vid: int, duration_s: float, on_screen: bool) -> Vehicle:
    kind = str(rng.choice(["car", "van", "truck"]))
    depth = float(rng.uniform(10, 25))
    speed = float(rng.uniform(8, 20)) * float(rng.choice([-1, 1]))
    width = 1.15 * depth
    # Cross the centre of the frame at a time inside the clip.
    t_mid = float(rng.uniform(0.25, 0.75) * duration_s)
    x0 = 0.5 - speed * t_mid / width
    color = tuple(int(c) for c in rng.integers(30, 230, size=3))
    return Vehicle(vid, kind, color, depth, speed, float(x0), on_screen)
