"""What makes the model pass of a visualization step cheaper: forward + backward to the input of
48 lite0 crops (8 units x 6 crops), as `visualize` runs it. Prints a markdown table.

    python benchmarks/model_pass.py [--crops 48] [--repeats 3] [--compile] [--device cpu]

Rows: memory format, bf16 autocast, BatchNorm folding (phasevis_ext.model.folding) and
passes of 12 crops instead of one pass of 48; --compile adds torch.compile of the best eager
setting (its compile time is printed separately).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from phasevis_ext import models
from phasevis_ext.model.folding import fold_batchnorm


def model_pass(model, crops, per_pass, amp, device):
    x = crops.clone().requires_grad_(True)
    for start in range(0, x.shape[0], per_pass):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x[start:start + per_pass])
        logits.float().sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, repeats):
    fn()  # oneDNN/cuDNN pick their kernels on the first call of each shape
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=48)
    parser.add_argument("--per-pass", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    base = models.load("efficientnet_lite0", device=device)
    folded, count = fold_batchnorm(base)
    crops = torch.rand(args.crops, 3, 224, 224, device=device)
    rows = []

    def run(label, model, channels_last, amp, per_pass):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=fmt)
        seconds = timed(lambda: model_pass(model, crops.contiguous(memory_format=fmt), per_pass, amp, device),
                        args.repeats)
        rows.append((label, seconds))
        print(f"{label}: {seconds:.3f} s", flush=True)

    n, p = args.crops, args.per_pass
    run(f"fp32, contiguous, 1 pass of {n}", base, False, False, n)
    run(f"fp32, channels-last, 1 pass of {n}", base, True, False, n)
    run(f"bf16, contiguous, 1 pass of {n}", base, False, True, n)
    run(f"bf16, channels-last, 1 pass of {n}", base, True, True, n)
    run(f"bf16, channels-last, passes of {p}", base, True, True, p)
    run(f"bf16, channels-last, {count} BatchNorms folded, 1 pass of {n}", folded, True, True, n)
    run(f"bf16, channels-last, {count} BatchNorms folded, passes of {p}", folded, True, True, p)
    if args.compile:
        compiled = torch.compile(folded)
        folded.to(memory_format=torch.channels_last)
        start = time.perf_counter()
        model_pass(compiled, crops.contiguous(memory_format=torch.channels_last), p, True, device)
        print(f"torch.compile: first call (compile) {time.perf_counter() - start:.1f} s", flush=True)
        run(f"bf16, channels-last, folded, passes of {p}, torch.compile", compiled, True, True, p)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nlite0 forward + backward to the input, {n} crops of 224², median of {args.repeats}; {where}\n")
    print("| setting | seconds | per crop (ms) | vs fp32 contiguous |")
    print("|---|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.3f} | {1000 * seconds / n:.1f} | {rows[0][1] / seconds:.2f}× |")


if __name__ == "__main__":
    main()
