"""foleyflow.train.run: the run-folder lock (a second trainer is refused; kill -9 frees it), pruning, the resume
config check, the old-layout message and the metric log."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from foleyflow.train.run import (RunLockedError, ResumeError, MetricLog, config_differences, latest_state,
                                 list_states, lock_run, prune_states, read_metrics, release_run, resume_state,
                                 save_state, state_path)

ROOT = Path(__file__).resolve().parents[1]
HOLDER = """
import sys, time
from foleyflow.train.run import lock_run
lock_run(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def start_holder(folder: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_trainer_is_refused_and_kill_9_frees_the_lock(tmp_path):
    run = tmp_path / "run"
    holder = start_holder(run)
    try:
        with pytest.raises(RunLockedError, match=f"in use by another trainer \\(pid {holder.pid}\\)"):
            lock_run(run)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    handle = lock_run(run)  # the kernel dropped the dead holder's flock
    assert (run / "run.lock").read_text().strip() == str(os.getpid())
    release_run(handle)


def test_recipe_refuses_a_locked_folder_with_one_line(tmp_path):
    """A whole recipe (train_vae, one process) started on a held folder exits 2 with one line naming the pid."""
    run = tmp_path / "run"
    holder = start_holder(run)
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_vae.py"), "--config",
                               str(ROOT / "configs" / "train_vae" / "debug.yaml"), f"out_dir={run}"],
                              capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: run folder {run} is in use by another trainer "
                                                f"(pid {holder.pid}); wait for it to end or choose another out_dir"]
    assert not (run / "checkpoints").exists()


def test_lock_is_reentrant_in_one_process_and_released(tmp_path):
    a = lock_run(tmp_path)
    assert lock_run(tmp_path) is a
    release_run(a)
    b = lock_run(tmp_path)
    release_run(b)


def toy_state(step: int) -> dict:
    return {"model": {"w": torch.full((2,), float(step))}, "step": step}


@dataclass
class Toy:
    lr: float = 1e-3
    steps: int = 10
    keep_states: int = 2
    model: dict = field(default_factory=lambda: {"width": 4})


def test_save_prunes_to_the_last_n(tmp_path):
    for step in (1, 2, 3, 10, 20):
        save_state(tmp_path, step, kind="toy", config=Toy(), state=toy_state(step), keep=3)
    assert [p.name for p in list_states(tmp_path / "checkpoints")] == [
        "state_00000003.safetensors", "state_00000010.safetensors", "state_00000020.safetensors"]
    assert prune_states(tmp_path, 1) == [state_path(tmp_path, 3), state_path(tmp_path, 10)]
    with pytest.raises(Exception, match="keep_states must be at least 1"):
        prune_states(tmp_path, 0)
    assert not list(tmp_path.rglob("*.tmp"))


def test_resume_allows_declared_changes_and_names_other_keys(tmp_path):
    assert resume_state(tmp_path, kind="toy", config=Toy()) == (None, None)
    save_state(tmp_path, 5, kind="toy", config=Toy(), state=toy_state(5))
    state, path = resume_state(tmp_path, kind="toy", config=Toy(steps=50, keep_states=4))  # common resumable keys
    assert state["step"] == 5 and path == state_path(tmp_path, 5)
    with pytest.raises(ResumeError, match=r"\(lr, model.width differ\)"):
        resume_state(tmp_path, kind="toy", config=Toy(lr=1.0, model={"width": 8}))
    state, _ = resume_state(tmp_path, kind="toy", config=Toy(lr=1.0), resumable=("lr",))
    assert state["step"] == 5


def test_config_differences_reads_old_names_and_added_fields():
    old = {"save_every": 5, "keep_last": 2, "lr": 1.0}
    new = {"ckpt_every": 7, "keep_states": 2, "optim": {"lr": 1.0, "schedule": "step"}}
    assert config_differences(old, new, renamed={"lr": "optim.lr"}) == ["ckpt_every", "optim.schedule"]
    assert config_differences(old, new, renamed={"lr": "optim.lr"}, resumable=("ckpt_every",),
                              defaults={"optim": {"schedule": "step"}}) == []


@pytest.mark.parametrize("legacy", [".", "ckpt"])
def test_old_layout_is_refused_with_the_move_command(tmp_path, legacy):
    from foleyflow.train.state import save_train_state

    folder = tmp_path if legacy == "." else tmp_path / legacy
    save_train_state(folder / "state_00000004.safetensors", kind="toy", config="{}", state=toy_state(4))
    with pytest.raises(ResumeError, match=r"old layout.*mv .*state_\*\.safetensors .*checkpoints/") as err:
        latest_state(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "checkpoints").mkdir()
    for p in folder.glob("state_*"):  # what the message says to do
        p.rename(tmp_path / "checkpoints" / p.name)
    assert latest_state(tmp_path) == state_path(tmp_path, 4)


def test_metric_log_writes_tensorboard_and_json_lines(tmp_path):
    log = MetricLog(tmp_path)
    log.log(1, {"a/b": 0.5, "lr": torch.tensor(2.0)})
    log.log(2, {"a/b": 0.25})
    log.close()
    log = MetricLog(tmp_path)  # a resumed run appends; the last row of a step wins
    log.log(2, {"a/b": 0.125})
    log.close()
    rows = read_metrics(tmp_path)
    assert [(r["step"], r["a/b"]) for r in rows] == [(1, 0.5), (2, 0.125)] and rows[0]["lr"] == 2.0
    assert any((tmp_path / "tb").iterdir())
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1


def test_out_dir_that_is_a_file_or_unwritable_is_one_line(tmp_path):
    from foleyflow.errors import FoleyError

    (tmp_path / "f").write_text("x")
    with pytest.raises(FoleyError, match="is a file, not a folder"):
        lock_run(tmp_path / "f")
    with pytest.raises(FoleyError, match="cannot use out_dir"):
        lock_run(tmp_path / "f" / "run")
