"""torch-lucent 0.1.8, the classic method, run as its users run it (benchmarks only).

`render_vis` with its defaults: an FFT-parameterized, colour-decorrelated image (`param.image`,
sd 0.01), lucid's `standard_transforms` (pad 12, jitter 8, random scale, random rotation,
jitter 4), Adam at lr 0.05, 512 steps, one image per run, fp32. Two settings differ from its
defaults, as the comparison needs: images are 224² (lucent's default is 128²), and
`preprocess=False`, because our loaded models normalize their input themselves, which is what
lucent's own ImageNet normalization does for a model that expects it.

lucent 0.1.8 calls `kornia.get_rotation_matrix2d` and `kornia.warp_affine`, which current kornia
keeps in `kornia.geometry.transform`; `_kornia_shim` puts the two names back, and that is the only
change. Install (it pins an old torch, hence --no-deps):

    pip install --no-deps torch-lucent==0.1.8 kornia kornia_rs decorator && pip install ipython
"""
from __future__ import annotations

import importlib
import time
import warnings

import numpy as np
import torch

LUCENT_INSTALL = "pip install --no-deps torch-lucent==0.1.8 kornia kornia_rs decorator && pip install ipython"
DEFAULT_STEPS = 512  # render_vis's thresholds=(512,)
IMAGE_SIZE = 224


def _kornia_shim() -> None:
    import kornia
    from kornia.geometry import transform

    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(transform, name))


def lucent_missing() -> str | None:
    """Why lucent cannot run here, or None when it can."""
    try:
        _kornia_shim()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module("lucent.optvis.render")
    except ImportError as error:
        return f"not importable ({error}); install with `{LUCENT_INSTALL}`"
    return None


def lucent_layer_name(layer: str) -> str:
    """lucent addresses modules by their path joined with '_' (`_blocks.15` is `_blocks_15`)."""
    return layer.replace(".", "_")


def lucent_images(model, targets, *, steps: int = DEFAULT_STEPS, image_size: int = IMAGE_SIZE,
                  seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """((K, 3, H, W) images in [0, 1], seconds per unit), one render_vis run per (layer, index)
    target; layer "logits" means the model output (its last Linear, `logits_layer`)."""
    _kornia_shim()
    from lucent.optvis import objectives, param, render

    images, seconds = [], []
    for layer, index in targets:
        torch.manual_seed(seed)
        start = time.perf_counter()
        objective = objectives.channel(lucent_layer_name(layer), index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = render.render_vis(model, objective, param_f=lambda: param.image(image_size),
                                    thresholds=(steps,), preprocess=False, progress=False, show_image=False)
        seconds.append(time.perf_counter() - start)
        images.append(torch.from_numpy(np.ascontiguousarray(out[-1][0])).permute(2, 0, 1).float())
    return torch.stack(images).clamp(0, 1), seconds


def lucent_snapshots(model, targets, budgets, *, image_size: int = IMAGE_SIZE, seed: int = 0) -> dict:
    """{budget: ((K, 3, H, W) images, mean seconds per unit)} from one render_vis run per target
    with thresholds=budgets. The time of a budget is taken at the objective's next evaluation (one
    per step), which follows the threshold's snapshot; the last one is the run's end."""
    _kornia_shim()
    from lucent.optvis import objectives, param, render

    budgets = sorted(budgets)
    images = {b: [] for b in budgets}
    seconds = {b: [] for b in budgets}
    for layer, index in targets:
        torch.manual_seed(seed)
        objective = objectives.channel(lucent_layer_name(layer), index)
        calls = []

        def timed(hook, objective=objective, calls=calls):
            calls.append(time.perf_counter())
            return objective(hook)

        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = render.render_vis(model, objectives.Objective(timed), param_f=lambda: param.image(image_size),
                                    thresholds=tuple(budgets), preprocess=False, progress=False, show_image=False)
        end = time.perf_counter()
        for budget, array in zip(budgets, out):
            images[budget].append(torch.from_numpy(np.ascontiguousarray(array[0])).permute(2, 0, 1).float())
            seconds[budget].append((calls[budget] if budget < len(calls) else end) - start)
    return {b: (torch.stack(images[b]).clamp(0, 1), float(np.mean(seconds[b]))) for b in budgets}


def logits_layer(model) -> str:
    """The name of the model's last Linear module, which lucent hooks for class logits."""
    names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    if not names:
        raise ValueError("the model has no Linear layer to take class logits from")
    return names[-1]
