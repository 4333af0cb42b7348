"""Atlas: visualize every unit of some layers (and logits) of a model into a folder, resumably,
on one process or across GPUs and nodes with torchrun.

    phasevis atlas --model efficientnet_lite0 --layers _blocks.10,_blocks.15 --logits 0:1000 --out atlas/
    torchrun --nproc-per-node=8 -m phasevis_ext atlas --model efficientnet_lite0 --layers _blocks.15 --out atlas/
    # two nodes, same command on each (DIR on a filesystem both can write):
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        -m phasevis_ext atlas --model efficientnet_lite0 --layers _blocks.15 --out /shared/atlas

From Python: `run(model, out_dir, layers=["_blocks.15"], channels="0:64", logits=None, **visualize_options)`.

The package: `planning` (the units, the settings, the process group), `index` (the durable
per-rank index), this module (the run: the model is prepared once, `render.loop.render_units` renders
one batch of units at a time). The gallery is written by `export`.

Units: channel c of layer L has the id "L:cC" (all channels by default, or the `channels` range,
e.g. "0:64" or "0-63", clipped to each layer's channel count); class i of the model output has the id "logit:i".
The id seeds the unit's random streams (render.unit_seed), so its image does not depend on the
batch, the rank or the number of processes.

The folder:
    settings.json               everything that changes the images (model + weights digest, param,
                                steps, lr, image_size, input_size, crops, box_size, noise, seed, ...)
    units/GROUP/STEM.png        the image; STEM_rgba.png with MACO's transparency; STEM.json its record;
                                STEM.npy the raw image when it has other channel counts than 1 and 3;
                                with samples=k, the other samples as STEM_s1.png ... (score: their mean)
    index/rank-00003.jsonl      one line per finished unit, appended by rank 3 only: unit, group, index,
                                label, objective, score, files, settings (the digest of settings.json),
                                seed, seconds (wall time), finished (UTC), rank, world_size, host
    index.json                  the shards merged by rank 0 at the end of a run
    index.html, layer-*.html    the gallery: one page per layer, sortable by score, works offline
    archive/TIMESTAMP/          the runs that new_run=True / --new-run set aside

Crash safety: every file is written to a temporary file and moved into place (os.replace), then
fsync'd; only then is the unit's index line appended, flushed and fsync'd. So an index line always
names complete files, and a run killed at any point (SIGKILL included) loses at most the batch in
flight. Each shard has a single writer, so no locking is needed on a network filesystem (no
shared SQLite file); a torn last line (a kill during the append) is skipped when reading and cut
off before the owner appends again.

Resume: rerunning the same command skips the units that are done: a valid index line for the
current settings whose files all exist. Different settings into the same folder raise InvalidArgument
(a ValueError) naming the differing settings (unless nothing is done there yet); new_run=True moves the old
settings, index, units and gallery to archive/TIMESTAMP/ and starts over.

Distribution: with WORLD_SIZE > 1 in the environment (torchrun), each process joins a process
group (NCCL on GPU, gloo on CPU) and renders on cuda:LOCAL_RANK (or the CPU). Rank 0 alone checks
the settings, reads the index and lists the pending units BEFORE any rank writes, then broadcasts
that list; pending unit i goes to rank i % world_size. After a barrier, rank 0 merges the shards
into index.json and writes the gallery. Without torchrun the same call runs everything itself.
"""
from __future__ import annotations

import datetime
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..checks import InvalidArgument
from ..distributed import init_distributed, rank_device
from ..io import export
from ..model import loading as models
from ..render.loop import render_units
from ..render.settings import RenderSettings
from ..render.units import LOGITS_GROUP, LayerUnit
from ..render.visualize import prepare
from .index import Shard, fsync_path, merge_index, shard_path, unit_stem, write_record
from .planning import plan_run

__all__ = ["AtlasResult", "LOGITS_GROUP", "LayerUnit", "run"]


