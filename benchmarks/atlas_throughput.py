"""Atlas throughput: units per minute for every channel of a slice of one layer, into a fresh folder.

    python benchmarks/atlas_throughput.py [--layer _blocks.15] [--channels 0:32] [--steps 64]
        [--image-size 160] [--input-size 160] [--crops 4] [--model-batch CROPS] [--repeats 1] [--compile]
        [--json FILE]

Each repeat renders into a new temporary folder, so nothing is resumed. The amp setting is
`phasevis`'s default, amp="auto" (`render.AUTO_AMP`). To compare two
builds, run this script for each in turn (PYTHONPATH pointing at each checkout).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from phasevis_ext import atlas, models
from phasevis_ext.allocator import tune_glibc_malloc
from phasevis_ext.render.settings import resolve_amp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="_blocks.15")
    parser.add_argument("--channels", default="0:32")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--input-size", type=int, default=160, help="side of the crops fed to the model")
    parser.add_argument("--crops", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model-batch", type=int, default=None, help="crops per model pass (default: the library's)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="the model pass through torch.compile, its compile "
                        "time included")
    parser.add_argument("--json", default=None, help="append the figures to this JSON-lines file")
    args = parser.parse_args()

    tune_glibc_malloc()
    amp = resolve_amp("auto", "cpu")
    model = models.load("efficientnet_lite0")
    rows = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = atlas.run(model, out, layers=[args.layer], channels=args.channels, steps=args.steps,
                               image_size=args.image_size, input_size=args.input_size, crops=args.crops,
                               batch_size=args.batch_size, amp=amp,
                               device="cpu", progress=False, model_batch=args.model_batch,
                               **({"compile": True} if args.compile else {}))
            seconds = time.perf_counter() - start
        rows.append({"units": result.rendered, "seconds": round(seconds, 2),
                     "units_per_min": round(result.rendered / seconds * 60, 2)})
        print(f"{result.rendered} units in {seconds:.1f} s: {rows[-1]['units_per_min']:.2f} units/min")
    record = {"layer": args.layer, "channels": args.channels, "steps": args.steps, "image_size": args.image_size,
              "input_size": args.input_size, "crops": args.crops,
              "model_batch": args.model_batch, "amp": str(amp), "threads": torch.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "runs": rows}
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
