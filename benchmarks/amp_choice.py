"""What `amp="auto"` should pick on this CPU: lite0's visualize step at the library's defaults
(8 class logits, 3 crops, 256², the default model passes), fp32 against bf16
autocast, with channels-last on and off. Prints a markdown table.

    python benchmarks/amp_choice.py [--steps 8] [--rounds 3] [--units 8]

The four settings run in turn, round after round, so that a slow spell of the machine falls on
all of them; each figure is the median over rounds of the seconds per step (a 2-step warm-up run
of each setting comes first, outside the timing). bf16 is emulated where the CPU has no native
bf16 and is then expected to lose.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import time

import torch

from phasevis_ext import models
from phasevis_ext.allocator import tune_glibc_malloc
from phasevis_ext.render.objectives import logit
from phasevis_ext.render.visualize import visualize

CLASSES = (1, 9, 130, 207, 291, 323, 417, 980)
SETTINGS = {"fp32, channels-last": ("none", True), "fp32, contiguous": ("none", False),
            "bf16, channels-last": ("bfloat16", True), "bf16, contiguous": ("bfloat16", False)}


def cpu_model() -> str:
    """lscpu's model name, and whether oneDNN has native bf16 here."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = platform.processor() or "unknown CPU"
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return f"{name}, {torch.get_num_threads()} threads, native bf16: {'yes' if native else 'no'}"


def step_seconds(model, units: int, steps: int, amp: str, channels_last: bool) -> float:
    start = time.perf_counter()
    visualize(model, [logit(c) for c in CLASSES[:units]], steps=steps, amp=amp, channels_last=channels_last,
              device="cpu", progress=False)
    return (time.perf_counter() - start) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--units", type=int, default=8, choices=range(1, len(CLASSES) + 1), metavar="N")
    args = parser.parse_args(argv)
    tune_glibc_malloc()
    model = models.load("efficientnet_lite0")
    for amp, channels_last in SETTINGS.values():
        step_seconds(model, args.units, 2, amp, channels_last)
    times = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        for name, (amp, channels_last) in SETTINGS.items():
            times[name].append(step_seconds(model, args.units, args.steps, amp, channels_last))
            print(f"round {round_ + 1}, {name}: {times[name][-1]:.3f} s/step", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["fp32, channels-last"]
    print(f"\nlite0 visualize step at the defaults, {args.units} units, {args.steps} steps a run, median of "
          f"{args.rounds} rounds run in turn; {cpu_model()}; torch {torch.__version__}\n")
    print("| setting | s per step | range over rounds | vs fp32 channels-last |")
    print("|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {medians[name]:.3f} | {min(values):.3f}–{max(values):.3f} | {base / medians[name]:.2f}× |")


if __name__ == "__main__":
    main()
