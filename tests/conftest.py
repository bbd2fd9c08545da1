"""Shared test fixtures. Tests run on CPU with few threads, so the suite behaves the same on the 2-core CI machine."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FOLEYFLOW_SHARED", ROOT.parent / "shared"))  # override when run from a worktree


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny models (`pytestmark = pytest.mark.usefixtures("one_thread")`): one torch thread is faster
    there, and on a busy 2-core machine OpenMP barriers make two threads far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared reference material not found at {SHARED} (outside contributors may not have it)")
    return SHARED


@pytest.fixture(scope="session")
def shared_media(shared_dir) -> Path:
    path = shared_dir / "media"
    if not path.is_dir():
        pytest.skip(f"real test clips not found at {path}")
    return path


@pytest.fixture(scope="session")
def mmaudio_fixtures(shared_dir) -> Path:
    path = shared_dir / "fixtures" / "mmaudio"
    if not path.is_dir():
        pytest.skip(f"MMAudio parity fixtures not found at {path}")
    return path


class CliResult:
    def __init__(self, proc):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def run_cli():
    """Runs `python -m foleyflow ARGS...` from this checkout; returns .code, .out, .err."""
    import os
    import subprocess
    import sys

    def run(*args, timeout=300, cwd=None):
        env = dict(os.environ, PYTHONPATH=str(ROOT), FOLEYFLOW_TEST="1")
        env.pop("FOLEYFLOW_DEBUG", None)
        proc = subprocess.run([sys.executable, "-m", "foleyflow", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=cwd)
        return CliResult(proc)

    return run
