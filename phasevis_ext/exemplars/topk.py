"""The K highest values per unit over a stream of batches, in memory bounded by units × K.

Ties are broken by the lower image id, so the result does not depend on how the stream was cut
into batches, shards or resumed runs.
"""
from __future__ import annotations

import torch


class RunningTopK:
    """values (U, K) highest first, with the image id (U, K) and position (U, K, 2) of each."""

    def __init__(self, units: int, k: int):
        self.values = torch.full((units, k), -torch.inf, dtype=torch.float64)
        self.ids = torch.full((units, k), -1, dtype=torch.long)
        self.positions = torch.zeros((units, k, 2), dtype=torch.long)

    @property
    def k(self) -> int:
        return self.values.shape[1]

    def update(self, values: torch.Tensor, ids: torch.Tensor, positions: torch.Tensor) -> None:
        """values (B, U), ids (B,), positions (B, U, 2) of one batch."""
        units = self.values.shape[0]
        self._keep(torch.cat([self.values, values.double().T], 1),
                   torch.cat([self.ids, ids.long()[None].expand(units, -1)], 1),
                   torch.cat([self.positions, positions.long().transpose(0, 1)], 1))

    def merge(self, other: RunningTopK) -> None:
        self._keep(torch.cat([self.values, other.values], 1), torch.cat([self.ids, other.ids], 1),
                   torch.cat([self.positions, other.positions], 1))

    def _keep(self, values, ids, positions) -> None:
        # Empty slots (id -1) sort last; among equal values the lower id first.
        order = torch.sort(torch.where(ids < 0, torch.iinfo(torch.long).max, ids), dim=1, stable=True).indices
        values, ids, positions = values.gather(1, order), ids.gather(1, order), positions.gather(
            1, order[..., None].expand(-1, -1, 2))
        best = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :self.k]
        self.values, self.ids = values.gather(1, best), ids.gather(1, best)
        self.positions = positions.gather(1, best[..., None].expand(-1, -1, 2))

    def state_dict(self) -> dict:
        return {"values": self.values, "ids": self.ids, "positions": self.positions}

    @classmethod
    def from_state(cls, state: dict) -> RunningTopK:
        top = cls(*state["values"].shape)
        top.values, top.ids, top.positions = state["values"], state["ids"], state["positions"]
        return top
