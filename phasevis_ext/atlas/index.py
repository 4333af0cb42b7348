"""The durable index of an atlas: one JSONL shard per rank, merged into index.json by rank 0.

Every file is written to a temporary file and moved into place, then fsync'd; only then is the
unit's line appended to its rank's shard, flushed and fsync'd. So a line always names complete
files, and a kill at any point loses at most the batch in flight. Each shard has one writer, so
no locking is needed on a network filesystem; a torn last line is skipped when reading and cut
off before its owner appends again.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..io import export
from ..render.units import LOGITS_GROUP

INDEX_FORMAT = 1


def unit_stem(unit) -> str:
    """units/GROUP/cNNNN or units/logits/logitNNNN, relative to the atlas folder."""
    kind = "logit" if unit.group == LOGITS_GROUP else "c"
    return f"units/{export.safe_name(unit.group)}/{kind}{unit.index:04d}"


def group_key(group: str):
    """Layers in natural order (_blocks.2 before _blocks.10), logits last."""
    return (group == LOGITS_GROUP, [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", group)])


def shard_path(out_dir: Path, rank: int) -> Path:
    return out_dir / "index" / f"rank-{rank:05d}.jsonl"


def read_shards(out_dir: Path):
    """Every parseable entry of every shard; torn or garbled lines are skipped."""
    for shard in sorted((out_dir / "index").glob("rank-*.jsonl")):
        for line in shard.read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("unit"), str) and isinstance(entry.get("files"), dict):
                yield entry


def valid_entries(out_dir: Path, settings_id: str) -> list[dict]:
    """Entries of the current settings whose files all exist; the latest one per unit."""
    latest = {}
    for entry in read_shards(out_dir):
        if entry.get("settings") != settings_id:
            continue
        if not all(isinstance(f, str) and (out_dir / f).is_file() for f in entry["files"].values()):
            continue
        old = latest.get(entry["unit"])
        if old is None or entry.get("finished", "") >= old.get("finished", ""):
            latest[entry["unit"]] = entry
    return list(latest.values())


class Shard:
    """This rank's JSONL shard: one line per unit, fsync'd; only this rank ever writes it."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):  # torn by a kill mid-append: cut back to the last full line
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
        self.file = open(path, "a", encoding="utf-8")
        fsync_path(path.parent)

    def append(self, entry: dict) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def merge_index(out_dir: Path, settings: dict, settings_id: str, world: int,
                labels: dict[str, str | None] | None = None, exemplars: dict[str, list] | None = None) -> list[dict]:
    """index.json from every rank's shard; `labels` (unit id -> class name) are this run's, so a
    resume with other class names relabels the units finished before it. `exemplars` (unit id ->
    entries with their patch files relative to out_dir) go in each unit's entry."""
    entries = sorted(valid_entries(out_dir, settings_id), key=lambda e: (group_key(e["group"]), e["index"]))
    if labels is not None:
        entries = [{**e, "label": labels.get(e["unit"], e.get("label"))} for e in entries]
    if exemplars is not None:
        entries = [{**e, "exemplars": exemplars.get(e["unit"], [])} for e in entries]
    write_record(out_dir / "index.json", {"format": INDEX_FORMAT, "settings_id": settings_id, "settings": settings,
                                         "world_size": world, "units": entries})
    return entries


def write_record(path: Path, data) -> Path:
    return export.atomic_write(path, lambda f: json.dump(data, f, indent=1), mode="w")


def fsync_path(path: Path) -> None:
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
