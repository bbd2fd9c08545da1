"""Converting MMAudio's released files (hkchengrex/MMAudio) into a foleyflow bundle folder of safetensors.

Inputs, as a user has them on disk:
  generator   `mmaudio_{small_16k,small_44k,medium_44k,large_44k,large_44k_v2}.pth` (a plain state dict)
  vae         `v1-16.pth` / `v1-44.pth` (the mel VAE, before `remove_weight_norm()`)
  vocoder     16 kHz: MMAudio's `best_netG.pt` (BigVGAN, under 'generator'); 44.1 kHz: NVIDIA's BigVGAN-v2 folder
              (`config.json` + `bigvgan_generator.pt`)
  synchformer `synchformer_state_dict.pth` (the whole Synchformer; its visual branch `vfeat_extractor.*` is kept,
              its audio branch and synchronisation transformer are dropped by known prefix, as MMAudio does)
  clip        an open_clip folder (`open_clip_config.json` + `open_clip_pytorch_model.bin` or `.safetensors`,
              optionally `bpe_simple_vocab_16e6.txt.gz`), e.g. apple/DFN5B-CLIP-ViT-H-14-384
`.pth`/`.pt`/`.bin` files are read only with `torch.load(weights_only=True)`: a file that needs unpickling of anything
but tensors and plain containers is refused with a one-line CheckpointError and its payload is never run.
Every key is accounted for: each component is checked against the network built from its inferred config on the
meta device, and missing, unexpected and mis-shaped keys are named in one line.

Output folder (`BUNDLE`): `generator.safetensors` (kind "generator"), `vae.safetensors` ("vae"),
`vocoder.safetensors` ("vocoder_bigvgan"), `synchformer.safetensors` ("synchformer_visual"), `clip.safetensors`
("open_clip"), each with its config and provenance (source file name, size, sha256, licence), and `mmaudio.json`, the
manifest (`mmaudio_bundle.load_release` reads it; its `defaults` are MMAudio's 25 steps and guidance 4.5).
MMAudio's weights are CC-BY-NC-4.0 (non-commercial).
Memory: one part at a time (the largest, CLIP ViT-H or large_44k, about 4 GB in float32 while it is converted).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import torch

from foleyflow.errors import CheckpointError

MANIFEST = "mmaudio.json"
FORMAT = "foleyflow-mmaudio-release/1"
MMAUDIO_LICENCE = "CC-BY-NC-4.0"
LICENCES = {
    "generator": MMAUDIO_LICENCE, "vae": MMAUDIO_LICENCE, "vocoder_16k": MMAUDIO_LICENCE,
    "vocoder_44k": "MIT (NVIDIA BigVGAN-v2)", "synchformer": f"{MMAUDIO_LICENCE} (as distributed with MMAudio)",
    "clip": "the CLIP provider's licence (DFN5B-CLIP: Apple sample code licence); check before use",
}
KINDS = {"generator": "generator", "vae": "vae", "vocoder": "vocoder_bigvgan", "synchformer": "synchformer_visual",
         "clip": "open_clip"}
SYNC_PREFIX = "vfeat_extractor."
# `synchformer_state_dict.pth` is the whole Synchformer: av-benchmark loads it strictly into a module whose top-level
# parts are `vfeat_extractor`, `afeat_extractor`, `vproj`, `aproj` and `transformer` (av_bench/synchformer/
# synchformer.py), and MMAudio's `Synchformer.load_state_dict` keeps only the `vfeat_extractor` entries
# (mmaudio/ext/synchformer/synchformer.py). The parts MMAudio ignores, which foleyflow drops the same way:
SYNC_DROPPED = {
    "afeat_extractor.": "audio branch (AST over log-mel segments)",
    "vproj.": "visual projection into the synchronisation transformer",
    "aproj.": "audio projection into the synchronisation transformer",
    "transformer.": "audio-visual synchronisation transformer (offset classifier)",
}
SYNC_DROP_REASON = ("MMAudio conditions on Synchformer's visual features only (its Synchformer.load_state_dict keeps "
                    "the vfeat_extractor entries); the audio branch and synchronisation transformer serve "
                    "av-benchmark's DeSync metric, which foleyflow does not run")


# ----- reading -----

def read_pth(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a `.pth`/`.pt`/`.bin` file via `torch.load(weights_only=True)` only (nothing unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    import zipfile

    try:  # zip-format files (torch >= 1.6) are memory-mapped: pages are read as tensors are used
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused, it holds pickled objects other than tensors (it would need "
                              f"unpickling, which foleyflow never does)") from None
    except Exception as e:  # truncated, not a torch file, ...
        raise CheckpointError(f"{path} could not be read as a weights file ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """`.safetensors` or a torch weights file (see `read_pth`)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        if not path.is_file():
            raise CheckpointError(f"file not found: {path}")
        try:
            return load_file(str(path))
        except Exception as e:
            raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__})") from None
    return read_pth(path)


