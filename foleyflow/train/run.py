"""One run folder, the same for every recipe: plain functions for its layout, its lock, saving, pruning and resuming
training states, and metric logging (no Trainer class: recipes call these and read top to bottom).

    out_dir/
      config.yaml              the resolved config of the latest start (rewritten on resume)
      checkpoints/state_<step:08d>.safetensors   resumable training states (the newest `keep_states` are kept)
      tb/                      TensorBoard event files
      metrics.jsonl            the same metrics, one JSON object per logged step: {"step": 100, "flow/mse": 0.41, ...}
      run.lock                 held (fcntl.flock) by rank 0 while a trainer runs; holds its pid
      <model>.safetensors      what the recipe exports (vae.safetensors, generator.safetensors, ...)

A typical recipe:

    lock = lock_run(cfg.out_dir, ctx)               # a second trainer on the same folder fails here, at once
    state, path = resume_state(cfg.out_dir, kind="vae", config=cfg, resumable=("optim.decay_steps",))
    ...
    save_state(cfg.out_dir, step, kind="vae", config=cfg, state={...}, keep=cfg.keep_states)
    release_run(lock)

The lock is an flock on `run.lock`: the kernel drops it when the holder dies (kill -9 included), so a crashed run
never leaves a stale lock behind. Only rank 0 takes it; the other ranks of a torchrun job wait at a barrier.
Runs of the old layouts (states in `out_dir` itself or in `out_dir/ckpt/`) are refused with the command that moves
their states into `checkpoints/`.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from foleyflow.errors import CheckpointError, FoleyError

STATES_DIR = "checkpoints"
LOCK_FILE = "run.lock"
METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
CONFIG_FILE = "config.yaml"
# config fields every recipe lets a resumed run change (a moved folder; to train longer, log or save differently)
COMMON_RESUMABLE = ("out_dir", "steps", "log_every", "ckpt_every", "keep_states", "threads", "device")
# old names of settings (before one vocabulary): read from states written by older runs
LEGACY_NAMES = {"save_every": "ckpt_every", "keep_last": "keep_states"}
LEGACY_STATE_DIRS = (".", "ckpt")  # train_flow wrote states into out_dir itself, train_vae/train_vocoder into ckpt/


class RunLockedError(FoleyError):
    """Another trainer holds the run folder."""


class ResumeError(CheckpointError):
    """A run folder cannot be resumed with this config (or is of an old layout)."""


def states_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / STATES_DIR


def state_path(out_dir: str | Path, step: int) -> Path:
    return states_dir(out_dir) / f"state_{step:08d}.safetensors"


def _step_of(path: Path) -> int:
    digits = path.stem[len("state_"):]
    return int(digits) if digits.isdigit() else -1


def list_states(folder: str | Path) -> list[Path]:
    """The training states `state_<step>.safetensors` in `folder`, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("state_*.safetensors") if _step_of(p) >= 0), key=_step_of)


