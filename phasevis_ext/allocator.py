"""Keeping freed memory in the process between optimization steps on Linux CPUs.

Each step allocates and frees the same large activation buffers. glibc serves blocks above its
mmap threshold with fresh mmaps and returns freed heap to the kernel, so every step pays page
faults and page zeroing again: on the 2-core machine, 8 lite0 units batched (8 steps, 384²)
spent 3.0 s in the kernel, and the whole run was 12% slower than with the settings below
(0.8 s in the kernel). On the AVX-512 EPYC, the demo's job (8 lite0 logits, 128 steps) took
91-92 s without them and 64-70 s with them (docs/benchmarks.md, "Keeping freed memory").
`phasevis` applies them at start-up, and every CPU run of the library (`tune_for_cpu_runs`, from
the model's preparation) once per process, unless PHASEVIS_MALLOC=system asks to leave glibc as it
is; `tune_glibc_malloc()` applies them directly.

The cost: up to TRIM_THRESHOLD bytes of freed memory stay with the process instead of going back
to the system.
"""
from __future__ import annotations

import ctypes
import os
import sys

# mallopt parameters (malloc.h) and the values used.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 1 << 30  # keep up to 1 GiB of freed heap
TOP_PAD = 256 << 20  # grow the heap in steps of 256 MiB


def tune_glibc_malloc() -> bool:
    """Apply the settings above through mallopt; False where there is no glibc (nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))


# PHASEVIS_MALLOC=system: library runs leave the process's malloc settings alone.
OPT_OUT_ENV = "PHASEVIS_MALLOC"
_tuned_for_runs = False


def tune_for_cpu_runs() -> bool:
    """`tune_glibc_malloc()` once per process, unless PHASEVIS_MALLOC=system; whether it was applied."""
    global _tuned_for_runs
    if os.environ.get(OPT_OUT_ENV, "").strip().lower() == "system":
        return False
    if not _tuned_for_runs:
        _tuned_for_runs = tune_glibc_malloc()
    return _tuned_for_runs
