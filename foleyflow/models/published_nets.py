"""The published evaluation networks av-benchmark (hkchengrex/av-benchmark) runs, built by their maintained packages
from weights the user has on disk, with no hub access: PaSST (`hear21passt`), PANNs Cnn14 16 kHz (`panns_inference`),
VGGish (`torchvggish`), LAION-CLAP HTSAT-base (`laion_clap`), MS-CLAP 2023 (`msclap`) and, for the rewards, Audiobox
Aesthetics (`audiobox_aesthetics`: `model.aes.AesMultiOutput`, loaded from the user's checkpoint by `load_audiobox`).

Shared by the evaluation (`foleyflow.eval.published_metrics`, the embedders folder with the file names in `FILES`,
docs/evaluation.md "Published metrics with your embedders") and the published rewards (`foleyflow.rewards.published`,
docs/rewards.md): the builders below make each package's own network, `load_clap` loads a CLAP file with its text
folder beside it, and `ClapNet` computes text and audio embeddings as the packages do. Every `.pth` is read with
`torch.load(weights_only=True)`: a file that needs unpickling is refused with a one-line error.

How each package is used (the model is the package's own class; only what surrounds it is ours):
  - PaSST: `hear21passt.wrapper.PasstBasicWrapper(AugmentMelSTFT(...), get_model("passt_s_swa_p16_128_ap476",
    pretrained=False), mode="all")`, i.e. `hear21passt.base.get_basic_model` without its download; output columns
    [:527] are the logits, [527:] the 768-d embedding (av-benchmark extract.py).
  - PANNs: `panns_inference.models.Cnn14` at 16 kHz (window 512, hop 160, 64 mels, 50-8000 Hz), av-benchmark's
    `Cnn14(features_list=["2048", "logits"])`: "2048" is relu(fc1(.)) (the package's `embedding` in eval mode) and
    the logits are `fc_audioset` of it (the package returns only their sigmoid).
  - VGGish: `torchvggish.torchvggish.VGG` without preprocessing and PCA postprocessing. av-benchmark's VGGish has no
    ReLU after the last linear layer; the package's has, so the embedding is taken before that final ReLU.
  - LAION-CLAP: `laion_clap.clap_module.model.CLAP` from the package's `HTSAT-base` config, text branch "roberta"
    (a `RobertaModel` built from the config in the user's `roberta-base/` folder instead of `from_pretrained`, its
    weights are in the CLAP checkpoint); tokenizer: `RobertaTokenizer` from that folder (77 tokens, as
    `CLAP_Module.tokenizer`).
  - MS-CLAP: `msclap.models.clap.CLAP` from the package's `config_2023.yml`, text model GPT-2 built from the config
    in the user's `gpt2/` folder (weights in the CLAP checkpoint); tokenizer from that folder with pad token "!",
    captions suffixed with " <|endoftext|>" (as `CLAPWrapper.preprocess_text`).
Package imports that need torchvision, torchaudio or timm (unusable beside the CPU torch here, or only used for
downloads and training-time augmentation) are satisfied while the model modules load by stand-ins (`_stub_modules`):
torchaudio's Kaldi mel banks, which PaSST's front-end calls at run time, are computed by `kaldi_mel_banks` below
from Kaldi's formula (mel = 1127 ln(1 + f / 700), triangles in the mel domain, no VTLN warp).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import sys
import types
from pathlib import Path

import numpy as np

from foleyflow.errors import CheckpointError, MissingResourceError

FILES = {
    "passt": "passt-s-f128-p16-s10-ap.476-swa.pt",
    "panns": "Cnn14_16k_mAP=0.438.pth",
    "vggish": "vggish-10086976.pth",
    "laion_clap": "music_speech_audioset_epoch_15_esc_89.98.pt",
    "ms_clap": "CLAP_weights_2023.pth",
}
TEXT_FOLDERS = {"laion_clap": "roberta-base", "ms_clap": "gpt2"}
PACKAGES = {"passt": "hear21passt", "panns": "panns_inference", "vggish": "torchvggish", "laion_clap": "laion_clap",
            "ms_clap": "msclap"}
CLAP_RATES = {"laion_clap": 48000, "ms_clap": 44100}


# ---------------------------------------------------------------- loading package modules without their extras
def kaldi_mel_banks(num_bins: int, window_length_padded: int, sample_freq: float, low_freq: float, high_freq: float,
                    vtln_low: float = 100.0, vtln_high: float = -500.0, vtln_warp_factor: float = 1.0):
    """torchaudio.compliance.kaldi.get_mel_banks without VTLN warping: ((num_bins, n_fft / 2) weights, centre mels).
    high_freq <= 0 counts from Nyquist, as in Kaldi."""
    import torch

    if vtln_warp_factor != 1.0:
        raise MissingResourceError("VTLN-warped mel banks need torchaudio")
    nyquist = 0.5 * sample_freq
    high_freq = high_freq + nyquist if high_freq <= 0.0 else high_freq
    mel = lambda f: 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)  # noqa: E731
    lo, hi = mel(low_freq), mel(high_freq)
    delta = (hi - lo) / (num_bins + 1)
    left = lo + np.arange(num_bins)[:, None] * delta
    center, right = left + delta, left + 2 * delta
    bin_mel = mel(sample_freq / window_length_padded * np.arange(window_length_padded // 2))[None]
    up, down = (bin_mel - left) / (center - left), (right - bin_mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return torch.tensor(banks, dtype=torch.float32), torch.tensor(center[:, 0], dtype=torch.float32)


class _NoTrainingTransform:
    """Stand-in for torchaudio's FrequencyMasking / TimeMasking (training-time augmentation only)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, x):
        raise MissingResourceError("training-time spectrogram masking needs torchaudio (evaluation never uses it)")


