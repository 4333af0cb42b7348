"""Dataset exemplars: the real images that drive each unit most, beside its visualization.

    exemplars(model, "photos/", "exemplars-out", layers=["_blocks.15"], channels="0:8", top=9)
    phasevis exemplars --images photos/ --layers _blocks.15 --channels 0:8 --top 9 --out exemplars-out

One streaming pass over a folder tree (`dataset`), batched through a DataLoader with worker
processes; each image is shown as the model's evaluation transform shows it. Per unit the top K
images by the channel's spatial maximum (a logit's value for logits) are kept in a bounded heap
(`topk`), with the receptive-field box around the maximum in the original image's pixels
(`receptive`). Writes OUT/exemplars.json ({"units": {"L:cC": [{"image", "activation", "box"}]}},
highest first, image paths relative to the folder), OUT/patches/UNIT/RANK.png and an offline
OUT/index.html.

Resuming: after every batch each rank's state is written atomically, so a killed pass loses at
most the batch in flight; a rerun with the same files, model and options continues, and a folder
holding another pass is refused with the differences named. Under torchrun each rank takes every
world-th image and rank 0 merges the heaps. Corrupt files and files of another channel count are
skipped with a warning and counted in exemplars.json.
"""
from __future__ import annotations

import base64
import html
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn

from .. import checks
from ..checks import InvalidArgument
from ..distributed import init_distributed, rank_device
from ..io.records import digest
from ..model import loading as models
from ..render.units import enumerate_units
from . import report, scan
from .dataset import open_folder
from .receptive import receptive_fields

__all__ = ["ExemplarsResult", "exemplars"]


@dataclass
class ExemplarsResult:
    """units: {unit id: [{"image", "activation", "box", "patch"}, ...]}, highest first."""

    out_dir: Path
    units: dict[str, list[dict]]
    labels: dict[str, str | None] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # "pass" over the images, "files" written after

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = []
        for unit, entries in self.units.items():
            label = f" {esc(self.labels[unit])}" if self.labels.get(unit) else ""
            cells = "".join(
                f'<figure style="margin:2px;display:inline-block;text-align:center">'
                f'<img src="data:image/png;base64,{_base64(self.out_dir / e["patch"])}" style="height:80px">'
                f'<figcaption style="font-size:10px">{e["activation"]:.3g}</figcaption></figure>' for e in entries)
            rows.append(f"<div><b>{esc(unit)}</b>{label}<br>{cells}</div>")
        return "<div>" + "".join(rows) + "</div>"

    def show(self, units: Sequence[str] | None = None, per_unit: int | None = None):
        """A matplotlib figure: one row per unit, its patches highest first."""
        import matplotlib.pyplot as plt
        from PIL import Image

        units = list(units or self.units)
        cols = max(1, per_unit or max(len(self.units[u]) for u in units))
        fig, axes = plt.subplots(len(units), cols, figsize=(1.6 * cols, 1.8 * len(units)), squeeze=False)
        for row, unit in zip(axes, units):
            for ax, entry in zip(row, [*self.units[unit][:cols], *[None] * cols]):
                ax.axis("off")
                if entry is not None:
                    ax.imshow(Image.open(self.out_dir / entry["patch"]), cmap="gray")
                    ax.set_title(f"{entry['activation']:.3g}", fontsize=8)
            row[0].text(-0.1, 0.5, unit, transform=row[0].transAxes, ha="right", va="center", fontsize=8)
        return fig


def _base64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def exemplars(model: nn.Module | str, images, out_dir, *, layers: str | Sequence[str] = (), channels=None,
              logits=None, neurons=None, top: int = 9, batch_size: int = 32, workers: int | None = None, input_size: int | None = None,
              device=None, new_run: bool = False, class_names=None, progress: bool = True) -> ExemplarsResult:
    """The top `top` images of each unit (every channel of `layers`, or the `channels` range of
    each; the `neurons` range of each, read at the layer's centre as `objectives.neuron` does; and
    the `logits` range) over the folder `images`; see the module doc."""
    out_dir = Path(out_dir)
    rank, world, owns_group = _join_group(device)
    try:
        device = rank_device(device, int(os.environ.get("LOCAL_RANK", "0")))
        model_name = model if isinstance(model, str) else type(model).__name__
        model = models.load(model).to(device) if isinstance(model, str) else model.eval().to(device)
        plan = _plan(model, images, layers, channels, logits, neurons, top, batch_size, workers, input_size,
                     class_names, out_dir)
        record = scan.pass_record(model, model_name, plan, world)
        record_id = digest(repr(sorted(record.items())).encode())
        if new_run and rank == 0:
            scan.remove_pass(out_dir)
        scan.barrier(world)
        out_dir.mkdir(parents=True, exist_ok=True)
        scan.check_record(out_dir, record, rank)
        start = time.perf_counter()
        scan.run_shard(model, plan, out_dir, rank, world, record_id, device, progress)
        scan.barrier(world)
        seconds = {"pass": time.perf_counter() - start}
        result = _finish(model, plan, out_dir, world, record_id, record) if rank == 0 else None
        scan.barrier(world)
        result = result if rank == 0 else _read_result(out_dir, plan)
        result.seconds = {**seconds, "files": time.perf_counter() - start - seconds["pass"]}
        return result
    finally:
        if owns_group:
            dist.destroy_process_group()


def _join_group(device) -> tuple[int, int, bool]:
    requested = checks.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return init_distributed(requested)


def _plan(model, images, layers, channels, logits, neurons, top, batch_size, workers, input_size,
          class_names, out_dir: Path) -> scan.Scan:
    checks.positive_int(top, "top")
    checks.positive_int(batch_size, "batch_size")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise InvalidArgument(f"workers must be an int >= 0, got {workers!r}")
    layers = [name for name in layers.split(",") if name] if isinstance(layers, str) else list(layers)
    if not layers and logits is None:
        raise InvalidArgument("layers: give at least one layer, or logits")
    folder = Path(images)
    resize, crop = scan.model_geometry(model, input_size)
    wanted = models.input_channels(model, input_size=crop)
    items = open_folder(folder, wanted, exclude=out_dir)
    units = enumerate_units(model, layers, channels, logits, crop, wanted, class_names, neurons)
    return scan.Scan(folder, items, units, top, wanted, resize, crop, batch_size, workers)


def _finish(model, plan: scan.Scan, out_dir: Path, world: int, record_id: str, record: dict) -> ExemplarsResult:
    top, skipped = scan.merged_states(out_dir, world, record_id, len(plan.units), plan.top)
    fields = receptive_fields(model, sorted({u.group for u in plan.units}), plan.crop, plan.channels)
    by_unit = report.entries(top, plan.units, plan.folder, plan.items, fields, plan.resize, plan.crop)
    patches = report.write_patches(out_dir, plan.folder, by_unit, {i.name: i for i in plan.items})
    for unit in plan.units:
        for entry, name in zip(by_unit[unit.id], patches[unit.id]):
            entry["patch"] = name
    report.write_json(out_dir, by_unit, skipped, record)
    report.write_index(out_dir, plan.units, by_unit, patches, skipped)
    return ExemplarsResult(out_dir, by_unit, {u.id: u.label for u in plan.units}, skipped)


def _read_result(out_dir: Path, plan: scan.Scan) -> ExemplarsResult:
    import json

    data = json.loads((out_dir / "exemplars.json").read_text(encoding="utf-8"))
    return ExemplarsResult(out_dir, data["units"], {u.id: u.label for u in plan.units}, data["skipped"])
