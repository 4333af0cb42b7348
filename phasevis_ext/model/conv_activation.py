"""A convolution and the ReLU-family activation after it as one oneDNN call, in bf16 on the CPU.

In bf16, aten's clamp converts every element to fp32 and back, and costs about what the
convolution before it costs: on the AMX Xeon, a depthwise 3x3 convolution of 12 x 96 x 80² in
bf16 took 1.52 ms and with its ReLU6 3.33 ms, while oneDNN's convolution with the clamp as a
post-op took 1.46 ms (`benchmarks/conv_activation.py`; docs/benchmarks.md, "Activations inside the
convolution"). In fp32, whose clamp is cheap, the module runs the convolution and then the
activation in place, as `inplace.py` would.

The backward is autograd's for the pair: the activation's mask read from the output (0 < y < 6
exactly where 0 < x < 6, y > 0 exactly where x > 0), then the convolution's input gradient.
Values equal the separate ops' bit for bit: the post-op clamps the same bf16 output. The fused call
runs only for frozen weights (the loop never needs their gradients), whose bf16 copies are made
once rather than at every call as autocast makes them; not under torch.compile, whose inductor
fuses the pair itself.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from .depthwise import conv2d, runs_in_bf16, spread_gradient_pays, spread_input_gradient
from .padding import CroppedConv2d
from .surgery import memory_format_of


@functools.cache
def _fused_op_available() -> bool:
    # oneDNN's bf16 convolution refuses CPUs without AVX-512 BW/VL/DQ or AVX-NE-CONVERT (an AVX2 EPYC)
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


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


def clamp_in_place(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Hardtanh (ReLU6) overwriting x, its gradient masked by its output (autograd's own in-place
    Hardtanh saves a copy of its input instead)."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x.clamp_(low, high)
    return _ClampInPlace.apply(x, low, high)


def _activation_mask(grad: torch.Tensor, y: torch.Tensor, relu: bool, low: float, high: float) -> torch.Tensor:
    if relu:
        return torch.ops.aten.threshold_backward(grad, y, 0.0)
    return torch.ops.aten.hardtanh_backward(grad, y, low, high)


def _fused_forward(x, weight, bias, conv: tuple, relu: bool, low: float, high: float) -> torch.Tensor:
    stride, padding, dilation, groups = conv
    attr, scalars = ("relu", []) if relu else ("hardtanh", [low, high])
    return torch.ops.mkldnn._convolution_pointwise.default(x, weight, bias, list(padding), list(stride),
                                                            list(dilation), groups, attr, scalars, "")


class _ConvActivation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, conv, relu, low, high):
        y = _fused_forward(x, weight, bias, conv, relu, low, high)
        ctx.save_for_backward(x, weight, y)
        ctx.conv, ctx.activation = conv, (relu, low, high)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, y = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        grad = _activation_mask(grad.contiguous(memory_format=memory_format_of(y)), y, *ctx.activation)
        if spread_gradient_pays(weight, stride, padding, dilation, groups):
            grad_x = spread_input_gradient(grad, weight, tuple(x.shape[-2:]), stride, padding)
        else:
            grad_x, _, _ = torch.ops.aten.convolution_backward(grad, x, weight, None, list(stride), list(padding),
                                                              list(dilation), False, [0, 0], groups,
                                                              [True, False, False])
        return grad_x, None, None, None, None, None, None


def _symmetric_pad(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    if isinstance(conv, CroppedConv2d):
        return conv.pad
    rows, cols = _pair(conv.padding)
    return (cols, cols, rows, rows)


class ConvActivation2d(CroppedConv2d):
    """A convolution (plain, strided depthwise, or cropped "same") followed by ReLU (relu=True) or
    by a clamp to [low, high] (ReLU6, Hardtanh), with the same tensors."""

    def __init__(self, conv: nn.Conv2d, *, relu: bool, low: float = 0.0, high: float = 0.0):
        super().__init__(conv, _symmetric_pad(conv))
        self.relu, self.low, self.high = relu, float(low), float(high)
        self._bf16_copies: tuple | None = None  # (the weights' identity and versions, bf16 weight, bf16 bias)

    def extra_repr(self) -> str:
        activation = "relu" if self.relu else f"clamp({self.low}, {self.high})"
        return f"{super().extra_repr()}, activation={activation}"

    def _bf16_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.weight, self.bias
        key = (w.data_ptr(), w._version, None if b is None else (b.data_ptr(), b._version))
        if self._bf16_copies is None or self._bf16_copies[0] != key:
            self._bf16_copies = (key, w.detach().to(torch.bfloat16),
                                 None if b is None else b.detach().to(torch.bfloat16))
        return self._bf16_copies[1], self._bf16_copies[2]

    def _fuses(self, x: torch.Tensor) -> bool:
        w, b = self.weight, self.bias
        if not (x.device.type == "cpu" and x.dim() == 4 and not w.requires_grad
                and (b is None or not b.requires_grad) and not torch.compiler.is_compiling()):
            return False
        return runs_in_bf16(x, w, b) and _fused_op_available()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fuses(x):
            out = conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
            if self.cropped:  # a copy where autograd records it, so the activation may overwrite it
                out = self.window(x, out)
            return F.relu(out, inplace=True) if self.relu else clamp_in_place(out, self.low, self.high)
        weight, bias = self._bf16_weights()
        x = x.to(torch.bfloat16)  # autocast's cast of the input, differentiable as autocast's is
        conv = (_pair(self.stride), _pair(self.padding), _pair(self.dilation), self.groups)
        if torch.is_grad_enabled() and x.requires_grad:
            out = _ConvActivation.apply(x, weight, bias, conv, self.relu, self.low, self.high)
        else:
            out = _fused_forward(x, weight, bias, conv, self.relu, self.low, self.high)
        # the activation commutes with the crop: the margin's gradient is zero either way
        return self.window(x, out) if self.cropped else out
