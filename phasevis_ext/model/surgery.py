"""Changing a model's modules without changing the caller's model: a copy that shares every
tensor, and one submodule swapped for another by its dotted name."""
from __future__ import annotations

import copy

from torch import nn


def copy_sharing_tensors(model: nn.Module) -> nn.Module:
    """A deep copy of the modules that shares the original's parameters and buffers, so that it
    costs only the memory of what is then replaced. Raises what `copy.deepcopy` raises (a model
    holding non-leaf tensors, as `weight_norm` leaves them, cannot be copied)."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared)


def replace_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where `root.get_submodule(name)` is."""
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)
