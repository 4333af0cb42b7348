"""MACO (ours, defaults) against the classic method as its users run it: torch-lucent 0.1.8's
render_vis with its defaults (see lucent_runner.py), on the same units of EfficientNet-Lite0.

    python benchmarks/against_lucent.py [--classes 16] [--channels 2] [--layers _blocks.2 _blocks.8 _blocks.15]
        [--steps 256] [--lucent-steps 512] [--out docs/lucent] [--quick]

Units: K class logits and, per layer, channels spread over it. Reported per method: seconds per
unit; recognition of the class images by lite0 (which made them) and by lite1 and lite2 (which did
not), on crops and on the whole image; the luminance power spectrum slope and high-frequency
share against the photos behind the default spectrum; each unit's activation on its final image
(lite0, the whole image resized to 224², fp32, the same measure for both tools). Our images are
judged raw and as shown (the percentile stretch of `export.display_stretch`), to check that the
stretch changes nothing the judges see. Without lucent installed its part is skipped, with the
install command.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fidelity import high_frequency_fraction, image_spectrum, machine, natural_spectrum, pct, pick_classes, table
from lucent_runner import DEFAULT_STEPS, IMAGE_SIZE, logits_layer, lucent_images, lucent_missing
from recognition import recognition

from phasevis_ext import export, models
from phasevis_ext.activations import LOGITS, as_bchw, capture
from phasevis_ext.imagenet_classes import IMAGENET_CLASSES
from phasevis_ext.objectives import channel, logit
from phasevis_ext.render import visualize

JUDGES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
LAYERS = ("_blocks.2", "_blocks.8", "_blocks.15")


@torch.no_grad()
def activations(model, images: torch.Tensor, units: list[tuple[str, int]]) -> list[float]:
    """Each unit's mean activation on its own image, the whole image resized to 224²."""
    x = F.interpolate(images.float(), size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    layers = sorted({layer for layer, _ in units if layer != LOGITS})
    with capture(model, layers, need_logits=True) as cap:
        acts = cap.run(x)
    return [as_bchw(acts[layer])[i, index].mean().item() for i, (layer, index) in enumerate(units)]


def judge_all(judges: dict, images: torch.Tensor, classes, crops: int) -> dict:
    return {name: recognition(judge, images, classes, crops=crops, size=models.default_input_size(name))
            for name, judge in judges.items()}


def run(args, command: str) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = models.load("efficientnet_lite0")
    classes = pick_classes(args.classes)
    widths = {info.name: info.shape[1] for info in models.list_layers(model)}
    channels = [(layer, c) for layer in args.layers
                for c in np.linspace(0, widths[layer] - 1, args.channels).round().astype(int).tolist()]
    units = [(LOGITS, c) for c in classes] + channels
    objectives = [logit(c) for c in classes] + [channel(layer, c) for layer, c in channels]
    data = {"command": command, "machine": machine(torch.device("cpu")), "classes": classes, "channels": channels,
            "methods": {}}
    images = {}

    visualize(model, objectives[:1], steps=2, progress=False)  # warm-up: one-time costs stay out of the timings
    start = time.perf_counter()
    result = visualize(model, objectives, steps=args.steps, progress=False)
    images["ours (MACO, defaults)"] = result.images
    data["methods"]["ours (MACO, defaults)"] = {
        "seconds_per_unit": (time.perf_counter() - start) / len(units), "steps": args.steps,
        "settings": {k: result.settings[k] for k in ("image_size", "crops", "amp", "param", "lr")}}

    missing = lucent_missing()
    if missing:
        data["lucent"] = missing
        print(f"torch-lucent: {missing}", file=sys.stderr)
    else:
        lucent_units = [(logits_layer(model), c) for c in classes] + channels
        x, seconds = lucent_images(model, lucent_units, steps=args.lucent_steps, image_size=IMAGE_SIZE)
        images["torch-lucent 0.1.8 (defaults)"] = x
        data["methods"]["torch-lucent 0.1.8 (defaults)"] = {
            "seconds_per_unit": float(np.mean(seconds)), "steps": args.lucent_steps,
            "settings": {"image_size": IMAGE_SIZE, "optimizer": "Adam lr 0.05", "param": "fft, decorrelated"}}

    judges = {j: model if j == "efficientnet_lite0" else models.load(j) for j in JUDGES}
    natural, photos = natural_spectrum(IMAGE_SIZE)
    data["photos"] = {"slope": float(natural.slope[0]), "hf": high_frequency_fraction(natural), "names": photos}
    k = len(classes)
    for name, x in images.items():
        spectrum = image_spectrum(x[:k])
        entry = data["methods"][name]
        entry.update(slope=float(spectrum.slope[0]), hf=high_frequency_fraction(spectrum),
                     recognition=judge_all(judges, x[:k], classes, args.judge_crops),
                     activations=activations(model, x, units))
        if name.startswith("ours"):
            shown = torch.stack([export.display_stretch(image) for image in x[:k]])
            entry["recognition_stretched"] = judge_all(judges, shown, classes, args.judge_crops)
    rows = [torch.stack([export.display_stretch(i) for i in x[:k]]) if n.startswith("ours") else x[:k]
            for n, x in images.items()]
    sheet = torch.cat([F.interpolate(r, size=(128, 128), mode="bilinear", antialias=True, align_corners=False)
                       for r in rows])
    export.contact_sheet(sheet, [f"{n.split(' (')[0]}: {IMAGENET_CLASSES[c]}" for n in images for c in classes],
                         out / "classes.png", cols=k)
    (out / "against_lucent.json").write_text(json.dumps(data, indent=1))
    return write_report(out, data, args)


def write_report(out: Path, data: dict, args) -> Path:
    k = len(data["classes"])
    lines = ["# MACO against the classic method (torch-lucent 0.1.8)", "", f"Command: `{data['command']}`", "",
             f"- machine: {data['machine']}; torch {torch.__version__}",
             f"- {k} class logits: {', '.join(f'{c} {IMAGENET_CLASSES[c]}' for c in data['classes'])}",
             f"- channels: {', '.join(f'{layer}:{c}' for layer, c in data['channels'])}", ""]
    if "lucent" in data:
        lines += [f"torch-lucent: {data['lucent']}", ""]
    rows = []
    for name, m in data["methods"].items():
        r0, r2 = m["recognition"]["efficientnet_lite0"], m["recognition"]["efficientnet_lite2"]
        rows.append([name, m["steps"], f"{m['seconds_per_unit']:.1f}", pct(r0["crops_top1"]), pct(r0["whole_top1"]),
                     pct(r2["crops_top5"]), pct(r2["whole_top5"]), f"{m['slope']:+.2f}", f"{m['hf']:.1%}"])
    rows.append(["photos", "", "", "", "", "", "", f"{data['photos']['slope']:+.2f}", f"{data['photos']['hf']:.1%}"])
    lines += [table(["method", "steps", "s per unit", "lite0 top-1 crops", "lite0 top-1 whole", "lite2 top-5 crops",
                     "lite2 top-5 whole", "slope", "HF share"], rows), "",
              "![classes](classes.png)", "", "## Recognition by every judge", ""]
    rows = []
    for name, m in data["methods"].items():
        for view in ("recognition", "recognition_stretched"):
            if view not in m:
                continue
            for judge, r in m[view].items():
                rows.append([name + (" as shown (stretched)" if view.endswith("stretched") else ""),
                             judge.replace("efficientnet_", ""), pct(r["crops_top1"]), pct(r["crops_top5"]),
                             pct(r["whole_top1"]), pct(r["whole_top5"])])
    lines += [table(["method", "judge", "top-1 crops", "top-5 crops", "top-1 whole", "top-5 whole"], rows), "",
              "## Activations", "", "Each unit's lite0 activation on its final image (whole image at 224², fp32).", ""]
    names = list(data["methods"])
    units = [f"logit {c}" for c in data["classes"]] + [f"{layer}:{c}" for layer, c in data["channels"]]
    lines += [table(["unit", *names], [[u, *[f"{data['methods'][n]['activations'][i]:.3g}" for n in names]]
                                       for i, u in enumerate(units)]), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--channels", type=int, default=2, help="channels per layer")
    parser.add_argument("--layers", nargs="+", default=list(LAYERS))
    parser.add_argument("--steps", type=int, default=256, help="our steps (the library's default)")
    parser.add_argument("--lucent-steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--judge-crops", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 classes, 1 channel, 4 steps each")
    parser.add_argument("--out", default="lucent-out")
    args = parser.parse_args(argv)
    if args.quick:
        args.classes, args.channels, args.steps, args.lucent_steps, args.judge_crops = 2, 1, 4, 4, 2
        args.layers = args.layers[-1:]
    argv = sys.argv[1:] if argv is None else argv
    print(f"wrote {run(args, ' '.join(['python', 'benchmarks/against_lucent.py', *map(shlex.quote, argv)]))}")


if __name__ == "__main__":
    main()
