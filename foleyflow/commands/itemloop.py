"""The per-item loop shared by `generate-set` and `batch`: many generations with one loaded pipeline, resumable.

Each `Item` names its outputs (a .wav, and optionally a muxed video) and a `key`: a digest of everything that makes
its audio (settings, bundle sha256, input, text, seed). The command's record file (JSON, written atomically)
maps item ids to {"key", "sha256" (of the wav), "video_sha256" (of the video, if any)}:

- `plan` decides what is left to do: an item is skipped only when its recorded key is its key and every output
  still has its recorded sha256. An existing output the record does not name was not made by this command: it is
  refused (one-line FoleyError, before any model loads) unless `overwrite`.
- `run_items` generates the rest in order. Before an item's outputs are written the record names the item (with
  no sha256 yet), so a run interrupted between the write and the record still owns its files and a re-run
  regenerates that item instead of refusing it. Outputs are written atomically (foleyflow.fileio). An item that
  fails (a bad or missing video, a bad chain of thought...) is reported and the loop goes on; the caller prints the
  failures at the end and exits non-zero. Ctrl-C and SIGTERM stop the loop (after the current atomic write).
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from foleyflow.errors import FoleyError


@dataclass
class Item:
    """One generation: `video` (None: text-only over `duration_s`) with `prompt` / `cot` (and `plan`, a
    foleyflow.cot Plan whose track the pipeline lays when the generator follows plans), GenerationOptions field
    values `values` (seed included) over the run's options, written to `wav` (and muxed into `video_out`).
    `condition`: if given, called in the loop (its errors are the item's failures) for `(cot, plan)`, which replace
    the item's: conditions that cost time to make, such as the automatic planner's plan of the video."""

    id: str
    wav: Path
    key: str
    video: str | None = None
    video_out: Path | None = None
    prompt: str | None = None
    cot: str | Mapping[str, str] | None = None
    duration_s: float | None = None
    values: dict[str, Any] = field(default_factory=dict)
    plan: Any = None
    condition: Callable[[], tuple[Any, Any]] | None = None

    def outputs(self) -> list[Path]:
        return [self.wav] + ([self.video_out] if self.video_out is not None else [])


@dataclass
class RunSummary:
    generated: list[str] = field(default_factory=list)         # ids written in this run
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, one-line reason)
    timings_s: dict[str, float] = field(default_factory=dict)  # summed pipeline stage timings
    wall_s: float = 0.0


def item_key(what: Mapping[str, Any]) -> str:
    """sha256 hex digest of a JSON-able mapping (sorted keys): the key of an item's outputs."""
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def read_record(path: str | Path) -> dict:
    """The `made` map of a previous run ({id: {"key", "sha256", ...}}); empty when missing or unreadable."""
    try:
        made = json.loads(Path(path).read_text()).get("made", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return made if isinstance(made, dict) else {}


def _matches(rec: Any, item: Item) -> bool:
    from foleyflow.hashing import file_sha256

    if not isinstance(rec, dict) or rec.get("key") != item.key or not rec.get("sha256"):
        return False
    pairs = [(item.wav, rec.get("sha256"))] + ([(item.video_out, rec.get("video_sha256"))] if item.video_out else [])
    return all(p.is_file() and h and file_sha256(p) == h for p, h in pairs)


def plan(items: list[Item], made: Mapping[str, Any], *, command: str, record: Path, overwrite: bool) -> list[Item]:
    """The items left to do. Refuses (FoleyError) an existing output that `made` does not own, unless `overwrite`."""
    todo = []
    for it in items:
        rec = made.get(it.id)
        if _matches(rec, it):
            continue
        if not isinstance(rec, dict) and not overwrite:
            for p in it.outputs():
                if p.exists() or p.is_symlink():
                    raise FoleyError(f"{p} exists and was not made by {command} (no record in {record}); choose "
                                     "another --out or pass --overwrite to replace such files")
        todo.append(it)
    return todo


def run_items(pipe, todo: list[Item], made: dict, save_record: Callable[[], None], *, options, command: str,
              tag: str | None = None, desc: str | None = None, summary: RunSummary | None = None,
              stereo: bool = False) -> RunSummary:
    """Generates every item of `todo` with `pipe` (FoleyPipeline) and `options` (GenerationOptions; each item's
    `values` replace fields), writes its outputs atomically, updates `made` and calls `save_record()` after each
    item. Failures are collected in `summary` (a new one if None), not raised; BaseExceptions (Ctrl-C, SIGTERM) stop
    the loop. `stereo`: a mono soundtrack (MMAudio's released models) is written as two equal channels."""
    import time

    from tqdm import tqdm

    from foleyflow.faults import pause_point
    from foleyflow.hashing import file_sha256
    from foleyflow.commands.generate import output_channels
    from foleyflow.media import mux_audio, write_audio

    summary = summary if summary is not None else RunSummary()
    t_start = time.perf_counter()
    bar = tqdm(todo, desc=desc or command, unit="item", file=sys.stderr, disable=None, dynamic_ncols=True)
    for it in bar:
        made[it.id] = {"key": it.key, "sha256": None}   # ours from here on, even if interrupted mid-write
        save_record()
        try:
            cot, plan_ = it.condition() if it.condition is not None else (it.cot, it.plan)
            res = pipe.generate(it.video, prompt=it.prompt, cot=cot, duration_s=it.duration_s,
                                options=options.replace(**it.values), plan=plan_)
            for p in it.outputs():
                p.parent.mkdir(parents=True, exist_ok=True)
            write_audio(it.wav, output_channels(res.audio, stereo), res.sample_rate, tag=tag)
            entry = {"key": it.key, "sha256": file_sha256(it.wav)}
            if it.video_out is not None:
                mux_audio(it.video, output_channels(res.audio, stereo), res.sample_rate, it.video_out, tag=tag)
                entry["video_sha256"] = file_sha256(it.video_out)
        except FoleyError as e:
            summary.failures.append((it.id, str(e)))
            continue
        except Exception as e:  # noqa: BLE001 - one bad input must not stop the run; reported at the end
            summary.failures.append((it.id, f"internal error ({type(e).__name__}: {e})"))
            continue
        made[it.id] = entry
        summary.generated.append(it.id)
        for k, v in res.timings_s.items():
            summary.timings_s[k] = summary.timings_s.get(k, 0.0) + v
        save_record()
        pause_point("item_done")  # fault injection for tests (foleyflow.faults); no-op otherwise
        summary.wall_s = time.perf_counter() - t_start
    bar.close()
    summary.wall_s = time.perf_counter() - t_start
    return summary


def report_failures(summary: RunSummary, total: int, command: str) -> None:
    """Prints each failure (stderr, one line each) and raises a one-line FoleyError if any item failed."""
    if not summary.failures:
        return
    print(f"{command}: {len(summary.failures)} of {total} items failed:", file=sys.stderr)
    for item_id, reason in summary.failures:
        print(f"  {item_id}: {reason}", file=sys.stderr)
    raise FoleyError(f"{len(summary.failures)} of {total} items failed (listed above); re-run the same command to "
                     "retry them (finished items are kept)")
