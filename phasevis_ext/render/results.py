"""What a run returns: its images and scores per unit, and how units and their samples are named."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch


@dataclass
class VisualizationResult:
    """One image per objective, index-aligned with `objectives` and `unit_ids`."""

    # With samples=k > 1 every per-image entry gains a sample dim after N: (N, k, C, H, W), (N, k), (steps, N, k).
    images: torch.Tensor  # (N, C, H, W) in [0, 1], on CPU (C = 3: RGB)
    alpha: torch.Tensor  # (N, 1, H, W) accumulated |d loss / d image| over the run, / its max per image
    alpha_raw: torch.Tensor  # (N, 1, H, W) the accumulated sum itself
    scores: torch.Tensor  # (N,) each objective on its final image, mean over the fixed eval crops
    history: torch.Tensor  # (steps, N) the scores seen by the optimizer at each step (random crops, noise)
    objectives: list[str]
    unit_ids: list[str]
    units: list = field(default_factory=list)  # objectives.UnitRef of each primitive objective, None for others
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    partial: torch.Tensor | None = None  # (N,) bool: units cut short by Ctrl-C (their scores are NaN)
    samples: int = 1

    def __len__(self) -> int:
        return self.images.shape[0]

    def sample_unit_ids(self) -> list[str]:
        """The id of every image: the unit's, with its sample's suffix when samples > 1."""
        return sample_ids(self.unit_ids, self.samples)

    def _repr_html_(self) -> str:
        """In a notebook: each image beside its transparency view, with its unit, class and score."""
        from ..io.export import result_html

        return result_html(self)

    def show(self, columns: int = 8):
        """A matplotlib figure of the images as the gallery shows them, titled by unit and score."""
        from ..io.export import result_figure

        return result_figure(self, columns)


class VisualizationInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; `.result` holds the finished units and the partial ones."""

    def __init__(self, result: VisualizationResult):
        super().__init__(f"interrupted after {int((~result.partial).sum())} finished units")
        self.result = result


def unit_seed(seed: int, unit_id: str) -> int:
    """A 63-bit generator seed from (seed, unit id), stable across processes and machines."""
    digest = hashlib.sha256(f"{seed}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def sample_ids(unit_ids: Sequence[str], samples: int) -> list[str]:
    """The id of each of a unit's samples: the first is the unit's own (so samples=1 changes
    nothing), the others get '~j' and with it their own random streams."""
    return [uid if j == 0 else f"{uid}~{j}" for uid in unit_ids for j in range(samples)]


def default_unit_ids(objectives) -> list[str]:
    """Descriptions; a description used more than once gets '#index' so that those units differ."""
    descriptions = [obj.description for obj in objectives]
    repeated = {d for d in descriptions if descriptions.count(d) > 1}
    return [f"{d}#{i}" if d in repeated else d for i, d in enumerate(descriptions)]
