"""phasevis_ext: fast, faithful MACO feature visualization for PyTorch."""
from . import ops
from .activation_atlas import ActivationAtlas, activation_atlas
from .exemplars import ExemplarsResult, exemplars
from .guided.accentuation import accentuate
from .guided.common import GuidedResult
from .guided.inversion import invert
from .io import export
from .io.export import write_gallery
from .model import loading as models
from .ops.color import IMAGENET_COLOR_MATRIX, default_color_matrix
from .ops.fused import extension_available
from .ops.synthesis import fourier_scale, fourier_synthesis, maco_synthesis
from .param.spectrum import natural_magnitude
from .render import objectives
from .render.results import VisualizationInterrupted, VisualizationResult
from .render.settings import RenderSettings
from .render.visualize import visualize

__all__ = [
    "ActivationAtlas",
    "ExemplarsResult",
    "accentuate",
    "activation_atlas",
    "exemplars",
    "export",
    "GuidedResult",
    "IMAGENET_COLOR_MATRIX",
    "RenderSettings",
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
    "ops",
    "visualize",
    "write_gallery",
]
