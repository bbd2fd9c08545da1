"""Loading the trained evaluation models of a folder into `run.EvalModels`.

A models folder (the bundled one is foleyflow/assets/eval/, see its README.md) may hold:
  event.safetensors   kind "eval_event" (models/eval_audio.EventModel): the event classifier (class accuracy), the
                      clip-level class outputs (KL, IS) and the audio embedding (FD/KAD "learned");
  clap.safetensors    kind "eval_clap" (models/eval_audio.ClapModel): text and audio embeddings (CLAP score);
  offset.safetensors  the audio-visual offset classifier (DeSync) and
  av.safetensors      the audio-visual embedding (IB score), both read by foleyflow.eval.av_models;
  quality.safetensors kind "eval_quality" (models/eval_quality.QualityModel): the quality score (eval/quality.py).
What is absent, or lacks its inputs (--video, --text), is returned in `skipped` with the reason.

Clip-level class outputs for KL and IS: the clip head gives multi-label presence probabilities p_c (sigmoid,
attention-pooled over time); KL and IS need one distribution per clip, so the classifier returns log(p_c / sum p),
i.e. logits whose softmax is the presence vector normalised to sum 1.

Captions for the CLAP score (--text FILE): a JSON Lines file whose rows have "id" and "caption" (a FoleyWorld
manifest works as is), or a text file of `name<TAB>caption` lines; clips are matched by name.
"""
from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
import numpy as np

from foleyflow.errors import CheckpointError, EvalError
from foleyflow.eval.run import EvalModels
from foleyflow.models.text_encoder import TEXT_DIM

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "eval"


def default_models_dir() -> Path | None:
    """The bundled evaluation models folder, when it holds any model."""
    return ASSETS if any(ASSETS.glob("*.safetensors")) else None


# ---------------------------------------------------------------- text vectors
def hashed_text_vectors(texts, dim: int = TEXT_DIM) -> np.ndarray:
    """A model-free text vector for tests and debug runs: the L2-normalised sum of one fixed random Gaussian vector
    per lower-cased word (seeded by the word's SHA-1)."""
    out = np.zeros((len(texts), dim), np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z0-9_]+", t.lower()):
            seed = int.from_bytes(hashlib.sha1(w.encode()).digest()[:8], "little")
            out[i] += np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
        out[i] /= max(float(np.linalg.norm(out[i])), 1e-8)
    return out


def caption_vectors(texts, kind: str = "minilm") -> np.ndarray:
    """(N, 384) float32 sentence vectors: "minilm" = the frozen MiniLM pooled vector (models/text_encoder.py),
    "hashed" = hashed_text_vectors."""
    if kind == "hashed":
        return hashed_text_vectors(texts)
    if kind != "minilm":
        raise CheckpointError(f"unknown caption encoder {kind!r} (expected minilm or hashed)")
    enc = _minilm()
    with _torch_one_thread():
        return np.concatenate([enc.encode(list(texts[s: s + 64])).pooled.numpy() for s in range(0, len(texts), 64)])


@lru_cache(maxsize=1)
def _minilm():
    from foleyflow.models.text_encoder import TextEncoderConfig, load_text_encoder

    return load_text_encoder(TextEncoderConfig(overflow="truncate"))


