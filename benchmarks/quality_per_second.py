"""Image quality bought per second: transfer of class visualizations to EfficientNet-Lite2 against
the seconds each method spends per unit, at budgets from 16 steps to each method's default.

    python benchmarks/quality_per_second.py run METHOD [--model efficientnet_lite0|mobilenet_v2]
        [--set tuning|held-out|all|channels] [--max-steps N] [--option KEY=VALUE ...] [--label NAME]
        [--out quality-out]
    python benchmarks/quality_per_second.py report [--out quality-out]

METHOD is `maco` or `fourier` (ours, `visualize` with its defaults unless --option overrides
them, e.g. crops=6; the steps are the budgets), `lucent` (torch-lucent 0.1.8's render_vis with its
defaults, lucent_runner.py) or `horama` (Horama 0.3.0's maco with its defaults, horama_runner.py).
A method whose loop has no schedule over its total number of steps runs once to its largest
budget and its images are taken at each budget on the way, which is exact for such loops; one
with a schedule (our MACO's default cosine lr, or an option such as box_schedule=shrink) runs once
per budget instead. The time of a budget is the wall time from the start of the method's run to the moment its
image was taken, divided by the number of units (ours renders all units in one batch; the peers
one unit per run, so theirs is the mean over their runs).

Units are class logits of the model that makes the images (EfficientNet-Lite0 by default, or
MobileNetV2), two disjoint sets of 8 classes: "tuning", on which option changes are tried, and
"held-out", on which the chosen ones are confirmed; or "channels", two channels of an early, a
middle and the last block, judged by their activation against the best of the shipped photos
(no class to recognize). Class images are judged by the models of `recognition.JUDGES_OF`: one
of the maker's family and one of another. Each run writes OUT/MODEL/LABEL-SET.json (images as
.pt beside it) and `report` turns every such file into OUT/MODEL/report.md and
quality_per_second.png, one curve per label, judged by the first judge. Peers that are not
installed are skipped with their install command.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from fidelity import high_frequency_fraction, image_spectrum, machine, natural_spectrum, pct, pick_classes, table
from recognition import JUDGES_OF, recognition

from phasevis_ext import models
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES
from phasevis_ext.model.activations import LOGITS, as_bchw, capture
from phasevis_ext.render.objectives import channel, logit
from phasevis_ext.render.settings import DEFAULT_LR_SCHEDULE, RenderSettings
from phasevis_ext.render.visualize import visualize

BUDGETS = (16, 32, 64, 128, 256, 512)
METHODS = ("maco", "fourier", "lucent", "horama")
# The largest budget of each method: twice ours (`RenderSettings().steps`), to show where the curve goes
# after it; lucent's render_vis thresholds=(512,); Horama's total_steps=1000 capped at 512.
DEFAULT_STEPS = {"maco": 2 * RenderSettings().steps, "fourier": 2 * RenderSettings().steps, "lucent": 512, "horama": 512}
JUDGE_CROPS = 16
MAKERS = tuple(JUDGES_OF)

# An early, a middle and the last block of each maker, with their widths.
LAYERS = {"efficientnet_lite0": {"_blocks.2": 24, "_blocks.8": 112, "_blocks.15": 320},
          "mobilenet_v2": {"features.3": 24, "features.10": 64, "features.17": 320}}
SETS = ("tuning", "held-out", "all", "channels")


def unit_sets(maker: str = "efficientnet_lite0") -> dict[str, list[tuple[str, int]]]:
    """(layer, index) units; the class sets are two interleaved halves of fidelity.pick_classes(16),
    so both spread over ImageNet; the channels are the first and the middle one of each layer."""
    classes = [(LOGITS, c) for c in pick_classes(16)]
    channels = [(layer, c) for layer, width in LAYERS[maker].items() for c in (0, width // 2)]
    return {"tuning": classes[0::2], "held-out": classes[1::2], "all": classes, "channels": channels}


def objective(layer: str, index: int):
    return logit(index) if layer == LOGITS else channel(layer, index)


def _unit_activations(model, images: torch.Tensor, units, rows) -> list[float]:
    x = torch.nn.functional.interpolate(images.float(), size=(224, 224), mode="bilinear", antialias=True,
                                        align_corners=False)
    layers = sorted({layer for layer, _ in units if layer != LOGITS})
    with capture(model, layers, need_logits=True) as cap:
        acts = cap.run(x)
    return [as_bchw(acts[layer])[row, index].mean().item() for row, (layer, index) in zip(rows, units)]


@torch.no_grad()
def activations(model, images: torch.Tensor, units: list[tuple[str, int]]) -> list[float]:
    """Each unit's mean activation on its own image, the whole image resized to 224², fp32: one
    measure for every tool, whatever crops it optimized."""
    return _unit_activations(model, images, units, range(len(units)))


@torch.no_grad()
def best_photo_activations(model, units: list[tuple[str, int]]) -> list[float]:
    """Each unit's highest activation, measured as `activations`, over the shipped photos
    (centre-cropped square): what a natural image reaches, the scale a visualization is read on."""
    from lattice_borders import photographs

    photos = torch.stack([torch.nn.functional.interpolate(p[None], size=(224, 224), mode="bilinear",
                                                          antialias=True, align_corners=False)[0]
                          for p in photographs()])
    per_photo = [_unit_activations(model, photos, [unit] * len(photos), range(len(photos)))
                 for unit in units]
    return [max(values) for values in per_photo]


def parse_option(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE a Python literal (crops=4, box_size=(0.3,1.0), lr=0.5)."""
    import ast

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise SystemExit(f"--option: expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def run_ours(model, units, budgets, param: str, options: dict) -> tuple[dict, float]:
    """{budget: (images, seconds per unit)} from one `visualize` call; the image after s updates is
    the one the callback sees at step s + 1 (the last one is the result). A schedule over the steps
    makes every budget a run of its own."""
    defaults = RenderSettings(param=param)
    lr_schedule = options.get("lr_schedule") or DEFAULT_LR_SCHEDULE[param]
    if lr_schedule != "constant" or options.get("box_schedule", defaults.box_schedule) != "constant":
        snapshots = {}
        for budget in budgets:
            result = visualize(model, [objective(*u) for u in units], param=param, steps=budget,
                               batch_size=len(units), progress=False, **options)
            snapshots[budget] = (result.images, result.seconds / len(units))
        return snapshots, result.settings
    last = budgets[-1]
    snapshots = {}
    start = time.perf_counter()

    def take(step, images, scores):
        if step - 1 in budgets:
            snapshots[step - 1] = (images.cpu().clone(), (time.perf_counter() - start) / len(units))

    result = visualize(model, [objective(*u) for u in units], param=param, steps=last, callback=take,
                       batch_size=len(units), progress=False, **options)
    snapshots[last] = (result.images, result.seconds / len(units))
    return snapshots, result.settings


def run_peer(method: str, model, units, budgets) -> dict:
    if method == "lucent":
        from lucent_runner import logits_layer, lucent_snapshots

        return lucent_snapshots(model, [(logits_layer(model) if layer == LOGITS else layer, index)
                                        for layer, index in units], budgets)
    from horama_runner import horama_snapshots

    if any(layer != LOGITS for layer, _ in units):
        raise SystemExit("horama_runner renders class logits only")
    return horama_snapshots(model, [index for _, index in units], budgets)


def peer_missing(method: str) -> str | None:
    if method == "lucent":
        from lucent_runner import lucent_missing

        return lucent_missing()
    from horama_runner import horama_missing

    return horama_missing()


def run(args, command: str) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    label = args.label or args.method
    out = out / args.model
    out.mkdir(exist_ok=True)
    path = out / f"{label}-{args.set}.json"
    if args.method in ("lucent", "horama") and (missing := peer_missing(args.method)):
        print(f"{args.method}: skipped, {missing}", file=sys.stderr)
        return path
    units = unit_sets(args.model)[args.set]
    classes = [index for layer, index in units if layer == LOGITS]
    top = args.max_steps or DEFAULT_STEPS[args.method]
    budgets = [b for b in BUDGETS if b < top] + [top]
    model = models.load(args.model)
    options = dict(parse_option(o) for o in args.option)
    if args.method in ("maco", "fourier"):
        visualize(model, [objective(*units[0])], param=args.method, steps=2, progress=False, **options)  # warm-up
        snapshots, settings = run_ours(model, units, budgets, args.method, options)
    else:
        snapshots, settings = run_peer(args.method, model, units, budgets), {"defaults": True}
    judges = {j: models.load(j) for j in JUDGES_OF[args.model]} if classes else {}
    rows = {}
    for budget, (images, seconds) in sorted(snapshots.items()):
        images = images.float().clamp(0, 1)
        scores = {j: recognition(m, images, classes, crops=JUDGE_CROPS, size=models.default_input_size(j))
                  for j, m in judges.items()}
        spectrum = image_spectrum(export_size(images))
        rows[budget] = {"seconds_per_unit": seconds, "judges": scores, "slope": float(spectrum.slope[0]),
                        "hf": high_frequency_fraction(spectrum), "activations": activations(model, images, units)}
        torch.save(images.half(), out / f"{label}-{args.set}-{budget}.pt")
    record = {"label": label, "method": args.method, "model": args.model, "set": args.set, "units": units,
              "options": options,
              "settings": settings, "budgets": rows, "command": command, "machine": machine(torch.device("cpu")),
              "torch": torch.__version__}
    path.write_text(json.dumps(record, indent=1, default=str))
    return path


def export_size(images: torch.Tensor, side: int = 256) -> torch.Tensor:
    """Horama's 1280² images are judged as they are but their spectrum is taken at 256², as ours."""
    if images.shape[-1] == side:
        return images
    return torch.nn.functional.interpolate(images, size=(side, side), mode="bilinear", antialias=True,
                                           align_corners=False)


def load_records(out: Path) -> list[dict]:
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    for r in records:
        r.setdefault("units", [[LOGITS, c] for c in r.get("classes", [])])
    return records


def plot(records: list[dict], path: Path, judge: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    records = [r for r in records if r["set"] != "channels"]
    sets = [name for name in SETS if any(r["set"] == name for r in records)]
    name = judge.replace("efficientnet_", "")
    metrics = (("crops_top1", f"{name} top-1 (crops)"), ("whole_top1", f"{name} top-1 (whole image)"),
               ("crops_prob", f"{name} mean p(class) (crops)"))
    fig = Figure(figsize=(5.0 * len(metrics), 3.8 * len(sets)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(sets), len(metrics), squeeze=False)
    colors = {label: f"C{i}" for i, label in enumerate(dict.fromkeys(r["label"] for r in records))}
    for row, name in zip(axes, sets):
        for ax, (metric, title) in zip(row, metrics):
            for r in (x for x in records if x["set"] == name):
                points = sorted((v["seconds_per_unit"], v["judges"][judge][metric], int(b))
                                for b, v in r["budgets"].items())
                xs, ys, steps = zip(*points)
                ax.plot(xs, ys, marker="o", ms=3, label=r["label"], color=colors[r["label"]])
                ax.annotate(str(steps[-1]), (xs[-1], ys[-1]), fontsize=7, xytext=(3, 0), textcoords="offset points")
            ax.set(xscale="log", xlabel="seconds per unit", title=f"{title}, {name} classes")
            ax.set_xticks([2, 5, 10, 20, 50, 100], labels=["2", "5", "10", "20", "50", "100"])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.savefig(path)


def report(out: Path, command: str, plots: list[str]) -> Path:
    """report.md with every run, quality_per_second.png with every curve, and one more plot per
    NAME=LABEL,LABEL... in `plots` (quality_per_second_NAME.png) with those curves only."""
    records = load_records(out)
    if not records:
        raise SystemExit(f"no results in {out}; run `quality_per_second.py run METHOD` first")
    maker = records[0].get("model", MAKERS[0])
    judges = JUDGES_OF[maker]
    plot(records, out / "quality_per_second.png", judges[0])
    for spec in plots:
        name, _, labels = spec.partition("=")
        chosen = [r for label in labels.split(",") for r in records if r["label"] == label]
        if not chosen:
            raise SystemExit(f"--plot {spec}: no run has those labels")
        plot(chosen, out / f"quality_per_second_{name}.png", judges[0])
    photos, _ = natural_spectrum(256)
    lines = [f"# Quality per second: images made on {maker}, judged by {' and '.join(judges)}", "",
             f"Report: `{command}`", "",
             f"Luminance spectrum of the photos behind the default spectrum (256² windows): slope "
             f"{float(photos.slope[0]):+.2f}, HF share {high_frequency_fraction(photos):.1%}.", ""]
    short = [j.replace("efficientnet_", "") for j in judges]
    for name in sorted({r["set"] for r in records} - {"channels"}):
        units = next(r["units"] for r in records if r["set"] == name)
        lines += [f"## {name} classes", "", ", ".join(f"{c} {IMAGENET_CLASSES[c]}" for _, c in units), ""]
        rows = []
        for r in (x for x in records if x["set"] == name):
            for budget, v in sorted(r["budgets"].items(), key=lambda kv: int(kv[0])):
                cells = [pct(v["judges"][j][k]) for j in judges for k in ("crops_top1", "crops_top5", "whole_top1")]
                rows.append([r["label"], budget, f"{v['seconds_per_unit']:.1f}", *cells, f"{v['slope']:+.2f}",
                             f"{v['hf']:.1%}"])
        lines += [table(["run", "steps", "s per unit",
                         *[f"{j} {k}" for j in short for k in ("top-1 crops", "top-5 crops", "top-1 whole")],
                         "slope", "HF share"], rows), ""]
    lines += ["## Runs", ""]
    lines += [f"- {r['label']} ({r['set']}): `{r['command']}`; {r['machine']}; torch {r['torch']}; options "
              f"{r['options'] or 'defaults'}" for r in records]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run")
    run_parser.add_argument("method", choices=METHODS)
    run_parser.add_argument("--set", choices=SETS, default="tuning")
    run_parser.add_argument("--model", choices=MAKERS, default=MAKERS[0], help="the model that makes the images")
    run_parser.add_argument("--max-steps", type=int, help="the largest budget (default: the method's default steps)")
    run_parser.add_argument("--option", action="append", default=[], help="KEY=VALUE for visualize (ours only)")
    run_parser.add_argument("--label", help="the curve's name (default: METHOD)")
    report_parser = sub.add_parser("report")
    report_parser.add_argument("--model", choices=MAKERS, default=MAKERS[0])
    report_parser.add_argument("--plot", action="append", default=[], metavar="NAME=LABEL,LABEL",
                               help="one more plot with these runs only")
    for p in (run_parser, report_parser):
        p.add_argument("--out", default="quality-out")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", "benchmarks/quality_per_second.py", *map(shlex.quote, argv)])
    path = run(args, command) if args.command == "run" else report(Path(args.out) / args.model, command, args.plot)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
