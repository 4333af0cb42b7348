"""How soon a run that cannot fit its memory budget fails: seconds from the call to the
MemoryBudgetError, for EfficientNet-Lite0 at the library's defaults and a tiny CNN, with a
budget just under what one unit needs. Prints a markdown table.

    python benchmarks/budget_check.py [--repeats 3]

The check runs before any step, so the figure is that of loading the options and planning the
batch, not of the run asked for (10^6 steps).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from phasevis_ext import models
from phasevis_ext.model.memory import MemoryBudgetError, unit_bytes
from phasevis_ext.render.settings import RenderSettings
from phasevis_ext.render.visualize import visualize


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10)).eval()


def seconds_to_fail(model, input_size: int, image_size: int, crops: int) -> float:
    need = unit_bytes(model, input_size=input_size, crops=crops, image_size=(image_size, image_size),
                      device=torch.device("cpu"), amp=None)
    start = time.perf_counter()
    try:
        visualize(model, "logit:1", steps=10**6, image_size=image_size, input_size=input_size, crops=crops,
                  memory_budget=need - 1, amp="none", progress=False)
    except MemoryBudgetError:
        return time.perf_counter() - start
    raise AssertionError("the run fitted a budget below one unit's estimate")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cases = {"EfficientNet-Lite0, defaults": (models.load("efficientnet_lite0"), 224, RenderSettings().image_size[0],
                                              RenderSettings().crops),
             "tiny CNN, 32², 2 crops": (tiny_cnn(), 32, 32, 2)}
    print("| model | seconds to MemoryBudgetError (median, range) |")
    print("|---|---|")
    for name, case in cases.items():
        times = [seconds_to_fail(*case) for _ in range(args.repeats)]
        print(f"| {name} | {statistics.median(times):.2f} ({min(times):.2f}–{max(times):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
