"""Changing a model's modules without changing the caller's model: a copy that shares every
tensor, a rewrite of named modules done on it, one submodule swapped for another by its dotted
name, and what the passes that rewrite modules need to know first (one module's own forward as a
graph; the modules no pass may touch)."""
from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import fx, nn

T = TypeVar("T")


def copy_sharing_tensors(model: nn.Module) -> nn.Module:
    """A deep copy of the modules that shares the original's parameters and buffers, so that it
    costs only the memory of what is then replaced. Raises what `copy.deepcopy` raises (a model
    holding non-leaf tensors, as `weight_norm` leaves them, cannot be copied)."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared)


def change_modules(model: nn.Module, changes: list[T], change: Callable[[nn.Module, T], None],
                   owned: bool = False) -> tuple[nn.Module, int]:
    """(the model with change(model, c) done for each c of changes, how many) for a rewrite pass:
    model itself if it is already the caller's own copy (owned), else a copy sharing its tensors.
    (model, 0) where there is no change, or where model cannot be copied (e.g. the non-leaf tensors
    weight_norm keeps), which the rewrite then leaves as it is."""
    if not changes:
        return model, 0
    if owned:
        changed = model
    else:
        try:
            changed = copy_sharing_tensors(model)
        except (RuntimeError, TypeError):
            return model, 0
    for c in changes:
        change(changed, c)
    return changed, len(changes)


def replace_module(root: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` where `root.get_submodule(name)` is."""
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


class _ChildrenWhole(fx.Tracer):
    """Traces one module's own forward; every child is a single call."""

    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return True


def trace_own_forward(module: nn.Module, concrete_args: dict | None = None) -> fx.Graph | None:
    """The graph of `module`'s own forward, children as single calls; None where fx cannot follow it.
    concrete_args: arguments that every call passes with these values (a forward may branch on them)."""
    if isinstance(module, torch.jit.ScriptModule) or "forward" in vars(module):
        return None  # fx traces the class's forward, not one set on the instance nor a compiled one
    try:
        return _ChildrenWhole().trace(module, concrete_args=concrete_args or None)
    except Exception:  # noqa: BLE001 - a forward fx cannot follow is simply left as it is
        return None


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """The memory format a replacement's new tensors should take to match `t` (an op's output is
    compared with, and handed to, kernels that would otherwise convert it)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def has_hooks(module: nn.Module) -> bool:
    """Hooks a replacement would not carry (a user's, or a reparametrization's)."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None) or getattr(module, "parametrizations", None))


def untouchable_modules(model: nn.Module) -> set[int]:
    """ids of the modules a rewrite must leave alone: hooked ones, and ones registered under two
    names (fx names a module by its first name, but a forward may call it by another)."""
    names = Counter(id(m) for _, m in model.named_modules(remove_duplicate=False))
    return {i for i, count in names.items() if count > 1} | {id(m) for m in model.modules() if has_hooks(m)}
