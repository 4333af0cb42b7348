"""An atlas of a tiny random CNN, run by tests/test_atlas.py as a subprocess, alone or under torchrun:

    python tests/support/atlas_worker.py OUT [--hold-after-units N]
    python -m torch.distributed.run --standalone --nproc-per-node=2 tests/support/atlas_worker.py OUT

Prints one JSON line per rank with that rank's AtlasResult counts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path

# Run as a script: make phasevis_ext and the suite's support modules importable.
sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parents[1])]

import torch  # noqa: E402
from torch import nn  # noqa: E402

from phasevis_ext import atlas  # noqa: E402
from phasevis_ext.render import settings as render_settings  # noqa: E402
from support.forced_amp import forced_auto_amp  # noqa: E402

LAYERS = "conv1,relu2"
LOGITS = "0:5"
OPTIONS = dict(image_size=32, input_size=24, steps=3, crops=2, device="cpu")


def tiny_model() -> nn.Module:
    """The same random weights in every process (fixed seed): 4 + 6 channels, 5 logits."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, padding=1), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 6, 3, stride=2, padding=1), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(6, 5),
    )).eval()


def expected_units() -> list[str]:
    return [f"conv1:c{c}" for c in range(4)] + [f"relu2:c{c}" for c in range(6)] + [f"logit:{i}" for i in range(5)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--hold-after-units", type=int, default=None, metavar="N",
                        help="once N units are in the index, stop inside the next batch, write OUT/holding and "
                             "wait there to be killed: a test kills the run mid-batch without guessing at timings")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the test machines have few cores, shared by the ranks
    render_settings.AUTO_AMP.update(forced_auto_amp() or {})  # the suite's precision, as in the test process
    shard = Path(args.out) / "index" / "rank-00000.jsonl"

    def hold(step, images, scores):
        if shard.exists() and shard.read_text().count("\n") >= args.hold_after_units:
            (Path(args.out) / "holding").write_text(f"step {step}\n")
            while True:
                time.sleep(1)

    callback = hold if args.hold_after_units is not None else None
    result = atlas.run(tiny_model(), args.out, layers=LAYERS, logits=LOGITS, batch_size=args.batch_size,
                       callback=callback, progress=False, **OPTIONS)
    print(json.dumps({"rank": result.rank, "world_size": result.world_size, "units": result.units,
                      "skipped": result.skipped, "rendered": result.rendered}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
