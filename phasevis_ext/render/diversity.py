"""Diversity: k images of one unit pushed apart, so that a polysemantic unit shows its several faces.

The term is lucid's: the mean pairwise cosine similarity of the samples' Gram matrices (channel
co-activations, which describe texture and content but not position) at a layer, here averaged
over each sample's crops first. It is added, times the weight, to the loss, so the samples of a
unit are rewarded for differing in what the layer sees; units never interact, because only the
k samples of one unit are compared with each other.
"""
from __future__ import annotations

import torch

from ..checks import InvalidArgument
from ..model.activations import LOGITS, as_bchw


def diversity_layers(objectives, layer: str | None) -> list[str]:
    """The layer each objective's samples are compared at: `layer` when given, else the objective's
    own single layer. Logits and objectives over several layers have no such layer of their own."""
    if layer is not None:
        if not isinstance(layer, str) or layer == LOGITS:
            raise InvalidArgument(f"diversity_layer must be a layer name, got {layer!r}")
        return [layer] * len(objectives)
    found = []
    for obj in objectives:
        own = sorted(obj.layers)
        if len(own) != 1 or obj.needs_logits:
            raise InvalidArgument(f"diversity_layer: {obj.description!r} has no single layer of its own to compare "
                                  "samples at; name one (e.g. the block before the classifier)")
        found.append(own[0])
    return found


def gram_similarity(act: torch.Tensor, crops: int, samples: int) -> torch.Tensor:
    """(G,) the mean pairwise cosine similarity of the Gram matrices of each group's samples.

    act: activations of G * samples * crops rows, grouped unit by unit, then sample by sample.
    """
    features = as_bchw(act).float().flatten(2)  # (R, C, P)
    gram = features @ features.transpose(1, 2) / features.shape[2]  # (R, C, C)
    gram = gram.unflatten(0, (-1, crops)).mean(1).flatten(1)  # (G * samples, C * C)
    gram = torch.nn.functional.normalize(gram, dim=1).unflatten(0, (-1, samples))  # (G, samples, C * C)
    similarity = gram @ gram.transpose(1, 2)  # (G, samples, samples)
    off_diagonal = similarity.sum(dim=(1, 2)) - similarity.diagonal(dim1=1, dim2=2).sum(1)
    return off_diagonal / (samples * (samples - 1))
