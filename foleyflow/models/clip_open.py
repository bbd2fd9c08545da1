"""CLIP image and text features as MMAudio computes them, through the maintained `open-clip-torch` package.

MMAudio (hkchengrex/MMAudio) uses DFN5B CLIP ViT-H/14 at 384 px (`mmaudio/model/utils/features_utils.py`):
  - images: video frames sampled at 8 fps (`mmaudio/eval_utils.py`, `load_video`), resized to 384 x 384 without
    cropping (bicubic, antialiased), scaled to [0, 1], normalised with OpenAI CLIP's mean/std, then
    `encode_image(x, normalize=True)`: (B, T, 1024), one L2-normalised vector per frame. That preprocessing is
    `adapters.ClipFrameAdapter`'s; this module supplies the network.
  - text: open_clip's SimpleTokenizer (77 tokens, the tokenizer of `ViT-H-14-378-quickgelu`) and a patched
    `encode_text` that returns the per-token last hidden states after `ln_final`, L2-normalised per token, without
    pooling or projection: (B, 77, 1024).
The network is the package's own `CLIP` class built from the `open_clip_config.json` of the user's folder (parity by
construction); weights are read by path from that folder or from a converted bundle, never downloaded.

open_clip's package `__init__` imports torchvision (for its training transforms), which cannot be installed beside
the CPU torch used here; when torchvision is missing, `open_clip_modules` loads the package's `model` and
`tokenizer` modules under a private package name without running that `__init__` (nothing else changes).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from foleyflow.errors import CheckpointError, MissingResourceError

_PRIVATE = "_foleyflow_open_clip"
CONTEXT_LENGTH = 77  # MMAudio: open_clip.get_tokenizer('ViT-H-14-378-quickgelu') -> 77 tokens
CONFIG_NAME = "open_clip_config.json"
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"


def open_clip_modules() -> tuple[types.ModuleType, types.ModuleType]:
    """(open_clip.model, open_clip.tokenizer), importable without torchvision."""
    if importlib.util.find_spec("open_clip") is None:
        raise MissingResourceError("open-clip-torch is not installed (bash scripts/setup.sh installs it, see "
                                   "docs/mmaudio.md)")
    if importlib.util.find_spec("torchvision") is not None:
        import open_clip

        return open_clip.model, open_clip.tokenizer
    if _PRIVATE not in sys.modules:
        spec = importlib.util.find_spec("open_clip")
        pkg = types.ModuleType(_PRIVATE)
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__package__ = _PRIVATE
        sys.modules[_PRIVATE] = pkg
    importlib.import_module(f"{_PRIVATE}.hf_model")  # imports transformers (which probes for torchvision) first
    # open_clip/utils.py imports torchvision's FrozenBatchNorm2d (only used to freeze ResNet towers): a stand-in that
    # refuses to be built is visible during this import only, then removed again.
    stubs = {}
    for name in ("torchvision", "torchvision.ops", "torchvision.ops.misc"):
        stubs[name] = types.ModuleType(name)
    stubs["torchvision.ops.misc"].FrozenBatchNorm2d = _NoFrozenBatchNorm
    sys.modules.update(stubs)
    try:
        return importlib.import_module(f"{_PRIVATE}.model"), importlib.import_module(f"{_PRIVATE}.tokenizer")
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


class _NoFrozenBatchNorm:
    def __init__(self, *args, **kwargs):
        raise MissingResourceError("freezing batch norm in an open_clip ResNet tower needs torchvision")


def read_config(folder_or_file: str | Path) -> dict:
    """The `open_clip_config.json` of a user's folder (or the file itself): {"model_cfg": ..., "preprocess_cfg": ...}."""
    path = Path(folder_or_file)
    path = path / CONFIG_NAME if path.is_dir() else path
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in {path.parent} (the open_clip folder of the CLIP model)")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_cfg"), dict):
        raise CheckpointError(f"{path} has no 'model_cfg' object (not an open_clip config)")
    return cfg


