"""FoleyWorld physics: turns a scene plan into per-frame poses and timed SoundEvents.

Bodies are simulated with pymunk (Chipmunk2D rigid bodies) at `physics_hz`; a collision callback records the exact
substep of every first contact and its normal impact speed. Strikers, instruments and vehicles are animated
analytically (their timing is planned in scene.py). Departure from a plain simulation, so that pictures and labels
agree: poses are sampled at frame times, except that the frame nearest each labelled contact shows the pose at the
contact itself (a shift of at most half a frame), so every labelled contact is visible at its labelled frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from foleyflow.events import SoundEvent
from foleyflow.world.config import WorldConfig
from foleyflow.world.scene import BAR_CLASSES, DENSITY, ELASTICITY, FLOOR_Y, FRICTION, WORLD_W, Body, Instrument, \
    Scene, Vehicle

MIN_IMPACT_SPEED = 0.6       # m/s: slower first contacts are silent
MIN_EVENT_GAP_S = 0.06       # contacts of one body closer than this are one event
STRIKER_LIFT_M = 0.35
ROLL_MIN_SPEED = 0.25        # m/s
ROLL_MIN_DURATION_S = 0.2


@dataclass
class Simulation:
    """Per-frame state (F = num_frames, frame k at k / fps) and the scene's sound events, sorted by onset."""
    times: np.ndarray
    bodies: dict[int, np.ndarray] = field(default_factory=dict)     # id -> (F, 3) x_m, y_m, angle_rad
    strikers: dict[int, np.ndarray] = field(default_factory=dict)   # id -> (F, 3) head x_m, y_m, note index
    vehicles: dict[int, np.ndarray] = field(default_factory=dict)   # id -> (F,) x as a fraction of the frame width
    events: list[SoundEvent] = field(default_factory=list)


def pan_of(x_m: float) -> float:
    return float(np.clip(2.0 * x_m / WORLD_W - 1.0, -1.0, 1.0))


def body_vertices(body: Body) -> np.ndarray:
    """(V, 2) outline in body coordinates (metres); a ball is a 24-gon."""
    s = body.size_m
    if body.shape == "ball":
        a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return np.stack([np.cos(a), np.sin(a)], 1) * s / 2
    if body.shape == "box":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * s / 2
    if body.shape == "plank":
        return np.array([[-1, -0.22], [1, -0.22], [1, 0.22], [-1, 0.22]]) * s / 2
    return np.array([[-0.5, -0.4], [0.5, -0.4], [0.0, 0.5]]) * s  # wedge


def world_vertices(body: Body, pose) -> np.ndarray:
    x, y, a = pose
    c, s = np.cos(a), np.sin(a)
    v = body_vertices(body)
    return np.stack([v[:, 0] * c - v[:, 1] * s + x, v[:, 0] * s + v[:, 1] * c + y], 1)


