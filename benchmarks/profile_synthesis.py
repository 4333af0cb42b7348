"""Device time per kernel of the fused MACO synthesis, forward + backward (torch.profiler), next to
the bare FFTs: where the time above the cuFFT floor goes.

    python benchmarks/profile_synthesis.py [--cases 224x1 1024x8] [--device cuda]
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

import phasevis_ext as pv

parser = argparse.ArgumentParser()
parser.add_argument("--cases", nargs="+", default=["224x1", "1024x8"], help="SIZExBATCH")
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--repeats", type=int, default=10)
args = parser.parse_args()
device = torch.device(args.device)
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
for case in args.cases:
    size, batch = (int(v) for v in case.split("x"))
    magnitude = pv.fourier_scale((size, size), device=device).expand(3, -1, -1).contiguous()
    phase = torch.randn(batch, 3, size, size // 2 + 1, device=device, requires_grad=True)
    grad = torch.rand(batch, 3, size, size, device=device)
    k = pv.default_color_matrix(3, device=device)

    def step():
        out = pv.ops.maco_synthesis_op(phase, magnitude, size, size, 0.0, 1.0, k, 1e-4)
        torch.autograd.grad(out, phase, grad)

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        for _ in range(args.repeats):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"\n## {size}² B={batch}: {args.repeats} forward+backward calls\n")
    print(prof.key_averages().table(sort_by=key, row_limit=20, max_name_column_width=70))