def build_clip(model_cfg: dict) -> nn.Module:
    """open_clip's CLIP from a `model_cfg` dict (random weights; put under `torch.device('meta')` to get shapes only).
    Text towers from Hugging Face (`hf_model_name`) and timm image towers are refused: they would need a hub."""
    model_cfg = dict(model_cfg)
    if model_cfg.pop("custom_text", False) or "hf_model_name" in model_cfg.get("text_cfg", {}):
        raise CheckpointError("this open_clip config uses a Hugging Face text tower, which foleyflow does not load")
    if "timm_model_name" in model_cfg.get("vision_cfg", {}):
        raise CheckpointError("this open_clip config uses a timm image tower, which foleyflow does not load")
    model_mod, _ = open_clip_modules()
    try:
        return model_mod.CLIP(**model_cfg)
    except TypeError as e:
        raise CheckpointError(f"open_clip config not understood ({e})") from None


MMAUDIO_CLIP_SIZE = 384  # mmaudio/eval_utils.py: _CLIP_SIZE = 384 (v2.Resize((384, 384), BICUBIC), no crop)


def image_size(model_cfg: dict) -> int:
    """The frame size MMAudio feeds: 384 px whenever the model's patch grid at 384 px is its positional grid (the
    DFN5B ViT-H/14 config says 378 px, 27 x 27 patches of 14; at 384 px its patch convolution still makes 27 x 27 and
    ignores the last 6 rows and columns, as in MMAudio), otherwise the config's own size."""
    vision = model_cfg.get("vision_cfg", {})
    size = vision.get("image_size", 224)
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    patch = int(vision.get("patch_size", 16))
    return MMAUDIO_CLIP_SIZE if MMAUDIO_CLIP_SIZE // patch == size // patch else size


class ClipText(nn.Module):
    """Text -> (B, 77, width) per-token features, as MMAudio's patched `encode_text` (see module docstring)."""

    def __init__(self, clip: nn.Module, bpe_path: str | Path | None = None):
        super().__init__()
        _, tok_mod = open_clip_modules()
        self.clip = clip
        kwargs = {"bpe_path": str(bpe_path)} if bpe_path else {}
        self.tokenizer = tok_mod.SimpleTokenizer(context_length=CONTEXT_LENGTH, **kwargs)

    @property
    def out_dim(self) -> int:
        return int(self.clip.ln_final.weight.shape[0])

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 77) token ids -> (B, 77, width), L2-normalised per token (no pooling, no projection)."""
        m = self.clip
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast) + m.positional_embedding.to(cast)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))
        return F.normalize(x, dim=-1)

    def forward(self, texts: list[str]) -> torch.Tensor:
        return self.encode_tokens(self.tokenize(texts).to(self.clip.positional_embedding.device))


class ClipImage(nn.Module):
    """What a `ClipFrameAdapter` wraps: (N, 3, S, S) normalised -> (N, embed_dim), L2-normalised. A module (not a
    closure), so the adapter's parameters and `.to(device)` reach the CLIP network."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(x, normalize=True)


def clip_image_fn(clip: nn.Module) -> nn.Module:
    """The callable a `ClipFrameAdapter` wraps (`ClipImage`)."""
    return ClipImage(clip)


def image_features(clip: nn.Module, model_cfg: dict):
    """A `ClipFrameAdapter` (fps 8, out_dim embed_dim, `__call__(frames (B, T, 3, H, W)) -> (B, T, D)`) around
    `clip`, with MMAudio's preprocessing at the config's image size."""
    from foleyflow.models.adapters import ClipAdapterConfig, ClipFrameAdapter

    cfg = ClipAdapterConfig(image_size=image_size(model_cfg), dim=int(model_cfg["embed_dim"]))
    return ClipFrameAdapter(clip_image_fn(clip), cfg, {"impl": "open_clip", "model": "mmaudio_clip"})
