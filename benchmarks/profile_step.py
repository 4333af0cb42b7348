"""Where a visualize step spends its time: torch.profiler over a few steps, top ops by self time.

    python benchmarks/profile_step.py [--device cuda] [--units 8] [--amp none|bfloat16] [--channels-last]
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from phasevis_ext import models
from phasevis_ext.render.visualize import visualize

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--units", type=int, default=8)
parser.add_argument("--image-size", type=int, default=384)
parser.add_argument("--amp", default="none", choices=("none", "bfloat16"))
parser.add_argument("--channels-last", action="store_true")
args = parser.parse_args()
device = torch.device(args.device)
model = models.load("efficientnet_lite0", device=device)
kwargs = dict(image_size=args.image_size, crops=6, device=device, progress=False, channels_last=args.channels_last,
              amp=torch.bfloat16 if args.amp == "bfloat16" else None)
targets = [f"logit:{c}" for c in range(1, args.units + 1)]
visualize(model, targets, steps=3, **kwargs)
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
with profile(activities=activities) as prof:
    visualize(model, targets, steps=5, **kwargs)
key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))
