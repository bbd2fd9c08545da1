"""Feature caches (`foleyflow extract-features`), the training recipe's producer check, and real-model-shaped features
(CLIP 1024-d at 8 fps, Synchformer 768-d at 24 tokens/s) through the adapters into the pipeline."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from foleyflow import media
from foleyflow.data.cache import Cache
from foleyflow.hashing import file_sha256
from foleyflow.data.features import cache_windows, encode_window
from foleyflow.errors import CacheError
from foleyflow.models.av_ssl import (AudioEncoderConfig, SemanticAVConfig, SemanticAVModel, SyncAVConfig, SyncAVModel,
                                     load_semantic_encoder, load_sync_encoder, save_av_model)
from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig

ROOT = Path(__file__).resolve().parents[1]



pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: one torch thread (conftest)

def tiny_av_checkpoints(folder: Path, seed: int) -> tuple[Path, Path]:
    torch.manual_seed(seed)
    audio = AudioEncoderConfig(channels=(8, 8, 8, 8), embed_dim=8)
    sem = SemanticAVModel(SemanticAVConfig(visual=SemanticEncoderConfig(image_size=32, channels=(8, 8), embed_dim=16),
                                           audio=audio))
    syn = SyncAVModel(SyncAVConfig(visual=SyncEncoderConfig(image_size=32, width=16, depth=1, num_heads=2, out_dim=16),
                                   audio=audio, head_width=16, head_depth=1, head_heads=2))
    folder.mkdir(parents=True, exist_ok=True)
    return save_av_model(folder / "semantic_av.safetensors", sem), save_av_model(folder / "sync_av.safetensors", syn)


def cli(capsys, *args):
    from foleyflow.cli import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def load_recipe():
    spec = importlib.util.spec_from_file_location("train_flow_recipe", ROOT / "recipes" / "train_flow.py")
    mod = importlib.util.module_from_spec(spec)
    import sys
    sys.modules[spec.name] = mod   # dataclasses look their module up while the recipe is being executed
    spec.loader.exec_module(mod)
    return mod


def test_cache_windows_cut_long_clips_and_pad_short_ones():
    assert [(w.start_s, w.duration_s) for w in cache_windows(3.0, 8.0)] == [(0.0, 8.0)]
    assert [w.start_s for w in cache_windows(16.0, 8.0)] == [0.0, 8.0]
    assert [w.start_s for w in cache_windows(17.5, 8.0)] == [0.0, 8.0, 9.5]     # the tail, aligned to the end
    assert [w.start_s for w in cache_windows(16.5, 8.0)] == [0.0, 8.0]          # a tail under 1 s is dropped


def test_extract_features_on_foleyworld_clips_and_training_refuses_other_encoders(capsys, tmp_path):
    code, _, err = cli(capsys, "world", "make", "--out", tmp_path / "fw", "--split", "train", "--n", "2",
                       "--set", "duration_s=2", "--set", "size=64")
    assert code == 0, err
    sem_ckpt, sync_ckpt = tiny_av_checkpoints(tmp_path / "enc", seed=0)
    code, out, err = cli(capsys, "extract-features", tmp_path / "fw" / "manifest.jsonl", "--out", tmp_path / "feat",
                         "--semantic-encoder", sem_ckpt, "--sync-encoder", sync_ckpt, "--duration", "1.0",
                         "--text-budget", "64:64")
    assert code == 0, err
    assert "4 windows from 2 clips" in out
    cache = Cache(tmp_path / "feat", kind="features")
    assert len(cache) == 4 and sorted(cache.ids)[1::2] == [f"{i}@1" for i in sorted(cache.ids)[::2]]
    # shapes: 1 s windows -> 8 semantic frames, (25 - 16) // 8 + 1 = 2 sync segments of 8 tokens; 4 x 64 text tokens
    assert cache.fields["visual"]["shape"] == [8, 16] and cache.fields["sync"]["shape"] == [16, 16]
    assert cache.fields["caption"]["shape"] == cache.fields["cot"]["shape"] == [256, 384]
    assert cache.extras()["empty_text"].shape == (256, 384)
    assert cache.producers["semantic_encoder"]["sha256"] == file_sha256(sem_ckpt)
    assert cache.producers["sync_encoder"]["sha256"] == file_sha256(sync_ckpt)
    assert cache.info["duration_s"] == 1.0 and cache.info["windows"][cache.ids[1]][1] == 1.0
    assert cache.load("has_video").flatten().tolist() == [1.0] * 4
    cot = cache.load("cot").float()
    assert (cot.norm(dim=-1) > 0.5).sum(1).min() >= 8          # real tokens in every CoT (four parts)
    # the cache holds what the pipeline computes for the same window (training sees the inference features)
    assert cache.ids[1].endswith("@1")
    video = Path(cache.info["manifest"]).parent / "train" / f"{cache.ids[1].split('@')[0]}.mp4"
    visual, sync = encode_window(video, load_semantic_encoder(sem_ckpt), load_sync_encoder(sync_ckpt), 1.0, 1.0,
                                 8, 16)
    assert torch.allclose(cache.load("visual")[1].float(), visual[0], atol=2e-3)
    assert torch.allclose(cache.load("sync")[1].float(), sync[0], atol=2e-2, rtol=1e-2)
    # two worker processes on halves of the manifest, merged: the same features for the same ids
    code, out, err = cli(capsys, "extract-features", tmp_path / "fw" / "manifest.jsonl", "--out", tmp_path / "feat2",
                         "--semantic-encoder", sem_ckpt, "--sync-encoder", sync_ckpt, "--duration", "1.0",
                         "--text-budget", "64:64", "--workers", "2")
    assert code == 0, err
    par = Cache(tmp_path / "feat2", kind="features")
    assert sorted(par.ids) == sorted(cache.ids) and par.info["counts"] == cache.info["counts"]
    assert par.info["windows"] == cache.info["windows"] and par.producers == cache.producers
    order = [par.ids.index(i) for i in cache.ids]
    for field in ("visual", "sync", "caption", "cot"):
        assert torch.allclose(par.load(field)[order].float(), cache.load(field).float(), atol=1e-3), field
    assert not list(tmp_path.glob(".feat2.parts"))

    # the latents cache of the same clips, written by `foleyflow extract-latents` (first W seconds of each clip)
    from foleyflow.models.vae import build_vae, save_vae

    vae_ckpt = save_vae(tmp_path / "vae.safetensors", build_vae("tiny_16k"))
    code, _, err = cli(capsys, "extract-latents", tmp_path / "fw" / "manifest.jsonl", "--out", tmp_path / "lat",
                       "--vae", vae_ckpt, "--duration-s", "1.0")
    assert code == 0, err
    recipe = load_recipe()
    other_sem, _ = tiny_av_checkpoints(tmp_path / "other", seed=1)

    def cfg(**producers):
        return recipe.TrainFlowConfig(data=recipe.DataConfig(latents=str(tmp_path / "lat"),
                                                             features=str(tmp_path / "feat"),
                                                             text_fields={"caption": 0.5, "cot": 0.5},
                                                             producers={k: str(v) for k, v in producers.items()}))

    data = recipe.load_data(cfg(semantic_encoder=sem_ckpt, sync_encoder=sync_ckpt, vae=vae_ckpt))
    assert data["visual"].shape == (2, 8, 16) and data["empty_text"].shape == (256, 384)
    c = cfg(semantic_encoder=sem_ckpt)
    c.model = {"visual_dim": 16, "sync_dim": 16, "text_len": 256, "hidden_dim": 32, "num_joint_blocks": 1,
               "num_audio_blocks": 1}
    net = recipe.build_model(c, data)           # the caches fit a generator: lengths, widths, text_len
    assert (net.latent_len, net.visual_len, net.sync_len) == (32, 8, 16)
    with pytest.raises(CacheError, match="another semantic_encoder checkpoint"):
        recipe.load_data(cfg(semantic_encoder=other_sem))
    with pytest.raises(CacheError, match="another vae checkpoint"):
        recipe.load_data(cfg(vae=save_vae(tmp_path / "vae2.safetensors", build_vae("tiny_16k"))))
    with pytest.raises(CacheError, match="neither cache records"):
        recipe.load_data(cfg(vocoder=other_sem))

    # short clips are padded to the window: one window per clip, the last frame repeated
    from foleyflow.data.features import extract_features

    class NoText:  # captions are not under test here; avoid a second MiniLM load
        def __init__(self):
            from foleyflow.models.text_encoder import TextEncoderConfig
            self.cfg = TextEncoderConfig(seq_len=8, part_seq_len=8)

        def encode(self, texts):
            return type("F", (), {"tokens": torch.zeros(len(texts), 32, 384)})()

        encode_cot = encode

    extract_features(tmp_path / "fw" / "manifest.jsonl", tmp_path / "feat3", sem_ckpt, sync_ckpt, duration_s=3.0,
                     text_encoder=NoText())
    c3 = Cache(tmp_path / "feat3")
    assert len(c3) == 2 and c3.info["counts"]["padded"] == 2 and c3.fields["visual"]["shape"] == [24, 16]
    v = c3.load("visual")[0].float()
    assert torch.allclose(v[-1], v[17], atol=1e-3)   # frames past the 2 s clip repeat its last frame


def test_monolithic_field_is_the_truth_paragraph_encoded_in_sentence_pieces(capsys, tmp_path):
    """--monolithic caches each clip's ground-truth CoT as one paragraph (the ablation's single CoT), encoded as a plain
    text under the cache's text config (split: pieces of whole sentences), in every worker; rows without a truth are a
    one-line error before any model loads."""
    import json

    from foleyflow.cot import truth_monolithic
    from foleyflow.events import read_truth
    from foleyflow.manifest import read_manifest
    from foleyflow.models.text_encoder import load_text_encoder

    code, _, err = cli(capsys, "world", "make", "--out", tmp_path / "fw", "--split", "train", "--n", "2",
                       "--set", "duration_s=2", "--set", "size=64")
    assert code == 0, err
    sem_ckpt, sync_ckpt = tiny_av_checkpoints(tmp_path / "enc", seed=0)
    manifest = tmp_path / "fw" / "manifest.jsonl"
    args = ["extract-features", manifest, "--semantic-encoder", sem_ckpt, "--sync-encoder", sync_ckpt, "--duration",
            "2.0", "--text-budget", "64:64", "--text-overflow", "split", "--monolithic"]
    code, out, err = cli(capsys, *args, "--out", tmp_path / "feat", "--workers", "2")
    assert code == 0, err
    cache = Cache(tmp_path / "feat", kind="features")
    assert cache.fields["monolithic"]["shape"] == [256, 384]
    assert cache.producers["text_encoder"]["config"]["overflow"] == "split"
    from foleyflow.commands.extract_features import parse_budget

    enc = load_text_encoder(parse_budget("64:64", "split"))
    for row in read_manifest(manifest):
        paragraph = truth_monolithic(read_truth(row.truth))
        assert "Temporal:" not in paragraph and enc.count_tokens([paragraph])[0] > 64   # several pieces of <= 64
        want = enc.encode([paragraph])
        got = cache.load("monolithic")[cache.ids.index(row.id)].float()
        n = int(want.num_tokens[0])
        assert n > 64 and torch.allclose(got[:n], want.tokens[0, :n], atol=2e-3) and not got[n:].any()
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[1].pop("truth")
    (tmp_path / "fw" / "no_truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for workers in ("1", "2"):
        code, _, err = cli(capsys, *[tmp_path / "fw" / "no_truth.jsonl" if a == manifest else a for a in args],
                           "--out", tmp_path / f"bad{workers}", "--workers", workers)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "no 'truth'" in lines[0], err
        assert not (tmp_path / f"bad{workers}").exists()


@pytest.mark.parametrize("case", ["manifest", "budget", "checkpoint", "kind", "duration", "exists", "workers"])
def test_extract_features_bad_inputs_give_one_line_errors(capsys, tmp_path, case):
    sem, syn = tiny_av_checkpoints(tmp_path / "enc", seed=0)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "video": "a.mp4"}\n')
    media.write_video(tmp_path / "a.mp4", [np.zeros((32, 32, 3), np.uint8)] * 30, 25)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "cache.json").write_text("{}")
    base = ["extract-features", manifest, "--out", tmp_path / "c", "--semantic-encoder", sem, "--sync-encoder", syn]
    args, expect = {
        "manifest": (["extract-features", tmp_path / "none.jsonl", "--out", tmp_path / "c", "--semantic-encoder", sem,
                      "--sync-encoder", syn], "manifest not found"),
        "budget": (base + ["--text-budget", "lots"], "--text-budget"),
        "checkpoint": (base[:5] + [tmp_path / "none.safetensors"] + base[6:], "checkpoint not found"),
        "kind": (base[:5] + [syn] + base[6:], "expected 'semantic_av'"),
        "duration": (base + ["--duration", "0.1"], "--duration"),
        "workers": (base[:5] + [tmp_path / "none.safetensors"] + base[6:] + ["--workers", "2"], "checkpoint not found"),
        "exists": (["extract-features", manifest, "--out", tmp_path / "done", "--semantic-encoder", sem,
                    "--sync-encoder", syn, "--text-budget", "8"], "already exists"),
    }[case]
    code, _, err = cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], err


class FakeClip(nn.Module):
    """Stands in for CLIP's image tower: (N, 3, 384, 384) -> (N, 1024)."""

    def __init__(self):
        super().__init__()
        self.pool, self.proj = nn.AdaptiveAvgPool2d(4), nn.Linear(48, 1024)

    def forward(self, x):
        assert x.shape[1:] == (3, 384, 384)
        return self.proj(self.pool(x).flatten(1))


