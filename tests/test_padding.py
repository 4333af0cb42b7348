"""Static zero pads folded into their convolutions: the same function of the input, forward and
backward, for any model that pads that way; anything else left alone."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from phasevis_ext import models
from phasevis_ext.model.padding import CroppedConv2d, crop_output, fold_same_padding


class PadThenConv(nn.Conv2d):
    """A port's "same" convolution: its own forward pads, then convolves."""

    def __init__(self, *args, pad, **kwargs):
        super().__init__(*args, **kwargs)
        self.static_padding = nn.ZeroPad2d(pad)

    def forward(self, x):
        return nn.functional.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, self.padding,
                                    self.dilation, self.groups)


def _same_function(model, folded, shape):
    x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    y = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        y.copy_(x)
    a, b = model(x), folded(y)
    assert a.shape == b.shape
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(a)
    a.backward(grad)
    b.backward(grad)
    torch.testing.assert_close(y.grad, x.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pad, kernel, stride, dilation", [
    ((1, 1, 1, 1), 3, 1, 1),      # symmetric: the conv's own padding
    ((0, 1, 0, 1), 3, 2, 1),      # TF "same" at stride 2 on an even input
    ((1, 2, 1, 2), 5, 2, 1),
    ((2, 0, 3, 1), 3, (2, 3), 2),  # the near side larger, unequal strides, dilation
    ((0, 3, 1, 0), (2, 4), 1, 1),  # even kernels
])
@pytest.mark.parametrize("size", [(15, 16), (32, 32)])
def test_a_folded_pad_is_the_same_function_forward_and_backward(pad, kernel, stride, dilation, size):
    torch.manual_seed(0)
    sequential = nn.Sequential(nn.ZeroPad2d(pad), nn.Conv2d(3, 4, kernel, stride, dilation=dilation)).double()
    own = PadThenConv(3, 4, kernel, stride, dilation=dilation, pad=pad, bias=False).double()
    for model in (sequential, own):
        model = nn.Sequential(model) if model is own else model  # a conv is folded where its parent holds it
        folded, count = fold_same_padding(model)
        assert count == 1
        assert any(isinstance(m, CroppedConv2d) for m in folded.modules())
        assert not any(isinstance(m, nn.ZeroPad2d) for m in folded.modules())
        _same_function(model, folded, (2, 3, *size))


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_cropped_output_is_one_copy_and_its_gradient_keeps_the_memory_format(channels_last):
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 4, 3, 2)).double().to(memory_format=fmt)
    folded, _ = fold_same_padding(model)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    grad_formats = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.convolution_backward.default:
                grad_formats.append(args[0].is_contiguous(memory_format=fmt))
            if func is torch.ops.aten.slice_backward.default:
                grad_formats.append("slice_backward")
            return func(*args, **(kwargs or {}))

    out = folded(x)
    assert out.is_contiguous(memory_format=fmt) and out.shape == (2, 4, 8, 8)
    with Watch():
        out.backward(torch.randn_like(out))
    assert grad_formats == [True]  # one buffer in the output's format, no autograd slicing
    _same_function(model, folded, (2, 3, 16, 16))
    x = torch.rand(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: crop_output(t * 1.0, 1, 4, 2, 3), (x,))
    # a window that is contiguous as it is (full rows of one image) is still a copy, which an
    # in-place activation may overwrite
    y = crop_output(x * 1.0, 0, 4, 0, 6)
    assert y._base is None
    y.relu_().sum().backward()
    assert x.grad[..., :4, :].eq((x[..., :4, :] > 0).double()).all() and x.grad[..., 4:, :].eq(0).all()
    with torch.no_grad():  # nothing recorded: the view, which costs nothing
        assert crop_output(x, 1, 4, 2, 3)._base is x


def test_lite0_folded_equals_the_model_and_leaves_it_unchanged():
    model = models.load("efficientnet_lite0").double()
    pads_before = sum(isinstance(m, nn.ZeroPad2d) for m in model.modules())
    folded, count = fold_same_padding(model)
    assert count >= 17 and pads_before > 0  # the stem and every depthwise conv pad
    assert not any(isinstance(m, nn.ZeroPad2d) for m in folded.modules())
    assert sum(isinstance(m, nn.ZeroPad2d) for m in model.modules()) == pads_before
    assert folded.get_submodule("_blocks.15").__class__ is model.get_submodule("_blocks.15").__class__
    assert folded._conv_stem.weight is model._conv_stem.weight  # shared, not copied
    for size in (224, 256):
        _same_function(model, folded, (1, 3, size, size))


class NotFoldable(nn.Module):
    def __init__(self):
        super().__init__()
        self.ones = nn.ConstantPad2d(1, 1.0)
        self.conv = nn.Conv2d(3, 3, 3)
        self.shared = nn.ZeroPad2d(1)
        self.conv2 = nn.Conv2d(3, 3, 3)
        self.reflect = nn.ReflectionPad2d(1)
        self.conv3 = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        x = self.conv(self.ones(x))
        padded = self.shared(x)
        x = self.conv2(padded) + padded[..., 1:-1, 1:-1]  # the pad's output is read twice
        return self.conv3(self.reflect(x))


def test_pads_that_are_not_zero_static_and_single_use_stay():
    model = NotFoldable()
    assert fold_same_padding(model) == (model, 0)


def test_a_pad_an_objective_reads_stays():
    model = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, 3, 3))
    assert fold_same_padding(model, keep={"0"}) == (model, 0)
    assert fold_same_padding(model)[1] == 1


def test_the_prepared_model_folds_pads_unless_told_not_to():
    # In float32 a visualization is chaotic in its gradients' last bits (ReLU6's corners flip), so
    # the equality is the float64 tests above; here, that the run's model is the folded one.
    from phasevis_ext.render.settings import RenderSettings
    from phasevis_ext.render.visualize import prepare

    model = models.load("efficientnet_lite0")
    for fold, expected in ((True, 49), (False, 0)):
        settings = RenderSettings(fold_padding=fold, amp="none").resolved_for(model)
        with prepare(model, settings, layers=["_blocks.4"]) as prepared:
            assert prepared.folded_pads == expected
            assert isinstance(prepared.module._conv_stem, CroppedConv2d) == fold


class Aliased(nn.Module):
    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d(1)
        self.conv = nn.Conv2d(3, 3, 3)
        self.pad_alias = self.pad  # the forward calls the pad by its second name

    def forward(self, x):
        return self.conv(self.pad_alias(x))


class InPlaceBetween(nn.Conv2d):
    def __init__(self):
        super().__init__(3, 3, 3)
        self.static_padding = nn.ZeroPad2d(1)

    def forward(self, x):
        x = self.static_padding(x)
        x.mul_(2)
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def test_hooked_aliased_and_extra_forwards_stay():
    hooked = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(3, 3, 3))
    hooked[1].register_forward_hook(lambda module, args, out: None)
    for model in (hooked, Aliased(), nn.Sequential(InPlaceBetween())):
        assert fold_same_padding(model) == (model, 0)


def test_an_input_smaller_than_the_kernel_is_refused_as_before():
    model = nn.Sequential(nn.ZeroPad2d((0, 0, 3, 0)), nn.Conv2d(1, 1, (7, 1)))
    folded, _ = fold_same_padding(model)
    x = torch.rand(1, 1, 1, 4)
    with pytest.raises(RuntimeError):
        model(x)
    with pytest.raises(RuntimeError, match="smaller than the kernel"):
        folded(x)
