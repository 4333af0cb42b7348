"""What the CPU computes natively, from torch's ISA probes, for choices that were measured per CPU kind.

bf16 pays on a CPU with AVX-512-bf16 dot products, with or without AMX (the AVX-512-bf16 EPYCs and
the AMX Xeon of docs/benchmarks.md, "Precision of the model pass"); without AVX-512-bf16 it is
emulated, and far slower. A probe that this torch does not have counts as an answer that is not
known, and a choice that needs it is not made.
"""
from __future__ import annotations

import functools

import torch


def _probe(name: str) -> bool | None:
    probe = getattr(torch.cpu, name, None)  # private torch functions: absent in some versions
    return None if probe is None else bool(probe())


@functools.cache
def native_bf16() -> bool:
    """AVX-512-bf16 present, known."""
    return _probe("_is_avx512_bf16_supported") is True
