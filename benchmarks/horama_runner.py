"""Horama 0.3.0's MACO as published, driving one of our loaded models (benchmarks only).

Horama's images are in values_range (-1, 1), which is what the lite models' own normalization
(x - 0.5)/0.5 produces, so they go to the network without our normalization hook. Our default
spectrum is written where Horama looks for its file, so it does not download.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np
import torch

from phasevis_ext import models
from phasevis_ext.spectrum import natural_magnitude


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
        np.save("spectrum_decorrelated.npy", natural_magnitude((512, 512)).numpy())
        for c in classes:
            def objective(crops_batch, c=c):
                with models.without_normalization(model):
                    return model(crops_batch)[:, c].mean()

            image, _ = maco(objective, total_steps=steps, image_size=image_size, model_input_size=224,
                            values_range=(-1.0, 1.0), crops_per_iteration=crops, device=str(device))
            images.append(((image.detach() + 1) / 2).clamp(0, 1).cpu())
    return torch.stack(images)
