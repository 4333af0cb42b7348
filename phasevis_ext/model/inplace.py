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

Where every call of an activation module follows a convolution of its own (plain, strided
depthwise or cropped, called once), the convolutions become `ConvActivation2d`, which apply the
activation themselves (inside oneDNN's call in bf16, `conv_activation.py`), and the activation
module an `nn.Identity`.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections import Counter

import torch
from torch import fx, nn

from .conv_activation import ConvActivation2d, clamp_in_place
from .depthwise import StridedDepthwiseConv2d
from .padding import CroppedConv2d, padded_conv_subclass
from .surgery import change_modules, replace_module, trace_own_forward, untouchable_modules

# Activations whose gradient is a function of their output alone: in place, autograd's own form for
# ReLU and LeakyReLU, InPlaceHardtanh for Hardtanh and ReLU6.
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU)


class InPlaceHardtanh(nn.Hardtanh):
    """nn.Hardtanh (or ReLU6) run in place, its gradient masked by its output."""

    def __init__(self, module: nn.Hardtanh):
        super().__init__(module.min_val, module.max_val, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return clamp_in_place(x, self.min_val, self.max_val)


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


def _qualifying_producer(node: fx.Node, parent: nn.Module, prefix: str, keep: set[str],
                         untouchable: set[int]) -> str | None:
    """The name of the module whose output the activation call `node` may overwrite, or None."""
    if len(node.args) != 1 or node.kwargs:
        return None
    source = node.args[0]
    while True:
        if not isinstance(source, fx.Node) or source.op != "call_module" or "." in source.target \
                or len(source.users) != 1 or prefix + source.target in keep:
            return None
        module = parent.get_submodule(source.target)
        if id(module) in untouchable:
            return None
        if type(module) is nn.Identity:
            if len(source.args) != 1 or source.kwargs:
                return None
            source = source.args[0]
            continue
        return prefix + source.target if _fresh_output(module) else None


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


def inplace_activations(model: nn.Module, keep=(), owned: bool = False,
                        into_convolutions: bool = True) -> tuple[nn.Module, int]:
    """(a copy of model whose qualifying activations run in place or inside the convolution before
    them, how many); (model, 0) if none.
    owned: model is already the caller's own copy (folding made it), so it is changed as it is.
    into_convolutions=False keeps every activation a module of its own, in place."""
    scan = _scan(model, set(keep))
    chosen = [n for n, ok in scan.verdicts.items() if ok and not any(n.startswith(p) for p in scan.opaque)]
    changes = []
    for name in chosen:
        producers = scan.producers[name]
        # Fused only if every call follows a convolution of its own: the activation module then goes.
        fuses = (into_convolutions and type(model.get_submodule(name)) is not nn.LeakyReLU
                 and len(set(producers)) == len(producers)
                 and all(scan.calls[p] == 1 and _fusable(model.get_submodule(p)) for p in producers))
        changes.append((name, tuple(producers) if fuses else ()))
    return change_modules(model, changes, _run_in_place, owned)


def _fusable(module: nn.Module) -> bool:
    """A convolution `ConvActivation2d` can stand for: plain, strided depthwise, or a "same" one."""
    return (type(module) in (nn.Conv2d, CroppedConv2d, StridedDepthwiseConv2d) and module.padding_mode == "zeros"
            and not isinstance(module.padding, str) and module.weight.dim() == 4)


@dataclasses.dataclass
class _Scan:
    verdicts: dict[str, bool] = dataclasses.field(default_factory=dict)  # activation -> every call qualifies
    # activation -> the module each of its calls reads
    producers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    calls: Counter = dataclasses.field(default_factory=Counter)          # module -> calls seen
    opaque: list[str] = dataclasses.field(default_factory=list)          # subtrees under a forward fx cannot follow


def _scan(model: nn.Module, keep: set[str]) -> _Scan:
    """Every call of an activation module in the forwards fx can follow, and whether it qualifies."""
    scan = _Scan()
    untouchable = untouchable_modules(model)
    constants: dict[str, dict | None] = {}  # child name -> the constant arguments of its one call (None: several)
    for name, parent in model.named_modules():
        children = dict(parent.named_children())
        if isinstance(parent, torch.jit.ScriptModule):  # compiled: no Python forward to read or change
            scan.opaque.append(f"{name}." if name else "")
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
            scan.opaque.append(f"{name}." if name else "")
            continue
        prefix = f"{name}." if name else ""
        for node in graph.nodes:
            if node.op != "call_module":
                continue
            full = prefix + node.target
            scan.calls[full] += 1
            constants[full] = _constant_arguments(model.get_submodule(full), node) if full not in constants else None
            if "." in node.target:  # a grandchild called directly: its own parent's trace cannot see this call
                scan.verdicts[full] = False
                continue
            child = children.get(node.target)
            if child is None or not _activation(child):
                continue
            producer = None
            if not child.inplace and full not in keep and id(child) not in untouchable:
                producer = _qualifying_producer(node, parent, prefix, keep, untouchable)
            scan.verdicts[full] = scan.verdicts.get(full, True) and producer is not None
            scan.producers.setdefault(full, []).append(producer)
    return scan


def _run_in_place(model: nn.Module, change: tuple[str, tuple[str, ...]]) -> None:
    name, fused_into = change
    module = model.get_submodule(name)
    if fused_into:  # the convolutions before it apply it
        for conv_name in fused_into:
            conv = model.get_submodule(conv_name)
            fused = ConvActivation2d(conv, relu=True) if isinstance(module, nn.ReLU) else \
                ConvActivation2d(conv, relu=False, low=module.min_val, high=module.max_val)
            replace_module(model, conv_name, fused)
        replace_module(model, name, nn.Identity())
    elif isinstance(module, nn.Hardtanh):  # ReLU6 is one
        replace_module(model, name, InPlaceHardtanh(module))
    else:
        module.inplace = True
