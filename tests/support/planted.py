"""A model whose exemplars are known in advance, and images to find them in.

Layer `detect` (stride 1) holds two planted detectors: channel 0 responds to red (R - (G + B)/2),
channel 1 to blue. `pool` is a 4x4 average pool of it with stride 4, and the logits are its
spatial maxima, so logit 0 is the reddest image. Each image is grey with one coloured square
whose strength is known; with PHASEVIS_TEST_SLOW_FORWARD set, every forward pass waits that many
seconds, so that a pass can be killed part way through.
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch
from PIL import Image
from torch import nn

SIDE = 64
SQUARE = (20, 28, 36, 44)  # x0, y0, x1, y1 in the original image's pixels


class Planted(nn.Module):
    def __init__(self):
        super().__init__()
        self.detect = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.detect.weight.copy_(torch.tensor([[1.0, -0.5, -0.5], [-0.5, -0.5, 1.0]])[..., None, None])
        self.pool = nn.AvgPool2d(4, 4)

    def forward(self, x):
        if os.environ.get("PHASEVIS_TEST_SLOW_FORWARD"):
            time.sleep(float(os.environ["PHASEVIS_TEST_SLOW_FORWARD"]))
        return self.pool(self.detect(x)).amax((2, 3))


def planted():
    return Planted()


def write_images(folder, strengths: dict[str, tuple[str, float]], square=SQUARE) -> None:
    """name -> (colour, strength): a grey image with a red or blue square of that strength."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (colour, strength) in strengths.items():
        image = np.full((SIDE, SIDE, 3), 0.5, dtype=np.float32)
        x0, y0, x1, y1 = square
        channel = 0 if colour == "red" else 2
        image[y0:y1, x0:x1] = 0.5 - strength / 2
        image[y0:y1, x0:x1, channel] = 0.5 + strength / 2
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npy":
            np.save(path, image.transpose(2, 0, 1))
        else:
            Image.fromarray((image * 255).round().astype(np.uint8)).save(path)


def planted_grey():
    """A one-channel model, for images of another channel count."""
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveMaxPool2d(1), nn.Flatten())
