"""The demo's job (8 class logits, the library's defaults) with and without the pads fold, run in
turn, 2 rounds, median; a second argument runs the folded model first in each round.

    python benchmarks/pads_ab.py [STEPS] [reversed]
"""
import statistics, sys, time
import torch
from phasevis_ext import models, visualize
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 32
model = models.load("efficientnet_lite0")
units = ["logit:1,9,130,207,291,323,417,980"]
visualize(model, units, steps=2, progress=False)  # warm-up
times = {True: [], False: []}
for _ in range(2):
    for fold in ((False, True) if len(sys.argv) < 3 else (True, False)):
        t = time.perf_counter(); visualize(model, units, steps=steps, fold_padding=fold, progress=False)
        times[fold].append(time.perf_counter() - t)
off, on = statistics.median(times[False]), statistics.median(times[True])
print(f"| demo job, {steps} steps | pads kept {off:.1f} s | pads folded {on:.1f} s | {off / on:.2f}x |", flush=True)
