"""Running activations in place where autograd allows it, for a cheaper model pass.

An out-of-place ReLU6 allocates and writes a new activation-sized tensor, forward and backward.
In place, it overwrites its input, which is correct when nothing else needs that input: the ReLU
family's gradient can be read from its own output (the same mask: y > 0 exactly where x > 0, and
0 < y < 6 exactly where 0 < x < 6), so values and gradients are bit-for-bit the same as out of
place. Autograd's own in-place ReLU and LeakyReLU do that; its in-place Hardtanh (ReLU6) saves
its input instead, and so first copies it whole, which costs what out of place costs. Hardtanh
and ReLU6 therefore become `InPlaceHardtanh`, which clamps in place and keeps the output for its
backward. All of this holds as long as:

- the input comes from a module whose backward does not read its own output (a convolution, a
  TensorFlow-style "same" convolution, a linear layer, an eval-mode BatchNorm, or an `nn.Identity`
  such as a folded BatchNorm in front of one of those), and that output is a fresh tensor, not a
  view (a cropped convolution of `padding.py` copies its window out where autograd records it);
- nothing else reads that input: it has one reader in the graph, and no objective's hook
  (`keep`) is on the modules that made it or on the activation.

Found generically with the module tracing of `padding.py`: each module's own forward, children
whole, so every call of an activation module is seen where its parent calls it. An activation
module called at several places runs in place only if every call qualifies. Modules in the
subtree of a forward that cannot be traced, hooked modules and modules registered under two names
are left as they are. The model is never changed: the result is a copy that shares its tensors.
"""
from __future__ import annotations

import inspect

import torch
from torch import fx, nn

from .depthwise import StridedDepthwiseConv2d
from .padding import CroppedConv2d, padded_conv_subclass
from .surgery import change_modules, replace_module, trace_own_forward, untouchable_modules

# Activations whose gradient is a function of their output alone: in place, autograd's own form for
# ReLU and LeakyReLU, InPlaceHardtanh for Hardtanh and ReLU6.
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU)


class _ClampInPlace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, low, high):
        ctx.mark_dirty(x)
        ctx.low, ctx.high = low, high
        x.clamp_(low, high)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        out, = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, out, ctx.low, ctx.high), None, None


class InPlaceHardtanh(nn.Hardtanh):
    """nn.Hardtanh (or ReLU6) run in place, its gradient masked by its output."""

    def __init__(self, module: nn.Hardtanh):
        super().__init__(module.min_val, module.max_val, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return x.clamp_(self.min_val, self.max_val)
        return _ClampInPlace.apply(x, self.min_val, self.max_val)


# Producers whose backward does not read their output.
_PRODUCERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _activation(module: nn.Module) -> bool:
    if type(module) not in _ACTIVATIONS:  # a subclass may do anything in its forward
        return False
    # LeakyReLU's in-place backward is only defined for a non-negative slope.
    return not isinstance(module, nn.LeakyReLU) or module.negative_slope >= 0


def _fresh_output(module: nn.Module) -> bool:
    if isinstance(module, (CroppedConv2d, StridedDepthwiseConv2d)):  # a new tensor where autograd records it
        return True
    # Exact types, or a port's "same" convolution whose forward is checked to be pad, then conv2d: any
    # other subclass's forward may return a view or a tensor its backward reads.
    return type(module) in _PRODUCERS or padded_conv_subclass(module) is not None


def _call_qualifies(node: fx.Node, parent: nn.Module, prefix: str, keep: set[str], untouchable: set[int]) -> bool:
    """The activation call `node` may overwrite its input."""
    if len(node.args) != 1 or node.kwargs:
        return False
    source = node.args[0]
    while True:
        if not isinstance(source, fx.Node) or source.op != "call_module" or "." in source.target \
                or len(source.users) != 1 or prefix + source.target in keep:
            return False
        module = parent.get_submodule(source.target)
        if id(module) in untouchable:
            return False
        if type(module) is nn.Identity:
            if len(source.args) != 1 or source.kwargs:
                return False
            source = source.args[0]
            continue
        return _fresh_output(module)


def _constant_arguments(module: nn.Module, node: fx.Node) -> dict | None:
    """The arguments after the first that the call `node` passes as constants, by name."""
    try:
        names = list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return None
    found = {names[i]: value for i, value in enumerate(node.args) if i > 0 and i < len(names)
             and not isinstance(value, fx.Node)}
    found.update({k: v for k, v in node.kwargs.items() if not isinstance(v, fx.Node)})
    return found or None


def inplace_activations(model: nn.Module, keep=(), owned: bool = False) -> tuple[nn.Module, int]:
    """(a copy of model whose qualifying activations run in place, how many); (model, 0) if none.
    owned: model is already the caller's own copy (folding made it), so it is changed as it is."""
    keep = set(keep)
    untouchable = untouchable_modules(model)
    verdicts: dict[str, bool] = {}  # activation name -> every call seen so far qualifies
    opaque: list[str] = []          # prefixes of subtrees under a forward fx cannot follow
    constants: dict[str, dict | None] = {}  # child name -> the constant arguments of its one call (None: several)
    for name, parent in model.named_modules():
        children = dict(parent.named_children())
        if isinstance(parent, torch.jit.ScriptModule):  # compiled: no Python forward to read or change
            opaque.append(f"{name}." if name else "")
            continue
        if type(parent).forward is nn.Module.forward:  # ModuleList, ModuleDict: a forward that calls nothing
            continue
        if not any(_activation(child) for child in parent.modules() if child is not parent):
            continue
        # A forward that branches on a flag its caller always passes as a constant (EfficientNet's
        # blocks on drop_connect_rate) traces with that constant.
        graph = trace_own_forward(parent)
        if graph is None and constants.get(name):
            graph = trace_own_forward(parent, constants[name])
        if graph is None:
            opaque.append(f"{name}." if name else "")
            continue
        prefix = f"{name}." if name else ""
        for node in graph.nodes:
            if node.op != "call_module":
                continue
            full = prefix + node.target
            constants[full] = _constant_arguments(model.get_submodule(full), node) if full not in constants else None
            if "." in node.target:  # a grandchild called directly: its own parent's trace cannot see this call
                verdicts[full] = False
                continue
            child = children.get(node.target)
            if child is None or not _activation(child):
                continue
            ok = (not child.inplace and full not in keep and id(child) not in untouchable
                  and _call_qualifies(node, parent, prefix, keep, untouchable))
            verdicts[full] = verdicts.get(full, True) and ok
    chosen = [n for n, ok in verdicts.items() if ok and not any(n.startswith(p) for p in opaque)]
    return change_modules(model, chosen, _run_in_place, owned)


def _run_in_place(model: nn.Module, name: str) -> None:
    module = model.get_submodule(name)
    if isinstance(module, nn.Hardtanh):  # ReLU6 is one
        replace_module(model, name, InPlaceHardtanh(module))
    else:
        module.inplace = True
