"""FoleyWorld ground truth: one JSON document per clip with everything the metrics check against.

Layout (version 1): id, seed, split, duration_s, fps, size, sample_rate, room, ambience {rain, wind, room_tone},
objects [{id, type: body | instrument | vehicle, visible, silent, description fields, trajectory}], events
[SoundEvent.to_json() ...] sorted by onset (offset_s filled by the renderer; params gains azimuth_deg), stats {num_discrete, num_sources,
event_density_per_s, max_concurrent_sources}, config (the WorldConfig that made the clip).
Trajectories are per frame (frame k at k / fps): bodies [x_m, y_m, angle_rad], strikers [x_m, y_m, note_index],
vehicles [x as a fraction of the frame width]; visible instruments also name their striker (mallet, stick, hammer,
finger, clave, hand); world x spans 0..4 m across the frame, y up, floor at 0.5 m.
`write_truth` writes it; `foleyflow.events.read_truth` / `read_events` read it back (for every layer).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from foleyflow.events import SoundEvent, read_truth  # noqa: F401  (the reader lives in foleyflow.events)
from foleyflow.world.config import WorldConfig
from foleyflow.world.physics import Simulation, instrument_geometry
from foleyflow.world.scene import FLOOR_Y, WORLD_W, Scene

TRUTH_VERSION = 1
DISCRETE_ACTIVE_S = 0.3     # how long a discrete event counts as "sounding" for concurrency when offset is unknown


def _round(a, nd=4):
    return np.round(np.asarray(a, float), nd).tolist()


def objects_json(scene: Scene, sim: Simulation) -> list[dict]:
    sounding = {e.source_id for e in sim.events if e.source_id is not None}
    out = []
    for b in scene.bodies:
        out.append({"id": b.id, "type": "body", "visible": True, "silent": b.id not in sounding,
                    "material": b.material, "shape": b.shape, "size_m": round(b.size_m, 4), "color": list(b.color),
                    "release_s": b.release_s, "trajectory": _round(sim.bodies[b.id])})
    for ins in scene.instruments:
        d = {"id": ins.id, "type": "instrument", "visible": ins.on_screen, "silent": False,
             "sound_class": ins.sound_class, "notes": list(ins.notes), "x_m": round(ins.x_m, 4),
             "scale": round(ins.scale, 4), "color": list(ins.color)}
        if ins.on_screen:
            d["striker"] = instrument_geometry(ins)["striker"]
            d["trajectory"] = _round(sim.strikers[ins.id])
        else:
            d["pan"] = round(ins.offscreen_pan, 4)
        out.append(d)
    for v in scene.vehicles:
        d = {"id": v.id, "type": "vehicle", "visible": v.on_screen, "silent": v.id not in sounding, "kind": v.kind,
             "color": list(v.color), "depth_m": round(v.depth_m, 4), "speed_mps": round(v.speed_mps, 4)}
        if v.on_screen:
            d["trajectory"] = _round(sim.vehicles[v.id])
        out.append(d)
    return sorted(out, key=lambda o: o["id"])


def event_stats(events: list[SoundEvent], duration_s: float) -> dict:
    discrete = [e for e in events if e.kind == "discrete"]
    spans = []
    for e in events:
        if e.kind == "ambience" or e.source_id is None:
            continue
        end = e.offset_s if e.offset_s is not None else e.onset_s + DISCRETE_ACTIVE_S
        if e.kind == "discrete":
            end = min(end, e.onset_s + 1.0)
        spans.append((e.onset_s, end, e.source_id))
    grid = np.arange(0, duration_s, 0.05)
    conc = 0
    for t in grid:
        conc = max(conc, len({s for a, b, s in spans if a <= t <= b}))
    return {"num_discrete": len(discrete), "num_sources": len({s for *_, s in spans}),
            "event_density_per_s": round(len(discrete) / duration_s, 4), "max_concurrent_sources": conc}


def _event_json(e: SoundEvent) -> dict:
    """The event as JSON, with params["azimuth_deg"]: the direction binaural mode renders it from (SOFA convention,
    positive = left; the constant-power pan maps -1..1 to +90..-90 degrees)."""
    from foleyflow.world.spatial import pan_to_azimuth

    d = e.to_json()
    d["params"] = dict(d["params"], azimuth_deg=round(float(pan_to_azimuth(e.pan)), 3))
    return d


def build_truth(clip_id: str, scene: Scene, sim: Simulation, events: list[SoundEvent], cfg: WorldConfig) -> dict:
    """The clip's ground truth as a JSON-ready dict (events: the renderer's copies, with offset_s filled)."""
    from foleyflow.config import to_dict

    return {
        "version": TRUTH_VERSION, "id": clip_id, "seed": scene.seed, "split": scene.split,
        "duration_s": cfg.duration_s, "fps": cfg.fps, "size": cfg.size, "sample_rate": cfg.sample_rate,
        "room": scene.room, "outdoor": scene.outdoor,
        "ambience": {"rain": round(scene.rain, 4), "wind": round(scene.wind, 4), "room_tone": round(scene.room_tone, 4)},
        "world": {"width_m": WORLD_W, "floor_y_m": FLOOR_Y},
        "objects": objects_json(scene, sim),
        "events": [_event_json(e) for e in sorted(events, key=lambda e: (e.onset_s, e.source_id or 0, e.sound_class))],
        "stats": event_stats(events, cfg.duration_s),
        "config": to_dict(cfg),
    }


def write_truth(path: str | Path, truth: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(truth, sort_keys=True, separators=(",", ":")))
    return path

