"""FoleyWorld's recorded sound bank: the RECORDED_CLASSES rendered once from the FluidR3 GM soundfont and cached.

Each class is a General MIDI program (pitched percussion, piano) or a drum-kit note (channel 10). Every pitched class is
rendered at the diatonic notes of its range and at a few velocities; all notes of all classes go into two small MIDI
files (we write them here, format 0) that the `fluidsynth` CLI renders offline with its own reverb and chorus off.
Each note is cut out of its slot so that its onset (the first sample above -40 dB of the note's peak) is sample 0
and it ends where it has decayed below -60 dB. The bank is cached as one npz file (int16 audio + a JSON index) in
`cache_dir` (argument) or `$FOLEYFLOW_CACHE/soundbank` or `~/.cache/foleyflow/soundbank`, keyed by the soundfont's
SHA-256 and the bank config, so it is rendered once per machine (a few seconds) and loaded in well under a second.

    bank = load_soundbank(sample_rate=16000)            # renders on first use, then loads from the cache
    x, note = bank.sample("marimba", midi_note=61, velocity=90)   # float32 mono, onset at x[0]
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from foleyflow.errors import CacheError, MissingResourceError
from foleyflow.hashing import file_sha256

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
INSTALL_HINT = "apt-get install fluid-soundfont-gm fluidsynth"
BANK_VERSION = 1
DRUM_CHANNEL = 9          # MIDI channel 10
ONSET_DB = -40.0          # onset = first sample above this, relative to the note's peak
END_DB = -60.0            # a note ends where it has decayed below this

# class -> (GM program or None for the drum kit, MIDI notes, hold seconds before note-off, longest kept seconds)
_DIATONIC = (0, 2, 4, 5, 7, 9, 11)


def _diatonic(lo: int, hi: int) -> tuple[int, ...]:
    return tuple(n for n in range(lo, hi + 1) if n % 12 in _DIATONIC)


CLASS_SPECS: dict[str, tuple[int | None, tuple[int, ...], float, float]] = {
    "marimba": (12, _diatonic(48, 84), 1.5, 2.0),
    "xylophone": (13, _diatonic(60, 96), 1.0, 1.5),
    "glockenspiel": (9, _diatonic(72, 96), 2.5, 3.0),
    "tubular_bells": (14, _diatonic(60, 77), 4.0, 4.0),
    "steel_drum": (114, _diatonic(52, 76), 1.5, 2.0),
    "piano_key": (0, _diatonic(36, 96), 0.6, 2.5),
    "wood_block": (None, (76, 77), 0.3, 0.6),
    "cowbell": (None, (56,), 0.3, 0.8),
    "claves": (None, (75,), 0.3, 0.6),
    "hand_clap": (None, (39,), 0.3, 0.6),
    "snare": (None, (38, 40), 0.3, 1.0),
    "tom": (None, (41, 43, 45, 47, 48, 50), 0.3, 1.2),
}


@dataclass(frozen=True)
class SoundBankConfig:
    """What the bank contains; part of the cache key."""

    sample_rate: int = 16000
    velocities: tuple[int, ...] = (40, 80, 120)
    classes: tuple[str, ...] = tuple(CLASS_SPECS)
    max_notes_per_class: int | None = None     # keep only this many notes per class (evenly spread), for tests
    gap_s: float = 0.5                          # silence after each note's kept length, inside its slot


def velocity_amplitude(velocity: float) -> float:
    """Amplitude implied by a MIDI velocity under the GM default curve (40 log10(v/127) dB)."""
    return float(np.clip(velocity, 1, 127) / 127.0) ** 2


# ---------------------------------------------------------------------------------------------------------- MIDI ---

def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: str | Path, notes: list[tuple[float, float, int, int, int]], programs: dict[int, int]) -> None:
    """Writes a format-0 MIDI file. notes: (start_s, end_s, channel, note, velocity); programs: channel -> program.

    One tick is one millisecond (tempo 1,000,000 us per quarter note, 1000 ticks per quarter)."""
    events: list[tuple[int, int, bytes]] = [(0, 0, bytes([0xFF, 0x51, 0x03, 0x0F, 0x42, 0x40]))]
    events += [(0, 1, bytes([0xC0 | ch, prog])) for ch, prog in sorted(programs.items())]
    for start, end, ch, note, vel in notes:
        events.append((round(start * 1000), 3, bytes([0x90 | ch, note, vel])))
        events.append((round(end * 1000), 2, bytes([0x80 | ch, note, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track, now = bytearray(), 0
    for tick, _, data in events:
        track += _vlq(tick - now) + data
        now = tick
    track += _vlq(1000) + bytes([0xFF, 0x2F, 0x00])
    Path(path).write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 1000) + b"MTrk" + struct.pack(">I", len(track))
                           + bytes(track))


# ----------------------------------------------------------------------------------------------------- rendering ---

def _check_tools(soundfont: Path) -> str:
    if not soundfont.is_file():
        raise MissingResourceError(f"soundfont not found at {soundfont}; install it with `{INSTALL_HINT}` "
                                   "or pass its path")
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise MissingResourceError(f"the fluidsynth program is not installed; install it with `{INSTALL_HINT}`")
    return exe


def _plan(cfg: SoundBankConfig) -> list[tuple[str, int, int, float, float]]:
    """The notes to render: (class, note, velocity, hold_s, keep_s)."""
    plan = []
    for cls in cfg.classes:
        if cls not in CLASS_SPECS:
            raise CacheError(f"unknown recorded sound class {cls!r}; known: {', '.join(CLASS_SPECS)}")
        _, notes, hold, keep = CLASS_SPECS[cls]
        if cfg.max_notes_per_class is not None and len(notes) > cfg.max_notes_per_class:
            pick = np.linspace(0, len(notes) - 1, cfg.max_notes_per_class).round().astype(int)
            notes = tuple(notes[i] for i in pick)
        plan += [(cls, n, v, hold, keep) for n in notes for v in cfg.velocities]
    return plan


def _cut(x: np.ndarray, sample_rate: int, keep_s: float) -> np.ndarray:
    """Cuts one note out of its slot: onset at sample 0, end at -60 dB (or keep_s, with a short fade-out)."""
    peak = float(np.abs(x).max())
    if peak <= 0:
        raise CacheError("fluidsynth rendered a silent note; is the soundfont a General MIDI bank?")
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (ONSET_DB / 20))
    start = int(loud[0])
    above = np.flatnonzero(np.abs(x[start:]) > peak * 10 ** (END_DB / 20))
    end = start + min(int(above[-1]) + 1, int(keep_s * sample_rate))
    y = x[start:end].astype(np.float32)
    fade = min(len(y), int(0.02 * sample_rate))
    y[len(y) - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return y


def _render_part(exe: str, soundfont: Path, plan, sample_rate: int, gap_s: float, workdir: Path, tag: str):
    """Starts fluidsynth on one MIDI file holding `plan`'s notes one after another; returns (process, slots, wav)."""
    programs, notes, slots, t = {}, [], [], 0.1
    channels = {}
    for cls, note, vel, hold, keep in plan:
        prog = CLASS_SPECS[cls][0]
        if prog is None:
            ch = DRUM_CHANNEL
        else:
            ch = channels.setdefault(cls, len(channels))          # 0..5: never the drum channel
            programs[ch] = prog
        notes.append((t, t + hold, ch, note, vel))
        slot = max(hold, keep) + gap_s
        slots.append((t, t + slot))
        t += slot
    mid, wav = workdir / f"{tag}.mid", workdir / f"{tag}.wav"
    write_midi(mid, notes, programs)
    cmd = [exe, "-ni", "-q", "-g", "1.0", "-R", "0", "-C", "0", "-r", str(sample_rate), "-O", "float",
           "-T", "wav", "-F", str(wav), str(soundfont), str(mid)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, slots, wav


def render_soundbank(cfg: SoundBankConfig, soundfont: str | Path = DEFAULT_SOUNDFONT, workers: int = 2) -> dict:
    """Renders every planned note with fluidsynth (in `workers` parallel processes). Returns arrays for `SoundBank`."""
    import soundfile as sf

    soundfont = Path(soundfont)
    exe = _check_tools(soundfont)
    plan = _plan(cfg)
    parts = [plan[i::workers] for i in range(workers) if plan[i::workers]]
    pieces, index = [], []
    with tempfile.TemporaryDirectory(prefix="foleyflow-bank-") as tmp:
        jobs = [(_render_part(exe, soundfont, p, cfg.sample_rate, cfg.gap_s, Path(tmp), f"part{i}"), p)
                for i, p in enumerate(parts)]
        cursor = 0
        for (proc, slots, wav), part in jobs:
            _, err = proc.communicate()
            if proc.returncode != 0 or not wav.is_file():
                raise MissingResourceError(f"fluidsynth failed ({err.decode(errors='replace').strip()[:200]}); "
                                           f"check the install (`{INSTALL_HINT}`)")
            audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
            mono = audio.mean(axis=1)
            for (cls, note, vel, _, keep), (a, b) in zip(part, slots):
                lo, hi = max(0, round(a * sr) - 64), min(len(mono), round(b * sr))
                y = _cut(mono[lo:hi], sr, keep)
                pieces.append(y)
                index.append((cls, note, vel, cursor, len(y)))
                cursor += len(y)
    audio = np.concatenate(pieces)
    # per-class normalisation: the loudest note of each class peaks at 1.0; velocity layers keep their ratios
    scale = {}
    for cls, _, _, start, n in index:
        scale[cls] = max(scale.get(cls, 0.0), float(np.abs(audio[start:start + n]).max()))
    for cls, _, _, start, n in index:
        audio[start:start + n] /= scale[cls]
    return {"audio": np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16), "index": index}


