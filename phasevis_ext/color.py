"""Colour decorrelation basis shared by the synthesis ops and the natural spectrum."""
from __future__ import annotations

import torch

# Square root of the ImageNet RGB colour covariance, as used by lucid and MACO,
# with rows scaled so the largest column norm is 1 (lucid divides by that norm).
# Pixels are row vectors: rgb = dec @ K.
IMAGENET_COLOR_MATRIX = (
    (0.56282854, 0.58447580, 0.58447580),
    (0.19482528, 0.0, -0.19482528),
    (0.04329450, -0.10823626, 0.06494176),
)


def default_color_matrix(channels: int, *, dtype=torch.float32, device=None) -> torch.Tensor:
    """K for `channels`: the ImageNet matrix for 3 channels, the identity otherwise."""
    if channels == 3:
        return torch.tensor(IMAGENET_COLOR_MATRIX, dtype=dtype, device=device)
    return torch.eye(channels, dtype=dtype, device=device)


def decorrelate(rgb: torch.Tensor, color_matrix: torch.Tensor | None = None) -> torch.Tensor:
    """(…, C, H, W) RGB to the decorrelated basis: dec = rgb @ K^-1 per pixel."""
    k = default_color_matrix(rgb.shape[-3], dtype=torch.float64) if color_matrix is None else color_matrix.double()
    k_inv = torch.linalg.inv(k).to(rgb.dtype)
    return torch.einsum("...chw,cd->...dhw", rgb, k_inv)


def recorrelate(dec: torch.Tensor, color_matrix: torch.Tensor | None = None) -> torch.Tensor:
    """(…, C, H, W) decorrelated basis back to RGB: rgb = dec @ K per pixel."""
    k = default_color_matrix(dec.shape[-3], dtype=dec.dtype, device=dec.device) if color_matrix is None else color_matrix
    return torch.einsum("...chw,cd->...dhw", dec, k.to(dec.dtype))
