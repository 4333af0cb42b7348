"""`visualize`: optimize one image per objective, many units per model pass.

Units are processed in chunks of `batch_size`. Per step, a chunk's images are synthesized and
cropped `crops` times each in single batched ops, the N_chunk * crops crops go through the model
(in one forward pass on a GPU; on a CPU in passes of about `model_batch` crops, whose working set
stays in cache), and the loss is minus the SUM of the units' scores, so each unit's gradient is
that of its own score alone. The default optimizers (Adam, NAdam) act elementwise, so a unit's
trajectory does not depend on the other units of its chunk either.

Each unit's random streams (initial parameters, crops, noise) come from its own generator,
seeded with sha256(f"{seed}:{unit_id}"), so they depend on the seed and the unit's id alone:
not on the other units of its chunk, on batch_size, or on the rank in a distributed run.
On CPU a unit's image is then the same whatever it is batched with, up to the model's own
batch-size-dependent rounding; on CUDA the backward of roi_align accumulates with atomics,
so repeated runs agree only to rounding (on an H100, within 2e-6 after 5 steps).
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from . import checks, defaults, models
from .activations import capture
from .checks import InvalidArgument, check_box_size, finite_number, positive_int, unique_ids
from .diversity import diversity_layers, gram_similarity
from .objectives import Objective, batched_score, parse_targets
from .param import PARAMS, make_param
from .prepared_model import PreparedModel, prepare_model
from .records import jsonable
from .spectrum import natural_spectrum
from .transform import eval_crops, random_crops

# Learning rates per parameterization, with NAdam: Horama's lr=1.0 on MACO's phase of std 1, and
# lucid's 0.05 for its spectrum and for pixels. Quick runs on efficientnet_lite0 logits (2 units,
# 48-96 steps) ended within ~25% of each other for maco lr 0.1..1 and fourier lr 0.002..0.05;
# pixel at lr 0.01 reached about half the score of 0.05.
DEFAULT_LR = {"maco": 1.0, "fourier": 0.05, "pixel": 0.05}
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
AMP_DTYPES = (torch.float16, torch.bfloat16)
AMP_NAMES = {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


# What amp="auto" runs, per device type: the precision that made lite0's visualize step at the
# defaults fastest (benchmarks/amp_choice.py; docs/benchmarks.md, "Precision of the model pass").
# bf16 autocast bought no step time on any CPU measured, native bf16 or not (AVX-512-bf16 EPYC
# 1.01x, AMX Xeon 0.98x, emulated on AVX2 slower), and on an H100 fp32 was the faster; so bf16's
# precision is paid only when asked for.
AUTO_AMP: dict[str, torch.dtype | None] = {"cpu": None, "cuda": None}


def resolve_amp(amp, device) -> torch.dtype | None:
    """The autocast dtype of the model pass. "auto": AUTO_AMP for the device's type (fp32 on every
    device measured so far), None for other device types."""
    if isinstance(amp, str):
        if amp == "auto":
            return AUTO_AMP.get(torch.device(device).type)
        if amp not in AMP_NAMES:
            raise InvalidArgument(f"amp must be 'auto', 'none', 'bfloat16', 'float16' or a torch dtype, got {amp!r}")
        return AMP_NAMES[amp]
    if amp is not None and amp not in AMP_DTYPES:
        raise InvalidArgument(f"amp must be 'auto', None, torch.bfloat16 or torch.float16, got {amp!r}")
    return amp


@dataclass
class VisualizationResult:
    """One image per objective, index-aligned with `objectives` and `unit_ids`."""

    # With samples=k > 1 every per-image entry gains a sample dim after N: (N, k, C, H, W), (N, k), (steps, N, k).
    images: torch.Tensor  # (N, C, H, W) in [0, 1], on CPU (C = 3: RGB)
    alpha: torch.Tensor  # (N, 1, H, W) accumulated |d loss / d image| over the run, / its max per image
    alpha_raw: torch.Tensor  # (N, 1, H, W) the accumulated sum itself
    scores: torch.Tensor  # (N,) each objective on its final image, mean over the fixed eval crops
    history: torch.Tensor  # (steps, N) the scores seen by the optimizer at each step (random crops, noise)
    objectives: list[str]
    unit_ids: list[str]
    units: list = field(default_factory=list)  # objectives.Unit of each primitive objective, None for others
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    partial: torch.Tensor | None = None  # (N,) bool: units cut short by Ctrl-C (their scores are NaN)
    samples: int = 1

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True)
class Guide:
    """What accentuation and inversion change in the loop, unit by unit.

    references: (N, C, H, W) images on the run's device, each cropped with its unit's own boxes
        (and noise) beside the unit's image, and run through the model without gradients.
    term(rows, images, acts, reference_acts, crops_per_unit): (n,) added to the scores of the
        chunk's global `rows` (images: their whole images; acts: of their crops; reference_acts:
        of their references' crops, or None).
    layers: layers the term reads, captured besides the objectives'.
    make_param(rows, generators): the chunk's ImageParam, instead of a random start.
    final_scores: whether the term counts in the final scores too (inversion's similarity is its
        score; accentuation's penalty is not part of the objective it reports).
    """

    references: torch.Tensor | None = None
    term: Callable | None = None
    layers: frozenset = frozenset()
    make_param: Callable | None = None
    final_scores: bool = True


@dataclass
class GuidedResult(VisualizationResult):
    """A run that starts from or aims at real photos (accentuation, inversion)."""

    photos: torch.Tensor | None = None  # (N, C, H, W) the photos as given
    seeds: torch.Tensor | None = None  # (N, C, H, W) accentuation's start: the photo as the parameterization renders it


def as_guided(result: VisualizationResult, **beside: torch.Tensor) -> GuidedResult:
    """`result` with the photos (and seeds) of its units beside it; a run cut short by Ctrl-C has
    fewer units than photos, and keeps only theirs."""
    return GuidedResult(**vars(result), **{name: images[:len(result)].cpu() for name, images in beside.items()})


class VisualizationInterrupted(KeyboardInterrupt):
    """Ctrl-C during `visualize`; `.result` holds the finished units and the partial ones."""

    def __init__(self, result: VisualizationResult):
        super().__init__(f"interrupted after {int((~result.partial).sum())} finished units")
        self.result = result


def unit_seed(seed: int, unit_id: str) -> int:
    """A 63-bit generator seed from (seed, unit id), stable across processes and machines."""
    digest = hashlib.sha256(f"{seed}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def sample_ids(unit_ids: Sequence[str], samples: int) -> list[str]:
    """The id of each of a unit's samples: the first is the unit's own (so samples=1 changes
    nothing), the others get '~j' and with it their own random streams."""
    return [uid if j == 0 else f"{uid}~{j}" for uid in unit_ids for j in range(samples)]


def default_unit_ids(objectives: Sequence[Objective]) -> list[str]:
    """Descriptions; a description used more than once gets '#index' so that those units differ."""
    descriptions = [obj.description for obj in objectives]
    repeated = {d for d in descriptions if descriptions.count(d) > 1}
    return [f"{d}#{i}" if d in repeated else d for i, d in enumerate(descriptions)]


@dataclass(frozen=True)
class _Options:
    param: str
    steps: int
    lr: float
    lr_schedule: str
    make_optimizer: Callable
    image_size: tuple[int, int]
    input_size: int
    crops: int
    box_size: tuple[float, float]
    normalize: tuple[torch.Tensor, torch.Tensor] | None
    noise: float
    seed: int
    device: torch.device
    amp: torch.dtype | None
    callback: Callable | None
    callback_every: int
    param_kwargs: dict
    channels_last: bool
    model_batch: int
    fold_batchnorm: bool
    channels: int
    spectrum: str
    samples: int = 1
    diversity: float = 0.0
    diversity_layer: str | None = None
    box_schedule: str = "constant"


# Crops per model pass on a CPU: on the 2-core AVX-512 machine, lite0 forward+backward of 48 crops
# took 1.5x longer in one pass than in passes of 12 (benchmarks/results/cpu_model_pass.md).
CPU_MODEL_BATCH = 12


def visualize(
    model: nn.Module | str,
    objectives,
    *,
    param: str = "maco",
    steps: int = defaults.STEPS,
    lr: float | None = None,
    lr_schedule: str = "constant",
    optimizer: str | Callable = "nadam",
    image_size: int | tuple[int, int] = defaults.IMAGE_SIZE,
    input_size: int | None = None,
    crops: int = defaults.CROPS,
    box_size: tuple[float, float] = defaults.BOX_SIZE,
    box_schedule: str = "constant",
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    noise: float = defaults.NOISE,
    seed: int = 0,
    device: torch.device | str | None = None,
    amp: str | torch.dtype | None = "auto",
    progress: bool | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], Any] | None = None,
    callback_every: int = 1,
    batch_size: int = defaults.BATCH_SIZE,
    param_kwargs: dict | None = None,
    unit_ids: Sequence[str] | None = None,
    channels_last: bool | None = None,
    memory_budget: int | None = None,
    model_batch: int | None = None,
    fold_batchnorm: bool = True,
    channels: int | None = None,
    spectrum: str | None = None,
    samples: int = 1,
    diversity: float = 0.0,
    diversity_layer: str | None = None,
) -> VisualizationResult:
    """Optimize one image per objective so that the model scores it highly.

    model: an nn.Module taking images in [0, 1] (or a `models.load` name); it must already be on
        `device` (default: the device of its parameters). It runs in eval mode with frozen
        parameters for the call; its mode and requires_grad flags are restored afterwards.
    objectives: an Objective, a target string ('_blocks.15:0-7', 'logit:1,207') or a list of them.
    param: "maco", "fourier" or "pixel"; param_kwargs go to `param.make_param` (e.g. decay, std).
    lr: default per param, DEFAULT_LR. lr_schedule: "constant" or "cosine" (lr times
        (1 + cos(pi * s / steps)) / 2 at step s from 0). optimizer: "nadam", "adam" or a callable called as
        optimizer(params, lr=lr), e.g. torch.optim.SGD; it must act elementwise for units to
        stay independent.
    image_size: the rendered image (int or (H, W)); input_size: the side of the crops fed to
        the model, default `models.default_input_size(model)`.
    crops, box_size, noise: per step, each image is cropped `crops` times with square boxes
        whose side is uniform in box_size (fractions of the shorter image side) and the crops
        get N(0, noise²) added. box_schedule: "constant", or "shrink" (the range slides from its
        upper half at the first step to its lower half at the last). normalize=(mean, std) is
        applied to the crops, for models that do not normalize their input themselves.
    amp: autocast around the model pass only: "auto" (`resolve_amp`: fp32, the fastest on every CPU
        and GPU measured), None / "none", torch.bfloat16 / "bfloat16" or torch.float16 / "float16".
    callback(step, images, scores): every `callback_every` steps (step counts from 1 within a
        chunk) with the chunk's images at that step and their scores, detached; chunks run in
        order, so row j of a call is unit chunk_start + j.
    unit_ids: ids that seed each unit's random streams, default `default_unit_ids`.
    channels_last: run the model pass in channels-last memory format (the model is converted for
        the call and restored). None: on the CPU only. Measured for lite0's step at the defaults:
        1.3x faster on a 2-core AVX-512 EPYC, fp32 and bf16 alike (benchmarks/amp_choice.py), but
        11x slower on an H100, whose depthwise convolutions have no fast channels-last kernels.
    memory_budget: bytes the run may use on its device (None: most of what is free now). The
        batch size shrinks to fit it; if one unit cannot fit, MemoryBudgetError (a ValueError)
        says what would, before any work starts.
    model_batch: about how many crops go through the model per pass; a pass always holds whole
        units (at least one). None: 12 on the CPU, where small passes stay in cache (1.5x faster
        per crop than 48 at once on 2 cores), everything at once on a GPU. Results do not depend
        on it beyond rounding.
    fold_batchnorm: fold eval-mode BatchNorms into the convolutions before them, in a copy of the
        model (the model itself is untouched; exact up to rounding; convs an objective reads keep
        theirs). See `batchnorm_folding`.
    channels: input channels of the model; None infers them from its first convolution or patch
        embedding (`models.input_channels`), and a ValueError asks for them where that fails.
    spectrum: where MACO's magnitude and the colour matrix (maco, fourier) come from: None or
        "default", "imagenet", or a file from `phasevis spectrum compute` (see
        `spectrum.natural_spectrum`; other channel counts than 1 and 3 need such a file, else a
        1/f power law stands in, with a warning). An explicit param_kwargs magnitude or
        color_matrix takes precedence.

    samples: images per unit (k); with k > 1 the result's per-image entries are (N, k, ...). Each
        sample has its own random streams; with diversity=0 the first is the image samples=1 gives.
    diversity: weight of the diversity term (`diversity.gram_similarity`, lucid's) that pushes a
        unit's samples apart, all of them, the first included. The default 0 leaves them
        independent restarts, which often end alike: on EfficientNet-Lite0 weights of 1 and 10
        barely act and 100 sets the samples clearly apart (lucid's examples use 100 too). Only a
        unit's own samples interact. diversity_layer: where the samples are compared, default each
        objective's own layer (name one for logits).

    Ctrl-C (KeyboardInterrupt) during a run raises VisualizationInterrupted carrying the finished
    units and the current chunk's images so far, marked in `result.partial`.
    """
    start = time.perf_counter()
    objectives = parse_targets(objectives)
    if not objectives:
        raise InvalidArgument("objectives: nothing to visualize")
    model_name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = models.load(model, device=device)
    options = check_options(
        model, param=param, steps=steps, lr=lr, lr_schedule=lr_schedule, optimizer=optimizer, image_size=image_size, input_size=input_size,
        crops=crops, box_size=box_size, normalize=normalize, noise=noise, seed=seed, device=device, amp=amp,
        box_schedule=box_schedule, callback=callback, callback_every=callback_every, param_kwargs=param_kwargs, channels_last=channels_last,
        model_batch=model_batch, fold_batchnorm=fold_batchnorm, channels=channels, spectrum=spectrum,
        samples=samples, diversity=diversity, diversity_layer=diversity_layer)
    batch_size = positive_int(batch_size, "batch_size")
    unit_ids = _check_unit_ids(unit_ids, objectives)
    layers = set().union(*(obj.layers for obj in objectives))
    if options.diversity:
        layers |= set(diversity_layers(objectives, options.diversity_layer))
    with prepare(model, options, layers=layers, batch_size=max(batch_size, options.samples),
                 memory_budget=memory_budget) as prepared:
        return render_units(prepared, objectives, unit_ids, options, progress=progress, start=start,
                            optimizer=optimizer, model_name=model_name)


def render_guided(model, objectives: list[Objective], make_guide: Callable[[_Options], Guide], *, layers=(),
                  unit_ids=None, batch_size: int = defaults.BATCH_SIZE, memory_budget: int | None = None,
                  progress: bool | None = None, optimizer="nadam", **options) -> VisualizationResult:
    """`visualize`'s checks, preparation and loop with a Guide built from the checked options:
    the shared body of `accentuation.accentuate` and `inversion.invert`. `layers`: what the guide
    reads, checked against the model before any work."""
    start = time.perf_counter()
    model_name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = models.load(model, device=options.get("device"))
    for name in ("samples", "diversity", "diversity_layer"):
        if name in options:
            raise InvalidArgument(f"{name} applies to visualize only")
    check_names = inspect.signature(check_options).parameters
    unknown = set(options) - set(check_names)
    if unknown:
        raise TypeError(f"unexpected options {sorted(unknown)}")
    defaults_ = {name: p.default for name, p in inspect.signature(visualize).parameters.items()
                 if name in check_names and name != "optimizer" and p.default is not inspect.Parameter.empty}
    options = check_options(model, optimizer=optimizer, **{**defaults_, **options})
    batch_size = positive_int(batch_size, "batch_size")
    unit_ids = _check_unit_ids(unit_ids, objectives)
    with prepare(model, options, layers=set().union(*(obj.layers for obj in objectives), layers),
                 batch_size=batch_size, memory_budget=memory_budget) as prepared:
        guide = make_guide(options)
        return render_units(prepared, objectives, unit_ids, options, progress=progress, start=start,
                            optimizer=optimizer, model_name=model_name, guide=guide)


def prepare(model: nn.Module, options: _Options, *, layers, batch_size: int, memory_budget: int | None):
    """`prepared_model.prepare_model` with the run's options."""
    return prepare_model(model, layers=layers, fold_batchnorm=options.fold_batchnorm,
                         channels_last=options.channels_last, batch_size=batch_size, memory_budget=memory_budget,
                         input_size=options.input_size, crops=options.crops, image_size=options.image_size,
                         device=options.device, amp=options.amp, channels=options.channels)


def render_units(prepared: PreparedModel, objectives: list[Objective], unit_ids: list[str], options: _Options, *,
                 progress: bool | None = None, start: float | None = None, optimizer="nadam",
                 model_name: str | None = None, guide: Guide | None = None) -> VisualizationResult:
    """The optimization of `objectives` on a prepared model, in chunks of its planned batch size.

    visualize is this after its checks and `prepare`; the atlas calls it once per batch of units
    with the model it prepared once for the whole run.
    """
    start = time.perf_counter() if start is None else start
    samples = options.samples
    compare_at = diversity_layers(objectives, options.diversity_layer) if options.diversity else None
    prepared.check_layers(set().union(*(obj.layers for obj in objectives), compare_at or (),
                                      guide.layers if guide else ()))
    if progress is None:
        progress = sys.stderr.isatty()
    count = len(objectives)
    if prepared.batch_size < samples:
        raise InvalidArgument(f"samples: the {samples} images of one unit do not fit in memory together "
                              f"(at most {prepared.batch_size} do); ask for fewer samples or a smaller image")
    batch_size = prepared.batch_size // samples  # units per chunk: a unit's samples always share one
    outputs = []
    interrupted = False
    with tqdm(total=count * samples * options.steps, disable=not progress, desc="visualize", unit="image-step") as bar:
        for first in range(0, count, batch_size):
            chunk = slice(first, first + batch_size)
            try:
                outputs.append(_render_chunk(
                    prepared.module, [obj for obj in objectives[chunk] for _ in range(samples)],
                    sample_ids(unit_ids[chunk], samples), options, bar,
                    None if compare_at is None else compare_at[chunk], guide, range(count)[chunk]))
            except KeyboardInterrupt:  # while a chunk was being set up: it has nothing to keep
                interrupted = True
                break
            if outputs[-1][4]:
                interrupted = True
                break
    if not outputs:
        raise KeyboardInterrupt

    images, alpha_raw, scores, partial = (torch.cat([out[i] for out in outputs]) for i in (0, 1, 2, 5))
    done = images.shape[0] // samples
    history = torch.cat([out[3] for out in outputs], dim=1)
    peak = alpha_raw.amax(dim=(1, 2, 3), keepdim=True)
    alpha = alpha_raw / peak.clamp_min(torch.finfo(alpha_raw.dtype).tiny)
    if samples > 1:
        images, alpha_raw, alpha, scores = (t.unflatten(0, (done, samples)) for t in (images, alpha_raw, alpha, scores))
        history = history.unflatten(1, (done, samples))
        partial = partial.unflatten(0, (done, samples)).any(1)
    settings = _settings(options, model_name=model_name, optimizer=optimizer, batch_size=batch_size)
    settings["weights_file"] = models.weights_record(prepared.module)
    settings["class_names"] = "imagenet" if models.has_imagenet_head(prepared.module) else None
    result = VisualizationResult(images=images, alpha=alpha, alpha_raw=alpha_raw, scores=scores, history=history,
                                 objectives=[obj.description for obj in objectives[:done]], unit_ids=unit_ids[:done],
                                 units=[obj.unit for obj in objectives[:done]],
                                 settings=settings, seconds=time.perf_counter() - start, partial=partial,
                                 samples=samples)
    if interrupted:
        raise VisualizationInterrupted(result)
    return result


def _render_chunk(model, objectives: list[Objective], unit_ids: list[str], options: _Options, bar,
                  compare_at: list[str] | None = None, guide: Guide | None = None, run_rows: range | None = None):
    """(images, alpha_raw, scores, history, interrupted, partial) of one chunk, on CPU. On Ctrl-C the
    chunk stops where it is: its images so far come back marked partial, with NaN scores.

    Rows come in groups of options.samples consecutive images of one unit; compare_at gives each
    group's diversity layer (None: no diversity term). With a guide, run_rows are the chunk's units in
    the whole run (samples is then 1)."""
    count, device, samples = len(objectives), options.device, options.samples
    generators = [torch.Generator(device=device).manual_seed(unit_seed(options.seed, uid)) for uid in unit_ids]
    if guide is not None and guide.make_param is not None:
        image_param = guide.make_param(run_rows, generators)
    else:
        image_param = make_param(options.param, count, options.image_size, generators=generators, device=device,
                                 channels=options.channels, **options.param_kwargs)
    references = None
    if guide is not None and guide.references is not None:
        references = guide.references[run_rows.start:run_rows.stop]
    channels = options.channels
    current = {}  # the chunk's whole images of this step, for terms in pixel space
    optimizer = options.make_optimizer(list(image_param.parameters()), lr=options.lr)
    factor = LR_SCHEDULES[options.lr_schedule]
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: factor(s, options.steps))
    layers = set().union(*(obj.layers for obj in objectives), compare_at or (), guide.layers if guide else ())
    need_logits = any(obj.needs_logits for obj in objectives)
    alpha_raw = torch.zeros(count, 1, *options.image_size, device=device)
    history = torch.empty(options.steps, count, device=device)

    with capture(model, sorted(layers), need_logits=need_logits) as cap:
        def model_acts(crops: torch.Tensor) -> dict:
            if options.normalize is not None:
                mean, std = options.normalize
                crops = (crops - mean) / std
            if options.channels_last:
                crops = crops.contiguous(memory_format=torch.channels_last)
            autocast = (torch.autocast(device.type, dtype=options.amp) if options.amp is not None
                        else contextlib.nullcontext())
            with autocast:
                return cap.run(crops)

        def with_references(images: torch.Tensor) -> torch.Tensor:
            return images if references is None else torch.cat([images, references], dim=1)

        def score(crops: torch.Tensor, crops_per_unit: int, units: slice = slice(None), *,
                  diversity: bool = False) -> tuple[torch.Tensor, torch.Tensor | float]:
            """The scores of `units` and, with diversity, the sum of their groups' similarity."""
            reference_acts = None
            if references is not None:  # crops of image and reference side by side: the same boxes
                crops, reference_crops = crops[:, :channels], crops[:, channels:]
                with torch.no_grad():
                    reference_acts = model_acts(reference_crops)
            acts = model_acts(crops)
            scores = batched_score(objectives[units], acts, crops_per_unit).float()
            if guide is not None and guide.term is not None and (crops.requires_grad or guide.final_scores):
                span = range(len(objectives))[units]
                scores = scores + guide.term(run_rows[span.start:span.stop], current["images"][units], acts,
                                             reference_acts, crops_per_unit).float()
            if not diversity:
                return scores, 0.0
            first = units.start or 0
            rows = crops_per_unit * samples
            similarity = sum(gram_similarity(acts[layer][g * rows:(g + 1) * rows], crops_per_unit, samples).sum()
                             for g, layer in enumerate(compare_at[first // samples:(first + len(scores)) // samples]))
            return scores, similarity

        def passes(crops_per_unit: int) -> list[slice]:
            # Whole groups per pass, so that a unit's samples are compared within one pass.
            per_pass = max(1, options.model_batch // crops_per_unit // samples) * samples
            return [slice(u, min(u + per_pass, count)) for u in range(0, count, per_pass)]

        def score_units(crops: torch.Tensor, crops_per_unit: int) -> torch.Tensor:
            """Scores of all units, the model run in passes of whole units. When the crops need
            gradients, minus the sum of the scores is also backpropagated: each pass's backward
            stops at a detached copy of the crops, then one backward runs through the crops and
            the synthesis, so their graph is walked once per step."""
            chunks = passes(crops_per_unit)
            rows = [slice(u.start * crops_per_unit, u.stop * crops_per_unit) for u in chunks]
            if not crops.requires_grad:
                return torch.cat([score(crops[r], crops_per_unit, u)[0] for r, u in zip(rows, chunks)])
            diversity = compare_at is not None
            if len(chunks) == 1:
                scores, similarity = score(crops, crops_per_unit, diversity=diversity)
                (options.diversity * similarity - scores.sum()).backward()
                return scores
            # A guide's term may read the images themselves (accentuation's pixel penalty): they get
            # a detached copy too, and both gradients go down the synthesis in the one backward.
            leaf = crops.detach().requires_grad_()
            images = current["images"]
            current["images"] = image_leaf = images.detach().requires_grad_()
            parts = []
            for r, u in zip(rows, chunks):
                part, similarity = score(leaf[r], crops_per_unit, u, diversity=diversity)
                (options.diversity * similarity - part.sum()).backward()
                parts.append(part.detach())
            current["images"] = images
            if image_leaf.grad is None:
                crops.backward(leaf.grad)
            else:
                torch.autograd.backward([crops, images], [leaf.grad, image_leaf.grad])
            return torch.cat(parts)

        def one_step(step: int) -> None:
            images = image_param()
            images.retain_grad()
            current["images"] = images
            boxes = BOX_SCHEDULES[options.box_schedule](options.box_size, step - 1, options.steps)
            crops = random_crops(with_references(images), options.crops, options.input_size, boxes,
                                 generators=generators, noise=options.noise)
            optimizer.zero_grad(set_to_none=True)
            scores = score_units(crops, options.crops)
            alpha_raw.add_(images.grad.abs().sum(dim=1, keepdim=True))
            optimizer.step()
            schedule.step()
            history[step - 1] = scores.detach()
            if options.callback is not None and step % options.callback_every == 0:
                options.callback(step, images.detach(), scores.detach())
            bar.update(count)  # the bar counts unit-steps
            if not bar.disable and (step % 16 == 0 or step == options.steps):  # .item() syncs: not every step
                bar.set_postfix(mean_score=f"{scores.mean().item():.3g}", refresh=False)

        try:
            for step in range(1, options.steps + 1):
                one_step(step)
        except KeyboardInterrupt:
            with torch.no_grad():
                images = image_param()
            nan = torch.full((count,), math.nan)
            return (images.detach().cpu(), alpha_raw.cpu(), nan, history.cpu(), True,
                    torch.ones(count, dtype=torch.bool))

        with torch.no_grad():
            images = image_param()
            current["images"] = images
            crops = eval_crops(with_references(images), options.input_size, options.box_size)
            final_scores = score_units(crops, crops.shape[0] // count)
    return (images.detach().cpu(), alpha_raw.cpu(), final_scores.cpu(), history.cpu(), False,
            torch.zeros(count, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------
# Option checks.


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def check_options(model, *, param, steps, lr, optimizer, image_size, input_size, crops, box_size, normalize,
                   noise, seed, device, amp, callback, callback_every, param_kwargs, channels_last,
                   model_batch=None, fold_batchnorm=True, channels=None, spectrum=None,
                   lr_schedule="constant", samples=1, diversity=0.0, diversity_layer=None,
                   box_schedule="constant") -> _Options:
    if param not in PARAMS:
        raise InvalidArgument(f"param must be one of {PARAMS}, got {param!r}")
    steps = positive_int(steps, "steps")
    lr = DEFAULT_LR[param] if lr is None else finite_number(lr, "lr", positive=True)
    if lr_schedule not in LR_SCHEDULES:
        raise InvalidArgument(f"lr_schedule must be one of {tuple(LR_SCHEDULES)}, got {lr_schedule!r}")
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise InvalidArgument(f"optimizer must be one of {tuple(OPTIMIZERS)} or a callable, got {optimizer!r}")
        make_optimizer = OPTIMIZERS[optimizer]
    elif callable(optimizer):
        make_optimizer = optimizer
    else:
        raise InvalidArgument(f"optimizer must be one of {tuple(OPTIMIZERS)} or a callable, got {optimizer!r}")
    image_size = checks.image_size(image_size, "image_size", minimum=8)
    input_size = models.default_input_size(model) if input_size is None else positive_int(input_size, "input_size")
    crops = positive_int(crops, "crops")
    box_size = check_box_size(box_size)
    if box_schedule not in BOX_SCHEDULES:
        raise InvalidArgument(f"box_schedule must be one of {tuple(BOX_SCHEDULES)}, got {box_schedule!r}")
    noise = finite_number(noise, "noise", positive=False)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgument(f"seed must be an int, got {seed!r}")
    device = _model_device(model) if device is None else checks.device(device)
    if channels_last is None:
        channels_last = device.type == "cpu"
    amp = resolve_amp(amp, device)
    if callback is not None and not callable(callback):
        raise InvalidArgument(f"callback must be callable, got {callback!r}")
    callback_every = positive_int(callback_every, "callback_every")
    channels = models.input_channels(model, channels, input_size)
    if normalize is not None:
        try:
            mean, std = (torch.as_tensor(v, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
                         for v in normalize)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidArgument(f"normalize must be (mean, std), each a number or {channels} numbers, "
                             f"got {normalize!r}") from None
        if mean.shape[1] not in (1, channels) or std.shape[1] not in (1, channels) or bool((std <= 0).any()):
            raise InvalidArgument(f"normalize must be (mean, std) with 1 or {channels} entries each and std > 0, "
                             f"got {normalize!r}")
        normalize = (mean, std)
    param_kwargs = _spectrum_kwargs(param, spectrum, image_size, channels, dict(param_kwargs or {}))
    if model_batch is None:
        model_batch = CPU_MODEL_BATCH if device.type == "cpu" else 2**31 - 1
    model_batch = positive_int(model_batch, "model_batch")
    samples = positive_int(samples, "samples")
    diversity = finite_number(diversity, "diversity", positive=False)
    if diversity and samples < 2:
        raise InvalidArgument(f"diversity={diversity} needs samples >= 2: it compares a unit's samples")
    if diversity_layer is not None and not diversity:
        raise InvalidArgument("diversity_layer applies only with diversity > 0")
    if not isinstance(fold_batchnorm, bool):
        raise InvalidArgument(f"fold_batchnorm must be True or False, got {fold_batchnorm!r}")
    return _Options(param, steps, lr, lr_schedule, make_optimizer, tuple(image_size), input_size, crops, box_size, normalize,
                    noise, seed, device, amp, callback, callback_every, param_kwargs, bool(channels_last),
                    model_batch, fold_batchnorm, channels, "default" if spectrum is None else str(spectrum),
                    samples, float(diversity), diversity_layer, box_schedule)


def _spectrum_kwargs(param: str, spectrum, image_size, channels: int, param_kwargs: dict) -> dict:
    """param_kwargs with the magnitude (maco) and colour matrix (maco, fourier) of `spectrum` filled in."""
    if param == "pixel":
        if spectrum not in (None, "default"):
            raise InvalidArgument("spectrum applies to param='maco' or 'fourier', not 'pixel'")
        return param_kwargs
    wanted = ("magnitude", "color_matrix") if param == "maco" else ("color_matrix",)
    if all(name in param_kwargs for name in wanted):
        return param_kwargs
    if param == "fourier" and spectrum in (None, "default"):
        return param_kwargs  # the default colour matrix; the fourier image has no magnitude to look up
    try:
        found = natural_spectrum(tuple(image_size), channels, source="default" if spectrum is None else spectrum)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise type(err)(f"spectrum: {err}") from None
    for name in wanted:
        param_kwargs.setdefault(name, getattr(found, name))
    return param_kwargs


def _check_unit_ids(unit_ids, objectives) -> list[str]:
    return default_unit_ids(objectives) if unit_ids is None else unique_ids(unit_ids, len(objectives))


def _settings(options: _Options, *, model_name: str, optimizer, batch_size: int) -> dict[str, Any]:
    normalize = None
    if options.normalize is not None:
        normalize = [t.flatten().tolist() for t in options.normalize]
    return jsonable({
        "model": model_name,
        "param": options.param,
        "steps": options.steps,
        "lr": options.lr,
        "lr_schedule": options.lr_schedule,
        "optimizer": optimizer if isinstance(optimizer, str) else jsonable(optimizer),
        "image_size": list(options.image_size),
        "input_size": options.input_size,
        "crops": options.crops,
        "box_size": list(options.box_size),
        "box_schedule": options.box_schedule,
        "normalize": normalize,
        "noise": options.noise,
        "seed": options.seed,
        "device": str(options.device),
        "amp": None if options.amp is None else str(options.amp).removeprefix("torch."),
        "batch_size": batch_size,
        "callback_every": options.callback_every,
        "param_kwargs": options.param_kwargs,
        "model_batch": options.model_batch,
        "fold_batchnorm": options.fold_batchnorm,
        "channels": options.channels,
        "spectrum": options.spectrum,
        "samples": options.samples,
        "diversity": options.diversity,
        "diversity_layer": options.diversity_layer,
    })
