"""Which input pixels a layer's position sees: its receptive field, found from the gradient.

For any network (convolutions, same-padding, pooling, attention), the box of the input pixels on
which one position's activations depend is where their gradient is not zero. It is measured once
per layer at the centre position, on two random inputs (a ReLU can zero a pixel's gradient on
one), and moved by the layer's stride for the other positions, then clipped to the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..model.activations import as_bchw, capture
from ..render.units import LOGITS_GROUP


@dataclass(frozen=True)
class ReceptiveField:
    """Boxes in input pixels for the positions of a (H, W) feature map of a `size`² input."""

    height: int
    width: int
    size: int
    centre_box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the centre position

    def box(self, row: int, column: int) -> list[float]:
        x0, y0, x1, y1 = self.centre_box
        dy = (row - self.height // 2) * self.size / self.height
        dx = (column - self.width // 2) * self.size / self.width
        return [max(0.0, x0 + dx), max(0.0, y0 + dy), min(float(self.size), x1 + dx), min(float(self.size), y1 + dy)]


def receptive_fields(model: nn.Module, layers, size: int, channels: int) -> dict[str, ReceptiveField]:
    """{layer: ReceptiveField}; the logits (LOGITS_GROUP) see the whole input."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else None
    fields = {}
    for layer in layers:
        if layer == LOGITS_GROUP:
            fields[layer] = ReceptiveField(1, 1, size, (0.0, 0.0, float(size), float(size)))
            continue
        seen = torch.zeros(size, size, dtype=torch.bool, device=device)
        generator = torch.Generator(device=device or "cpu").manual_seed(0)
        for _ in range(2):
            x = (torch.rand(1, channels, size, size, generator=generator, device=device)).requires_grad_(True)
            with capture(model, [layer]) as cap, torch.enable_grad():
                act = as_bchw(cap.run(x)[layer])
                height, width = act.shape[-2:]
                (grad,) = torch.autograd.grad(act[0, :, height // 2, width // 2].abs().sum(), x, allow_unused=True)
            if grad is not None:
                seen |= grad[0].abs().sum(0) > 0
        rows, columns = seen.any(1).nonzero(), seen.any(0).nonzero()
        if len(rows) == 0:  # no gradient reaches the input (e.g. a detached layer): the whole image
            box = (0.0, 0.0, float(size), float(size))
        else:
            box = (float(columns.min()), float(rows.min()), float(columns.max() + 1), float(rows.max() + 1))
        fields[layer] = ReceptiveField(int(height), int(width), size, box)
    return fields