class FakeSynchformer(nn.Module):
    """Stands in for Synchformer's visual branch: (N, 1, 16, 3, 224, 224) -> (N, 1, 8, 768)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 768)

    def forward(self, x):
        assert x.shape[1:] == (1, 16, 3, 224, 224)
        m = x.mean(dim=(-1, -2))                                   # (N, 1, 16, 3)
        return self.proj(m.reshape(x.shape[0], 1, 8, 6))


def test_published_feature_shapes_through_adapters_into_a_generator(tmp_path):
    from foleyflow.models.adapters import ClipFrameAdapter, SynchformerAdapter
    from foleyflow.models.generator import Generator, GeneratorConfig
    from foleyflow.models.text_encoder import TextEncoderConfig
    from foleyflow.models.vae import build_vae
    from foleyflow.models.vocoder import build_vocoder
    from foleyflow.pipeline import FoleyPipeline

    torch.manual_seed(0)
    gcfg = GeneratorConfig.preset("tiny", visual_dim=1024, sync_dim=768, text_dim=384, text_len=32, hidden_dim=32,
                                  num_heads=2, num_joint_blocks=1, num_audio_blocks=1, duration_s=8.0)
    net = Generator(gcfg)
    net.set_latent_stats(torch.zeros(40), torch.ones(40))
    pipe = FoleyPipeline(net, build_vae("tiny_16k"), build_vocoder("tiny_16k"), ClipFrameAdapter(FakeClip()),
                         SynchformerAdapter(FakeSynchformer()), TextEncoderConfig(seq_len=32, part_seq_len=8),
                         trained=False)
    frames = [np.full((48, 64, 3), 10 * i % 255, np.uint8) for i in range(80)]
    video = media.write_video(tmp_path / "eight.mp4", frames, 10)
    timings = {"decode": 0.0, "encoders": 0.0}
    c = pipe.conditions(video, cache_windows(8.0, 8.0)[0], timings=timings)
    visual, sync = c.visual, c.sync
    assert visual.shape == (1, 64, 1024) and sync.shape == (1, 192, 768)        # 8 fps and 24 tokens/s for 8 s
    assert torch.allclose(visual.norm(dim=-1), torch.ones(1, 64), atol=1e-4)     # CLIP features are L2-normalised
    r = pipe.generate(video, steps=1, cfg=1.0)
    assert r.audio.shape == (2, 8 * 16000) and np.isfinite(r.audio).all()


def test_text_budget_forms():
    from foleyflow.errors import FoleyError

    from foleyflow.commands.extract_features import parse_budget

    assert parse_budget("256").output_len == 256 and parse_budget("256").part_lens == (64,) * 4
    assert parse_budget("64:32").output_len == 128
    cfg = parse_budget("64:64,256,64,96", "truncate")
    assert cfg.part_lens == (64, 256, 64, 96) and cfg.output_len == 480 and cfg.overflow == "truncate"
    for bad in ("64:1,2", "64:8:8", "x", "64:8,8,8,300"):
        with pytest.raises(FoleyError):
            parse_budget(bad)
