import ctypes
import sys

import pytest

from phasevis_ext import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuning_applies_on_glibc_and_is_repeatable():
    assert allocator.tune_glibc_malloc() is True
    assert allocator.tune_glibc_malloc() is True
    # the process still allocates and frees large blocks normally afterwards
    blocks = [bytearray(40 << 20) for _ in range(3)]
    assert sum(len(b) for b in blocks) == 120 << 20


def test_no_glibc_means_no_change(monkeypatch):
    def missing(name):
        raise OSError(f"{name} not found")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert allocator.tune_glibc_malloc() is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.tune_glibc_malloc() is False
