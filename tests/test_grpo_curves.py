"""benchmarks/grpo_curves.py on synthetic train_grpo metrics files: cumulative compute, Flow's final reward, the
compute at which a Fast run reaches it and the ratio (issue 18's "3x less compute"), plots, one-line errors."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def curves():
    spec = importlib.util.spec_from_file_location("bench_grpo_curves", ROOT / "benchmarks" / "grpo_curves.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_run(folder: Path, values: list[float], *, wall: float, evals: float, val_every: int = 1,
              extra_lines: list[dict] = ()) -> Path:
    """metrics.jsonl of a run: `val/weighted` = values[i] at step (i + 1) * val_every, the same compute each step."""
    folder.mkdir(parents=True)
    rows = []
    for step in range(1, len(values) * val_every + 1):
        r = {"step": step, "train/iter_s": wall, "compute/core_s": 2 * wall, "compute/net_evals": evals,
             "reward/weighted": 0.0}
        if step % val_every == 0:
            r["val/weighted"] = values[step // val_every - 1]
        rows.append(r)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, *extra_lines]))
    return folder


def test_fast_reaches_flows_final_reward_and_the_ratio_is_computed(tmp_path, capsys):
    m = curves()
    # Flow: 10 iterations of 50 s and 1000 evaluations, reward 0.1 .. 1.0 then flat; final (last 20%) = 1.0
    flow = write_run(tmp_path / "flow", [0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0], wall=50, evals=1000)
    # Fast: 10 s and 200 evaluations per iteration, reaches 1.0 at its 6th iteration
    fast = write_run(tmp_path / "fast", [0.2, 0.4, 0.6, 0.8, 0.95, 1.02, 1.05, 1.1], wall=10, evals=200)
    a, b = m.load_run(fast, "val/weighted"), m.load_run(flow, "val/weighted")
    assert a["wall_s"][:3] == [10, 20, 30] and b["net_evals"][-1] == 10_000
    c = m.compare(a, b, final_frac=0.2)
    assert c["flow_final"] == pytest.approx(1.0) and c["flow_final_points"] == 2
    assert c["flow_reach"]["step"] == 6 and c["fast_reach"]["step"] == 6
    assert c["ratio"]["wall_s"] == pytest.approx(300 / 60) and c["ratio"]["net_evals"] == pytest.approx(6000 / 1200)
    # smoothing over 3 points delays Fast's reach to step 7 (mean of 0.95, 1.02, 1.05 = 1.007)
    assert m.compare(a, b, smooth=3)["fast_reach"]["step"] == 7
    # a Flow run whose running mean never gets to the mean of its own last points reaches it at its end
    wobbly = m.load_run(write_run(tmp_path / "wobbly", [0.1, 1.0, 0.2, 1.0, 0.3], wall=50, evals=1000),
                        "val/weighted")
    c = m.compare(a, wobbly, smooth=3)          # final 0.3 (one point); running means 0.1, 0.55, 0.43, 0.73, 0.5
    assert c["flow_reach"]["step"] == 2 and "at_end" not in c["flow_reach"]
    c = m.compare(a, m.load_run(write_run(tmp_path / "late", [0.1, 0.2, 1.0], wall=50, evals=1000),
                                "val/weighted"), smooth=3, final_frac=0.34)   # final 1.0; running means end at 0.43
    assert c["flow_reach"]["at_end"] and c["flow_reach"]["step"] == 3
    assert c["ratio"]["wall_s"] == pytest.approx(150 / 70)      # Fast's running mean reaches 1.0 at step 7
    # a Fast run that never reaches it has no ratio
    slow = m.load_run(write_run(tmp_path / "slow", [0.1, 0.2, 0.3], wall=10, evals=200), "val/weighted")
    assert m.compare(slow, b)["ratio"] is None
    # the CLI: labels, plots, JSON
    assert m.main([f"F={fast}", f"G={flow}", "--fast", "F", "--flow", str(flow), "--out", str(tmp_path / "png"),
                   "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "F vs G" in out and "wall_s 5.00x" in out and "net_evals 5.00x" in out
    assert (tmp_path / "png" / "reward_vs_wall_s.png").stat().st_size > 1000
    assert (tmp_path / "png" / "reward_vs_net_evals.png").stat().st_size > 1000
    assert (tmp_path / "png" / "dimensions.png").stat().st_size > 1000
    assert json.loads((tmp_path / "c.json").read_text())["comparisons"][0]["ratio"]["wall_s"] == pytest.approx(5.0)


def test_compute_is_cumulative_over_every_iteration_and_resumed_lines_replace_old_ones(tmp_path):
    m = curves()
    # val every 2 iterations; a resumed run rewrote step 4 (the last line of a step wins)
    run = write_run(tmp_path / "r", [0.1, 0.2, 0.3], wall=5, evals=10, val_every=2,
                    extra_lines=[{"step": 4, "train/iter_s": 7, "compute/core_s": 0, "compute/net_evals": 10,
                                  "val/weighted": 0.25}])
    r = m.load_run(run, "val/weighted")
    assert r["steps"] == [2, 4, 6] and r["value"] == [0.1, 0.25, 0.3]
    assert r["wall_s"] == [10, 22, 32] and r["net_evals"] == [20, 40, 60]


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    m = curves()
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/iter_s": 1.0, "val/weighted": 1.0}) + "\n")
    assert m.main([str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "compute/core_s" in err and len(err.splitlines()) == 1
    ok = write_run(tmp_path / "ok", [0.1], wall=1, evals=1)
    assert m.main([str(ok), "--key", "val/semantic"]) == 2
    assert "no iteration logged val/semantic" in capsys.readouterr().err
    assert m.main([str(ok), "--fast", "nope", "--flow", "ok"]) == 2
    assert "nope is not one of the runs" in capsys.readouterr().err


def test_dimension_series_reads_every_reward_dimension(tmp_path):
    m = curves()
    rows = [{"step": i, "train/iter_s": 1, "compute/core_s": 1, "compute/net_evals": 1, "reward/weighted": 0.0,
             "reward/semantic": float(i), "reward/semantic_group_std": 0.1, "reward/temporal": 2.0 * i,
             **({"val/semantic": 10.0 * i, "val/weighted": 1.0} if i % 2 == 0 else {})} for i in range(1, 7)]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = m.dimension_series(tmp_path / "run", smooth_train=2)
    assert sorted(s) == ["semantic", "temporal"]              # weighted and the group spreads are not dimensions
    assert s["semantic"]["val_steps"] == [2, 4, 6] and s["semantic"]["val"] == [20.0, 40.0, 60.0]
    assert s["semantic"]["train"] == [1.0, 1.5, 2.5, 3.5, 4.5, 5.5]   # running mean over 2 iterations
    assert s["temporal"]["val"] == [] and len(s["temporal"]["train"]) == 6
    assert m.plot_dimensions({"r": str(tmp_path / "run")}, tmp_path / "png").stat().st_size > 1000


def test_smoothing_and_final_fraction_are_checked(tmp_path, capsys):
    m = curves()
    run = write_run(tmp_path / "r", [0.1, 0.2], wall=1, evals=1)
    for bad in (["--smooth", "0"], ["--smooth-train", "0"], ["--final-frac", "0"]):
        assert m.main([str(run), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1
