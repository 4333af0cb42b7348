"""The batch shape of the model pass on this CPU: lite0's visualize step at the library's defaults
(8 class logits, 3 crops, 256², amp="auto", the library's preparation) with `model_batch` crops per model
pass and channels-last on and off. Prints a markdown table.

    python benchmarks/batch_shape.py [--steps 8] [--rounds 2] [--model-batches 3 6 12 24]

The settings run in turn, round after round, each after a 2-step warm-up run outside the timing;
each figure is the median over rounds of the seconds per step. The library's defaults on a CPU are
two passes of 12 crops here (a budget of 16 crops of 224², `render.settings.cpu_model_batch`) and
channels-last (`RenderSettings.model_batch`, `channels_last`).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from amp_choice import CLASSES, cpu_model

from phasevis_ext import models
from phasevis_ext.allocator import tune_glibc_malloc
from phasevis_ext.render.objectives import logit
from phasevis_ext.render.visualize import visualize


def step_seconds(model, steps: int, model_batch: int, channels_last: bool) -> float:
    start = time.perf_counter()
    visualize(model, [logit(c) for c in CLASSES], steps=steps, model_batch=model_batch, channels_last=channels_last,
              device="cpu", progress=False)
    return (time.perf_counter() - start) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-batches", type=int, nargs="+", default=[3, 6, 12, 24])
    args = parser.parse_args(argv)
    tune_glibc_malloc()
    model = models.load("efficientnet_lite0")
    settings = [(batch, cl) for cl in (True, False) for batch in args.model_batches]
    for batch, cl in settings:
        step_seconds(model, 2, batch, cl)
    times = {s: [] for s in settings}
    for round_ in range(args.rounds):
        for batch, cl in settings:
            times[(batch, cl)].append(step_seconds(model, args.steps, batch, cl))
            print(f"round {round_ + 1}, {batch} crops a pass, channels-last {cl}: {times[(batch, cl)][-1]:.3f} s/step",
                  flush=True)
    medians = {s: statistics.median(v) for s, v in times.items()}
    base = medians.get((12, True), min(medians.values()))
    print(f"\nlite0 visualize step at the defaults, 8 units, {args.steps} steps a run, median of {args.rounds} rounds "
          f"run in turn; {cpu_model()}; torch {torch.__version__}\n")
    print("| crops a model pass | memory format | s per step | vs the defaults (12, channels-last) |")
    print("|---|---|---|---|")
    for (batch, cl), value in medians.items():
        print(f"| {batch} | {'channels-last' if cl else 'contiguous'} | {value:.3f} | {base / value:.2f}× |")


if __name__ == "__main__":
    main()
