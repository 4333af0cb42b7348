"""Strided depthwise convolutions with their input gradient through a stride-1 correlation: the same
gradient as autograd's, where the path is taken (bf16 on an AVX-512-bf16 CPU), and F.conv2d
everywhere else."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from phasevis_ext import models
from phasevis_ext.model import depthwise
from phasevis_ext.model.depthwise import (StridedDepthwiseConv2d, _StridedDepthwise, conv2d,
                                          spread_input_gradient, strided_depthwise)
from phasevis_ext.model.conv_activation import ConvActivation2d
from phasevis_ext.model.inplace import inplace_activations


@pytest.fixture
def native_bf16(monkeypatch):
    """The CPU kind the path is taken on (it computes the same on any CPU, only slower where bf16
    is emulated), so that every machine tests it."""
    monkeypatch.setattr(depthwise, "native_bf16", lambda: True)


def _autograd_input_gradient(grad, weight, x_shape, stride, padding):
    x = torch.zeros(x_shape, dtype=grad.dtype, requires_grad=True)
    out = F.conv2d(x, weight, None, stride, padding, 1, x_shape[1])
    return torch.autograd.grad(out, x, grad)[0]


@pytest.mark.parametrize("kernel, stride, padding", [
    (3, 2, 1), (5, 2, 2), (3, 2, 0), (5, 2, 4), ((3, 5), (2, 3), (1, 0)), (2, 2, 1), (3, 3, 2), (1, 2, 0),
])
@pytest.mark.parametrize("size", [(16, 16), (15, 17), (7, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_spread_gradient_is_autograds(kernel, stride, padding, size, channels_last):
    torch.manual_seed(0)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    stride = (stride, stride) if isinstance(stride, int) else stride
    padding = (padding, padding) if isinstance(padding, int) else padding
    if size[0] + 2 * padding[0] < kh or size[1] + 2 * padding[1] < kw:
        pytest.skip("smaller than the kernel")
    weight = torch.randn(6, 1, kh, kw, dtype=torch.float64)
    x_shape = (2, 6, *size)
    out_shape = F.conv2d(torch.zeros(x_shape, dtype=torch.float64), weight, None, stride, padding, 1, 6).shape
    grad = torch.randn(out_shape, dtype=torch.float64)
    if channels_last:
        grad = grad.contiguous(memory_format=torch.channels_last)
    spread = spread_input_gradient(grad, weight, size, stride, padding)
    assert spread.shape == x_shape
    assert spread.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(spread, _autograd_input_gradient(grad, weight, x_shape, stride, padding),
                               rtol=1e-12, atol=1e-12)


def test_the_function_passes_gradcheck_in_float64():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    weight, bias = torch.randn(3, 1, 3, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: _StridedDepthwise.apply(t, weight, bias, (2, 2), (1, 1)), (x,))


def _conv_grad(x, weight, bias, stride, padding, autocast, conv=conv2d):
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = conv(x, weight, bias, stride, padding, 1, x.shape[1])
    grad_fn = type(out.grad_fn).__name__
    out.float().square().sum().backward()
    return out, x.grad, grad_fn


@pytest.mark.parametrize("autocast", [True, False])
def test_bf16_takes_the_path_and_is_as_close_to_fp32_as_atens_bf16_gradient(native_bf16, autocast):
    torch.manual_seed(0)
    dtype = torch.float32 if autocast else torch.bfloat16
    x = torch.randn(4, 16, 20, 20).to(dtype).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(16, 1, 5, 5).to(dtype), torch.randn(16).to(dtype)
    out, grad, grad_fn = _conv_grad(x, weight, bias, 2, 2, autocast)
    aten_out, aten_grad, aten_grad_fn = _conv_grad(x, weight, bias, 2, 2, autocast, conv=F.conv2d)
    assert "StridedDepthwise" in grad_fn and "StridedDepthwise" not in aten_grad_fn
    assert out.dtype == torch.bfloat16 and grad.dtype == dtype
    torch.testing.assert_close(out, aten_out, rtol=0, atol=0)  # the forward is aten's
    reference = x.detach().float().requires_grad_(True)
    F.conv2d(reference, weight.float(), bias.float(), 2, 2, 1, 16).square().sum().backward()
    error = (grad.float() - reference.grad).norm()
    aten_error = (aten_grad.float() - reference.grad).norm()
    assert error < 1.5 * aten_error + 1e-3 * reference.grad.norm(), (error, aten_error)


def test_without_native_bf16_aten_runs_its_own_gradient(monkeypatch):
    monkeypatch.setattr(depthwise, "native_bf16", lambda: False)  # emulated bf16: aten's is faster
    x = torch.randn(2, 8, 12, 12)
    _, _, grad_fn = _conv_grad(x, torch.randn(8, 1, 3, 3), None, 2, 1, True)
    assert "StridedDepthwise" not in grad_fn


@pytest.mark.parametrize("case", ["fp32", "fp64 under autocast", "stride 1", "dilated", "grouped",
                                  "weight needs grad", "bias needs grad", "no input grad", "no grad mode",
                                  "padding as large as the kernel", "padding same"])
def test_everything_else_is_plain_conv2d(native_bf16, case):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 12, 12, requires_grad=case != "no input grad")
    weight, bias, stride, padding, dilation, groups, autocast = torch.randn(8, 1, 3, 3), None, 2, 1, 1, 8, True
    if case == "fp32":
        autocast = False
    elif case == "fp64 under autocast":
        x, weight = x.double(), weight.double()
    elif case == "stride 1":
        stride = 1
    elif case == "dilated":
        dilation = 2
    elif case == "grouped":
        weight, groups = torch.randn(8, 2, 3, 3), 4
    elif case == "weight needs grad":
        weight.requires_grad_(True)
    elif case == "bias needs grad":
        bias = torch.randn(8, requires_grad=True)
    elif case == "padding as large as the kernel":
        padding = 3
    elif case == "padding same":
        stride, padding = 1, "same"
    grad_mode = torch.no_grad() if case == "no grad mode" else torch.enable_grad()
    with grad_mode, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = conv2d(x, weight, bias, stride, padding, dilation, groups)
        expected = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    assert out.grad_fn is None or "StridedDepthwise" not in type(out.grad_fn).__name__
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_mixed_dtypes_outside_autocast_fail_as_in_conv2d(native_bf16):
    x = torch.randn(2, 8, 12, 12, dtype=torch.bfloat16, requires_grad=True)
    with pytest.raises(RuntimeError):
        F.conv2d(x, torch.randn(8, 1, 3, 3), None, 2, 1, 1, 8)
    with pytest.raises(RuntimeError):
        conv2d(x, torch.randn(8, 1, 3, 3), None, 2, 1, 1, 8)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(3, 8, 1)
        self.depthwise = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.act = nn.ReLU6()
        self.same = nn.Conv2d(8, 8, 3, stride=1, padding=1, groups=8)   # stride 1: stays
        self.dense = nn.Conv2d(8, 4, 3, stride=2, padding=1)            # not depthwise: stays

    def forward(self, x):
        return self.dense(self.same(self.act(self.depthwise(self.expand(x)))))


def test_the_rewrite_replaces_plain_strided_depthwise_convs_in_a_copy(native_bf16):
    torch.manual_seed(0)
    model = Block().requires_grad_(False)
    rewritten, count = strided_depthwise(model)
    assert count == 1
    assert type(rewritten.depthwise) is StridedDepthwiseConv2d and type(model.depthwise) is nn.Conv2d
    assert rewritten.depthwise.training == model.depthwise.training
    assert type(rewritten.same) is nn.Conv2d and type(rewritten.dense) is nn.Conv2d
    assert rewritten.depthwise.weight is model.depthwise.weight  # shared, not copied
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    grads = []
    for m in (model, rewritten):
        y = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(y)
        out.float().sum().backward()
        grads.append(y.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=3e-2, atol=3e-2 * grads[0].abs().max().item())
    # the activation after it goes into it (conv_activation.py), which keeps the spread gradient
    in_place, acts = inplace_activations(rewritten)
    assert acts == 1 and isinstance(in_place.depthwise, ConvActivation2d) and type(in_place.act) is nn.Identity


def test_hooked_modules_stay_and_a_model_without_any_is_returned_as_it_is():
    model = Block()
    model.depthwise.register_forward_hook(lambda *a: None)
    assert strided_depthwise(model) == (model, 0)
    plain = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3))
    assert strided_depthwise(plain) == (plain, 0)


class StridedDepthwiseBackwards(TorchDispatchMode):
    """Counts aten's input gradients of strided depthwise convolutions, by dtype."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default:
            grad, x, weight, stride, groups = args[0], args[1], args[2], args[4], args[9]
            if groups > 1 and groups == x.shape[1] and max(stride) > 1:
                self.seen.append(grad.dtype)
        return func(*args, **(kwargs or {}))