@dataclass
class AtlasResult:
    out_dir: Path
    units: int  # units asked for
    skipped: int  # of those, already done before this run
    rendered: int  # units this rank rendered
    rank: int
    world_size: int
    index: Path | None  # index.json (rank 0 only)
    gallery: Path | None  # index.html (rank 0 only)


def run(model: nn.Module | str, out_dir, *, layers: str | Sequence[str] = (), channels=None, logits=None,
        new_run: bool = False, progress: bool | None = None, model_name: str | None = None,
        input_channels: int | None = None, class_names=None, settings: RenderSettings | None = None,
        callback=None, images=None, exemplars_top: int = 9, **overrides) -> AtlasResult:
    """Visualize every channel of `layers` and the `logits` classes into `out_dir`; see the module doc.

    model: an nn.Module (moved to this rank's device and put in eval mode) or a `models.load` name.
    layers: layer names, or one comma-separated string. channels: None (all) or a range ("0:64",
        "0-63", a list of ints), clipped to each layer's channel count. logits: None (none), or a
        range (":" for all).
    new_run: archive whatever `out_dir` holds and start over instead of resuming.
    model_name: how settings.json names the model (default: the name, or the module's class).
    input_channels: the model's input channels (the settings' `channels`; default: inferred).
    class_names: names of the logits, a file (one a line, or a JSON list) or a sequence, as many as
        the model has logits (default: ImageNet's for an ImageNet classifier, else none).
    settings, overrides: the RenderSettings of every unit, as for `visualize`. device=None means
        cuda if available, else cpu; "cuda" means cuda:LOCAL_RANK. callback: as for `visualize`,
        per batch of units.
    images: a folder of images; each unit's `exemplars_top` dataset exemplars (`exemplars`, into
        out_dir/exemplars, resumable too) go on its gallery page and in its index.json entry.
    """
    out_dir = Path(out_dir)
    layers = [s.strip() for s in layers.split(",") if s.strip()] if isinstance(layers, str) else list(layers)
    if not layers and logits is None:
        raise InvalidArgument("atlas: nothing to do; give layers and/or logits")
    settings = (settings or RenderSettings()).replace(**overrides)
    if input_channels is not None:
        settings = settings.replace(channels=input_channels)
    progress = sys.stderr.isatty() if progress is None else progress
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = rank_device(settings.device, local_rank)
    model_name = model_name or (model if isinstance(model, str) else type(model).__name__)
    # A module is moved and put in eval mode, as visualize runs it: no forward pass may update its buffers.
    model = models.load(model, device=device)
    settings = settings.replace(device=device).resolved_for(model)
    rank, world, own_group = init_distributed(device)
    try:
        units, pending, record, record_id = _plan_on_rank_0(rank, world, model, model_name, out_dir, layers,
                                                            channels, logits, new_run, settings, class_names)
        with prepare(model, settings, layers=layers) as prepared:
            rendered = _render(prepared, out_dir, pending[rank::world], record, record_id, settings, rank=rank,
                               world=world, bar_position=local_rank, progress=progress, callback=callback)
        if world > 1:
            dist.barrier(**({"device_ids": [device.index]} if device.type == "cuda" else {}))
        found = None if images is None else _exemplars(model, images, out_dir, layers, channels, logits,
                                                        exemplars_top, device, progress, class_names)
        index = gallery = None
        if rank == 0:
            entries = merge_index(out_dir, record, record_id, world, {u.id: u.label for u in units}, found)
            index, gallery = out_dir / "index.json", export.write_atlas_gallery(out_dir, entries, record)
        return AtlasResult(out_dir, len(units), len(units) - len(pending), rendered, rank, world, index, gallery)
    finally:
        if own_group:
            dist.destroy_process_group()