def read_captions(path: str | Path) -> dict[str, str]:
    """{clip name: caption} from a JSONL file with "id"/"caption" or a `name<TAB>caption` text file."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise EvalError(f"cannot read captions {path}: {e}") from None
    out = {}
    for no, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except ValueError:
                raise EvalError(f"{path}:{no}: not a JSON object") from None
            if isinstance(row.get("id"), str) and isinstance(row.get("caption"), str):
                out[Path(row["id"]).stem] = row["caption"]
            continue
        name, sep, text = line.partition("\t")
        if not sep:
            raise EvalError(f"{path}:{no}: expected 'name<TAB>caption' or a JSON object")
        out[name.strip()] = text.strip()
    if not out:
        raise EvalError(f"{path} holds no captions")
    return out


# ---------------------------------------------------------------- adapters
def _load(path: Path, kind: str):
    from foleyflow.checkpoint import checkpoint_config, load_checkpoint, load_into
    from foleyflow.models.eval_audio import build_model

    from foleyflow.checkpoint import build_checked

    tensors, meta = load_checkpoint(path, kind=kind)
    cfg = checkpoint_config(meta)
    model = build_checked(lambda: build_model(kind, cfg), tensors, what=f"{kind} ({path})")  # config vs shapes first
    load_into(model, tensors, what=kind)
    return model.eval(), meta


@contextmanager
def _torch_one_thread():
    """Inference of these small models on one torch thread: on the shared 2-core machine two threads were measured
    100x slower per call (spin-waiting threads), as for BLAS in metrics._one_blas_thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(before)


def _to_rate(audio, sr: int, rate: int) -> np.ndarray:
    from foleyflow.audio import resample

    x = np.asarray(audio, np.float32)
    x = x[None] if x.ndim == 1 else x
    return resample(x, sr, rate) if sr != rate else x