def test_lite0_prepared_for_the_cpu_runs_no_bf16_strided_depthwise_backward_of_atens(native_bf16):
    from phasevis_ext.model.prepared import prepare_model
    model = models.load("efficientnet_lite0")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 96, 96).contiguous(memory_format=torch.channels_last)
    grads = {}
    with prepare_model(model, layers=(), fold_batchnorm=True, channels_last=True, batch_size=2, memory_budget=None,
                       input_size=96, crops=1, image_size=(96, 96), device=torch.device("cpu"),
                       amp=torch.bfloat16, channels=3) as prepared:
        for label, module, amp in (("fp32", model, False), ("model", model, True), ("prepared", prepared.module, True)):
            y = x.clone().requires_grad_(True)
            with StridedDepthwiseBackwards() as seen:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                    out = module(y)
                out.float()[:, 1].sum().backward()
            grads[label] = (y.grad.flatten(), seen.seen)
    assert grads["model"][1] == [torch.bfloat16] * 4  # lite0's four stride-2 depthwise convolutions
    assert grads["prepared"][1] == []
    # bf16 autocast's input gradient is as close to fp32's through the prepared model as through the model
    reference = grads["fp32"][0]
    cosine = {label: F.cosine_similarity(grads[label][0], reference, dim=0).item() for label in ("model", "prepared")}
    assert cosine["prepared"] > cosine["model"] - 0.03, cosine
