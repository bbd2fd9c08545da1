"""Released MMAudio pipeline: stage parity with the reference fixtures, key accounting at the released sizes, the
`foleyflow convert mmaudio` command on a fake release folder, and refusal of pickled payloads."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

import importlib.util  # noqa: E402

if importlib.util.find_spec("bigvgan") is None or importlib.util.find_spec("open_clip") is None:
    pytest.skip("the mmaudio extra (open-clip-torch, bigvgan) is not installed", allow_module_level=True)

from foleyflow import cli  # noqa: E402
from foleyflow.errors import CheckpointError  # noqa: E402
from foleyflow.models import bigvgan_io as B  # noqa: E402
from foleyflow.models import clip_open as C  # noqa: E402
from foleyflow.models import mmaudio_release as R  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fixture(mmaudio_fixtures, name):
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = mmaudio_fixtures / f"{name}.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return load_file(str(path)), meta


def _net(t):
    return {k[4:]: v for k, v in t.items() if k.startswith("net.")}


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ----- parity with the reference fixtures -----

def test_bigvgan16k_matches_fixture(mmaudio_fixtures):
    t, meta = _fixture(mmaudio_fixtures, "mmaudio_bigvgan16k_tiny")
    config = json.loads(meta["config"])
    net = B.build_bigvgan(config)
    net.load_state_dict(_net(t))
    with torch.no_grad():
        out = net(t["in.mel"])
    assert out.shape == t["out.wav"].shape == (1, 1, 20 * 256)
    assert _rel(out, t["out.wav"]) <= 1e-5
    # the shipped 16 kHz config is the fixture's with the released width
    assert {**config, "upsample_initial_channel": 1536}.items() >= {
        k: v for k, v in B.BIGVGAN_16K_CONFIG.items() if k not in ("sampling_rate", "hop_size")}.items()


def test_vae44k_and_mel44k_match_fixtures(mmaudio_fixtures):
    from foleyflow.audio import log_mel_spectrogram
    from foleyflow.checkpoint import load_into
    from foleyflow.models.vae import MelVAE

    t, _ = _fixture(mmaudio_fixtures, "mmaudio_vae44k_tiny")
    cfg, state = R.convert_vae(_net(t))
    assert (cfg.n_mels, cfg.latent_dim, cfg.hidden_dim, cfg.mel_setting) == (128, 40, 32, "44k")
    vae = MelVAE(cfg).eval()
    load_into(vae, state)
    with torch.no_grad():
        post, mel = vae.encode(t["in.mel"]), vae.decode(t["in.z"])
    assert _rel(post.mean, t["out.posterior_mean"]) <= 1e-5
    assert _rel(post.std, t["out.posterior_std"]) <= 1e-5
    assert _rel(mel, t["out.decoded_mel"]) <= 1e-5
    m, _ = _fixture(mmaudio_fixtures, "mmaudio_mel44k")
    ours = log_mel_spectrogram(m["in.wav"], "44k")
    assert ours.shape == m["out.mel"].shape == (1, 128, 129)
    torch.testing.assert_close(ours, m["out.mel"], rtol=1e-5, atol=1e-5)


def test_clip_preprocessing_matches_mmaudio_steps_by_hand():
    """MMAudio: frames stretched to 384 x 384 (no crop), /255, (x - mean) / std with OpenAI CLIP's constants."""
    from foleyflow.models.adapters import CLIP_MEAN, CLIP_STD

    cfg = {"embed_dim": 8, "vision_cfg": {"image_size": 384, "layers": 1, "width": 16, "patch_size": 96,
                                          "head_width": 8},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 1, "layers": 1}}
    feats = C.image_features(torch.nn.Identity(), cfg)
    assert (feats.fps, feats.out_dim) == (8, 8)
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    g = torch.Generator().manual_seed(0)
    exact = torch.randint(0, 256, (1, 2, 3, 384, 384), generator=g, dtype=torch.uint8)
    torch.testing.assert_close(feats.preprocess(exact)[0, 1], (exact[0, 1].float() / 255 - mean) / std)
    flat = torch.tensor([200, 30, 90], dtype=torch.uint8)[None, None, :, None, None].expand(1, 1, 3, 240, 320)
    out = feats.preprocess(flat)
    assert out.shape == (1, 1, 3, 384, 384)  # stretched, not cropped
    hand = (torch.tensor([200, 30, 90]) / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    torch.testing.assert_close(out[0, 0, :, 100, 200], hand, atol=1e-5, rtol=0)
    # DFN5B's config says 378 px (27 x 27 patches of 14); MMAudio still resizes to 384 (eval_utils._CLIP_SIZE)
    dfn = {**cfg, "vision_cfg": {**cfg["vision_cfg"], "image_size": 378, "patch_size": 14}}
    assert C.image_size(dfn) == 384 and C.image_size(TINY_CLIP["model_cfg"]) == 32


# ----- every key of the released sizes -----

@pytest.mark.parametrize("name", ["small_16k", "small_44k", "medium_44k", "large_44k", "large_44k_v2"])
def test_every_released_generator_size_converts_on_meta(mmaudio_fixtures, name):
    from foleyflow.models.generator import Generator

    released = json.loads((mmaudio_fixtures / "mmaudio_released_configs.json").read_text())[name]
    state = {k: torch.empty(s, device="meta") for k, s in released["state_dict_shapes"].items()}
    cfg, ours = R.convert_generator(state)
    assert cfg.latent_channels == (20 if name.endswith("16k") else 40) and cfg.v2 == name.endswith("v2")
    with torch.device("meta"):
        assert sum(p.numel() for p in Generator(cfg).state_dict().values()) == released["num_params"]
    state.pop(next(k for k in state if k.startswith("fused_blocks.")))
    state["extra.weight"] = torch.empty(3, device="meta")
    with pytest.raises(CheckpointError, match=r"1 missing \(fused_blocks.*1 unexpected \(extra.weight\)"):
        R.convert_generator(state)


def test_released_vae_vocoder_synchformer_layouts_are_accounted_for(mmaudio_fixtures):
    shapes = json.loads((mmaudio_fixtures / "mmaudio_released_ext_shapes.json").read_text())
    meta = lambda d: {k: torch.empty(s, device="meta") for k, s in d.items()}  # noqa: E731
    for name in ("vae_16k", "vae_44k"):
        cfg, _ = R.convert_vae(meta(shapes[name]))
        assert cfg.hidden_dim == (384 if name == "vae_16k" else 512)
    _, plain = R.convert_bigvgan(meta(shapes["bigvgan_16k"]), B.BIGVGAN_16K_CONFIG)
    assert not any("parametrizations" in k for k in plain) and "conv_pre.weight" in plain
    cfg, _ = R.convert_synchformer(meta(shapes["synchformer"]))
    assert (cfg.width, cfg.depth, cfg.num_heads) == (768, 12, 12)


def synchformer_other_parts(width: int, layers: int = 1, device: str = "cpu", seed: int = 0) -> dict:
    """Random tensors in the layout of the Synchformer parts MMAudio ignores, named as av-benchmark's Synchformer
    names them (AST audio branch `afeat_extractor.*`, `vproj`/`aproj`, the sync `transformer.*`); the released width
    is 768 with 12 AST layers, 3 transformer blocks, 198 positions and 21 offset classes."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"afeat_extractor.ast.embeddings.cls_token": (1, 1, width),
              "afeat_extractor.ast.embeddings.distillation_token": (1, 1, width),
              "afeat_extractor.ast.embeddings.position_embeddings": (1, 74, width),
              "afeat_extractor.ast.embeddings.patch_embeddings.projection.weight": (width, 1, 16, 16),
              "afeat_extractor.ast.layernorm.weight": (width,),
              "afeat_extractor.freq_attn_agg.self_attn.in_proj_weight": (3 * width, width),
              "vproj.weight": (width, width), "vproj.bias": (width,),
              "aproj.weight": (width, width), "aproj.bias": (width,),
              "transformer.OFF_tok": (1, 1, width), "transformer.MOD_tok": (1, 1, width),
              "transformer.pos_emb_cfg.pos_emb": (1, 198, width), "transformer.ln_f.weight": (width,),
              "transformer.off_head.weight": (21, width), "transformer.off_head.bias": (21,)}
    for i in range(layers):
        for part in ("attention.attention.query", "attention.attention.key", "attention.output.dense"):
            shapes[f"afeat_extractor.ast.encoder.layer.{i}.{part}.weight"] = (width, width)
        for part in ("key", "query", "value", "proj"):
            shapes[f"transformer.blocks.{i}.attn.{part}.weight"] = (width, width)
    if device == "meta":
        return {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    return {k: torch.randn(v, generator=g) for k, v in shapes.items()}


def test_released_synchformer_keeps_the_visual_branch_and_drops_the_other_parts(mmaudio_fixtures):
    """The released file is the whole Synchformer (av-benchmark loads it strictly); MMAudio keeps vfeat_extractor."""
    shapes = json.loads((mmaudio_fixtures / "mmaudio_released_ext_shapes.json").read_text())["synchformer"]
    visual = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    full = {**visual, **synchformer_other_parts(768, layers=12, device="meta")}
    kept, dropped = R.split_synchformer(full)
    assert dropped == {"afeat_extractor.": 6 + 12 * 3, "vproj.": 2, "aproj.": 2, "transformer.": 6 + 12 * 4}
    assert set(kept) == {k[len("vfeat_extractor."):] for k in visual}
    cfg, ours = R.convert_synchformer(full)
    assert (cfg.width, cfg.depth) == (768, 12) and ours.keys() == kept.keys()
    # the visual branch is still checked strictly
    short = dict(full)
    short.pop("vfeat_extractor.norm.weight")
    with pytest.raises(CheckpointError, match=r"1 missing \(norm.weight\)"):
        R.convert_synchformer(short)
    with pytest.raises(CheckpointError, match="no 'vfeat_extractor.\\*' keys"):
        R.convert_synchformer(synchformer_other_parts(8, device="meta"))
    stray = {**full, "head.weight": torch.empty(2, device="meta"), "vfeat_extractorx": torch.empty(1, device="meta")}
    with pytest.raises(CheckpointError, match=r"2 keys belong to no part of Synchformer \(head.weight, vfeat_extrac"):
        R.convert_synchformer(stray)


def test_fold_weight_norm_equals_weight_normed_network():
    import bigvgan
    from bigvgan.env import AttrDict

    config = {**B.BIGVGAN_16K_CONFIG, "upsample_initial_channel": 16, "upsample_rates": [4, 2],
              "upsample_kernel_sizes": [8, 4], "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]],
              "hop_size": 8}
    torch.manual_seed(0)
    normed = bigvgan.BigVGAN(AttrDict(config), use_cuda_kernel=False).eval()
    state = normed.state_dict()
    assert any(k.endswith("weight_g") for k in state)
    plain = B.build_bigvgan(config)
    plain.load_state_dict(B.fold_weight_norm(state))
    mel = torch.randn(1, 80, 6)
    with torch.no_grad():
        assert _rel(plain(mel), normed(mel)) <= 1e-5
    with pytest.raises(CheckpointError, match="missing beside"):
        B.fold_weight_norm({"a.weight_v": torch.ones(2, 2)})


# ----- the documented command on a fake release folder -----

TINY_CLIP = {"model_cfg": {"embed_dim": 16, "quick_gelu": True,
                           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                          "head_width": 16},
                           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 24, "heads": 2,
                                        "layers": 1}},
             "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                                "std": [0.26862954, 0.26130258, 0.27577711]}}
TINY_VOCODER = {**B.BIGVGAN_16K_CONFIG, "upsample_initial_channel": 64, "upsample_rates": [4, 4, 2, 2, 2, 2],
                "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]}


def write_fake_release(root: Path, mmaudio_fixtures) -> dict[str, Path]:
    """Random weights of reduced widths in the released layouts and file formats (.pth state dicts)."""
    import bigvgan
    from bigvgan.env import AttrDict

    from foleyflow.models.generator import Generator, GeneratorConfig
    from foleyflow.models.mmaudio_convert import to_mmaudio

    torch.manual_seed(0)
    root.mkdir()
    gen = Generator(GeneratorConfig(latent_channels=20, visual_dim=16, sync_dim=96, text_dim=24, hidden_dim=64,
                                    num_heads=1, num_joint_blocks=2, num_audio_blocks=1))
    gen.set_latent_stats(torch.rand(20) - 0.5, torch.rand(20) + 0.5)
    paths = {"generator": root / "mmaudio_small_16k.pth", "vae": root / "v1-16.pth",
             "synchformer": root / "synchformer_state_dict.pth", "vocoder": root / "bigvgan", "clip": root / "clip"}
    torch.save(to_mmaudio(gen.state_dict()), paths["generator"])
    t, _ = _fixture(mmaudio_fixtures, "mmaudio_vae16k_tiny")
    torch.save(_net(t), paths["vae"])
    s, _ = _fixture(mmaudio_fixtures, "mmaudio_synchformer_visual_tiny")
    torch.save({**_net(s), **synchformer_other_parts(96)}, paths["synchformer"])  # the whole Synchformer, as released
    paths["vocoder"].mkdir()
    (paths["vocoder"] / "config.json").write_text(json.dumps(TINY_VOCODER))
    voc = bigvgan.BigVGAN(AttrDict(TINY_VOCODER), use_cuda_kernel=False)
    torch.save({"generator": voc.state_dict()}, paths["vocoder"] / "bigvgan_generator.pt")
    paths["clip"].mkdir()
    (paths["clip"] / "open_clip_config.json").write_text(json.dumps(TINY_CLIP))
    torch.save(C.build_clip(TINY_CLIP["model_cfg"]).state_dict(), paths["clip"] / "open_clip_pytorch_model.bin")
    return paths


def test_convert_command_on_a_fake_release_folder(tmp_path, mmaudio_fixtures, capsys):
    from foleyflow.checkpoint import read_metadata
    from foleyflow.models.mmaudio_bundle import load_release

    p = write_fake_release(tmp_path / "release", mmaudio_fixtures)
    out = tmp_path / "bundle"
    argv = ["convert", "mmaudio", "--generator", str(p["generator"]), "--vae", str(p["vae"]), "--vocoder",
            str(p["vocoder"]), "--synchformer", str(p["synchformer"]), "--clip", str(p["clip"]), "-o", str(out),
            "--fp16"]
    assert cli.main(argv) == 0
    assert "CC-BY-NC-4.0" in capsys.readouterr().out
    manifest = json.loads((out / "mmaudio.json").read_text())
    assert manifest["licence"] == "CC-BY-NC-4.0" and manifest["sample_rate"] == 16000 and manifest["channels"] == 1
    assert set(manifest["components"]) == {"generator", "vae", "vocoder", "synchformer", "clip"}
    prov = json.loads(read_metadata(out / "generator.safetensors")["foleyflow.provenance"])
    assert prov["licence"] == "CC-BY-NC-4.0" and prov["converted_from"]["file"] == "mmaudio_small_16k.pth"
    assert len(prov["converted_from"]["sha256"]) == 64
    sprov = json.loads(read_metadata(out / "synchformer.safetensors")["foleyflow.provenance"])
    assert sprov["dropped_keys"] == {"afeat_extractor.": 9, "vproj.": 2, "aproj.": 2, "transformer.": 10}
    assert "audio branch" in sprov["dropped_parts"]["afeat_extractor."] and "DeSync" in sprov["dropped_reason"]

    rel = load_release(out)
    assert rel.generator.cfg.hidden_dim == 64 and rel.sample_rate == 16000
    z = torch.randn(1, 20, 5)
    wav = rel.latents_to_audio(z)
    assert wav.shape == (1, 5 * 512)
    stereo = rel.latents_to_audio(z, stereo=True)
    assert stereo.shape == (1, 2, 5 * 512) and torch.equal(stereo[:, 0], stereo[:, 1])
    frames = torch.randint(0, 256, (1, 16, 3, 40, 60), dtype=torch.uint8)
    assert (rel.semantic.fps, rel.sync.fps) == (8, 25)
    with torch.no_grad():
        assert rel.semantic(frames[:, :3]).shape == (1, 3, 16)
        assert rel.sync(frames).shape == (1, 8, 96)
        text = rel.text(["a dog barks", ""])
    assert text.shape == (1 * 2, 77, 24)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2, 77))
    # the stored (fp16) CLIP is the released one rounded to fp16: the same tokens give the same features
    ref = C.build_clip(TINY_CLIP["model_cfg"])
    ref.load_state_dict({k: v.half().float() for k, v in
                         torch.load(p["clip"] / "open_clip_pytorch_model.bin", weights_only=True).items()})
    with torch.no_grad():
        torch.testing.assert_close(C.ClipText(ref)(["a dog barks", ""]), text)
    # end to end from frames: 1 s (8 frames at 8 fps, 25 at 25 fps), 2 guided Euler steps, mono and stereo
    frames25 = torch.randint(0, 256, (1, 25, 3, 40, 60), dtype=torch.uint8)
    audio = rel.synthesize(1.0, frames8=frames25[:, ::3][:, :8], frames25=frames25, texts=["a dog barks"],
                           num_steps=2, seed=3)
    assert audio.shape == (1, 16000) and torch.isfinite(audio).all()
    again = rel.synthesize(1.0, frames8=frames25[:, ::3][:, :8], frames25=frames25, texts=["a dog barks"],
                           num_steps=2, seed=3, stereo=True)
    assert again.shape == (1, 2, 16000) and torch.equal(again[:, 1], audio)
    assert rel.synthesize(1.0, texts=["rain"], num_steps=1).shape == (1, 16000)  # text-to-audio


def test_convert_names_missing_files_and_mismatched_parts(tmp_path, mmaudio_fixtures, capsys):
    p = write_fake_release(tmp_path / "release", mmaudio_fixtures)
    assert cli.main(["convert", "mmaudio", "--generator", str(tmp_path / "nope.pth"), "-o", str(tmp_path / "b")]) == 2
    assert "file not found" in capsys.readouterr().err
    t, _ = _fixture(mmaudio_fixtures, "mmaudio_vae44k_tiny")
    torch.save(_net(t), tmp_path / "v1-44.pth")
    assert cli.main(["convert", "mmaudio", "--generator", str(p["generator"]), "--vae", str(tmp_path / "v1-44.pth"),
                     "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "different releases" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()  # nothing written before every input was checked
    assert not list(tmp_path.glob(".b.partial-*"))  # and the staging folder is gone
    stray = torch.load(p["synchformer"], weights_only=True)
    stray["module.extra.weight"] = torch.zeros(3)
    torch.save(stray, tmp_path / "stray.pth")
    assert cli.main(["convert", "mmaudio", "--generator", str(p["generator"]), "--synchformer",
                     str(tmp_path / "stray.pth"), "-o", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "module.extra.weight" in err and "no part of Synchformer" in err and err.count("\n") == 1
    assert not (tmp_path / "b").exists()
    assert cli.main(["convert", "mmaudio", "--generator", str(p["generator"]), "-o", str(tmp_path / "b")]) == 0
    assert cli.main(["convert", "mmaudio", "--generator", str(p["generator"]), "-o", str(tmp_path / "b")]) == 2
    assert "already holds" in capsys.readouterr().err


# ----- no unpickling anywhere -----

class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_its_payload_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "mmaudio_small_16k.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload(str(marker))}, evil)
    assert not marker.exists()
    code = cli.main(["convert", "mmaudio", "--generator", str(evil), "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "refused" in err and err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "b").exists()
    for legacy in (False, True):  # zip (memory-mapped) and legacy torch formats
        path = tmp_path / f"legacy{legacy}.pth"
        torch.save({"x": _Payload(str(marker))}, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(CheckpointError, match="refused"):
            R.read_pth(path)
        torch.save({"w": torch.arange(3.0)}, path, _use_new_zipfile_serialization=not legacy)
        assert torch.equal(R.read_pth(path)["w"], torch.arange(3.0))
    assert not marker.exists()


def test_code_never_unpickles():
    root = Path(__file__).resolve().parents[1] / "foleyflow"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bpickle\.loads?\(", text), path
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call.group(1), f"{path}: {call.group(0)}"
