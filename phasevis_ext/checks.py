"""Argument checks shared by every module, and the exceptions that mark bad input.

A check raises InvalidArgument (a ValueError) or InvalidArgumentType (also a TypeError) whose
message starts with the argument's name. The command line tells these apart from every other
exception: bad input exits 2 with its message, anything else is an internal error and exits 1.

Unit ranges have one syntax everywhere (targets such as `_blocks.15:0-15`, `--channels`,
`--logits`, atlas.run): comma-separated items, each `N`, `A-B` (inclusive, as people count
units) or `A:B` (half-open, as Python slices; `A:`, `:B` and `:` run to the ends).
"""
from __future__ import annotations

import math
import numbers
import re

import numpy as np
import torch


class InvalidArgument(ValueError):
    """A value the caller passed cannot be used; the message names the argument."""


class InvalidArgumentType(InvalidArgument, TypeError):
    """An argument of the wrong type; the message names the argument."""


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgument(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def non_negative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentType(f"{name} must be an int >= 0, got {value!r}")
    if value < 0:
        raise InvalidArgument(f"{name} must be >= 0, got {value}")
    return int(value)


def finite_number(value, name: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or \
            (value <= 0 if positive else value < 0):
        raise InvalidArgument(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def image_size(size, name: str = "size", *, minimum: int = 1) -> tuple[int, int]:
    """An int (square) or a pair of ints as (H, W), each >= minimum."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if not isinstance(size, (tuple, list, torch.Size)) or len(size) != 2 or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size):
        raise InvalidArgumentType(f"{name}: expected an int or a pair of ints (H, W), got {size!r}")
    if min(size) < max(minimum, 1):
        need = "positive" if minimum <= 1 else f"at least {minimum} pixels per side"
        raise InvalidArgument(f"{name}: sizes must be {need}, got {tuple(size)!r}")
    return int(size[0]), int(size[1])


def device(value, name: str = "device") -> torch.device:
    """A torch.device that this machine has: "cpu", "cuda", "cuda:1", or a torch.device."""
    try:
        found = torch.device(value)
    except (RuntimeError, TypeError, ValueError):
        raise InvalidArgument(f"{name}: {value!r} is not a device; use cpu, cuda or cuda:N") from None
    if found.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgument(f"{name}: {value!r} asked for, but no CUDA GPU is available here; use cpu")
        if found.index is not None and found.index >= torch.cuda.device_count():
            raise InvalidArgument(f"{name}: {value!r} asked for, but this machine has {torch.cuda.device_count()} "
                                  "GPU(s)")
    return found


def check_box_size(box_size) -> tuple[float, float]:
    """Crop sides as fractions of the image side: (lo, hi) with 0 < lo <= hi <= 1."""
    try:
        lo, hi = (float(v) for v in box_size)
    except (TypeError, ValueError):
        raise InvalidArgument(f"box_size must be a pair (lo, hi) of fractions of the image side, "
                              f"got {box_size!r}") from None
    if not (0 < lo <= hi <= 1):
        raise InvalidArgument(f"box_size must satisfy 0 < lo <= hi <= 1, got {(lo, hi)}")
    return lo, hi


def unique_ids(ids, count: int, name: str = "unit_ids") -> list[str]:
    """`count` distinct ids as strings."""
    ids = [str(i) for i in ids]
    if len(ids) != count:
        raise InvalidArgument(f"{name}: need one per objective ({count}), got {len(ids)}")
    if len(set(ids)) != len(ids):
        raise InvalidArgument(f"{name} must be unique (they seed each unit's random streams)")
    return ids


def channel_count(channels, name: str = "channels") -> int:
    if not isinstance(channels, (int, np.integer)) or isinstance(channels, bool):
        raise InvalidArgumentType(f"{name}: expected an int, got {channels!r}")
    if channels < 1:
        raise InvalidArgument(f"{name}: must be at least 1, got {channels}")
    return int(channels)


_RANGE_ITEM = re.compile(r"(\d+)(?:-(\d+))?|(\d*):(\d*)")
RANGE_HELP = "use N, A-B (inclusive), A:B (half-open; A: and :B run to the ends) or comma lists such as 1,3,7"


def indices(spec, name: str, count: int | None = None) -> list[int]:
    """Unit indices from a range string, an int, or an iterable of ints (see the module doc).

    With `count`, open ends run to it and indices at or past it are dropped; without it, an open
    end is an error. An empty selection is an error either way.
    """
    if spec is None:
        spec = ":"
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        spec = [int(spec)]
    if isinstance(spec, str):
        out = []
        for item in spec.split(","):
            match = _RANGE_ITEM.fullmatch(item.strip())
            if not match:
                raise InvalidArgument(f"{name}: bad range {item.strip()!r} in {spec!r}; {RANGE_HELP}")
            if match[1] is not None:
                start = int(match[1])
                stop = int(match[2]) + 1 if match[2] else start + 1
                if stop <= start:
                    raise InvalidArgument(f"{name}: bad range {item.strip()!r} in {spec!r}: {start} > {stop - 1}")
            else:
                if not match[4] and count is None:
                    raise InvalidArgument(f"{name}: {item.strip()!r} needs an end here; {RANGE_HELP}")
                start = int(match[3] or 0)
                stop = int(match[4]) if match[4] else count
            out.extend(range(start, stop))
    else:
        try:
            out = [non_negative_int(i, name) for i in spec]
        except TypeError:
            raise InvalidArgumentType(f"{name}: expected a range string or ints, got {spec!r}") from None
    if count is not None:
        out = [i for i in out if i < count]
    if not out:
        where = "" if count is None else f" (there are {count})"
        raise InvalidArgument(f"{name}: {spec!r} selects nothing{where}")
    return out


def photo_batch(images, name: str = "images", *, channels: int | None = None, size=None) -> torch.Tensor:
    """Real images as a float (N, C, H, W) tensor with values in [0, 1], optionally of `channels`
    channels and of `size` (H, W)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InvalidArgument(f"{name} must be a non-empty (N, C, H, W) tensor, got {shape}")
    if not images.is_floating_point():
        raise InvalidArgument(f"{name} must be floating point with values in [0, 1] (divide 8-bit images by 255), "
                              f"got {images.dtype}")
    if not bool(torch.isfinite(images).all()) or images.min() < 0 or images.max() > 1:
        raise InvalidArgument(f"{name} must have finite values in [0, 1], got the range "
                              f"[{images.min().item():.4g}, {images.max().item():.4g}]")
    if channels is not None and images.shape[1] != channels:
        raise InvalidArgument(f"{name} have {images.shape[1]} channels but the model takes {channels}")
    if size is not None and tuple(images.shape[-2:]) != tuple(size):
        raise InvalidArgument(f"{name} are {images.shape[-2]}x{images.shape[-1]} but image_size is "
                              f"{size[0]}x{size[1]}: resize them, or leave image_size out to use theirs")
    return images.float()