def instrument_geometry(ins: Instrument) -> dict:
    """Where an instrument's parts are and where its striker meets it, in metres.

    Returns {"parts": [(x0, y0, x1, y1, shade)], "contacts": [(x, y)] per note, "approach": (dx, dy) unit vector
    from the contact towards the striker's rest position, "striker": kind}. Longer bars, tubes and lower keys or
    spots mean lower notes: pitch follows what is seen.
    """
    s, x, c = ins.scale, ins.x_m, ins.sound_class
    n = len(ins.notes)
    parts, contacts = [], []
    if c in BAR_CLASSES or c == "piano_key" or c == "steel_drum":
        width = (0.9 if c != "piano_key" else 0.8) * s
        pitch = width / n
        stand = 0.15 if c in BAR_CLASSES else 0.45
        parts.append((x - width / 2 - 0.03, FLOOR_Y, x + width / 2 + 0.03, FLOOR_Y + stand, 0.55))
        for i in range(n):
            cx = x - width / 2 + pitch * (i + 0.5)
            if c in BAR_CLASSES:
                length = (0.75 - 0.4 * i / max(1, n - 1)) * s
                top = FLOOR_Y + stand + length
                parts.append((cx - pitch * 0.38, FLOOR_Y + stand, cx + pitch * 0.38, top, 1.0 - 0.05 * (i % 2)))
            elif c == "piano_key":
                top = FLOOR_Y + stand + 0.12 * s
                parts.append((cx - pitch * 0.46, FLOOR_Y + stand, cx + pitch * 0.46, top, 1.0))
            else:  # steel drum: a shallow pan; spots further right are higher notes
                top = FLOOR_Y + stand + 0.18 * s
                parts.append((cx - pitch * 0.5, FLOOR_Y + stand + 0.02, cx + pitch * 0.5, top, 0.9 - 0.1 * (i % 2)))
            contacts.append((cx, top))
        approach, kind = (0.0, 1.0), ("finger" if c == "piano_key" else "mallet")
    elif c == "tubular_bells":
        width, rail = 0.9 * s, FLOOR_Y + 1.7 * s
        pitch = width / n
        parts.append((x - width / 2 - 0.05, rail, x + width / 2 + 0.05, rail + 0.05, 0.5))
        for i in range(n):
            cx = x - width / 2 + pitch * (i + 0.5)
            length = (1.4 - 0.6 * i / max(1, n - 1)) * s
            parts.append((cx - pitch * 0.2, rail - length, cx + pitch * 0.2, rail, 1.0))
            contacts.append((cx, rail - 0.15 * s))
        approach, kind = (-0.6, 0.8), "hammer"
    elif c == "hand_clap":
        top = FLOOR_Y + 1.0 * s
        parts.append((x - 0.12 * s, top - 0.3 * s, x - 0.02 * s, top, 1.0))   # the left hand
        contacts.append((x - 0.02 * s, top - 0.15 * s))
        approach, kind = (1.0, 0.0), "hand"
    else:  # kit pieces on a stand: wood_block, cowbell, claves, snare, tom
        dims = {"wood_block": (0.3, 0.12, 0.5), "cowbell": (0.2, 0.25, 0.55), "claves": (0.4, 0.05, 0.6),
                "snare": (0.5, 0.2, 0.45), "tom": (0.45 + 0.02 * (50 - ins.notes[0]), 0.35, 0.35)}[c]
        w, h, stand = dims[0] * s, dims[1] * s, dims[2]
        parts.append((x - 0.02, FLOOR_Y, x + 0.02, FLOOR_Y + stand, 0.4))
        parts.append((x - w / 2, FLOOR_Y + stand, x + w / 2, FLOOR_Y + stand + h, 1.0))
        contacts.append((x, FLOOR_Y + stand + h))
        approach, kind = (0.0, 1.0), ("clave" if c == "claves" else "stick")
    return {"parts": parts, "contacts": contacts, "approach": approach, "striker": kind}


def _striker_track(ins: Instrument, times: np.ndarray, fps: int) -> np.ndarray:
    """(F, 3) striker head position and current note index; the head is at the contact exactly at strike times."""
    geo = instrument_geometry(ins)
    contacts = np.asarray(geo["contacts"])
    ax, ay = geo["approach"]
    st = np.array([s[0] for s in ins.strikes])
    idx = np.array([s[1] for s in ins.strikes])
    tau = np.array([s[2] for s in ins.strikes])
    lift = np.minimum(1.0, np.min(np.abs(times[:, None] - st[None]) / tau[None], axis=1))
    # Horizontal position: glide between consecutive strike contacts while lifted (smoothstep).
    k = np.clip(np.searchsorted(st, times) - 1, 0, len(st) - 1)
    k1 = np.minimum(k + 1, len(st) - 1)
    a, b = st[k] + tau[k], st[k1] - tau[k1]
    u = np.clip((times - a) / np.maximum(b - a, 1e-6), 0, 1)
    u = np.where(times < st[0], 0.0, u * u * (3 - 2 * u))
    first = times < st[0]
    base = np.where(first[:, None], contacts[idx[0]][None], contacts[idx[k]] * (1 - u)[:, None]
                    + contacts[idx[k1]] * u[:, None])
    note = np.where(first | (u < 0.5), idx[np.where(first, 0, k)], idx[k1])
    for t_s in st:  # the nearest frame shows the contact
        f = int(round(t_s * fps))
        if 0 <= f < len(times):
            lift[f] = 0.0
    head = base + STRIKER_LIFT_M * lift[:, None] * np.array([ax, ay])[None]
    return np.concatenate([head, note[:, None].astype(float)], 1)


