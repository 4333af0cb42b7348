"""phasevis_ext: fast, faithful MACO feature visualization for PyTorch."""
from . import models, objectives
from .accentuation import accentuate
from .color import IMAGENET_COLOR_MATRIX, default_color_matrix
from .inversion import invert
from .ops import extension_available
from .render import GuidedResult, VisualizationInterrupted, VisualizationResult, visualize
from .spectrum import natural_magnitude
from .synthesis import fourier_scale, fourier_synthesis, maco_synthesis

__all__ = [
    "accentuate",
    "GuidedResult",
    "IMAGENET_COLOR_MATRIX",
    "VisualizationInterrupted",
    "VisualizationResult",
    "default_color_matrix",
    "extension_available",
    "fourier_scale",
    "fourier_synthesis",
    "invert",
    "maco_synthesis",
    "models",
    "natural_magnitude",
    "objectives",
    "visualize",
]
