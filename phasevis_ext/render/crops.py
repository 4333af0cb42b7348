"""Batched augmentations: random square crops of every image of a chunk, resized in one op.

Crops have the values of `torchvision.ops.roi_align(aligned=True, sampling_ratio=-1)`. The
adaptive sampling ratio takes ceil(box / out) x ceil(box / out) bilinear samples per output pixel
and averages them, a box filter as wide as the downsampling factor, so crops larger than the model
input are antialiased (white noise downsampled 4x keeps std/4, as a true 4x4 average does; one
bilinear sample per pixel keeps std/2). Upsampled crops get one bilinear sample per pixel. One call
serves boxes of every size and every image, with no pyramid to build. On the CPU the op is
`phasevis::crop_resize` (csrc/crop_resize.cpp: the same values, computed separably and with a
parallel backward; 48 crops of 384² to 224² forward+backward took 32 ms on 2 cores against 278 ms
for roi_align, whose CPU backward is serial); elsewhere, roi_align itself.

Randomness comes only from one torch.Generator per image (per unit), each drawn in turn, so the
crops of an image do not depend on the other images of the batch.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torchvision.ops import roi_align

from ..checks import InvalidArgument, check_box_size, positive_int
from ..ops import fused as ops

# Horama's spread of the crop centres around the image centre, in fractions of the image side.
CENTER_STD = 0.15
# How crop centres are drawn: "gaussian", 0.5 + N(0, CENTER_STD) of the side (Horama's), moved so the
# box stays inside; "uniform", uniform over the positions where the whole box fits, which shows the
# borders to small crops more often (docs/benchmarks.md, "Lattice and borders"). Boxes that reach
# past the borders into a mirrored or periodically continued image measured worse on both borders
# and transfer, and are not offered.
CROP_CENTERS = ("gaussian", "uniform")
# Offsets of the off-centre evaluation crops: one CENTER_STD from the centre along each diagonal.
_EVAL_OFFSETS = ((-CENTER_STD, -CENTER_STD), (CENTER_STD, -CENTER_STD), (-CENTER_STD, CENTER_STD),
                 (CENTER_STD, CENTER_STD))


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InvalidArgument(f"images must be a non-empty (N, C, H, W) tensor, got {shape}")


def _crop(images: torch.Tensor, unit_index: torch.Tensor, centers: torch.Tensor, sides: torch.Tensor,
          out_size: int) -> torch.Tensor:
    """Square crops: centres (K, 2) as (x, y) and sides (K,) in fractions; boxes are kept inside the image."""
    height, width = images.shape[-2:]
    side_px = sides * min(height, width)
    half = side_px / 2
    cx = (centers[:, 0] * width).clamp(min=half, max=width - half)
    cy = (centers[:, 1] * height).clamp(min=half, max=height - half)
    boxes = torch.stack([unit_index.to(cx.dtype), cx - half, cy - half, cx + half, cy + half], dim=1)
    boxes = boxes.to(images.dtype)
    if ops.crop_kernel_available(images):
        return ops.crop_resize_op(images, boxes, out_size)
    return roi_align(images, boxes, out_size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def random_crops(images: torch.Tensor, crops: int, out_size: int, box_size=(0.25, 1.0), *,
                 generators: Sequence[torch.Generator], noise: float = 0.0, centers: str = "gaussian") -> torch.Tensor:
    """(N * crops, C, out, out) random square crops, unit-major: image i owns rows [i*crops, (i+1)*crops).

    Sides are uniform in box_size as fractions of the shorter image side; centres are drawn as
    `centers` (CROP_CENTERS) says. `noise` adds N(0, noise²) to each
    crop. Image i draws its boxes, then its noise, from generators[i] alone.
    """
    _check_images(images)
    crops = positive_int(crops, "crops")
    out_size = positive_int(out_size, "out_size")
    lo, hi = check_box_size(box_size)
    if not math.isfinite(noise) or noise < 0:
        raise InvalidArgument(f"noise must be a finite std >= 0, got {noise!r}")
    count = images.shape[0]
    if len(generators) != count:
        raise InvalidArgument(f"generators: need one per image ({count}), got {len(generators)}")
    if centers not in CROP_CENTERS:
        raise InvalidArgument(f"centers must be one of {CROP_CENTERS}, got {centers!r}")

    device, dtype = images.device, images.dtype
    draws = []
    for generator in generators:
        if centers == "gaussian":
            where = 0.5 + CENTER_STD * torch.randn(crops, 2, generator=generator, device=device, dtype=dtype)
            sides = lo + (hi - lo) * torch.rand(crops, generator=generator, device=device, dtype=dtype)
        else:
            sides = lo + (hi - lo) * torch.rand(crops, generator=generator, device=device, dtype=dtype)
            where = _uniform_centers(sides, images.shape[-2:], generator)
        unit_noise = None
        if noise > 0:
            unit_noise = torch.randn(crops, images.shape[1], out_size, out_size, generator=generator,
                                     device=device, dtype=dtype)
        draws.append((where, sides, unit_noise))

    unit_index = torch.arange(count, device=device).repeat_interleave(crops)
    out = _crop(images, unit_index, torch.cat([d[0] for d in draws]), torch.cat([d[1] for d in draws]), out_size)
    if noise > 0:
        out = out + noise * torch.cat([d[2] for d in draws])
    return out


def _uniform_centers(sides: torch.Tensor, shape, generator: torch.Generator) -> torch.Tensor:
    """(K, 2) centres (x, y), in fractions of each side, uniform where boxes of these sides fit."""
    height, width = shape
    half = sides[:, None] * min(height, width) / 2 / torch.tensor([width, height], dtype=sides.dtype,
                                                                   device=sides.device)
    u = torch.rand(sides.shape[0], 2, generator=generator, device=sides.device, dtype=sides.dtype)
    return half + u * (1 - 2 * half)


def eval_boxes(box_size=(0.25, 1.0)) -> list[tuple[float, float, float]]:
    """The fixed evaluation boxes (centre x, centre y, side) spanning the training distribution.

    Centred crops at the smallest, middle and largest side of box_size (fewer when they
    coincide), plus four crops of the middle side one centre-std off the centre diagonally.
    """
    lo, hi = check_box_size(box_size)
    sides = sorted({hi, (lo + hi) / 2, lo}, reverse=True)
    middle = (lo + hi) / 2
    boxes = [(0.5, 0.5, side) for side in sides]
    if middle < 1:  # a full-side box has nowhere to move
        boxes += [(0.5 + dx, 0.5 + dy, middle) for dx, dy in _EVAL_OFFSETS]
    return boxes


def eval_crops(images: torch.Tensor, out_size: int, box_size=(0.25, 1.0)) -> torch.Tensor:
    """(N * K, C, out, out) crops at the K fixed `eval_boxes(box_size)`, unit-major, without noise."""
    _check_images(images)
    out_size = positive_int(out_size, "out_size")
    boxes = torch.tensor(eval_boxes(box_size), dtype=images.dtype, device=images.device)
    count, per_image = images.shape[0], boxes.shape[0]
    unit_index = torch.arange(count, device=images.device).repeat_interleave(per_image)
    boxes = boxes.repeat(count, 1)
    return _crop(images, unit_index, boxes[:, :2], boxes[:, 2], out_size)
