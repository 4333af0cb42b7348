"""Pure-PyTorch synthesis: the correctness oracle for the fused ops, and the fallback.

Every statistic is per sample over all its non-batch elements, and std is unbiased,
so these functions are the specification that csrc/ must match.
"""
from __future__ import annotations

import torch

from .color import recorrelate


def _standardize(t: torch.Tensor, eps: float) -> torch.Tensor:
    dims = tuple(range(1, t.dim()))
    mean = t.mean(dim=dims, keepdim=True)
    std = t.std(dim=dims, keepdim=True)  # unbiased; complex std is sqrt(sum|z - mean|^2 / (N - 1))
    return (t - mean) / (std + eps)


def synthesis_tail(spectrum: torch.Tensor, size, values_range, color_matrix, eps: float, gain=None,
                   offset=None) -> torch.Tensor:
    """Complex (B, C, H, Wr) spectrum to an image in values_range: irfft2, standardize, recorrelate, sigmoid.
    gain and offset ((B, 1, 1, 1) each), when given, restore a known std and mean after the standardization."""
    lo, hi = values_range
    image = torch.fft.irfft2(spectrum, s=tuple(size), norm="backward")
    image = _standardize(image, eps)
    if gain is not None:
        image = image * gain + offset
    image = recorrelate(image, color_matrix)
    return lo + (hi - lo) * torch.sigmoid(image)


def maco_synthesis_reference(phase, magnitude, size, values_range, color_matrix, eps, phase_scale: float = 1.0):
    phase_hat = _standardize(phase, eps) * phase_scale
    spectrum = torch.complex(magnitude * torch.cos(phase_hat), magnitude * torch.sin(phase_hat))
    return synthesis_tail(spectrum, size, values_range, color_matrix, eps)


def fourier_synthesis_reference(spectrum, scale, size, values_range, color_matrix, eps):
    """`spectrum` is complex (B, C, H, Wr); `scale` is real and broadcasts to (H, Wr)."""
    spectrum_hat = _standardize(spectrum, eps)
    return synthesis_tail(spectrum_hat * scale, size, values_range, color_matrix, eps)
