"""Folding static zero padding into the convolution it feeds, for a cheaper model pass.

TensorFlow's "same" padding, as EfficientNet-Lite's port and others reproduce it, runs a separate
zero pad before every convolution: a new tensor, filled, then copied into, forward and backward.
On a 2-core CPU that was 15% of a visualization step on Lite0 (`benchmarks/profile_step.py`).
A convolution pads with zeros by itself, for free, but only symmetrically. So:

- a symmetric pad (every stride-1 convolution of odd kernel) becomes the convolution's own padding;
- an asymmetric one (a stride-2 convolution on an even input pads one more on the far side) becomes
  the smallest symmetric padding that puts the convolution's sampling grid where the pad put it
  and covers the far side, and the outputs that the pad would not have made are cut off. For
  TensorFlow's stride-2 pads that is one row and one column more. The cut (`crop_output`) is one
  copy in the output's memory format, whose backward writes the gradient into one buffer of that
  format: autograd's own slicing would build it twice, in the contiguous format, and hand a
  channels-last convolution a gradient it must convert again.

Found generically, for any model: a convolution module whose own forward is "zero pad, then
conv2d with its own weights" (a subclass such as `Conv2dStaticSamePadding`), and a zero-pad module
whose only reader is a plain `nn.Conv2d` (`nn.Sequential(nn.ZeroPad2d(...), nn.Conv2d(...))`).
Each module's forward is traced with torch.fx with its children kept whole, so module names do not
change; a module that cannot be traced, a pad whose size depends on the input (timm's dynamic
`Conv2dSame`), a non-zero pad, a module with hooks and a module registered under two names are
left as they are. Like `folding.fold_batchnorm`, the model is never changed: the result is a copy
that shares its tensors (a model that cannot be copied is returned as it is).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.modules.padding import _ConstantPadNd
from torch.nn.modules.utils import _pair

from .depthwise import conv2d
from .surgery import change_modules, memory_format_of, replace_module, trace_own_forward, untouchable_modules


class CroppedConv2d(nn.Conv2d):
    """A zero-padded convolution with symmetric padding whose output starts `start` (rows, columns)
    in and has the size the convolution would have with `pad` = (left, right, top, bottom)."""

    def __init__(self, conv: nn.Conv2d, pad: tuple[int, int, int, int]):
        padding, start = _symmetric_cover(conv, pad)
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, padding, conv.dilation,
                         conv.groups, bias=conv.bias is not None, device="meta")
        self.weight, self.bias = conv.weight, conv.bias
        self.pad, self.start = tuple(pad), start
        self.train(conv.training)
        left, right, top, bottom = self.pad
        self.cropped = not (left == right == padding[1] and top == bottom == padding[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return self.window(x, out) if self.cropped else out

    def window(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The outputs of the padded convolution among `out`, the symmetric one's outputs for input x."""
        left, right, top, bottom = self.pad
        rows = _out_size(x.shape[-2], top + bottom, self, 0)
        cols = _out_size(x.shape[-1], left + right, self, 1)
        if rows <= 0 or cols <= 0:  # as the padded convolution would have refused it
            raise RuntimeError(f"input of {tuple(x.shape[-2:])} padded by {self.pad} is smaller than the kernel "
                               f"{tuple(self.kernel_size)}")
        return crop_output(out, self.start[0], rows, self.start[1], cols)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, as if padded {self.pad}"


class _CropOutput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out, top, rows, left, cols):
        ctx.window, ctx.shape, ctx.fmt = (top, rows, left, cols), out.shape, memory_format_of(out)
        window = out[..., top:top + rows, left:left + cols]
        # Always a copy: a window that happens to be contiguous would come back from .contiguous()
        # as a view, which an in-place activation after it may not overwrite.
        return torch.empty(window.shape, dtype=out.dtype, device=out.device, memory_format=ctx.fmt).copy_(window)

    @staticmethod
    def backward(ctx, grad):
        top, rows, left, cols = ctx.window
        full = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.fmt)
        # Only the margin is zeroed: the window is written once, by the copy.
        full[..., :top, :].zero_()
        full[..., top + rows:, :].zero_()
        full[..., top:top + rows, :left].zero_()
        full[..., top:top + rows, left + cols:].zero_()
        full[..., top:top + rows, left:left + cols].copy_(grad)
        return full, None, None, None, None


def crop_output(out: torch.Tensor, top: int, rows: int, left: int, cols: int) -> torch.Tensor:
    """out[..., top:top + rows, left:left + cols]: a new tensor in out's memory format where autograd
    records it (see the module's docstring), else the view, which costs nothing."""
    if not (torch.is_grad_enabled() and out.requires_grad):
        return out[..., top:top + rows, left:left + cols]
    return _CropOutput.apply(out, top, rows, left, cols)


def _out_size(size: int, total_pad: int, conv: nn.Conv2d, axis: int) -> int:
    reach = conv.dilation[axis] * (conv.kernel_size[axis] - 1) + 1
    return (size + total_pad - reach) // conv.stride[axis] + 1


