"""Crash-safe, resumable training state: model, EMA, optimizer, scheduler, step and RNG states in one safetensors file.

`save_train_state` writes atomically (see foleyflow.checkpoint), so a run killed at any moment resumes from the last
complete file with identical optimizer and EMA state. Nothing is pickled: nested state is flattened into tensors plus a
JSON skeleton stored in the metadata.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foleyflow.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from foleyflow.errors import CheckpointError

SKELETON = "foleyflow.train_skeleton"


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": json.dumps(random.getstate()),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(lambda v: v if not
                      isinstance(v, np.generic) else v.item(), np_state[2:])]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))


def save_train_state(path: str | Path, *, kind: str, config: str | dict, state: dict[str, Any],
                     provenance: dict | None = None) -> Path:
    """`state` is any nested dict of tensors / numbers / strings, e.g. {"model": sd, "ema": ema.state_dict(),
    "optimizer": opt.state_dict(), "step": 1200, "rng": rng_state()}."""
    tensors, skeleton = flatten_state(state)
    return save_checkpoint(path, tensors, kind=f"train_state/{kind}", config=config, provenance=provenance,
                           extra={SKELETON: json.dumps(skeleton)})


def load_train_state(path: str | Path, *, kind: str) -> tuple[dict, dict[str, str]]:
    """Returns (state, metadata); refuses a file that is not a training state of `kind`."""
    tensors, meta = load_checkpoint(path, kind=f"train_state/{kind}")
    if SKELETON not in meta:
        raise CheckpointError(f"{path} has no training-state skeleton")
    return unflatten_state(tensors, json.loads(meta[SKELETON])), meta