class EventClassifierModel:
    """An EventModel as truth.EventClassifier, audio_embedder and audio_classifier (see the module docstring)."""

    def __init__(self, model):
        import torch

        self.model, self._torch = model, torch
        cfg = model.cfg
        self.class_names = list(cfg.event_classes)
        self.clip_class_names = list(cfg.clip_classes)
        self.sample_rate = cfg.cnn.sample_rate
        self.segment_s, self.pre_s = cfg.segment_s, cfg.pre_s
        self._last = None

    def __call__(self, segment: np.ndarray) -> np.ndarray:
        x = np.asarray(segment, np.float32)
        x = x[None] if x.ndim == 1 else x
        with _torch_one_thread():
            logits = self.model.event_logits(self._torch.from_numpy(x.mean(0, keepdims=True)))[0]
        return self._torch.softmax(logits.double(), 0).numpy()

    def clip_outputs(self, audio, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """(presence probabilities (21,), embedding (2 x channels,)) of a whole clip. The last result is kept, so
        the embedder and the classifier called on the same clip run the network once."""
        a = np.asarray(audio)
        key = (id(audio), sr, a.shape, float(a.ravel()[:: 997].sum()))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        x = _to_rate(a, sr, self.sample_rate).mean(0, keepdims=True)
        with _torch_one_thread():
            prob, emb = self.model.clip_outputs(self._torch.from_numpy(np.ascontiguousarray(x)))
        out = (prob[0].double().numpy(), emb[0].double().numpy())
        self._last = (key, out)
        return out

    def embedding(self, audio, sr: int) -> np.ndarray:
        return self.clip_outputs(audio, sr)[1]

    def class_logits(self, audio, sr: int) -> np.ndarray:
        p = self.clip_outputs(audio, sr)[0]
        return np.log(p / p.sum())


class ClapEmbedder:
    """A ClapModel as text_embedding(name) and text_audio_embedder(audio, sr)."""

    def __init__(self, model, captions: dict[str, str] | None, text_encoder: str):
        import torch

        self.model, self._torch = model, torch
        self.captions, self.text_encoder = captions or {}, text_encoder
        self._cache: dict[str, np.ndarray] = {}

    def text_vectors(self, texts) -> np.ndarray:
        vec = caption_vectors(list(texts), self.text_encoder)
        with _torch_one_thread():
            return self.model.text_embedding(self._torch.from_numpy(vec)).double().numpy()

    def text_embedding(self, name: str) -> np.ndarray:
        """Encoded on first use (a caption file may hold many more clips than are scored) and kept by name."""
        if name not in self._cache:
            if name not in self.captions:
                raise EvalError(f"no caption for clip '{name}' in the --text file")
            self._cache[name] = self.text_vectors([self.captions[name]])[0]
        return self._cache[name]

    def audio_embedding(self, audio, sr: int) -> np.ndarray:
        x = _to_rate(audio, sr, self.model.cfg.cnn.sample_rate).mean(0, keepdims=True)
        with _torch_one_thread():
            return self.model.audio_embedding(self._torch.from_numpy(np.ascontiguousarray(x)))[0].double().numpy()


def load_event_classifier(path: str | Path) -> EventClassifierModel:
    from foleyflow.models.eval_audio import EVENT_KIND

    return EventClassifierModel(_load(Path(path), EVENT_KIND)[0])


def load_clap(path: str | Path, captions: dict[str, str] | None = None) -> ClapEmbedder:
    from foleyflow.models.eval_audio import CLAP_KIND

    model, meta = _load(Path(path), CLAP_KIND)
    return ClapEmbedder(model, captions, model.cfg.text_encoder)


# ---------------------------------------------------------------- the folder
def load_eval_models(folder: str | Path, *, video_dir: str | Path | None = None, text_file: str | Path | None = None
                     ) -> EvalModels:
    """Loads what `folder` holds; what it cannot use is in the result's `skipped` ({model: reason})."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"evaluation models folder not found: {folder}")
    models = EvalModels()
    skipped = models.skipped
    event, clap = folder / "event.safetensors", folder / "clap.safetensors"
    if event.is_file():
        clf = load_event_classifier(event)
        models.event_classifier, models.audio_embedder, models.audio_classifier = (clf, clf.embedding,
                                                                                   clf.class_logits)
    else:
        skipped["event"] = f"{event.name} not in {folder}"
    if not clap.is_file():
        skipped["clap"] = f"{clap.name} not in {folder}"
    elif text_file is None:
        skipped["clap"] = "--text not given"
    else:
        emb = load_clap(clap, read_captions(text_file))
        models.text_embedding, models.text_audio_embedder = emb.text_embedding, emb.audio_embedding
    quality = folder / "quality.safetensors"
    if quality.is_file():
        from foleyflow.eval.quality import load_quality_scorer

        models.quality_scorer = load_quality_scorer(quality)
    else:
        skipped["quality"] = f"{quality.name} not in {folder}"
    _load_av(folder, video_dir, models, skipped)
    return models


def _load_av(folder: Path, video_dir, models: EvalModels, skipped: dict) -> None:
    offset, av = folder / "offset.safetensors", folder / "av.safetensors"
    present = [p for p in (offset, av) if p.is_file()]
    for p in (offset, av):
        if not p.is_file():
            skipped[p.stem] = f"{p.name} not in {folder}"
    if not present:
        return
    if video_dir is None:
        for p in present:
            skipped[p.stem] = "--video not given"
        return
    try:
        from foleyflow.eval.av_models import frame_reader, load_av_embedding, load_offset_classifier
    except ImportError as e:
        for p in present:
            skipped[p.stem] = f"audio-visual evaluation models are not available in this build ({e})"
        return
    if offset.is_file():
        clf = load_offset_classifier(offset)
        models.offset_classifier = clf
        models.video_frames = frame_reader(video_dir, clf.video_fps, _frame_size(clf))
    if av.is_file():
        models.video_embedding, models.av_audio_embedder = load_av_embedding(av, video_dir)


def _frame_size(clf) -> int:
    """The square frame size the offset classifier was trained on (its model's visual image_size)."""
    size = getattr(clf, "frame_size", None) or getattr(getattr(getattr(clf, "model", None), "cfg", None),
                                                       "visual", None)
    size = getattr(size, "image_size", size)
    if not isinstance(size, int):
        raise CheckpointError("the offset classifier does not say which frame size it takes")
    return size


def describe(models: EvalModels) -> list[str]:
    """Names of the metrics a set of models enables (for the report settings)."""
    out = []
    for flag, what in ((models.event_classifier is not None, "class_accuracy"),
                       (models.audio_embedder is not None, "fd/kad learned"),
                       (models.audio_classifier is not None, "kl/is"), (models.desync, "desync"),
                       (models.ib, "ib_score"), (models.clap, "clap_score"),
                       (models.quality_scorer is not None, "quality")):
        if flag:
            out.append(what)
    return out

