"""How units are rendered: `RenderSettings`, the one place where each rendering option has its
name, default, type, range check, help text and JSON form.

`visualize`, the atlas, `accentuate` and `invert` take it (or keyword overrides of it), the
command line's flags are generated from its fields (`add_arguments`, `overrides_from_args`), and
the atlas's run record is its JSON form. A new option is one new field.

The defaults are the best measured point of image quality per second on EfficientNet-Lite0 class
logits, confirmed on classes that were not used to choose them (docs/benchmarks.md, "Quality per
second"; benchmarks/quality_per_second.py).

Checks that need the model (its input size and channels, the device of its weights, the
spectrum's shape at the image size) are `resolved_for(model)`: a RenderSettings whose every value
is concrete, which is what a run records.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import torch
from torch import nn

from .. import checks
from ..checks import InvalidArgument, finite_number, positive_int
from ..cpu_kind import native_bf16
from ..io.records import file_sha256, jsonable
from ..model import loading as models
from ..param.parameterizations import PARAMS, PHASE_SCALE
from ..param.spectrum import natural_spectrum
from .crops import CROP_CENTERS

# Learning rates per parameterization, with NAdam: Horama's lr=1.0 on MACO's phase of std 1, and
# lucid's 0.05 for its spectrum and for pixels. Quick runs on efficientnet_lite0 logits (2 units,
# 48-96 steps) ended within ~25% of each other for maco lr 0.1..1 and fourier lr 0.002..0.05;
# pixel at lr 0.01 reached about half the score of 0.05.
DEFAULT_LR = {"maco": 1.0, "fourier": 0.05, "pixel": 0.05}
# MACO's phase ends cleaner with its step decayed to 0: on the tuning classes (3 seeds), MobileNetV2
# put 96% of lite0's images in its top 5 with cosine against 92% at a constant lr, its mean
# p(class) 0.68 against 0.63 (docs/benchmarks.md, "Lattice and borders"). Not measured for the others.
DEFAULT_LR_SCHEDULE = {"maco": "cosine", "fourier": "constant", "pixel": "constant"}
OPTIMIZERS = {"nadam": torch.optim.NAdam, "adam": torch.optim.Adam}
# The learning rate's factor at step s (from 0) of a run of n steps.
LR_SCHEDULES = {
    "constant": lambda s, n: 1.0,
    "cosine": lambda s, n: 0.5 * (1.0 + math.cos(math.pi * s / n)),  # from lr down to ~0 at the last step
}


def _sliding_boxes(box: tuple[float, float], t: float) -> tuple[float, float]:
    """The range of crop sides at fraction t of the run: its upper half at the start, its lower
    half at the end, sliding linearly."""
    low, high = box
    middle = (low + high) / 2
    return middle - t * (middle - low), high - t * (high - middle)


# The range of crop sides at step s (from 0) of a run of n steps. "shrink" lays out the whole image
# with large crops first and refines detail with small ones last (xplique's MACO also shrinks its
# crops during the run).
BOX_SCHEDULES = {
    "constant": lambda box, s, n: box,
    "shrink": lambda box, s, n: _sliding_boxes(box, s / max(n - 1, 1)),
}
AMP_NAMES = {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _cpu_auto_amp() -> torch.dtype | None:
    """What amp="auto" runs on this CPU: the precision that made lite0's visualize step at the
    defaults fastest on its kind (benchmarks/amp_choice.py; docs/benchmarks.md, "Precision of the
    model pass"): bf16 autocast with AVX-512-bf16 (the EPYCs and the AMX Xeon), with the cheap
    strided depthwise gradient of model/depthwise.py; fp32 where bf16 is emulated (many times
    slower)."""
    return torch.bfloat16 if native_bf16() else None


# What amp="auto" runs, per device type. CUDA runs fp32: bf16 measured faster batched on an H100
# but slower one unit at a time (docs/benchmarks.md).
AUTO_AMP: dict[str, torch.dtype | None] = {"cpu": _cpu_auto_amp(), "cuda": None}
# Crop pixels per model pass on a CPU, 32 crops of 160²: the atlas's 32 crops of 160² ran 1.20x
# faster in one pass than in passes of 12 on the AMX Xeon, 1.07-1.27x on CPU-A, while at 224² 48
# crops in one pass took 1.5x longer than passes of 12 (docs/benchmarks.md, "The batch shape of the model pass").
# At 224² the budget is 16 crops, which a chunk of 8 units x 3 crops splits into two passes of 12.
CPU_PASS_PIXELS = 32 * 160 * 160


def cpu_model_batch(input_size: int) -> int:
    """The default crops per model pass on a CPU for crops of input_size²."""
    return max(1, CPU_PASS_PIXELS // (input_size * input_size))


def resolve_amp(amp, device) -> torch.dtype | None:
    """The autocast dtype of the model pass. "auto": AUTO_AMP for the device's type, None for other
    device types."""
    if isinstance(amp, str):
        if amp == "auto":
            return AUTO_AMP.get(torch.device(device).type)
        if amp not in AMP_NAMES:
            raise InvalidArgument(f"amp must be 'auto', 'none', 'bfloat16', 'float16' or a torch dtype, got {amp!r}")
        return AMP_NAMES[amp]
    if amp is not None and amp not in AMP_NAMES.values():
        raise InvalidArgument(f"amp must be 'auto', None, torch.bfloat16 or torch.float16, got {amp!r}")
    return amp


# ---------------------------------------------------------------------------------------------
# Field checks: each takes the value and returns it normalized, or raises InvalidArgument.


def _one_of(choices, name):
    def check(value):
        if value not in choices:
            raise InvalidArgument(f"{name} must be one of {tuple(choices)}, got {value!r}")
        return value
    return check


def _optional(check):
    return lambda value: None if value is None else check(value)


def _optimizer(value):
    if isinstance(value, str) and value in OPTIMIZERS or not isinstance(value, str) and callable(value):
        return value
    raise InvalidArgument(f"optimizer must be one of {tuple(OPTIMIZERS)} or a callable, got {value!r}")


def _seed(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"seed must be an int, got {value!r}")
    return value


def _flag(name):
    def check(value):
        if not isinstance(value, bool):
            raise InvalidArgument(f"{name} must be True or False, got {value!r}")
        return value
    return check


def _amp(value):
    resolve_amp(value, "cpu")  # the names and dtypes it accepts; "auto" stays until the device is known
    return value


def _normalize(value):
    try:
        mean, std = (tuple(float(v) for v in torch.as_tensor(part, dtype=torch.float64).reshape(-1))
                     for part in value)
    except (TypeError, ValueError, RuntimeError):
        raise InvalidArgument(f"normalize must be (mean, std), each a number or one number per channel, "
                              f"got {value!r}") from None
    if not mean or not std or min(std) <= 0:
        raise InvalidArgument(f"normalize must be (mean, std) with std > 0, got {value!r}")
    return mean, std


def _spectrum(value):
    if value is None or value in ("default", "imagenet") or isinstance(value, (str, os.PathLike)):
        return None if value in (None, "default") else str(value)
    raise InvalidArgument(f"spectrum must be 'default', 'imagenet' or a file, got {value!r}")


def _param_kwargs(value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"param_kwargs must be a dict, got {type(value).__name__}")
    return dict(value)


def _memory_budget(value):
    value = finite_number(value, "memory_budget", positive=True)
    if value < 1:
        raise InvalidArgument(f"memory_budget must be at least 1 byte, got {value!r}")
    return int(value)


def option(default, help: str, check: Callable | None = None, *, flag: bool = True, neutral: bool = False,
           cli: dict | None = None, shown=None):
    """A settings field. check: normalizes a value or raises InvalidArgument. flag: whether the
    command line has it (`--name-with-dashes`), with argparse keywords `cli`. neutral: changes the
    images by rounding at most (device, batch and memory layout), so a resume may change it.
    shown: the default as the help states it, where it is not the field's own."""
    metadata = {"help": help, "check": check, "flag": flag, "neutral": neutral, "cli": cli or {}, "shown": shown}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RenderSettings:
    """Every option of a run (see each field's help, `phasevis visualize --help` shows the same)."""

    param: str = option("maco", "image parameterization", _one_of(PARAMS, "param"), cli={"choices": PARAMS})
    steps: int = option(128, "optimization steps per unit", lambda v: positive_int(v, "steps"), cli={"type": int})
    lr: float | None = option(None, "learning rate (default: per param, 1.0 for maco, 0.05 for fourier and pixel)",
                              _optional(lambda v: finite_number(v, "lr", positive=True)), cli={"type": float})
    lr_schedule: str | None = option(None, "constant, or cosine decay to 0 over the steps (default: per param, "
                                     "cosine for maco, constant for fourier and pixel)",
                                     _optional(_one_of(LR_SCHEDULES, "lr_schedule")),
                                     cli={"choices": tuple(LR_SCHEDULES)})
    optimizer: Any = option("nadam", "nadam, adam, or (in Python) a callable called as optimizer(params, lr=lr) that "
                            "acts elementwise, so that units stay independent", _optimizer,
                            cli={"choices": tuple(OPTIMIZERS)})
    image_size: Any = option(256, "side of the rendered image, or (H, W) in Python",
                             lambda v: checks.image_size(v, "image_size", minimum=8), cli={"type": int})
    input_size: int | None = option(None, "side of the crops fed to the model (default: the model's)",
                                    _optional(lambda v: positive_int(v, "input_size")), cli={"type": int})
    crops: int = option(3, "random crops per image per step", lambda v: positive_int(v, "crops"), cli={"type": int})
    box_size: Any = option((0.25, 1.0), "crop side range as fractions of the image's shorter side",
                           checks.check_box_size, cli={"type": float, "nargs": 2, "metavar": ("LO", "HI")},
                           shown="0.25 1.0")
    box_schedule: str = option("constant", "constant, or crops whose range slides from its upper half to its lower "
                               "half over the run", _one_of(BOX_SCHEDULES, "box_schedule"),
                               cli={"choices": tuple(BOX_SCHEDULES)})
    crop_centers: str = option("gaussian", "how crop centres are drawn: gaussian (0.5 + N(0, 0.15) of the side, "
                               "Horama's) or uniform over the positions where the whole box fits (which shows "
                               "the borders to small crops more often)",
                               _one_of(CROP_CENTERS, "crop_centers"), cli={"choices": CROP_CENTERS})
    noise: float = option(0.0, "std of the Gaussian noise added to each crop",
                          lambda v: finite_number(v, "noise", positive=False), cli={"type": float})
    normalize: Any = option(None, "(mean, std) applied to the crops, for models that do not normalize their input "
                            "themselves", _optional(_normalize), flag=False)
    seed: int = option(0, "seed of every unit's random streams, with its id", _seed, cli={"type": int})
    spectrum: str | None = option(None, "MACO magnitude and colour matrix: 'default' (shipped photos; 1/f for channel "
                                  "counts other than 1 and 3), 'imagenet' (needs the xplique 2.0.2 wheel) or a file "
                                  "from `phasevis spectrum compute`", _spectrum, shown="default")
    param_kwargs: dict = option({}, "passed to `parameterizations.make_param` (e.g. decay, std, magnitude)", _param_kwargs,
                                flag=False)
    samples: int = option(1, "images per unit, each from its own random start", lambda v: positive_int(v, "samples"),
                          cli={"type": int, "metavar": "K"})
    diversity: float = option(0.0, "weight of the term that pushes a unit's samples apart (lucid's Gram-matrix "
                              "similarity), all of them, the first included. Default 0: independent restarts, which "
                              "often end alike; on EfficientNet-Lite0, 1 and 10 barely act and 100 sets them clearly "
                              "apart", lambda v: finite_number(v, "diversity", positive=False),
                              cli={"type": float, "metavar": "W"})
    diversity_layer: str | None = option(None, "layer the samples are compared at (default: the objective's own; "
                                         "needed for logits)", _optional(lambda v: _layer_name(v)),
                                         cli={"metavar": "LAYER"})
    channels: int | None = option(None, "input channels of the model (default: inferred from its first convolution "
                                  "or patch embedding)", _optional(lambda v: positive_int(v, "channels")), flag=False)
    amp: Any = option("auto", "autocast for the model pass; auto: the precision measured fastest for the device, bf16 "
                      "on CPUs with AVX-512-bf16, fp32 elsewhere", _amp, cli={"choices": ("auto", *AMP_NAMES)})
    device: Any = option(None, "cpu, cuda, cuda:1 ... (default: where the model's weights are)",
                         _optional(checks.device), neutral=True)
    batch_size: int = option(8, "units optimized together", lambda v: positive_int(v, "batch_size"), neutral=True,
                             cli={"type": int})
    memory_budget: int | None = option(None, "memory the run may use, in GiB on the command line and bytes in Python "
                                       "(default: most of what is free); the batch shrinks to fit",
                                       _optional(_memory_budget), neutral=True,
                                       cli={"type": float, "metavar": "GIB"})
    model_batch: int | None = option(None, "at most how many crops per model pass, in whole units and passes of equal "
                                     "size (default on a CPU: 32 crops of 160², 16 of 224², fewer of larger crops; "
                                     "all on a GPU)",
                                     _optional(lambda v: positive_int(v, "model_batch")), neutral=True,
                                     cli={"type": int, "metavar": "CROPS"})
    channels_last: bool | None = option(None, "channels-last model pass (default: on the CPU only, where it is 1.3x "
                                        "faster; on an H100 lite0's depthwise convolutions are 11x slower with it)",
                                        _optional(_flag("channels_last")), neutral=True, flag=False)
    fold_batchnorm: bool = option(True, "fold eval-mode BatchNorms into the convolutions before them, in a copy "
                                  "of the model (exact up to rounding); --no-fold-batchnorm keeps them",
                                  _flag("fold_batchnorm"), neutral=True, cli={"negate": True})
    fold_padding: bool = option(True, "fold static zero pads (TensorFlow-style 'same' padding) into the convolutions "
                                "they feed, in a copy of the model (exact up to rounding); --no-fold-padding keeps them",
                                _flag("fold_padding"), neutral=True, cli={"negate": True})
    inplace_activations: bool = option(True, "run ReLU-family activations in place, or inside the convolution before "
                                       "them, where nothing else reads their input, in a copy of the model (exact); --no-inplace-activations keeps them",
                                       _flag("inplace_activations"), neutral=True, cli={"negate": True})
    compile: bool = option(False, "run the model pass through torch.compile (inductor), compiled at the first step; "
                           "off by default: slower on the CPUs measured; a model that does not compile runs eagerly, "
                           "with a warning", _flag("compile"), neutral=True, cli={"switch": True})
    callback_every: int = option(1, "steps between calls of the callback",
                                 lambda v: positive_int(v, "callback_every"), neutral=True, flag=False)

    def __post_init__(self):
        for f in fields(self):
            check = f.metadata["check"]
            if check is not None:
                object.__setattr__(self, f.name, check(getattr(self, f.name)))
        if self.diversity and self.samples < 2:
            raise InvalidArgument(f"diversity={self.diversity} needs samples >= 2: it compares a unit's samples")
        if self.diversity_layer is not None and not self.diversity:
            raise InvalidArgument("diversity_layer applies only with diversity > 0")
        if self.param == "pixel" and self.spectrum is not None:
            raise InvalidArgument("spectrum applies to param='maco' or 'fourier', not 'pixel'")

    def replace(self, **overrides) -> RenderSettings:
        """A copy with `overrides` (field names) changed; unknown names are a TypeError."""
        unknown = set(overrides) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown rendering options {sorted(unknown)}; RenderSettings has "
                            f"{', '.join(f.name for f in fields(self))}")
        return dataclasses.replace(self, **overrides) if overrides else self

    def to_json(self, *, images_only: bool = False) -> dict[str, Any]:
        """Each field as JSON; a spectrum file by its name and content digest, which is what
        makes the images. images_only: without the neutral fields."""
        out = {}
        for f in fields(self):
            if images_only and f.metadata["neutral"]:
                continue
            value = getattr(self, f.name)
            if f.name == "spectrum" and value not in (None, "imagenet"):
                value = {"file": os.path.basename(value), "sha256": file_sha256(value)[:16]}
            out[f.name] = jsonable(value)
        return out

    def differences(self, recorded: dict[str, Any], *, images_only: bool = True) -> list[str]:
        """'name (recorded there, VALUE now)' for each field whose JSON form differs from `recorded`'s."""
        mine = self.to_json(images_only=images_only)
        return [f"{name} ({recorded.get(name)!r} there, {value!r} now)" for name, value in mine.items()
                if recorded.get(name) != value]

    def resolved_for(self, model: nn.Module) -> RenderSettings:
        """Every value concrete for `model`: device, lr, input size, channels, amp, memory layout,
        model batch, and the spectrum's magnitude and colour matrix in param_kwargs."""
        device = _model_device(model) if self.device is None else self.device
        input_size = models.default_input_size(model) if self.input_size is None else self.input_size
        channels = models.input_channels(model, self.channels, input_size)
        if self.normalize is not None and not all(len(v) in (1, channels) for v in self.normalize):
            raise InvalidArgument(f"normalize must be (mean, std) with 1 or {channels} entries each, got "
                                  f"{self.normalize!r}")
        return self.replace(
            device=device, input_size=input_size, channels=channels,
            lr=DEFAULT_LR[self.param] if self.lr is None else self.lr,
            lr_schedule=DEFAULT_LR_SCHEDULE[self.param] if self.lr_schedule is None else self.lr_schedule,
            amp=resolve_amp(self.amp, device),
            channels_last=device.type == "cpu" if self.channels_last is None else self.channels_last,
            model_batch=(cpu_model_batch(input_size) if device.type == "cpu" else 2**31 - 1)
            if self.model_batch is None else self.model_batch,
            param_kwargs=_with_phase_scale(self.param, _spectrum_kwargs(self.param, self.spectrum, self.image_size,
                                                                         channels, self.param_kwargs)))

    @property
    def make_optimizer(self) -> Callable:
        return OPTIMIZERS[self.optimizer] if isinstance(self.optimizer, str) else self.optimizer


