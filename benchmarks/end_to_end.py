"""Whole visualizations: our batched engine, our engine one unit at a time, and Horama 0.3.0,
on the same model, units, steps, image size and crops. Prints steps/s and seconds per unit.

    python benchmarks/end_to_end.py [--units 8] [--steps 16] [--image-size 384] [--crops 6] [--device cpu]

Horama runs as published (its crop sizes, NAdam lr 1.0), see horama_runner.py. Install it with
`pip install --no-deps horama==0.3.0 einops`.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from horama_runner import horama_class_images

from phasevis_ext import models
from phasevis_ext.allocator import tune_glibc_malloc
from phasevis_ext.render.objectives import logit
from phasevis_ext.render.visualize import visualize

# (amp, channels_last) settings of our engine to time, by name.
CONFIGS = {"bf16-cl": (torch.bfloat16, True), "fp32-cl": (None, True), "bf16-contiguous": (torch.bfloat16, False),
           "fp32-contiguous": (None, False)}
CLASSES = (1, 9, 130, 207, 291, 323, 417, 980, 94, 340, 388, 574, 779, 852, 933, 950)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _warmup(args):
    return argparse.Namespace(**{**vars(args), "steps": 2})


def run_ours(model, classes, args, batch_size, amp, channels_last=True, warmup=False):
    if warmup:
        run_ours(model, classes[:batch_size], _warmup(args), batch_size, amp, channels_last)
    device = torch.device(args.device)
    start = time.perf_counter()
    visualize(model, [logit(c) for c in classes], steps=args.steps, image_size=args.image_size, crops=args.crops,
              batch_size=batch_size, device=device, amp=amp, channels_last=channels_last, progress=False)
    _sync(device)
    return time.perf_counter() - start


def run_horama(model, classes, args):
    device = torch.device(args.device)
    start = time.perf_counter()
    horama_class_images(model, classes, steps=args.steps, image_size=args.image_size, crops=args.crops, device=device)
    _sync(device)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-horama", action="store_true")
    parser.add_argument("--one-at-a-time", action="store_true", help="also run our engine with batch_size=1")
    parser.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=list(CONFIGS),
                        help="autocast and memory format of our engine")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="apply phasevis_ext.allocator.tune_glibc_malloc() first, as `phasevis` does (all runs)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.tune_malloc:
        tune_glibc_malloc()
    device = torch.device(args.device)
    model = models.load("efficientnet_lite0", device=device)
    classes = CLASSES[: args.units]
    runs = {}
    for amp, channels_last in (CONFIGS[name] for name in args.configs):
        label = f"{'bf16 autocast' if amp else 'fp32'}, {'channels-last' if channels_last else 'contiguous'}"
        # Each run is warmed up at its own batch shapes first: oneDNN builds its kernels per shape
        # on the first call (seconds on this CPU), a cost a long job pays once.
        runs[f"ours, batched ({label})"] = run_ours(model, classes, args, args.units, amp, channels_last,
                                                     warmup=True)
        if args.one_at_a_time:
            runs[f"ours, one unit at a time ({label})"] = run_ours(model, classes, args, 1, amp, channels_last,
                                                                   warmup=True)
    if not args.skip_horama:
        try:
            run_horama(model, classes[:1], _warmup(args))
            runs["Horama 0.3.0 (fp32, as published)"] = run_horama(model, classes, args)
        except ImportError as error:
            print(f"Horama not installed ({error}); skipping it")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    tuned = "; glibc malloc tuned (--tune-malloc)" if args.tune_malloc else ""
    print(f"\n{args.units} units (lite0 logits), {args.steps} steps, {args.image_size}², {args.crops} crops; {name}{tuned}\n")
    print("| run | unit-steps/s | s per unit (this budget) | vs Horama |")
    print("|---|---|---|---|")
    horama = runs.get("Horama 0.3.0 (fp32, as published)")
    rows = []
    for label, seconds in runs.items():
        per_unit = seconds / args.units
        ratio = f"{horama / seconds:.2f}× faster" if horama else "–"
        print(f"| {label} | {args.units * args.steps / seconds:.2f} | {per_unit:.2f} | {ratio} |")
        rows.append({"run": label, "seconds": seconds, "seconds_per_unit": per_unit})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
