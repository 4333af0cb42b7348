"""Atlas: visualize every unit of some layers (and logits) of a model into a folder, resumably,
on one process or across GPUs and nodes with torchrun.

    phasevis atlas --model efficientnet_lite0 --layers _blocks.10,_blocks.15 --logits 0:1000 --out atlas/
    torchrun --nproc-per-node=8 -m phasevis_ext.cli atlas --model efficientnet_lite0 --layers _blocks.15 --out atlas/
    # two nodes, same command on each (DIR on a filesystem both can write):
    torchrun --nnodes=2 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        -m phasevis_ext.cli atlas --model efficientnet_lite0 --layers _blocks.15 --out /shared/atlas

From Python: `run(model, out_dir, layers=["_blocks.15"], channels="0:64", logits=None, **visualize_options)`.

Units: channel c of layer L has the id "L:cC" (all channels by default, or the `channels` slice
"a:b", clipped to each layer's channel count); class i of the model output has the id "logit:i".
The id seeds the unit's random streams (render.unit_seed), so its image does not depend on the
batch, the rank or the number of processes.

The folder:
    settings.json               everything that changes the images (model + weights digest, param,
                                steps, lr, image_size, input_size, crops, box_size, noise, seed, ...)
    units/GROUP/STEM.png        the image; STEM_rgba.png with MACO's transparency; STEM.json its record
    index/rank-00003.jsonl      one line per finished unit, appended by rank 3 only: unit, group, index,
                                label, objective, score, files, settings (the digest of settings.json),
                                seed, seconds (wall time), finished (UTC), rank, world_size, host
    index.json                  the shards merged by rank 0 at the end of a run
    index.html, layer-*.html    the gallery: one page per layer, sortable by score, works offline
    archive/TIMESTAMP/          earlier runs set aside by new_run=True / --new-run

Crash safety: every file is written to a temporary file and moved into place (os.replace), then
fsync'd; only then is the unit's index line appended, flushed and fsync'd. So an index line always
names complete files, and a run killed at any point (SIGKILL included) loses at most the batch in
flight. Each shard has a single writer, so no locking is needed on a network filesystem (no
shared SQLite file); a torn last line (a kill during the append) is skipped when reading and cut
off before the owner appends again.

Resume: rerunning the same command skips the units that are done: a valid index line for the
current settings whose files all exist. Different settings into the same folder raise ValueError
naming the differing settings (unless nothing is done there yet); new_run=True moves the old
settings, index, units and gallery to archive/TIMESTAMP/ and starts over.

Distribution: with WORLD_SIZE > 1 in the environment (torchrun), each process joins a process
group (NCCL on GPU, gloo on CPU) and renders on cuda:LOCAL_RANK (or the CPU). Rank 0 alone checks
the settings, reads the index and lists the pending units BEFORE any rank writes, then broadcasts
that list; pending unit i goes to rank i % world_size. After a barrier, rank 0 merges the shards
into index.json and writes the gallery. Without torchrun the same call runs everything itself.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import html
import inspect
import json
import math
import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from . import export, models
from .activations import LOGITS, as_bchw, capture
from . import checks
from .checks import InvalidArgument, InvalidArgumentType
from .objectives import channel, logit
from .render import DEFAULT_LR, _model_device, resolve_amp, visualize

LOGITS_GROUP = "logits"
INDEX_FORMAT = 1
# Ranks that finish early wait for the slowest at the final barrier; NCCL's default 10 minute
# timeout would abort them on a large, unevenly loaded atlas.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=12)
# visualize() arguments that atlas sets itself.
_OWN_OPTIONS = {"model", "objectives", "unit_ids", "progress"}
# visualize() options that change the images by rounding at most: left out of settings.json so that
# a resume may use another device, batch size or memory format. Any other visualize() option,
# including ones added later, counts as a setting.
_NEUTRAL_OPTIONS = {"device", "batch_size", "callback", "callback_every", "channels_last", "memory_budget",
                    "model_batch", "fold_batchnorm"}


@dataclass(frozen=True)
class Unit:
    id: str  # "_blocks.15:c12" or "logit:207"
    group: str  # the layer name, or LOGITS_GROUP
    index: int
    label: str | None = None  # class name of a logit, when known

    def objective(self):
        return logit(self.index) if self.group == LOGITS_GROUP else channel(self.group, self.index)


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
        input_channels: int | None = None, **visualize_options) -> AtlasResult:
    """Visualize every channel of `layers` and the `logits` classes into `out_dir`; see the module doc.

    model: an nn.Module (moved to this rank's device and put in eval mode) or a `models.load` name.
    layers: layer names, or one comma-separated string. channels: None (all), "a:b", a range or
        a list of ints, clipped to each layer's channel count. logits: None (none), "a:b", ":" (all), ...
    new_run: archive whatever `out_dir` holds and start over instead of resuming.
    model_name: how settings.json names the model (default: the name, or the module's class).
    input_channels: the model's input channels (visualize's `channels`; default: inferred).
    visualize_options: passed to `render.visualize` (param, steps, image_size, crops, seed, batch_size,
        device, ...). device=None means cuda if available, else cpu; "cuda" means cuda:LOCAL_RANK.
    """
    out_dir = Path(out_dir)
    layers = [s.strip() for s in layers.split(",") if s.strip()] if isinstance(layers, str) else list(layers)
    unknown = set(visualize_options) - (set(inspect.signature(visualize).parameters) - _OWN_OPTIONS)
    if unknown:
        raise InvalidArgumentType(f"atlas.run: unexpected options {sorted(unknown)}")
    if not layers and logits is None:
        raise InvalidArgument("atlas: nothing to do; give layers and/or logits")
    batch_size = visualize_options.get("batch_size", 8)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size must be an int >= 1, got {batch_size!r}")
    progress = sys.stderr.isatty() if progress is None else progress

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _rank_device(visualize_options.pop("device", None), local_rank)
    model_name = model_name or (model if isinstance(model, str) else type(model).__name__)
    # A module is moved and put in eval mode, as visualize runs it: no forward pass may update its buffers.
    model = models.load(model, device=device)
    visualize_options["channels"] = models.input_channels(model, input_channels, visualize_options.get("input_size"))
    rank, world, own_group = _init_distributed(device)
    try:
        # Rank 0 decides alone, before any rank writes, so that all ranks split the same list.
        plan = None
        if rank == 0:
            try:
                plan = _prepare(model, model_name, out_dir, layers, channels, logits, new_run, visualize_options)
            except Exception as error:  # noqa: BLE001 - re-raised below on every rank
                plan = error
        if world > 1:
            box = [plan]
            dist.broadcast_object_list(box, src=0)
            plan = box[0]
        if isinstance(plan, Exception):
            raise plan
        settings, settings_id, units, pending = plan
        mine = pending[rank::world]
        rendered = _render(model, out_dir, mine, settings, settings_id, visualize_options, device=device,
                           rank=rank, world=world, bar_position=local_rank, progress=progress)
        if world > 1:
            dist.barrier(**({"device_ids": [device.index]} if device.type == "cuda" else {}))
        index = gallery = None
        if rank == 0:
            entries = _merge_index(out_dir, settings, settings_id, world)
            index, gallery = out_dir / "index.json", _write_gallery(out_dir, entries, settings)
        return AtlasResult(out_dir, len(units), len(units) - len(pending), rendered, rank, world, index, gallery)
    finally:
        if own_group:
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# Devices and the process group.


def _rank_device(requested, local_rank: int) -> torch.device:
    device = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives run on the current device
    return device


def _init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether we created the group); joins a group only under torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return dist.get_rank(), dist.get_world_size(), True


# ---------------------------------------------------------------------------------------------
# Rank 0's plan: units, settings, resume state.


def _prepare(model, model_name, out_dir: Path, layers, channels, logits, new_run, options):
    settings = image_settings(model, model_name, options)
    units = _enumerate_units(model, layers, channels, logits, options.get("input_size"), options["channels"])
    settings_id = _digest(json.dumps(settings, sort_keys=True).encode())
    out_dir.mkdir(parents=True, exist_ok=True)
    if new_run:
        _archive(out_dir)
    stored_path = out_dir / "settings.json"
    if stored_path.exists():
        stored = json.loads(stored_path.read_text(encoding="utf-8"))
        if stored != settings and any(True for _ in _read_shards(out_dir)):
            raise InvalidArgument(_mismatch_message(out_dir, stored, settings))
    _write_json(stored_path, settings)  # also replaces the settings of a folder with nothing done yet
    for temp in (*out_dir.glob("units/*/.*.tmp"), *out_dir.glob(".*.tmp")):
        temp.unlink(missing_ok=True)  # left by a killed run; no rank is writing yet
    done = {entry["unit"] for entry in _valid_entries(out_dir, settings_id)}
    pending = [unit for unit in units if unit.id not in done]
    return settings, settings_id, units, pending


def _enumerate_units(model, layers, channels, logits, input_size, input_channels: int) -> list[Unit]:
    """Units of each layer then the logits, counting channels with one dummy forward pass."""
    size = input_size or models.default_input_size(model)
    param = next(model.parameters(), None)
    dummy = torch.full((1, input_channels, size, size), 0.5, device=param.device if param is not None else None)
    with capture(model, layers, need_logits=logits is not None) as cap, torch.no_grad():
        acts = cap.run(dummy)
    units = []
    for name in layers:
        count = as_bchw(acts[name]).shape[1]
        units += [Unit(f"{name}:c{c}", name, c) for c in checks.indices(channels, f"channels of layer {name!r}", count)]
    if logits is not None:
        count = as_bchw(acts[LOGITS]).shape[1]
        names = export._default_class_names() if count == 1000 else None  # 1000 classes: assume ImageNet's
        units += [Unit(f"logit:{i}", LOGITS_GROUP, i, names[i] if names else None)
                  for i in checks.indices(logits, "logits", count)]
    return units


def image_settings(model: nn.Module, model_name: str, options: dict) -> dict[str, Any]:
    """Everything that changes the images, with visualize's defaults filled in, as JSON."""
    defaults = {name: p.default for name, p in inspect.signature(visualize).parameters.items()
                if p.default is not inspect.Parameter.empty}
    merged = {k: v for k, v in {**defaults, **options}.items() if k not in _OWN_OPTIONS | _NEUTRAL_OPTIONS}
    if merged["lr"] is None:
        merged["lr"] = DEFAULT_LR.get(merged["param"])
    if merged["input_size"] is None:
        merged["input_size"] = models.default_input_size(model)
    if isinstance(merged["image_size"], int):
        merged["image_size"] = (merged["image_size"],) * 2
    # The dtype "auto" stands for here, so that "auto" and its value name the same images.
    merged["amp"] = resolve_amp(merged["amp"], _model_device(model))
    if merged["channels"] is None:
        merged["channels"] = models.input_channels(model, None, merged["input_size"])
    if merged["spectrum"] not in (None, "default", "imagenet"):
        # The file's content, not its path, is what makes the images.
        merged["spectrum"] = {"file": Path(merged["spectrum"]).name,
                              "sha256": models.file_sha256(merged["spectrum"])[:16]}
    settings = {"model": model_name, "weights": _weights_digest(model),
                "weights_file": models.weights_record(model), "input_normalization": models.input_normalization(model)}
    settings.update({k: _jsonable(v) for k, v in sorted(merged.items())})
    return settings


def _jsonable(value):
    """JSON for a setting; tensors (e.g. a custom MACO magnitude) by shape and content digest."""
    if isinstance(value, torch.Tensor):
        return {"tensor": list(value.shape), "sha256": _tensor_digest(value)}
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return getattr(value, "__qualname__", None) or repr(value)


def _tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().cpu().contiguous().reshape(-1)
    return _digest(f"{t.dtype}".encode() + t.view(torch.uint8).numpy().tobytes())


def _weights_digest(model: nn.Module) -> str:
    """Digest of the state dict, so that other weights under the same model name are caught."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}:".encode())
        h.update(_tensor_digest(t).encode())
    return h.hexdigest()[:16]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _mismatch_message(out_dir: Path, stored: dict, settings: dict) -> str:
    keys = sorted(set(stored) | set(settings), key=lambda k: (k != "model", k))
    diffs = [f"{k} ({stored.get(k)!r} there, {settings.get(k)!r} now)"
             for k in keys if stored.get(k) != settings.get(k)]
    return (f"{out_dir} holds an atlas made with other settings: {'; '.join(diffs)}. Use the same settings "
            f"to resume, another folder, or new_run=True / --new-run to archive it and start over")


def _archive(out_dir: Path) -> None:
    """Move the previous run's files to archive/TIMESTAMP/ (not deleted: they may have cost GPU days)."""
    names = ["settings.json", "index.json", "index", "units", "index.html",
             *(p.name for p in out_dir.glob("layer-*.html"))]
    present = [name for name in names if (out_dir / name).exists()]
    if not present:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    archive = out_dir / "archive" / stamp
    archive.mkdir(parents=True)
    for name in present:
        os.replace(out_dir / name, archive / name)


# ---------------------------------------------------------------------------------------------
# The index: per-rank JSONL shards, merged into index.json by rank 0.


def _shard_path(out_dir: Path, rank: int) -> Path:
    return out_dir / "index" / f"rank-{rank:05d}.jsonl"


def _read_shards(out_dir: Path):
    """Every parseable entry of every shard; torn or garbled lines are skipped."""
    for shard in sorted((out_dir / "index").glob("rank-*.jsonl")):
        for line in shard.read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("unit"), str) and isinstance(entry.get("files"), dict):
                yield entry


