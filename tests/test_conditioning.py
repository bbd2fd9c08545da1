"""foleyflow.conditioning: the feature cache and the pipeline compute the same conditions; Conditions batch, repeat
and carry a plan track the generator ignores."""
from __future__ import annotations

import json

import pytest
import torch

import golden_pipeline as gp
from foleyflow.conditioning import Window, cache_windows, generation_windows, window_conditions
from foleyflow.errors import FoleyError
from foleyflow.models.generator import Conditions, Generator, GeneratorConfig


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from foleyflow.models.text_encoder import load_text_encoder

    d = tmp_path_factory.mktemp("cond")
    enc = load_text_encoder(gp.text_cfg())
    bundle = gp.build_bundle(d / "bundle", enc)
    return {"dir": d, "enc": enc, "bundle": bundle, "pipe": gp.load_pipeline(bundle, enc),
            "video": gp.make_video(d / "three.mp4", 3.0)}


def test_pipeline_conditions_equal_the_feature_cache(setup):
    """Training (extract-features) and inference (FoleyPipeline.conditions) see the same features: the cache stores
    float16, and the pipeline's float32 features round to exactly the cached values, window by window."""
    from foleyflow.bundle import read_bundle
    from foleyflow.data.cache import Cache
    from foleyflow.data.features import extract_features

    d, pipe, video = setup["dir"], setup["pipe"], setup["video"]
    caption = "a red block slides to the right"
    manifest = d / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "video": str(video), "caption": caption}) + "\n")
    files = read_bundle(setup["bundle"]).files
    extract_features(manifest, d / "feat", files["semantic_encoder"], files["sync_encoder"], duration_s=gp.WINDOW_S,
                     text_cfg=gp.text_cfg(), text_encoder=setup["enc"])
    cache = Cache(d / "feat")
    assert cache.ids == ["a", "a@1"]
    starts = [cache.info["windows"][i][1] for i in cache.ids]
    assert starts == [w.start_s for w in cache_windows(3.0, gp.WINDOW_S)] == [0.0, 1.5]
    fields = {f: cache.load(f) for f in ("visual", "sync", "caption")}
    for k, start in enumerate(starts):
        c = pipe.conditions(video, Window(start, gp.WINDOW_S), prompt=caption)
        assert c.duration_s == gp.WINDOW_S
        for name, ours in (("visual", c.visual), ("sync", c.sync), ("caption", c.text)):
            assert torch.equal(ours[0].to(fields[name].dtype), fields[name][k]), (k, name)
    assert not torch.equal(fields["visual"][0], fields["visual"][1])


def test_window_without_video_holds_the_learned_empty_features(setup):
    g = setup["pipe"].generator
    c = setup["pipe"].conditions(None, duration_s=0.6, prompt=None)
    assert c.duration_s == 1.0 and c.visual.shape == (1, 8, 16) and c.sync.shape == (1, 16, 16)
    assert torch.equal(c.visual[0, 3], g.empty_clip_feat[0]) and torch.equal(c.sync[0, 5], g.empty_sync_feat[0])
    assert torch.equal(c.text[0], g.empty_string_feat)
    zeros = window_conditions(g.cfg, setup["pipe"].semantic, setup["pipe"].sync, None, Window(0, 1.0), c.text)
    assert not zeros.visual.any() and not zeros.sync.any()        # what a features cache stores without video
    with pytest.raises(FoleyError, match="do not fit one"):
        setup["pipe"].conditions(None, duration_s=4.0)
    assert len(generation_windows(4.0, gp.WINDOW_S, 0.5)) == 4


def _conditions(batch: int, duration_s: float = 1.0, plan: bool = False, seed: int = 0) -> Conditions:
    g = torch.Generator().manual_seed(seed)
    cfg = GeneratorConfig.preset("tiny", hidden_dim=32, num_joint_blocks=1, num_audio_blocks=1, visual_dim=4,
                                 sync_dim=6, text_len=5)
    _, nv, ns = cfg.seq_lengths(duration_s)
    return Conditions(torch.randn(batch, nv, 4, generator=g), torch.randn(batch, ns, 6, generator=g),
                      torch.randn(batch, 5, 384, generator=g), duration_s,
                      torch.randn(batch, 7, 3, generator=g) if plan else None)


def test_conditions_cat_repeat_and_plan_track():
    a, b = _conditions(2, seed=1), _conditions(1, seed=2)
    ab = a.cat(b)
    assert ab.batch_size == 3 and torch.equal(ab.visual[2], b.visual[0]) and ab.plan is None
    r = a.repeat(3)                                     # item-major: a group of 3 samples per clip
    assert r.batch_size == 6 and torch.equal(r.sync[2], a.sync[0]) and torch.equal(r.sync[3], a.sync[1])
    p = _conditions(2, plan=True).repeat(2)
    assert p.plan.shape == (4, 7, 3) and torch.equal(p.plan[1], p.plan[0])
    assert p.to(torch.float64).plan.dtype == torch.float64
    with pytest.raises(FoleyError, match="1.0 s and 2.0 s"):
        a.cat(_conditions(1, duration_s=2.0))
    with pytest.raises(FoleyError, match="plan"):
        a.cat(_conditions(1, plan=True))


def test_generator_ignores_an_absent_or_present_plan_and_prepared_conditions_repeat():
    torch.manual_seed(0)
    net = Generator(GeneratorConfig.preset("tiny", hidden_dim=32, num_joint_blocks=1, num_audio_blocks=1,
                                           visual_dim=4, sync_dim=6, text_len=5, duration_s=2.0)).eval()
    for p in net.zero_initialised():
        torch.nn.init.normal_(p, std=0.1)
    c = _conditions(2, duration_s=1.0, plan=True)
    x = torch.randn(2, net.cfg.seq_lengths(1.0)[0], net.cfg.latent_channels)
    with torch.no_grad():
        with_plan = net.velocity(x, 0.3, net.prepare(c))
        without = net.velocity(x, 0.3, net.prepare(Conditions(c.visual, c.sync, c.text, c.duration_s)))
        rep = net.velocity(x.repeat_interleave(2, 0), 0.3, net.prepare(c).repeat(2))
    assert torch.equal(with_plan, without)
    assert torch.allclose(rep[::2], with_plan, atol=1e-6) and torch.allclose(rep[1::2], with_plan, atol=1e-6)
    assert net.latent_len == net.cfg.seq_lengths(2.0)[0]       # the 1 s call left the module's duration alone
