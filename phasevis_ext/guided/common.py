"""What accentuation and inversion share: a run of the optimization loop that starts from, or aims
at, real photos, through the loop's narrow `LoopHook`; the result that keeps the photos beside
the images; and the distance both measure activations with."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from ..checks import InvalidArgument
from ..model import loading as models
from ..render.loop import LoopHook, layers_read, render_units
from ..render.objectives import Objective
from ..render.results import VisualizationResult
from ..render.settings import RenderSettings
from ..render.visualize import check_unit_ids, prepare


@dataclass
class GuidedResult(VisualizationResult):
    """A run that starts from or aims at real photos (accentuation, inversion)."""

    photos: torch.Tensor | None = None  # (N, C, H, W) the photos as given
    seeds: torch.Tensor | None = None  # (N, C, H, W) accentuation's start: the photo as the parameterization renders it


def as_guided(result: VisualizationResult, **beside: torch.Tensor) -> GuidedResult:
    """`result` with the photos (and seeds) of its units beside it; a run cut short by Ctrl-C has
    fewer units than photos, and keeps only theirs."""
    return GuidedResult(**vars(result), **{name: images[:len(result)].cpu() for name, images in beside.items()})


def relative_l2(ours: torch.Tensor, theirs: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """(N,) `weight` times the mean squared difference of each row, divided by the mean square of
    `theirs`, so that one weight means the same at every layer. (The weight multiplies before the
    division, which fixes the rounding of accentuation's penalty.)"""
    return weight * (ours - theirs).pow(2).mean(1) / theirs.pow(2).mean(1).clamp_min(1e-12)


def render_guided(model, objectives: list[Objective], make_hook: Callable[[RenderSettings], LoopHook], *,
                  layers=(), settings: RenderSettings | None = None, unit_ids=None, progress: bool | None = None,
                  callback=None, **overrides) -> VisualizationResult:
    """The loop with a LoopHook built from the resolved settings: the shared body of
    `accentuation.accentuate` and `inversion.invert`. `layers`: what the hook reads, checked
    against the model before any work. One image per photo: samples and diversity do not apply."""
    start = time.perf_counter()
    for name in ("samples", "diversity", "diversity_layer"):
        if name in overrides:
            raise InvalidArgument(f"{name} applies to visualize only")
    settings = (settings or RenderSettings()).replace(**overrides)
    if settings.samples != 1 or settings.diversity:
        raise InvalidArgument("samples and diversity apply to visualize only")
    model_name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = models.load(model, device=settings.device)
    settings = settings.resolved_for(model)
    unit_ids = check_unit_ids(unit_ids, objectives)
    with prepare(model, settings, layers=layers_read(objectives, layers)) as prepared:
        hook = make_hook(settings)
        return render_units(prepared, objectives, unit_ids, settings, progress=progress, start=start,
                            model_name=model_name, hook=hook, callback=callback)
