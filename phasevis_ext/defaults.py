"""How units are rendered unless told otherwise: one table for `visualize`, the atlas, the
command line and its demo.

The values are the best measured point of image quality per second on EfficientNet-Lite0 class
logits, confirmed on classes that were not used to choose them (docs/benchmarks.md, "Quality per
second"; benchmarks/quality_per_second.py).
"""
from __future__ import annotations

STEPS = 128
IMAGE_SIZE = 256
CROPS = 3
BOX_SIZE = (0.25, 1.0)  # crop sides, as fractions of the image's shorter side
NOISE = 0.0  # std of the Gaussian noise added to each crop
BATCH_SIZE = 8  # units optimized together
