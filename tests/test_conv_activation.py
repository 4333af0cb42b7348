"""A convolution and the activation after it as one oneDNN call in bf16 on the CPU: the separate
ops' values and gradients bit for bit, chosen only where nothing else reads the convolution's
output, and the convolution and activation in place everywhere else."""
import pytest
import torch
from torch import nn
from support.op_calls import OpCalls

from phasevis_ext import models
from phasevis_ext.model.conv_activation import ConvActivation2d
from phasevis_ext.model.depthwise import strided_depthwise
from phasevis_ext.model.folding import fold_batchnorm
from phasevis_ext.model.inplace import InPlaceHardtanh, inplace_activations
from phasevis_ext.model.padding import fold_same_padding

FUSED = torch.ops.mkldnn._convolution_pointwise.default
# Without oneDNN's bf16 (an AVX2 CPU) the module runs the convolution, then the activation in place.
BF16_FUSED = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Block(nn.Module):
    """A ReLU6 module called after two convolutions (EfficientNet's blocks), a ReLU after a folded
    BatchNorm, and a convolution with no activation after it."""

    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(4, 16, 1)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.act = nn.ReLU6()
        self.dense = nn.Conv2d(16, 8, 3, padding=2, dilation=2)
        self.bn = nn.Identity()
        self.relu = nn.ReLU()
        self.project = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = self.act(self.depthwise(self.act(self.expand(x))))
        return self.project(self.relu(self.bn(self.dense(x))))


def _frozen(model):
    return model.eval().requires_grad_(False)


def _run(model, x, dtype=torch.bfloat16):
    x = x.detach().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        out = model(x)
    grad_out = (torch.arange(out.numel()).view_as(out) % 5 - 2).to(out.dtype)
    (grad,) = torch.autograd.grad(out, x, grad_out)
    return out, grad


def test_pairs_are_fused_and_give_the_separate_ops_bf16_values_and_gradients_bit_for_bit():
    torch.manual_seed(0)
    model = _frozen(Block())
    changed, count = inplace_activations(model)
    assert count == 2
    assert [type(changed.get_submodule(n)) for n in ("expand", "depthwise", "dense")] == [ConvActivation2d] * 3
    assert type(changed.act) is nn.Identity and type(changed.relu) is nn.Identity
    assert type(changed.project) is nn.Conv2d and type(model.expand) is nn.Conv2d  # the caller's model is unchanged
    assert changed.expand.weight is model.expand.weight
    x = (torch.randn(2, 4, 13, 11) * 3).contiguous(memory_format=torch.channels_last)
    expected = _run(model, x)
    with OpCalls() as ops:
        got = _run(changed, x)
    assert ops.calls.count(FUSED) == (3 if BF16_FUSED else 0)
    assert (torch.ops.aten.clamp_.default in ops.calls) is not BF16_FUSED
    assert got[0].dtype == torch.bfloat16
    for a, b in zip(expected, got):
        assert a.dtype == b.dtype and torch.equal(a, b)
    # bf16 tensors without autocast take the fused call too
    bf16_model, bf16_changed = Block().to(torch.bfloat16), None
    bf16_changed, _ = inplace_activations(_frozen(bf16_model))
    for a, b in zip(_run(_frozen(bf16_model), x.to(torch.bfloat16), None), _run(bf16_changed, x.to(torch.bfloat16), None)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [None, torch.float64])
def test_fp32_and_fp64_run_the_convolution_then_the_activation_in_place(dtype):
    torch.manual_seed(0)
    model = _frozen(Block())
    if dtype is not None:
        model = model.to(dtype)
    changed, _ = inplace_activations(model)
    x = torch.randn(2, 4, 9, 9, dtype=dtype or torch.float32)
    expected = _run(model, x, None)
    with OpCalls() as ops:
        got = _run(changed, x, None)
    assert FUSED not in ops.calls and torch.ops.aten.clone.default not in ops.calls
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


def test_without_gradients_the_fused_call_runs_and_a_changed_weight_is_seen():
    torch.manual_seed(0)
    model = _frozen(nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU6()))
    changed, _ = inplace_activations(model)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(changed(x), model(x))
        model[0].weight.mul_(-2.0)  # shared with the copy: its bf16 weights must follow
        assert torch.equal(changed(x), model(x))


