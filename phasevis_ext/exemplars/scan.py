"""One streaming pass over a folder of images: the top K images of every unit, resumable, sharded.

Per unit, the value of an image is the channel's spatial maximum (a logit's value for a logit),
kept with the position of that maximum. Each rank of a torchrun launch takes every world-th image;
after every batch it writes its state (the running top K, the next batch, the skipped images)
atomically, so a killed pass loses at most the batch in flight. Rank 0 merges the ranks' states.
"""
from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..checks import InvalidArgument
from ..io import export
from ..io.images import UnreadableImageWarning
from ..io.records import digest, state_digest
from ..model import loading as models
from ..model.activations import LOGITS, as_bchw, capture
from ..render.units import LOGITS_GROUP, LayerUnit
from .dataset import BAD_READ, ImageFolder, Item, worker_count
from .topk import RunningTopK

RECORD = "exemplars.record.json"


@dataclass
class Scan:
    """What a pass needs besides the model: the images, the units and how to batch them."""

    folder: Path
    items: list[Item]
    units: list[LayerUnit]
    top: int
    channels: int
    resize: int
    crop: int
    batch_size: int
    workers: int | None


def state_path(out_dir: Path, rank: int) -> Path:
    return out_dir / f".exemplars-rank{rank}.pt"


def remove_pass(out_dir: Path) -> None:
    """The files a pass writes, and only those: a folder may hold other things."""
    for name in (RECORD, "exemplars.json", "index.html"):
        (out_dir / name).unlink(missing_ok=True)
    for state in out_dir.glob(".exemplars-rank*.pt"):
        state.unlink()
    if (out_dir / "patches").is_dir():
        shutil.rmtree(out_dir / "patches")


def pass_record(model: nn.Module, model_name: str, scan: Scan, world: int) -> dict:
    """What decides the pass's results: a rerun with the same record resumes, another is refused."""
    files = [f"{item.name}:{_file_stamp(scan.folder / item.path)}" for item in scan.items]
    return {"model": model_name, "weights": state_digest(model), "images": str(scan.folder.resolve()),
            "image_count": len(scan.items), "files": digest("\n".join(files).encode()),
            "units": digest("\n".join(u.id for u in scan.units).encode()), "unit_count": len(scan.units),
            "top": scan.top, "resize": scan.resize, "crop": scan.crop, "batch_size": scan.batch_size,
            "ranks": world}


def _file_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def check_record(out_dir: Path, record: dict, rank: int) -> None:
    """Refuses a folder holding another pass's work, naming what differs; writes the record."""
    path = out_dir / RECORD
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        started = any(out_dir.glob(".exemplars-rank*.pt"))
        if stored != record and started:
            names = sorted(k for k in {*stored, *record} if stored.get(k) != record.get(k))
            raise InvalidArgument(f"out_dir: {str(out_dir)!r} holds exemplars of another pass (differs in "
                                  f"{', '.join(names)}); use another folder, or new_run=True (--new-run) to start over")
    if rank == 0:
        export.atomic_write(path, lambda f: json.dump(record, f, indent=1), mode="w")


def run_shard(model: nn.Module, scan: Scan, out_dir: Path, rank: int, world: int, record_id: str,
              device: torch.device, progress: bool) -> dict:
    """This rank's share of the pass, from where its state left off; returns its final state."""
    shard = list(range(rank, len(scan.items), world))
    state = _load_state(out_dir, rank, record_id) or {
        "record": record_id, "next": 0, "top": RunningTopK(len(scan.units), scan.top).state_dict(),
        "skipped": {"unreadable": [], "wrong_channels": []}}
    top = RunningTopK.from_state(state["top"])
    start = state["next"] * scan.batch_size
    if start < len(shard):
        dataset = ImageFolder(scan.folder, scan.items, channels=scan.channels, resize=scan.resize, crop=scan.crop)
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, shard[start:]), batch_size=scan.batch_size,
                                             num_workers=worker_count(scan.workers), shuffle=False)
        layers = sorted({u.group for u in scan.units if u.group != LOGITS_GROUP})
        bar = tqdm(total=len(shard), initial=start, unit="img", disable=not progress or rank != 0,
                   desc="exemplars", dynamic_ncols=True)
        with capture(model, layers, need_logits=any(u.group == LOGITS_GROUP for u in scan.units)) as cap:
            for batch in loader:
                _note_skipped(batch, scan.items, state["skipped"])
                good = batch["bad"] == 0
                if bool(good.any()):
                    with torch.no_grad():
                        acts = cap.run(batch["image"][good].to(device))
                    values, positions = unit_maxima(acts, scan.units)
                    top.update(values.cpu(), batch["id"][good], positions.cpu())
                state["next"] += 1
                state["top"] = top.state_dict()
                _save_state(out_dir, rank, state)
                bar.update(len(batch["id"]))
        bar.close()
    return state


