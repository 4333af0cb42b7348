"""Forward hooks: capture named layers' outputs, stop the forward pass early, never leak hooks.

Layers are addressed by their `model.named_modules()` names (`_blocks.15`, `layer4.1.conv2`).
The model's own output is stored under the reserved key LOGITS.

Layouts understood by `as_bchw`:
  (B, C, H, W)  CNN feature maps, used as they are;
  (B, N, D)     transformer tokens (batch first), D is the channel; when N or N-1 is a
                perfect square g*g the tokens are a g x g patch grid (N-1: the first token
                is a class token and is dropped); otherwise the tokens form a 1 x N row;
  (B, C)        vectors (pooled features, logits), a 1 x 1 map.
"""
from __future__ import annotations

import contextlib
import difflib
import math
import warnings
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple

import torch
from torch import nn

from ..checks import InvalidArgument, InvalidArgumentType
from .loading import default_input_size, input_channels

LOGITS = "logits"


def as_bchw(act: torch.Tensor) -> torch.Tensor:
    """View any supported activation as (B, C, H, W) so channel c is always dim 1."""
    if act.dim() == 4:
        return act
    if act.dim() == 2:
        return act[:, :, None, None]
    if act.dim() == 3:
        tokens = act.transpose(1, 2)  # (B, D, N)
        n = tokens.shape[2]
        for prefix in (0, 1):
            side = math.isqrt(n - prefix)
            if side > 0 and side * side == n - prefix:
                return tokens[:, :, prefix:].unflatten(2, (side, side))
        return tokens[:, :, None, :]
    raise InvalidArgument(f"unsupported activation shape {tuple(act.shape)}: expected (B,C,H,W), (B,N,D) or (B,C)")


def resolve_layers(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Map each layer name to its module; unknown names raise ValueError with close matches."""
    modules = dict(model.named_modules())
    modules.pop("", None)  # the root's output is the model output, requested via LOGITS
    resolved = {}
    for name in names:
        if name == LOGITS:
            raise InvalidArgument(f"{LOGITS!r} is reserved for the model output; ask for it with need_logits=True")
        if name not in modules:
            close = difflib.get_close_matches(name, modules, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise InvalidArgument(f"unknown layer {name!r}{hint} (`phasevis layers` lists the names)")
        if isinstance(modules[name], torch.jit.ScriptModule):
            raise InvalidArgument(f"layer {name!r} is compiled TorchScript, where hooks cannot run: visualize the model "
                             "output (logit:...) or load the Python model (--model file.py:factory --weights FILE)")
        resolved[name] = modules[name]
    return resolved


def main_tensor(output) -> torch.Tensor | None:
    """The tensor a module produced: itself, or the first element of a tuple (e.g. attention)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


@contextlib.contextmanager
def forward_hooks(modules: Mapping[str, nn.Module], hook: Callable[[str, torch.Tensor | None], None]) -> Iterator[None]:
    """Call hook(name, main_tensor(output)) after each named module runs; the hooks go away on exit."""
    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(lambda _m, _in, out, name=name: hook(name, main_tensor(out))))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _StopForward(BaseException):
    """Raised from a hook once every requested activation is in hand.

    A BaseException so that a model's own `except Exception` cannot swallow it.
    """