def _tensors_only(state: dict, what: str) -> dict[str, torch.Tensor]:
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{what}: {len(bad)} entries are not tensors (e.g. '{bad[0]}'): not a state dict")
    return state


def account(expected: dict[str, tuple], got: dict[str, tuple], what: str) -> None:
    """One-line CheckpointError naming missing, unexpected and mis-shaped keys (up to 4 of each)."""
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    shaped = [f"{k} {tuple(got[k])}!={tuple(expected[k])}" for k in expected
              if k in got and tuple(got[k]) != tuple(expected[k])]
    if missing or extra or shaped:
        parts = [f"{len(v)} {name} ({', '.join(v[:4])}{', ...' if len(v) > 4 else ''})"
                 for name, v in (("missing", missing), ("unexpected", extra), ("mis-shaped", shaped)) if v]
        raise CheckpointError(f"{what} does not fit the released layout: {'; '.join(parts)}")


def _shapes(state: dict) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _meta_shapes(build) -> dict[str, tuple]:
    from foleyflow.checkpoint import on_meta

    with on_meta():
        return _shapes(build().state_dict())


# ----- per component: released state dict -> (config, our tensors) -----

def convert_generator(state: dict[str, torch.Tensor], what: str = "generator"):
    """-> (GeneratorConfig, tensors); see `mmaudio_convert` (our names are the reference's)."""
    from foleyflow.models.generator import Generator
    from foleyflow.models.mmaudio_convert import config_from_mmaudio, from_mmaudio

    state = from_mmaudio(_tensors_only(state, what))
    cfg = config_from_mmaudio(state)
    account(_meta_shapes(lambda: Generator(cfg)), _shapes(state), what)
    for key in ("latent_mean", "latent_std"):
        if state[key].device.type != "meta" and not torch.isfinite(state[key]).all():
            raise CheckpointError(f"{what}: its '{key}' is not finite (a generator saved before its codec "
                                  "statistics were set)")
    return cfg, state


def convert_vae(state: dict[str, torch.Tensor], what: str = "VAE"):
    from foleyflow.models.vae import MelVAE, convert_mmaudio_vae

    cfg, ours = convert_mmaudio_vae(_tensors_only(state, what))
    account(_meta_shapes(lambda: MelVAE(cfg)), _shapes(ours), what)
    return cfg, ours


def convert_bigvgan(state: dict[str, torch.Tensor], config: dict, what: str = "vocoder"):
    """-> (config, plain-weight tensors) for `bigvgan_io.build_bigvgan(config)`."""
    from foleyflow.models.bigvgan_io import build_bigvgan, fold_weight_norm, unwrap_generator

    ours = fold_weight_norm(_tensors_only(unwrap_generator(state), what))
    account(_meta_shapes(lambda: build_bigvgan(config)), _shapes(ours), what)
    return dict(config), ours


def split_synchformer(state: dict[str, torch.Tensor], what: str = "synchformer"
                      ) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """The released Synchformer -> (its visual branch with the `vfeat_extractor.` prefix removed, number of keys
    dropped per prefix of `SYNC_DROPPED`). A key under neither is a one-line CheckpointError naming it."""
    state = _tensors_only(state, what)
    visual: dict[str, torch.Tensor] = {}
    dropped = {prefix: 0 for prefix in SYNC_DROPPED}
    unknown = []
    for key, value in state.items():
        if key.startswith(SYNC_PREFIX):
            visual[key[len(SYNC_PREFIX):]] = value
        elif (prefix := next((p for p in SYNC_DROPPED if key.startswith(p)), None)) is not None:
            dropped[prefix] += 1
        else:
            unknown.append(key)
    if unknown:
        known = ", ".join((SYNC_PREFIX, *SYNC_DROPPED))
        raise CheckpointError(f"{what}: {len(unknown)} keys belong to no part of Synchformer ({', '.join(unknown[:4])}"
                              f"{', ...' if len(unknown) > 4 else ''}); expected only the prefixes {known}")
    if not visual:
        raise CheckpointError(f"{what} holds no '{SYNC_PREFIX}*' keys: it has no Synchformer visual branch")
    return visual, {p: n for p, n in dropped.items() if n}


