"""recipes/monitor_grpo.py (the evaluation-metric monitor of a GRPO run) after a tiny 2-iteration GRPO run of
tests/test_train_grpo.py's bundle and reward checkpoints: it scores iteration 0 and every state, writes
eval_val.jsonl and TensorBoard `eval_val/<key>` scalars at the right iterations, rebuilds exactly the generator the
recipe exported, resumes without scoring anything again, and by default takes only the newest unscored state."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reward_helpers import ROOT
from test_train_grpo import argv, inputs, recipe  # noqa: F401  (inputs: the module fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def monitor():
    spec = importlib.util.spec_from_file_location("recipe_monitor_grpo", ROOT / "recipes" / "monitor_grpo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def events(tb: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} of the monitor's own event files in tb/."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict = {}
    for f in sorted(tb.glob("*.eval_val")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_monitor_scores_start_and_states_writes_tb_and_jsonl_and_resumes(inputs, tmp_path, monkeypatch):  # noqa: F811
    index = Path(inputs["bundle"]) / "bundle.json"   # 3 s clips in windows of 1.5 s: overlap below half of it
    data = json.loads(index.read_text())
    index.write_text(json.dumps({**data, "defaults": {**data["defaults"], "overlap_s": 0.5}}))
    out = tmp_path / "run"
    assert recipe().main(argv(inputs, out, "steps=2", "ckpt_every=1")) == 0
    mon = monitor()
    args = [str(out), "--manifest", str(inputs["manifest"]), "--clips", "2", "--steps", "2", "--no-models",
            "--nice", "0", "--threads", "1", "--once"]
    assert mon.main(args + ["--every-state"]) == 0
    rows = mon.read_record(out)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert [r["state"] for r in rows] == [None, "state_00000001.safetensors", "state_00000002.safetensors"]
    assert all(r["ids"] == inputs["val_ids"] for r in rows)           # the first val rows, never train ones
    from foleyflow.commands.generate_set import bundle_sha256

    assert rows[0]["bundle_sha256"] == bundle_sha256(inputs["bundle"])
    assert len({r["bundle_sha256"] for r in rows}) == 3                # each state's own generator was scored
    for r in rows:
        assert {"onset_f1@50ms", "pan_error", "fd_melstats"} <= set(r["metrics"])
        assert "class_accuracy" in r["skipped"] and "fd_learned" not in r["metrics"]   # --no-models
    tags = events(out / "tb")
    for key in ("onset_f1@50ms", "pan_error", "fd_melstats"):
        got = tags[f"eval_val/{key}"]
        assert [s for s, _ in got] == [0, 1, 2]
        assert [v for _, v in got] == pytest.approx([r["metrics"][key] for r in rows])
    # the generator of a state is the one the recipe exported (the last state's EMA = generator_ema.safetensors)
    from foleyflow.train.run import state_path

    cfg = mon.run_config(out)
    gen = mon.export_generator(state_path(out, 2), Path(inputs["bundle"]) / "generator.safetensors", cfg, "ema",
                               tmp_path / "g.safetensors")
    ours, theirs = load_file(gen), load_file(out / "generator_ema.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # resume: nothing is scored again, nothing written
    before = (out / "eval_val.jsonl").read_bytes()
    monkeypatch.setattr(mon, "score_bundle", lambda *a, **k: pytest.fail("scored again"))
    assert mon.main(args + ["--every-state"]) == 0
    assert (out / "eval_val.jsonl").read_bytes() == before
    assert mon.finished(out, cfg, {0, 1, 2})
    # without --every-state a pass takes only the newest unscored state
    (out / "eval_val.jsonl").write_text(before.decode().splitlines(keepends=True)[0])
    monkeypatch.setattr(mon, "score_bundle",
                        lambda *a, **k: {"metrics": {"pan_error": 0.5}, "skipped": [], "bundle_sha256": "x"})
    assert mon.main(args) == 0
    assert [r["iteration"] for r in mon.read_record(out)] == [0, 2]
    # a state the training pruned before the monitor reached it is skipped, not an error
    ns = mon.parse_args(args + ["--work", str(tmp_path / "work")])
    assert mon.score_iteration(out, 7, state_path(out, 7), Path(inputs["bundle"]), cfg, [], ns, None) is None
    assert [r["iteration"] for r in mon.read_record(out)] == [0, 2]
    # the training recipe never reads what the monitor writes, nor imports the evaluation package
    source = (ROOT / "recipes" / "train_grpo.py").read_text()
    assert "eval_val" not in source and "foleyflow.eval" not in source


def test_monitor_refuses_a_folder_that_is_not_a_run_and_a_manifest_without_val(inputs, tmp_path):  # noqa: F811
    from foleyflow.errors import FoleyError

    mon = monitor()
    with pytest.raises(FoleyError, match="not a GRPO run folder"):
        mon.main([str(tmp_path), "--manifest", str(inputs["manifest"]), "--nice", "0", "--once"])
    with pytest.raises(FoleyError, match="no 'val' row"):
        mon.val_rows(_no_val(inputs, tmp_path), 4)


def _no_val(inputs, tmp_path) -> str:
    rows = [json.loads(line) for line in Path(inputs["manifest"]).read_text().splitlines()]
    path = tmp_path / "train_only.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r.get("split") != "val"))
    return str(path)
