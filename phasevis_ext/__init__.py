"""phasevis_ext: fast, faithful MACO feature visualization for PyTorch."""
from .color import IMAGENET_COLOR_MATRIX, default_color_matrix
from .ops import extension_available
from .synthesis import fourier_scale, fourier_synthesis, maco_synthesis

__all__ = [
    "IMAGENET_COLOR_MATRIX",
    "default_color_matrix",
    "extension_available",
    "fourier_scale",
    "fourier_synthesis",
    "maco_synthesis",
]
