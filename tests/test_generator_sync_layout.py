"""The sync stream's placement on the latent timeline: MMAudio's index resize ("segments") and the time-true layout
("timeline") that puts each token at the frames it shows."""
import pytest
import torch

from foleyflow.errors import ConfigError
from foleyflow.models.generator import Generator, GeneratorConfig, resample_by_time, sync_on_frames


def test_sync_on_frames_places_tokens_at_their_frames_and_averages_overlaps():
    s, d = 5, 3
    tokens = torch.zeros(1, s, 8, d)
    tokens[0, 2, 6] = 1.0            # segment 2, token 6 -> frames 16 + 12 = 28..29 -> position 14
    tokens[0, 3, 2] = 3.0            # segment 3, token 2 -> frames 24 + 4 = 28..29 -> the same position
    tokens[0, 4, 7] = 5.0            # the last token -> position 4 * 4 + 7 = 23 (shown by one segment only)
    out = sync_on_frames(tokens, stride_tokens=4)
    assert out.shape == (1, 4 * (s - 1) + 8, d)
    assert torch.allclose(out[0, 14], torch.full((d,), 2.0))         # mean of the two segments' tokens
    assert torch.allclose(out[0, 23], torch.full((d,), 5.0))
    others = torch.ones(out.shape[1], dtype=torch.bool)
    others[[14, 23]] = False
    assert out[0, others].abs().max() == 0


def test_resample_by_time_keeps_a_cell_at_its_time():
    x = torch.zeros(1, 100, 1)
    x[0, 50] = 1.0                   # the cell 4.00 .. 4.08 s, centre 4.04 s
    y = resample_by_time(x, 0.08, 250, 0.032)[0, :, 0]
    peak = int(y.argmax())
    assert abs((peak + 0.5) * 0.032 - 4.04) <= 0.016 + 1e-9
    assert y.sum() == pytest.approx(0.08 / 0.032, rel=0.05)          # the cell's 80 ms spread over ~2.5 frames
    ramp = torch.arange(100, dtype=torch.float32)[None, :, None]
    r = resample_by_time(ramp, 0.08, 250, 0.032)[0, :, 0]
    centres = (torch.arange(250) + 0.5) * 0.032
    inside = (centres > 0.04) & (centres < 7.96)
    assert torch.allclose(r[inside], (centres[inside] / 0.08 - 0.5), atol=1e-5)   # linear in time


def _tiny(layout: str) -> Generator:
    cfg = GeneratorConfig.preset("tiny", hidden_dim=64, num_heads=2, num_joint_blocks=1, num_audio_blocks=1,
                                 sync_layout=layout)
    torch.manual_seed(0)
    net = Generator(cfg).eval()
    conv = net.sync_input_proj[0]                  # keep only the centre tap: no smearing across tokens
    w = conv.conv.weight if hasattr(conv, "conv") else conv.weight
    with torch.no_grad():
        centre = w[..., w.shape[-1] // 2].clone()
        w.zero_()
        w[..., w.shape[-1] // 2] = centre
    return net


@pytest.mark.parametrize("layout", ["segments", "timeline"])
def test_a_sync_token_reaches_the_latent_frames_of_its_time(layout):
    net = _tiny(layout)
    latent_len, visual_len, sync_len = net.cfg.seq_lengths(8.0)
    g = torch.Generator().manual_seed(1)
    visual = torch.randn(1, visual_len, net.cfg.visual_dim, generator=g)
    sync = torch.randn(1, sync_len, net.cfg.sync_dim, generator=g)
    text = torch.randn(1, 8, net.cfg.text_dim, generator=g)
    k, j = 11, 7                                   # frames 8 * 11 + 14 = 102..103: 4.08 .. 4.16 s, centre 4.12 s
    bumped = sync.clone()
    bumped[0, k * 8 + j] += 5.0
    with torch.no_grad():
        a = net.prepare_conditions(visual, sync, text, duration_s=8.0).sync
        b = net.prepare_conditions(visual, bumped, text, duration_s=8.0).sync
    change = (b - a).abs().sum(-1)[0]
    where = (int(change.argmax()) + 0.5) * net.cfg.samples_per_latent / net.cfg.sample_rate
    if layout == "timeline":
        assert abs(where - 4.12) < 0.05
    else:                                          # MMAudio's index resize puts it 0.17 s early
        assert abs(where - 4.12) > 0.12


def test_unknown_layout_is_a_config_error():
    with pytest.raises(ConfigError, match="sync_layout"):
        Generator(GeneratorConfig.preset("tiny", sync_layout="frames"))