def _layer_name(value):
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"diversity_layer must be a layer name, got {value!r}")
    return value


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _with_phase_scale(param: str, param_kwargs: dict) -> dict:
    """MACO's phase scale in the record, so a run made at another one is told apart (and resumed
    only with it)."""
    if param != "maco" or "phase_scale" in param_kwargs:
        return param_kwargs
    return {**param_kwargs, "phase_scale": PHASE_SCALE}


def _spectrum_kwargs(param: str, spectrum, image_size, channels: int, param_kwargs: dict) -> dict:
    """param_kwargs with the magnitude (maco) and colour matrix (maco, fourier) of `spectrum` filled in."""
    if param == "pixel":
        return param_kwargs
    wanted = ("magnitude", "color_matrix") if param == "maco" else ("color_matrix",)
    if all(name in param_kwargs for name in wanted):
        return param_kwargs
    if param == "fourier" and spectrum is None:
        return param_kwargs  # the default colour matrix; the fourier image has no magnitude to look up
    try:
        found = natural_spectrum(tuple(image_size), channels, source="default" if spectrum is None else spectrum)
    except InvalidArgument as err:
        raise InvalidArgument(f"spectrum: {err}") from None
    except FileNotFoundError as err:
        raise FileNotFoundError(f"spectrum: {err}") from None
    param_kwargs = dict(param_kwargs)
    for name in wanted:
        param_kwargs.setdefault(name, getattr(found, name))
    return param_kwargs


