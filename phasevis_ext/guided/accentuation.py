"""Feature accentuation (Hamblin, Fel et al. 2024): start from a real photo and push it toward an
objective while a penalty keeps it close to where it started, which shows where, and what, in
that photo drives the unit.

The start is the photo run backwards through the parameterization's synthesis: its pixels go
through the inverse sigmoid and the inverse colour matrix, and the spectrum of that is the
parameter.
- maco: the parameter is the photo's phase, used without MACO's phase standardization (which
  could not hold a photo's phases; `param.PhotoPhaseParam`). The magnitude is the photo's own
  (magnitude="photo", the default) or the natural-image magnitude MACO holds fixed
  (magnitude="natural", which renders the photo's structure with the average spectrum, so the
  start is already a little smoother than the photo).
- fourier: the parameter is the photo's spectrum divided by the 1/f scale, so that the
  optimizer's steps are preconditioned as in `visualize`.
The synthesis standardizes the image before the sigmoid; each photo's own std and mean are put
back after it, so the start (the result's `seeds`) is the photo itself (with magnitude="natural":
its phases and contrast under the natural spectrum). The penalty measures the distance to it.

The penalty is in pixel space (the mean squared difference from the seed), or at `reg_layer` in
the model's own activations as in the paper: the mean squared difference between the layer's
activations on the image's crops and on the seed's crops under the same boxes, divided by the
seed's mean square, so that one weight means the same at every layer.

Default weights, for EfficientNet-Lite0 class logits (benchmarks/fidelity.py --parts
accentuation; docs/fidelity/beyond.md and docs/fidelity/reg_layer/beyond.md): 100 in pixels moved
the 8 shipped photos by an RMSE of 0.10 while every target became lite2's top-1; 10 at _blocks.8
did the same at an RMSE of 0.13, closer to the seed in lite2's features. A weight of 1 held two
probed photos no closer than no penalty at all.
"""
from __future__ import annotations

import torch

from .. import checks
from ..checks import InvalidArgument, finite_number
from ..ops.color import decorrelate, default_color_matrix
from ..ops.synthesis import fourier_scale
from ..param.parameterizations import PhotoPhaseParam, PhotoSpectrumParam
from ..render.loop import LoopHook
from ..render.objectives import parse_targets
from ..render.results import VisualizationInterrupted
from .common import GuidedResult, as_guided, relative_l2, render_guided

ACCENTUATION_PARAMS = ("maco", "fourier")
MAGNITUDES = ("photo", "natural")
# Step sizes for a start that is already an image: radians of phase for maco, and units of the
# spectrum scaled to std 1 for fourier. visualize's rates (1.0, 0.05) are for random starts.
START_LR = {"maco": 0.1, "fourier": 0.05}
LOGIT_EPS = 1e-3  # photos' 0 and 1 would be infinite logits
DEFAULT_PENALTY = {"pixels": 100.0, "reg_layer": 10.0}


