"""The input gradient of strided depthwise convolutions in bf16 on the CPU, through a stride-1 one.

oneDNN 3.12 (torch 2.14's) computes the input gradient of a depthwise convolution of stride 2 in
bf16 with its generic strided brgemm kernel, one channel per group, which on the AVX-512-bf16
EPYC takes 25-60x its forward's time and 20x fp32's: with it, bf16 is no faster than fp32 on lite0,
on the EPYCs and on the AMX Xeon, although its 1x1 convolutions run 2-3x faster
(docs/benchmarks.md, "Precision of the model pass").

The same gradient is a stride-1 depthwise correlation, by the kernel turned 180°, of the output
gradient spread onto the input's grid with zeros between, which oneDNN runs with its depthwise
kernel. With input x of side H, padding p, stride s and kernel k, output o reads x[s·o + t - p]
for t < k, so x[i] receives g[o]·w[i + p - s·o]; written into a zero buffer G at k - 1 - p + s·o,
that sum is Σ_v G[i + v]·w[k - 1 - v], a correlation with no padding whose output has the side H
of x. Rows past the last window get zeros there, as they should.

`conv2d` takes this path where it was measured to pay: on a CPU with native bf16, AMX or not
(`cpu_kind.native_bf16`; with emulated bf16 aten's own is 3x faster), in bf16 (the
tensors' own dtype, or autocast's), for a depthwise convolution (one output channel per input
channel) with a stride above 1, no dilation, padding under the kernel, and frozen weights (the
loop never needs weight gradients); everywhere else it is `F.conv2d`. Plain `nn.Conv2d` modules of
that shape become `StridedDepthwiseConv2d` in the prepared model; the cropped convolutions of
`padding.py` call `conv2d` themselves.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from ..cpu_kind import native_bf16
from .surgery import change_modules, memory_format_of, replace_module, untouchable_modules


def spread_input_gradient(grad: torch.Tensor, weight: torch.Tensor, input_size: tuple[int, int],
                          stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """The gradient, with respect to its input of `input_size`, of a depthwise convolution with
    `weight` (C, 1, kh, kw), `stride` and `padding`, given the gradient `grad` of its output:
    the stride-1 correlation of the module's docstring."""
    n, c, out_h, out_w = grad.shape
    (kh, kw), (sh, sw), (ph, pw) = weight.shape[-2:], stride, padding
    height, width = input_size
    spread = torch.empty((n, c, height + kh - 1, width + kw - 1), dtype=grad.dtype, device=grad.device,
                         memory_format=memory_format_of(grad)).zero_()
    top, left = kh - 1 - ph, kw - 1 - pw
    spread[..., top:top + sh * (out_h - 1) + 1:sh, left:left + sw * (out_w - 1) + 1:sw] = grad
    return F.conv2d(spread, weight.flip(-2, -1), groups=c)


class _StridedDepthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(weight)
        ctx.input_size, ctx.stride, ctx.padding = tuple(x.shape[-2:]), stride, padding
        return F.conv2d(x, weight, bias, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        weight, = ctx.saved_tensors
        return spread_input_gradient(grad, weight, ctx.input_size, ctx.stride, ctx.padding), None, None, None, None


def strided_depthwise_shape(weight: torch.Tensor, stride, padding, dilation, groups) -> bool:
    """A depthwise convolution (one output channel per input channel) that the spread gradient
    covers: stride above 1, no dilation, integer padding under the kernel."""
    if isinstance(padding, str) or weight.dim() != 4 or groups != weight.shape[0] or weight.shape[1] != 1:
        return False
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    return (max(stride) > 1 and dilation == (1, 1)
            and all(0 <= p < k for p, k in zip(padding, weight.shape[-2:])))


def _autocast_to_bf16(*tensors: torch.Tensor | None) -> bool:
    # autocast hands a convolution fp32 (not fp64) tensors cast to its dtype, and bf16 ones as they are
    return (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and all(t is None or t.dtype in (torch.float32, torch.bfloat16) for t in tensors))


def spread_gradient_pays(weight: torch.Tensor, stride, padding, dilation, groups) -> bool:
    """Whether a bf16 convolution of this shape on this CPU takes its input gradient through
    `spread_input_gradient` (the module's docstring)."""
    return strided_depthwise_shape(weight, stride, padding, dilation, groups) and native_bf16()


def _takes_spread_path(x, weight, bias, stride, padding, dilation, groups) -> bool:
    if not (x.device.type == "cpu" and x.dim() == 4 and torch.is_grad_enabled() and x.requires_grad
            and not weight.requires_grad and (bias is None or not bias.requires_grad)
            and x.shape[1] == groups):
        return False
    return runs_in_bf16(x, weight, bias) and spread_gradient_pays(weight, stride, padding, dilation, groups)


def runs_in_bf16(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """A convolution of these tensors runs in bf16: by autocast, or by every tensor's own dtype
    (mixed dtypes get F.conv2d's error, not a cast)."""
    return _autocast_to_bf16(x, weight, bias) or (x.dtype == weight.dtype == torch.bfloat16
                                                 and (bias is None or bias.dtype == torch.bfloat16))


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding, dilation,
           groups: int) -> torch.Tensor:
    """F.conv2d, whose input gradient goes through `spread_input_gradient` where that pays (see the
    module's docstring)."""
    if not _takes_spread_path(x, weight, bias, stride, padding, dilation, groups):
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    low = torch.bfloat16  # autocast's cast, made here so that the Function's tensors are bf16
    return _StridedDepthwise.apply(x.to(low), weight.to(low), None if bias is None else bias.to(low),
                                   _pair(stride), _pair(padding))


class StridedDepthwiseConv2d(nn.Conv2d):
    """nn.Conv2d whose forward is `conv2d`: a strided depthwise convolution, with the same tensors."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, conv.groups, bias=conv.bias is not None, device="meta")
        self.weight, self.bias = conv.weight, conv.bias
        self.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _qualifies(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.padding_mode == "zeros"
            and strided_depthwise_shape(module.weight, module.stride, module.padding, module.dilation, module.groups))


def strided_depthwise(model: nn.Module, owned: bool = False) -> tuple[nn.Module, int]:
    """(a copy of model whose plain strided depthwise convolutions are `StridedDepthwiseConv2d`, how
    many); (model, 0) if none. owned: model is already the caller's own copy, changed as it is."""
    untouchable = untouchable_modules(model)
    chosen = [name for name, module in model.named_modules() if name and id(module) not in untouchable
              and _qualifies(module)]
    return change_modules(model, chosen, _rewrite, owned)


def _rewrite(model: nn.Module, name: str) -> None:
    replace_module(model, name, StridedDepthwiseConv2d(model.get_submodule(name)))