# ---------------------------------------------------------------------------------------------
# The command line's flags.


def add_arguments(parser: argparse.ArgumentParser, *, exclude=(), choices: dict | None = None) -> None:
    """A `--flag` for every field the command line has, but those in `exclude`; `choices` narrows
    a field's choices for one command. Defaults are None, so that what is left out is the
    library's default and the help states it."""
    defaults = RenderSettings()
    for f in fields(RenderSettings):
        if not f.metadata["flag"] or f.name in exclude:
            continue
        cli = dict(f.metadata["cli"])
        if cli.pop("negate", False):  # a switch that is on by default: --no-NAME turns it off
            parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_const", const=False,
                                default=None, help=f.metadata["help"])
            continue
        if cli.pop("switch", False):  # a switch that is off by default: --NAME turns it on
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, action="store_const", const=True,
                                default=None, help=f.metadata["help"])
            continue
        if choices and f.name in choices:
            cli["choices"] = choices[f.name]
        shown = f.metadata["shown"] if f.metadata["shown"] is not None else getattr(defaults, f.name)
        if isinstance(shown, tuple) and len(shown) == 2 and f.name == "image_size":
            shown = shown[0]
        help_text = f.metadata["help"] + ("" if shown is None or "(default" in f.metadata["help"]
                                          else f" (default: {shown})")
        parser.add_argument("--" + f.name.replace("_", "-"), default=None, help=help_text.replace("%", "%%"), **cli)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The fields the command line was given (the others keep the library's defaults)."""
    out = {}
    for f in fields(RenderSettings):
        value = getattr(args, f.name, None)
        if value is None or not f.metadata["flag"]:  # other options of the command may share a field's name
            continue
        if f.name == "memory_budget":
            value = finite_number(value, "memory_budget", positive=True) * 1024**3
        elif f.name == "box_size":
            value = tuple(value)
        out[f.name] = value
    return out
