"""Shared neural-network layers: RoPE (incl. MMAudio's rate-aligned variant), adaLN helpers, SwiGLU / ConvSwiGLU,
attention and the MM-DiT blocks used by the generator."""
