"""Fault injection for tests: pause a command at a named stage so a test can interrupt it there.

With the environment variable FOLEYFLOW_PAUSE_AT=STAGE[,STAGE...] (stages: "sampling", "audio_write", "mux",
"item_done" after each item of batch / generate-set), the
first time a process reaches `pause_point(STAGE)` it prints `foleyflow: paused at STAGE` to stderr and sleeps
FOLEYFLOW_PAUSE_S seconds (default 30), during which a test sends SIGINT or SIGTERM. Unset (the normal case), a
pause point costs one dictionary lookup. The environment is read when a pause point is reached, not at import.
"""
from __future__ import annotations

import os
import sys
import time

STAGES = ("sampling", "audio_write", "mux", "item_done")
_done: set[str] = set()


def pause_point(stage: str) -> None:
    """Pauses here if FOLEYFLOW_PAUSE_AT names `stage` (once per process and stage)."""
    wanted = os.environ.get("FOLEYFLOW_PAUSE_AT")
    if not wanted or stage in _done or stage not in wanted.split(","):
        return
    _done.add(stage)
    print(f"foleyflow: paused at {stage}", file=sys.stderr, flush=True)
    end = time.monotonic() + float(os.environ.get("FOLEYFLOW_PAUSE_S", "30"))
    while time.monotonic() < end:  # a signal handler that raises ends the pause
        time.sleep(0.05)