def _simulate_bodies(scene: Scene, cfg: WorldConfig, sim: Simulation) -> None:
    import pymunk

    bodies = [b for b in scene.bodies]
    if not bodies:
        return
    space = pymunk.Space()
    space.gravity = (0.0, -9.81)
    static = space.static_body
    walls = [pymunk.Segment(static, (-2, FLOOR_Y), (WORLD_W + 2, FLOOR_Y), 0.0),
             pymunk.Segment(static, (0, FLOOR_Y), (0, 20), 0.0),
             pymunk.Segment(static, (WORLD_W, FLOOR_Y), (WORLD_W, 20), 0.0)]
    for w, name in zip(walls, ("floor", "wall", "wall")):
        w.elasticity, w.friction = 0.8, 0.7
        w.surface = name
    space.add(*walls)
    pm, shape_of = {}, {}
    for b in bodies:
        verts = body_vertices(b)
        x, y = verts[:, 0], verts[:, 1]
        area = np.pi * (b.size_m / 2) ** 2 if b.shape == "ball" else 0.5 * abs(x @ np.roll(y, -1) - y @ np.roll(x, -1))
        mass = max(1e-3, DENSITY[b.material] * area * 10)
        if b.shape == "ball":
            moment = pymunk.moment_for_circle(mass, 0, b.size_m / 2)
            body = pymunk.Body(mass, moment)
            shape = pymunk.Circle(body, b.size_m / 2)
        else:
            moment = pymunk.moment_for_poly(mass, verts.tolist())
            body = pymunk.Body(mass, moment)
            shape = pymunk.Poly(body, verts.tolist())
        body.position, body.velocity = (b.x_m, b.y_m), (b.vx, b.vy)
        body.angle, body.angular_velocity = b.angle, b.spin
        shape.elasticity, shape.friction = ELASTICITY[b.material], FRICTION[b.material]
        shape.surface = b.id
        pm[b.id], shape_of[b.id] = body, shape
    by_id = {b.id: b for b in bodies}
    contacts = []           # (substep, body_id, other, speed, point)
    on_floor = {b.id: 0 for b in bodies}
    step = [0]

    def begin(arb, _space, _data):
        sa, sb = arb.shapes
        n = arb.normal
        pts = arb.contact_point_set.points
        p = pts[0].point_a if pts else sa.body.position
        rel = sa.body.velocity_at_world_point(p) - sb.body.velocity_at_world_point(p)
        speed = abs(rel.dot(n))
        for me, other in ((sa, sb), (sb, sa)):
            if isinstance(me.surface, int):
                if other.surface == "floor":
                    on_floor[me.surface] += 1
                contacts.append((step[0], me.surface, other.surface, speed, (p.x, p.y)))

    def post_solve(arb, _space, _data):
        # A persisting contact can still slap (a box landing on a corner, then falling flat): a large impulse in
        # one substep is a new impact, with the normal speed it removed.
        if arb.is_first_contact:
            return
        sa, sb = arb.shapes
        imp = arb.total_impulse.length
        for me, other in ((sa, sb), (sb, sa)):
            if isinstance(me.surface, int):
                dv = imp / me.body.mass / (1.0 + ELASTICITY[by_id[me.surface].material])
                if dv > MIN_IMPACT_SPEED:
                    pts = arb.contact_point_set.points
                    p = pts[0].point_a if pts else me.body.position
                    contacts.append((step[0], me.surface, other.surface, dv, (p.x, p.y)))

    def separate(arb, _space, _data):
        sa, sb = arb.shapes
        for me, other in ((sa, sb), (sb, sa)):
            if isinstance(me.surface, int) and other.surface == "floor":
                on_floor[me.surface] = max(0, on_floor[me.surface] - 1)

    space.on_collision(None, None, begin=begin, post_solve=post_solve, separate=separate)
    sub = cfg.physics_hz // cfg.fps
    dt = 1.0 / cfg.physics_hz
    n_frames = len(sim.times)
    poses = {i: np.zeros((n_frames, 3)) for i in pm}
    contact_pose = {}       # (id, substep) -> pose at that substep
    speed_fr = {i: np.zeros(n_frames) for i in pm}
    touching = {i: np.zeros(n_frames, bool) for i in pm}
    spin_fr = {i: np.zeros(n_frames) for i in pm}

    def record(f):
        for i, body in pm.items():
            poses[i][f] = (body.position.x, body.position.y, body.angle)
            speed_fr[i][f] = abs(body.velocity.x)
            spin_fr[i][f] = abs(body.angular_velocity)
            touching[i][f] = on_floor[i] > 0

    waiting = sorted(bodies, key=lambda b: b.release_s)
    while waiting and waiting[0].release_s <= 0:
        b = waiting.pop(0)
        space.add(pm[b.id], shape_of[b.id])
    record(0)
    total = (n_frames - 1) * sub
    for s in range(1, total + 1):
        step[0] = s
        while waiting and waiting[0].release_s <= (s - 1) * dt:
            b = waiting.pop(0)
            space.add(pm[b.id], shape_of[b.id])
        n_before = len(contacts)
        space.step(dt)
        for c in contacts[n_before:]:
            body = pm[c[1]]
            contact_pose[(c[1], s)] = (body.position.x, body.position.y, body.angle)
        if s % sub == 0:
            record(s // sub)
    # Contacts -> discrete impact events (one body per pair: the other body's own event covers object contacts).
    last = {}
    events = []
    for s, bid, other, speed, point in contacts:
        b = by_id[bid]
        if b.silent or speed < MIN_IMPACT_SPEED:
            continue
        if isinstance(other, int):
            if not by_id[other].silent and other < bid:
                continue
            surface = "object"
        else:
            surface = other
        t = s * dt
        if world_vertices(b, contact_pose[(bid, s)])[:, 1].min() >= WORLD_W:
            continue    # still above the top of the frame: a contact nobody could see stays silent
        if bid in last and t - last[bid].onset_s < MIN_EVENT_GAP_S:
            if speed > last[bid].params["impact_speed"]:
                last[bid].params["impact_speed"] = round(float(speed), 4)
            continue
        frame = int(round(t * cfg.fps))
        if frame < n_frames:
            poses[bid][frame] = contact_pose[(bid, s)]
        ev = SoundEvent(f"impact_{b.material}", "discrete", round(t, 6), source_id=bid,
                        gain=round(float(np.clip((b.size_m / 0.3) ** 0.5, 0.5, 1.5)), 4), pan=pan_of(point[0]),
                        params={"material": b.material, "shape": b.shape, "size": round(b.size_m, 4),
                                "impact_speed": round(float(speed), 4), "contact": surface, "frame": frame})
        last[bid] = ev
        events.append(ev)
    # Rolling / sliding: continuous friction sound while touching the floor and moving.
    for i, b in ((i, by_id[i]) for i in pm):
        if b.silent:
            continue
        moving = touching[i] & (speed_fr[i] > ROLL_MIN_SPEED)
        if b.shape != "ball":
            moving &= spin_fr[i] < 1.5
        for f0, f1 in _runs(moving):
            if (f1 - f0) / cfg.fps < ROLL_MIN_DURATION_S:
                continue
            fr = range(f0, f1)
            events.append(SoundEvent(
                "rolling", "continuous", round(f0 / cfg.fps, 6), offset_s=round((f1 - 1) / cfg.fps, 6), source_id=i,
                gain=round(float(np.clip((b.size_m / 0.3) ** 0.5, 0.5, 1.5)), 4), pan=pan_of(poses[i][f0, 0]),
                pan_track=[(round(f / cfg.fps, 4), round(pan_of(poses[i][f, 0]), 4)) for f in fr],
                param_track={"speed": [(round(f / cfg.fps, 4), round(float(speed_fr[i][f]), 4)) for f in fr]},
                params={"material": b.material, "shape": b.shape, "size": round(b.size_m, 4),
                        "mode": "roll" if b.shape == "ball" else "slide", "sliding": b.shape != "ball"}))
    sim.bodies.update(poses)
    sim.events.extend(events)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _vehicle_event(v: Vehicle, times: np.ndarray, duration_s: float) -> tuple[np.ndarray, SoundEvent | None]:
    """Frame positions and the engine event; its level follows param_track["distance"] (the renderer's
    ref_distance / distance), so `gain` stays 1; Doppler follows the distance's rate of change."""
    x = v.x_frac(times)
    audible = np.abs(x - 0.5) < 1.5
    if not audible.any():
        return x, None
    f = np.flatnonzero(audible)
    xr = (x - 0.5) * v.road_width_m
    dist = np.sqrt(xr ** 2 + v.depth_m ** 2)
    radial = v.speed_mps * xr / dist
    pans = np.clip(2 * x - 1, -1, 1)
    tr = [round(float(t), 4) for t in times]
    ev = SoundEvent("engine", "continuous", round(float(times[f[0]]), 6), offset_s=round(float(times[f[-1]]), 6),
                    source_id=v.id, on_screen=v.on_screen, gain=1.0,
                    pan=round(float(pans[f[0]]), 4), pan_track=[(tr[k], round(float(pans[k]), 4)) for k in f],
                    param_track={"speed": [(tr[k], round(abs(v.speed_mps), 4)) for k in f],
                                 "radial_velocity": [(tr[k], round(float(radial[k]), 4)) for k in f],
                                 "distance": [(tr[k], round(float(dist[k]), 4)) for k in f]},
                    params={"vehicle": v.kind, "depth_m": round(v.depth_m, 4), "speed_mps": round(v.speed_mps, 4),
                            "f0_hz": {"car": 48.0, "van": 40.0, "truck": 30.0}[v.kind], "ref_distance": 8.0})
    return x, ev


def simulate(scene: Scene, cfg: WorldConfig) -> Simulation:
    """Runs the scene: poses per frame and every SoundEvent (ambience, impacts, rolling, strikes, engines)."""
    times = np.arange(cfg.num_frames) / cfg.fps
    sim = Simulation(times)
    _simulate_bodies(scene, cfg, sim)
    for ins in scene.instruments:
        geo = instrument_geometry(ins) if ins.on_screen else None
        if ins.on_screen:
            sim.strikers[ins.id] = _striker_track(ins, times, cfg.fps)
        for t, k, tau in ins.strikes:
            pan = pan_of(geo["contacts"][k][0]) if geo else ins.offscreen_pan
            speed = STRIKER_LIFT_M / tau
            sim.events.append(SoundEvent(
                ins.sound_class, "discrete", t, source_id=ins.id, on_screen=ins.on_screen,
                gain=round(float(ins.scale), 4), pan=round(pan, 4),
                params={"midi_note": int(ins.notes[k]), "note_index": int(k),
                        "velocity": int(np.clip(40 + 18 * speed, 1, 127)), "impact_speed": round(speed, 4),
                        "contact": "striker", "frame": int(round(t * cfg.fps))}))
    for v in scene.vehicles:
        x, ev = _vehicle_event(v, times, cfg.duration_s)
        if v.on_screen:
            sim.vehicles[v.id] = x
        if ev is not None:
            sim.events.append(ev)
    for name, level in (("rain", scene.rain), ("wind", abs(scene.wind)), ("room_tone", scene.room_tone)):
        if level > 0:
            sim.events.append(SoundEvent(name, "ambience", 0.0, offset_s=float(cfg.duration_s), gain=round(level, 4),
                                         pan=round(0.3 * float(np.sign(scene.wind)), 4) if name == "wind" else 0.0,
                                         params={"intensity": round(level, 4)}))
    sim.events.sort(key=lambda e: (e.onset_s, e.source_id or 0, e.sound_class))
    return sim


HARD_MIN_CONCURRENT = 3


def plan_clip(seed: int, split: str, cfg: WorldConfig) -> tuple[Scene, Simulation]:
    """Scene and simulation of clip `seed`; in test-hard, redraws (deterministically) until at least
    HARD_MIN_CONCURRENT sources sound at the same time."""
    from foleyflow.world.scene import sample_scene
    from foleyflow.world.truth import event_stats

    for attempt in range(50):
        scene = sample_scene(seed, split, cfg, attempt)
        sim = simulate(scene, cfg)
        if split != "test-hard" or event_stats(sim.events, cfg.duration_s)["max_concurrent_sources"] >= \
                HARD_MIN_CONCURRENT:
            break
    return scene, sim
