"""The units a run over many of them addresses: every channel of some layers and some logits,
each with its id in an index ("_blocks.15:c12", "logit:207")."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import checks
from ..io.class_names import class_names_for
from ..model.activations import LOGITS, as_bchw, capture
from .objectives import channel, logit, neuron

LOGITS_GROUP = "logits"


@dataclass(frozen=True)
class LayerUnit:
    """A layer's channel, a neuron (a channel at the layer's centre) or a logit, with its id in an index."""

    id: str  # "_blocks.15:c12", "_blocks.15:n12" or "logit:207"
    group: str  # the layer name, or LOGITS_GROUP
    index: int
    label: str | None = None  # class name of a logit, when known
    neuron: bool = False

    def objective(self):
        if self.group == LOGITS_GROUP:
            return logit(self.index)
        return neuron(self.group, self.index) if self.neuron else channel(self.group, self.index)


def enumerate_units(model, layers, channels, logits, input_size: int, input_channels: int,
                    class_names=None, neurons=None) -> list[LayerUnit]:
    """Units of each layer (its `channels`, then its `neurons`: channels at its centre position),
    then the logits, counting channels with one dummy forward pass; logits are labelled by
    `class_names.class_names_for`."""
    param = next(model.parameters(), None)
    dummy = torch.full((1, input_channels, input_size, input_size), 0.5,
                       device=param.device if param is not None else None)
    with capture(model, layers, need_logits=logits is not None) as cap, torch.no_grad():
        acts = cap.run(dummy)
    units = []
    for name in layers:
        count = as_bchw(acts[name]).shape[1]
        if channels is not None or neurons is None:
            units += [LayerUnit(f"{name}:c{c}", name, c)
                      for c in checks.indices(channels, f"channels of layer {name!r}", count)]
        if neurons is not None:
            units += [LayerUnit(f"{name}:n{c}", name, c, neuron=True)
                      for c in checks.indices(neurons, f"neurons of layer {name!r}", count)]
    if logits is not None:
        count = as_bchw(acts[LOGITS]).shape[1]
        names = class_names_for(model, class_names, count)
        units += [LayerUnit(f"logit:{i}", LOGITS_GROUP, i, names[i] if names else None)
                  for i in checks.indices(logits, "logits", count)]
    return units