class _NoFrozenBatchNorm:
    def __init__(self, *args, **kwargs):
        raise MissingResourceError("frozen batch norm needs torchvision")


def _no_download(*args, **kwargs):
    raise MissingResourceError("foleyflow never downloads weights: put them in the embedders folder")


def _stub_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for the missing optional packages (only those not installed)."""
    stubs: dict[str, types.ModuleType] = {}

    def add(name, **attrs):
        mod = stubs.setdefault(name, types.ModuleType(name))
        for k, v in attrs.items():
            setattr(mod, k, v)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(add(parent), child, mod)
        return mod

    if importlib.util.find_spec("torchaudio") is None:
        add("torchaudio.transforms", FrequencyMasking=_NoTrainingTransform, TimeMasking=_NoTrainingTransform)
        add("torchaudio.compliance.kaldi", get_mel_banks=kaldi_mel_banks)
    if importlib.util.find_spec("timm") is None:
        add("timm.models._hub", download_cached_file=_no_download)
    if importlib.util.find_spec("torchvision") is None:
        add("torchvision.ops.misc", FrozenBatchNorm2d=_NoFrozenBatchNorm)
    return stubs


def package_module(package: str, module: str, *, subdir: str = "") -> types.ModuleType:
    """`package[.subdir].module` loaded under a private package name without running the package's `__init__`
    (which imports training or download code), with `_stub_modules` visible during the import only."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise MissingResourceError(f"the {package} package is not installed (bash scripts/setup.sh installs it; see "
                                   "docs/evaluation.md)")
    private = f"_foleyflow_{package}" + (f"_{subdir}" if subdir else "")
    if private not in sys.modules:
        pkg = types.ModuleType(private)
        pkg.__path__ = [str(Path(p) / subdir) for p in spec.submodule_search_locations]
        pkg.__package__ = private
        sys.modules[private] = pkg
    if importlib.util.find_spec("transformers") is not None:  # imported (and its optional-package probes run)
        import transformers  # before the stand-ins exist, as models/clip_open.py does for open_clip

        transformers.AutoModel, transformers.RobertaModel, transformers.AutoTokenizer  # noqa: B018 (lazy imports)
    stubs = {k: v for k, v in _stub_modules().items() if k not in sys.modules}
    sys.modules.update(stubs)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return importlib.import_module(f"{private}.{module}")
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


