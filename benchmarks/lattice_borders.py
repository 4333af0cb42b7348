"""The lattice, the borders and the judge of another family, on the display images of class logits
at the library's defaults. Prints a markdown table and writes contact sheets.

    python benchmarks/lattice_borders.py [--set held-out|tuning] [--spectrum default|FILE]
        [--models efficientnet_lite0 mobilenet_v2] [--steps 128] [--seeds 0 1 2] [--phase-scale S]
        [--out lattice-out]

For each model that makes images, 8 class logits (quality_per_second's sets: "held-out" was
never used to choose an option) are rendered with MACO at the defaults, once per seed, and shown
as the gallery shows them (`export.display_stretch`); the figures pool every seed's images (8
classes are few: one class more or less in a top-5 moves a rate by 12%). Per image set:
- lattice: the luminance power on the frequency axes over the ring at the same radius
  (`diagnostics.lattice`) at periods of 2, 4 and 8 px of the model's input, as the model sees the
  whole image. The photographs shipped with scikit-image, scikit-learn and matplotlib, centre-
  cropped square at their own resolution, are the reference.
- border: the share of near-saturated pixels (a channel within 2/255 of 0 or 1) in the outer 8%
  band of the image over that share in the rest.
- transfer: the target's rank in the top-5 (crop-averaged probabilities, 16 random crops over
  50-100% of the side) of the other models: EfficientNet-Lite2 (the lite0 images' own family)
  and MobileNetV2, the other family, for each direction.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from amp_choice import cpu_model
from recognition import recognition
from sheets import save_sheet, thumbnails

from phasevis_ext import models
from phasevis_ext.io.export import display_stretch
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES
from phasevis_ext.param.diagnostics import lattice
from phasevis_ext.param.parameterizations import PHASE_SCALE
from phasevis_ext.render.crops import CROP_CENTERS
from phasevis_ext.render.settings import RenderSettings
from phasevis_ext.render.visualize import visualize

BORDER_BAND = 0.08
SATURATED = 2 / 255
JUDGES = ("efficientnet_lite2", "mobilenet_v2", "efficientnet_lite0")


def class_sets() -> dict[str, list[int]]:
    from fidelity import pick_classes

    classes = pick_classes(16)
    return {"tuning": classes[0::2], "held-out": classes[1::2]}


def border_ratio(images: torch.Tensor, band: float = BORDER_BAND) -> float:
    """Near-saturated share in the outer band over the share in the rest, pooled over images."""
    saturated = ((images <= SATURATED) | (images >= 1 - SATURATED)).any(1).float()  # (N, H, W)
    height, width = saturated.shape[-2:]
    by, bx = max(1, round(band * height)), max(1, round(band * width))
    inner = torch.zeros_like(saturated[0], dtype=torch.bool)
    inner[by:height - by, bx:width - bx] = True
    outside, inside = saturated[:, ~inner].mean(), saturated[:, inner].mean()
    return float(outside / inside.clamp_min(1e-6))


def photographs() -> list[torch.Tensor]:
    """The shipped photos, centre-cropped square, at their own resolution."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from make_default_spectrum import load_photos

    out = []
    for _, rgb in load_photos():
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()
        side = min(image.shape[-2:])
        top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
        out.append(image[:, top:top + side, left:left + side].clamp(0, 1))
    return out


def _option(text: str) -> tuple[str, object]:
    import ast

    name, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--option {text!r}: expected NAME=VALUE")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="held-out", choices=("held-out", "tuning"))
    parser.add_argument("--spectrum", default=None)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "mobilenet_v2"])
    parser.add_argument("--steps", type=int, default=RenderSettings().steps)
    parser.add_argument("--crop-centers", default=RenderSettings().crop_centers, choices=CROP_CENTERS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--phase-scale", type=float, default=PHASE_SCALE, help="1 is MACO's and Horama's")
    parser.add_argument("--lr", type=float, default=None, help="(default: the library's)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="another render setting, VALUE a Python literal (e.g. lr_schedule='cosine')")
    parser.add_argument("--out", type=Path, default=Path("lattice-out"))
    args = parser.parse_args(argv)
    options = dict(_option(text) for text in args.option)
    args.out.mkdir(parents=True, exist_ok=True)
    classes = class_sets()[args.set]
    judges = {name: models.load(name) for name in JUDGES}
    rows, record = [], {"classes": classes, "seeds": args.seeds, "spectrum": args.spectrum or "default",
                        "steps": args.steps,
                        "crop_centers": args.crop_centers, "phase_scale": args.phase_scale, "options": options,
                        "cpu": cpu_model(), "runs": {}}
    reference = photographs()
    rows.append(("photographs", lattice(reference, input_size=224),
                 sum(border_ratio(p[None]) for p in reference) / len(reference), {}, None))
    for maker in args.models:
        start, shown = time.perf_counter(), []
        for seed in args.seeds:
            result = visualize(judges.get(maker) or models.load(maker), [f"logit:{c}" for c in classes],
                               steps=args.steps, spectrum=args.spectrum, crop_centers=args.crop_centers, seed=seed,
                               param_kwargs={"phase_scale": args.phase_scale}, lr=args.lr, progress=False,
                               **options)
            shown += [display_stretch(image) for image in result.images]
        seconds = (time.perf_counter() - start) / len(shown)
        shown = torch.stack(shown)
        targets = classes * len(args.seeds)
        size = models.default_input_size(maker)
        with torch.no_grad():
            transfer = {judge: recognition(judges[judge], shown, targets, size=models.default_input_size(judge))
                        for judge in JUDGES if judge != maker}
        rows.append((maker, lattice(shown, input_size=size), border_ratio(shown), transfer, seconds))
        save_sheet(thumbnails(shown[:len(classes)]), [IMAGENET_CLASSES[c] for c in classes], args.out / f"{maker}.jpg",
                   cols=8)
        torch.save(shown.half(), args.out / f"{maker}.pt")  # for other measures of the same images
        record["runs"][maker] = {"lattice": rows[-1][1], "border": rows[-1][2], "transfer": transfer,
                                 "seconds_per_unit": seconds}
    (args.out / "lattice_borders.json").write_text(json.dumps(record, indent=1))
    print(f"\n{args.set} classes {classes}, seeds {args.seeds}, MACO at the defaults ({args.steps} steps), spectrum "
          f"{record['spectrum']}, phase scale {args.phase_scale:.3f}, {args.crop_centers} crop centres"
          f"{''.join(f', {k}={v!r}' for k, v in options.items())}; {record['cpu']}\n")
    print("| images | lattice 2 / 4 / 8 px | border | top-5: lite2 | top-5: MobileNetV2 | top-5: lite0 | s per unit |")
    print("|---|---|---|---|---|---|---|")
    for name, grid, border, transfer, seconds in rows:
        cells = [f"{transfer[j]['crops_top5']:.0%} (p {transfer[j]['crops_prob']:.2f})" if j in transfer else ""
                 for j in JUDGES]
        print(f"| {name} | {grid[2]:.2f} / {grid[4]:.2f} / {grid[8]:.2f} | {border:.2f} | {' | '.join(cells)} | "
              f"{'' if seconds is None else f'{seconds:.1f}'} |")


if __name__ == "__main__":
    main()
