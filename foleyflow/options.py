"""Generation options: one frozen `GenerationOptions`, the one place for the library's defaults, resolved once.

Resolution (`resolve_options`): a value given in the call wins, then the bundle's `defaults` (bundle.json), then the
library default (`GenerationOptions()`'s field defaults, below; nothing else in foleyflow writes them as literals).
Every value is validated where it enters: an unknown name or a wrong type or range is a one-line FoleyError (for a
bundle's defaults, a CheckpointError naming the bundle). The resolved options are echoed in `GenerationResult` and
in every file that records generation settings (`as_record`).

Names: `cfg_scale` is the classifier-free guidance scale (the CLI keeps `--cfg`; the key `cfg` is accepted as its
old name in calls and in bundles written before it was renamed); `guidance` is how the guidance branches are
combined: `cfg` (MMAudio's classifier-free guidance), `apg` (adaptive projected guidance, damping `apg_eta`) or
`multi` (ALIVE-style multi-condition guidance: joint scale `cfg_scale` plus `text_scale` and `video_scale`, four
network branches); `plan_scale` weighs a time-aligned plan track on its own under `cfg` (two or three branches,
foleyflow.flow.guidance.plan_guidance); `sampler` names an ODE sampler of `foleyflow.flow.samplers` (`dopri5` is adaptive and ignores
`steps` for its own step sizes).

Not a generation option but a choice made when the pipeline is built (like its precision): `quantize`, one of
QUANTIZE or None, checked by `check_quantize` (see foleyflow.models.generator_sampling.int8_copy).
Imports only the standard library (a leaf module).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from foleyflow.errors import CheckpointError, FoleyError

SAMPLERS = ("euler", "heun", "midpoint", "dopri5")   # foleyflow.flow.samplers.FIXED_GRID_SAMPLERS
GUIDANCE = ("cfg", "apg", "multi")                   # foleyflow.models.generator_sampling
ALIASES = {"cfg": "cfg_scale"}             # old name -> field
MAX_STEPS = 1000
QUANTIZE = ("int8",)    # FoleyPipeline(quantize=...): dynamic int8 weights of the generator's Linear layers


@dataclass(frozen=True)
class GenerationOptions:
    """How to generate (not what from: video, text and duration are inputs). Field defaults are the library's."""

    steps: int = 25                     # sampler steps per window (MMAudio: Euler, 25)
    cfg_scale: float = 4.5              # guidance scale s (MMAudio's default); 1 = no guidance (one branch)
    seed: int = 0                       # noise of window k is drawn in order from torch.Generator(seed)
    sampler: str = "euler"              # one of SAMPLERS
    guidance: str = "cfg"               # one of GUIDANCE
    apg_eta: float = 0.0                # APG's damping of the parallel component (guidance "apg" only)
    text_scale: float = 0.0             # guidance "multi": extra weight of the text (ALIVE's w_text)
    video_scale: float = 0.0            # guidance "multi": extra weight of the video (ALIVE's w_video)
    plan_scale: float | None = None     # guidance "cfg" with a plan track: the plan's own weight (None: the plan is
                                        # guided with the rest at cfg_scale; 1: the unguided branch keeps the plan);
                                        # apg and multi do not use it; a distilled student has its weight folded in
                                        # (None or that weight; another is refused)
    overlap_s: float = 1.0              # overlap of the windows of a long video (see foleyflow.pipeline)
    negative: str | None = None         # negative prompt: the unconditional branch's text
    sample_rate: int | None = None      # resample the output to this rate (Hz); None = the codec's
    loudness_lufs: float | None = None  # normalise the integrated loudness; None = as generated

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check_option(f.name, getattr(self, f.name))

    def replace(self, **changes) -> "GenerationOptions":
        return dataclasses.replace(self, **canonical(changes))

    def as_record(self) -> dict[str, Any]:
        """A JSON-ready dict of every option (for files that record settings)."""
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(GenerationOptions)}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def check_option(name: str, value: Any) -> None:
    """One-line FoleyError if `value` is not a valid value of option `name`."""
    name = ALIASES.get(name, name)
    if name not in FIELDS:
        raise FoleyError(f"unknown generation option {name!r} (known: {', '.join(FIELDS)})")
    if name in ("sample_rate", "loudness_lufs", "negative", "plan_scale") and value is None:
        return
    if name in ("steps", "seed", "sample_rate") and not _is_int(value):
        raise FoleyError(f"generation option {name} must be an integer, got {value!r}")
    if name in ("cfg_scale", "apg_eta", "text_scale", "video_scale", "plan_scale", "overlap_s", "loudness_lufs") and \
            not _is_number(value):
        raise FoleyError(f"generation option {name} must be a finite number, got {value!r}")
    if name in ("sampler", "guidance", "negative") and not isinstance(value, str):
        raise FoleyError(f"generation option {name} must be a string, got {value!r}")
    if name == "steps" and not 1 <= value <= MAX_STEPS:
        raise FoleyError(f"steps must be between 1 and {MAX_STEPS}, got {value}")
    if name == "cfg_scale" and not 0 <= value <= 50:
        raise FoleyError(f"cfg (guidance scale) must be between 0 and 50, got {value}")
    if name in ("text_scale", "video_scale", "plan_scale") and not 0 <= value <= 50:
        raise FoleyError(f"{name} must be between 0 and 50, got {value}")
    if name == "seed" and not 0 <= value < 2 ** 64:   # torch.Generator.manual_seed takes any 64-bit unsigned seed
        raise FoleyError(f"seed must be between 0 and 2^64-1, got {value}")
    if name == "sampler" and value not in SAMPLERS:
        raise FoleyError(f"unknown sampler {value!r} (one of {', '.join(SAMPLERS)})")
    if name == "guidance" and value not in GUIDANCE:
        raise FoleyError(f"unknown guidance {value!r} (one of {', '.join(GUIDANCE)})")
    if name == "apg_eta" and not 0 <= value <= 1:
        raise FoleyError(f"apg_eta must be between 0 and 1, got {value}")
    if name == "overlap_s" and not 0 <= value <= 10:
        raise FoleyError(f"overlap must be between 0 and 10 s, got {value}")
    if name == "sample_rate" and not 8000 <= value <= 192000:
        raise FoleyError(f"sample rate must be between 8000 and 192000 Hz, got {value}")
    if name == "loudness_lufs" and not -70 <= value <= 0:
        raise FoleyError(f"loudness must be between -70 and 0 LUFS, got {value}")