def read_pth(path: Path) -> dict:
    """A .pth/.pt file read with torch.load(weights_only=True) only (models.mmaudio_release.read_pth: one-line
    errors for a missing file or one that would need unpickling)."""
    from foleyflow.models.mmaudio_release import read_pth as read

    return read(path)


def state_dict_of(obj, path: Path, keys=("state_dict", "model")) -> dict:
    for key in keys:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: holds no state dict")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_strict(model, sd: dict, path: Path, ignore=("position_ids",)) -> None:
    import torch

    sd = {k: v for k, v in sd.items() if not k.endswith(ignore)}
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith(ignore)]
    extra = [k for k in sd if k not in own]
    bad = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or extra or bad:
        what = [f"{len(v)} {w} (e.g. {v[0]})" for w, v in (("missing", missing), ("unexpected", extra),
                                                            ("of another shape", bad)) if v]
        raise CheckpointError(f"{path}: keys do not match the architecture: {'; '.join(what)}")
    with torch.no_grad():
        model.load_state_dict(sd, strict=False)
    model.eval()


def text_folder(folder: Path, name: str) -> Path:
    sub = folder / TEXT_FOLDERS[name]
    if not (sub / "config.json").is_file():
        raise CheckpointError(f"{name}: no {TEXT_FOLDERS[name]}/config.json in {folder} (the text model's config and "
                              "tokenizer files are needed)")
    return sub


# ---------------------------------------------------------------- network builders (random weights; tests use them)
def build_passt():
    """PaSST-S (SWA, AudioSet) as hear21passt.base.get_basic_model(mode="all") builds it, without weights."""
    passt = package_module("hear21passt", "models.passt")
    pre = package_module("hear21passt", "models.preprocess")
    wrapper = package_module("hear21passt", "wrapper")
    with contextlib.redirect_stdout(io.StringIO()):
        mel = pre.AugmentMelSTFT(n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192,
                                 htk=False, fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000)
        net = passt.get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)
    return wrapper.PasstBasicWrapper(mel=mel, net=net, mode="all").eval()


def build_panns():
    """PANNs Cnn14 at 16 kHz as av-benchmark configures it, without weights."""
    models = package_module("panns_inference", "models")
    return models.Cnn14(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000,
                        classes_num=527).eval()


def build_vggish():
    """torchvggish's VGG (the harritaylor/torchvggish weights' layout), without pre/postprocessing or weights."""
    tv = package_module("torchvggish", "torchvggish")
    return tv.VGG(tv.make_layers(), postprocess=False).eval()


def _laion_model(text_dir: Path | None):
    import transformers

    model_mod = package_module("laion_clap", "model", subdir="clap_module")
    import json

    cfg_path = Path(importlib.util.find_spec("laion_clap").submodule_search_locations[0]) / "clap_module" / \
        "model_configs" / "HTSAT-base.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["text_cfg"]["model_type"] = "roberta"
    cfg["enable_fusion"], cfg["fusion_type"] = False, "None"

    class _Roberta:  # replaces RobertaModel.from_pretrained('roberta-base'): architecture from the user's config
        @staticmethod
        def from_pretrained(_name, *a, **k):
            conf = (transformers.RobertaConfig.from_pretrained(str(text_dir)) if text_dir is not None
                    else transformers.RobertaConfig())
            return transformers.RobertaModel(conf)

    saved, model_mod.RobertaModel = model_mod.RobertaModel, _Roberta
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return model_mod.CLAP(**cfg).eval()
    finally:
        model_mod.RobertaModel = saved


def build_laion_clap(text_dir: str | Path | None = None):
    """LAION-CLAP HTSAT-base, non-fusion, text branch RoBERTa from `text_dir/config.json` (default: RoBERTa-base's
    sizes), without weights."""
    return _laion_model(Path(text_dir) if text_dir is not None else None)


def _ms_args() -> dict:
    import yaml

    path = Path(importlib.util.find_spec("msclap").submodule_search_locations[0]) / "configs" / "config_2023.yml"
    return yaml.safe_load(path.read_text())


