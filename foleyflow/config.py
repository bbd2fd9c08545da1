"""Typed configuration: dataclasses filled from YAML files and dotted command-line overrides.

Rules: unknown keys are errors (with their dotted path); values are checked against the field types; a YAML file may
name another file to start from with the key `_base` (a path relative to itself). The resolved config is plain data,
so it can be saved next to every run (`save_config`) and embedded in every checkpoint (`config_to_json`).

    cfg = load_config(TrainConfig, "configs/train_vae/debug.yaml", ["optim.lr=3e-4", "steps=10"])
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from foleyflow.errors import ConfigError

T = TypeVar("T")


def _check(value: Any, tp: Any, path: str) -> Any:
    """Converts `value` to type `tp` where that is lossless (int -> float, list -> tuple), else raises ConfigError."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}' must be a mapping, got {type(value).__name__}")
        return from_dict(tp, value, _prefix=path + ".")
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key '{path}' has an invalid value {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"config key '{path}' must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}' must be a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key '{path}' must have {len(args)} items, got {len(value)}")
            items = [_check(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_check(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
        args = get_args(tp)
        value_tp = args[1] if len(args) == 2 else Any
        return {k: _check(v, value_tp, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # PyYAML reads exponents without a dot ("1e-4") as strings (YAML 1.1)
            try:
                value = float(value) if math.isfinite(float(value)) else value
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{path}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{path}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{path}' must be a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"config key '{path}' must be {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, _prefix: str = "") -> T:
    """Builds dataclass `cls` from a (nested) dict. Missing keys keep their defaults; unknown keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"config for '{_prefix.rstrip('.') or cls.__name__}' must be a mapping")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{_prefix}{unknown[0]}' (known: {', '.join(sorted(fields))})")
    kwargs = {k: _check(v, hints[k], _prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without a default
        raise ConfigError(f"config for {cls.__name__}: {e}") from None


def to_dict(cfg: Any) -> dict:
    """The config as plain nested dicts/lists (tuples become lists), ready for YAML or JSON."""
    return json.loads(config_to_json(cfg))


def config_to_json(cfg: Any) -> str:
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def config_from_json(cls: type[T], text: str) -> T:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config JSON is not valid: {e}") from None
    return from_dict(cls, data)


def parse_override(item: str) -> tuple[list[str], Any]:
    """'optim.lr=3e-4' -> (['optim', 'lr'], 0.0003). Values are parsed as YAML scalars or lists."""
    import yaml

    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.subkey=value")
    key, raw = item.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path) -> dict:
    """Reads a YAML mapping, following `_base` (relative to the file) recursively."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = data.pop("_base", None)
    if base is not None:
        data = _merge(read_yaml(path.parent / base), data)
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    """Defaults of `cls`, updated by the YAML file at `path` (if any), then by dotted `overrides`."""
    data = read_yaml(path) if path is not None else {}
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{k}' is not a mapping")
        node[keys[-1]] = value
    return from_dict(cls, data)


def save_config(cfg: Any, path: str | Path) -> None:
    """Writes the resolved config as YAML (atomically)."""
    import yaml

    path = Path(path)
    from foleyflow.fileio import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
