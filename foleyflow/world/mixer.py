"""FoleyWorld's sound renderer: a scene's SoundEvents -> a stereo mix, dry per-source stems and completed events.

Each event is rendered mono (recorded classes from the sound bank, synthesized classes from `synth`), placed so its
onset lands on sample round(onset_s * sample_rate), given its stereo position (constant-power pan or the KEMAR HRTF)
and its gain, and summed into its source's stem. Ambience beds are already stereo (diffuse). The mix is the stems'
sum plus the room's reverberation, then one peak-safe gain (never above 1, keeping the peaks of the mix and of every
stem at or below -1 dBFS) is applied to the mix and the stems alike and recorded. Discrete events get `offset_s` = when their own sound has decayed
60 dB below its peak. Everything random draws from numpy Generators seeded with (seed, event index), so a scene is
rendered identically for a seed, and adding an event does not change how the others sound.

Event params read here (all optional):
  recorded classes: midi_note (pitch; bar length / key position), velocity (1..127) or impact_speed (m/s)
  impact_*:         size (~metres, smaller = higher), impact_speed (m/s, louder and brighter)
  rolling:          material, size, speed (m/s) or param_track["speed"], sliding (bool)
  engine:           f0_hz, param_track["distance"] (m) or distance, or a straight pass: pass_speed (m/s),
                    closest_s, closest_distance (m); level = min(1, ref_distance / distance) times `gain`;
                    param_track["radial_velocity"] (m/s, + receding) for Doppler, else d(distance)/dt
  ambience:         intensity (rain: droplet rate and level); pan != 0 leans the bed to one side
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from foleyflow.errors import ConfigError
from foleyflow.world import audibility, spatial, synth
from foleyflow.events import (AMBIENCE_CLASSES, DISCRETE_CLASSES, RECORDED_CLASSES, ROOMS, SOUND_CLASSES,
                                    SYNTH_CLASSES, SoundEvent)

RECORDED_LEVEL = 0.5       # peak of a recorded note at velocity 127, gain 1
SYNTH_LEVEL = 0.5          # peak of an impact at REF_SPEED, gain 1
PEAK_LIMIT = 10 ** (-1 / 20)
DECAY_DB = -60.0


@dataclass
class SceneAudio:
    """mix (2, N) float32 with reverberation; stems {key: (2, N) float32} dry, before reverberation; both scaled by
    `gain` (the peak-safe normalisation). Stem keys: "source_<id>" for events with a source_id, the class name for
    ambience ("rain"), "offscreen_<class>" for other events without a source. `events` are copies of the input
    events with offset_s filled in for discrete ones and, for recorded classes, params["midi_note"] set to the note
    that actually sounds (pitched classes clip to their range, drum classes snap to their kit notes); with labelling
    on, params["audible"] on discrete events and params["transients_s"] on rain and engines (see `audibility`)."""

    mix: np.ndarray
    stems: dict[str, np.ndarray]
    events: list[SoundEvent]
    sample_rate: int
    room: str
    binaural: bool
    gain: float
    stem_of_event: list[str] = field(default_factory=list)


def stem_key(ev: SoundEvent) -> str:
    if ev.source_id is not None:
        return f"source_{ev.source_id}"
    if ev.kind == "ambience" or ev.sound_class in AMBIENCE_CLASSES:
        return ev.sound_class
    return f"offscreen_{ev.sound_class}"


def velocity_from_speed(impact_speed: float) -> float:
    """MIDI velocity for a striker speed in m/s: 0.5 m/s -> ~45, 2 m/s -> ~90, 4 m/s and above -> 127."""
    return float(np.clip(127.0 * np.sqrt(max(impact_speed, 0.0) / 4.0), 1.0, 127.0))


def decay_end(x: np.ndarray, db: float = DECAY_DB) -> int:
    """Index just after the last sample within `db` of the signal's peak (its -60 dB decay point)."""
    a = np.abs(x)
    peak = a.max() if len(a) else 0.0
    if peak <= 0:
        return 0
    return int(np.flatnonzero(a > peak * 10 ** (db / 20))[-1]) + 1


def _track(ev: SoundEvent, name: str, times_s: np.ndarray, default: float) -> np.ndarray:
    """A parameter at the given absolute times: param_track[name] interpolated (held at its ends), else params."""
    track = (ev.param_track or {}).get(name)
    if track:
        tt, vv = np.asarray(track, dtype=np.float64).T
        return np.interp(times_s, tt, vv)
    return np.full(len(times_s), float(ev.params.get(name, default)))


def _per_sample(values: np.ndarray, step: int, num_samples: int) -> np.ndarray:
    return np.repeat(values, step)[:num_samples]


