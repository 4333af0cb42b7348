"""BatchNorm folding: same outputs and input gradients, the model untouched, observed convs kept."""
import pytest
import torch
import torchvision
from torch import nn

from phasevis_ext import models
from phasevis_ext.model.folding import conv_batchnorm_pairs, fold_batchnorm
from phasevis_ext.render.visualize import visualize


def _randomize_batchnorms(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def _output_and_input_grad(model, x):
    x = x.clone().requires_grad_(True)
    out = model(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    return out.detach(), grad


@pytest.mark.parametrize("channels_last", [False, True])
def test_resnet18_folds_every_batchnorm_and_keeps_values(channels_last):
    model = _randomize_batchnorms(torchvision.models.resnet18(num_classes=10)).double()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    folded, count = fold_batchnorm(model)
    assert count == 20 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20  # the original is untouched
    assert folded.fc.weight is model.fc.weight  # tensors it does not fold are shared, not copied
    assert folded.conv1.weight is not model.conv1.weight and model.conv1.bias is None
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64).contiguous(memory_format=fmt)
    want, want_grad = _output_and_input_grad(model, x)
    got, got_grad = _output_and_input_grad(folded, x)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-9, atol=1e-9)
    if channels_last:
        assert folded.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_embedded_model_folds_with_names_intact():
    model = models.load("efficientnet_lite0")
    folded, count = fold_batchnorm(model)
    assert count == 49
    assert [n for n, _ in model.named_modules()] == [n for n, _ in folded.named_modules()]
    assert isinstance(dict(folded.named_modules())["_blocks.3._bn1"], nn.Identity)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_observed_conv_keeps_its_batchnorm_and_hooks_see_the_same_values():
    model = _randomize_batchnorms(torchvision.models.resnet18(num_classes=10))
    folded, count = fold_batchnorm(model, keep={"layer1.0.conv1"})
    assert count == 19
    assert isinstance(folded.layer1[0].bn1, nn.BatchNorm2d)
    seen = {}
    for tag, m in (("orig", model), ("fold", folded)):
        modules = dict(m.named_modules())
        handles = [modules[name].register_forward_hook(lambda mod, i, o, tag=tag, name=name: seen.__setitem__((tag, name), o))
                   for name in ("layer1.0.conv1", "layer2.1.bn2", "layer3")]
        with torch.no_grad():
            m(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
        for h in handles:
            h.remove()
    for name in ("layer1.0.conv1", "layer2.1.bn2", "layer3"):
        torch.testing.assert_close(seen[("fold", name)], seen[("orig", name)], rtol=1e-4, atol=1e-5)


def test_shared_or_branching_outputs_are_not_folded():
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # the conv output is read twice

    assert conv_batchnorm_pairs(Branch().eval()) == []
    model, count = fold_batchnorm(Branch().eval())
    assert count == 0


def test_untraceable_model_is_returned_as_is():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            if x.sum() > 0:  # fx cannot trace a data-dependent branch
                x = -x
            return self.bn(self.conv(x))

    model = DataDependent().eval()
    folded, count = fold_batchnorm(model)
    assert folded is model and count == 0


def test_train_mode_is_refused():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(torchvision.models.resnet18(num_classes=10))


def test_visualize_with_and_without_folding_scores_alike_and_leaves_model_alone():
    model = _randomize_batchnorms(torchvision.models.resnet18(num_classes=10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = dict(steps=1, image_size=48, input_size=48, crops=2, progress=False)
    folded = visualize(model, ["layer2:3", "logit:4"], **kwargs)
    plain = visualize(model, ["layer2:3", "logit:4"], fold_batchnorm=False, **kwargs)
    # one step from the same start: the images agree closely, and so do the scores
    torch.testing.assert_close(folded.scores, plain.scores, rtol=2e-2, atol=2e-2)
    assert folded.settings["fold_batchnorm"] is True and plain.settings["fold_batchnorm"] is False
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="fold_batchnorm"):
        visualize(model, "logit:1", fold_batchnorm="yes", **kwargs)