def recipe_args(description: str, argv: list[str] | None = None):
    """The command line every recipe takes: `--config YAML` and dotted `key=value` overrides (the run folder is the
    config's `out_dir`). Returns the argparse namespace (config, overrides)."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config", required=True, help="YAML config (configs/<recipe>/*.yaml)")
    ap.add_argument("--out", help=argparse.SUPPRESS)  # the old spelling of out_dir: refused with the new one
    ap.add_argument("overrides", nargs="*", help="dotted overrides, e.g. out_dir=DIR steps=100 optim.lr=1e-4")
    args = ap.parse_args(argv)
    if args.out is not None:
        from foleyflow.errors import ConfigError

        raise ConfigError(f"recipes take the run folder as an override now: out_dir={args.out} instead of --out")
    return args


# ---------------------------------------------------------------------------------------------------------- lock
_HELD: dict[str, Any] = {}  # resolved lock path -> open file (a process re-entering its own run reuses its lock)


def lock_run(out_dir: str | Path, ctx=None):
    """Creates `out_dir` and takes its lock (rank 0 only; `ctx` is a foleyflow.train.dist.DistContext or None for a
    single process). Raises RunLockedError naming the holder's pid when another process holds it. Returns a handle
    for `release_run` (None on other ranks). Every rank leaves this function only once rank 0 holds the lock."""
    import fcntl

    from foleyflow.train.dist import barrier

    handle = None
    if ctx is None or ctx.is_main:
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise FoleyError(f"out_dir {out} is a file, not a folder")
        path = out / LOCK_FILE
        try:
            out.mkdir(parents=True, exist_ok=True)
            key = str(path.resolve())
            f = _HELD.get(key) or open(path, "a+")
        except OSError as e:
            raise FoleyError(f"cannot use out_dir {out}: {e.strerror or e}") from None
        if key in _HELD:
            handle = f
        else:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise RunLockedError(f"run folder {out} is in use by another trainer (pid {holder}); wait for it to "
                                     "end or choose another out_dir") from None
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            _HELD[key] = handle = f
    if ctx is not None:
        barrier(ctx)
    return handle


def release_run(handle) -> None:
    """Releases a lock taken by `lock_run` (no-op for None). The pid is left in the file; the lock is what counts."""
    import fcntl

    if handle is None or handle.closed:
        return
    for key, f in list(_HELD.items()):
        if f is handle:
            del _HELD[key]
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    handle.close()


# ------------------------------------------------------------------------------------------------- save and prune
def save_state(out_dir: str | Path, step: int, *, kind: str, config: Any, state: dict, provenance: dict | None = None,
               keep: int = 2) -> Path:
    """Writes the training state of `step` atomically to checkpoints/state_<step>.safetensors (kind
    "train_state/<kind>", `config` a config dataclass or its JSON), then keeps only the newest `keep` states."""
    from foleyflow.config import config_to_json
    from foleyflow.train.state import save_train_state

    cfg_json = config if isinstance(config, str) else config_to_json(config)
    path = save_train_state(state_path(out_dir, step), kind=kind, config=cfg_json, state=state, provenance=provenance)
    prune_states(out_dir, keep)
    return path


def prune_states(out_dir: str | Path, keep: int) -> list[Path]:
    """Deletes all but the newest `keep` (>= 1) training states of the run; returns the deleted paths."""
    if keep < 1:
        raise FoleyError(f"keep_states must be at least 1, got {keep}")
    old = list_states(states_dir(out_dir))[:-keep]
    for p in old:
        p.unlink(missing_ok=True)
    return old


# ------------------------------------------------------------------------------------------------------- resume
def latest_state(out_dir: str | Path) -> Path | None:
    """The newest training state of the run, or None. A folder of an old layout (states outside checkpoints/) is
    refused with the command that moves them."""
    found = list_states(states_dir(out_dir))
    if found:
        return found[-1]
    for sub in LEGACY_STATE_DIRS:
        folder = Path(out_dir) / sub
        if list_states(folder):
            where = Path(out_dir) if sub == "." else folder
            raise ResumeError(f"{out_dir} holds training states of the old layout in {where}; move them with "
                              f"`mkdir -p {states_dir(out_dir)} && mv {where}/state_*.safetensors "
                              f"{states_dir(out_dir)}/` and start again")
    return None


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(old: dict, new: dict, *, resumable=(), renamed: dict[str, str] | None = None,
                       defaults: dict | None = None) -> list[str]:
    """Dotted keys whose values differ between the config a state was written with (`old`) and this run's (`new`),
    except `resumable` keys (and everything under them). `renamed` maps old dotted names to new ones (defaults to
    LEGACY_NAMES); a key missing from `old` counts as having its value in `defaults` (a field added since)."""
    renamed = {**LEGACY_NAMES, **(renamed or {})}
    was = {renamed.get(k, k): v for k, v in _flatten(old).items()}
    now = _flatten(new)
    base = _flatten(defaults or {})
    free = tuple(resumable)

    def is_free(key: str) -> bool:
        return any(key == r or key.startswith(r + ".") for r in free)

    diff = []
    for k in sorted(set(was) | set(now)):
        if is_free(k):
            continue
        a = was[k] if k in was else base.get(k, "<missing>")
        b = now.get(k, "<missing>")
        if a != b:
            diff.append(k)
    return diff


def resume_state(out_dir: str | Path, *, kind: str, config: Any, resumable=(), renamed: dict[str, str] | None = None,
                 defaults: Any = None) -> tuple[dict | None, Path | None]:
    """Loads the newest training state of the run: (state, path), or (None, None) for a new run. `config` is this
    run's config dataclass; every field outside COMMON_RESUMABLE + `resumable` must equal the state's (else a
    ResumeError naming the keys). `defaults` (a config dataclass) gives the values of fields the state predates."""
    from foleyflow.checkpoint import checkpoint_config
    from foleyflow.config import to_dict
    from foleyflow.train.state import load_train_state

    path = latest_state(out_dir)
    if path is None:
        return None, None
    state, meta = load_train_state(path, kind=kind)
    free = (*COMMON_RESUMABLE, *resumable)
    diff = config_differences(checkpoint_config(meta), to_dict(config), resumable=free, renamed=renamed,
                              defaults=to_dict(defaults) if defaults is not None else None)
    if diff:
        shown = ", ".join(diff[:8]) + (f" and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise ResumeError(f"{path} was written with another config ({shown} differ); resume with the same config "
                          f"(only {', '.join(free)} may change) or choose a new out_dir")
    return state, path


def write_config(out_dir: str | Path, config: Any, ctx=None) -> None:
    """config.yaml of the run (rank 0; atomic)."""
    from foleyflow.config import save_config

    if ctx is None or ctx.is_main:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        save_config(config, Path(out_dir) / CONFIG_FILE)


# ------------------------------------------------------------------------------------------------------ metrics
class MetricLog:
    """TensorBoard scalars in out_dir/tb and one JSON line per call in out_dir/metrics.jsonl (appended, flushed).
    Make it on rank 0 only. A resumed run appends; lines past the resume step of a killed run stay in the file
    (readers keep the last line of each step)."""

    def __init__(self, out_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(str(out / TB_DIR))
        self.file = open(out / METRICS_FILE, "a")

    def log(self, step: int, values: dict[str, float], extra: dict | None = None) -> None:
        """Scalars `values` to TensorBoard and metrics.jsonl; `extra` (JSON values, e.g. the ids of the clips a step
        used) to metrics.jsonl only."""
        row = {"step": int(step)}
        for k, v in values.items():
            v = float(v)
            self.writer.add_scalar(k, v, step)
            row[k] = v
        row.update(extra or {})
        row["time"] = round(time.time(), 3)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)

    def close(self) -> None:
        self.writer.close()
        self.file.close()


def read_metrics(out_dir: str | Path) -> list[dict]:
    """The rows of out_dir/metrics.jsonl, one per step (the last written wins), in step order."""
    path = Path(out_dir) / METRICS_FILE
    rows: dict[int, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            rows[int(row["step"])] = row
    return [rows[k] for k in sorted(rows)]