class Capture:
    """Captured activations of one model; use through `capture(...)`, call `run` once per step.

    A module called several times per forward pass (a shared ReLU, a reused block) yields
    its LAST call's output, with a warning. To know which call is the last, the first `run`
    always completes the forward pass and counts the calls; later runs stop right after
    the last needed call. So reuse one Capture across optimisation steps.
    """

    def __init__(self, model: nn.Module, layer_names: Iterable[str], *, need_logits: bool = False,
                 stop_after_last: bool = True):
        self.model = model
        self.need_logits = need_logits
        self.stop_after_last = stop_after_last and not need_logits
        self.modules = resolve_layers(model, dict.fromkeys(layer_names))
        self._calls_per_forward: dict[str, int] | None = None
        self._calls: dict[str, int] = {}
        self._acts: dict[str, torch.Tensor] = {}
        self._pending = 0

    def _on_output(self, name: str, out: torch.Tensor | None) -> None:
        if out is None:
            raise InvalidArgumentType(f"layer {name!r} did not return a tensor; pick another layer")
        self._calls[name] = self._calls.get(name, 0) + 1
        expected = self._calls_per_forward
        if expected is not None and self._calls[name] == expected[name]:
            self._pending -= 1
            if self._pending == 0 and self.stop_after_last:
                self._acts[name] = out
                raise _StopForward
        # Code after this layer (ReLU(inplace=True), `out += identity`) may overwrite the tensor in place.
        self._acts[name] = out.clone()

    def run(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward `images`; return {layer: activation} plus {LOGITS: output} when the model completed."""
        self._calls, self._acts = {}, {}
        self._pending = len(self.modules)
        try:
            output = self.model(images)
        except _StopForward:
            return self._acts
        missing = [name for name in self.modules if name not in self._acts]
        if missing:
            # A layer that exists but is not on the forward path (an auxiliary classifier, an unused branch) is the
            # caller's choice of layer, not a fault of ours.
            raise InvalidArgument(f"layers: {missing} did not run during the model's forward pass; choose layers "
                                  "that the forward pass reaches (`phasevis layers` lists them in call order)")
        if self._calls_per_forward is None:
            self._calls_per_forward = dict(self._calls)
            repeated = {name: n for name, n in self._calls.items() if n > 1}
            if repeated:
                warnings.warn(f"layers called several times per forward pass, using their last call: {repeated}",
                              stacklevel=2)
        acts = dict(self._acts)
        acts[LOGITS] = output
        return acts


@contextlib.contextmanager
def capture(model: nn.Module, layer_names: Iterable[str], *, need_logits: bool = False,
            stop_after_last: bool = True) -> Iterator[Capture]:
    """Hook `layer_names` of `model` for the duration of the block; hooks are removed even on error.

        with capture(model, ["_blocks.15"]) as cap:
            acts = cap.run(images)   # {"_blocks.15": tensor}

    need_logits: the caller needs the model output, so the forward pass always completes.
    stop_after_last: otherwise, skip the rest of the network once every layer is captured.
    """
    cap = Capture(model, layer_names, need_logits=need_logits, stop_after_last=stop_after_last)
    with forward_hooks(cap.modules, cap._on_output):
        yield cap


# ---------------------------------------------------------------------------------------------
# The layers a model has, as `phasevis layers` lists them.


class LayerInfo(NamedTuple):
    name: str
    type: str
    shape: tuple[int, ...]


def list_layers(model: nn.Module, input_size: int | tuple[int, int] | None = None,
                channels: int | None = None) -> list[LayerInfo]:
    """Every submodule that outputs a tensor, in call order, with its output shape for one image.

    input_size defaults to the model's native size, channels to `input_channels(model)`.
    Modules that never run are left out; for modules called several times the last call's
    shape is reported.
    """
    size = default_input_size(model) if input_size is None else input_size
    height, width = (size, size) if isinstance(size, int) else size
    channels = input_channels(model, channels, min(height, width))
    modules = {name: module for name, module in model.named_modules() if name}
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name, out):
        if out is not None:
            shapes.pop(name, None)  # re-insert so the order is that of the last call
            shapes[name] = tuple(out.shape)

    param = next(model.parameters(), None)
    dummy = torch.full((1, channels, height, width), 0.5, device=param.device if param is not None else None,
                       dtype=param.dtype if param is not None and param.is_floating_point() else None)
    with forward_hooks(_hookable(modules), record), torch.no_grad():
        model(dummy)
    return [LayerInfo(name, type(modules[name]).__name__, shape) for name, shape in shapes.items()]


def _hookable(modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    return {name: m for name, m in modules.items() if not isinstance(m, torch.jit.ScriptModule)}


def format_layers(layers: list[LayerInfo]) -> str:
    """A plain-text table of `list_layers` output."""
    rows = [("layer", "type", "output shape")] + [(n, t, "x".join(map(str, s))) for n, t, s in layers]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{n:<{widths[0]}}  {t:<{widths[1]}}  {s}".rstrip() for n, t, s in rows)
