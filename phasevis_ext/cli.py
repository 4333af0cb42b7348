"""The `phasevis` command line.

Exit codes: 0 success; 1 an unexpected internal error; 2 bad arguments or unusable input
(unknown layer or model, unreadable file, invalid option); 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DEMO_TARGETS = "logit:1,9,130,207,291,323,417,980"


def _add_visualize_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `visualize` and `atlas`: how each unit is rendered."""
    p.add_argument("--model", default="efficientnet_lite0",
                   help="efficientnet_lite0|1|2, torchvision:NAME or timm:NAME (default: %(default)s)")
    p.add_argument("--param", default="maco", choices=("maco", "fourier", "pixel"), help="image parameterization")
    p.add_argument("--steps", type=int, default=256, help="optimization steps per unit (default: %(default)s)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: per param, 1.0 for maco)")
    p.add_argument("--optimizer", default="nadam", choices=("nadam", "adam"))
    p.add_argument("--image-size", type=int, default=256, help="side of the rendered image (default: %(default)s)")
    p.add_argument("--input-size", type=int, default=None, help="side of the crops fed to the model (default: the model's)")
    p.add_argument("--crops", type=int, default=6, help="random crops per image per step (default: %(default)s)")
    p.add_argument("--box-size", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="crop side range as fractions of the image side")
    p.add_argument("--noise", type=float, default=None, help="std of the Gaussian noise added to crops")
    p.add_argument("--spectrum", default="default",
                   help="MACO magnitude: 'default' (shipped), 'imagenet' (needs the xplique 2.0.2 wheel) or a .npy/.npz path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8, help="units optimized together (default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--amp", default="auto", choices=("auto", "none", "bfloat16", "float16"),
                   help="autocast for the model pass; auto: bfloat16 on CPUs with native bf16 (measured 2x faster "
                        "for lite0), none elsewhere (fp32 was faster than bf16 on an H100)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--memory-budget", type=float, default=None, metavar="GIB",
                   help="memory the run may use, in GiB (default: most of what is free); the batch shrinks to fit")
    p.add_argument("--model-batch", type=int, default=None, metavar="CROPS",
                   help="about how many crops per model pass, in whole units (default: 12 on CPU, all on GPU)")
    p.add_argument("--no-fold-batchnorm", action="store_true",
                   help="keep BatchNorms as they are (default: fold them into the convs before them, in a copy)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phasevis",
        description="MACO feature visualization: images that drive a model's units, made in batches.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 bad arguments or input, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    vis = sub.add_parser("visualize", help="visualize units of a model and write a gallery",
                         description="Targets: 'logit:1,207', 'LAYER:0-15', 'LAYER:3', 'LAYER' (whole layer). "
                                     "The gallery (index.html, PNGs, RGBA PNGs, contact sheet, results.json) goes to --out.")
    vis.add_argument("targets", nargs="+", help="units to visualize, e.g. logit:1,207 _blocks.15:0-7")
    vis.add_argument("--out", required=True, help="output folder")
    _add_visualize_options(vis)

    layers = sub.add_parser("layers", help="list a model's hookable layers with their output shapes")
    layers.add_argument("--model", default="efficientnet_lite0")
    layers.add_argument("--input-size", type=int, default=None)

    spectrum = sub.add_parser("spectrum", help="compute or plot natural-image magnitude spectra")
    spec_sub = spectrum.add_subparsers(dest="spectrum_command", required=True)
    compute = spec_sub.add_parser("compute", help="average |rfft2| of a folder of images (decorrelated basis)")
    compute.add_argument("--images", required=True, help="folder of images")
    compute.add_argument("--size", default="512", help="N or HxW (default: %(default)s)")
    compute.add_argument("--out", required=True, help=".npz file to write")
    plot = spec_sub.add_parser("plot", help="log-log radial profiles of spectrum files")
    plot.add_argument("files", nargs="+", help=".npy/.npz spectra")
    plot.add_argument("--out", required=True, help="PNG to write")

    from .atlas import add_atlas_parser

    add_atlas_parser(sub)

    demo = sub.add_parser("demo", help="the README's main job: 8 ImageNet classes of the embedded model")
    demo.add_argument("--out", default="demo-out")
    demo.add_argument("--steps", type=int, default=96)
    demo.add_argument("--image-size", type=int, default=224)
    return parser


def _amp(name: str, device: str):
    import torch

    if name == "auto":
        native_bf16 = device == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        return torch.bfloat16 if native_bf16 else None
    return {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def visualize_kwargs(args) -> dict:
    """visualize() keyword arguments from the shared options (None means the library default)."""
    import torch

    from .spectrum import natural_magnitude

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = dict(param=args.param, steps=args.steps, lr=args.lr, optimizer=args.optimizer, image_size=args.image_size,
                  input_size=args.input_size, crops=args.crops, seed=args.seed, device=device, amp=_amp(args.amp, device),
                  batch_size=args.batch_size, progress=not args.no_progress)
    if args.box_size is not None:
        kwargs["box_size"] = tuple(args.box_size)
    if args.noise is not None:
        kwargs["noise"] = args.noise
    if getattr(args, "memory_budget", None) is not None:
        kwargs["memory_budget"] = int(args.memory_budget * 1024**3)
    if getattr(args, "model_batch", None) is not None:
        kwargs["model_batch"] = args.model_batch
    if getattr(args, "no_fold_batchnorm", False):
        kwargs["fold_batchnorm"] = False
    if args.param == "maco" and args.spectrum != "default":
        size = (args.image_size, args.image_size)
        kwargs["param_kwargs"] = {"magnitude": natural_magnitude(size, source=args.spectrum, device=device)}
    return {k: v for k, v in kwargs.items() if v is not None or k == "amp"}


def cmd_visualize(args) -> int:
    from . import export, models
    from .imagenet_classes import IMAGENET_CLASSES
    from .render import VisualizationInterrupted, visualize

    kwargs = visualize_kwargs(args)
    model = models.load(args.model, device=kwargs["device"])
    try:
        result = visualize(model, list(args.targets), **kwargs)
    except VisualizationInterrupted as interrupted:
        # Keep what was done: finished units, and the current chunk's images marked partial.
        result = interrupted.result
        result.settings["model"] = args.model
        index = export.write_gallery(result, args.out, class_names=IMAGENET_CLASSES)
        partial = int(result.partial.sum())
        print(f"phasevis: interrupted; {len(result) - partial} finished and {partial} partial units in {index}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    result.settings["model"] = args.model
    index = export.write_gallery(result, args.out, class_names=IMAGENET_CLASSES)
    print(f"{len(result)} units in {result.seconds:.1f} s; gallery: {index}")
    return EXIT_OK


def cmd_layers(args) -> int:
    from . import models

    model = models.load(args.model)
    print(models.format_layers(models.list_layers(model, args.input_size)))
    return EXIT_OK


def cmd_spectrum(args) -> int:
    from . import spectrum

    if args.spectrum_command == "compute":
        path = spectrum.cli_compute(args.images, args.size, args.out)
    else:
        path = spectrum.cli_plot(args.files, args.out)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_demo(args) -> int:
    argv = ["visualize", DEMO_TARGETS, "--out", args.out, "--steps", str(args.steps),
            "--image-size", str(args.image_size)]
    return main(argv)


def cmd_atlas(args) -> int:
    from . import atlas

    return atlas.cmd_atlas(args)


COMMANDS = {"visualize": cmd_visualize, "layers": cmd_layers, "spectrum": cmd_spectrum, "demo": cmd_demo,
            "atlas": cmd_atlas}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .allocator import tune_glibc_malloc

    tune_glibc_malloc()  # our own process: keep step buffers instead of re-faulting them each step
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("phasevis: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, FileNotFoundError, ImportError, OSError) as error:
        print(f"phasevis: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
