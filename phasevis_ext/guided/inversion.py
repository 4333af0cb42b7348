"""Feature inversion: the image whose activations at a layer match a photo's, which shows what
that layer keeps of the photo and what it throws away.

Each image starts from the parameterization's random start (as in `visualize`) and is scored by
its similarity to its photo at `layer`, crop by crop: the image and the photo are cropped with
the same boxes, so the match is of the same region at the same scale.

similarity="cosine" (the default) compares the direction of the two activation tensors of a
crop: its range is [-1, 1] at every layer, so one learning rate and one number of steps suit
early and late layers alike, and an image cannot score by scaling its activations up. "l2" is
minus the mean squared difference divided by the photo's mean square, for activations whose
size matters.
"""
from __future__ import annotations

import torch

from .. import checks
from ..checks import InvalidArgument
from ..render.loop import LoopHook
from ..render.objectives import Objective
from ..render.results import VisualizationInterrupted
from .common import GuidedResult, as_guided, relative_l2, render_guided

SIMILARITIES = ("cosine", "l2")


def similarity(ours: torch.Tensor, theirs: torch.Tensor, crops: int, kind: str) -> torch.Tensor:
    """(N,) per unit, the mean over its crops of the similarity of the two activations."""
    ours, theirs = (a.float().flatten(1) for a in (ours, theirs))
    if kind == "cosine":
        per_crop = torch.nn.functional.cosine_similarity(ours, theirs, dim=1, eps=1e-12)
    else:
        per_crop = relative_l2(ours, theirs, -1.0)
    return per_crop.unflatten(0, (-1, crops)).mean(1)


def invert(model, images, layer: str, *, similarity_kind: str = "cosine", image_size=None, unit_ids=None,
           **options) -> GuidedResult:
    """Invert real `images` at `layer`.

    images: (N, C, H, W) photos with values in [0, 1], rendered at their own size (image_size, when
        given, must match it). layer: a layer name (`phasevis layers`).
    options: RenderSettings fields (param: "maco", "fourier" or "pixel"; lr, crops, box_size, noise,
        seed, device, amp, batch_size, ...), or settings=RenderSettings(...), and visualize's
        progress and callback.

    Returns a GuidedResult whose scores are the final similarities (fixed evaluation crops) and
    whose photos are `images`. Ctrl-C raises VisualizationInterrupted with such a result of the
    finished and partial images.
    """
    if not isinstance(layer, str) or not layer:
        raise InvalidArgument(f"layer must be a layer name, got {layer!r}")
    if similarity_kind not in SIMILARITIES:
        raise InvalidArgument(f"similarity_kind must be one of {SIMILARITIES}, got {similarity_kind!r}")
    size = None if image_size is None else checks.image_size(image_size, "image_size")
    photos = checks.photo_batch(images, size=size)
    description = f"invert({layer}, {similarity_kind})"
    goals = [Objective(description, frozenset()) for _ in range(photos.shape[0])]
    unit_ids = unit_ids or [f"{i}:{description}" for i in range(photos.shape[0])]

    def make_hook(settings) -> LoopHook:
        checks.photo_batch(photos, channels=settings.channels)

        def term(rows, images, acts, photo_acts, crops):
            return similarity(acts[layer], photo_acts[layer], crops, similarity_kind)

        return LoopHook(companions=photos.to(settings.device), term=term, layers=frozenset({layer}))

    try:
        result = render_guided(model, goals, make_hook, layers={layer}, unit_ids=unit_ids,
                               image_size=tuple(photos.shape[-2:]), **options)
    except VisualizationInterrupted as stop:
        raise VisualizationInterrupted(as_guided(stop.result, photos=photos)) from None
    return as_guided(result, photos=photos)
