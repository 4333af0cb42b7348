"""Folding eval-mode BatchNorm into the convolution that feeds it, for a cheaper model pass.

In eval mode a BatchNorm is a per-channel affine map, so conv → BN equals one conv with scaled
weights and a bias. Visualization differentiates the model pass with respect to its input at
every step, and on a 2-core CPU the BatchNorm forward and backward of EfficientNet-Lite0 were
~14% of a step (benchmarks/results/cpu_end_to_end.md); folded, they cost nothing.

The model is never changed: `fold_batchnorm` returns a folded copy (new modules, the original's
tensors shared except the folded convs' new weights) in which each folded BatchNorm is an
`nn.Identity`, so every module name still resolves and a hook on the BatchNorm's name sees the
same values. A convolution whose own output an objective reads (`keep`) is left
unfolded. Pairs are found with torch.fx; a model it cannot trace is returned as it is.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch import fx, nn

from ..checks import InvalidArgument
from .surgery import copy_sharing_tensors, replace_module

_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class _LeafTracer(fx.Tracer):
    # Convolution subclasses (e.g. TF "same" padding) stay whole: their forward uses self.weight/bias.
    def is_leaf_module(self, module: nn.Module, name: str) -> bool:
        return isinstance(module, _CONVS + _BATCHNORMS) or super().is_leaf_module(module, name)


def conv_batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, batchnorm name) pairs where the BatchNorm's only input is the conv's output and
    nothing else reads that output; [] if the model cannot be traced."""
    try:
        graph = _LeafTracer().trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure just means no folding
        return []
    modules = dict(model.named_modules())
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BATCHNORMS):
            continue
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
            continue
        source = node.args[0]
        if source.op != "call_module" or not isinstance(modules.get(source.target), _CONVS):
            continue
        if len(source.users) != 1 or calls[source.target] != 1 or calls[node.target] != 1:
            continue  # a shared module or an output read elsewhere cannot be folded
        pairs.append((source.target, node.target))
    return pairs


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    if bn.running_mean is None or bn.running_var is None or getattr(conv, "transposed", False):
        return False
    return conv.out_channels == bn.num_features


@torch.no_grad()
def _fold_into(conv: nn.Module, bn: nn.Module) -> None:
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    shift = -bn.running_mean.double() * scale
    if bn.affine:
        scale = scale * bn.weight.double()
        shift = shift * bn.weight.double() + bn.bias.double()
    weight = conv.weight
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    folded = (weight.double() * scale.view(shape)).to(weight.dtype)
    # Keep the weight's memory format (channels-last stays channels-last).
    conv.weight = nn.Parameter(torch.empty_like(weight).copy_(folded), requires_grad=False)
    conv.bias = nn.Parameter((bias * scale + shift).to(weight.dtype), requires_grad=False)


def fold_batchnorm(model: nn.Module, keep=()) -> tuple[nn.Module, int]:
    """(a folded deep copy of model, how many BatchNorms were folded); (model, 0) if none can be.

    model must be in eval mode. keep: module names whose own outputs are observed; a conv
    among them keeps its BatchNorm.
    """
    if model.training:
        raise InvalidArgument("fold_batchnorm: the model must be in eval mode (train-mode BatchNorm uses batch statistics)")
    keep = set(keep)
    modules = dict(model.named_modules())
    pairs = [(c, b) for c, b in conv_batchnorm_pairs(model) if c not in keep and _foldable(modules[c], modules[b])]
    if not pairs:
        return model, 0
    # Share every tensor with the original: only the folded convs get new ones, so the copy costs
    # the memory of those weights and nothing else.
    folded = copy_sharing_tensors(model)
    modules = dict(folded.named_modules())
    for conv_name, bn_name in pairs:
        _fold_into(modules[conv_name], modules[bn_name])
        replace_module(folded, bn_name, nn.Identity())
    return folded, len(pairs)
