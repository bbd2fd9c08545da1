"""Generator behaviour beyond parity: durations and RoPE, condition caching and batching, the bf16 path, presets,
errors, and a training step on the tiny preset."""
from __future__ import annotations

import pytest
import torch

from foleyflow.errors import ConfigError, FoleyError
from foleyflow.flow import euler, flow_matching_loss, uniform_grid
from foleyflow.models.generator import Generator, GeneratorConfig, count_parameters
from foleyflow.models.generator_sampling import bf16_copy, generate, guided_velocity, inference_copy
from foleyflow.nn.rope import aligned_rope_tables, apply_rope, rope_tables

SMALL = dict(hidden_dim=64, num_heads=2, num_joint_blocks=2, num_audio_blocks=1, latent_channels=6, visual_dim=12,
             sync_dim=10, text_dim=14, text_len=5, duration_s=2.0)


def randomised(cfg: GeneratorConfig, seed: int = 0) -> Generator:
    """A network with every zero-initialised tensor re-drawn, so no path is silently skipped."""
    torch.manual_seed(seed)
    net = Generator(cfg)
    with torch.no_grad():
        for p in net.zero_initialised():
            p.normal_(0, 0.05)
        net.set_latent_stats(torch.randn(cfg.latent_channels) * 0.1, torch.rand(cfg.latent_channels) + 0.5)
        net.set_empty_text(torch.randn(cfg.text_len, cfg.text_dim))
    return net.eval()