def _valid_entries(out_dir: Path, settings_id: str) -> list[dict]:
    """Entries of the current settings whose files all exist; the latest one per unit."""
    latest = {}
    for entry in _read_shards(out_dir):
        if entry.get("settings") != settings_id:
            continue
        if not all(isinstance(f, str) and (out_dir / f).is_file() for f in entry["files"].values()):
            continue
        old = latest.get(entry["unit"])
        if old is None or entry.get("finished", "") >= old.get("finished", ""):
            latest[entry["unit"]] = entry
    return list(latest.values())


class _Shard:
    """This rank's JSONL shard: one line per unit, fsync'd; only this rank ever writes it."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):  # torn by a kill mid-append: cut back to the last full line
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        self.file = open(path, "a", encoding="utf-8")
        _fsync_path(path.parent)

    def append(self, entry: dict) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _merge_index(out_dir: Path, settings: dict, settings_id: str, world: int) -> list[dict]:
    entries = sorted(_valid_entries(out_dir, settings_id), key=lambda e: (_group_key(e["group"]), e["index"]))
    _write_json(out_dir / "index.json", {"format": INDEX_FORMAT, "settings_id": settings_id, "settings": settings,
                                         "world_size": world, "units": entries})
    return entries


def _write_json(path: Path, data) -> Path:
    return export._atomic_write(path, lambda f: json.dump(data, f, indent=1), mode="w")


def _fsync_path(path: Path) -> None:
    """Flush a file's data, or a folder's entries (the renames), to stable storage."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # folders cannot be opened on some platforms; the rename is then as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Rendering.


