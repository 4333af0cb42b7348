"""Are class visualizations recognized as their class? By the model that made them (averaged over
random crops, and on the whole image) and by models that did not (transfer).

    python benchmarks/recognition.py [--classes 10] [--steps 256] [--image-size 384] [--param maco] [--out DIR]

Writes the images and a markdown table: top-1 and top-5 rates by lite0 over random crops and on
the whole image, and by lite2 (transfer).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from horama_runner import horama_class_images

from phasevis_ext import models
from phasevis_ext.io import export
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES
from phasevis_ext.render.objectives import logit
from phasevis_ext.render.visualize import visualize

# The models that make images, and who judges them: their own family (Lite2 for Lite0) and another
# family (MobileNetV2 for the Lite models, the Lites for MobileNetV2).
JUDGES_OF = {"efficientnet_lite0": ("efficientnet_lite2", "mobilenet_v2"),
             "mobilenet_v2": ("efficientnet_lite0", "efficientnet_lite2")}

# Spread over ImageNet: animals, objects, scenes, foods.
CLASSES = (1, 9, 22, 76, 94, 130, 207, 291, 323, 340, 388, 417, 440, 511, 574, 717, 779, 852, 933, 980)


def random_crop_batch(images: torch.Tensor, crops: int, size: int, seed: int = 0) -> torch.Tensor:
    """(N*crops, 3, size, size): square crops covering 50-100% of the side, resized with antialiasing."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    out = []
    for i in range(n):
        for _ in range(crops):
            side = int(min(h, w) * (0.5 + 0.5 * torch.rand((), generator=g).item()))
            y = int(torch.randint(0, h - side + 1, (), generator=g))
            x = int(torch.randint(0, w - side + 1, (), generator=g))
            crop = images[i : i + 1, :, y : y + side, x : x + side]
            out.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(out)


@torch.no_grad()
def recognition(model, images: torch.Tensor, classes, *, crops: int = 16, size: int = 224) -> dict:
    """Rates (over classes) of the target in the top-1 / top-5, for crop-averaged probabilities and the whole
    image, and the mean crop-averaged probability of the target (`crops_prob`), which moves before the rates do."""
    images = images.to(next(model.parameters()).device)
    targets = torch.tensor(classes, device=images.device)
    whole = model(F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    probs = model(random_crop_batch(images, crops, size)).softmax(-1).view(len(classes), crops, -1).mean(1)
    out = {}
    for name, scores in (("crops", probs), ("whole", whole)):
        top5 = scores.topk(5, dim=-1).indices
        out[f"{name}_top1"] = (top5[:, 0] == targets).float().mean().item()
        out[f"{name}_top5"] = (top5 == targets[:, None]).any(-1).float().mean().item()
    out["crops_prob"] = probs.gather(1, targets[:, None]).mean().item()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--param", default="maco")
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--judges", nargs="+", default=["efficientnet_lite0", "efficientnet_lite2"])
    parser.add_argument("--amp", default="auto", choices=("auto", "none", "bfloat16"),
                        help="as the library: auto is the precision measured fastest for the CPU kind (render/settings.py AUTO_AMP)")
    parser.add_argument("--out", default="recognition-out")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--horama", action="store_true", help="also run Horama 0.3.0 on the same budget")
    args = parser.parse_args(argv)
    classes = CLASSES[: args.classes]
    device = torch.device(args.device)
    model = models.load("efficientnet_lite0", device=device)
    start = time.perf_counter()
    result = visualize(model, [logit(c) for c in classes], param=args.param, steps=args.steps,
                       image_size=args.image_size, crops=args.crops, device=device,
                       amp=args.amp, progress=True)
    runs = {f"ours ({args.param})": (result.images, time.perf_counter() - start)}
    export.write_gallery(result, args.out)
    if args.horama:
        start = time.perf_counter()
        images = horama_class_images(model, classes, steps=args.steps, image_size=args.image_size, crops=args.crops,
                                     device=device)
        runs["Horama 0.3.0"] = (images, time.perf_counter() - start)
        export.contact_sheet(images, [f"{c}" for c in classes], Path(args.out) / "horama_contact_sheet.png")
    judges = {j: (model if j == "efficientnet_lite0" else models.load(j, device=device)) for j in args.judges}
    rows = {}
    print(f"\n{len(classes)} lite0 class logits, {args.steps} steps, {args.image_size}², {args.crops} crops\n")
    print("| method | judge | top-1 (crops) | top-5 (crops) | top-1 (whole) | top-5 (whole) | seconds |")
    print("|---|---|---|---|---|---|---|")
    for method, (images, seconds) in runs.items():
        for judge, judge_model in judges.items():
            r = recognition(judge_model, images.to(device), classes, size=models.default_input_size(judge))
            rows[f"{method} / {judge}"] = {**r, "seconds": seconds}
            print(f"| {method} | {judge} | {r['crops_top1']:.0%} | {r['crops_top5']:.0%} | {r['whole_top1']:.0%} "
                  f"| {r['whole_top5']:.0%} | {seconds:.0f} |")
    names = [IMAGENET_CLASSES[c] for c in classes]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with open(Path(args.out) / "recognition.json", "w") as f:
        json.dump({"args": vars(args), "classes": list(classes), "names": names, "rates": rows}, f, indent=1)


if __name__ == "__main__":
    main()
