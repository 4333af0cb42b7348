"""Rank 0's plan of an atlas run: the units, the settings that make their images, what is done,
and the process group the ranks share."""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .. import checks
from ..checks import InvalidArgument
from ..io.class_names import class_names_for
from ..io.records import digest, jsonable, state_digest
from ..model import loading as models
from ..model.activations import LOGITS, as_bchw, capture
from ..render.objectives import channel, logit
from ..render.settings import RenderSettings
from .index import LOGITS_GROUP, read_shards, valid_entries, write_record

# Ranks that finish early wait for the slowest at the final barrier; NCCL's default 10 minute
# timeout would abort them on a large, unevenly loaded atlas.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=12)


@dataclass(frozen=True)
class AtlasUnit:
    """One unit of an atlas: a layer's channel or a logit, with its id in the index."""

    id: str  # "_blocks.15:c12" or "logit:207"
    group: str  # the layer name, or LOGITS_GROUP
    index: int
    label: str | None = None  # class name of a logit, when known

    def objective(self):
        return logit(self.index) if self.group == LOGITS_GROUP else channel(self.group, self.index)


# ---------------------------------------------------------------------------------------------
# Devices and the process group.


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


# ---------------------------------------------------------------------------------------------
# Units, settings, resume state.


def plan_run(model, model_name, out_dir: Path, layers, channels, logits, new_run, settings: RenderSettings,
             class_names=None):
    """(every unit, the pending ones, the run record, its id), after checking the folder's record."""
    record = run_record(model, model_name, settings)
    units = enumerate_units(model, layers, channels, logits, settings.input_size, settings.channels, class_names)
    record_id = digest(json.dumps(record, sort_keys=True).encode())
    out_dir.mkdir(parents=True, exist_ok=True)
    if new_run:
        archive(out_dir)
    stored_path = out_dir / "settings.json"
    if stored_path.exists():
        stored = json.loads(stored_path.read_text(encoding="utf-8"))
        if stored != record and any(True for _ in read_shards(out_dir)):
            raise InvalidArgument(_mismatch_message(out_dir, stored, record, settings))
    write_record(stored_path, record)  # also replaces the record of a folder with nothing done yet
    for temp in (*out_dir.glob("units/*/.*.tmp"), *out_dir.glob(".*.tmp")):
        temp.unlink(missing_ok=True)  # left by a killed run; no rank is writing yet
    done = {entry["unit"] for entry in valid_entries(out_dir, record_id)}
    pending = [unit for unit in units if unit.id not in done]
    return units, pending, record, record_id


def enumerate_units(model, layers, channels, logits, input_size: int, input_channels: int,
                    class_names=None) -> list[AtlasUnit]:
    """Units of each layer then the logits, counting channels with one dummy forward pass; logits
    are labelled by `class_names.class_names_for`."""
    param = next(model.parameters(), None)
    dummy = torch.full((1, input_channels, input_size, input_size), 0.5,
                       device=param.device if param is not None else None)
    with capture(model, layers, need_logits=logits is not None) as cap, torch.no_grad():
        acts = cap.run(dummy)
    units = []
    for name in layers:
        count = as_bchw(acts[name]).shape[1]
        units += [AtlasUnit(f"{name}:c{c}", name, c) for c in checks.indices(channels, f"channels of layer {name!r}", count)]
    if logits is not None:
        count = as_bchw(acts[LOGITS]).shape[1]
        names = class_names_for(model, class_names, count)
        units += [AtlasUnit(f"logit:{i}", LOGITS_GROUP, i, names[i] if names else None)
                  for i in checks.indices(logits, "logits", count)]
    return units


MODEL_KEYS = ("model", "weights", "weights_file", "input_normalization")


def run_record(model: nn.Module, model_name: str, settings: RenderSettings) -> dict[str, Any]:
    """What makes an atlas's images, as JSON: the model, and the resolved settings' JSON form
    without the fields that change them by rounding at most (device, batch, memory layout)."""
    return {"model": model_name, "weights": state_digest(model), "weights_file": jsonable(models.weights_record(model)),
            "input_normalization": models.input_normalization(model), **settings.to_json(images_only=True)}


def _mismatch_message(out_dir: Path, stored: dict, record: dict, settings: RenderSettings) -> str:
    diffs = [f"{k} ({stored.get(k)!r} there, {record.get(k)!r} now)" for k in MODEL_KEYS
             if stored.get(k) != record.get(k)]
    diffs += settings.differences(stored)
    return (f"{out_dir} holds an atlas made with other settings: {'; '.join(diffs)}. Use the same settings "
            f"to resume, another folder, or new_run=True / --new-run to archive it and start over")


def archive(out_dir: Path) -> None:
    """Move the previous run's files to archive/TIMESTAMP/ (not deleted: they may have cost GPU days)."""
    names = ["settings.json", "index.json", "index", "units", "index.html",
             *(p.name for p in out_dir.glob("layer-*.html"))]
    present = [name for name in names if (out_dir / name).exists()]
    if not present:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = out_dir / "archive" / stamp
    folder.mkdir(parents=True)
    for name in present:
        os.replace(out_dir / name, folder / name)