def _engine_distance(ev: SoundEvent, times_s: np.ndarray) -> np.ndarray:
    p = ev.params
    if (ev.param_track or {}).get("distance"):
        return _track(ev, "distance", times_s, 5.0)
    if "closest_s" in p or "pass_speed" in p:
        t0 = float(p.get("closest_s", 0.5 * (times_s[0] + times_s[-1])))
        along = float(p.get("pass_speed", 15.0)) * (times_s - t0)
        return np.hypot(float(p.get("closest_distance", 5.0)), along)
    return np.full(len(times_s), float(p.get("distance", 5.0)))


def render_event_mono(ev: SoundEvent, num_samples: int, sample_rate: int, rng: np.random.Generator,
                      bank=None, info: dict | None = None) -> np.ndarray:
    """The event's own sound, mono float32, starting at its onset; continuous events last num_samples.

    For recorded classes, `info` (if given) receives the MIDI note actually played under "midi_note"."""
    c, p = ev.sound_class, ev.params
    if c in RECORDED_CLASSES:
        vel = p.get("velocity")
        vel = float(vel) if vel is not None else velocity_from_speed(float(p.get("impact_speed", 2.0)))
        x, played = bank.sample(c, p.get("midi_note"), vel)
        if info is not None:
            info["midi_note"] = played
        return x * RECORDED_LEVEL
    if c in SYNTH_CLASSES[:4]:
        return SYNTH_LEVEL * synth.modal_impact(c.split("_", 1)[1], float(p.get("size", synth.REF_SIZE)),
                                                float(p.get("impact_speed", synth.REF_SPEED)), sample_rate, rng)
    times, step = spatial.control_times(ev.onset_s, num_samples, sample_rate)
    if c == "rolling":
        speed = _per_sample(_track(ev, "speed", times, 1.0), step, num_samples)
        return synth.friction_noise(speed, sample_rate, rng,
                                    material=p.get("material", "wood"), size=float(p.get("size", synth.REF_SIZE)),
                                    rolling=not p.get("sliding", False))
    if c == "engine":
        distance = _per_sample(_engine_distance(ev, times), step, num_samples)
        radial = None
        if (ev.param_track or {}).get("radial_velocity"):
            radial = _per_sample(_track(ev, "radial_velocity", times, 0.0), step, num_samples)
        return synth.engine_hum(distance, sample_rate, rng, f0_hz=float(p.get("f0_hz", 45.0)),
                                ref_distance_m=float(p.get("ref_distance", 5.0)), radial_velocity=radial,
                                info=info)
    raise ConfigError(f"sound class {c!r} is not a mono source")


def _check_event(ev: SoundEvent, duration_s: float) -> None:
    if ev.sound_class not in SOUND_CLASSES:
        raise ConfigError(f"unknown sound class {ev.sound_class!r}; known: {', '.join(SOUND_CLASSES)}")
    allowed = {"discrete": DISCRETE_CLASSES, "continuous": ("rolling", "engine"), "ambience": AMBIENCE_CLASSES}
    if ev.kind not in allowed:
        raise ConfigError(f"unknown event kind {ev.kind!r} for {ev.sound_class}")
    if ev.sound_class not in allowed[ev.kind]:
        raise ConfigError(f"a {ev.sound_class} event cannot be {ev.kind}; {ev.kind} classes: "
                          f"{', '.join(allowed[ev.kind])}")
    if not (0.0 <= ev.onset_s < duration_s):
        raise ConfigError(f"{ev.sound_class} event onset {ev.onset_s} s lies outside the clip [0, {duration_s}) s")