def convert_synchformer(state: dict[str, torch.Tensor], what: str = "synchformer"):
    """Synchformer's visual branch -> (MotionFormerConfig, our MotionFormer's tensors: the reference's names with
    `vfeat_extractor.` removed). The other released parts are dropped (see `split_synchformer`); the visual branch is
    checked strictly: every key of the network built from the inferred config present, with its shape."""
    from foleyflow.models.motionformer import MotionFormer, MotionFormerConfig

    ours, _ = split_synchformer(state, what)
    width = ours["cls_token"].shape[-1] if "cls_token" in ours else 768
    depth = len({k.split(".")[1] for k in ours if k.startswith("blocks.")}) or 12
    heads = 12 if width == 768 else max(1, width // 64)
    cfg = MotionFormerConfig(width=int(width), depth=depth, num_heads=heads)
    account(_meta_shapes(lambda: MotionFormer(cfg)), _shapes(ours), what)
    return cfg, ours


def convert_clip(folder: str | Path, what: str = "CLIP"):
    """An open_clip folder -> (its open_clip config dict, tensors); the weights must fit the config's CLIP."""
    from foleyflow.models import clip_open

    folder = Path(folder)
    config = clip_open.read_config(folder)
    weights = next((folder / n for n in clip_open.WEIGHT_NAMES if (folder / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"no CLIP weights in {folder} (expected one of {', '.join(clip_open.WEIGHT_NAMES)})")
    state = _tensors_only(read_weights(weights), what)
    account(_meta_shapes(lambda: clip_open.build_clip(config["model_cfg"])), _shapes(state), what)
    return config, state, weights


# ----- the bundle -----

def _sha256(path: Path) -> str:
    from foleyflow.models.adapters import file_sha256

    return file_sha256(path)


def _source(path: Path, licence: str) -> dict:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path), "licence": licence}


def _store(tensors: dict, fp16: bool) -> dict:
    if not fp16:
        return tensors
    return {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}


def convert_release(out: str | Path, *, generator: str | Path, vae: str | Path | None = None,
                    vocoder: str | Path | None = None, synchformer: str | Path | None = None,
                    clip: str | Path | None = None, fp16: bool = False) -> Path:
    """Writes the bundle folder `out` (see module docstring) and returns the manifest's path.

    Parts are converted one at a time (only one is in memory) into a staging folder beside `out`; they are moved into
    `out` only after every input has passed, the manifest last, so a refused input leaves no bundle behind."""
    out = Path(out)
    if (out / MANIFEST).exists():
        raise CheckpointError(f"{out} already holds a converted bundle; choose another folder or remove it")
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    staging.mkdir(parents=True, exist_ok=False)
    try:
        files, rate = _convert_parts(staging, generator, vae, vocoder, synchformer, clip, fp16)
        out.mkdir(parents=True, exist_ok=True)
        for entry in files.values():
            os.replace(staging / entry["file"], out / entry["file"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    from foleyflow import __version__
    from foleyflow.models.mmaudio_bundle import MMAUDIO_DEFAULTS

    manifest = {"format": FORMAT, "reference": "hkchengrex/MMAudio", "licence": MMAUDIO_LICENCE,
                "licence_note": "MMAudio's released weights are CC-BY-NC-4.0: non-commercial use only",
                "sample_rate": 44100 if rate == "44k" else 16000, "mel_setting": rate, "channels": 1,
                "storage": "float16" if fp16 else "float32", "components": files,
                "defaults": dict(MMAUDIO_DEFAULTS),  # generation defaults foleyflow generate takes from here
                "foleyflow_version": __version__}
    path = out / MANIFEST
    tmp = out / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def _convert_parts(staging: Path, generator, vae, vocoder, synchformer, clip, fp16: bool) -> tuple[dict, str]:
    from foleyflow.checkpoint import save_checkpoint
    from foleyflow.config import config_to_json

    files: dict[str, dict] = {}

    def store(name: str, kind: str, config: dict, tensors: dict, source: dict, **notes) -> None:
        prov = {"converted_from": source, "licence": source["licence"], "reference": "hkchengrex/MMAudio", **notes}
        save_checkpoint(staging / f"{name}.safetensors", _store(tensors, fp16), kind=kind, config=config,
                        provenance=prov)
        files[name] = {"file": f"{name}.safetensors", "kind": kind, "source": source}

    gpath = Path(generator)
    gcfg, tensors = convert_generator(read_pth(gpath), f"generator {gpath.name}")
    store("generator", "generator", json.loads(config_to_json(gcfg)), tensors, _source(gpath, LICENCES["generator"]))
    rate = "44k" if gcfg.latent_channels == 40 else "16k"
    if vae is not None:
        vpath = Path(vae)
        vcfg, tensors = convert_vae(read_pth(vpath), f"VAE {vpath.name}")
        if vcfg.latent_dim != gcfg.latent_channels:
            raise CheckpointError(f"VAE {vpath.name} has {vcfg.latent_dim} latent channels, the generator "
                                  f"{gcfg.latent_channels}: they belong to different releases (16k / 44k)")
        store("vae", "vae", json.loads(config_to_json(vcfg)), tensors, _source(vpath, LICENCES["vae"]))
    if vocoder is not None:
        store("vocoder", *_vocoder_part(Path(vocoder), rate))
    if synchformer is not None:
        spath = Path(synchformer)
        state = read_pth(spath)
        _, dropped = split_synchformer(state, f"synchformer {spath.name}")
        scfg, tensors = convert_synchformer(state, f"synchformer {spath.name}")
        store("synchformer", "synchformer_visual", json.loads(config_to_json(scfg)), tensors,
              _source(spath, LICENCES["synchformer"]), dropped_keys=dropped,
              dropped_parts={p: SYNC_DROPPED[p] for p in dropped}, dropped_reason=SYNC_DROP_REASON)
    if clip is not None:
        from foleyflow.models.clip_open import BPE_NAME

        ccfg, tensors, wpath = convert_clip(clip, f"CLIP {Path(clip).name}")
        store("clip", "open_clip", ccfg, tensors, _source(wpath, LICENCES["clip"]))
        if (Path(clip) / BPE_NAME).is_file():
            shutil.copyfile(Path(clip) / BPE_NAME, staging / BPE_NAME)
            files["tokenizer"] = {"file": BPE_NAME, "source": _source(Path(clip) / BPE_NAME, LICENCES["clip"])}
    return files, rate


def _vocoder_part(path: Path, rate: str):
    from foleyflow.models.bigvgan_io import BIGVGAN_16K_CONFIG

    if path.is_dir():  # NVIDIA's release folder
        cfg_path, weights = path / "config.json", path / "bigvgan_generator.pt"
        if not cfg_path.is_file() or not weights.is_file():
            raise CheckpointError(f"{path}: a BigVGAN folder needs config.json and bigvgan_generator.pt")
        try:
            config = json.loads(cfg_path.read_text())
        except ValueError as e:
            raise CheckpointError(f"{cfg_path} is not valid JSON ({e})") from None
        licence = LICENCES["vocoder_44k"]
    else:
        config, weights, licence = dict(BIGVGAN_16K_CONFIG), path, LICENCES["vocoder_16k"]
    want = 44100 if rate == "44k" else 16000
    if int(config.get("sampling_rate", want)) != want:
        raise CheckpointError(f"vocoder {path.name} is for {config.get('sampling_rate')} Hz, the generator for {want}")
    config.setdefault("sampling_rate", want)
    config.setdefault("hop_size", 512 if rate == "44k" else 256)
    vcfg, vt = convert_bigvgan(read_pth(weights), config, f"vocoder {weights.name}")
    return "vocoder_bigvgan", vcfg, vt, _source(weights, licence)
