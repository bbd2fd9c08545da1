"""benchmarks/reward_agreement.py for the four rewards: tiny untrained reward and evaluation models saved by the
test, two tiny generated sets of 3 and 4 five-second clips with their ground truth, reference audio, videos and
manifest; the JSON's structure, NaN-safe rho, the one-line errors, and that the per-clip metric values are the ones
`foleyflow evaluate` aggregates into its set figures."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from reward_helpers import click_clip, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SR, DUR, FPS = 16000, 5.0, 25
IDS = ["val_0", "val_1", "val_2", "val_3"]


def bench():
    spec = importlib.util.spec_from_file_location("reward_agreement", ROOT / "benchmarks" / "reward_agreement.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def panned(x: torch.Tensor, pan: float) -> np.ndarray:
    """(2, N) -> (2, N) float32 with constant-power pan (-1 left .. 1 right) of its mono mix."""
    m = x.mean(0).numpy()
    a = (pan + 1) * math.pi / 4
    return np.stack([math.cos(a) * m, math.sin(a) * m]).astype(np.float32)


def clip_events(i: int) -> list[dict]:
    rng = np.random.default_rng(i)
    onsets = np.sort(rng.uniform(0.3, 4.5, 3))
    ev = [{"sound_class": "room_tone", "kind": "ambience", "onset_s": 0.0, "offset_s": DUR, "gain": 0.1}]
    return ev + [{"sound_class": "impact_wood", "kind": "discrete", "onset_s": float(t), "offset_s": float(t) + 0.3,
                  "source_id": k, "on_screen": True, "gain": 0.9, "pan": float(rng.uniform(-0.9, 0.9)), "params": {}}
                 for k, t in enumerate(onsets)]


def events_audio(events: list[dict], seed: int, jitter_s: float = 0.0, pan_noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((2, int(DUR * SR)), np.float32)
    for e in events[1:]:
        t = e["onset_s"] + rng.uniform(-jitter_s, jitter_s)
        out += panned(click_clip([t], DUR, seed), float(np.clip(e["pan"] + rng.normal(0, pan_noise), -1, 1)))
    return np.clip(out, -1, 1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """val/ (truth JSON, reference wav, mp4 of each clip), manifest.jsonl, sets a (3 clips) and b (4 clips), models/
    (tiny evaluation CLAP and offset classifier), quality.safetensors, sync_av.safetensors (a contact head), and the
    four rewards."""
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import to_dict
    from foleyflow.media import write_audio, write_video
    from foleyflow.models.av_ssl import AudioEncoderConfig, SyncAVConfig, SyncAVModel, save_av_model
    from foleyflow.models.eval_audio import CLAP_KIND, ClapModel, ClapModelConfig, EvalCNNConfig
    from foleyflow.models.eval_quality import QualityModel, QualityModelConfig, save_quality_model
    from foleyflow.models.visual import SyncEncoderConfig

    root = tmp_path_factory.mktemp("agreement")
    val, models = root / "val", root / "models"
    for d in (val, models, root / "a", root / "b"):
        d.mkdir()
    rows = []
    for i, name in enumerate(IDS):
        events = clip_events(i)
        (val / f"{name}.json").write_text(json.dumps({"duration_s": DUR, "events": events}))
        write_audio(val / f"{name}.wav", events_audio(events, 100 + i), SR)
        frames = np.random.default_rng(i).integers(0, 256, (int(DUR * FPS), 32, 32, 3), dtype=np.uint8)
        write_video(val / f"{name}.mp4", list(frames), FPS, crf=20)
        rows.append({"id": name, "split": "val", "caption": f"A {['wooden', 'metal'][i % 2]} block in a room.",
                     "cot": f"Semantic: a {['wooden', 'metal'][i % 2]} block drops. Temporal: it knocks three times.",
                     "video": f"val/{name}.mp4", "audio": f"val/{name}.wav", "truth": f"val/{name}.json",
                     "duration_s": DUR})
        for s, (jit, pn) in (("a", (0.01, 0.1)), ("b", (0.2, 0.8))):
            if s == "b" or i < 3:
                write_audio(root / s / f"{name}.wav", events_audio(events, 200 + i, jit, pn), SR)
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.manual_seed(1)
    clap = ClapModel(ClapModelConfig(cnn=EvalCNNConfig(n_mels=32, channels=(4, 8, 8, 8), hop_length=320,
                                                       time_pool=(2, 1, 1, 1)), text_encoder="hashed", embed_dim=16))
    save_checkpoint(models / "clap.safetensors", clap.state_dict(), kind=CLAP_KIND, config=to_dict(clap.cfg))
    audio_cfg = AudioEncoderConfig(n_mels=16, channels=(8, 8), time_downsample=4, embed_dim=16)
    torch.manual_seed(2)
    save_av_model(models / "offset.safetensors", SyncAVModel(SyncAVConfig(
        visual=SyncEncoderConfig(image_size=16, patch_size=16, width=16, depth=1, num_heads=2, out_dim=16),
        audio=audio_cfg, head_width=16, head_depth=1, head_heads=2)))
    torch.manual_seed(3)
    save_av_model(root / "sync_av.safetensors", SyncAVModel(SyncAVConfig(
        visual=SyncEncoderConfig(image_size=32, patch_size=16, width=16, depth=1, num_heads=2, out_dim=16),
        audio=audio_cfg, head_width=16, head_depth=1, head_heads=2, event_head=True)), {"data": "train"})
    torch.manual_seed(4)
    save_quality_model(root / "quality.safetensors", QualityModel(QualityModelConfig(n_mels=16, channels=(4, 8),
                                                                                     width=16)).eval())
    from foleyflow.rewards import aesthetic, semantic, spatial, temporal

    for mod in (aesthetic, semantic, spatial, temporal):
        name = mod.__name__.rsplit(".", 1)[1]
        prov = {"config": {"data": {"text_encoder": "hashed"}}} if name == "semantic" else None
        getattr(mod, f"save_{name}_reward")(root / f"{name}.safetensors", tiny_model(name).eval(), prov)
    return root


def run(data, kind: str, *extra: str, json_name: str = "out.json"):
    args = ["--reward", kind, "--ckpt", str(data / f"{kind}.safetensors"), "--sets", str(data / "a"), str(data / "b"),
            "--json", str(data / json_name), "--eval-models", str(data / "models"), "--quality",
            str(data / "quality.safetensors"), "--manifest", str(data / "manifest.jsonl"), "--truth", str(data / "val"),
            "--sync", str(data / "sync_av.safetensors"), "--resamples", "50", *extra]
    assert bench().main(args) == 0
    return json.loads((data / json_name).read_text())


def check_block(block: dict, data: Path) -> None:
    assert set(block["sets"]) == {str(data / "a"), str(data / "b")}
    for folder, clips in ((data / "a", IDS[:3]), (data / "b", IDS)):
        row = block["sets"][str(folder)]
        assert row["clips"] == len(clips) and sorted(row["per_clip"]) == clips and 0 <= row["pairs"] <= len(clips)
        assert row["spearman"] is None or -1 <= row["spearman"] <= 1
        assert len(row["ci95"]) == 2 and all(v is None or -1 <= v <= 1 for v in row["ci95"])
        assert all(len(v) == 2 and math.isfinite(v[0]) for v in row["per_clip"].values())  # the reward always scores
        assert row["reward_mean"] == pytest.approx(np.mean([v[0] for v in row["per_clip"].values()]))
    assert block["pooled"]["clips"] == 7 and len(block["pooled"]["ci95"]) == 2
    assert block["pooled"]["spearman"] is None or -1 <= block["pooled"]["spearman"] <= 1


def check_lines(lines: list[str], kind: str, metrics: list[str]) -> None:
    """A line per set and metric, then a pooled line per metric."""
    assert len(lines) == 3 * len(metrics)
    for metric in metrics:
        assert sum(x.startswith(str(Path(x.split(":")[0]))) and f", {metric} mean " in x for x in lines[:-1]) == 2
    pooled = lines[-len(metrics):]
    for metric, line in zip(metrics, pooled):
        assert line.startswith("pooled: 7 clips") and f"Spearman({kind} reward, evaluation {metric})" in line


@pytest.mark.parametrize("kind", ["aesthetic", "semantic", "temporal", "spatial"])
def test_every_reward_kind_writes_the_report(data, kind, capsys):
    """Defaults: the semantic reward reads the CoT, the temporal and spatial rewards the contacts from the video."""
    out = run(data, kind)
    metric = {"aesthetic": "quality", "semantic": "clap_score", "temporal": "onset_f1@50ms",
              "spatial": "pan_error"}[kind]
    assert out["reward"] == kind and out["metric"] == metric and "secondary" not in out
    assert (out["settings"]["contacts"], out["settings"]["reward_text"]) == ("video", "cot")
    check_block(out, data)
    check_lines(capsys.readouterr().out.strip().splitlines(), kind, [metric])


def test_per_clip_values_are_what_evaluate_aggregates(data, capsys):
    """clap_score, desync_s and pan_error_clip_mean of `foleyflow evaluate` (eval.run.run_evaluation) are the means of
    the benchmark's per-clip values; onset_f1@50ms per clip is eval.truth's per-clip result. (Also the variants:
    ground-truth contacts, the caption as the semantic reward's text, --desync.)"""
    from foleyflow.eval.models import load_eval_models
    from foleyflow.eval.run import run_evaluation
    from foleyflow.eval.truth import evaluate_truth

    val, man, b = data / "val", data / "manifest.jsonl", str(data / "b")
    models = load_eval_models(data / "models", video_dir=val, text_file=man)
    rep = run_evaluation(data / "b", val, truth_dir=val, video_dir=val, text_file=man, models=models,
                         baselines=False)["systems"]["generated"]
    sem = run(data, "semantic", "--reward-text", "caption")
    assert sem["settings"]["reward_text"] == "caption"
    check_block(sem, data)
    assert rep["clap_score"] == pytest.approx(np.mean([v[1] for v in sem["sets"][b]["per_clip"].values()]), abs=1e-9)

    capsys.readouterr()
    tmp = run(data, "temporal", "--desync", "--contacts", "truth")
    lines = capsys.readouterr().out.strip().splitlines()
    assert tmp["settings"]["contacts"] == "truth" and set(tmp["secondary"]) == {"desync_s"}
    check_block(tmp, data)
    check_block(tmp["secondary"]["desync_s"], data)
    check_lines(lines, "temporal", ["onset_f1@50ms", "desync_s"])
    assert "an error: agreement is a negative rho" in lines[-1]
    des = tmp["secondary"]["desync_s"]["sets"][b]["per_clip"]
    assert rep["desync_s"] == pytest.approx(np.mean([v[1] for v in des.values()]), abs=1e-9)
    _, results = evaluate_truth(data / "b", val, reference_dir=val)
    onsets = tmp["sets"][b]["per_clip"]
    assert [onsets[r.name][1] for r in results] == pytest.approx([r.to_json()["onset_f1@50ms"] for r in results])

    pan = run(data, "spatial", "--contacts", "truth")
    check_block(pan, data)
    scored = [v[1] for v in pan["sets"][b]["per_clip"].values() if v[1] is not None]
    assert scored and rep["pan_error_clip_mean"] == pytest.approx(np.mean(scored), abs=1e-9)


def test_spearman_with_ties_and_nan_safe():
    b = bench()
    assert b.average_ranks(np.array([3.0, 1.0, 2.0, 2.0])).tolist() == [4.0, 1.0, 2.5, 2.5]
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): 4.5 / sqrt(4.5 * 5)
    assert b.spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 3, 2, 4])) == pytest.approx(4.5 / math.sqrt(22.5))
    assert b.spearman(np.arange(6.0), -np.exp(np.arange(6.0))) == pytest.approx(-1.0)
    sp = b.spearman_ci
    assert all(math.isnan(v) for v in sp(np.ones(5), np.arange(5.0)))  # a constant side
    assert all(math.isnan(v) for v in sp(np.arange(2.0), np.arange(2.0)))  # too few pairs
    rho, lo, hi = sp(np.arange(20.0), np.arange(20.0) ** 2)
    assert rho == pytest.approx(1.0) and lo == pytest.approx(1.0) and hi == pytest.approx(1.0)


def test_one_line_errors(data, capsys):
    from foleyflow.errors import FoleyError

    b = bench()
    base = ["--ckpt", str(data / "semantic.safetensors"), "--sets", str(data / "a")]
    with pytest.raises(FoleyError, match="needs --manifest"):
        b.main(["--reward", "semantic", *base])
    # a visual tower only (as the default bundle ships its sync encoder): no contact head
    from foleyflow.checkpoint import save_fp16_copy

    visual_only = save_fp16_copy(data / "sync_av.safetensors", data / "visual_only.safetensors", part="visual")
    with pytest.raises(FoleyError, match="contact head") as e:
        b.main(["--reward", "temporal", "--ckpt", str(data / "temporal.safetensors"), "--sets", str(data / "a"),
                "--truth", str(data / "val"), "--sync", str(visual_only)])
    assert "\n" not in str(e.value) and "--contacts truth" in str(e.value)
    with pytest.raises(FoleyError, match="no .wav files"):
        b.main(["--reward", "aesthetic", "--ckpt", str(data / "aesthetic.safetensors"), "--sets", str(data / "val" /
               "nothing"), "--quality", str(data / "quality.safetensors")])
