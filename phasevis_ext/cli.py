"""The `phasevis` command line: every subcommand's arguments, and how failures end.

Exit codes: 0 success; 1 an internal error (a bug: one line, where it happened, and how to see
the whole traceback); 2 bad arguments or unusable input (checks.InvalidArgument: unknown layer
or model, unreadable file, invalid option; a missing file; a missing optional package);
130 interrupted (Ctrl-C).

Modules are imported when their command runs, so `phasevis layers` does not load the atlas.
`python -m phasevis_ext` runs this too, which is the form torchrun takes.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from .checks import RANGE_HELP, InvalidArgument

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DEMO_TARGETS = "logit:1,9,130,207,291,323,417,980"


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error of every other bad input (its usage block is in --help)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that loads a model."""
    p.add_argument("--model", default="efficientnet_lite0",
                   help="efficientnet_lite0|1|2, mobilenet_v2, torchvision:NAME, timm:NAME, path/to/file.py:factory (a function "
                        "returning an nn.Module) or a TorchScript file model.pt (default: %(default)s)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="state dict or checkpoint (under 'state_dict', 'model', ...; DDP 'module.' keys too), "
                        "loaded strictly")
    p.add_argument("--num-classes", type=int, default=None, help="number of logits (the classifier's size), where it differs from the zoo's")
    p.add_argument("--input-channels", type=int, default=None, metavar="C",
                   help="channels of the model's input (default: inferred from its first convolution or patch "
                        "embedding); torchvision and timm models are built for them")
    norm = p.add_mutually_exclusive_group()
    norm.add_argument("--normalize", type=float, nargs="+", default=None, metavar="MEAN... STD...",
                      help="per-channel mean values then std values the model expects its input normalized "
                           "with (default: the named model's own; none for factories and TorchScript)")
    norm.add_argument("--no-normalize", action="store_true", help="feed images in [0, 1] as they are")
    p.add_argument("--input-size", type=int, default=None, help="side of the crops fed to the model (default: the model's)")


def _add_photo_command(sub, name: str, positional: tuple[str, str], *, help: str, description: str):
    """A command that reads a folder of photos: its positional argument, --images and --out."""
    p = sub.add_parser(name, help=help, description="Each photo of --images is centre-cropped and resized to "
                                                    "--image-size, then " + description)
    p.add_argument(positional[0], help=positional[1])
    p.add_argument("--images", required=True, help="a folder of images (PNG, JPEG, TIFF, .npy)")
    p.add_argument("--out", required=True, help="output folder")
    return p


def _add_visualize_options(p: argparse.ArgumentParser, *, params=None, samples: bool = True,
                           class_names: bool = True) -> None:
    """Options shared by `visualize`, `atlas`, `accentuate` and `invert`: the model's, and how each
    unit is rendered (RenderSettings' fields). A command offers only what it honours: `params` it
    can run, several samples per unit, logits to name."""
    from .render.settings import add_arguments

    _add_model_options(p)
    exclude = {"input_size"}  # a model option above
    if not samples:
        exclude |= {"samples", "diversity", "diversity_layer"}
    add_arguments(p, exclude=exclude, choices={"param": params} if params else None)
    if class_names:
        p.add_argument("--class-names", default=None, metavar="FILE",
                       help="names of the model's logits for the gallery and records: one a line, or a JSON list, "
                            "as many as the model has logits (default: ImageNet's for ImageNet classifiers, "
                            "else none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="phasevis",
        description="MACO feature visualization: images that drive a model's units, made in batches.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 bad arguments or input, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    for add_command in (_add_visualize_command, _add_accentuate_command, _add_invert_command, _add_layers_command,
                        _add_spectrum_command, _add_atlas_command, _add_exemplars_command,
                        _add_activation_atlas_command, _add_demo_command):
        add_command(sub)
    return parser


def _add_visualize_command(sub) -> None:
    vis = sub.add_parser("visualize", help="visualize units of a model and write a gallery",
                         description="Targets: 'logit:1,207', 'LAYER:0-15' (inclusive), 'LAYER:0:16' (half-open), "
                                     "'LAYER:3', 'neuron:LAYER:3', 'LAYER' (the whole layer). "
                                     "The gallery (index.html, PNGs, RGBA PNGs, contact sheet, results.json) goes to --out.")
    vis.add_argument("targets", nargs="+", help="units to visualize, e.g. logit:1,207 _blocks.15:0-7")
    vis.add_argument("--out", required=True, help="output folder")
    _add_visualize_options(vis)


