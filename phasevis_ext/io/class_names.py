"""The names of a model's classes, for labelling logit units in galleries, records and atlases.

A model's logits get names from one of two places: a file the user gives (one name a line, or a
JSON list of strings), or ImageNet's 1000 classes where the model is an ImageNet classifier
(`models.has_imagenet_classifier`: a shipped or zoo model with ImageNet weights and its 1000-way
classifier). Any other model's logits stay unnamed: a 10-class model's logit 3 is not a tiger shark.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..checks import InvalidArgument
from ..model import loading as models
from ..model.activations import as_bchw, main_tensor
from .imagenet_classes import IMAGENET_CLASSES


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    """The names in a file: a JSON list of strings, or else one name a line (blank lines at the
    end are ignored; a blank line among the names is an error, since it would shift every name
    after it)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"class_names: no file at {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidArgument(f"class_names: cannot read {str(path)!r} as UTF-8 text ({err})") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidArgument(f"class_names: {str(path)!r} starts like a JSON list but is not one ({err})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidArgument(f"class_names: {str(path)!r} must be a JSON list of strings")
    else:
        names = text.rstrip("\n\r\t ").splitlines()
        blank = [i + 1 for i, name in enumerate(names) if not name.strip()]
        if blank:
            raise InvalidArgument(f"class_names: {str(path)!r} has a blank line among the names (line {blank[0]})")
        names = [name.strip() for name in names]
    if not names:
        raise InvalidArgument(f"class_names: {str(path)!r} holds no names")
    return tuple(names)


def logit_count(model: nn.Module, channels: int, input_size: int) -> int:
    """The size of the model's output, from one forward pass of a small batch."""
    param = next(model.parameters(), None)
    dummy = torch.full((1, channels, input_size, input_size), 0.5, device=param.device if param is not None else None)
    with torch.no_grad():
        output = main_tensor(model(dummy))
    if output is None:
        raise InvalidArgument(f"class_names: {type(model).__name__} does not output a tensor of logits")
    return as_bchw(output).shape[1]


def check_count(names: Sequence[str], count: int, source: str = "class_names") -> tuple[str, ...]:
    if len(names) != count:
        raise InvalidArgument(f"class_names: {source} has {len(names)} names but the model has {count} logits")
    return tuple(names)


def class_names_for(model: nn.Module, names: str | os.PathLike | Sequence[str] | None, count: int) -> \
        tuple[str, ...] | None:
    """The names of the `count` logits of `model`: those of `names` (a file or a sequence), which
    must have `count` entries; else ImageNet's for an ImageNet classifier; else None."""
    if names is not None:
        if isinstance(names, (str, os.PathLike)):
            return check_count(read_class_names(names), count, repr(str(names)))
        if not all(isinstance(n, str) for n in names):
            raise InvalidArgument("class_names: expected a file or a sequence of strings")
        return check_count(names, count, "the list")
    if models.has_imagenet_classifier(model) and count == len(IMAGENET_CLASSES):
        return IMAGENET_CLASSES
    return None