def check_quantize(quantize: str | None, device: str = "cpu", precision: str = "auto") -> str | None:
    """`quantize` if it is None, or one of QUANTIZE with a CPU `device` (its type: "cpu", "cuda") and a precision
    other than bf16 (int8 runs the generator in fp32 with int8 Linear weights); otherwise a one-line FoleyError."""
    if quantize is None:
        return None
    if quantize not in QUANTIZE:
        raise FoleyError(f"unknown quantisation {quantize!r} (one of {', '.join(QUANTIZE)}, or none)")
    if str(device).split(":")[0] != "cpu" or precision == "bf16":
        raise FoleyError(f"--quantize {quantize} runs the generator on the CPU in fp32 with int8 Linear weights: "
                         + ("use --device cpu" if str(device).split(":")[0] != "cpu" else
                            "leave out --precision bf16"))
    return quantize


def canonical(values: Mapping[str, Any]) -> dict[str, Any]:
    """Old names mapped to fields (`cfg` -> `cfg_scale`), every value checked; a name given twice is an error."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        name = ALIASES.get(k, k)
        if name in out:
            raise FoleyError(f"generation option {name} is given twice (as {k!r} and {name!r})")
        check_option(name, v)
        out[name] = float(v) if "float" in str(FIELDS[name].type) and _is_int(v) else v
    return out


def check_bundle_defaults(defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A bundle's `defaults` mapping, checked (CheckpointError naming `where`) and canonical."""
    if not isinstance(defaults, Mapping):
        raise CheckpointError(f"{where}: 'defaults' must be a mapping of generation options")
    try:
        return canonical(defaults)
    except FoleyError as e:
        raise CheckpointError(f"{where}: defaults: {e}") from None


def resolve_options(call: Mapping[str, Any] | None = None, bundle: Mapping[str, Any] | None = None,
                    ) -> GenerationOptions:
    """GenerationOptions from the call's values (None = not given), then the bundle's, then the library's."""
    given = canonical({k: v for k, v in (call or {}).items() if v is not None})
    return GenerationOptions(**{**canonical(bundle or {}), **given})


DEFAULTS = GenerationOptions()  # the library's defaults
