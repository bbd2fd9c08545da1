"""Plans at generation (issue 19 item 3): `FoleyPipeline.conditions(plan=)` / `generate(plan=)` and
`foleyflow generate --cot PLAN.json` lay the plan on the latent timeline for a bundle with a plan pathway, and only
warn for a bundle without one."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from foleyflow.bundle import build_untrained_bundle
from foleyflow.conditioning import Window
from foleyflow.models.generator import Generator
from foleyflow.models.text_encoder import TextEncoderConfig

WINDOW_S = 2.0
TINY_GEN = dict(hidden_dim=32, num_heads=2, num_joint_blocks=1, num_audio_blocks=1)
TEXT_CFG = TextEncoderConfig(seq_len=32, part_seq_len=32)
PLAN = {"schema": "foleyflow-cot/1", "duration_s": 1.5, "scene": {"room": "hall"},
        "sources": [{"id": "m", "class": "marimba", "on_screen": False, "events": [0.5, 1.1], "pan": -0.8}]}


pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)


@pytest.fixture(scope="module")
def text_encoder():
    from foleyflow.models.text_encoder import load_text_encoder
    return load_text_encoder(TEXT_CFG)


def bundle(folder: Path, text_encoder, plan_dim: int) -> Path:
    from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig

    return build_untrained_bundle(folder, seed=0, window_s=WINDOW_S, generator_overrides={**TINY_GEN,
                                                                                           "plan_dim": plan_dim},
                                  semantic_cfg=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
                                  sync_cfg=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16),
                                  text_cfg=TEXT_CFG, text_encoder=text_encoder, name=f"plan{plan_dim}")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, text_encoder) -> dict[int, Path]:
    d = tmp_path_factory.mktemp("bundles")
    return {k: bundle(d / f"b{k}", text_encoder, k) for k in (0, 12)}


def spy(monkeypatch) -> list:
    """Records every plan track the generator's plan pathway receives."""
    seen = []
    original = Generator.plan_condition

    def recording(self, plan, *args):
        seen.append(None if plan is None else plan.detach().clone())
        return original(self, plan, *args)
    monkeypatch.setattr(Generator, "plan_condition", recording)
    return seen


def test_pipeline_lays_the_plan_on_each_window(bundles, text_encoder):
    from foleyflow.cot import parse_plan
    from foleyflow.pipeline import FoleyPipeline

    plan = parse_plan(PLAN)
    pipe = FoleyPipeline.from_bundle(bundles[12], precision="fp32", text_encoder=text_encoder)
    assert pipe.follows_plan
    fps = pipe.generator.cfg.latent_fps
    c = pipe.conditions(None, Window(0.4, 1.0), plan=plan)
    assert c.plan.shape == (1, pipe.generator.cfg.seq_lengths(1.0)[0], 12)
    peaks = torch.nonzero(c.plan[0, :, 0] > 0.999).flatten().tolist()
    assert peaks == [math.floor((t - 0.4) * fps + 0.5) for t in (0.5, 1.1)]
    assert c.plan[0, peaks[0], 1] > c.plan[0, peaks[0], 2]                    # the left gain: pan -0.8
    assert pipe.conditions(None, Window(0.0, 1.0)).plan is None
    without = FoleyPipeline.from_bundle(bundles[0], precision="fp32", text_encoder=text_encoder)
    assert not without.follows_plan and without.conditions(None, Window(0.0, 1.0), plan=plan).plan is None
    result = without.generate(None, duration_s=1.0, plan=plan, steps=1)
    assert [n for n in result.notes if "no plan pathway" in n] and all("\n" not in n for n in result.notes)