def _add_accentuate_command(sub) -> None:
    acc = _add_photo_command(sub, "accentuate", ("target", "one unit for every photo, e.g. logit:207 or _blocks.15:3"),
                             help="accentuate a unit in real photos (feature accentuation)",
                             description="pushed toward TARGET while a penalty keeps it near the photo. The gallery "
                                         "shows photo, start and result side by side.")
    acc.add_argument("--magnitude", default="photo", choices=("photo", "natural"),
                     help="maco's magnitude: the photo's own or the natural-image one (default: %(default)s)")
    acc.add_argument("--penalty", type=float, help="weight of the distance to the start (default: 100 in pixels, "
                                                   "10 with --reg-layer)")
    acc.add_argument("--reg-layer", default=None, metavar="LAYER",
                     help="measure that distance in this layer's activations (default: in pixels)")
    from .guided.accentuation import ACCENTUATION_PARAMS

    _add_visualize_options(acc, params=ACCENTUATION_PARAMS, samples=False)


def _add_invert_command(sub) -> None:
    inv = _add_photo_command(sub, "invert", ("layer", "layer name (`phasevis layers` lists them)"),
                             help="invert real photos at a layer (feature inversion)",
                             description="matched from a random start: the image whose LAYER activations are "
                                         "those of the photo.")
    inv.add_argument("--similarity", default="cosine", choices=("cosine", "l2"),
                     help="how activations are matched (default: %(default)s)")
    _add_visualize_options(inv, samples=False, class_names=False)


def _add_layers_command(sub) -> None:
    layers = sub.add_parser("layers", help="list a model's hookable layers with their output shapes")
    _add_model_options(layers)


def _add_spectrum_command(sub) -> None:
    spectrum = sub.add_parser("spectrum", help="compute or plot natural-image magnitude spectra")
    spec_sub = spectrum.add_subparsers(dest="spectrum_command", required=True)
    compute = spec_sub.add_parser(
        "compute", help="MACO's magnitude and colour matrix from a folder of your images",
        description="Reads PNG, JPEG, 8/16-bit TIFF and .npy ((H, W), (C, H, W) or (N, C, H, W) stacks) with any "
                    "number of channels, and writes the mean |rfft2| in the images' own decorrelated basis with "
                    "its C x C colour matrix (the square root of their channel covariance). Pass the file to "
                    "visualize or atlas with --spectrum.")
    compute.add_argument("--images", required=True, help="folder of images")
    compute.add_argument("--size", default="512", help="N or HxW (default: %(default)s)")
    compute.add_argument("--channels", type=int, default=None,
                         help="channels per image (default: those of the first image; 3 turns greyscale into RGB)")
    compute.add_argument("--color-matrix", default="data", choices=("data", "default"),
                         help="data: from the images' covariance; default: ImageNet's for RGB, identity otherwise")
    compute.add_argument("--out", required=True, help=".npz file to write")
    plot = spec_sub.add_parser("plot", help="log-log radial profiles of spectrum files")
    plot.add_argument("files", nargs="+", help=".npy/.npz spectra")
    plot.add_argument("--out", required=True, help="PNG to write")


def _add_atlas_command(sub) -> None:
    atlas = sub.add_parser(
        "atlas", help="visualize every unit of layers or logits, resumable, across GPUs with torchrun",
        description="Every channel of --layers (or the --channels range) and the --logits range, written to --out "
                    "with an index and an offline gallery. Rerunning resumes. Under torchrun the units are split "
                    "between the processes, e.g. `torchrun --nproc-per-node=8 -m phasevis_ext atlas ...`.")
    _add_unit_options(atlas)
    atlas.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    atlas.add_argument("--new-run", action="store_true",
                       help="archive what --out holds (to --out/archive/TIMESTAMP) and start over")
    atlas.add_argument("--images", default=None,
                       help="a folder of images: each unit's dataset exemplars go beside its image (see `exemplars`)")
    atlas.add_argument("--top", type=int, default=9, help="dataset exemplars per unit with --images (default: %(default)s)")
    _add_visualize_options(atlas)


