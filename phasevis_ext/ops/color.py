"""Colour decorrelation basis shared by the synthesis ops and the natural spectrum, and ImageNet's
pixel statistics."""
from __future__ import annotations

import torch

from ..checks import InvalidArgument

# ImageNet's per-channel RGB mean and std of pixels in [0, 1] (torchvision's normalization).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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


def check_color_matrix(color_matrix, channels: int, *, device, dtype, move: bool, finite: bool = True,
                       invertible: bool = False, name: str = "color_matrix") -> torch.Tensor:
    """A (channels, channels) colour matrix as a contiguous `dtype` tensor on `device`; None gives
    `default_color_matrix`. move: move a tensor there, else one on another device is refused
    (the synthesis ops' rule: they never copy across devices behind the caller's back).
    finite: refuse non-finite entries (a device sync: done once per run, not per step).
    invertible: refuse a singular matrix, with which images could not be decorrelated."""
    if color_matrix is None:
        return default_color_matrix(channels, dtype=dtype, device=device)
    if not isinstance(color_matrix, torch.Tensor):
        color_matrix = torch.as_tensor(color_matrix, dtype=dtype, device=device)
    if color_matrix.shape != (channels, channels):
        raise InvalidArgument(f"{name} must be ({channels}, {channels}) to match C = {channels}, "
                              f"got {tuple(color_matrix.shape)}")
    if move:
        color_matrix = color_matrix.to(device)
    elif color_matrix.device != torch.device(device):
        raise InvalidArgument(f"{name} must be on {torch.device(device)}, got {color_matrix.device}")
    if finite and not bool(torch.isfinite(color_matrix).all()):
        raise InvalidArgument(f"{name} contains non-finite values")
    if invertible and torch.linalg.matrix_rank(color_matrix.double()) < channels:
        raise InvalidArgument(f"{name} is singular; images could not be decorrelated with it")
    return color_matrix.to(dtype).contiguous()


def decorrelate(rgb: torch.Tensor, color_matrix: torch.Tensor | None = None) -> torch.Tensor:
    """(…, C, H, W) RGB to the decorrelated basis: dec = rgb @ K^-1 per pixel."""
    k = default_color_matrix(rgb.shape[-3], dtype=torch.float64) if color_matrix is None else color_matrix.double()
    k_inv = torch.linalg.inv(k).to(rgb.dtype)
    return torch.einsum("...chw,cd->...dhw", rgb, k_inv)


def recorrelate(dec: torch.Tensor, color_matrix: torch.Tensor | None = None) -> torch.Tensor:
    """(…, C, H, W) decorrelated basis back to RGB: rgb = dec @ K per pixel."""
    k = default_color_matrix(dec.shape[-3], dtype=dec.dtype, device=dec.device) if color_matrix is None else color_matrix
    return torch.einsum("...chw,cd->...dhw", dec, k.to(dec.dtype))
