"""Self-describing safetensors checkpoints.

Every file foleyflow writes holds its tensors plus string metadata:
  `foleyflow.kind`        what it is ("vae", "vocoder", "generator", "train_state/generator", ...): loading checks it;
  `foleyflow.config`      the model's resolved config as JSON (a model is rebuilt from this alone, no YAML needed);
  `foleyflow.provenance`  JSON: code version, training data, command, seed, step... (free form, for people);
  `foleyflow.version`     the foleyflow version that wrote it.
Writes are atomic (temporary file + rename), so a crash never leaves a half-written checkpoint. Nothing is unpickled.
Nested state (optimizer state, EMA, RNG) is flattened with `flatten_state` into tensors + a JSON skeleton.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from foleyflow.errors import CheckpointError

KIND, CONFIG, PROVENANCE, VERSION = "foleyflow.kind", "foleyflow.config", "foleyflow.provenance", "foleyflow.version"
FP16_OF = "foleyflow.fp16_of"  # sha256 of the fp32 checkpoint a half-precision storage copy was made from


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], *, kind: str, config: str | dict | None = None,
                    provenance: dict | None = None, extra: dict[str, str] | None = None) -> Path:
    """Writes `tensors` to `path` atomically with the metadata above. `config` is a JSON string or a dict."""
    from safetensors.torch import save_file

    from foleyflow import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {KIND: kind, VERSION: __version__, PROVENANCE: json.dumps(provenance or {}, sort_keys=True)}
    if config is not None:
        meta[CONFIG] = config if isinstance(config, str) else json.dumps(config, sort_keys=True)
    meta.update(extra or {})
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    from foleyflow.fileio import atomic_write

    with atomic_write(path) as tmp:
        save_file(clean, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file, without reading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({type(e).__name__})") from None


def load_checkpoint(path: str | Path, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Returns (tensors, metadata). If `kind` is given, a checkpoint of another kind is refused with a clear message."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    found = meta.get(KIND)
    if kind is not None and found != kind:
        raise CheckpointError(f"{path} is a '{found or 'unknown'}' checkpoint, expected '{kind}'")
    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise CheckpointError(f"{path} could not be read ({type(e).__name__}: {e})") from None
    return tensors, meta


PART = "foleyflow.part"  # set when a storage copy keeps only part of the model (e.g. "visual")


def save_fp16_copy(src: str | Path, dst: str | Path, *, part: str | None = None) -> Path:
    """Writes `src` with its float32 tensors stored as float16 (half the bytes; loaders cast back to the model's
    dtype) and the same metadata plus FP16_OF, the sha256 of `src` (of its float32 original if `src` is itself such a
    copy; a copy that would change nothing is written byte for byte, keeping both identities), so checks that a model was trained with the
    features of `src` (see checkpoint_identities) accept the copy. part: keep only the tensors under "<part>." (e.g.
    the visual tower of an audio-visual model, all a generation pipeline needs) and record it under PART."""
    from foleyflow.fileio import atomic_write_bytes
    from foleyflow.hashing import file_sha256

    tensors, meta = load_checkpoint(src)
    if FP16_OF in meta and all(v.dtype != torch.float32 for v in tensors.values()) \
            and (part is None or meta.get(PART) == part):
        # already a storage copy (e.g. a bundle's file handed to assemble_bundle again): the bytes unchanged keep
        # both identities, the copy's own sha256 and its float32 original's (FP16_OF)
        return atomic_write_bytes(dst, Path(src).read_bytes())
    if part is not None:
        tensors = {k: v for k, v in tensors.items() if k.startswith(part + ".")}
        if not tensors:
            raise CheckpointError(f"{src} has no tensors under '{part}.'")
        meta[PART] = part
    half = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
    kind = meta.pop(KIND, "unknown")
    config = meta.pop(CONFIG, None)
    provenance = json.loads(meta.pop(PROVENANCE, "{}") or "{}")
    meta.pop(VERSION, None)
    return save_checkpoint(dst, half, kind=kind, config=config, provenance=provenance,
                           extra={**meta, FP16_OF: meta.get(FP16_OF) or file_sha256(src)})


def checkpoint_identities(path: str | Path) -> set[str]:
    """The sha256 values that identify a checkpoint: its own, and for a half-precision storage copy the original's."""
    from foleyflow.hashing import file_sha256

    ids = {file_sha256(path)}
    source = read_metadata(path).get(FP16_OF)
    return ids | {source} if source else ids


def checkpoint_config(meta: dict[str, str]) -> dict:
    """The config dict stored in a checkpoint's metadata (CheckpointError if missing, not JSON or not an object)."""
    if CONFIG not in meta:
        raise CheckpointError("checkpoint has no embedded config")
    try:
        cfg = json.loads(meta[CONFIG])
    except (ValueError, TypeError, RecursionError):
        raise CheckpointError("checkpoint's embedded config is not valid JSON") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint's embedded config is a JSON {type(cfg).__name__}, not an object")
    return cfg


# In-place ops that change only values (never shape, dtype or strides): on the meta device there are no values, so
# `on_meta` skips them. Several (normal_, erfinv_, clamp_, exponential_...) have no C++ meta kernel, and the first one
# imports PyTorch's Python decompositions and sympy: 1.4-2 s of every cold start that builds a model on meta to check
# a checkpoint's shapes (the generator's normal_ initialisers did).
_VALUE_OPS = frozenset(("normal_", "uniform_", "erfinv_", "clamp_", "clamp_min_", "clamp_max_", "mul_", "add_", "sub_",
                        "div_", "fill_", "zero_", "copy_", "exponential_", "bernoulli_", "cauchy_", "log_normal_",
                        "geometric_", "random_", "abs_", "sqrt_", "exp_", "neg_", "fmod_", "remainder_"))


