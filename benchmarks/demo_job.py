"""The demo's job (8 class logits of lite0 at the library's defaults) timed once after a 2-step
warm-up. To compare two builds, run it for each in turn, round after round:

    for r in 1 2 3; do for tree in OLD NEW; do PYTHONPATH=$tree python benchmarks/demo_job.py $tree; done; done

    python benchmarks/demo_job.py [LABEL] [--amp auto|none|bfloat16] [--compile]

--amp overrides the library's default precision (at commit da35742, "auto" picked bf16
autocast on CPUs with native bf16), so that two builds can also be compared at one
precision.
"""
import argparse
import time

import phasevis_ext as pv
from phasevis_ext import models

parser = argparse.ArgumentParser()
parser.add_argument("label", nargs="?", default="")
parser.add_argument("--amp", default="auto")
parser.add_argument("--compile", action="store_true", help="the model pass through torch.compile (its compile "
                    "happens in the warm-up, and is timed there)")
args = parser.parse_args()
extra = {"compile": True} if args.compile else {}
assert pv.extension_available(), "the extension is not built in this tree"
model = models.load("efficientnet_lite0")
units = ["logit:1,9,130,207,291,323,417,980"]
start = time.perf_counter()
pv.visualize(model, units, steps=2, progress=False, amp=args.amp, **extra)
warm_up = time.perf_counter() - start
start = time.perf_counter()
pv.visualize(model, units, progress=False, amp=args.amp, **extra)
print(f"{args.label} amp={args.amp}{' compile' if args.compile else ''} {time.perf_counter() - start:.1f} s "
      f"(warm-up {warm_up:.1f} s)", flush=True)