def inputs(net: Generator, b: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    c = net.cfg
    return (torch.randn(b, net.latent_len, c.latent_channels, generator=g),
            torch.randn(b, net.visual_len, c.visual_dim, generator=g),
            torch.randn(b, net.sync_len, c.sync_dim, generator=g),
            torch.randn(b, c.text_len, c.text_dim, generator=g))


def test_sequence_lengths_follow_duration():
    assert GeneratorConfig.preset("small_16k").seq_lengths() == (250, 64, 192)
    assert GeneratorConfig.preset("large_44k").seq_lengths() == (345, 64, 192)
    assert GeneratorConfig.preset("tiny").seq_lengths(4.0) == (125, 32, 88)
    net = Generator(GeneratorConfig(**SMALL))
    net.set_duration(3.0)
    assert (net.latent_len, net.visual_len, net.sync_len) == (94, 24, 64)
    assert net.latent_rope.shape == (2, 94, 16) and net.clip_rope.shape == (2, 24, 16)
    x, v, s, t = inputs(net)
    assert net(x, v, s, t, 0.5).shape == x.shape
    with pytest.raises(FoleyError, match="too short"):
        net.set_duration(0.3)


def test_aligned_rope_puts_visual_frames_at_audio_positions():
    audio, visual = rope_tables(250, 64), aligned_rope_tables(64, 64, 250)
    # visual frame 16 sits at audio position 16 * 250 / 64 = 62.5: between audio positions 62 and 63
    ang_v = torch.atan2(visual[1, 16], visual[0, 16])
    expected = rope_tables(251, 64, freq_scaling=1.0)  # angle = pos * freq; compare against pos 62.5 directly
    freqs = 1.0 / (10000 ** (torch.arange(0, 64, 2).float() / 64))
    assert torch.allclose(torch.cos(ang_v), torch.cos(62.5 * freqs), atol=1e-4)
    assert torch.allclose(audio, expected[:, :250])
    # rotation preserves norms and relative rotation depends only on the offset
    q = torch.randn(1, 2, 250, 64)
    assert torch.allclose(apply_rope(q, audio).norm(dim=-1), q.norm(dim=-1), atol=1e-4)


def test_conditions_prepared_once_equal_forward_and_batching():
    net = randomised(GeneratorConfig(**SMALL))
    x, v, s, t = inputs(net)
    with torch.no_grad():
        ref = net(x, v, s, t, torch.tensor([0.2, 0.7]))
        cond = net.prepare_conditions(v, s, t)
        assert torch.allclose(net.velocity(x, torch.tensor([0.2, 0.7]), cond), ref, atol=1e-6)
        unc = net.empty_conditions(2)
        both = net.velocity(torch.cat([x, x]), 0.4, cond.cat(unc))
        assert torch.allclose(both[:2], net.velocity(x, 0.4, cond), atol=1e-5)
        assert torch.allclose(both[2:], net.velocity(x, 0.4, unc), atol=1e-5)
        # empty conditions = learned empty features broadcast over frames + empty text
        e_v = net.empty_clip_feat.expand(2, net.visual_len, -1)
        e_s = net.empty_sync_feat.expand(2, net.sync_len, -1)
        e_t = net.empty_string_feat.expand(2, -1, -1)
        assert torch.allclose(net.velocity(x, 0.4, unc), net(x, e_v, e_s, e_t, 0.4), atol=1e-6)


def test_batched_and_separate_guidance_agree():
    net = randomised(GeneratorConfig(**SMALL))
    x, v, s, t = inputs(net)
    with torch.no_grad():
        a = generate(net, x, v, s, t, num_steps=3, batched=True)
        b = generate(net, x, v, s, t, num_steps=3, batched=False)
    assert torch.allclose(a, b, atol=1e-5)


def test_bf16_path_close_to_fp32():
    net = randomised(GeneratorConfig(**SMALL))
    x, v, s, t = inputs(net)
    with torch.no_grad():
        ref = generate(net, x, v, s, t, num_steps=4)
        low = generate(bf16_copy(net), x, v, s, t, num_steps=4)
    assert low.dtype == torch.float32
    assert float((low - ref).norm() / ref.norm()) < 0.05
    assert next(net.parameters()).dtype == torch.float32  # original untouched
    assert bf16_copy(net).latent_rope.dtype == torch.float32  # RoPE tables stay float32


def test_fused_inference_copy_matches():
    net = randomised(GeneratorConfig(**SMALL))
    x, v, s, t = inputs(net)
    fused = inference_copy(net, torch.float32)
    assert fused.fused_blocks[0].ffn.w13 is not None and net.fused_blocks[0].ffn.w13 is None
    assert not {p.data_ptr() for p in fused.parameters()} & {p.data_ptr() for p in net.parameters()}  # no sharing
    with torch.no_grad():
        assert torch.allclose(fused(x, v, s, t, 0.3), net(x, v, s, t, 0.3), atol=1e-5)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_conv_mlp_as_matrix_products_equals_the_convolutions(kernel):
    """float32 ConvSwiGLU runs as matrix products: the same outputs and gradients as the convolutions, bitwise the
    same with and without gradients (GRPO's ratio of 1), and the kept weights follow in-place updates and loads."""
    from torch.nn import functional as F

    from foleyflow.nn.layers import ConvSwiGLU

    torch.manual_seed(0)
    m = ConvSwiGLU(16, 48, kernel_size=kernel, multiple_of=8)
    x = torch.randn(2, 11, 16, requires_grad=True)

    def conv(x):
        return m.w2(F.silu(m.w1(x)) * m.w3(x))

    ref, out = conv(x), m(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(torch.autograd.grad(out.square().sum(), [x, m.w1.weight, m.w2.weight, m.w3.weight]),
                    torch.autograd.grad(ref.square().sum(), [x, m.w1.weight, m.w2.weight, m.w3.weight])):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(m(x), out)
        m.w2.weight.mul_(-2.0)                      # an optimiser step: the kept weights must not be stale
        torch.testing.assert_close(m(x), conv(x), rtol=1e-5, atol=1e-6)
    m.load_state_dict({k: 0.1 * torch.randn_like(v) for k, v in m.state_dict().items()})
    with torch.inference_mode():
        torch.testing.assert_close(m(x), conv(x), rtol=1e-5, atol=1e-5)
    import copy
    assert m._gemm is not None and copy.deepcopy(m)._gemm is None    # copies do not carry the kept weights
    for p in m.parameters():     # frozen weights kept under inference_mode still serve a pass with gradients
        p.requires_grad_(False)
    with torch.inference_mode():
        m(x)
    xg = x.detach().clone().requires_grad_()
    m(xg).sum().backward()
    assert xg.grad is not None
    with pytest.raises(ValueError, match="odd kernel"):
        ConvSwiGLU(16, 48, kernel_size=4)
    m.gemm = False
    with torch.no_grad():
        assert torch.equal(m(x), conv(x))


def test_bad_inputs_are_one_line_errors():
    net = Generator(GeneratorConfig(**SMALL))
    x, v, s, t = inputs(net)
    with pytest.raises(FoleyError, match="visual features have shape"):
        net.prepare_conditions(v[:, :-1], s, t)
    with pytest.raises(FoleyError, match="latent length"):
        net.velocity(x[:, :-1], 0.5, net.prepare_conditions(v, s, t))
    with pytest.raises(ConfigError, match="unknown generator preset"):
        GeneratorConfig.preset("huge")
    with pytest.raises(ConfigError):
        Generator(GeneratorConfig(hidden_dim=100, num_heads=3))


def test_tiny_preset_size_and_training_step():
    with torch.device("meta"):
        tiny = Generator(GeneratorConfig.preset("tiny"))
    assert 5e6 < count_parameters(tiny) < 15e6  # 9.5 M, the size reference.md measured as trainable here
    assert tiny.cfg.latent_channels == 40 and tiny.cfg.text_dim == 384
    net = randomised(GeneratorConfig(**SMALL))
    net.train()
    x1, v, s, t = inputs(net, b=2)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=3e-4)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(4):
        gen.manual_seed(0)  # the same noise and times every step: the loss on this batch must go down
        out = flow_matching_loss(lambda xt, tt: net(xt, v, s, t, tt), x1, generator=gen)
        opt.zero_grad()
        out["flow/mse"].backward()
        opt.step()
        losses.append(float(out["flow/mse"].detach()))
    assert losses[-1] < losses[0]
    assert net.empty_clip_feat.requires_grad and not net.latent_mean.requires_grad


def test_guidance_scale_one_is_one_call_conditional():
    net = randomised(GeneratorConfig(**SMALL))
    x, v, s, t = inputs(net)
    with torch.no_grad():
        cond = net.prepare_conditions(v, s, t)
        fn = guided_velocity(net, cond, None, 1.0)
        assert torch.allclose(euler(fn, x, uniform_grid(2)),
                              euler(lambda xx, tt: net.velocity(xx, tt, cond), x, uniform_grid(2)))


def test_ablation_flags_remove_their_pathway_and_travel_with_the_checkpoint(tmp_path):
    from foleyflow.models.generator_io import load_generator, save_generator

    full = randomised(GeneratorConfig(**SMALL))
    x, v, s, t = inputs(full)
    s2, t2 = torch.randn_like(s), torch.randn(2, 3, t.shape[-1])  # other sync; another prompt of another length
    with torch.no_grad():
        assert not torch.allclose(full(x, v, s, t, 0.5), full(x, v, s2, t, 0.5), atol=1e-4)  # the full model
        assert not torch.allclose(full(x, v, s, t, 0.5), full(x, v, s, t2, 0.5), atol=1e-4)  # reads both
        for flag in ("use_sync", "use_text", "aligned_rope"):
            net = randomised(GeneratorConfig(**SMALL, **{flag: False}))
            net.load_state_dict(full.state_dict())  # same weights: only the flag differs
            out = net(x, v, s, t, 0.5)
            if flag == "use_sync":   # the sync input is ignored: the learned empty sync feature stands in
                assert torch.allclose(out, net(x, v, s2, t, 0.5), atol=1e-6)
                e_s = full.empty_sync_feat.expand(2, full.sync_len, -1)
                assert torch.allclose(out, full(x, v, e_s, t, 0.5), atol=1e-6)
            elif flag == "use_text":  # any prompt gives the empty-text output
                assert torch.allclose(out, net(x, v, s, t2, 0.5), atol=1e-6)
                assert torch.allclose(out, full(x, v, s, full.empty_string_feat.expand(2, -1, -1), 0.5), atol=1e-6)
            else:                     # visual tokens at positions 0..Nv-1 instead of the audio-aligned ones
                assert torch.allclose(net.clip_rope, rope_tables(net.visual_len, net.cfg.head_dim))
                assert not torch.allclose(out, full(x, v, s, t, 0.5), atol=1e-4)
                net.set_duration(3.0)
                assert torch.allclose(net.clip_rope, rope_tables(24, net.cfg.head_dim))
                net.set_duration(2.0)
            save_generator(tmp_path / f"{flag}.safetensors", net)
            back = load_generator(tmp_path / f"{flag}.safetensors")
            assert getattr(back.cfg, flag) is False
            assert torch.allclose(back(x, v, s, t, 0.5), out, atol=1e-6)
