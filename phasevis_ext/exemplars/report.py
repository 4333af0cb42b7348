"""What an exemplar pass leaves: exemplars.json, each entry's patch as a PNG, an offline index.html."""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import torch
from PIL import Image

from ..io import export
from .dataset import Item, eval_geometry, item_size, read_item
from .receptive import ReceptiveField

PATCH_SIDE = 128  # the longer side of a patch file; smaller patches keep their own size


def crop_box(size: tuple[int, int], box: list[float], resize: int, crop: int) -> list[int]:
    """A box in the evaluation view's pixels as [x0, y0, x1, y1] in the pixels of the (H, W) original."""
    height, width = size
    (scale_x, scale_y, left, top), _ = eval_geometry(height, width, resize, crop)
    x0, y0, x1, y1 = box
    return [max(0, int((x0 + left) / scale_x)), max(0, int((y0 + top) / scale_y)),
            min(int(width), math.ceil((x1 + left) / scale_x)), min(int(height), math.ceil((y1 + top) / scale_y))]


def entries(top, units, folder: Path, items: list[Item], fields: dict[str, ReceptiveField], resize: int,
            crop: int) -> dict:
    """{unit id: [{"image", "activation", "box"}, ...]} highest first; box in the original's pixels."""
    sizes = {i: item_size(folder, items[i]) for i in set(top.ids.flatten().tolist()) if i >= 0}
    out = {}
    for u, unit in enumerate(units):
        out[unit.id] = [{"image": items[image_id].name, "activation": value,
                         "box": crop_box(sizes[image_id], fields[unit.group].box(row, column), resize, crop)}
                        for value, image_id, (row, column) in zip(top.values[u].tolist(), top.ids[u].tolist(),
                                                                  top.positions[u].tolist()) if image_id >= 0]
    return out


def write_patches(out_dir: Path, folder: Path, by_key: dict, items_by_name: dict[str, Item]) -> dict:
    """Each entry's patch (its image cropped to its box, at most PATCH_SIDE on its longer side) as
    patches/KEY/RANK.png; returns {key: [file, ...]}. Entries go image by image: one decode each."""
    files = {key: [f"patches/{export.safe_name(key)}/{rank}.png" for rank in range(len(entries))]
             for key, entries in by_key.items()}
    by_image: dict[str, list] = {}
    for key, entries in by_key.items():
        for rank, entry in enumerate(entries):
            by_image.setdefault(entry["image"], []).append((entry["box"], files[key][rank]))
    for name, wanted in by_image.items():
        picture = export.display_image(_shown_channels(read_item(folder, items_by_name[name])))
        for box, file in wanted:
            patch = picture.crop(tuple(box))
            patch.thumbnail((PATCH_SIDE, PATCH_SIDE), Image.Resampling.LANCZOS)
            path = out_dir / file
            path.parent.mkdir(parents=True, exist_ok=True)
            export.atomic_write(path, lambda f, patch=patch: patch.save(f, format="PNG"))
    return files


def _shown_channels(array) -> torch.Tensor:
    """(C, H, W) for display: 1 or 3 channels as they are, other band counts as their mean, in grey."""
    image = torch.from_numpy(array).permute(2, 0, 1)
    return image if image.shape[0] in (1, 3) else image.mean(0, keepdim=True)


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