def build_ms_clap(text_dir: str | Path | None = None):
    """MS-CLAP 2023 (HTSAT audio encoder, GPT-2 text encoder from `text_dir/config.json`, default GPT-2's sizes),
    without weights."""
    import transformers

    clap_mod = package_module("msclap", "models.clap")
    a = _ms_args()

    class _Auto:  # replaces AutoModel.from_pretrained('gpt2'): architecture from the user's config
        @staticmethod
        def from_pretrained(_name, *args, **kwargs):
            conf = (transformers.AutoConfig.from_pretrained(str(text_dir)) if text_dir is not None
                    else transformers.GPT2Config())
            return transformers.AutoModel.from_config(conf)

    saved, clap_mod.AutoModel = clap_mod.AutoModel, _Auto
    try:
        return clap_mod.CLAP(audioenc_name=a["audioenc_name"], sample_rate=a["sampling_rate"],
                             window_size=a["window_size"], hop_size=a["hop_size"], mel_bins=a["mel_bins"],
                             fmin=a["fmin"], fmax=a["fmax"], classes_num=a["num_classes"], out_emb=a["out_emb"],
                             text_model=a["text_model"], transformer_embed_dim=a["transformer_embed_dim"],
                             d_proj=a["d_proj"]).eval()
    finally:
        clap_mod.AutoModel = saved


# ---------------------------------------------------------------- CLAP: loading and embeddings (evaluation and rewards)
def laion_input(x48k: np.ndarray, seed: int = 0) -> np.ndarray:
    """(M,) at 48 kHz -> (480000,): repeatpad (tiled floor(480000 / M) times, zero-padded) or a random crop."""
    n = 480000
    if len(x48k) > n:
        start = int(np.random.default_rng(seed).integers(0, len(x48k) - n + 1))
        return x48k[start:start + n].astype(np.float32)
    x = np.tile(x48k, n // len(x48k))
    return np.pad(x, (0, n - len(x))).astype(np.float32)


def ms_clap_input(audio: np.ndarray, sr: int, seed: int = 0) -> np.ndarray:
    """(C, N) audio -> (308700,) as MS-CLAP's loader: resampled to 44.1 kHz, channels flattened, 7 s by tiling or a
    random crop (start uniform in [0, M - 308700), as random.randrange)."""
    from foleyflow.audio import resample

    rate, n = 44100, 7 * 44100
    a = np.asarray(audio, np.float64)
    a = a[None] if a.ndim == 1 else a
    if int(sr) != rate:
        a = resample(a, int(sr), rate, dtype=np.float64)
    x = a.reshape(-1)
    if n >= len(x):
        return np.tile(x, int(np.ceil(n / len(x))))[:n].astype(np.float32)
    start = int(np.random.default_rng(seed).integers(0, len(x) - n))
    return x[start:start + n].astype(np.float32)


class ClapNet:
    """A LAION-CLAP (`name` "laion_clap") or MS-CLAP ("ms_clap") network with its tokenizer, in eval mode.

    text_embeddings(texts) -> (B, D) and audio_embeddings(waves) -> (B, D) float32 tensors as the package computes
    them (no renormalisation here; cosines normalise). `waves` is (B, L) float32 already prepared at `rate` Hz by
    `laion_input` (L = 480000) or `ms_clap_input` (L = 308700)."""

    def __init__(self, name: str, net, tokenizer):
        self.name, self.net, self.tokenizer, self.rate = name, net, tokenizer, CLAP_RATES[name]

    @property
    def device(self):
        return next(self.net.parameters()).device

    def text_embeddings(self, texts: list[str]):
        import torch

        with torch.inference_mode():
            if self.name == "laion_clap":  # as CLAP_Module.tokenizer: 77 tokens, padded
                tok = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=77,
                                     return_tensors="pt")
                return self.net.get_text_embedding({k: v.to(self.device) for k, v in tok.items()}).float()
            out = []
            for text in texts:  # as CLAPWrapper.preprocess_text
                tok = self.tokenizer(text + " <|endoftext|>", add_special_tokens=True, max_length=77,
                                     padding="max_length", return_tensors="pt")
                ids = {k: tok[k].to(self.device) for k in ("input_ids", "attention_mask")}
                out.append(self.net.caption_encoder(ids))
            return torch.cat(out).float()

    def audio_embeddings(self, waves):
        import torch

        waves = torch.as_tensor(waves, dtype=torch.float32).to(self.device)
        with torch.inference_mode():
            if self.name == "laion_clap":
                return self.net.get_audio_embedding([{"waveform": w, "longer": torch.tensor([False])}
                                                     for w in waves]).float()
            return self.net.audio_encoder(waves)[0].float()


