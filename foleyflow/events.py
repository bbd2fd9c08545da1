"""Sound events and ground truth: the vocabulary FoleyWorld's scenes, its renderer, the metrics, the datasets and
the evaluation models share.

A scene produces a list of `SoundEvent`s in seconds and screen coordinates; the renderer turns them into a stereo mix
and per-source stems; the ground-truth JSON (foleyflow.world.truth writes it) lists them; metrics, datasets and
evaluation models read them back with `read_truth` / `read_events`. The names are defined once, here, in a leaf
module (standard library only) below every package that uses them.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from foleyflow.errors import EvalError

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


class TruthError(EvalError):
    """A ground-truth JSON is missing, is not JSON, or holds a malformed event."""


def read_truth(path: str | Path) -> dict:
    """Reads a ground-truth JSON: FoleyWorld's document (foleyflow.world.truth), or a bare list of event dicts, which
    is returned as {"events": [...]}. Raises TruthError (one line) for a missing or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise TruthError(f"ground truth not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise TruthError(f"cannot read ground truth {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise TruthError(f"ground truth {path} is not valid JSON: {e}") from None
    if isinstance(data, list):
        data = {"events": data}
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise TruthError(f"ground truth {path} must be a list of events or an object with an 'events' list")
    return data


def read_events(path: str | Path) -> list[SoundEvent]:
    """The `SoundEvent`s of a ground-truth JSON (see `read_truth`)."""
    try:
        return [SoundEvent.from_json(d) for d in read_truth(path)["events"]]
    except (TypeError, ValueError, AttributeError) as e:
        raise TruthError(f"ground truth {path} has a malformed event: {e}") from None


def marked_audible(event: SoundEvent) -> bool:
    """False only when the ground truth marks the event inaudible in the mix (params["audible"] is False)."""
    return (event.params or {}).get("audible", True) is not False
