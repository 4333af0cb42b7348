"""A folder tree of images as the model's evaluation transform shows them, for a DataLoader.

Files are found recursively and sorted (PNG, JPEG, TIFF and `.npy`; an `.npy` may hold a stack of
N images, which count as N items). Each item is resized so that its shorter side is the model's
evaluation size (`loading.eval_resize`), then centre-cropped to its input, with the geometry that
maps a pixel of the crop back to the original file's pixels. An unreadable file, or one with a
channel count the model does not take, is an item marked bad: the pass skips and counts it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..checks import InvalidArgument
from ..io.images import read_channels, read_npy

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")
BAD_READ, BAD_CHANNELS = 1, 2  # an item's `bad` code


@dataclass(frozen=True)
class Item:
    """One image: a file, and which image of an `.npy` stack (0 otherwise)."""

    path: str  # relative to the folder, with "/" separators
    index: int = 0

    @property
    def name(self) -> str:
        """The item as JSON, pages and warnings name it. A file name that is not UTF-8 (any bytes are
        allowed on POSIX) comes out of the file system with surrogates, which no UTF-8 file can hold:
        its undecodable bytes are written as \\xNN escapes instead."""
        path = os.fsencode(self.path).decode("utf-8", "backslashreplace")
        return path if self.index == 0 and not path.endswith(".npy") else f"{path}[{self.index}]"


def list_items(folder, exclude=None) -> list[Item]:
    """Every image under `folder`: sorted, hidden files left out, `.npy` stacks expanded; files
    under `exclude` (an output folder inside the images) left out too."""
    folder = Path(folder)
    skip = Path(exclude).resolve() if exclude is not None else None
    if not folder.is_dir():
        raise InvalidArgument(f"images: {str(folder)!r} is not a folder")
    try:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                       and not (skip is not None and p.resolve().is_relative_to(skip)))
    except PermissionError as error:
        raise InvalidArgument(f"images: cannot read {str(folder)!r} ({error.strerror})") from None
    items = []
    for path in files:
        relative = path.relative_to(folder).as_posix()
        if path.suffix.lower() == ".npy":
            count = _stack_length(path)
            items += [Item(relative, i) for i in range(count)]
        else:
            items.append(Item(relative))
    if not items:
        raise InvalidArgument(f"images: no PNG, JPEG, TIFF or .npy files under {str(folder)!r}")
    return items


def _stack_length(path: Path) -> int:
    """How many images an .npy holds, from its header; 1 when it cannot be read (its item will be bad)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return 1
    return int(array.shape[0]) if array.ndim == 4 else 1


def read_item(folder: Path, item: Item) -> np.ndarray:
    """(H, W, C) float32 in [0, 1]; raises OSError/ValueError for a file that cannot be decoded."""
    path = folder / item.path
    if path.suffix.lower() == ".npy":
        return read_npy(path, item.index)
    return read_channels(path)


def item_size(folder: Path, item: Item) -> tuple[int, int]:
    """(H, W) of an image without decoding it: PIL reads the header, NumPy maps the array."""
    path = folder / item.path
    if path.suffix.lower() == ".npy":
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        return (shape[-2], shape[-1]) if len(shape) >= 3 else (shape[0], shape[1])
    with Image.open(path) as im:
        return im.size[1], im.size[0]


def eval_geometry(height: int, width: int, resize: int, crop: int) -> tuple[list[float], tuple[int, int]]:
    """[x scale, y scale, left, top] of the evaluation view of an (H, W) image, and its resized
    size: pixel (x, y) of the crop is pixel ((x + left) / x scale, (y + top) / y scale) of the original."""
    # torchvision's rounding, so that the model sees the pixels its own evaluation transform gives:
    # Resize truncates the longer side, CenterCrop rounds the offset. A resize below the crop
    # (a user's eval_resize) is raised to it, so that the crop stays inside the image.
    resize = max(resize, crop)
    short, long = min(height, width), max(height, width)
    resized_long = max(resize, int(resize * long / short))
    size = (resize, resized_long) if height <= width else (resized_long, resize)
    top, left = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    return [size[1] / width, size[0] / height, float(left), float(top)], size


def eval_view(image: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """(C, crop, crop) of a (C, H, W) image: its shorter side resized to `resize`, then centre-cropped.
    Bilinear with antialiasing, as torchvision's Resize on tensors."""
    (_, _, left, top), size = eval_geometry(*image.shape[-2:], resize, crop)
    left, top = int(left), int(top)
    resized = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return resized[:, top:top + crop, left:left + crop].contiguous()


class ImageFolder(torch.utils.data.Dataset):
    """Items of `list_items` as dicts: image (C, crop, crop), id and bad (0, BAD_READ, BAD_CHANNELS)."""

    def __init__(self, folder, items: list[Item], *, channels: int, resize: int, crop: int):
        self.folder, self.items = Path(folder), items
        self.channels, self.resize, self.crop = channels, resize, crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        try:
            array = read_item(self.folder, self.items[i])
        except (OSError, ValueError, EOFError, Image.DecompressionBombError):
            return self._bad(i, BAD_READ)
        if array.shape[-1] == 1 and self.channels == 3:
            array = np.repeat(array, 3, axis=-1)  # a greyscale photo among colour ones
        if array.shape[-1] != self.channels:
            return self._bad(i, BAD_CHANNELS)
        image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
        return {"image": eval_view(image, self.resize, self.crop), "id": i, "bad": 0}

    def _bad(self, i: int, code: int) -> dict:
        return {"image": torch.zeros(self.channels, self.crop, self.crop), "id": i, "bad": code}


def open_folder(folder, channels: int, exclude=None) -> list[Item]:
    """The items of `folder` for a model taking `channels`: refuses a folder whose first readable
    image has another channel count (greyscale photos do for an RGB model)."""
    items = list_items(folder, exclude)
    for item in items[:16]:
        try:
            found = read_item(Path(folder), item).shape[-1]
        except (OSError, ValueError, EOFError, Image.DecompressionBombError):
            continue
        if found != channels and not (found == 1 and channels == 3):
            raise InvalidArgument(f"images: {item.name!r} has {found} channels; the model takes {channels}")
        return items
    raise InvalidArgument(f"images: none of the first images under {str(folder)!r} could be read")


def worker_count(requested: int | None) -> int:
    """DataLoader workers: as asked, else one per core beyond the one that runs the model, up to 4."""
    if requested is not None:
        return requested
    return max(0, min(4, (os.cpu_count() or 1) - 1))
