import ctypes
import json
import subprocess
import sys

import pytest

from phasevis_ext import allocator

# In a fresh process, so that the tuning other tests applied (the CLI tunes its own process) does
# not count: where glibc puts a 20 MiB block before and after tune_glibc_malloc, read from mallinfo2.
PROBE = """
import ctypes, json
from phasevis_ext import allocator
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
def place(size):
    block = libc.malloc(size)
    mmapped = libc.mallinfo2().hblkhd
    libc.free(block)
    return {"mmapped": mmapped, "heap_after_free": libc.mallinfo2().arena}
before = place(20 << 20)
tuned = [allocator.tune_glibc_malloc(), allocator.tune_glibc_malloc()]
print(json.dumps({"before": before, "tuned": tuned, "after": place(20 << 20)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuning_serves_large_blocks_from_the_heap_and_keeps_them():
    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc without mallinfo2 (< 2.33)")
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    assert probe["tuned"] == [True, True]  # and applying it twice is harmless
    assert probe["before"]["mmapped"] >= 20 << 20  # glibc's default: a fresh mmap, unmapped again on free
    assert probe["after"]["mmapped"] < 20 << 20  # tuned: from the heap
    assert probe["after"]["heap_after_free"] >= 20 << 20  # and the freed block stays with the process


def test_no_glibc_means_no_change(monkeypatch):
    def missing(name):
        raise OSError(f"{name} not found")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert allocator.tune_glibc_malloc() is False
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator.tune_glibc_malloc() is False


# A CPU run of the library tunes its process once, unless PHASEVIS_MALLOC=system: where a 20 MiB
# block goes after one visualize step of a tiny model.
RUN_PROBE = PROBE.split("before = place")[0] + """
import torch
from torch import nn
import phasevis_ext as pv
model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
pv.visualize(model, ["logit:0"], steps=1, image_size=32, input_size=32, progress=False)
print(json.dumps({"tuned": allocator._tuned_for_runs, "after": place(20 << 20)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
@pytest.mark.parametrize("opt_out", [None, "system"])
def test_cpu_runs_tune_their_process_unless_asked_not_to(opt_out, monkeypatch):
    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc without mallinfo2 (< 2.33)")
    env = dict(__import__("os").environ)
    env.pop(allocator.OPT_OUT_ENV, None)
    if opt_out:
        env[allocator.OPT_OUT_ENV] = opt_out
    done = subprocess.run([sys.executable, "-c", RUN_PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["tuned"] is (opt_out is None)
    if opt_out:
        assert probe["after"]["mmapped"] >= 20 << 20
    else:
        assert probe["after"]["mmapped"] < 20 << 20
