"""Horama 0.3.0's MACO as published, driving one of our loaded models (benchmarks only).

Horama's images are in values_range (-1, 1); they reach the model as (x + 1)/2 through its own
normalization, which for the Lite models, (x - 0.5)/0.5, gives back x exactly, and for MobileNetV2
is torchvision's. Horama downloads xplique's ImageNet spectrum (`spectrum_decorrelated.npy`) to
the working directory at its first run; the same file, from the xplique 2.0.2 wheel, is put there
instead, so it runs offline on what its users get.

    pip install --no-deps horama==0.3.0 einops xplique==2.0.2
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from phasevis_ext.param.spectrum import imagenet_spectrum_path

HORAMA_INSTALL = "pip install --no-deps horama==0.3.0 einops xplique==2.0.2"


def horama_missing() -> str | None:
    """Why Horama cannot run here, or None when it can."""
    try:
        import horama  # noqa: F401
    except ImportError as error:
        return f"not importable ({error}); install with `{HORAMA_INSTALL}`"
    try:
        imagenet_spectrum_path()
    except FileNotFoundError as error:
        return f"its spectrum file is missing ({error})"
    return None


@contextlib.contextmanager
def _in_dir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def horama_class_images(model, classes, *, steps: int, image_size: int, crops: int, device) -> torch.Tensor:
    """(K, 3, H, W) images in [0, 1], one Horama MACO run per class logit."""
    from horama import maco

    images = []
    with tempfile.TemporaryDirectory() as tmp, _in_dir(tmp):
        shutil.copyfile(imagenet_spectrum_path(), "spectrum_decorrelated.npy")
        for c in classes:
            def objective(crops_batch, c=c):
                return model((crops_batch + 1) / 2)[:, c].mean()

            image, _ = maco(objective, total_steps=steps, image_size=image_size, model_input_size=224,
                            values_range=(-1.0, 1.0), crops_per_iteration=crops, device=str(device))
            images.append(((image.detach() + 1) / 2).clamp(0, 1).cpu())
    return torch.stack(images)


def horama_snapshots(model, classes, budgets, *, seed: int = 0) -> dict:
    """{budget: ((K, 3, H, W) images in [0, 1], mean seconds per unit)}, one run of Horama's maco
    with its defaults (1280² image, 6 crops, NAdam lr 1.0, noise 0.05) per class logit, to the
    largest budget. Horama returns only its last image, so its image function is wrapped to keep
    the latest image: the one the objective sees at step s + 1 is the image after s updates."""
    from horama import maco_fv

    budgets = sorted(budgets)
    images = {b: [] for b in budgets}
    seconds = {b: [] for b in budgets}
    original = maco_fv.maco_preconditioner
    latest = {}

    def keep_latest(*args, **kwargs):
        latest["image"] = original(*args, **kwargs)
        return latest["image"]

    maco_fv.maco_preconditioner = keep_latest
    try:
        with tempfile.TemporaryDirectory() as tmp, _in_dir(tmp):
            shutil.copyfile(imagenet_spectrum_path(), "spectrum_decorrelated.npy")
            for c in classes:
                torch.manual_seed(seed)
                calls = [0]
                start = time.perf_counter()

                def objective(crops_batch, c=c, calls=calls, start=start):
                    if calls[0] in budgets[:-1]:
                        images[calls[0]].append(((latest["image"].detach() + 1) / 2).clamp(0, 1).cpu())
                        seconds[calls[0]].append(time.perf_counter() - start)
                    calls[0] += 1
                    return model((crops_batch + 1) / 2)[:, c].mean()

                image, _ = maco_fv.maco(objective, total_steps=budgets[-1], model_input_size=224,
                                        values_range=(-1.0, 1.0), device="cpu")
                images[budgets[-1]].append(((image.detach() + 1) / 2).clamp(0, 1).cpu())
                seconds[budgets[-1]].append(time.perf_counter() - start)
    finally:
        maco_fv.maco_preconditioner = original
    return {b: (torch.stack(images[b]), float(np.mean(seconds[b]))) for b in budgets}