def _exemplars(model, images, out_dir: Path, layers, channels, logits, top, device, progress, class_names):
    """{unit id: exemplar entries} with patch paths relative to out_dir."""
    from ..exemplars import exemplars

    result = exemplars(model, images, out_dir / "exemplars", layers=layers, channels=channels, logits=logits,
                       top=top, device=device, progress=progress, class_names=class_names)
    return {unit: [{**e, "patch": f"exemplars/{e['patch']}"} for e in entries] for unit, entries in result.units.items()}


def _plan_on_rank_0(rank, world, *plan_args):
    """Rank 0 decides alone, before any rank writes, so that all ranks split the same list; an
    error there is raised on every rank."""
    plan = None
    if rank == 0:
        try:
            plan = plan_run(*plan_args)
        except Exception as error:  # noqa: BLE001 - re-raised below on every rank
            plan = error
    if world > 1:
        box = [plan]
        dist.broadcast_object_list(box, src=0)
        plan = box[0]
    if isinstance(plan, Exception):
        raise plan
    return plan


def _render(prepared, out_dir: Path, units: list[LayerUnit], record, record_id, settings: RenderSettings, *,
            rank: int, world: int, bar_position: int, progress: bool, callback=None) -> int:
    """Renders `units` a batch at a time on the prepared model; each batch's files and index lines
    are durable before the next batch starts."""
    shard = Shard(shard_path(out_dir, rank))
    where = {"rank": rank, "world_size": world, "host": socket.gethostname()}
    start = time.perf_counter()
    bar = tqdm(total=len(units), desc=f"atlas rank {rank}/{world}", unit="unit", position=bar_position,
               disable=not progress or not units, dynamic_ncols=True)
    try:
        for first in range(0, len(units), settings.batch_size):
            batch = units[first:first + settings.batch_size]
            result = render_units(prepared, [u.objective() for u in batch], [u.id for u in batch], settings,
                                  progress=False, callback=callback)
            written = [_write_unit(out_dir, unit, result, i, record, record_id, where) for i, unit in enumerate(batch)]
            # The index lines come last, once the files are durable: a line always names complete files.
            for _, files in written:
                for f in files.values():
                    fsync_path(out_dir / f)
            for folder in {(out_dir / f).parent for _, files in written for f in files.values()}:
                fsync_path(folder)
            for entry, _ in written:
                shard.append(entry)
            bar.update(len(batch))
            bar.set_postfix_str(f"{bar.n / max(time.perf_counter() - start, 1e-9) * 60:.1f} units/min")
    finally:
        bar.close()
        shard.close()
    return len(units)


def _write_unit(out_dir: Path, unit: LayerUnit, result, i: int, record, record_id, where) -> tuple[dict, dict]:
    """(index entry, files) of unit i of a batch's result, its images and record written."""
    stem, samples = unit_stem(unit), result.samples
    # Sample 0 is the unit's image (without diversity, the one samples=1 gives); the others are STEM_sJ*.
    images, alphas = (result.images[i], result.alpha[i]) if samples > 1 else (result.images[i:i + 1],
                                                                              result.alpha[i:i + 1])
    files = export.save_unit_images(images[0], alphas[0], out_dir, stem)
    for j in range(1, samples):
        extra = export.save_unit_images(images[j], alphas[j], out_dir, f"{stem}_s{j}")
        files.update({f"sample{j}_{key}": name for key, name in extra.items()})
    files["record"] = f"{stem}.json"
    scores = result.scores[i].reshape(-1)
    entry = {"unit": unit.id, "group": unit.group, "index": unit.index, "label": unit.label,
             "objective": result.objectives[i], "score": float(scores.mean()), "files": files,
             "settings": record_id, "seed": record["seed"], "seconds": round(result.seconds / len(result), 4),
             "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(), **where}
    if samples > 1:
        entry["scores"] = scores.tolist()
    write_record(out_dir / files["record"], {**entry, "settings": record, "settings_id": record_id,
                                           "history": result.history[:, i].tolist()})
    return entry, files