def load_clap(path: str | Path, name: str) -> ClapNet:
    """The CLAP file `path` (LAION-CLAP HTSAT-base non-fusion, or MS-CLAP 2023) loaded into the package's network,
    with its text model's config and tokenizer from the folder TEXT_FOLDERS[name] beside it; one-line
    CheckpointError / MissingResourceError otherwise."""
    import transformers

    path = Path(path)
    sd = state_dict_of(read_pth(path), path)
    text_dir = text_folder(path.parent, name)
    net = build_laion_clap(text_dir) if name == "laion_clap" else build_ms_clap(text_dir)
    tok = transformers.AutoTokenizer.from_pretrained(str(text_dir))
    if name == "ms_clap":
        tok.add_special_tokens({"pad_token": "!"})
    load_strict(net, sd, path, ignore=("position_ids", ".attn.bias", ".attn.masked_bias"))
    return ClapNet(name, net, tok)


# ---------------------------------------------------------------- Audiobox Aesthetics (rewards)
AUDIOBOX_AXES = ("CE", "CU", "PC", "PQ")  # content enjoyment, content usefulness, production complexity, quality
AUDIOBOX_CFG_KEYS = ("proj_num_layer", "proj_ln", "proj_act_fn", "proj_dropout", "nth_layer", "use_weighted_layer_sum",
                     "precision", "normalize_embed", "output_dim")


def build_audiobox(model_cfg: dict | None = None, target_transform: dict | None = None):
    """`audiobox_aesthetics.model.aes.AesMultiOutput` (WavLM-base encoder, one head per axis) from the keys of a
    checkpoint's `model_cfg` (AUDIOBOX_CFG_KEYS, package defaults otherwise), without weights. target_transform:
    {axis: {"mean", "std"}} of the heads' outputs (default mean 0, std 1)."""
    aes = package_module("audiobox_aesthetics", "model.aes")
    cfg = {k: v for k, v in (model_cfg or {}).items() if k in AUDIOBOX_CFG_KEYS}
    tt = target_transform or {a: {"mean": 0.0, "std": 1.0} for a in AUDIOBOX_AXES}
    return aes.AesMultiOutput(**cfg, target_transform=tt).eval()


def load_audiobox(path: str | Path):
    """Audiobox Aesthetics from the user's file: the released `checkpoint.pt` (keys state_dict with "model."
    prefixes, model_cfg, target_transform; read with weights_only=True) or a `model.safetensors` with the
    package's `config.json` beside it (PyTorchModelHubMixin's layout). One-line CheckpointError otherwise."""
    import json

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        conf = path.parent / "config.json"
        if not conf.is_file():
            raise CheckpointError(f"{path}: no config.json beside it (the package's model config is needed)")
        cfg = json.loads(conf.read_text())
        sd, target = load_file(str(path)), cfg.get("target_transform")
    else:
        ckpt = read_pth(path)
        if not isinstance(ckpt, dict) or not {"state_dict", "model_cfg", "target_transform"} <= set(ckpt):
            raise CheckpointError(f"{path}: not an Audiobox Aesthetics checkpoint (needs state_dict, model_cfg and "
                                  "target_transform)")
        cfg, target = ckpt["model_cfg"], ckpt["target_transform"]
        sd = {(k[len("model."):] if k.startswith("model.") else k): v for k, v in ckpt["state_dict"].items()}
    if not isinstance(target, dict) or not all(isinstance(target.get(a), dict) for a in AUDIOBOX_AXES):
        raise CheckpointError(f"{path}: its target_transform does not give a mean and std for {AUDIOBOX_AXES}")
    net = build_audiobox(cfg, target)
    load_strict(net, sd, path)
    return net