def test_generate_cot_plan_file_reaches_the_network(bundles, tmp_path, monkeypatch, capsys):
    from foleyflow.cli import main

    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    seen = spy(monkeypatch)
    out = tmp_path / "gen.wav"
    code = main(["generate", "--cot", str(tmp_path / "plan.json"), "--duration", "1.5", "-o", str(out), "--steps",
                 "2", "--bundle", str(bundles[12]), "--precision", "fp32", "--seed", "1"])
    err = capsys.readouterr().err
    assert code == 0 and out.is_file(), err
    tracks = [p for p in seen if p is not None]
    assert tracks, "the plan track never reached the generator"
    fps = 16000 / 512
    peaks = torch.nonzero(tracks[0][0, :, 0] > 0.999).flatten().tolist()
    assert peaks == [math.floor(t * fps + 0.5) for t in (0.5, 1.1)]
    assert None in seen          # the unconditional guidance branch takes the learned empty plan
    # a bundle without the pathway: the plan counts as its text, with a one-line warning
    code = main(["generate", "--cot", str(tmp_path / "plan.json"), "--duration", "1.5", "-o", str(tmp_path / "g0.wav"),
                 "--steps", "1", "--bundle", str(bundles[0]), "--precision", "fp32"])
    err = capsys.readouterr().err
    assert code == 0 and [line for line in err.splitlines() if line.startswith("warning:") and "plan" in line]
    # a malformed plan is a one-line error naming the file
    bad = dict(PLAN, sources=[dict(PLAN["sources"][0], events=[1.1, 0.5])])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    code = main(["generate", "--cot", str(tmp_path / "bad.json"), "--duration", "1.5", "-o", str(tmp_path / "b.wav"),
                 "--bundle", str(bundles[12])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "bad.json" in err and len(err.splitlines()) == 1, err


def test_assembled_bundle_says_it_follows_plans(bundles, tmp_path):
    from foleyflow.bundle import assemble_bundle, read_bundle
    from foleyflow.pipeline import FoleyPipeline

    info = read_bundle(bundles[12])
    out = assemble_bundle(tmp_path / "a", **info.files, text_cfg=TEXT_CFG, name="planned", trained_on="a test")
    again = read_bundle(out)
    assert "plan's time-aligned track (12 channels" in again.card
    assert FoleyPipeline.from_bundle(out, precision="fp32").follows_plan
    out0 = assemble_bundle(tmp_path / "b", **read_bundle(bundles[0]).files, text_cfg=TEXT_CFG, name="p0",
                           trained_on="a test")
    assert "plan's" not in read_bundle(out0).card and "{plan}" not in read_bundle(out0).card


def test_plan_scale_weighs_the_plan_track_on_its_own(bundles, text_encoder):
    """`plan_scale` (guidance cfg): plan_scale = cfg_scale is plain CFG; 1 keeps the track in the unguided branch
    (v_plan + s (v_full - v_plan)); another weight adds (w - 1)(v_plan - v_none); a clip without a plan, and apg or
    multi guidance, do not use it."""
    from foleyflow.cot import parse_plan
    from foleyflow.errors import FoleyError
    from foleyflow.models.generator import Conditions
    from foleyflow.pipeline import FoleyPipeline

    pipe = FoleyPipeline.from_bundle(bundles[12], precision="fp32", text_encoder=text_encoder)
    g = pipe.generator
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():                         # an untrained plan pathway is zero: give it weights
        for p in list(g.plan_input_proj.parameters()) + [g.empty_plan_feat]:
            p.add_(0.5 * torch.randn(p.shape, generator=gen))
    c = pipe.conditions(None, Window(0.0, 1.0), plan=parse_plan(PLAN), prompt="a marimba")
    x = torch.randn(1, g.cfg.seq_lengths(1.0)[0], g.cfg.latent_channels, generator=gen)
    t = torch.tensor(0.3)
    opts = pipe.options(cfg_scale=3.0)
    s = opts.cfg_scale

    def v(conditions=c, **kw):
        with torch.inference_mode():          # the guided closures run as the samplers run them
            return pipe.velocity_fn(conditions, opts.replace(**kw))(x, t)

    with torch.inference_mode():
        v_full = g.velocity(x, t, g.prepare(c))
        empty = dict(visual=g.empty_clip_feat[None].expand(1, c.visual.shape[1], -1),
                     sync=g.empty_sync_feat[None].expand(1, c.sync.shape[1], -1),
                     text=g.empty_string_feat[None], duration_s=c.duration_s)
        v_plan = g.velocity(x, t, g.prepare(Conditions(**empty, plan=c.plan)))
        v_none = g.velocity(x, t, g.prepare(Conditions(**empty)))
    default = v()
    assert torch.allclose(default, v_none + s * (v_full - v_none), atol=1e-5)
    assert torch.allclose(v(plan_scale=s), default, atol=1e-5)
    one = v(plan_scale=1.0)
    assert torch.allclose(one, v_plan + s * (v_full - v_plan), atol=1e-5)
    assert (one - default).abs().max() > 1e-3                                 # the track's weight changed
    assert torch.allclose(v(plan_scale=2.0), v_none + 2.0 * (v_plan - v_none) + s * (v_full - v_plan), atol=1e-5)
    no_plan = pipe.conditions(None, Window(0.0, 1.0), prompt="a marimba")
    assert torch.allclose(v(no_plan, plan_scale=1.0), v(no_plan))
    for mode in ("apg", "multi"):     # they guide the plan with the rest: a bundle's default plan_scale is no error
        assert torch.allclose(v(guidance=mode, plan_scale=1.0), v(guidance=mode))
    with pytest.raises(FoleyError, match="plan_scale must be between 0 and 50"):
        opts.replace(plan_scale=-1.0)
