"""`visualize`: optimize one image per objective so that the model scores it highly."""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..checks import InvalidArgument, unique_ids
from ..model import loading as models
from ..model.prepared import prepare_model
from .diversity import diversity_layers
from .loop import layers_read, render_units
from .objectives import Objective, parse_targets
from .results import VisualizationResult, default_unit_ids
from .settings import RenderSettings


def visualize(model: nn.Module | str, objectives, settings: RenderSettings | None = None, *,
              progress: bool | None = None, callback: Callable[[int, torch.Tensor, torch.Tensor], Any] | None = None,
              unit_ids: Sequence[str] | None = None, **overrides) -> VisualizationResult:
    """Optimize one image per objective so that the model scores it highly.

    model: an nn.Module taking images in [0, 1] (or a `models.load` name); it must already be on
        the settings' device (default: the device of its parameters). It runs in eval mode with
        frozen parameters for the call; its mode and requires_grad flags are restored afterwards.
    objectives: an Objective, a target string ('_blocks.15:0-7', 'logit:1,207') or a list of them.
    settings: a RenderSettings (every option, its default and its meaning: see its fields);
        keyword overrides change fields of it (or of the defaults): visualize(model, t, steps=64).
    callback(step, images, scores): every `callback_every` steps (step counts from 1 within a
        chunk) with the chunk's images at that step and their scores, detached; chunks run in
        order, so row j of a call is unit chunk_start + j.
    unit_ids: ids that seed each unit's random streams, default `default_unit_ids`.

    With samples=k > 1 the result's per-image entries are (N, k, ...). Ctrl-C (KeyboardInterrupt)
    raises VisualizationInterrupted carrying the finished units and the current chunk's images so
    far, marked in `result.partial`.
    """
    start = time.perf_counter()
    settings = (settings or RenderSettings()).replace(**overrides)
    objectives = parse_targets(objectives)
    if not objectives:
        raise InvalidArgument("objectives: nothing to visualize")
    model_name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = models.load(model, device=settings.device)
    if callback is not None and not callable(callback):
        raise InvalidArgument(f"callback must be callable, got {callback!r}")
    settings = settings.resolved_for(model)
    unit_ids = check_unit_ids(unit_ids, objectives)
    compare_at = diversity_layers(objectives, settings.diversity_layer) if settings.diversity else None
    with prepare(model, settings, layers=layers_read(objectives, compare_at),
                 batch_size=max(settings.batch_size, settings.samples)) as prepared:
        return render_units(prepared, objectives, unit_ids, settings, progress=progress, start=start,
                            model_name=model_name, callback=callback)


def prepare(model: nn.Module, settings: RenderSettings, *, layers, batch_size: int | None = None):
    """`model.prepared.prepare_model` with a run's resolved settings."""
    return prepare_model(model, layers=layers, fold_batchnorm=settings.fold_batchnorm, fold_padding=settings.fold_padding,
                         inplace_activations=settings.inplace_activations, compile=settings.compile,
                         channels_last=settings.channels_last,
                         batch_size=settings.batch_size if batch_size is None else batch_size,
                         memory_budget=settings.memory_budget, input_size=settings.input_size, crops=settings.crops,
                         image_size=settings.image_size, device=settings.device, amp=settings.amp,
                         channels=settings.channels)


def check_unit_ids(unit_ids, objectives: list[Objective]) -> list[str]:
    return default_unit_ids(objectives) if unit_ids is None else unique_ids(unit_ids, len(objectives))
