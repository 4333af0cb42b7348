"""Does MACO deliver what its paper claims? Class visualizations of EfficientNet-Lite0 (or, with
--model, MobileNetV2, another family) made with MACO,
the classic Fourier parameterization and plain pixels, on one budget and with the same augmentations,
side by side with natural photographs and Horama 0.3.0.

    python benchmarks/fidelity.py [--quick] [--model efficientnet_lite0|mobilenet_v2] [--classes 16] [--full-steps 128] [--low-steps 32]
        [--image-size 256] [--crops 3] [--channels 6] [--judge-crops 16] [--skip-horama]
        [--device cpu] [--out fidelity-out]

Parts, all written to OUT/report.md with PNG figures beside it:
 1. the mean radially averaged power spectrum (luminance) of the class visualizations at each budget,
    with native-resolution crops of the photos behind the default spectrum, and log-log slopes;
 2. top-1/top-5 rates of the target class by the maker (crop-averaged and whole image) and by
    `recognition.JUDGES_OF` (Lite2 and MobileNetV2 for Lite0; Lite0 and Lite2 for MobileNetV2);
 3. channels of an early, a middle and the last block, MACO beside Fourier: final scores and
    high-frequency power;
 4. Horama 0.3.0 on the full budget: recognition and wall time against ours.
The full budget, image size and crops are the library's defaults (`phasevis_ext.render.defaults`); the low
budget is the same runs after --low-steps updates. The report lists the wall time of each part; pass
--device cuda on a GPU. Explicit options override --quick's.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import beyond_one_image as beyond
import numpy as np
import torch
from recognition import CLASSES, JUDGES_OF, recognition
from sheets import save_sheet, thumbnails

from phasevis_ext import models
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES
from phasevis_ext.model import activations
from phasevis_ext.param.diagnostics import DEFAULT_BAND, RadialPower, fit_power_law, radial_power
from phasevis_ext.param.spectrum import LUMA  # Rec. 601, as the default spectrum's grey channel
from phasevis_ext.render.objectives import channel, logit
from phasevis_ext.render.settings import RenderSettings, resolve_amp
from phasevis_ext.render.visualize import visualize

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("maco", "fourier", "pixel")
MAKERS = tuple(JUDGES_OF)
LAYERS = {"efficientnet_lite0": ("_blocks.2", "_blocks.8", "_blocks.15"),
          "mobilenet_v2": ("features.3", "features.10", "features.17")}
PARTS = ("fidelity", *beyond.PARTS)
HIGH_FREQUENCY = 0.25  # cycles/px: the top octave, where MACO's fixed magnitude leaves little power
# Explicit options win over these; --quick keeps the low budget and shrinks the rest to fit 10 minutes.
# The full budget, the image size and the crops are the library's defaults: the report is about what a
# user gets.
DEFAULTS = {"classes": 16, "full_steps": RenderSettings().steps, "low_steps": 32, "image_size": RenderSettings().image_size[0],
            "crops": RenderSettings().crops, "channels": 6, "judge_crops": 16}
QUICK = {**DEFAULTS, "full_steps": 48, "channels": 3, "judge_crops": 4}
# lucid's order of weight, against channel activations of ~20 at lite0's _blocks.8.
DIVERSITY_WEIGHT = 100.0
ACCENTUATION_PENALTY = None  # the library's default for the place it is measured
ACCENTUATION_REG_LAYER = "pixels"
COLORS = {"maco": "C0", "fourier": "C1", "pixel": "C2", "horama": "C3"}  # the same in every panel


def pick_classes(k: int) -> list[int]:
    """recognition.CLASSES first (spread over ImageNet), then evenly spaced others."""
    extra = [c for c in np.linspace(0, 999, max(k, 1) * 2).round().astype(int).tolist() if c not in CLASSES]
    return (list(CLASSES) + extra)[:k]


def luminance(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W)."""
    return torch.einsum("bchw,c->bhw", images.double(), torch.tensor(LUMA, dtype=torch.float64))[:, None]


