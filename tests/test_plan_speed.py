"""benchmarks/plan_speed.py: times the whole video -> plan path with the installed default bundle's planner; bad
inputs are one-line errors."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "foleyflow" / "assets" / "default"
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not (DEFAULT / "bundle.json").is_file(), reason="no default bundle installed")]


def load():
    spec = importlib.util.spec_from_file_location("plan_speed", ROOT / "benchmarks" / "plan_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plan_speed_prints_each_part_and_refuses_bad_inputs(tmp_path, capsys):
    m = load()
    assert m.main([str(ROOT / "examples" / "demo.mp4"), "--runs", "1", "--threads", "1"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert row[0] == "demo.mp4" and float(row[1]) == pytest.approx(8.0)
    total, parts = float(row[2]), [float(x) for x in row[3:]]
    assert len(parts) == 4 and all(p >= 0 for p in parts) and total >= parts[0] + parts[1] > 0
    assert m.main([str(tmp_path / "missing.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert m.main([str(ROOT / "examples" / "demo.mp4"), "--bundle", str(tmp_path)]) == 2
    assert "bundle" in capsys.readouterr().err
