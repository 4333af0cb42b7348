"""Reading natural images as float (H, W, C) arrays in [0, 1], one at a time, for spectrum estimation.

Inputs are files and in-memory images:
  * image files PIL reads (PNG, JPEG, 8- and 16-bit greyscale TIFF, ...): greyscale has 1
    channel, colour 3; alpha is dropped;
  * `.npy` files: (H, W) one greyscale image, (C, H, W) one image, (N, C, H, W) a stack of N,
    channels first as in PyTorch;
  * numpy arrays (H, W) or (H, W, C), torch tensors (H, W) or (C, H, W).
Integer images are scaled by their type's maximum (255, 65535) and floats are taken to be in
[0, 1] already. With channels=3 (the RGB default) greyscale is replicated to RGB; with any
other count every image must have exactly that many channels, and channels=None takes the
count of the first image.
Files that cannot be decoded, truncated ones included, are skipped with a warning so that one
bad file does not end a long pass over a folder.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checks import InvalidArgument, InvalidArgumentType

# PIL opens 16-bit greyscale files in these modes; their range is 0..65535.
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class UnreadableImageWarning(UserWarning):
    """A file in an image collection could not be decoded and was skipped."""


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """Every non-hidden file under `folder`, sorted so runs are reproducible."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidArgument(f"images: {str(folder)!r} is not a folder")
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] (greyscale repeated); raises OSError/ValueError when PIL cannot decode it."""
    image = read_channels(path)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def read_channels(path: str | os.PathLike) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] with the file's own channels: 1 for greyscale, 3 for colour."""
    with Image.open(path) as im:
        im.load()  # decodes now, so truncated files fail here rather than half-read
        if im.mode in _SIXTEEN_BIT_MODES:
            return (np.asarray(im, dtype=np.float32) / 65535.0)[..., None]
        if im.mode == "F":
            return np.asarray(im, dtype=np.float32)[..., None]
        if im.mode in ("1", "L", "LA", "P") and (im.mode != "P" or _palette_is_grey(im)):
            return (np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[..., None]
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _palette_is_grey(im: Image.Image) -> bool:
    colours = np.asarray(im.convert("RGB")).reshape(-1, 3)
    return bool((colours == colours[:, :1]).all())


def _scaled(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / np.iinfo(array.dtype).max
    return np.asarray(array, dtype=np.float32)


def read_npy(path: str | os.PathLike, index: int | None = None):
    """The images of an .npy file as (H, W, C) float32 arrays (see the module doc for layouts);
    with `index`, that image only, read from a memory map rather than the whole stack."""
    array = np.load(path, allow_pickle=False, mmap_mode="r" if index is not None else None)
    if index is not None:
        if array.ndim == 4:
            array = np.asarray(array[index:index + 1])
        return read_npy_array(np.asarray(array))[0]
    return read_npy_array(array)


def read_npy_array(array: np.ndarray) -> list[np.ndarray]:
    """The images of an array as an .npy file holds them."""
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise InvalidArgument(f"expected a real numeric array, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or 0 in array.shape:
        raise InvalidArgument(f"expected (H, W), (C, H, W) or (N, C, H, W), got shape {array.shape}")
    return [np.ascontiguousarray(_scaled(image).transpose(1, 2, 0)) for image in array]


def as_rgb_array(image) -> np.ndarray:
    """An in-memory image as (H, W, 3) float32 in [0, 1]: greyscale repeated, alpha dropped."""
    array = as_array(image)
    if array.shape[-1] not in (1, 3, 4):
        raise InvalidArgument(f"images: expected 1, 3 or 4 channels for RGB, got shape {tuple(image.shape)}")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array[..., :3]


def as_array(image) -> np.ndarray:
    """An in-memory image with any number of channels as (H, W, C) float32: numpy (H, W) or
    (H, W, C), torch (H, W) or (C, H, W), channels first as in PyTorch."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        array = (t.permute(1, 2, 0) if t.dim() == 3 else t).numpy()
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise InvalidArgumentType(f"images: expected a path, numpy array or torch tensor, got {type(image).__name__}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or 0 in array.shape:
        raise InvalidArgument(f"images: expected an (H, W), (H, W, C) array or (C, H, W) tensor, got shape "
                              f"{tuple(image.shape)}")
    return _scaled(array)


def _with_channels(name: str, array: np.ndarray, channels: int) -> np.ndarray:
    if array.shape[-1] == channels:
        return array
    if channels == 3 and array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1)  # a greyscale photo among colour ones
    raise InvalidArgument(f"images: {name} has {array.shape[-1]} channels, not the {channels} needed here (the "
                          "model's input, or the first image's when the images set the count); one run reads "
                          "images of one channel count")


def iter_images(images, channels: int | None = 3) -> Iterator[tuple[str, np.ndarray]]:
    """Yields (name, (H, W, C) float32) one image at a time; unreadable files warn and are skipped.

    `images` is a folder, a list of paths and/or arrays/tensors, a (B, C, H, W) tensor batch or a
    (B, H, W, C) numpy batch. channels: see the module doc (3: RGB, greyscale replicated).
    """
    if isinstance(images, (str, os.PathLike)):
        items: Iterable = list_image_files(images)
    elif isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
        items = (images[i] for i in range(images.shape[0]))  # each keeps its type's layout
    else:
        items = images
    for index, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            try:
                if Path(item).suffix.lower() == ".npy":
                    arrays = [(f"{item}[{i}]", a) for i, a in enumerate(read_npy(item))]
                else:
                    arrays = [(str(item), read_channels(item))]
            except (OSError, ValueError, EOFError, Image.DecompressionBombError) as err:
                warnings.warn(f"skipping {str(item)!r}: not a readable image ({err})", UnreadableImageWarning,
                              stacklevel=2)
                continue
        elif channels == 3:
            arrays = [(f"<image {index}>", as_rgb_array(item))]
        else:
            arrays = [(f"<image {index}>", as_array(item))]
        for name, array in arrays:
            if channels is None:
                channels = array.shape[-1]
            yield name, _with_channels(name, array, channels)


def center_crop_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crops (H, W, 3) to the aspect ratio of `size` = (H, W) and resizes to it.

    Lanczos keeps the pass band flattest among PIL's antialiasing filters, which matters for a
    spectrum estimate; each channel goes through PIL's float mode so no precision is lost to 8 bits.
    """
    h, w = image.shape[:2]
    th, tw = size
    if (h, w) == (th, tw):
        return image
    scale = min(h / th, w / tw)
    ch, cw = th * scale, tw * scale  # fractional crop: PIL's box takes floats
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]))
                   .resize((tw, th), Image.Resampling.LANCZOS, box=box))
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1)
