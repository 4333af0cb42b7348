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
Both syntheses standardize the image before the sigmoid, so the rendered start (the result's
`seeds`) is the photo with its contrast normalized; the penalty measures the distance to it.

The penalty is in pixel space (the mean squared difference from the seed), or at `reg_layer` in
the model's own activations as in the paper: the mean squared difference between the layer's
activations on the image's crops and on the seed's crops under the same boxes, divided by the
seed's mean square, so that one weight means the same at every layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import checks
from .checks import InvalidArgument, finite_number
from .color import default_color_matrix
from .objectives import parse_targets
from .param import FourierParam, PhotoPhaseParam
from .render import Guide, VisualizationResult, render_guided
from .synthesis import fourier_scale

PARAMS = ("maco", "fourier")
MAGNITUDES = ("photo", "natural")
# Step sizes for a start that is already an image: radians of phase for maco, and units of the
# spectrum scaled to std 1 for fourier. visualize's rates (1.0, 0.05) are for random starts.
DEFAULT_LR = {"maco": 0.1, "fourier": 0.05}
LOGIT_EPS = 1e-3  # photos' 0 and 1 would be infinite logits


@dataclass
class AccentuationResult(VisualizationResult):
    seeds: torch.Tensor | None = None  # (N, C, H, W) the start, as the parameterization renders the photo
    photos: torch.Tensor | None = None  # (N, C, H, W) the photos as given


def photo_spectrum(photos: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W//2+1) complex: the spectrum whose synthesis (before its standardization) is the
    photo: the inverse of sigmoid, then of the colour matrix, then rfft2."""
    logits = torch.logit(photos.double().clamp(LOGIT_EPS, 1 - LOGIT_EPS))
    decorrelated = torch.einsum("nchw,dc->ndhw", logits, torch.linalg.inv(color_matrix.double()))
    return torch.fft.rfft2(decorrelated)


def seeded_param(kind: str, photos: torch.Tensor, *, magnitude: str, natural: torch.Tensor | None,
                 color_matrix: torch.Tensor | None):
    """An ImageParam whose initial images are `photos` rendered by `kind`'s synthesis."""
    n, channels, height, width = photos.shape
    k = default_color_matrix(channels, device=photos.device) if color_matrix is None else color_matrix
    spectrum = photo_spectrum(photos, k.to(photos.device))
    if kind == "maco":
        own = magnitude == "photo"
        amplitude = spectrum.abs() if own else natural.to(torch.float64).expand(spectrum.shape)
        return PhotoPhaseParam((height, width), phase=spectrum.angle().float(), magnitude=amplitude.float(),
                               color_matrix=k)
    param = FourierParam((height, width), generators=[torch.Generator(photos.device)] * n, channels=channels,
                         device=photos.device, color_matrix=k)
    scaled = spectrum / fourier_scale((height, width), device=photos.device, dtype=torch.float64)
    scaled = scaled / scaled.flatten(1).std(dim=1).clamp_min(1e-12)[:, None, None, None]
    with torch.no_grad():
        param.param.copy_(torch.view_as_real(scaled).float())
    return param


def accentuate(model, images, objectives, *, param: str = "maco", magnitude: str = "photo", penalty: float = 1.0,
               reg_layer: str | None = None, steps: int = 128, lr: float | None = None, image_size=None,
               **options) -> AccentuationResult:
    """Accentuate `objectives` in real `images`.

    images: (N, C, H, W) photos with values in [0, 1]; the images are rendered at their own size
        (image_size, when given, must match it).
    objectives: one per image, or one for all of them (Objective or target string).
    param: "maco" or "fourier"; magnitude: for maco, "photo" (the photo's own) or "natural".
    penalty: weight of the distance to the seed (>= 0); reg_layer: where it is measured, None
        for pixel space. lr: default DEFAULT_LR[param].
    options: as `visualize` (crops, box_size, noise, seed, device, amp, batch_size, ...).

    Returns an AccentuationResult: images, alpha (the gradient-based transparency), scores (the
    objective alone, on the final images), seeds and photos.
    """
    if param not in PARAMS:
        raise InvalidArgument(f"param must be one of {PARAMS}, got {param!r}")
    if magnitude not in MAGNITUDES:
        raise InvalidArgument(f"magnitude must be one of {MAGNITUDES}, got {magnitude!r}")
    if param == "fourier" and magnitude != "photo":
        raise InvalidArgument("magnitude applies to param='maco' (fourier optimizes the whole spectrum)")
    penalty = finite_number(penalty, "penalty", positive=False)
    if reg_layer is not None and not isinstance(reg_layer, str):
        raise InvalidArgument(f"reg_layer must be a layer name or None, got {reg_layer!r}")
    photos = checks.photo_batch(images)
    if image_size is not None:
        checks.photo_batch(photos, size=checks.image_size(image_size, "image_size"))
    goals = parse_targets(objectives)
    if len(goals) == 1:
        goals = goals * photos.shape[0]
    if len(goals) != photos.shape[0]:
        raise InvalidArgument(f"objectives: need one per image ({photos.shape[0]}) or one for all, got {len(goals)}")
    unit_ids = options.pop("unit_ids", None) or [f"{i}:{g.description}" for i, g in enumerate(goals)]
    seeds = {}

    def make_guide(checked) -> Guide:
        checks.photo_batch(photos, channels=checked.channels)
        on_device = photos.to(checked.device)
        natural = checked.param_kwargs.get("magnitude")
        color_matrix = checked.param_kwargs.get("color_matrix")

        def build(rows, generators=None):
            return seeded_param(param, on_device[rows.start:rows.stop], magnitude=magnitude, natural=natural,
                                color_matrix=color_matrix)

        with torch.no_grad():
            seeds["images"] = build(range(photos.shape[0]))()

        def term(rows, images, acts, reference_acts, crops):
            if reg_layer is None:
                seed = seeds["images"][rows.start:rows.stop]
                return -penalty * (images - seed).pow(2).flatten(1).mean(1)
            ours, theirs = (a.float().unflatten(0, (-1, crops)).flatten(1) for a in (acts[reg_layer],
                                                                                     reference_acts[reg_layer]))
            return -penalty * (ours - theirs).pow(2).mean(1) / theirs.pow(2).mean(1).clamp_min(1e-12)

        references = seeds["images"] if reg_layer is not None else None
        return Guide(references=references, term=term, layers=frozenset({reg_layer} - {None}), make_param=build,
                     final_scores=False)

    result = render_guided(model, goals, make_guide, layers={reg_layer} - {None}, unit_ids=unit_ids, param=param,
                           steps=steps, lr=DEFAULT_LR[param] if lr is None else lr,
                           image_size=tuple(photos.shape[-2:]), **options)
    return AccentuationResult(**vars(result), seeds=seeds["images"].cpu(), photos=photos.cpu())
