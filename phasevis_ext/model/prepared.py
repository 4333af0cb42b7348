"""The model as the optimization loop runs it, prepared once per run.

`prepare_model` freezes the model (eval mode, no parameter gradients) and, on request, turns it
channels-last for the duration of a `with` block; folds its BatchNorms into the convolutions
before them and its static zero pads into the convolutions after them, in a copy, gives its
strided depthwise convolutions a cheaper bf16 input gradient on the CPU (`depthwise.py`), runs
its activations in place, or inside the convolution before them (`conv_activation.py`), where
nothing else reads their input, and compiles that copy on request
(`compiled.py`); checks the layers objectives will read; and plans the batch size
against the memory budget with one probe forward pass. `visualize` prepares once per call, the
atlas once for all its batches, so a long run pays the copy, the fx trace, the folding and the
probe once instead of once per batch of units.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import nn

from ..allocator import tune_for_cpu_runs
from ..checks import InvalidArgument
from .activations import resolve_layers
from .compiled import compiled
from .depthwise import strided_depthwise
from .folding import fold_batchnorm as folded_copy
from .inplace import inplace_activations as inplace_copy
from .padding import fold_same_padding
from .memory import plan_batch_size


@dataclass(frozen=True)
class PreparedModel:
    module: nn.Module        # what runs: the model, or its copy with BatchNorms and pads folded (and compiled)
    layers: frozenset[str]   # the layers objectives may read: resolved, and their convs left unfolded
    batch_size: int          # units per chunk, as the memory budget allows
    folded: int              # BatchNorms folded into convolutions
    folded_pads: int = 0     # zero pads folded into convolutions
    in_place: int = 0        # activation modules run in place

    def check_layers(self, layers: Iterable[str]) -> None:
        """Objectives may only read layers the model was prepared for: a folded conv's output differs."""
        extra = sorted(set(layers) - self.layers)
        if extra:
            raise InvalidArgument(f"objectives read layers {extra} the model was not prepared for "
                                  f"(prepared: {sorted(self.layers)})")


@contextlib.contextmanager
def prepare_model(model: nn.Module, *, layers: Iterable[str], fold_batchnorm: bool, channels_last: bool,
                  fold_padding: bool = True, inplace_activations: bool = True, compile: bool = False,
                  batch_size: int, memory_budget: int | None, input_size: int, crops: int,
                  image_size: tuple[int, int], device: torch.device, amp, channels: int) -> Iterator[PreparedModel]:
    """A PreparedModel for the block; the model's own mode, gradient flags and memory format come back after."""
    layers = frozenset(layers)
    if torch.device(device).type == "cpu":  # each step frees and allocates the same large buffers: keep them
        tune_for_cpu_runs()
    with _frozen(model, channels_last):
        resolve_layers(model, layers)  # an unknown layer fails here, before any copy or probe
        module, folded = folded_copy(model, keep=layers) if fold_batchnorm else (model, 0)
        module, pads = fold_same_padding(module, keep=layers) if fold_padding else (module, 0)
        if torch.device(device).type == "cpu":  # oneDNN's bf16 input gradient of these is slow (depthwise.py)
            module, _ = strided_depthwise(module, owned=module is not model)
        module, in_place = inplace_copy(module, keep=layers, owned=module is not model) if inplace_activations else (module, 0)
        planned = plan_batch_size(module, batch_size=batch_size, input_size=input_size, crops=crops,
                                  image_size=image_size, device=device, amp=amp, budget=memory_budget,
                                  channels=channels)
        if compile:  # after the probe, whose hooks on every module would compile a graph of their own
            module = compiled(module, owned=module is not model)
        if planned < batch_size:
            warnings.warn(f"batch_size {batch_size} does not fit the memory budget; using {planned}", stacklevel=4)
        yield PreparedModel(module, layers, planned, folded, pads, in_place)


@contextlib.contextmanager
def _frozen(model: nn.Module, channels_last: bool = False):
    """Eval mode, no parameter gradients and optionally channels-last weights for the duration;
    the model's own settings come back after."""
    was_training = model.training
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if was_training:
        warnings.warn("the model was in train mode; it runs in eval mode", stacklevel=5)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