def _safe_name(name: str) -> str:
    """A file name for a layer; a short digest keeps altered names apart."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "_"
    return safe if safe == name else f"{safe}-{_digest(name.encode())[:6]}"


def _unit_stem(unit: Unit) -> str:
    return f"units/{_safe_name(unit.group)}/{'logit' if unit.group == LOGITS_GROUP else 'c'}{unit.index:04d}"


def _render(model, out_dir: Path, units: list[Unit], settings, settings_id, options, *, device, rank, world,
            bar_position, progress) -> int:
    batch_size = options.get("batch_size", 8)
    shard = _Shard(_shard_path(out_dir, rank))
    host = socket.gethostname()
    start = time.perf_counter()
    bar = tqdm(total=len(units), desc=f"atlas rank {rank}/{world}", unit="unit", position=bar_position,
               disable=not progress or not units, dynamic_ncols=True)
    try:
        for first in range(0, len(units), batch_size):
            batch = units[first:first + batch_size]
            result = visualize(model, [u.objective() for u in batch], unit_ids=[u.id for u in batch],
                               device=device, progress=False, **options)
            seconds = result.seconds / len(batch)
            written = []
            for i, unit in enumerate(batch):
                stem = _unit_stem(unit)
                files = {**export.save_unit_images(result.images[i], result.alpha[i], out_dir, stem),
                         "record": f"{stem}.json"}
                entry = {"unit": unit.id, "group": unit.group, "index": unit.index, "label": unit.label,
                         "objective": result.objectives[i], "score": float(result.scores[i]), "files": files,
                         "settings": settings_id, "seed": settings["seed"], "seconds": round(seconds, 4),
                         "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                         "rank": rank, "world_size": world, "host": host}
                record = {**entry, "settings": settings, "settings_id": settings_id,
                          "history": result.history[:, i].tolist()}
                _write_json(out_dir / files["record"], record)
                written.append((entry, files))
            # The index lines come last, once the files are durable: a line always names complete files.
            for _, files in written:
                for f in files.values():
                    _fsync_path(out_dir / f)
            for folder in {(out_dir / f).parent for _, files in written for f in files.values()}:
                _fsync_path(folder)
            for entry, _ in written:
                shard.append(entry)
            bar.update(len(batch))
            bar.set_postfix_str(f"{bar.n / max(time.perf_counter() - start, 1e-9) * 60:.1f} units/min")
    finally:
        bar.close()
        shard.close()
    return len(units)


# ---------------------------------------------------------------------------------------------
# Gallery: index.html and one page per layer, self-contained (no external resources).


def _group_key(group: str):
    """Layers in natural order (_blocks.2 before _blocks.10), logits last."""
    return (group == LOGITS_GROUP, [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", group)])


def _page_name(group: str) -> str:
    return f"layer-{_safe_name(group)}.html"


_STYLE = """
body { font-family: sans-serif; margin: 1em; background: #fafafa; }
#grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 160px; }
figure img { width: 160px; height: auto; display: block;
  background: repeating-conic-gradient(#ccc 0% 25%, #fff 0% 50%) 50% / 16px 16px; }
figcaption { font-size: 12px; overflow-wrap: anywhere; }
td, th { padding: 2px 10px; text-align: left; }
"""

_SORT_JS = """
function sortUnits(key, dir) {
  const value = (card) => { const v = parseFloat(card.dataset[key]); return isNaN(v) ? -Infinity : v; };
  const grid = document.getElementById("grid");
  [...grid.children].sort((a, b) => dir * (value(a) - value(b))).forEach((card) => grid.appendChild(card));
}
"""


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def _fmt(score: float) -> str:
    return f"{score:.4g}" if math.isfinite(score) else str(score)


def _write_gallery(out_dir: Path, entries: list[dict], settings: dict) -> Path:
    esc = html.escape
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        groups.setdefault(entry["group"], []).append(entry)
    rows = []
    for group, units in groups.items():
        cards = []
        for e in units:
            name = e["unit"] + (f" {e['label']}" if e.get("label") else "")
            files = e["files"]
            cards.append(
                f'<figure data-score="{e["score"]}" data-index="{e["index"]}">'
                f'<a href="{esc(files["image"])}"><img src="{esc(files["rgba"])}" alt="{esc(name)}" loading="lazy"></a>'
                f'<figcaption>{esc(name)}<br>score <b>{_fmt(e["score"])}</b> '
                f'<a href="{esc(files["record"])}">json</a></figcaption></figure>')
        body = (f'<p><a href="index.html">atlas</a> / {esc(group)}: {len(units)} units, shown with MACO\'s '
                f'transparency (click for the plain image).</p>\n<p>Sort: '
                f'<button onclick="sortUnits(\'score\', -1)">score &darr;</button> '
                f'<button onclick="sortUnits(\'score\', 1)">score &uarr;</button> '
                f'<button onclick="sortUnits(\'index\', 1)">unit</button></p>\n'
                f'<div id="grid">\n' + "\n".join(cards) + f"\n</div>\n<script>{_SORT_JS}</script>")
        export._atomic_write(out_dir / _page_name(group), lambda f, b=body, g=group: f.write(_page(g, b)), mode="w")
        scores = [e["score"] for e in units if math.isfinite(e["score"])]
        span = f"{_fmt(min(scores))} .. {_fmt(max(scores))}" if scores else "-"
        rows.append(f'<tr><td><a href="{esc(_page_name(group))}">{esc(group)}</a></td>'
                    f"<td>{len(units)}</td><td>{span}</td></tr>")
    body = (f"<h1>Atlas of {esc(str(settings.get('model')))}</h1>\n<p>{len(entries)} units. "
            f'<a href="index.json">index.json</a>, <a href="settings.json">settings.json</a>.</p>\n'
            f"<table><tr><th>layer</th><th>units</th><th>scores</th></tr>\n" + "\n".join(rows) + "</table>\n"
            f"<details><summary>settings</summary><pre>{esc(json.dumps(settings, indent=2))}</pre></details>")
    return export._atomic_write(out_dir / "index.html", lambda f: f.write(_page("atlas", body)), mode="w")


# ---------------------------------------------------------------------------------------------
# Command line (wired into phasevis_ext.cli as `phasevis atlas`).


def add_atlas_parser(subparsers) -> argparse.ArgumentParser:
    """The `atlas` subcommand, with the shared visualize options already added (do not add them again)."""
    from .cli import _add_visualize_options

    p = subparsers.add_parser(
        "atlas", help="visualize every unit of layers or logits, resumable, across GPUs with torchrun",
        description="Every channel of --layers (or the --channels slice) and the --logits slice, written to --out "
                    "with an index and an offline gallery. Rerunning resumes. Under torchrun the units are split "
                    "between the processes, e.g. `torchrun --nproc-per-node=8 -m phasevis_ext.cli atlas ...`.")
    p.add_argument("--layers", default="", help="comma-separated layer names, e.g. _blocks.10,_blocks.15")
    p.add_argument("--channels", default=None, help="slice a:b of each layer's channels (default: all)")
    p.add_argument("--logits", default=None, help="slice a:b of the model's classes, ':' for all (default: none)")
    p.add_argument("--out", required=True, help="output folder (resumed if it exists)")
    p.add_argument("--new-run", action="store_true",
                   help="archive what --out holds (to --out/archive/TIMESTAMP) and start over")
    _add_visualize_options(p)
    return p


def cmd_atlas(args) -> int:
    from .cli import EXIT_OK, load_model, visualize_kwargs

    options = visualize_kwargs(args)
    progress = options.pop("progress")
    input_channels = options.pop("channels", None)
    model = load_model(args)
    result = run(model, args.out, layers=args.layers, channels=args.channels, logits=args.logits,
                 new_run=args.new_run, progress=progress, model_name=args.model, input_channels=input_channels,
                 **options)
    if result.rank == 0:
        print(f"{result.units} units: {result.skipped} already done, {result.units - result.skipped} rendered "
              f"by {result.world_size} process(es); gallery: {result.gallery}")
    return EXIT_OK