def render_scene_audio(events: list[SoundEvent], duration_s: float, sample_rate: int = 16000, room: str = "dry",
                       binaural: bool = False, seed: int = 0, bank=None, *, soundfont: str | None = None,
                       hrtf_path: str | None = None, cache_dir: str | None = None,
                       max_azimuth_deg: float = spatial.MAX_AZIMUTH_DEG, label: bool = True) -> SceneAudio:
    """Renders a scene's events to a stereo soundtrack. Returns SceneAudio (see there); N = round(duration_s * rate).

    bank: a loaded SoundBank (loaded from the cache, rendering it on first use, if None and recorded classes occur).
    binaural: KEMAR HRTF instead of constant-power panning (hrtf_path overrides Debian's file).
    label: add the audibility labels of `audibility` to the returned events (params["audible"] on discrete events,
    params["transients_s"] on rain); the audio is the same either way."""
    if room not in ROOMS:
        raise ConfigError(f"unknown room {room!r}; known: {', '.join(ROOMS)}")
    n = int(round(duration_s * sample_rate))
    for ev in events:
        _check_event(ev, duration_s)
    if bank is None and any(ev.sound_class in RECORDED_CLASSES for ev in events):
        from foleyflow.world.soundbank import DEFAULT_SOUNDFONT, load_soundbank
        bank = load_soundbank(sample_rate, soundfont=soundfont or DEFAULT_SOUNDFONT, cache_dir=cache_dir)
    if bank is not None and bank.sample_rate != sample_rate:
        raise ConfigError(f"sound bank is at {bank.sample_rate} Hz but the scene renders at {sample_rate} Hz")
    hrtf = spatial.load_hrtf(sample_rate, hrtf_path) if binaural else None

    stems: dict[str, np.ndarray] = {}
    out_events, keys = [], []
    starts: dict[int, tuple[int, np.ndarray]] = {}     # discrete event index -> (first sample, its sound's start)
    drops: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # rain/engine event index -> (transient samples, its sound)
    w_own = int(round(audibility.WINDOW_S * sample_rate))
    for i, ev in enumerate(events):
        rng = np.random.default_rng([seed, i])
        start = int(round(ev.onset_s * sample_rate))
        key = stem_key(ev)
        stem = stems.setdefault(key, np.zeros((2, n), np.float32))
        if ev.kind == "ambience":
            end = n if ev.offset_s is None else min(n, int(round(ev.offset_s * sample_rate)))
            rain_info: dict | None = {} if label and ev.sound_class == "rain" else None
            kw = {"info": rain_info} if rain_info is not None else {}
            bed = synth.AMBIENCE[ev.sound_class](end - start, sample_rate, rng,
                                                 float(ev.params.get("intensity", 1.0)), **kw)
            beds = [bed] + ([rain_info["clicks"]] if rain_info is not None else [])
            ramp = min((end - start) // 2, int(0.05 * sample_rate))
            for b in beds:                          # the droplet clicks get the bed's fades, balance and gain
                if ramp and start > 0:
                    b[:, :ramp] *= np.linspace(0, 1, ramp, dtype=np.float32)
                if ramp and end < n:
                    b[:, -ramp:] *= np.linspace(1, 0, ramp, dtype=np.float32)
                if ev.pan:                          # a leaning bed (wind from one side): balance, centre = 1
                    b *= (np.array(spatial.pan_gains(ev.pan), np.float32) / np.float32(np.sqrt(0.5)))[:, None]
            stem[:, start:end] += np.float32(ev.gain) * bed
            if rain_info is not None:
                clicks = np.zeros((2, n), np.float32)
                clicks[:, start:end] = np.float32(ev.gain) * rain_info["clicks"]
                drops[i] = (start + rain_info["drop_pos"], clicks)
            out_events.append(dataclasses.replace(ev, params=dict(ev.params)))
            keys.append(key)
            continue
        info: dict = {}
        if ev.kind == "continuous":
            end = n if ev.offset_s is None else min(n, int(round(ev.offset_s * sample_rate)))
            x = render_event_mono(ev, max(0, end - start), sample_rate, rng, bank, info)
        else:
            x = render_event_mono(ev, 0, sample_rate, rng, bank, info)
        x = x[:n - start]
        if hrtf is not None:
            if ev.pan_track:
                def az(times_s, ev=ev):
                    return spatial.pan_to_azimuth(spatial.pan_at(times_s, ev.pan, ev.pan_track), max_azimuth_deg)
            else:
                az = float(spatial.pan_to_azimuth(ev.pan, max_azimuth_deg))
            y = hrtf.render(x, az, ev.onset_s)
        else:
            y = spatial.pan_mono(x, ev.pan, ev.pan_track, ev.onset_s, sample_rate)
        stem[:, start:start + y.shape[1]] += np.float32(ev.gain) * y
        if label and ev.kind == "discrete":
            starts[i] = (start, np.float32(ev.gain) * y[:, :w_own])
        if label and "cycle_starts" in info:
            own = np.zeros((2, n), np.float32)
            own[:, start:start + y.shape[1]] = np.float32(ev.gain) * y
            drops[i] = (start + info["cycle_starts"], own)
        done = dataclasses.replace(ev, params=dict(ev.params))
        if ev.kind == "discrete" and "midi_note" in info:
            done.params["midi_note"] = info["midi_note"]      # the note that sounds (drums snap to kit notes)
        if ev.kind == "discrete":
            done.offset_s = round(min(duration_s, ev.onset_s + decay_end(x) / sample_rate), 4)
        out_events.append(done)
        keys.append(key)

    dry = np.zeros((2, n), np.float32)
    for s in stems.values():
        dry += s
    mix = spatial.apply_room(dry, room, sample_rate)
    for i, (start, own) in starts.items():        # ratios: the same before and after the common gain below
        out_events[i].params["audible"] = audibility.is_audible(own, mix, start, sample_rate)
    for i, (pos, own) in drops.items():
        if out_events[i].sound_class == "rain":
            out_events[i].params["transients_s"] = audibility.droplet_times(own, mix, pos, sample_rate)
        else:
            out_events[i].params["transients_s"] = audibility.pulse_times(own, mix, pos, sample_rate)
    peak = max([float(np.abs(a).max()) for a in (mix, *stems.values())]) if n else 0.0   # no stem clips either
    gain = min(1.0, PEAK_LIMIT / peak) if peak > 0 else 1.0
    if gain != 1.0:
        mix *= np.float32(gain)
        for s in stems.values():
            s *= np.float32(gain)
    return SceneAudio(mix, stems, out_events, sample_rate, room, binaural, gain, keys)