def _add_unit_options(p: argparse.ArgumentParser) -> None:
    """--layers, --channels and --logits: the units of a run over many of them."""
    p.add_argument("--layers", default="", help="comma-separated layer names, e.g. _blocks.10,_blocks.15")
    p.add_argument("--channels", default=None, help=f"each layer's channels (default: all); {RANGE_HELP}")
    p.add_argument("--logits", default=None, help="the model's classes, ':' for all (default: none)")


def _add_exemplars_command(sub) -> None:
    ex = sub.add_parser(
        "exemplars", help="the images of a folder that drive each unit most, with their patches",
        description="One streaming pass over --images (PNG, JPEG, TIFF, .npy, recursively), each image as the model's "
                    "evaluation transform shows it. Writes --out/exemplars.json, the receptive-field patches and an "
                    "offline index.html. Rerunning resumes; under torchrun the images are split between processes.")
    ex.add_argument("--images", required=True, help="a folder of images")
    _add_unit_options(ex)
    ex.add_argument("--neurons", default=None,
                    help="each layer's channels read at the layer's centre, as neuron: targets (default: none)")
    ex.add_argument("--top", type=int, default=9, help="images kept per unit (default: %(default)s)")
    ex.add_argument("--batch-size", type=int, default=32, help="images per model pass (default: %(default)s)")
    ex.add_argument("--workers", type=int, default=None,
                    help="DataLoader worker processes (default: one per core but one, at most 4)")
    ex.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    ex.add_argument("--new-run", action="store_true", help="delete what --out holds and start over")
    ex.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when there is one)")
    ex.add_argument("--class-names", default=None, metavar="FILE", help="names of the model's logits")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_model_options(ex)


def _add_activation_atlas_command(sub) -> None:
    aa = sub.add_parser(
        "activation-atlas", help="a map of a layer over a folder of images, one rendered image per cell",
        description="Samples --samples spatial activation vectors of --layer over --images, maps them to 2-D with "
                    "UMAP, cuts the map into --grid x --grid cells and renders the mean vector of every cell with "
                    "at least --min-count samples (a direction objective, MACO by default). Writes atlas.png, "
                    "cells.json and an offline index.html to --out.")
    aa.add_argument("--images", required=True, help="a folder of images (PNG, JPEG, TIFF, .npy)")
    aa.add_argument("--layer", required=True, help="the layer to map")
    aa.add_argument("--grid", type=int, default=16, help="cells per side (default: %(default)s)")
    aa.add_argument("--min-count", type=int, default=3, help="samples a cell needs to be drawn (default: %(default)s)")
    aa.add_argument("--samples", type=int, default=20000, help="activation vectors in all (default: %(default)s)")
    aa.add_argument("--image-batch", type=int, default=32, help="images per model pass while sampling "
                                                                "(default: %(default)s)")
    aa.add_argument("--workers", type=int, default=None, help="DataLoader worker processes")
    aa.add_argument("--out", required=True, help="output folder")
    _add_visualize_options(aa, samples=False)


def _add_demo_command(sub) -> None:
    demo = sub.add_parser("demo", help="the README's main job: 8 ImageNet classes of the embedded model")
    demo.add_argument("--out", default="demo-out")
    demo.add_argument("--model", default="efficientnet_lite0", choices=("efficientnet_lite0", "mobilenet_v2"),
                      help="the shipped model to visualize (default: %(default)s)")
    demo.add_argument("--steps", type=int, default=None, help="(default: the library's, as for visualize)")
    demo.add_argument("--image-size", type=int, default=None, help="(default: the library's, as for visualize)")


