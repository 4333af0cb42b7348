"""Inputs shared by the op, API and robustness tests."""
import torch

import phasevis_ext as pv


def maco_inputs(batch, channels, height, width, *, dtype=torch.float32, device="cpu", per_sample=False):
    half = width // 2 + 1
    phase = torch.randn(batch, channels, height, half, dtype=dtype, device=device)
    shape = (batch, channels, height, half) if per_sample else (channels, height, half)
    magnitude = torch.rand(shape, dtype=dtype, device=device) * 2 + 0.1
    return phase, magnitude


def fourier_inputs(batch, channels, height, width, *, dtype=torch.float32, device="cpu"):
    half = width // 2 + 1
    spectrum = torch.randn(batch, channels, height, half, 2, dtype=dtype, device=device)
    scale = pv.fourier_scale((height, width), dtype=dtype, device=device)
    return spectrum, scale


def op_args(height, width, channels, dtype, device, values_range=(-1.0, 2.0)):
    """Positional tail of the raw ops: height, width, lo, hi, color_matrix, eps."""
    k = pv.default_color_matrix(channels, dtype=dtype, device=device)
    return (height, width, values_range[0], values_range[1], k, 1e-4)


SHAPES = [  # (B, C, H, W): even and odd, square and not, 8..96
    (1, 3, 8, 8),
    (3, 3, 9, 13),
    (1, 1, 96, 64),
    (3, 1, 17, 8),
    (1, 3, 31, 96),
    (3, 3, 64, 47),
    (1, 2, 12, 10),
    (3, 3, 1, 16),
    (1, 3, 16, 1),
]
