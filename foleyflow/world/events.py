"""The contract between FoleyWorld's scenes (what happens, when, where) and its sound renderer (how it sounds).

A scene produces a list of `SoundEvent`s in seconds and screen coordinates; the renderer turns them into a stereo mix
and per-source stems. Both sides and the ground-truth JSON use these names, so they are defined once, here.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# Sound classes. Recorded ones are rendered from the FluidR3 GM soundfont with fluidsynth; synthesized ones are
# physically based; ambience beds are continuous and tied to visible cues (rain streaks, blown particles, indoor room).
RECORDED_CLASSES = (
    "marimba", "xylophone", "glockenspiel", "tubular_bells", "steel_drum", "piano_key",
    "wood_block", "cowbell", "claves", "hand_clap", "snare", "tom",
)
SYNTH_CLASSES = ("impact_wood", "impact_metal", "impact_glass", "impact_plastic", "rolling", "engine")
AMBIENCE_CLASSES = ("rain", "wind", "room_tone")
SOUND_CLASSES = RECORDED_CLASSES + SYNTH_CLASSES + AMBIENCE_CLASSES
DISCRETE_CLASSES = RECORDED_CLASSES + SYNTH_CLASSES[:4]   # events with a sharp onset (scored by onset metrics)
CONTINUOUS_CLASSES = ("rolling", "engine") + AMBIENCE_CLASSES

ROOMS = ("dry", "small_room", "hall")
MATERIALS = ("wood", "metal", "glass", "plastic")


@dataclass
class SoundEvent:
    """One sound. Times in seconds from the clip start; pan in [-1 (left), 1 (right)], constant-power law.

    kind: "discrete" (impact or strike: sharp onset at `onset_s`, natural decay; `offset_s` is when it has decayed
    below -60 dB, filled in by the renderer), "continuous" (rolling, engine: from `onset_s` to `offset_s`), or
    "ambience" (a bed over the whole clip).
    source_id: the id of the visible (or off-screen) object making it; None for ambience.
    gain: linear amplitude factor from size and depth (1.0 = nominal).
    pan_track / param_track: optional [(time_s, value), ...] for moving sources (pan) and time-varying parameters
    (e.g. {"speed": [(t, v), ...]} for rolling friction or an engine's approach speed for Doppler).
    params: class-specific, e.g. {"material": "metal", "size": 0.3, "impact_speed": 2.1, "midi_note": 67}.
    """

    sound_class: str
    kind: Literal["discrete", "continuous", "ambience"]
    onset_s: float
    offset_s: float | None = None
    source_id: int | None = None
    on_screen: bool = True
    gain: float = 1.0
    pan: float = 0.0
    pan_track: list[tuple[float, float]] | None = None
    param_track: dict[str, list[tuple[float, float]]] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "SoundEvent":
        d = dict(d)
        for key in ("pan_track",):
            if d.get(key) is not None:
                d[key] = [tuple(p) for p in d[key]]
        if d.get("param_track"):
            d["param_track"] = {k: [tuple(p) for p in v] for k, v in d["param_track"].items()}
        return cls(**d)