def decorrelated_logits(photos: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) float64: what the synthesis tail turns into `photos`, before its sigmoid and
    colour matrix: the inverse of sigmoid, then of the colour matrix."""
    return decorrelate(torch.logit(photos.double().clamp(LOGIT_EPS, 1 - LOGIT_EPS)), color_matrix)


def seeded_param(kind: str, photos: torch.Tensor, *, magnitude: str, natural: torch.Tensor | None,
                 color_matrix: torch.Tensor | None):
    """An ImageParam whose initial images are `photos` (exactly, up to float32 rounding and the
    logit's clipping at LOGIT_EPS; with magnitude="natural", the photos' phases and statistics)."""
    channels, height, width = photos.shape[1:]
    k = default_color_matrix(channels, device=photos.device) if color_matrix is None else color_matrix
    y = decorrelated_logits(photos, k.to(photos.device))
    stats = dict(gain=y.flatten(1).std(dim=1).float(), offset=y.flatten(1).mean(dim=1).float(), color_matrix=k)
    spectrum = torch.fft.rfft2(y)
    if kind == "maco":
        amplitude = spectrum.abs() if magnitude == "photo" else natural.to(torch.float64).expand(spectrum.shape)
        return PhotoPhaseParam((height, width), phase=spectrum.angle().float(), magnitude=amplitude.float(), **stats)
    scale = fourier_scale((height, width), device=photos.device, dtype=torch.float64)
    scaled = spectrum / scale
    scaled = scaled / scaled.flatten(1).abs().pow(2).mean(1).sqrt().clamp_min(1e-12)[:, None, None, None]
    return PhotoSpectrumParam((height, width), spectrum=scaled.to(torch.complex64), scale=scale.float(), **stats)


def accentuate(model, images, objectives, *, param: str = "maco", magnitude: str = "photo", penalty: float | None = None,
               reg_layer: str | None = None, lr: float | None = None, image_size=None, unit_ids=None,
               **options) -> GuidedResult:
    """Accentuate `objectives` in real `images`.

    images: (N, C, H, W) photos with values in [0, 1]; the images are rendered at their own size
        (image_size, when given, must match it).
    objectives: one per image, or one for all of them (Objective or target string).
    param: "maco" or "fourier"; magnitude: for maco, "photo" (the photo's own) or "natural".
    penalty: weight of the distance to the seed (>= 0), default DEFAULT_PENALTY (100 in pixel
        space, 10 at a reg_layer); reg_layer: where it is measured, None for pixel space.
        lr: default START_LR[param].
    options: RenderSettings fields (steps, crops, box_size, noise, seed, device, amp, batch_size,
        ...), or settings=RenderSettings(...), and visualize's progress and callback.

    Returns a GuidedResult: images, alpha (the gradient-based transparency), scores (the
    objective alone, on the final images), seeds and photos. Ctrl-C raises VisualizationInterrupted
    with such a result of the finished and partial images.
    """
    penalty = _check_accentuation(param, magnitude, penalty, reg_layer)
    size = None if image_size is None else checks.image_size(image_size, "image_size")
    photos = checks.photo_batch(images, size=size)
    goals = parse_targets(objectives)
    if len(goals) == 1:
        goals = goals * photos.shape[0]
    if len(goals) != photos.shape[0]:
        raise InvalidArgument(f"objectives: need one per image ({photos.shape[0]}) or one for all, got {len(goals)}")
    unit_ids = unit_ids or [f"{i}:{g.description}" for i, g in enumerate(goals)]
    seeds = {}

    def make_hook(settings) -> LoopHook:
        checks.photo_batch(photos, channels=settings.channels)
        on_device = photos.to(settings.device)
        natural = settings.param_kwargs.get("magnitude")
        color_matrix = settings.param_kwargs.get("color_matrix")

        def build(rows, generators=None):
            return seeded_param(param, on_device[rows.start:rows.stop], magnitude=magnitude, natural=natural,
                                color_matrix=color_matrix)

        with torch.no_grad():
            seeds["images"] = build(range(photos.shape[0]))()
        return _penalty_hook(seeds["images"], penalty, reg_layer, build)

    try:
        result = render_guided(model, goals, make_hook, layers={reg_layer} - {None}, unit_ids=unit_ids, param=param,
                               lr=START_LR[param] if lr is None else lr, image_size=tuple(photos.shape[-2:]),
                               **options)
    except VisualizationInterrupted as stop:
        raise VisualizationInterrupted(as_guided(stop.result, seeds=seeds["images"], photos=photos)) from None
    return as_guided(result, seeds=seeds["images"], photos=photos)


def _check_accentuation(param, magnitude, penalty, reg_layer) -> float:
    """The penalty's weight, after the checks of accentuate's own arguments."""
    if param not in ACCENTUATION_PARAMS:
        raise InvalidArgument(f"param must be one of {ACCENTUATION_PARAMS}, got {param!r}")
    if magnitude not in MAGNITUDES:
        raise InvalidArgument(f"magnitude must be one of {MAGNITUDES}, got {magnitude!r}")
    if param == "fourier" and magnitude != "photo":
        raise InvalidArgument("magnitude applies to param='maco' (fourier optimizes the whole spectrum)")
    if reg_layer is not None and not isinstance(reg_layer, str):
        raise InvalidArgument(f"reg_layer must be a layer name or None, got {reg_layer!r}")
    if penalty is None:
        penalty = DEFAULT_PENALTY["pixels" if reg_layer is None else "reg_layer"]
    return finite_number(penalty, "penalty", positive=False)


def _penalty_hook(seeds: torch.Tensor, penalty: float, reg_layer: str | None, build) -> LoopHook:
    """The loop's hook: start at the seeds, and subtract the penalty's distance to them, in pixels
    or in reg_layer's activations on the same crops (the seeds then go beside the images)."""

    def term(rows, images, acts, seed_acts, crops):
        if reg_layer is None:
            return -penalty * (images - seeds[rows.start:rows.stop]).pow(2).flatten(1).mean(1)
        ours, theirs = (a.float().unflatten(0, (-1, crops)).flatten(1) for a in (acts[reg_layer],
                                                                                 seed_acts[reg_layer]))
        return relative_l2(ours, theirs, -penalty)

    return LoopHook(companions=seeds if reg_layer is not None else None, term=term,
                    layers=frozenset({reg_layer} - {None}), make_param=build, term_in_final_scores=False)
