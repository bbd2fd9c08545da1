"""recipes/train_offset_classifier.py: event targets from ground truth, two steps on a tiny made-up manifest, resume,
and the fp16 export (recipes/eval_models.py) loading as a DeSync offset classifier."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from foleyflow.errors import FoleyError
from foleyflow.eval.av_models import load_offset_classifier
from foleyflow.media import write_audio, write_video

ROOT = Path(__file__).resolve().parents[1]


def load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_event_targets(tmp_path):
    recipe = load_recipe("train_offset_classifier")
    truth = {"events": [{"kind": "discrete", "onset_s": 1.0, "on_screen": True, "params": {}},
                        {"kind": "discrete", "onset_s": 2.0, "on_screen": False, "params": {}},
                        {"kind": "discrete", "onset_s": 3.0, "on_screen": True, "params": {"audible": False}},
                        {"kind": "continuous", "onset_s": 0.5, "on_screen": True, "params": {}}]}
    (tmp_path / "t.json").write_text(json.dumps(truth))
    on_screen, audible = recipe.event_times(str(tmp_path / "t.json"))
    assert on_screen.tolist() == [1.0] and audible.tolist() == [1.0, 2.0]
    centres = (np.arange(10) + 0.5) * 0.2
    assert np.flatnonzero(recipe.token_targets(centres, np.array([0.95]), 0.06)).tolist() == [4]
    assert not recipe.token_targets(centres, np.array([]), 0.06).any()


def make_world(root: Path, n: int = 3, seconds: float = 5.2, fps: int = 25, sr: int = 16000) -> Path:
    """Clips with a white flash and a click at the same random times, a FoleyWorld-like truth and a manifest."""
    rows = []
    for i in range(n):
        rng = np.random.default_rng(i)
        onsets = np.sort(rng.uniform(0.2, seconds - 0.2, 4)).round(2)
        frames = np.zeros((int(seconds * fps), 16, 16, 3), np.uint8)
        audio = np.zeros((2, int(seconds * sr)), np.float32)
        for t in onsets:
            frames[int(t * fps)] = 255
            audio[:, int(t * sr): int(t * sr) + 200] = 0.5
        write_video(root / f"c{i}.mp4", list(frames), fps, crf=5)
        write_audio(root / f"c{i}.wav", audio, sr)
        (root / f"c{i}.json").write_text(json.dumps({"events": [
            {"kind": "discrete", "onset_s": float(t), "on_screen": True, "params": {}} for t in onsets]}))
        rows.append({"id": f"c{i}", "video": f"c{i}.mp4", "audio": f"c{i}.wav", "truth": f"c{i}.json"})
    (root / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "m.jsonl"


TINY = ["model.visual.image_size=16", "model.visual.width=16", "model.visual.depth=1", "model.visual.num_heads=2",
        "model.visual.out_dim=16", "model.audio.n_mels=16", "model.audio.channels=[8,8]", "model.audio.embed_dim=16",
        "model.head_width=16", "model.head_depth=1", "model.head_heads=2", "data.size=16", "batch_size=3",
        "optim.warmup_steps=1", "frame_input=motion", "log_every=1", "ckpt_every=1", "keep_states=5"]


def test_two_steps_resume_and_export(tmp_path):
    recipe = load_recipe("train_offset_classifier")
    manifest = make_world(tmp_path)
    out = tmp_path / "run"
    config = ROOT / "configs" / "eval_models" / "offset.yaml"
    recipe.main(["--config", str(config), f"out_dir={out}", f"data.manifest={manifest}", "steps=1", *TINY])
    recipe.main(["--config", str(config), f"out_dir={out}", f"data.manifest={manifest}", "steps=2", *TINY])
    states = sorted((out / "checkpoints").glob("state_*.safetensors"))
    assert [p.name for p in states] == ["state_00000001.safetensors", "state_00000002.safetensors"]
    clf = load_offset_classifier(out / "sync_av.safetensors")
    assert clf(np.zeros((120, 16, 16, 3), np.uint8), np.zeros(76800, np.float32)).shape == (21,)
    # the fp16 export of a training state (model weights only, without the probes) loads the same way
    tools = load_recipe("eval_models")
    tools.main(["export", "--kind", "sync_av", "--state", str(states[-1]), "--out", str(tmp_path / "o.safetensors")])
    exported = load_offset_classifier(tmp_path / "o.safetensors")
    rng = np.random.default_rng(0)
    f, a = rng.integers(0, 255, (120, 16, 16, 3), dtype=np.uint8), rng.standard_normal(76800).astype(np.float32)
    np.testing.assert_allclose(exported(f, a), clf(f, a), atol=2e-2)
    with pytest.raises(FoleyError, match="data.manifest"):
        recipe.main(["--config", str(config), f"out_dir={tmp_path / 'x'}", "data.manifest=null", *TINY])
    assert exported.frame_input == clf.frame_input == "motion"