def load_model(args, device=None):
    """The model the shared model options describe."""
    from .checks import positive_int
    from .model import loading as models

    if args.input_size is not None:
        positive_int(args.input_size, "--input-size")
    normalize = "default"
    if args.no_normalize:
        normalize = None
    elif args.normalize is not None:
        values = args.normalize
        if len(values) % 2:
            raise InvalidArgument(f"--normalize: expected MEAN... STD... (as many of each), got {len(values)} values")
        normalize = (values[: len(values) // 2], values[len(values) // 2:])
    zoo = args.model.startswith(("torchvision:", "timm:"))
    return models.load(args.model, weights=args.weights, num_classes=args.num_classes,
                       channels=args.input_channels if zoo else None, normalize=normalize, device=device)


def render_overrides(args) -> dict:
    """RenderSettings fields the command line was given (the others keep the library's defaults),
    with the device the command runs on."""
    import torch

    from .render.settings import overrides_from_args

    overrides = overrides_from_args(args)
    overrides.setdefault("device", "cuda" if torch.cuda.is_available() else "cpu")
    if args.input_size is not None:
        overrides["input_size"] = args.input_size
    if args.input_channels is not None:
        overrides["channels"] = args.input_channels
    return overrides


def _class_names(args, model):
    """The names of --class-names, checked against the model's logits; None without it (the gallery
    then names an ImageNet classifier's logits, and no other model's)."""
    if getattr(args, "class_names", None) is None:
        return None
    from .io.class_names import class_names_for, logit_count
    from .model import loading as models

    channels = models.input_channels(model, args.input_channels, args.input_size)
    count = logit_count(model, channels, args.input_size or models.default_input_size(model))
    return class_names_for(model, args.class_names, count)


def _write_gallery(result, args, class_names, **extra) -> str:
    """The gallery of a finished or interrupted run, with the command's own record of it."""
    import os.path

    from .io import export

    result.settings["model"] = args.model
    if class_names is not None:
        result.settings["class_names"] = {"file": os.path.basename(args.class_names)}
    result.settings.update(extra)
    return export.write_gallery(result, args.out, class_names=class_names)


def _interrupted(result, args, class_names, **extra) -> int:
    """Ctrl-C: keep what was done, the finished units and the current chunk's images marked partial."""
    index = _write_gallery(result, args, class_names, **extra)
    partial = int(result.partial.sum())
    print(f"phasevis: interrupted; {len(result) - partial} finished and {partial} partial units in {index}",
          file=sys.stderr)
    return EXIT_INTERRUPTED


def cmd_visualize(args) -> int:
    from .render.results import VisualizationInterrupted
    from .render.visualize import visualize

    overrides = render_overrides(args)
    model = load_model(args, overrides["device"])
    class_names = _class_names(args, model)
    try:
        result = visualize(model, list(args.targets), progress=not args.no_progress, **overrides)
    except VisualizationInterrupted as interrupted:
        return _interrupted(interrupted.result, args, class_names)
    index = _write_gallery(result, args, class_names)
    print(f"{len(result)} units in {result.seconds:.1f} s; gallery: {index}")
    return EXIT_OK


def _photos(args):
    """The --images folder as a (N, C, H, W) batch at --image-size, for the model's channel count."""
    import numpy as np
    import torch

    from .checks import image_size
    from .io import images as image_io
    from .render.settings import RenderSettings

    size = RenderSettings().image_size if args.image_size is None else image_size(args.image_size, "image_size",
                                                                                    minimum=8)
    channels = args.input_channels or 3
    named = [(name, image_io.center_crop_resize(array, size))
             for name, array in image_io.iter_images(args.images, channels=channels)]
    if not named:
        raise InvalidArgument(f"--images: no readable image in {args.images}")
    batch = torch.from_numpy(np.stack([array for _, array in named])).permute(0, 3, 1, 2).float()
    return [name for name, _ in named], batch.clamp(0, 1)


def _guided(args, run) -> int:
    from .render.results import VisualizationInterrupted

    overrides = render_overrides(args)
    overrides.pop("image_size", None)  # the photos were resized to it
    names, photos = _photos(args)
    model = load_model(args, overrides["device"])
    class_names = _class_names(args, model)
    try:
        result = run(model, photos, {**overrides, "progress": not args.no_progress})
    except VisualizationInterrupted as interrupted:
        return _interrupted(interrupted.result, args, class_names, images=names[:len(interrupted.result)])
    index = _write_gallery(result, args, class_names, images=names)
    print(f"{len(result)} images in {result.seconds:.1f} s; gallery: {index}")
    return EXIT_OK


def cmd_accentuate(args) -> int:
    from .guided.accentuation import accentuate

    return _guided(args, lambda model, photos, kwargs: accentuate(
        model, photos, args.target, magnitude=args.magnitude, penalty=args.penalty, reg_layer=args.reg_layer,
        **kwargs))


def cmd_invert(args) -> int:
    from .guided.inversion import invert

    return _guided(args, lambda model, photos, kwargs: invert(model, photos, args.layer,
                                                               similarity_kind=args.similarity, **kwargs))


def cmd_layers(args) -> int:
    from .model import activations

    model = load_model(args)
    print(activations.format_layers(activations.list_layers(model, args.input_size, args.input_channels)))
    return EXIT_OK


def cmd_spectrum(args) -> int:
    from .param import estimation

    if args.spectrum_command == "compute":
        path = estimation.cli_compute(args.images, args.size, args.out, channels=args.channels,
                                    color_matrix=args.color_matrix, progress=sys.stderr.isatty())
    else:
        path = estimation.cli_plot(args.files, args.out)
    print(f"wrote {path}")
    return EXIT_OK


def cmd_demo(args) -> int:
    argv = ["visualize", DEMO_TARGETS, "--out", args.out, "--model", args.model]
    for flag, value in (("--steps", args.steps), ("--image-size", args.image_size)):
        if value is not None:
            argv += [flag, str(value)]
    return main(argv)


def cmd_atlas(args) -> int:
    from . import atlas

    overrides = render_overrides(args)
    model = load_model(args)
    result = atlas.run(model, args.out, layers=args.layers, channels=args.channels, logits=args.logits,
                       new_run=args.new_run, progress=not args.no_progress, model_name=args.model,
                       class_names=args.class_names, images=args.images, exemplars_top=args.top, **overrides)
    if result.rank == 0:
        print(f"{result.units} units: {result.skipped} already done, {result.units - result.skipped} rendered "
              f"by {result.world_size} process(es); gallery: {result.gallery}")
    return EXIT_OK


def cmd_exemplars(args) -> int:
    from .exemplars import exemplars

    result = exemplars(load_model(args), args.images, args.out, layers=args.layers, channels=args.channels,
                       logits=args.logits, neurons=args.neurons, top=args.top, batch_size=args.batch_size, workers=args.workers,
                       input_size=args.input_size, device=args.device, new_run=args.new_run,
                       class_names=args.class_names, progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":
        skipped = sum(len(names) for names in result.skipped.values())
        print(f"{len(result.units)} units; {skipped} files skipped; index: {result.out_dir / 'index.html'}")
    return EXIT_OK


def cmd_activation_atlas(args) -> int:
    from .activation_atlas import activation_atlas

    overrides = render_overrides(args)
    device = overrides.pop("device")
    input_size = overrides.pop("input_size", None)
    for name in ("channels", "samples"):  # the model's, and this command's own --samples
        overrides.pop(name, None)
    result = activation_atlas(load_model(args), args.images, args.out, layer=args.layer, grid=args.grid,
                              min_count=args.min_count, samples=args.samples, batch_size=args.image_batch,
                              workers=args.workers, input_size=input_size, device=device,
                              class_names=args.class_names, progress=not args.no_progress, render=overrides)
    print(f"{len(result.cells)} cells of a {result.grid}x{result.grid} grid; atlas: {result.out_dir / 'index.html'}")
    return EXIT_OK


COMMANDS = {"activation-atlas": cmd_activation_atlas, "visualize": cmd_visualize, "accentuate": cmd_accentuate, "invert": cmd_invert, "layers": cmd_layers,
            "spectrum": cmd_spectrum, "demo": cmd_demo, "atlas": cmd_atlas, "exemplars": cmd_exemplars}


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"phasevis: warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning  # a user reads the message, not our source line
    from .allocator import tune_glibc_malloc

    tune_glibc_malloc()  # our own process: keep step buffers instead of re-faulting them each step
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("phasevis: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `phasevis layers | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return EXIT_OK
    except (InvalidArgument, OSError, ImportError) as error:  # OSError: files and folders the user named
        print(f"phasevis: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 - a bug: say so, and where, rather than blame the input
        if os.environ.get("PHASEVIS_TRACEBACK"):
            traceback.print_exc()
        else:
            where = traceback.extract_tb(error.__traceback__)[-1]
            print(f"phasevis: internal error: {type(error).__name__}: {error} (at {os.path.basename(where.filename)}:"
                  f"{where.lineno}; PHASEVIS_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
