"""The whole visualization step, compile off and on: image-steps/s of `visualize` at the
library's defaults, and units per hour of an atlas at the defaults, from which an atlas of 1,000
channels' wall time follows. Prints a markdown table.

    python benchmarks/whole_step.py [--device cuda] [--units 32] [--steps 32] [--atlas-channels 0:32]
        [--atlas-steps N] [--compile off on] [--json FILE]

Each setting runs once to warm up (kernel choice; with compile on, the compile), then is timed.
The compile's own seconds are the warm-up's extra over a timed run, printed beside. An atlas
prepares its model once for all its batches, so its compile is paid once per run.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from phasevis_ext import atlas, models
from phasevis_ext.render.visualize import visualize


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layer", default="_blocks.15")
    parser.add_argument("--units", type=int, default=32, help="channels of --layer for the visualize rows")
    parser.add_argument("--steps", type=int, default=32, help="steps of the visualize rows")
    parser.add_argument("--atlas-channels", default="0:32", help="the atlas rows' channels (default steps)")
    parser.add_argument("--atlas-steps", type=int, default=None, help="(default: the library's)")
    parser.add_argument("--compile", nargs="+", default=["off", "on"], choices=("off", "on"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    model = models.load("efficientnet_lite0", device=device)
    targets = f"{args.layer}:0-{args.units - 1}"
    rows = []
    for mode in args.compile:
        on = mode == "on"

        def step_run():
            visualize(model, targets, steps=args.steps, compile=on, device=device, progress=False)

        first = timed(step_run, device)
        seconds = timed(step_run, device)

        def atlas_run():
            with tempfile.TemporaryDirectory() as out:
                steps = {} if args.atlas_steps is None else {"steps": args.atlas_steps}
                result = atlas.run(model, out, layers=[args.layer], channels=args.atlas_channels, compile=on,
                                   device=device, progress=False, **steps)
                atlas_run.rendered = result.rendered

        atlas_seconds = timed(atlas_run, device)
        per_hour = atlas_run.rendered / atlas_seconds * 3600
        rows.append({"compile": mode, "image_steps_per_s": args.units * args.steps / seconds,
                     "compile_s": max(0.0, first - seconds), "atlas_units_per_hour": per_hour,
                     "atlas_1000_channels_h": 1000 / per_hour, "atlas_units": atlas_run.rendered})
        print(json.dumps(rows[-1]), flush=True)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nlite0, {where}, torch {torch.__version__}: visualize of {args.units} channels of {args.layer} "
          f"for {args.steps} steps; atlas of channels {args.atlas_channels}, "
          f"{args.atlas_steps or 'the default'} steps\n")
    print("| compile | image-steps/s | compile, s | atlas units/hour | 1,000 channels, hours |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['compile']} | {r['image_steps_per_s']:.1f} | {r['compile_s']:.0f} | "
              f"{r['atlas_units_per_hour']:.0f} | {r['atlas_1000_channels_h']:.2f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device": where, "rows": rows, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