# -------------------------------------------------------------------------------------------------------- the bank ---

@dataclass
class SoundBank:
    """Rendered notes: `audio` int16 (num_samples,), all notes concatenated; `index` rows are
    (class, note, velocity, start, length)."""

    sample_rate: int
    audio: np.ndarray
    index: list[tuple[str, int, int, int, int]]
    config: SoundBankConfig = field(default_factory=SoundBankConfig)

    def __post_init__(self):
        self._rows: dict[tuple[str, int, int], tuple[int, int]] = {}
        notes: dict[str, set] = {}
        vels: dict[str, set] = {}
        for cls, note, vel, start, n in self.index:
            self._rows[(cls, int(note), int(vel))] = (int(start), int(n))
            notes.setdefault(cls, set()).add(int(note))
            vels.setdefault(cls, set()).add(int(vel))
        self._notes = {c: np.array(sorted(v)) for c, v in notes.items()}
        self._vels = {c: np.array(sorted(v)) for c, v in vels.items()}

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self._notes)

    def notes(self, sound_class: str) -> tuple[int, ...]:
        """The MIDI notes rendered for a class (a scene may pick among these, or any note in between)."""
        return tuple(int(n) for n in self._notes[self._check(sound_class)])

    def note_range(self, sound_class: str) -> tuple[int, int]:
        n = self._notes[self._check(sound_class)]
        return int(n[0]), int(n[-1])

    def _check(self, sound_class: str) -> str:
        if sound_class not in self._notes:
            raise CacheError(f"sound class {sound_class!r} is not in the sound bank (has: {', '.join(self._notes)})")
        return sound_class

    def sample(self, sound_class: str, midi_note: int | None = None, velocity: float = 100) -> tuple[np.ndarray, int]:
        """Returns (float32 mono samples with the onset at index 0, the MIDI note actually played).

        Pitched classes play any note within their range: the nearest rendered note, resampled by the semitone
        difference. Drum classes play the nearest rendered note unchanged. The nearest velocity layer is used and
        scaled by the GM velocity curve to the requested velocity."""
        notes = self._notes[self._check(sound_class)]
        pitched = CLASS_SPECS.get(sound_class, (None,))[0] is not None
        if midi_note is None:                      # default: the middle of a pitched range, a kit's first note
            midi_note = int(notes[len(notes) // 2]) if pitched else int(notes[0])
        if pitched:
            target = int(np.clip(midi_note, notes[0], notes[-1]))
        else:
            target = int(notes[np.abs(notes - midi_note).argmin()])
        near = int(notes[np.abs(notes - target).argmin()])
        vels = self._vels[sound_class]
        layer = int(vels[np.abs(vels - velocity).argmin()])
        start, n = self._rows[(sound_class, near, layer)]
        x = self.audio[start:start + n].astype(np.float32) * (velocity_amplitude(velocity) /
                                                              velocity_amplitude(layer) / 32767.0)
        if target != near:                         # pitch shift by resampling (linear interpolation)
            ratio = 2.0 ** ((target - near) / 12.0)
            pos = np.arange(0.0, n - 1, ratio)
            x = np.interp(pos, np.arange(n), x).astype(np.float32)
        return x, target


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The bank's cache folder: `cache_dir`, else $FOLEYFLOW_CACHE/soundbank, else ~/.cache/foleyflow/soundbank.

    The environment is read at call time."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("FOLEYFLOW_CACHE")
    return Path(env) / "soundbank" if env else Path.home() / ".cache" / "foleyflow" / "soundbank"


_LOADED: dict[str, SoundBank] = {}


def load_soundbank(sample_rate: int = 16000, *, soundfont: str | Path = DEFAULT_SOUNDFONT,
                   cache_dir: str | Path | None = None, config: SoundBankConfig | None = None,
                   workers: int = 2) -> SoundBank:
    """Loads the bank for `sample_rate` from the cache, rendering and caching it first if needed.

    Raises MissingResourceError (naming the apt packages) when the soundfont or fluidsynth is missing."""
    import fcntl

    cfg = config or SoundBankConfig(sample_rate=sample_rate)
    if cfg.sample_rate != sample_rate:
        cfg = SoundBankConfig(**{**asdict(cfg), "sample_rate": sample_rate})
    soundfont = Path(soundfont)
    root = cache_root(cache_dir)
    if not soundfont.is_file():
        _check_tools(soundfont)
    root.mkdir(parents=True, exist_ok=True)
    cfg_json = json.dumps({**asdict(cfg), "version": BANK_VERSION, "specs": CLASS_SPECS}, sort_keys=True)
    key = f"{file_sha256(soundfont, memo_dir=root)[:16]}-{hashlib.sha256(cfg_json.encode()).hexdigest()[:12]}"
    path = root / f"bank-{sample_rate}-{key}.npz"
    if str(path) in _LOADED:
        return _LOADED[str(path)]
    with open(root / ".lock", "w") as lock:        # one process renders; the others wait and then load
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            data = render_soundbank(cfg, soundfont, workers=workers)
            from foleyflow.fileio import atomic_write

            with atomic_write(path) as tmp:  # keeps the .npz suffix
                np.savez_compressed(tmp, audio=data["audio"], index=np.array(json.dumps(data["index"])),
                                    config=np.array(cfg_json))
    try:
        with np.load(path, allow_pickle=False) as z:
            bank = SoundBank(sample_rate, z["audio"], [tuple(r) for r in json.loads(str(z["index"]))], cfg)
    except (OSError, ValueError, KeyError) as e:
        raise CacheError(f"sound bank cache {path} is unreadable ({e}); delete it to re-render") from e
    _LOADED[str(path)] = bank
    return bank
