"""Keeping freed memory in the process between optimization steps on Linux CPUs.

Each step allocates and frees the same large activation buffers. glibc serves blocks above its
mmap threshold with fresh mmaps and returns freed heap to the kernel, so every step pays page
faults and page zeroing again: on the 2-core machine, 8 lite0 units batched (8 steps, 384²)
spent 3.0 s in the kernel, and the whole run was 12% slower than with the settings below
(0.8 s in the kernel). `phasevis` applies them at start-up; library users can call
`tune_glibc_malloc()` themselves, or set MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_.

The cost: up to TRIM_THRESHOLD bytes of freed memory stay with the process instead of going back
to the system.
"""
from __future__ import annotations

import ctypes
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