def high_frequency_fraction(spectrum: RadialPower, cutoff: float = HIGH_FREQUENCY) -> float:
    """Share of the power above `cutoff` cycles/px: ring means times ring length (∝ f) sum the power
    over the disc |f| <= 0.5, the rings being equally wide."""
    mass = spectrum.power.mean(0) * spectrum.freqs
    return float(mass[spectrum.freqs > cutoff].sum() / mass.sum())


def mean_spectrum(spectra: list[RadialPower], band=DEFAULT_BAND) -> RadialPower:
    """Equal-weight mean of spectra on the same rings, refitted."""
    power = np.mean([s.power for s in spectra], axis=0)
    slope, intercept = fit_power_law(spectra[0].freqs, power, band)
    return RadialPower(spectra[0].freqs, power, slope, intercept)


def natural_spectrum(size: int, band=DEFAULT_BAND) -> tuple[RadialPower, list[str]]:
    """Mean luminance spectrum of size x size windows (stride size/4, native resolution, never resized)
    of the default spectrum's photos, each photo weighing the same; photos too small are left out."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_default_spectrum import load_photos, window_origins

    spectra, used = [], []
    for name, rgb in load_photos():
        if min(rgb.shape[:2]) < size:
            continue
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        stride = max(size // 4, 1)
        windows = torch.stack([image[:, y:y + size, x:x + size]
                               for y in window_origins(image.shape[1], size, stride)
                               for x in window_origins(image.shape[2], size, stride)])
        spectra.append(radial_power(luminance(windows), band=band))
        used.append(name)
    if not spectra:
        raise ValueError(f"no photo holds a {size} px window; use a smaller --image-size")
    return mean_spectrum(spectra, band), used


def image_spectrum(images: torch.Tensor, band=DEFAULT_BAND) -> RadialPower:
    return radial_power(luminance(images), band=band)


def plot_spectra(panels: dict[str, dict[str, RadialPower]], band, path: Path) -> None:
    """One log-log panel per budget, slopes in the legend, the fitted band shaded."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(panels), 4.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (title, spectra) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        for name, s in spectra.items():
            style = {"color": COLORS.get(name, "black"), "lw": 1.3 if name in COLORS else 2.0}
            ax.loglog(s.freqs, s.power[0], label=f"{name} ({s.slope[0]:+.2f})", **style)
        ax.axvspan(*band, color="0.9", zorder=0)
        ax.axvline(HIGH_FREQUENCY, color="0.6", ls=":", lw=1)
        ax.set(title=title, xlabel="cycles / pixel", ylabel="luminance power |X|² / (H·W)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, title=f"slope over {band[0]}–{band[1]} c/px", title_fontsize=8)
    fig.savefig(path)


def class_sheet(runs: dict[str, torch.Tensor], classes, path: Path) -> None:
    """One row per method, one column per class."""
    images = torch.cat([thumbnails(x) for x in runs.values()])
    labels = [f"{method}: {IMAGENET_CLASSES[c]}" for method in runs for c in classes]
    save_sheet(images, labels, path, cols=len(classes))


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        name = names[0] if names else name
    except OSError:
        pass
    return f"CPU {name}, {torch.get_num_threads()} torch threads"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in rows])


