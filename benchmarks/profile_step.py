"""Where a visualize step spends its time: torch.profiler over a few steps, top ops by self time.

    python benchmarks/profile_step.py [--device cuda] [--units 8] [--amp none|bfloat16] [--channels-last]
    python benchmarks/profile_step.py --by-op [--steps 12]      # the library's defaults, op by op

On a CPU, torch.profiler's self times of activation-sized ops can come out several times their
wall time (lite0's 58 MB ReLU6 backward: 61 ms profiled against 6 ms timed on its own). --by-op
times each ATen op's wall time instead (a TorchDispatchMode around the steps), at the library's
defaults, and prints the share of each op over the steps, the model's preparation included.
"""
import argparse
import collections
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from phasevis_ext import models
from phasevis_ext.render.visualize import visualize

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--units", type=int, default=8)
parser.add_argument("--image-size", type=int, default=384)
parser.add_argument("--amp", default="none", choices=("none", "bfloat16"))
parser.add_argument("--channels-last", action="store_true")
parser.add_argument("--by-op", action="store_true")
parser.add_argument("--steps", type=int, default=12, help="steps timed with --by-op")
args = parser.parse_args()
device = torch.device(args.device)
model = models.load("efficientnet_lite0", device=device)
targets = [f"logit:{c}" for c in range(1, args.units + 1)]


class OpTimer(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seconds = collections.Counter()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds[str(func)] += time.perf_counter() - start
        self.calls[str(func)] += 1
        return out


if args.by_op:
    visualize(model, targets, steps=2, device=device, progress=False)
    start = time.perf_counter()
    with OpTimer() as timer:
        visualize(model, targets, steps=args.steps, device=device, progress=False)
    wall = time.perf_counter() - start
    total = sum(timer.seconds.values())
    print(f"{args.steps} steps in {wall:.2f} s, {total:.2f} s inside ATen ops\n")
    print("| op | ms per step | share of op time | calls per step |\n|---|---|---|---|")
    for op, seconds in timer.seconds.most_common(15):
        print(f"| {op} | {1000 * seconds / args.steps:.1f} | {100 * seconds / total:.1f}% | "
              f"{timer.calls[op] / args.steps:.1f} |")
    raise SystemExit
kwargs = dict(image_size=args.image_size, crops=6, device=device, progress=False, channels_last=args.channels_last,
              amp=torch.bfloat16 if args.amp == "bfloat16" else None)
visualize(model, targets, steps=3, **kwargs)
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
with profile(activities=activities) as prof:
    visualize(model, targets, steps=5, **kwargs)
key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))
