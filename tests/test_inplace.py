"""Activations run in place where nothing else needs their input: bit-for-bit the same function,
forward and backward; left alone wherever an overwrite would change what someone reads."""
import pytest
import torch
from torch import nn
from support.op_calls import OpCalls

from phasevis_ext import models
from phasevis_ext.model.folding import fold_batchnorm
from phasevis_ext.model.inplace import InPlaceHardtanh, inplace_activations
from phasevis_ext.model.padding import fold_same_padding


def _inplace_names(model):
    return sorted(name for name, m in model.named_modules() if getattr(m, "inplace", False))



def _same_function(model, changed, shape, dtype=torch.float64, channels_last=False):
    x = torch.rand(shape, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    a = model(x)
    (ga,) = torch.autograd.grad(a, x, torch.ones_like(a) * 0.5 + torch.arange(a.numel()).view_as(a) % 3)
    b = changed(x)
    (gb,) = torch.autograd.grad(b, x, torch.ones_like(b) * 0.5 + torch.arange(b.numel()).view_as(b) % 3)
    assert torch.equal(a, b) and torch.equal(ga, gb)


class Block(nn.Module):
    """A block that calls one activation module at three places, one of them after its input."""

    def __init__(self, after_input=False):
        super().__init__()
        self.conv, self.bn, self.lin = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Linear(3, 3)
        self.act, self.after_input = nn.ReLU6(), after_input

    def forward(self, x, scale=None):
        y = self.act(self.bn(self.conv(x)))
        if scale:  # a flag the caller passes as a constant
            y = y * scale
        z = self.act(self.lin(y.mean((2, 3))))
        out = y + z[:, :, None, None]
        return out + self.act(x) if self.after_input else out


class Net(nn.Module):
    def __init__(self, after_input=False):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block(after_input)])
        self.stem, self.stem_act = nn.Conv2d(3, 3, 1), nn.LeakyReLU(0.1)

    def forward(self, x):
        x = self.stem_act(self.stem(x))
        for i, block in enumerate(self.blocks):
            x = block(x, scale=1.5 * i)
        return x


def test_qualifying_activations_run_in_place_with_the_same_values_and_gradients():
    torch.manual_seed(0)
    model = Net().double().eval()
    changed, count = inplace_activations(model)
    assert count == 3 and _inplace_names(changed) == ["blocks.0.act", "blocks.1.act", "stem_act"]
    assert _inplace_names(model) == []  # the caller's model is never changed
    _same_function(model, changed, (2, 3, 8, 8))


def test_an_activation_called_on_anything_that_is_read_again_stays_out_of_place():
    torch.manual_seed(0)
    model = Net(after_input=True).double().eval()
    changed, count = inplace_activations(model)
    # blocks.1.act is also called on the block's input, which the residual sum reads after it
    assert count == 2 and "blocks.1.act" not in _inplace_names(changed)
    _same_function(model, changed, (2, 3, 8, 8))


def test_observed_outputs_hooks_views_and_other_producers_stay():
    torch.manual_seed(0)
    model = Net().double().eval()
    # an objective reads the output that the activation would overwrite: the BatchNorm's, or through
    # an Identity (a folded BatchNorm) the conv's; the conv's output before a BatchNorm is not overwritten
    assert "blocks.0.act" not in _inplace_names(inplace_activations(model, keep={"blocks.0.bn"})[0])
    assert "blocks.0.act" in _inplace_names(inplace_activations(model, keep={"blocks.0.conv"})[0])
    folded = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Identity(), nn.ReLU())
    assert inplace_activations(folded, keep={"0"})[1] == 0 and inplace_activations(folded)[1] == 1
    changed, _ = inplace_activations(model, keep={"stem_act"})
    assert "stem_act" not in _inplace_names(changed)
    model.blocks[1].act.register_forward_hook(lambda module, args, out: None)
    assert "blocks.1.act" not in _inplace_names(inplace_activations(model)[0])
    # a sigmoid's backward reads its output; a slice is a view of its convolution's output
    for producer in (nn.Sigmoid(), nn.Identity()):
        seq = nn.Sequential(producer, nn.ReLU())
        assert inplace_activations(seq)[1] == 0
    untraceable = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    untraceable.forward = lambda x: untraceable[1](untraceable[0](x)) if x.sum() > 0 else x  # branches on data
    assert inplace_activations(nn.Sequential(untraceable))[1] == 0


@pytest.mark.parametrize("fold_pads", [False, True])
def test_lite0_prepared_in_place_equals_the_model(fold_pads):
    model = models.load("efficientnet_lite0").double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    prepared, _ = fold_batchnorm(model)
    if fold_pads:
        prepared, _ = fold_same_padding(prepared)
    changed, count = inplace_activations(prepared, keep={"_blocks.10._depthwise_conv"})
    # all 17 ReLU6 modules but block 10's, whose depthwise conv is observed; a cropped stride-2 conv
    # copies its window out, so the activation after it runs in place too
    assert count == 17 - 1
    assert "_blocks.10._swish" not in _inplace_names(changed)
    _same_function(prepared, changed, (1, 3, 32, 32))
    prepared.to(memory_format=torch.channels_last)
    changed.to(memory_format=torch.channels_last)
    _same_function(prepared, changed, (2, 3, 32, 32), channels_last=True)


def test_relu6_in_place_copies_nothing_and_keeps_its_gradient():
    # autograd's own in-place hardtanh saves its input, so copies it whole first; ours keeps the output
    torch.manual_seed(0)
    # after an eval-mode BatchNorm, which no convolution can take in (conv_activation.py)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU6(), nn.Conv2d(4, 2, 1)).double().eval()
    changed, count = inplace_activations(model)
    assert count == 1 and isinstance(changed[2], InPlaceHardtanh)
    x = (torch.randn(2, 3, 9, 9, dtype=torch.float64) * 4).requires_grad_()
    with OpCalls() as seen:
        changed(x).sum().backward()
    assert torch.ops.aten.clone.default not in seen.calls and torch.ops.aten.copy_.default not in seen.calls
    _same_function(model, changed, (2, 3, 9, 9))
    # bound values exactly at the limits get the same (zero) gradient as out of place
    step = nn.Sequential(nn.Identity(), InPlaceHardtanh(nn.Hardtanh(-1.0, 2.0)))
    y = torch.tensor([-3.0, -1.0, 0.5, 2.0, 5.0], dtype=torch.float64)
    a = y.clone().requires_grad_()
    (ga,) = torch.autograd.grad(nn.functional.hardtanh(a, -1.0, 2.0).sum(), a)
    b = y.clone().requires_grad_()
    (gb,) = torch.autograd.grad(step[1](b * 1.0).sum(), b)
    assert torch.equal(ga, gb)
    with torch.no_grad():  # no autograd: a plain in-place clamp
        z = y.clone()
        assert step[1](z) is z and torch.equal(z, y.clamp(-1.0, 2.0))


def test_a_torchscript_model_is_left_as_it_is():
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()).eval())
    assert inplace_activations(scripted) == (scripted, 0)
    assert inplace_activations(nn.Sequential(scripted, nn.Conv2d(3, 3, 1), nn.ReLU()))[1] == 1


def test_an_owned_copy_is_changed_where_it_is():
    model = Net().double().eval()
    changed, count = inplace_activations(model, owned=True)
    assert changed is model and count == 3 and _inplace_names(model) == ["blocks.0.act", "blocks.1.act", "stem_act"]