def pct(x: float) -> str:
    return f"{x:.0%}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"≤10 min on 2 CPU cores: {QUICK}")
    parser.add_argument("--classes", type=int, help=f"K lite0 class logits (default {DEFAULTS['classes']})")
    parser.add_argument("--full-steps", type=int, help=f"default {DEFAULTS['full_steps']}")
    parser.add_argument("--low-steps", type=int, help=f"default {DEFAULTS['low_steps']}")
    parser.add_argument("--image-size", type=int, help=f"default {DEFAULTS['image_size']}")
    parser.add_argument("--crops", type=int, help=f"crops per image and step (default {DEFAULTS['crops']})")
    parser.add_argument("--channels", type=int, help=f"channels per deep layer (default {DEFAULTS['channels']})")
    parser.add_argument("--judge-crops", type=int,
                        help=f"random crops per image for recognition (default {DEFAULTS['judge_crops']})")
    parser.add_argument("--model", choices=MAKERS, default=MAKERS[0], help="the model that makes the images")
    parser.add_argument("--layers", nargs="+", help="deep layers (default: an early, a middle and the last block)")
    parser.add_argument("--band", type=float, nargs=2, default=DEFAULT_BAND, help="slope fit band, cycles/px")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-horama", action="store_true")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=["fidelity"],
                        help="fidelity: parts 1-4 above, to OUT/report.md; inversion, diversity, accentuation: "
                             "benchmarks/beyond_one_image.py, to OUT/beyond.md (default: fidelity)")
    parser.add_argument("--diversity-layer", default="_blocks.8", help="the diversity part's channels")
    parser.add_argument("--diversity", type=float, default=DIVERSITY_WEIGHT, help="the diversity term's weight")
    parser.add_argument("--samples", type=int, default=4, help="samples per unit in the diversity part")
    parser.add_argument("--penalty", type=float, default=ACCENTUATION_PENALTY,
                        help="accentuation's penalty (default: the library's)")
    parser.add_argument("--reg-layer", default=ACCENTUATION_REG_LAYER,
                        help="where accentuation's penalty is measured ('pixels': in pixel space)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="fidelity-out")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.layers = args.layers or list(LAYERS[args.model])
    if not 0 < args.low_steps <= args.full_steps:
        parser.error(f"--low-steps must be in 1..--full-steps ({args.full_steps}), got {args.low_steps}")
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", "benchmarks/fidelity.py", *map(shlex.quote, argv)])
    if "fidelity" in args.parts:
        run(args, command)
    if set(args.parts) & set(beyond.PARTS):
        run_beyond(args, command)


def run(args, command: str) -> Path:
    begin = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    amp = resolve_amp("auto", device)  # the library's and the command line's default
    band = tuple(args.band)
    classes = pick_classes(args.classes)
    budgets = {"full": args.full_steps, "low": args.low_steps}
    model = models.load(args.model, device=device)
    options = dict(image_size=args.image_size, crops=args.crops, device=device, amp=amp, progress=False,
                   batch_size=args.batch_size)
    timings, data = {}, {"command": command, "classes": classes, "budgets": budgets, "args": vars(args)}
    visualize(model, [logit(classes[0])], steps=2, **options)  # warm-up: one-time costs stay out of the timings

    # Class visualizations for parts 1 and 2.
    start = time.perf_counter()
    runs: dict[str, dict[str, torch.Tensor]] = {b: {} for b in budgets}
    seconds: dict[str, dict[str, float]] = {b: {} for b in budgets}
    for method in METHODS:
        # The learning rate is constant, so the images after low_steps updates of the full run are
        # those a run of low_steps ends with: the low budget is a snapshot, not a second run. The
        # callback of step s sees the images that step s updates, i.e. after s - 1 updates.
        snapshot = []
        result = visualize(model, [logit(c) for c in classes], param=method, steps=args.full_steps,
                           callback=lambda step, images, scores: step == args.low_steps + 1 and snapshot.append(
                               images.cpu()), **options)
        runs["full"][method], seconds["full"][method] = result.images, result.seconds
        runs["low"][method] = torch.cat(snapshot) if snapshot else result.images
        print(f"{method}: {result.seconds:.0f} s, mean score {result.scores.mean():.2f}", flush=True)
    for budget in budgets:
        class_sheet(runs[budget], classes, out / f"classes_{budget}.jpg")
    timings["class visualizations (MACO, Fourier, pixel; both budgets in one run)"] = time.perf_counter() - start

    # Part 4 runs before the spectra so that Horama's images join the full-budget panel.
    horama_note = None
    if args.skip_horama:
        horama_note = "skipped (--skip-horama)"
    else:
        from horama_runner import horama_class_images

        start = time.perf_counter()
        try:
            runs["full"]["horama"] = horama_class_images(model, classes, steps=args.full_steps,
                                                         image_size=args.image_size, crops=args.crops, device=device)
            seconds["full"]["horama"] = time.perf_counter() - start
            save_sheet(thumbnails(runs["full"]["horama"]), [IMAGENET_CLASSES[c] for c in classes],
                       out / "horama_full.jpg", cols=len(classes))
        except ImportError as error:
            horama_note = f"not importable ({error})"
        timings["Horama 0.3.0 (full budget)"] = time.perf_counter() - start

    # Part 1: spectra.
    start = time.perf_counter()
    natural, photos = natural_spectrum(args.image_size, band)
    spectra = {b: {**{m: image_spectrum(x, band) for m, x in runs[b].items()}, f"photos ({len(photos)})": natural}
               for b in budgets}
    plot_spectra({f"{b} budget: {budgets[b]} steps, {args.image_size}², {args.crops} crops, K={len(classes)}":
                  spectra[b] for b in budgets}, band, out / "spectra.png")
    timings["spectra"] = time.perf_counter() - start

    # Part 2 (and 4): recognition.
    start = time.perf_counter()
    judges = {j: model if j == args.model else models.load(j, device=device) for j in (args.model, *JUDGES_OF[args.model])}
    for judge in judges.values():  # fp32 judges; channels-last is a layout only, 1.3-1.8x faster on the CPU
        judge.to(memory_format=torch.channels_last if device.type == "cpu" else torch.contiguous_format)
    rates = {b: {m: {j: recognition(jm, x, classes, crops=args.judge_crops, size=models.default_input_size(j))
                     for j, jm in judges.items()} for m, x in runs[b].items()} for b in budgets}
    timings["recognition (3 judges)"] = time.perf_counter() - start

    # Part 3: deep units, full budget.
    start = time.perf_counter()
    widths = {layer.name: layer.shape[1] for layer in activations.list_layers(model)}
    deep = {}
    for layer in args.layers:
        units = np.linspace(0, widths[layer] - 1, args.channels).round().astype(int).tolist()
        images, deep[layer] = [], {"channels": units}
        for method in ("maco", "fourier"):
            result = visualize(model, [channel(layer, c) for c in units], param=method, steps=args.full_steps,
                               **options)
            images.append(result.images)
            spectrum = image_spectrum(result.images, band)
            deep[layer][method] = {"score": result.scores.mean().item(), "seconds": result.seconds,
                                   "hf": high_frequency_fraction(spectrum), "slope": float(spectrum.slope[0])}
            print(f"{layer} {method}: mean score {deep[layer][method]['score']:.3g}", flush=True)
        save_sheet(torch.cat(images), [f"{m} c{c}" for m in ("maco", "fourier") for c in units],
                   out / f"deep_{layer.replace('.', '_')}.jpg", cols=len(units))
    timings["deep units (MACO, Fourier)"] = time.perf_counter() - start

    summary = {b: {m: {"slope": float(s.slope[0]), "hf": high_frequency_fraction(s)} for m, s in spectra[b].items()}
               for b in budgets}
    data.update(total=time.perf_counter() - begin, timings=timings, seconds=seconds, rates=rates, deep=deep,
                photos=photos, horama=horama_note, spectra=summary)
    with open(out / "fidelity.json", "w") as f:
        json.dump(data, f, indent=1)
    report = write_report(args, data, device, band)
    print(f"wrote {report}")
    return report


def run_beyond(args, command: str) -> Path:
    """The inversion, diversity and accentuation parts (`beyond_one_image`), to OUT/beyond.md."""
    begin = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    model = models.load("efficientnet_lite0", device=device)
    judge = models.load("efficientnet_lite2", device=device)
    judge_size = models.default_input_size("efficientnet_lite2")
    options = dict(crops=args.crops, device=device, amp=resolve_amp("auto", device), progress=False,
                   batch_size=args.batch_size)
    photos, names = beyond.shipped_photos(args.image_size)
    photos = photos.to(device)
    data = {"command": command, "args": vars(args), "timings": {}}
    if "inversion" in args.parts:
        start = time.perf_counter()
        data["inversion"] = beyond.inversion_part(model, judge, judge_size, photos, names, args.layers,
                                                  steps=args.full_steps, options=options, out=out)
        data["timings"]["inversion"] = time.perf_counter() - start
    if "diversity" in args.parts:
        start = time.perf_counter()
        width = {layer.name: layer.shape[1] for layer in activations.list_layers(model)}[args.diversity_layer]
        units = np.linspace(0, width - 1, 8).round().astype(int).tolist()
        data["diversity"] = beyond.diversity_part(
            model, judge, judge_size, args.diversity_layer, units, samples=args.samples, weight=args.diversity,
            steps=args.full_steps, options={**options, "image_size": args.image_size}, out=out)
        data["timings"]["diversity"] = time.perf_counter() - start
    if "accentuation" in args.parts:
        start = time.perf_counter()
        reg_layer = None if args.reg_layer == "pixels" else args.reg_layer
        data["accentuation"] = beyond.accentuation_part(
            model, judge, judge_size, photos, names, penalty=args.penalty, reg_layer=reg_layer,
            steps=args.full_steps, options=options, out=out)
        data["timings"]["accentuation"] = time.perf_counter() - start
    data["total"] = time.perf_counter() - begin
    with open(out / "beyond.json", "w") as f:
        json.dump(data, f, indent=1)
    path = write_beyond_report(out, data, device)
    print(f"wrote {path}")
    return path


def write_beyond_report(out: Path, data: dict, device: torch.device) -> Path:
    """OUT/beyond.md from run_beyond's data (also as read back from beyond.json)."""
    args = data["args"]
    amp = "bf16 autocast" if resolve_amp("auto", device) is not None else "fp32"
    settings = {"steps": (args["full_steps"], RenderSettings().steps), "crops per step": (args["crops"], RenderSettings().crops),
                "image side": (args["image_size"], RenderSettings().image_size[0])}
    described = ", ".join(f"{name} {value}" + ("" if value == default else f" (the library's default: {default})")
                          for name, (value, default) in settings.items())
    lines = [
        "# Beyond one image per unit: inversion, diversity, accentuation", "",
        f"Command: `{data['command']}`", "",
        f"- machine: {machine(device)}; torch {torch.__version__}; lite0 in {amp}, batch size {args['batch_size']}",
        f"- every run: {described}; judged by EfficientNet-Lite2 (fp32), which made none of the images",
        f"- wall time {data['total'] / 60:.1f} min in all, by part:", "",
        table(["part", "seconds"], [[k, f"{v:.0f}"] for k, v in data["timings"].items()]), "",
        *beyond.report_sections(data, table)]
    path = out / "beyond.md"
    path.write_text("\n".join(lines))
    return path


def write_report(args, data: dict, device: torch.device, band) -> Path:
    out, budgets, classes = Path(args.out), data["budgets"], data["classes"]
    spectra, rates, seconds, deep = data["spectra"], data["rates"], data["seconds"], data["deep"]
    setup = f"{args.image_size}², {args.crops} crops per step, K = {len(classes)} {args.model} class logits"
    amp = ("bf16 autocast" if resolve_amp("auto", device) is not None else "fp32") + \
        (", channels-last" if device.type == "cpu" else "")
    lines = [
        "# MACO fidelity: MACO vs the classic Fourier parameterization, pixels and Horama 0.3.0", "",
        f"Command: `{data['command']}`", "",
        f"- machine: {machine(device)}; torch {torch.__version__}; our engine in {amp}, batch size {args.batch_size}",
        f"- budgets: full = {budgets['full']} steps, low = {budgets['low']} steps (the same runs after "
        f"{budgets['low']} updates: the learning rate is constant); {setup}",
        f"- classes: {', '.join(f'{c} {IMAGENET_CLASSES[c]}' for c in classes)}",
        "- every method of ours uses the same crops (box 25–100% of the side, one generator per unit and seed) "
        "and noise; Horama runs as published (its own crops, lr and schedule)",
        f"- wall time {data['total'] / 60:.1f} min in all (models loading and a warm-up included), by part:", "",
        table(["part", "seconds"], [[k, f"{v:.0f}"] for k, v in data["timings"].items()]), "",
        "## 1. Power spectra", "",
        f"Mean radially averaged luminance power of the K visualizations, and of {args.image_size}² "
        f"native-resolution windows of the photos behind the default spectrum ({', '.join(data['photos'])}; "
        f"each photo weighs the same). Slopes are log-log fits over {band[0]}–{band[1]} cycles/px (shaded; "
        "`diagnostics.DEFAULT_BAND`): one decade that starts a few rings above DC, where the scene layout "
        "rather than texture sets the power, and ends before the top octave that the high-frequency share "
        f"measures on its own. High-frequency share: power above {HIGH_FREQUENCY} cycles/px "
        "over all power up to 0.5.", "",
        "![spectra](spectra.png)", "",
        table(["method", *[f"slope ({b}, {budgets[b]} steps)" for b in budgets],
               *[f"HF share ({b})" for b in budgets]],
              [[m, *[f"{spectra[b][m]['slope']:+.2f}" if m in spectra[b] else "–" for b in budgets],
                *[f"{spectra[b][m]['hf']:.2%}" if m in spectra[b] else "–" for b in budgets]]
               for m in spectra["full"]]), "",
        "Class visualizations, one row per method: "
        + ", ".join(f"[{b}](classes_{b}.jpg)" for b in budgets) + ".", "",
        "## 2. Recognition and transfer", "",
        "Rate (over the K classes) of the target class in the top 1 / top 5 of each judge (fp32): probabilities "
        f"averaged over {args.judge_crops} random crops covering 50–100% of the side, and the whole image resized. "
        f"{args.model} made the images; {' and '.join(JUDGES_OF[args.model])} did not.", "",
    ]
    rows = []
    for b in budgets:
        for m, by_judge in rates[b].items():
            for j, r in by_judge.items():
                rows.append([f"{b} ({budgets[b]} steps)", m, j.replace("efficientnet_", ""), pct(r["crops_top1"]),
                             pct(r["crops_top5"]), pct(r["whole_top1"]), pct(r["whole_top5"])])
    lines += [table(["budget", "method", "judge", "top-1 crops", "top-5 crops", "top-1 whole", "top-5 whole"], rows),
              "", "## 3. Deep units", "",
              "The seed reports that the classic method fails past the middle of a network. Channels (evenly "
              "spread over each layer) at the full budget, MACO in the top row, Fourier below. Score: the channel's "
              "mean activation on the final image, averaged over the fixed evaluation crops and the channels; "
              "both methods see the same crops.", ""]
    rows = [[layer, m, f"{d[m]['score']:.3g}", f"{d[m]['hf']:.2%}", f"{d[m]['slope']:+.2f}", f"{d[m]['seconds']:.0f}"]
            for layer, d in deep.items() for m in ("maco", "fourier")]
    lines += [table(["layer", "method", "mean score", "HF share", "slope", "seconds"], rows), ""]
    for layer, d in deep.items():
        lines += [f"`{layer}`, channels {', '.join(map(str, d['channels']))}:", "",
                  f"![{layer}](deep_{layer.replace('.', '_')}.jpg)", ""]
    lines += ["## 4. Against Horama 0.3.0", ""]
    if data["horama"]:
        lines += [f"Horama: {data['horama']}.", ""]
    else:
        k, steps = len(classes), budgets["full"]
        other = JUDGES_OF[args.model][1]  # the judge of another family for Lite0, of the same for MobileNetV2
        rows = []
        for m in ("maco", "horama"):
            r0, r2 = rates["full"][m][args.model], rates["full"][m][other]
            rows.append([("ours (MACO, batched)" if m == "maco" else "Horama 0.3.0 (one class at a time, fp32)"),
                         f"{seconds['full'][m]:.0f}", f"{seconds['full'][m] / k:.1f}",
                         pct(r0["crops_top1"]), pct(r0["crops_top5"]), pct(r0["whole_top1"]),
                         pct(r2["crops_top1"]), pct(r2["crops_top5"])])
        lines += [f"The same K = {k} classes, {steps} steps, {args.image_size}², {args.crops} crops "
                  f"([Horama's images](horama_full.jpg)); our time is with batch size {args.batch_size}.", "",
                  table(["run", "wall s", "s per class", "maker top-1 crops", "maker top-5 crops",
                         "maker top-1 whole", f"{other} top-1 crops", f"{other} top-5 crops"], rows), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    main()
