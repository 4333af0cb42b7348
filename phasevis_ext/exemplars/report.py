"""What an exemplar pass leaves: exemplars.json, each entry's patch as a PNG, an offline index.html."""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import torch

from ..io import export
from .dataset import Item, eval_geometry, read_item
from .receptive import ReceptiveField

PATCH_SIDE = 128  # the longer side of a patch file; smaller patches keep their own size


def crop_box(folder: Path, item: Item, box: list[float], resize: int, crop: int) -> list[int]:
    """A box in the evaluation view's pixels as [x0, y0, x1, y1] in the original image's pixels."""
    height, width = read_item(folder, item).shape[:2]
    (scale, left, top), _ = eval_geometry(height, width, resize, crop)
    x0, y0, x1, y1 = box
    return [max(0, int((x0 + left) / scale)), max(0, int((y0 + top) / scale)),
            min(int(width), math.ceil((x1 + left) / scale)), min(int(height), math.ceil((y1 + top) / scale))]


def entries(top, units, folder: Path, items: list[Item], fields: dict[str, ReceptiveField], resize: int,
            crop: int) -> dict:
    """{unit id: [{"image", "activation", "box"}, ...]} highest first; box in the original's pixels."""
    out = {}
    for u, unit in enumerate(units):
        out[unit.id] = [{"image": items[image_id].name, "activation": value,
                         "box": crop_box(folder, items[image_id], fields[unit.group].box(row, column), resize, crop)}
                        for value, image_id, (row, column) in zip(top.values[u].tolist(), top.ids[u].tolist(),
                                                                  top.positions[u].tolist()) if image_id >= 0]
    return out


def write_patches(out_dir: Path, folder: Path, by_key: dict, items_by_name: dict[str, Item]) -> dict:
    """Each entry's patch (its image cropped to its box) as patches/KEY/RANK.png; returns {key: [file, ...]}."""
    files = {}
    for key, entries in by_key.items():
        stem = export.safe_name(key)
        files[key] = []
        for rank, entry in enumerate(entries):
            array = read_item(folder, items_by_name[entry["image"]])
            x0, y0, x1, y1 = entry["box"]
            patch = torch.from_numpy(array[y0:y1, x0:x1].copy()).permute(2, 0, 1)
            if patch.shape[0] not in (1, 3):
                patch = patch.mean(0, keepdim=True)  # other band counts show as their mean, in grey
            longer = max(patch.shape[-2:])
            if longer > PATCH_SIDE:
                size = [max(1, round(s * PATCH_SIDE / longer)) for s in patch.shape[-2:]]
                patch = torch.nn.functional.interpolate(patch[None], size=size, mode="bilinear", antialias=True,
                                                        align_corners=False)[0]
            name = f"patches/{stem}/{rank}.png"
            export.save_png(patch.clamp(0, 1), out_dir / name)
            files[key].append(name)
    return files


def write_json(out_dir: Path, by_unit: dict, skipped: dict, record: dict) -> Path:
    data = {"units": by_unit, "skipped": skipped, "record": record}
    return export.atomic_write(out_dir / "exemplars.json", lambda f: json.dump(data, f, indent=1), mode="w")


def write_index(out_dir: Path, units, by_unit: dict, patches: dict, skipped: dict) -> Path:
    esc = html.escape
    sections = []
    for unit in units:
        figures = "".join(
            f'<figure><img src="{esc(name)}" alt="{esc(entry["image"])}" loading="lazy">'
            f'<figcaption>{entry["activation"]:.4g}<br><small>{esc(entry["image"])}</small></figcaption></figure>'
            for entry, name in zip(by_unit[unit.id], patches[unit.id]))
        label = f" {esc(unit.label)}" if unit.label else ""
        sections.append(f'<h3>{esc(unit.id)}{label}</h3><div class="grid">{figures}</div>')
    note = "".join(f"<p>{len(names)} {kind.replace('_', ' ')} files skipped.</p>" for kind, names in skipped.items()
                   if names)
    body = (f"<h1>Dataset exemplars</h1><p>{len(units)} units; for each, the images that drive it most, cropped to "
            f"the receptive field around its maximum, with the activation. <a href=\"exemplars.json\">exemplars.json"
            f"</a>.</p>{note}\n" + "\n".join(sections))
    return export.write_page(out_dir / "index.html", "exemplars", body)
