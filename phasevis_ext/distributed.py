"""Runs shared by the ranks of a torchrun launch: each rank's device and the process group."""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from . import checks

# Ranks that finish early wait for the slowest at the final barrier; NCCL's default 10 minute
# timeout would abort them on a large, unevenly loaded run.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=12)


def rank_device(requested, local_rank: int) -> torch.device:
    device = checks.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives run on the current device
    return device


def init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether we created the group); joins a group only under torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return dist.get_rank(), dist.get_world_size(), True
