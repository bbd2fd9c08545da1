"""FoleyWorld configuration: one dataclass, loaded with `foleyflow.config.load_config(WorldConfig, path, overrides)`.

Everything that changes what a clip looks or sounds like lives here, and the resolved config is written into every
clip's ground truth, so a dataset says how it was made. The same seed and config always give the same clip.
"""
from __future__ import annotations

from dataclasses import dataclass

from foleyflow.errors import ConfigError

SPLITS = ("train", "val", "test", "evaltrain", "test-hard", "test-offscreen")
SPLIT_SEED_SPAN = 100_000_000   # each split owns seeds [index * span, (index + 1) * span)


@dataclass
class WorldConfig:
    """What a FoleyWorld clip is made of.

    duration_s, fps, size (square frame side in pixels, even, 64..384), sample_rate (16000 or 44100 usually).
    soundfont / hrtf: paths to FluidR3_GM.sf2 and the KEMAR SOFA file (Debian packages fluid-soundfont-gm, libmysofa1).
    cache_dir: where the pre-rendered sound bank is cached ("" = the audio side's default).
    Densities: objects / instruments per scene (min, max), probability of a vehicle, an off-screen source, a silent
    object, rain, wind; strike rate in strikes per second per instrument.
    binaural: use the HRTF instead of constant-power panning. stems: also write a wav per source.
    crf: H.264 quality of the mp4. wav_subtype: FLOAT (lossless, default), PCM_24 or PCM_16 (smaller).
    """

    duration_s: float = 8.0
    fps: int = 25
    size: int = 128
    sample_rate: int = 16000
    soundfont: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    hrtf: str = "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa"
    cache_dir: str = ""
    binaural: bool = False
    stems: bool = False
    objects: tuple[int, int] = (0, 3)
    instruments: tuple[int, int] = (0, 2)
    p_vehicle: float = 0.25
    p_offscreen: float = 0.2
    p_silent: float = 0.15
    p_rain: float = 0.3
    p_wind: float = 0.3
    strike_rate: float = 1.2
    physics_hz: int = 500
    crf: int = 23
    wav_subtype: str = "FLOAT"

    def __post_init__(self):
        if not 0.5 <= self.duration_s <= 60:
            raise ConfigError(f"world duration_s must be in [0.5, 60], got {self.duration_s}")
        if not 1 <= self.fps <= 120:
            raise ConfigError(f"world fps must be in [1, 120], got {self.fps}")
        if self.size % 2 or not 64 <= self.size <= 384:
            raise ConfigError(f"world size must be an even number of pixels in [64, 384], got {self.size}")
        if not 8000 <= self.sample_rate <= 48000:
            raise ConfigError(f"world sample_rate must be in [8000, 48000], got {self.sample_rate}")
        for name in ("objects", "instruments"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 8:
                raise ConfigError(f"world {name} must be (min, max) with 0 <= min <= max <= 8, got {(lo, hi)}")
        for name in ("p_vehicle", "p_offscreen", "p_silent", "p_rain", "p_wind"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"world {name} must be a probability in [0, 1], got {getattr(self, name)}")
        if not 0.1 <= self.strike_rate <= 8:
            raise ConfigError(f"world strike_rate must be in [0.1, 8] per second, got {self.strike_rate}")
        if self.wav_subtype not in ("FLOAT", "PCM_24", "PCM_16"):
            raise ConfigError(f"world wav_subtype must be FLOAT, PCM_24 or PCM_16, got {self.wav_subtype!r}")
        if self.physics_hz < 4 * self.fps or self.physics_hz % self.fps:
            raise ConfigError(f"world physics_hz must be a multiple of fps and at least 4 x fps, got {self.physics_hz}")

    @property
    def num_frames(self) -> int:
        return int(round(self.duration_s * self.fps))


def split_seed_range(split: str) -> tuple[int, int]:
    """The [start, stop) seed range a split owns; ranges of different splits never overlap."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    i = SPLITS.index(split)
    return i * SPLIT_SEED_SPAN, (i + 1) * SPLIT_SEED_SPAN
