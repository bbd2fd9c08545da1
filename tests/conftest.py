"""Shared test fixtures. Tests run on CPU with few threads, so the suite behaves the same on the 2-core CI machine."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(2)
    yield


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
