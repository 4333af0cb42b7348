"""Whole visualizations: our batched engine, our engine one unit at a time, and Horama 0.3.0,
on the same model, units, steps, image size and crops. Prints steps/s and seconds per unit.

    python benchmarks/end_to_end.py [--units 8] [--steps 16] [--image-size 384] [--crops 6] [--device cpu]

Horama runs as published (its crop sizes, NAdam lr 1.0) with values_range=(-1, 1) fed to the
network without our normalization hook, i.e. the model's own (x - 0.5)/0.5. Install it with
`pip install --no-deps horama==0.3.0 einops`. Our default spectrum is written where Horama looks
for its file, so it does not download.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time

import numpy as np
import torch

from phasevis_ext import models
from phasevis_ext.objectives import logit
from phasevis_ext.render import visualize
from phasevis_ext.spectrum import natural_magnitude

CLASSES = (1, 9, 130, 207, 291, 323, 417, 980, 94, 340, 388, 574, 779, 852, 933, 950)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_ours(model, classes, args, batch_size, amp):
    device = torch.device(args.device)
    start = time.perf_counter()
    visualize(model, [logit(c) for c in classes], steps=args.steps, image_size=args.image_size, crops=args.crops,
              batch_size=batch_size, device=device, amp=amp, progress=False)
    _sync(device)
    return time.perf_counter() - start


@contextlib.contextmanager
def _in_dir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_horama(model, classes, args):
    from horama import maco

    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp, _in_dir(tmp):
        np.save("spectrum_decorrelated.npy", natural_magnitude((512, 512)).numpy())
        start = time.perf_counter()
        for c in classes:
            # Horama's images are in (-1, 1): feed them to the network as already normalized.
            objective = lambda images, c=c: _raw_network(model)(images)[:, c].mean()  # noqa: E731
            maco(objective, total_steps=args.steps, image_size=args.image_size, model_input_size=224,
                 values_range=(-1.0, 1.0), crops_per_iteration=args.crops, device=str(device))
        _sync(device)
        return time.perf_counter() - start


def _raw_network(model):
    """The network without our input normalization (models.load adds it as a forward pre-hook)."""
    def forward(images):
        with models.without_normalization(model):
            return model(images)
    return forward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-horama", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    model = models.load("efficientnet_lite0", device=device)
    classes = CLASSES[: args.units]
    bf16 = torch.bfloat16
    runs = {}
    run_ours(model, classes[:2], argparse.Namespace(**{**vars(args), "steps": 2}), 2, bf16)  # warm-up
    runs["ours, batched (bf16 autocast, channels-last)"] = run_ours(model, classes, args, args.units, bf16)
    runs["ours, batched (fp32)"] = run_ours(model, classes, args, args.units, None)
    runs["ours, one unit at a time (bf16)"] = run_ours(model, classes, args, 1, bf16)
    if not args.skip_horama:
        try:
            runs["Horama 0.3.0 (fp32, as published)"] = run_horama(model, classes, args)
        except ImportError as error:
            print(f"Horama not installed ({error}); skipping it")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{args.units} units (lite0 logits), {args.steps} steps, {args.image_size}², {args.crops} crops; {name}\n")
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