def unit_maxima(acts: dict, units: list[LayerUnit]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, U) each unit's spatial maximum (a neuron's value at its position) and (B, U, 2) its
    (row, column); one gather and one max per layer and kind, whatever the number of units."""
    batch = next(iter(acts.values())).shape[0]
    values, positions = torch.empty(batch, len(units)), torch.empty(batch, len(units), 2, dtype=torch.long)
    groups: dict[tuple[str, bool], list[int]] = {}
    for u, unit in enumerate(units):
        groups.setdefault((unit.group, unit.neuron), []).append(u)
    for (group, is_neuron), members in groups.items():
        act = as_bchw(acts[LOGITS if group == LOGITS_GROUP else group])
        act = act[:, [units[u].index for u in members]].float().cpu()  # (B, U_g, H, W)
        height, width = act.shape[-2:]
        if is_neuron:  # the centre, where `objectives.neuron` reads it by default
            best = act[:, :, height // 2, width // 2]
            where = torch.full_like(best, (height // 2) * width + width // 2, dtype=torch.long)
        else:
            best, where = act.flatten(2).max(2)
        values[:, members] = best.nan_to_num(nan=-torch.inf)  # a NaN never ranks (nor reaches the JSON)
        positions[:, members] = torch.stack([where // width, where % width], 2)
    return values, positions


def _note_skipped(batch: dict, items: list[Item], skipped: dict) -> None:
    for i, code in zip(batch["id"].tolist(), batch["bad"].tolist()):
        if code:
            kind = "unreadable" if code == BAD_READ else "wrong_channels"
            skipped[kind].append(items[i].name)
            why = "not a readable image" if code == BAD_READ else "its channel count is not the model's"
            warnings.warn(f"skipping {items[i].name!r}: {why}", UnreadableImageWarning, stacklevel=2)


def _load_state(out_dir: Path, rank: int, record_id: str) -> dict | None:
    path = state_path(out_dir, rank)
    if not path.exists():
        return None
    state = torch.load(path, weights_only=True)
    return state if state.get("record") == record_id else None


def _save_state(out_dir: Path, rank: int, state: dict) -> None:
    export.atomic_write(state_path(out_dir, rank), lambda f: torch.save(state, f))


def merged_states(out_dir: Path, world: int, record_id: str, units: int, k: int) -> tuple[RunningTopK, dict]:
    """Every rank's top K merged, and every rank's skipped images."""
    top, skipped = RunningTopK(units, k), {"unreadable": [], "wrong_channels": []}
    for rank in range(world):
        state = _load_state(out_dir, rank, record_id)
        if state is None:
            raise RuntimeError(f"rank {rank} of {world} left no exemplar state in {out_dir}")
        top.merge(RunningTopK.from_state(state["top"]))
        for kind, names in state["skipped"].items():
            skipped[kind] += names
    return top, skipped


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def model_geometry(model: nn.Module, input_size: int | None) -> tuple[int, int]:
    """(resize, crop) of the model's evaluation transform."""
    crop = input_size or models.default_input_size(model)
    return models.eval_resize(model, crop), crop
