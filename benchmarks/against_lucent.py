"""MACO (ours, defaults) against the classic method as its users run it: torch-lucent 0.1.8's
render_vis with its defaults (lucent_runner.py), on the same units of EfficientNet-Lite0.

    python benchmarks/against_lucent.py [--runs quality-out] [--ours maco] [--lucent lucent] [--out DIR]

A report over the runs of `quality_per_second.py`, each tool at its default number of steps
(`RenderSettings().steps`, lucent's 512), on 16 class logits (its "tuning" and "held-out" sets) and 6 channels of
an early, a middle and the last block ("channels"). Make them first:

    for s in tuning held-out channels; do
        python benchmarks/quality_per_second.py run maco --set $s --out quality-out
        python benchmarks/quality_per_second.py run lucent --set $s --out quality-out
    done
    python benchmarks/against_lucent.py --runs quality-out --out lucent-out

Reported per tool: seconds per unit; recognition of the class images by lite0 (which made them)
and by lite1 and lite2 (which did not), on crops and on the whole image; the luminance power
spectrum slope and high-frequency share against the photos behind the default spectrum; each
unit's activation on its final image (lite0, the whole image at 224², fp32, the same measure for
both tools). Our images are judged raw and as shown (the percentile stretch of
`export.display_stretch`), to check that the stretch changes nothing the judges see.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from fidelity import high_frequency_fraction, image_spectrum, natural_spectrum, pct, table
from lucent_runner import DEFAULT_STEPS as LUCENT_STEPS
from lucent_runner import lucent_missing
from quality_per_second import activations
from recognition import recognition

from phasevis_ext import models
from phasevis_ext.io import export
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES
from phasevis_ext.render.settings import RenderSettings

JUDGES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CLASS_SETS = ("tuning", "held-out")
JUDGE_CROPS = 16


def load_run(runs: Path, label: str, unit_set: str, steps: int) -> tuple[dict, torch.Tensor]:
    """A quality_per_second record and its images after `steps` steps (the tool's default)."""
    path = runs / f"{label}-{unit_set}.json"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `python benchmarks/quality_per_second.py run ... --set {unit_set} "
                         f"--label {label} --out {runs}` first")
    record = json.loads(path.read_text())
    record.setdefault("units", [["logits", c] for c in record.get("classes", [])])
    if str(steps) not in record["budgets"]:
        raise SystemExit(f"{path} has no images at {steps} steps (it has {sorted(map(int, record['budgets']))})")
    images = torch.load(runs / f"{label}-{unit_set}-{steps}.pt").float()
    return {**record, "steps": steps, "final": record["budgets"][str(steps)]}, images


def tool_summary(runs: Path, label: str, steps: int, judges: dict, stretch: bool) -> tuple[dict, torch.Tensor]:
    records, images = zip(*(load_run(runs, label, s, steps) for s in (*CLASS_SETS, "channels")))
    classes = [index for r in records[:2] for _, index in r["units"]]
    class_images = torch.cat(images[:2])
    spectrum = image_spectrum(class_images if class_images.shape[-1] == 256 else F.interpolate(
        class_images, size=(256, 256), mode="bilinear", antialias=True, align_corners=False))
    unit_seconds = [(r["final"]["seconds_per_unit"], len(r["units"])) for r in records]
    summary = {
        "label": label, "steps": records[0]["steps"], "options": records[0]["options"],
        "seconds_per_class": sum(s * n for s, n in unit_seconds[:2]) / len(classes),
        "seconds_per_channel": unit_seconds[2][0],
        "slope": float(spectrum.slope[0]), "hf": high_frequency_fraction(spectrum),
        "recognition": {j: recognition(m, class_images, classes, crops=JUDGE_CROPS, size=models.default_input_size(j))
                        for j, m in judges.items()},
        # Measured here on every tool's final images, the same way (records from before the runs
        # measured activations have none).
        "activations": [a for r, x in zip(records, images) for a in activations(judges["efficientnet_lite0"], x.float(),
                                                                              [tuple(u) for u in r["units"]])],
        "units": [u for r in records for u in r["units"]], "commands": [r["command"] for r in records],
        "machine": records[0]["machine"],
    }
    if stretch:
        shown = torch.stack([export.display_stretch(x) for x in class_images])
        summary["recognition_stretched"] = {
            j: recognition(m, shown, classes, crops=JUDGE_CROPS, size=models.default_input_size(j))
            for j, m in judges.items()}
        class_images = shown
    return summary, class_images


def write_report(out: Path, tools: dict, photos: dict, classes: list[int], command: str) -> Path:
    lines = ["# MACO against the classic method (torch-lucent 0.1.8)", "", f"Report: `{command}`", "",
             f"- machine: {next(iter(tools.values()))['machine']}; torch {torch.__version__}",
             f"- {len(classes)} class logits: {', '.join(f'{c} {IMAGENET_CLASSES[c]}' for c in classes)}", ""]
    rows = []
    for name, t in tools.items():
        r0, r2 = t["recognition"]["efficientnet_lite0"], t["recognition"]["efficientnet_lite2"]
        rows.append([name, t["steps"], f"{t['seconds_per_class']:.1f}", f"{t['seconds_per_channel']:.1f}",
                     pct(r0["crops_top1"]), pct(r2["crops_top1"]), pct(r2["crops_top5"]), pct(r2["whole_top1"]),
                     pct(r2["whole_top5"]), f"{t['slope']:+.2f}", f"{t['hf']:.1%}"])
    rows.append(["photos", "", "", "", "", "", "", "", "", f"{photos['slope']:+.2f}", f"{photos['hf']:.1%}"])
    lines += [table(["tool", "steps", "s per class", "s per channel", "lite0 top-1 crops", "lite2 top-1 crops",
                     "lite2 top-5 crops", "lite2 top-1 whole", "lite2 top-5 whole", "slope", "HF share"], rows), "",
              "![classes](classes.jpg)", "", "## Recognition by every judge", ""]
    rows = []
    for name, t in tools.items():
        for view in ("recognition", "recognition_stretched"):
            for judge, r in t.get(view, {}).items():
                rows.append([name + (" as shown (stretched)" if view.endswith("stretched") else ""),
                             judge.replace("efficientnet_", ""), pct(r["crops_top1"]), pct(r["crops_top5"]),
                             pct(r["whole_top1"]), pct(r["whole_top5"]), f"{r['crops_prob']:.3f}"])
    lines += [table(["tool", "judge", "top-1 crops", "top-5 crops", "top-1 whole", "top-5 whole", "mean p(target)"],
                    rows), "", "## Activations", "",
              "Each unit's lite0 activation on its final image (whole image at 224², fp32).", ""]
    names = list(tools)
    units = next(iter(tools.values()))["units"]
    labels = [f"logit {c}" if layer == "logits" else f"{layer}:{c}" for layer, c in units]
    lines += [table(["unit", *names], [[u, *[f"{tools[n]['activations'][i]:.3g}" for n in names]]
                                       for i, u in enumerate(labels)]), "", "## Runs", ""]
    lines += [f"- `{c}`" for t in tools.values() for c in t["commands"]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="quality-out", help="quality_per_second.py's --out")
    parser.add_argument("--ours", default="maco", help="label of our runs")
    parser.add_argument("--lucent", default="lucent", help="label of lucent's runs")
    parser.add_argument("--out", default="lucent-out")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", "benchmarks/against_lucent.py", *map(shlex.quote, argv)])
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    judges = {j: models.load(j) for j in JUDGES}
    tools, sheets = {}, []
    compared = [("ours (MACO, defaults)", args.ours, RenderSettings().steps, True)]
    missing = lucent_missing()
    if missing and not (runs / f"{args.lucent}-tuning.json").exists():
        print(f"torch-lucent: skipped, {missing}", file=sys.stderr)
    else:
        compared.append(("torch-lucent 0.1.8 (defaults)", args.lucent, LUCENT_STEPS, False))
    for name, label, steps, stretch in compared:
        tools[name], shown = tool_summary(runs, label, steps, judges, stretch)
        sheets.append(F.interpolate(shown, size=(128, 128), mode="bilinear", antialias=True, align_corners=False))
    classes = [c for layer, c in tools[next(iter(tools))]["units"] if layer == "logits"]
    natural, _ = natural_spectrum(256)
    photos = {"slope": float(natural.slope[0]), "hf": high_frequency_fraction(natural)}
    # Rows of 8 classes, each tool's row above the other's, so that a class's two images are one above the other.
    tiles, labels = [], []
    for first in range(0, len(classes), 8):
        for name, sheet in zip(tools, sheets):
            tiles += list(sheet[first:first + 8])
            labels += [f"{name.split(' (')[0]}: {IMAGENET_CLASSES[c]}" for c in classes[first:first + 8]]
    export.contact_sheet(tiles, labels, out / "classes.jpg", cols=8)
    (out / "against_lucent.json").write_text(json.dumps({"tools": tools, "photos": photos}, indent=1))
    print(f"wrote {write_report(out, tools, photos, classes, command)}")


if __name__ == "__main__":
    main()