# Factories of fixed values (windows, position tables) whose meta versions are Python decompositions too: under
# `on_meta` they make small CPU tensors (non-persistent buffers such as a mel window or RoPE tables; no state-dict
# shape depends on where they live).
_VALUE_FACTORIES = frozenset(("arange", "linspace", "logspace", "hann_window", "hamming_window", "blackman_window",
                              "bartlett_window", "kaiser_window", "eye", "tril_indices", "triu_indices"))


_SCALAR_OPS = frozenset(("__mul__", "__rmul__", "__add__", "__radd__", "__sub__", "__rsub__", "__truediv__", "mul",
                         "add", "sub", "div"))


class _SkipValueOps(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _VALUE_OPS:                               # Tensor.normal_ or torch.nn.init.normal_(tensor=...)
            t = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(t, torch.Tensor) and t.is_meta:
                return t
        elif name in _VALUE_FACTORIES and kwargs.get("device") is None:
            kwargs = {**kwargs, "device": "cpu"}
        elif name in ("randn", "rand") and kwargs.get("device") in (None, "meta"):   # random values: none needed
            return torch.empty(*args, **{k: v for k, v in kwargs.items() if k != "generator"})
        elif (name in _SCALAR_OPS and len(args) == 2 and isinstance(args[0], torch.Tensor) and args[0].is_meta
              and args[0].is_floating_point() and isinstance(args[1], (int, float)) and not isinstance(args[1], bool)):
            return torch.empty(args[0].shape, dtype=args[0].dtype, device="meta")   # a number times it: same shape
        elif name in ("randn_like", "rand_like") and args and args[0].is_meta:
            return torch.empty(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype, device="meta")
        return func(*args, **kwargs)


class on_meta:
    """`with on_meta(): module = Build(...)`: modules built on the meta device (no memory, no values) without running
    their initialisers' value-only in-place ops (_VALUE_OPS) and with fixed-value factories on the CPU
    (_VALUE_FACTORIES); parameter and persistent buffer names, shapes and dtypes are those of a real build."""

    def __enter__(self):
        self._device, self._skip = torch.device("meta"), _SkipValueOps()
        self._device.__enter__()
        self._skip.__enter__()
        return self

    def __exit__(self, *exc):
        self._skip.__exit__(*exc)
        return self._device.__exit__(*exc)


def build_checked(build, tensors: dict[str, torch.Tensor], *, what: str = "model", select=None):
    """Builds a module from its checkpoint's config only after checking that the config fits the tensors.

    `build()` is first run on the meta device (no memory is allocated, so a config with a huge width cannot try to
    allocate terabytes) and the tensors' shapes are compared with the module's (`check_fits`, on `select(module)`
    if given); then the real module is built and returned (not loaded: call `load_into`). A config the model
    rejects (ValueError, TypeError, ZeroDivisionError...) is a one-line CheckpointError."""
    try:
        with on_meta():
            probe = build()
    except CheckpointError:
        raise
    except (ValueError, TypeError, ZeroDivisionError, AssertionError, OverflowError, KeyError) as e:
        raise CheckpointError(f"{what}: its config does not build a model ({type(e).__name__}: {e})") from None
    except Exception:  # a module that cannot be built on the meta device: no pre-check, build for real
        probe = None
    if probe is not None:
        check_fits(select(probe) if select else probe, tensors, what=what)
    return build()


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], *, what: str = "model") -> None:
    """Strict `load_state_dict` whose errors name the first missing, unexpected or mis-shaped key in one line."""
    check_fits(module, tensors, what=what)
    own = module.state_dict()
    module.load_state_dict({k: t.to(own[k].dtype) for k, t in tensors.items()}, strict=True)


def check_fits(module: torch.nn.Module, tensors: dict[str, torch.Tensor], *, what: str = "model") -> None:
    """One-line CheckpointError naming the first missing, unexpected or mis-shaped key (works on meta modules)."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        raise CheckpointError(f"{what} checkpoint does not fit: {len(missing)} missing keys (e.g. "
                              f"{missing[:1]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:1]})")
    for k, v in own.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{what} checkpoint does not fit: '{k}' has shape {tuple(tensors[k].shape)}, "
                                  f"the model expects {tuple(v.shape)}")


def flatten_state(state: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Splits nested dicts/lists holding tensors into (flat tensors, JSON-able skeleton with '@tensor:key' leaves)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[key] = node
            return f"@tensor:{key}"
        if isinstance(node, dict):
            return {"@dict": [[walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")] for i, (k, v) in enumerate(node.items())]}
        if isinstance(node, (list, tuple)):
            return {"@list" if isinstance(node, list) else "@tuple": [walk(v, f"{key}.{i}") for i, v in enumerate(node)]}
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot store a {type(node).__name__} in a checkpoint")

    skeleton = walk(state, prefix or "s")
    return tensors, skeleton


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """Inverse of `flatten_state`."""
    def walk(node: Any) -> Any:
        if isinstance(node, str) and node.startswith("@tensor:"):
            return tensors[node[len("@tensor:"):]]
        if isinstance(node, dict):
            if "@dict" in node:
                return {walk(k): walk(v) for k, v in node["@dict"]}
            if "@list" in node:
                return [walk(v) for v in node["@list"]]
            if "@tuple" in node:
                return tuple(walk(v) for v in node["@tuple"])
        return node

    return walk(skeleton)
