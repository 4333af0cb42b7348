"""MACO's magnitude estimated from a folder of images, and plots of spectra: `phasevis spectrum
compute` and `phasevis spectrum plot`. The estimator's math (one image's magnitude, the colour
matrix from a covariance, the file format) is `spectrum`'s; this module reads the images."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..checks import InvalidArgument, channel_count, image_size
from ..io.images import center_crop_resize, iter_images, list_image_files
from ..ops.color import default_color_matrix
from . import diagnostics
from .diagnostics import periodic_component
from .spectrum import (
    DEFAULT_ASSET,
    data_color_matrix,
    image_magnitude,
    load_imagenet_magnitude,
    load_magnitude,
    save_magnitude,
)


def _prepared_images(images, size, channels, progress, desc):
    """(name, (C, H, W) float64 tensor at `size`, whether it was upsampled), one image at a time."""
    from tqdm.auto import tqdm

    total = len(images) if hasattr(images, "__len__") else None
    for name, array in tqdm(iter_images(images, channels), total=total, disable=not progress, desc=desc,
                            unit="img"):
        h, w = array.shape[:2]
        resized = np.ascontiguousarray(center_crop_resize(array, size))
        yield name, torch.from_numpy(resized).permute(2, 0, 1).double(), min(h / size[0], w / size[1]) < 1

def compute_magnitude(images, size, *, channels: int | None = 3, color_matrix="default", progress: bool = True,
                      out: str | os.PathLike | None = None, **meta) -> torch.Tensor:
    """Mean |rfft2| of natural images at `size`, in a decorrelated basis: (C, H, W//2+1) float64.

    `images` is a folder, a list of paths and/or arrays/tensors, or a batch (see image_io); float
    pixels are taken to be in [0, 1], integer ones are scaled by their type's maximum. channels:
    3 reads RGB (greyscale replicated), None takes the first image's count, any other count
    needs every image to have it. Images are streamed one at a time: centre-cropped to the
    aspect ratio of `size`, resized with PIL's antialiased Lanczos, transformed, and summed.
    Unreadable files warn and are skipped. Images smaller than `size` are upsampled, which
    empties their top frequencies; that warns too.

    color_matrix: "default" (`color.default_color_matrix(C)`: ImageNet's for 3 channels, the
    identity otherwise), "data" (`data_color_matrix` of these images' pixel covariance, from a
    first pass over them), or a C x C tensor.
    With `out`, writes an .npz (see save_magnitude) with the spectrum, its colour matrix and, for
    RGB, the luminance spectrum, with `meta` added to the metadata.
    """
    height, width = image_size(size)
    if channels is not None:
        channels = channel_count(channels)
    folder = None
    if isinstance(images, (str, os.PathLike)):
        folder, images = str(images), list_image_files(images)  # listed first so the bar knows the total
    elif isinstance(color_matrix, str) and color_matrix == "data" and not hasattr(images, "__len__"):
        images = list(images)  # read twice
    k = _requested_color_matrix(color_matrix, images, (height, width), channels, progress)
    dec_sum = grey_sum = k_inv = None
    count = upsampled = 0
    for _, image, small in _prepared_images(images, (height, width), channels, progress, "spectrum"):
        if dec_sum is None:
            channels = image.shape[0]
            k = default_color_matrix(channels, dtype=torch.float64) if k is None else k
            if k.shape != (channels, channels):
                raise InvalidArgument(f"color_matrix: expected ({channels}, {channels}) for {channels}-channel images, "
                                 f"got {tuple(k.shape)}")
            k_inv = torch.linalg.inv(k)
            dec_sum = torch.zeros(channels, height, width // 2 + 1, dtype=torch.float64)
            grey_sum = torch.zeros(1, height, width // 2 + 1, dtype=torch.float64) if channels == 3 else None
        upsampled += small
        dec_sum += torch.fft.rfft2(periodic_component(torch.einsum("chw,cd->dhw", image, k_inv)),
                                   norm="backward").abs()
        if grey_sum is not None:
            grey_sum += image_magnitude(image, grey=True)
        count += 1
    if count == 0:
        raise InvalidArgument(f"images: no readable image in {folder!r}" if folder else "images: no readable image")
    if upsampled:
        warnings.warn(f"{upsampled} of {count} images were smaller than {height}x{width} and were upsampled; "
                      "their spectra lack the top frequencies", stacklevel=2)
    dec = dec_sum / count
    if out is not None:
        meta.setdefault("source", folder or "in-memory images")
        save_magnitude(out, dec, grey=None if grey_sum is None else grey_sum / count, color_matrix=k,
                       size=[height, width], image_count=count, **meta)
    return dec


def _requested_color_matrix(color_matrix, images, size, channels, progress) -> torch.Tensor | None:
    """The colour matrix compute_magnitude was asked for; None for the default of the images' count."""
    if not isinstance(color_matrix, str):
        return torch.as_tensor(color_matrix, dtype=torch.float64)
    if color_matrix not in ("default", "data"):
        raise InvalidArgument(f"color_matrix: expected 'default', 'data' or a C x C tensor, got {color_matrix!r}")
    if color_matrix == "default":
        return None
    covariance = _data_covariance(images, size, channels, progress)
    return None if covariance is None else data_color_matrix(covariance)


def _data_covariance(images, size, channels, progress) -> torch.Tensor | None:
    """Channel covariance of every pixel of the images at `size`; None when there is no image."""
    total = outer = None
    pixels = 0
    for _, image, _ in _prepared_images(images, size, channels, progress, "colour covariance"):
        flat = image.reshape(image.shape[0], -1)
        total = flat.sum(1) if total is None else total + flat.sum(1)
        outer = flat @ flat.T if outer is None else outer + flat @ flat.T
        pixels += flat.shape[1]
    if total is None:
        return None
    mean = total / pixels
    return outer / pixels - torch.outer(mean, mean)

def cli_compute(images, size, out, *, channels: int | None = None, color_matrix: str = "data",
                progress: bool = True) -> Path:
    """`phasevis spectrum compute --images DIR --size 512 --out FILE`: writes FILE (.npz), returns its path.

    The images keep their own channel count unless `channels` is given, and the colour matrix
    comes from their covariance (color_matrix="data") unless "default" is asked for."""
    if isinstance(size, str):  # "512", "256x384" or "256,384" straight from the command line
        try:
            parts = tuple(int(p) for p in size.lower().replace("x", ",").split(","))
        except ValueError:
            raise InvalidArgument(f"size: expected N or HxW, got {size!r}") from None
        size = parts[0] if len(parts) == 1 else parts
    size = image_size(size)
    out = Path(out)
    compute_magnitude(images, size, channels=channels, color_matrix=color_matrix, progress=progress, out=out)
    return out if out.suffix == ".npz" else out.with_name(out.name + ".npz")

def cli_plot(files, out, *, references: bool = True) -> Path:
    """`phasevis spectrum plot FILE... --out PNG`: log-log radial amplitude per channel of each
    .npz/.npy spectrum, with the default and (when xplique is installed) ImageNet spectra for reference."""
    profiles = {}
    for f in files:
        mag, _, meta, _ = load_magnitude(f)
        profiles[Path(f).name] = diagnostics.radial_profile(mag, source_width=meta["size"][1])
    if references:
        mag, _, meta, _ = load_magnitude(DEFAULT_ASSET)
        profiles["default (photos)"] = diagnostics.radial_profile(mag, source_width=meta["size"][1])
        try:
            profiles["ImageNet (xplique)"] = diagnostics.radial_profile(load_imagenet_magnitude().magnitude)
        except FileNotFoundError:
            pass  # the reference is optional; the user's spectra are what was asked for
    diagnostics.plot_radial_profiles(profiles, out, title="radially averaged |rfft2| per pixel")
    return Path(out)
