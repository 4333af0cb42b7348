"""MACO (ours, defaults) against the tools its users already run, on the same units of the same
model: torch-lucent 0.1.8's render_vis (the classic method, lucent_runner.py) and Horama 0.3.0's
maco (horama_runner.py), each at its defaults, beside our Fourier and our MACO at MACO's own
phase scale and spectrum.

    python benchmarks/against_lucent.py [--model efficientnet_lite0|mobilenet_v2] [--runs quality-out]
        [--sets held-out] [--out DIR]

A report over the runs of `quality_per_second.py`, each tool at its default number of steps
(`RenderSettings().steps`, lucent's 512; Horama's run is read at its last budget, as its
1280² steps cost about a second each on a CPU), on the class logits of the
chosen sets and 6 channels of an early, a middle and the last block ("channels"; Horama renders
logits only). Make them first, for each model:

    M=efficientnet_lite0   # or mobilenet_v2
    # the spectrum of the plain DFT of each photo window, which the periodic-component one replaced
    git show e430348^:phasevis_ext/assets/natural_magnitude.npz > SPECTRUM_BEFORE.npz
    for s in held-out channels; do
        python benchmarks/quality_per_second.py run maco --model $M --set $s --out quality-out
        python benchmarks/quality_per_second.py run maco --model $M --set $s --label maco-phase1 \
            --option 'param_kwargs={"phase_scale": 1.0}' --option spectrum=SPECTRUM_BEFORE.npz
        python benchmarks/quality_per_second.py run fourier --model $M --set $s --out quality-out
        python benchmarks/quality_per_second.py run lucent --model $M --set $s --out quality-out
    done
    python benchmarks/quality_per_second.py run horama --model $M --set held-out --out quality-out
    python benchmarks/against_lucent.py --model $M --runs quality-out --out lucent-out

Reported per tool: seconds per unit; recognition of the class images by the model that made them
and by `recognition.JUDGES_OF` (its own family and another), on crops and on the whole image; the
luminance power spectrum slope and high-frequency share against the photos behind the default
spectrum; each unit's activation on its final image (the maker, whole image at 224², fp32, the
same measure for every tool), and for channels that activation over the best of the shipped
photos. Our images are judged raw and as shown (the percentile stretch of
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
from horama_runner import horama_missing
from quality_per_second import MAKERS, activations, best_photo_activations
from recognition import JUDGES_OF, recognition

from phasevis_ext import models
from phasevis_ext.io import export
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES
from phasevis_ext.render.settings import RenderSettings

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


def tool_summary(runs: Path, label: str, steps: int, judges: dict, stretch: bool, class_sets,
                 channels: bool) -> tuple[dict, torch.Tensor]:
    maker = next(iter(judges))
    records, images = zip(*(load_run(runs, label, s, steps) for s in (*class_sets, *(["channels"] if channels else []))))
    n = len(class_sets)
    classes = [index for r in records[:n] for _, index in r["units"]]
    class_images = torch.cat(images[:n])
    spectrum = image_spectrum(class_images if class_images.shape[-1] == 256 else F.interpolate(
        class_images, size=(256, 256), mode="bilinear", antialias=True, align_corners=False))
    unit_seconds = [(r["final"]["seconds_per_unit"], len(r["units"])) for r in records]
    summary = {
        "label": label, "steps": records[0]["steps"], "options": records[0]["options"],
        "seconds_per_class": sum(s * k for s, k in unit_seconds[:n]) / len(classes),
        "seconds_per_channel": unit_seconds[n][0] if channels else None,
        "slope": float(spectrum.slope[0]), "hf": high_frequency_fraction(spectrum),
        "recognition": {j: recognition(m, class_images, classes, crops=JUDGE_CROPS, size=models.default_input_size(j))
                        for j, m in judges.items()},
        # Measured here on every tool's final images, the same way (records from before the runs
        # measured activations have none).
        "activations": [a for r, x in zip(records, images) for a in activations(judges[maker], x.float(),
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


def write_report(out: Path, maker: str, tools: dict, photos: dict, classes: list[int], channel_units: list,
                 best_photo: list[float], command: str) -> Path:
    judges = [maker, *JUDGES_OF[maker]]
    short = [j.replace("efficientnet_", "") for j in judges]
    lines = [f"# Images made on {maker}: ours against the tools users run", "", f"Report: `{command}`", "",
             f"- machine: {next(iter(tools.values()))['machine']}; torch {torch.__version__}",
             f"- {len(classes)} class logits: {', '.join(f'{c} {IMAGENET_CLASSES[c]}' for c in classes)}",
             f"- judges: {', '.join(judges)} (the first made the images)", ""]
    rows = []
    for name, t in tools.items():
        cells = [pct(t["recognition"][j][k]) for j in judges for k in ("crops_top1", "crops_top5")]
        per_channel = "" if t["seconds_per_channel"] is None else f"{t['seconds_per_channel']:.1f}"
        rows.append([name, t["steps"], f"{t['seconds_per_class']:.1f}", per_channel, *cells, f"{t['slope']:+.2f}",
                     f"{t['hf']:.1%}"])
    rows.append(["photos", "", "", "", *[""] * (2 * len(judges)), f"{photos['slope']:+.2f}", f"{photos['hf']:.1%}"])
    lines += [table(["tool", "steps", "s per class", "s per channel",
                     *[f"{j} {k}" for j in short for k in ("top-1 crops", "top-5 crops")], "slope", "HF share"], rows),
              "", "![classes](classes.jpg)", "", "## Recognition by every judge", ""]
    rows = []
    for name, t in tools.items():
        for view in ("recognition", "recognition_stretched"):
            for judge, r in t.get(view, {}).items():
                rows.append([name + (" as shown (stretched)" if view.endswith("stretched") else ""),
                             judge.replace("efficientnet_", ""), pct(r["crops_top1"]), pct(r["crops_top5"]),
                             pct(r["whole_top1"]), pct(r["whole_top5"]), f"{r['crops_prob']:.3f}"])
    lines += [table(["tool", "judge", "top-1 crops", "top-5 crops", "top-1 whole", "top-5 whole", "mean p(target)"],
                    rows), ""]
    with_channels = [n for n, t in tools.items() if t["seconds_per_channel"] is not None]
    if with_channels:
        lines += ["## Channels: early, middle and last block", "",
                  f"Each channel's {maker} activation on its final image (whole image at 224², fp32) over its "
                  "highest on the shipped photos: above 1, the image drives the channel beyond every photo.", ""]
        offset = len(classes)
        rows = [[f"{layer}:{c}", f"{best_photo[i]:.3g}",
                 *[f"{tools[n]['activations'][offset + i] / best_photo[i]:.2f}" if best_photo[i] > 0 else
                   f"{tools[n]['activations'][offset + i]:.3g}" for n in with_channels]]
                for i, (layer, c) in enumerate(channel_units)]
        lines += [table(["channel", "best photo", *with_channels], rows), "", "![channels](channels.jpg)", ""]
    lines += ["## Runs", ""]
    lines += [f"- `{c}`" for t in tools.values() for c in t["commands"]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def compared_tools(runs: Path, class_sets) -> list[tuple[str, str, int, bool, bool]]:
    """(name, label, steps, stretch, with channels) of each tool whose runs are there."""
    ours = RenderSettings().steps
    candidates = [("ours: MACO (defaults)", "maco", ours, True, None),
                  ("ours: MACO, phase scale 1 (plain-DFT spectrum)", "maco-phase1", ours, True, None),
                  ("ours: Fourier (defaults)", "fourier", ours, True, None),
                  ("torch-lucent 0.1.8 (defaults)", "lucent", LUCENT_STEPS, False, lucent_missing),
                  ("Horama 0.3.0 (defaults)", "horama", None, False, horama_missing)]
    tools = []
    for name, label, steps, stretch, missing in candidates:
        if not all((runs / f"{label}-{s}.json").exists() for s in class_sets):
            why = missing() if missing else None
            print(f"{name}: skipped, " + (why or f"no runs labelled {label} in {runs}"), file=sys.stderr)
            continue
        if steps is None:  # the run's own last budget: Horama's 1280² steps cost ~1 s each on a CPU
            steps = max(int(b) for b in json.loads((runs / f"{label}-{class_sets[0]}.json").read_text())["budgets"])
            name = name.replace("(defaults)", f"(defaults, {steps} steps)")
        tools.append((name, label, steps, stretch, (runs / f"{label}-channels.json").exists()))
    if not tools or tools[0][1] != "maco":
        raise SystemExit(f"{runs}/maco-{class_sets[0]}.json is missing: run quality_per_second.py first")
    return tools


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MAKERS, default=MAKERS[0], help="the model that made the images")
    parser.add_argument("--runs", default="quality-out", help="quality_per_second.py's --out")
    parser.add_argument("--sets", nargs="+", default=["held-out"], choices=("tuning", "held-out"))
    parser.add_argument("--out", default="lucent-out")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", "benchmarks/against_lucent.py", *map(shlex.quote, argv)])
    runs, out = Path(args.runs) / args.model, Path(args.out) / args.model
    out.mkdir(parents=True, exist_ok=True)
    judges = {j: models.load(j) for j in (args.model, *JUDGES_OF[args.model])}
    tools, sheets, channel_sheets = {}, [], []
    for name, label, steps, stretch, channels in compared_tools(runs, args.sets):
        tools[name], shown = tool_summary(runs, label, steps, judges, stretch, args.sets, channels)
        sheets.append(F.interpolate(shown, size=(128, 128), mode="bilinear", antialias=True, align_corners=False))
        if channels:
            _, images = load_run(runs, label, "channels", steps)
            images = torch.stack([export.display_stretch(x) for x in images]) if stretch else images
            channel_sheets.append((name, F.interpolate(images, size=(128, 128), mode="bilinear", antialias=True,
                                                       align_corners=False)))
    first = tools[next(iter(tools))]
    classes = [c for layer, c in first["units"] if layer == "logits"]
    channel_units = [tuple(u) for u in first["units"] if u[0] != "logits"]
    best_photo = best_photo_activations(judges[args.model], channel_units) if channel_units else []
    natural, _ = natural_spectrum(256)
    photos = {"slope": float(natural.slope[0]), "hf": high_frequency_fraction(natural)}
    # Rows of 8 units, one row per tool, so that a unit's images are one above the other.
    for path, units, named_sheets in (("classes.jpg", [IMAGENET_CLASSES[c] for c in classes], list(zip(tools, sheets))),
                                      ("channels.jpg", [f"{layer}:{c}" for layer, c in channel_units],
                                       channel_sheets)):
        tiles, labels = [], []
        for start in range(0, len(units), 8):
            for name, sheet in named_sheets:
                tiles += list(sheet[start:start + 8])
                labels += [f"{name.split(' (')[0]}: {u}" for u in units[start:start + 8]]
        if tiles:
            export.contact_sheet(tiles, labels, out / path, cols=min(8, len(units)))
    (out / "against_lucent.json").write_text(json.dumps({"model": args.model, "tools": tools, "photos": photos,
                                                         "best_photo": best_photo}, indent=1))
    print(f"wrote {write_report(out, args.model, tools, photos, classes, channel_units, best_photo, command)}")


if __name__ == "__main__":
    main()
