"""Activations run in place where nothing else needs their input: bit-for-bit the same function,
forward and backward; left alone wherever an overwrite would change what someone reads."""
import pytest
import torch
from torch import nn

from phasevis_ext import models
from phasevis_ext.model.folding import fold_batchnorm
from phasevis_ext.model.inplace import inplace_activations
from phasevis_ext.model.padding import fold_same_padding


def _inplace_names(model):
    return sorted(name for name, m in model.named_modules() if getattr(m, "inplace", False))


def _same_function(model, changed, shape, dtype=torch.float64):
    x = torch.rand(shape, dtype=dtype, requires_grad=True)
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
    # the stride-2 blocks' depthwise convs are cropped views when pads are folded; block 10's is observed
    assert count == (12 if fold_pads else 17) - 1
    assert "_blocks.10._swish" not in _inplace_names(changed)
    _same_function(prepared, changed, (1, 3, 32, 32))


def test_a_torchscript_model_is_left_as_it_is():
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()).eval())
    assert inplace_activations(scripted) == (scripted, 0)
    assert inplace_activations(nn.Sequential(scripted, nn.Conv2d(3, 3, 1), nn.ReLU()))[1] == 1


def test_an_owned_copy_is_changed_where_it_is():
    model = Net().double().eval()
    changed, count = inplace_activations(model, owned=True)
    assert changed is model and count == 3 and _inplace_names(model) == ["blocks.0.act", "blocks.1.act", "stem_act"]
