"""The sync encoder's ground-truth contact objective: targets land on the right tokens, the recipe trains it (with
and without the audio branch, under torchrun too), and it learns the contacts of synthetic bouncing squares."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from foleyflow.data.av_clips import ClipSource, bouncing_square_clip, visible_onsets
from foleyflow.errors import ConfigError
from foleyflow.models.av_ssl import contact_targets, load_sync_model
from foleyflow.models.visual import SyncEncoderConfig

from test_encoder_recipes import load_recipe_module, run_in_process, run_recipe, why

CONTACTS = ("model.event_head=true", "event_loss_weight=1.0", "offset_loss_weight=0.0", "segment_loss_weight=0.0")


def test_contact_targets_mark_the_first_frame_after_each_onset():
    cfg = SyncEncoderConfig(image_size=32, width=32, num_heads=2)
    # window starts at 0.4 s; 2 segments (frames 0-15 and 8-23); onset 0.41 s -> first frame after it is frame 1
    # of the window (0.44 s), token 0 of segment 0; onset 0.79 s -> window frame 10 (0.80 s): token 5 of segment 0
    # and token 1 of segment 1
    onsets = torch.tensor([[0.41, -0.5], [0.79, 0.25], [5.0, 1.0]])
    contact, pan = contact_targets(onsets, 0.4, 2, cfg)
    assert contact.shape == pan.shape == (16,)
    assert contact.nonzero().flatten().tolist() == [0, 5, 9]
    assert pan[[0, 5, 9]].tolist() == [-0.5, 0.25, 0.25]
    assert pan[contact == 0].abs().sum() == 0
    empty = contact_targets(torch.zeros(0, 2), 0.0, 2, cfg)
    assert empty[0].sum() == 0 and empty[0].shape == (16,)


def test_two_onsets_in_one_token_average_their_pan():
    cfg = SyncEncoderConfig(image_size=32, width=32, num_heads=2)
    contact, pan = contact_targets(torch.tensor([[0.01, -1.0], [0.03, 0.5]]), 0.0, 1, cfg)
    assert contact[0] == 1 and pan[0].item() == pytest.approx(-0.25)


def test_synthetic_clips_carry_their_bounces():
    clip = bouncing_square_clip(5, duration_s=2.0, size=32)
    assert clip.onsets is not None and clip.onsets.shape[1] == 2 and len(clip.onsets) > 0
    assert bool((clip.onsets[:, 1].abs() <= 1).all()) and bool((clip.onsets[:, 0] <= 2.0).all())


def test_visible_onsets_keep_only_discrete_on_screen_audible_events(tmp_path):
    ev = dict(gain=1.0, offset_s=None, source_id=1, pan_track=None, param_track=None)
    events = [dict(ev, sound_class="impact_wood", kind="discrete", onset_s=0.5, on_screen=True, pan=0.2, params={}),
              dict(ev, sound_class="impact_wood", kind="discrete", onset_s=0.9, on_screen=False, pan=0.0, params={}),
              dict(ev, sound_class="impact_wood", kind="discrete", onset_s=1.1, on_screen=True, pan=0.0,
                   params={"audible": False}),
              dict(ev, sound_class="engine", kind="continuous", onset_s=0.0, on_screen=True, pan=0.0, params={})]
    (tmp_path / "t.json").write_text(json.dumps({"events": events}))
    assert visible_onsets(tmp_path / "t.json").tolist() == [[0.5, pytest.approx(0.2)]]


def test_contact_batch_and_missing_truth(tmp_path):
    mod = load_recipe_module("train_sync_encoder")
    from foleyflow.config import load_config
    from test_encoder_recipes import ROOT

    cfg = load_config(mod.TrainConfig, ROOT / "configs" / "train_sync_encoder" / "debug.yaml", list(CONTACTS))
    clip = bouncing_square_clip(3, duration_s=2.0, size=32)
    frames, audio, labels, aligned, contact, pan = mod.make_batch([clip], cfg, np.random.default_rng(1))
    assert contact.shape == pan.shape == (4, 24) and contact.sum() > 0  # 32 frames: 3 segments
    aligned_k = int(np.argmin(np.abs(cfg.model.offsets_s)))
    assert labels.tolist() == [aligned_k] * 4  # without the offset loss only aligned windows are drawn
    clip.onsets = None
    with pytest.raises(ConfigError, match="needs ground truth"):
        mod.make_batch([clip], cfg, np.random.default_rng(1))


def test_contact_loss_needs_the_head(tmp_path):
    with pytest.raises(ConfigError, match="needs model.event_head"):
        run_in_process("train_sync_encoder", tmp_path, "event_loss_weight=1.0")
    with pytest.raises(ConfigError, match="nothing to train"):
        run_in_process("train_sync_encoder", tmp_path / "b", "offset_loss_weight=0", "segment_loss_weight=0")


def test_contacts_alone_under_torchrun(tmp_path):
    """No audio branch in the graph: DDP must accept the unused parameters."""
    proc = run_recipe("train_sync_encoder", tmp_path / "run", *CONTACTS)
    assert proc.returncode == 0, why(proc)
    model = load_sync_model(tmp_path / "run" / "sync_av.safetensors")
    with torch.no_grad():
        out = model.contacts(model.visual(bouncing_square_clip(0, duration_s=2.0, size=32).frames[None, :32]))
    assert out.shape == (1, 24, 2) and torch.isfinite(out).all()


def test_contact_head_learns_bouncing_squares(tmp_path):
    """500 cheap steps (about 12 s) on synthetic bounces: the contact BCE falls well below its start and the
    token-level F1 leaves zero."""
    out = tmp_path / "run"
    run_in_process("train_sync_encoder", out, *CONTACTS, "steps=500", "ckpt_every=1000", "log_every=25",
                   "data.synthetic_clips=64", "data.cache_clips=64", "optim.lr=0.002", "optim.warmup_steps=10",
                   "batch_size=8")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(out / "tb"))
    ea.Reload()
    bce = [e.value for e in ea.Scalars("sync/contact_bce")]
    f1 = [e.value for e in ea.Scalars("sync/contact_f1")]
    assert np.mean(bce[-3:]) < 0.75 * np.mean(bce[:3]), bce
    assert np.mean(f1[-3:]) > 0.3, f1


def test_motion_input_cancels_static_background():
    from foleyflow.models.visual import SyncEncoder, motion_input

    frames = torch.full((1, 20, 3, 32, 32), 120, dtype=torch.uint8)
    frames[:, :, :, :, :8] = 30  # static texture
    frames[0, 10, :, 16, 16] = 250  # one pixel flashes in frame 10
    enc = SyncEncoder(SyncEncoderConfig(image_size=32, width=32, num_heads=2, frame_input="motion"))
    x = enc.preprocess(frames)
    assert x.shape == (1, 20, 3, 32, 32)
    moving = x[0, :, 1:].abs().sum(dim=(1, 2, 3))  # motion channels per frame
    assert moving.nonzero().flatten().tolist() == [9, 10, 11]  # next-diff of 9, both of 10, prev-diff of 11
    assert x[0, 10, 1, 16, 16] > 0 and x[0, 10, 2, 16, 16] < 0  # it appears, then disappears
    assert torch.allclose(x[0, :, 0], enc.preprocess(frames)[0, :, 0])
    assert torch.equal(motion_input(torch.zeros(1, 1, 3, 4, 4), 4.0), torch.zeros(1, 1, 3, 4, 4))
    with pytest.raises(ConfigError, match="frame_input"):
        SyncEncoderConfig(frame_input="flow")


def test_clip_source_reads_truth_only_when_asked(tmp_path):
    from foleyflow.media import write_video

    clip = bouncing_square_clip(7, duration_s=1.0, size=32)
    write_video(tmp_path / "c.mp4", clip.frames.permute(0, 2, 3, 1).numpy(), 25, audio=clip.audio.numpy(),
                sample_rate=16000)
    ev = dict(sound_class="impact_wood", kind="discrete", onset_s=0.5, on_screen=True, pan=0.3, gain=1.0,
              offset_s=None, source_id=1, pan_track=None, param_track=None, params={})
    (tmp_path / "c.json").write_text(json.dumps({"events": [ev]}))
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "c", "video": "c.mp4", "truth": "c.json"}) + "\n")
    assert ClipSource(manifest=str(tmp_path / "m.jsonl"), size=32)[0].onsets is None
    got = ClipSource(manifest=str(tmp_path / "m.jsonl"), size=32, load_onsets=True)[0].onsets
    assert got.tolist() == [[0.5, pytest.approx(0.3)]]


def test_recipe_bad_input_is_one_line(tmp_path):
    import subprocess
    import sys

    from test_encoder_recipes import ROOT

    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / "train_sync_encoder.py"), "--config",
                           str(ROOT / "configs" / "train_sync_encoder" / "debug.yaml"), f"out_dir={tmp_path / 'o'}",
                           f"data.manifest={tmp_path / 'missing.jsonl'}"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: manifest not found") and len(proc.stderr.strip().splitlines()) == 1