def test_read_outputs_shared_modules_and_other_producers_stay_unfused():
    torch.manual_seed(0)

    def fused(model, keep=()):
        changed, _ = inplace_activations(_frozen(model), keep=keep)
        return sorted(n for n, m in changed.named_modules() if isinstance(m, ConvActivation2d))

    assert fused(Block(), keep={"expand"}) == ["dense"]       # an objective reads the expand conv's output
    assert fused(Block(), keep={"bn"}) == ["depthwise", "expand"]  # or the folded BatchNorm's
    assert fused(Block(), keep={"act"}) == ["dense"]
    kept, count = inplace_activations(_frozen(Block()), into_convolutions=False)
    assert count == 2 and isinstance(kept.act, InPlaceHardtanh) and kept.relu.inplace
    assert not any(isinstance(m, ConvActivation2d) for m in kept.modules())

    class Shared(nn.Module):  # one convolution called twice
        def __init__(self):
            super().__init__()
            self.conv, self.act = nn.Conv2d(3, 3, 1), nn.ReLU()

        def forward(self, x):
            return self.act(self.conv(x)) + self.conv(x)

    assert fused(Shared()) == []
    assert fused(nn.Sequential(nn.Conv2d(3, 3, 3, padding="same"), nn.ReLU())) == []
    assert fused(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, padding_mode="reflect"), nn.ReLU())) == []
    assert fused(nn.Sequential(nn.Conv2d(3, 3, 1), nn.LeakyReLU(0.1))) == []
    # an activation after a convolution that no fusion can take (a BatchNorm) runs in place
    changed, count = inplace_activations(_frozen(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.ReLU6())))
    assert count == 1 and isinstance(changed[2], InPlaceHardtanh)


@pytest.mark.parametrize("native", [False, True])
def test_strided_depthwise_and_cropped_convolutions_keep_their_gradient_path(native, monkeypatch):
    # the spread input gradient of depthwise.py where native bf16 makes it pay, aten's elsewhere,
    # and a cropped "same" convolution's window taken after the fused activation
    monkeypatch.setattr("phasevis_ext.model.depthwise.native_bf16", lambda: native)
    torch.manual_seed(0)
    model = _frozen(nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(4, 4, 3, stride=2, groups=4), nn.ReLU6(),
                                  nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU()))
    prepared, pads = fold_same_padding(model)
    prepared, _ = strided_depthwise(prepared, owned=True)
    changed, count = inplace_activations(prepared)
    assert pads == 1 and count == 2
    assert [type(m) for m in changed] == [nn.Identity, ConvActivation2d, nn.Identity, nn.Conv2d, ConvActivation2d,
                                          nn.Identity]
    assert changed[1].cropped and not changed[4].cropped
    x = (torch.randn(2, 4, 12, 10) * 3).contiguous(memory_format=torch.channels_last)
    with OpCalls() as ops:
        got = _run(changed, x)
    assert ops.calls.count(FUSED) == (2 if BF16_FUSED else 0)
    assert (torch.ops.aten.clamp_.default in ops.calls) is not BF16_FUSED
    for a, b in zip(_run(prepared, x), got):  # the same gradient path, so the same bits
        assert torch.equal(a, b)
    for a, b in zip(_run(model, x), got):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * a.abs().max().item())
    # fp32 and no gradients: the convolution, the window, then the activation
    with torch.no_grad():
        assert torch.equal(changed(x), model(x))
def test_lite0_prepared_fuses_its_unstrided_blocks_and_keeps_its_bf16_values():
    model = _frozen(models.load("efficientnet_lite0"))
    prepared, _ = fold_same_padding(fold_batchnorm(model)[0])
    changed, count = inplace_activations(prepared, keep={"_blocks.10._depthwise_conv"})
    fused = [n for n, m in changed.named_modules() if isinstance(m, ConvActivation2d)]
    # the stem and head (one activation module), block 0's one convolution, and both of every later
    # block's but 10's, strided (1, 3, 5, 11) and cropped (the stem and the strided ones) included
    assert count == 17 - 1 and len(fused) == 2 + 1 + 2 * (15 - 1)
    assert "_blocks.10._expand_conv" not in fused and "_blocks.3._depthwise_conv" in fused
    x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    for a, b in zip(_run(prepared, x), _run(changed, x)):
        assert torch.equal(a, b)
