"""Rank 0's plan of an atlas run: the units, the settings that make their images, what is done,
and the process group the ranks share."""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from ..checks import InvalidArgument
from ..io.records import digest, jsonable, state_digest
from ..model import loading as models
from ..render.settings import RenderSettings
from ..render.units import enumerate_units
from .index import read_shards, valid_entries, write_record

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
