"""The machine a benchmark ran on, printed at its top so figures can be compared only where they should be.

`cpu_summary()` -> "AMD EPYC (2 cores; avx2 fma; no avx512f, amx_tile)": the CPU model and the vector and matrix
extensions that decide which kernels PyTorch picks (fp32 AVX2 vs AVX-512, bf16 through AVX512-BF16 or AMX).
"""
from __future__ import annotations

import os

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_summary() -> str:
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    have = [f for f in FLAGS if f in flags]
    lack = [f for f in FLAGS if f not in flags]
    return (f"{model} ({os.cpu_count()} cores; {' '.join(have) or 'none of ' + ', '.join(FLAGS)}"
            + (f"; no {', '.join(lack)})" if lack and have else ")"))