def _symmetric_cover(conv: nn.Conv2d, pad: tuple[int, int, int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Per axis (rows, columns): the symmetric padding P >= both sides with P - near a multiple of
    the stride, so that output j + (P - near) / stride of the symmetric conv is output j of the padded
    one; and that offset."""
    left, right, top, bottom = pad
    padding, start = [], []
    for axis, (near, far) in enumerate(((top, bottom), (left, right))):
        stride = conv.stride[axis]
        steps = math.ceil(max(0, far - near) / stride)
        padding.append(near + steps * stride)
        start.append(steps)
    return tuple(padding), tuple(start)


def _zero_pad(module: nn.Module | None) -> tuple[int, int, int, int] | None:
    """(left, right, top, bottom) of a 2-D constant pad of zeros; None for anything else."""
    if isinstance(module, nn.Identity) or _returns_its_input(module):
        return (0, 0, 0, 0)
    if isinstance(module, _ConstantPadNd) and module.value == 0 and len(module.padding) == 4 \
            and all(p >= 0 for p in module.padding):
        return tuple(module.padding)
    return None


def _returns_its_input(module: nn.Module | None) -> bool:
    """A childless module whose forward is `return x` (ports define their own Identity)."""
    if module is None or isinstance(module, _ConstantPadNd) or next(module.children(), None) is not None:
        return False
    graph = trace_own_forward(module)
    if graph is None:
        return False
    nodes = list(graph.nodes)
    return len(nodes) == 2 and nodes[0].op == "placeholder" and nodes[1].op == "output" and nodes[1].args[0] is nodes[0]


def _plain_conv(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and not isinstance(module.padding, str) and module.padding_mode == "zeros"
            and module.padding == (0, 0))


def padded_conv_subclass(module: nn.Module) -> tuple[str, tuple[int, int, int, int]] | None:
    """(pad child, pad) of a conv subclass whose forward is exactly pad-child -> conv2d(own weight,
    bias, stride, dilation, groups, padding 0) -> output."""
    if not _plain_conv(module) or type(module).forward is nn.Conv2d.forward:
        return None
    graph = trace_own_forward(module)
    if graph is None:
        return None
    nodes = [n for n in graph.nodes if n.op not in ("placeholder", "output")]
    calls = [n for n in nodes if n.op in ("call_module", "call_function")]
    if len(calls) != 2 or calls[0].op != "call_module" or calls[1].target not in (F.conv2d, torch.conv2d):
        return None
    pad_node, conv_node = calls
    pad = _zero_pad(module.get_submodule(pad_node.target))
    args = list(conv_node.args) + [None] * (7 - len(conv_node.args))
    weight, bias, stride, padding, dilation, groups = args[1:7]
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    output = next(n for n in graph.nodes if n.op == "output")
    if pad is None or conv_node.kwargs or len(placeholders) != 1 or pad_node.args != (placeholders[0],) \
            or pad_node.kwargs or args[0] is not pad_node or output.args[0] is not conv_node:
        return None
    same_weight = isinstance(weight, fx.Node) and weight.op == "get_attr" and weight.target == "weight"
    same_bias = (bias is None and module.bias is None) or (
        isinstance(bias, fx.Node) and bias.op == "get_attr" and bias.target == "bias")
    if not (same_weight and same_bias and _pair(stride) == tuple(module.stride) and _pair(padding) == (0, 0)
            and _pair(dilation) == tuple(module.dilation) and groups == module.groups):
        return None
    if set(nodes) - {pad_node, conv_node, weight, bias}:  # anything else in the forward (an in-place op, ...)
        return None
    return pad_node.target, pad


def _pad_then_conv(parent: nn.Module) -> list[tuple[str, str, tuple[int, int, int, int]]]:
    """(pad child, conv child, pad) in `parent`'s forward where a zero pad's only reader is a
    plain conv child, and each is called once."""
    if not any(isinstance(child, _ConstantPadNd) for child in parent.children()):
        return []  # tracing every module of a large model would cost more than it finds
    graph = trace_own_forward(parent)
    if graph is None:
        return []
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    found = []
    for node in graph.nodes:
        if node.op != "call_module" or "." in node.target or len(node.users) != 1:
            continue
        pad = _zero_pad(parent.get_submodule(node.target))
        reader = next(iter(node.users))
        if pad is None or pad == (0, 0, 0, 0) or reader.op != "call_module" or "." in reader.target:
            continue
        conv = parent.get_submodule(reader.target)
        if (type(conv) is nn.Conv2d and _plain_conv(conv) and reader.args == (node,) and not reader.kwargs
                and calls[node.target] == 1 and calls[reader.target] == 1):
            found.append((node.target, reader.target, pad))
    return found


def fold_same_padding(model: nn.Module, keep=()) -> tuple[nn.Module, int]:
    """(a copy of model with its static zero pads folded into their convolutions, how many were
    folded); (model, 0) if there are none. keep: module names whose outputs are observed; a pad
    among them stays (its output is the padded input, which folding removes)."""
    keep = set(keep)
    untouchable = untouchable_modules(model)
    found = []
    for name, module in model.named_modules():
        subclass = padded_conv_subclass(module) if name and id(module) not in untouchable else None
        if subclass is not None:
            pad_child, pad = subclass
            pad_module = module.get_submodule(pad_child)
            if f"{name}.{pad_child}" not in keep and id(pad_module) not in untouchable:
                found.append(("own", name, None, pad))
        if id(module) in untouchable:
            continue
        for pad_child, conv_child, child_pad in _pad_then_conv(module):
            prefix = f"{name}." if name else ""
            children = (module.get_submodule(pad_child), module.get_submodule(conv_child))
            if prefix + pad_child not in keep and not any(id(m) in untouchable for m in children):
                found.append(("pair", name, (prefix + pad_child, prefix + conv_child), child_pad))
    return change_modules(model, found, _fold)


def _fold(model: nn.Module, found: tuple) -> None:
    kind, name, pair, pad = found
    if kind == "own":
        replace_module(model, name, CroppedConv2d(model.get_submodule(name), pad))
    else:
        pad_name, conv_name = pair
        replace_module(model, conv_name, CroppedConv2d(model.get_submodule(conv_name), pad))
        replace_module(model, pad_name, nn.Identity())
