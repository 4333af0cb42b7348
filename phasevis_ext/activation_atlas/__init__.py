"""Activation atlas (Carter et al., Distill 2019): a map of what a whole layer sees in your data.

    activation_atlas(model, "photos/", "atlas-out", layer="_blocks.15", grid=12, min_count=4)
    phasevis activation-atlas --images photos/ --layer _blocks.15 --grid 12 --out atlas-out

1. Spatial activation vectors of the layer are sampled over the folder (`--samples` in all, an
   even share of random positions per image), in one streaming pass as the exemplars' pass.
2. UMAP (umap-learn) reduces them to 2-D; the map is cut into grid × grid cells, and the cells
   with at least min_count samples keep the mean of their vectors.
3. Each kept cell is rendered with a `direction` objective at the layer, many cells per model
   pass, with MACO by default (any rendering option applies).
4. Writes atlas.png (the cells tiled at their grid positions), cells.json (per cell: its grid
   position, count, image file, the exemplar patches nearest its mean, and, for a classifier,
   the top classes of the cell's image) and an offline index.html to pan, zoom and inspect cells.
The sampled vectors are kept in samples.pt: a rerun over the same files, model and layer with
another grid or rendering reuses them.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import checks
from ..checks import InvalidArgument
from ..exemplars import report
from ..exemplars.dataset import ImageFolder, item_size, open_folder, worker_count
from ..exemplars.receptive import receptive_fields
from ..exemplars.scan import model_geometry
from ..io import export
from ..io.class_names import class_names_for
from ..io.records import digest, state_digest
from ..model import loading as models
from ..model.activations import as_bchw, capture
from ..render.objectives import direction
from ..render.visualize import visualize
from .page import TILE, write_index

NEAREST = 3  # exemplar patches per cell
# Carter et al. render cells with the dot product times the cosine similarity, so that a cell's
# image matches its mean direction rather than a larger activation along a neighbour's.
COSSIM_POWER = 1.0
CLASSIFY_BATCH = 16  # cell images per model pass when naming their classes
MIN_SAMPLES = 16  # UMAP's spectral start needs more points than its 2 dimensions and neighbours


@dataclass
class ActivationAtlas:
    """cells: per kept cell {"cell": [x, y], "count", "image", "exemplars", "classes"}."""

    out_dir: Path
    grid: int
    cells: list[dict]
    layer: str

    def _repr_html_(self) -> str:
        data = base64.b64encode((self.out_dir / "atlas.png").read_bytes()).decode()
        return (f"<div><b>activation atlas of {html.escape(self.layer)}</b>: {len(self.cells)} cells of a {self.grid}×{self.grid} "
                f'grid<br><img src="data:image/png;base64,{data}" style="max-width:100%"></div>')

    def show(self):
        """The tiled atlas in a matplotlib figure."""
        import matplotlib.pyplot as plt
        from PIL import Image

        fig, ax = plt.subplots(figsize=(8, 8))
        ax.imshow(Image.open(self.out_dir / "atlas.png"))
        ax.set_title(f"{self.layer}: {len(self.cells)} cells")
        ax.axis("off")
        return fig


def activation_atlas(model: nn.Module | str, images, out_dir, *, layer: str, grid: int = 16, min_count: int = 3,
                     samples: int = 20000, batch_size: int = 32, workers: int | None = None,
                     input_size: int | None = None, device=None, seed: int = 0, class_names=None,
                     progress: bool = True, render: dict | None = None) -> ActivationAtlas:
    """See the module doc. batch_size: images per model pass while sampling; render: options of
    `visualize` for the cells (steps, image_size, param, batch_size: cells per model pass...)."""
    for value, name in ((grid, "grid"), (min_count, "min_count"), (samples, "samples"), (batch_size, "batch_size")):
        checks.positive_int(value, name)
    if samples < min_count:
        raise InvalidArgument(f"samples ({samples}) must be at least min_count ({min_count})")
    out_dir, folder = Path(out_dir), Path(images)
    device = checks.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = models.load(model, device=device) if isinstance(model, str) else model.eval().to(device)
    resize, crop = model_geometry(model, input_size)
    channels = models.input_channels(model, input_size=crop)
    items = open_folder(folder, channels)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = ImageFolder(folder, items, channels=channels, resize=resize, crop=crop)
    sampled = _sampled(model, dataset, layer, samples, batch_size, workers, seed, device, out_dir, progress)
    if len(sampled["vectors"]) < MIN_SAMPLES:
        raise InvalidArgument(f"samples: the images gave {len(sampled['vectors'])} activation vectors; a map needs "
                              f"at least {MIN_SAMPLES} (more images, or more --samples)")
    coords = umap_layout(sampled["vectors"], seed)
    cells = _cells(coords, sampled["vectors"], grid, min_count)
    if not cells:
        raise InvalidArgument(f"grid: no cell of the {grid}×{grid} grid holds {min_count} of the "
                              f"{len(coords)} samples; use a coarser --grid, a lower --min-count or more --samples")
    means = torch.stack([c.pop("mean") for c in cells])
    result = visualize(model, [direction(layer, m, COSSIM_POWER) for m in means],
                       **{"progress": progress, **(render or {}), "device": device})
    _write_cells(out_dir, cells, result, model, class_names, sampled, items, folder, layer, crop, channels, resize)
    _tile(out_dir, cells, grid)
    (out_dir / "cells.json").write_text(json.dumps({"layer": layer, "grid": grid, "min_count": min_count,
                                                    "samples": len(coords), "cells": cells}, indent=1))
    write_index(out_dir, cells, grid, layer)
    return ActivationAtlas(out_dir, grid, cells, layer)


def _sampled(model, dataset, layer, samples, batch_size, workers, seed, device, out_dir: Path, progress) -> dict:
    """{"vectors" (S, C) float32, "where" (S, 3) image id, row, column}, from samples.pt when it fits."""
    stamps = [f"{i.name}:{(dataset.folder / i.path).stat().st_size}:{(dataset.folder / i.path).stat().st_mtime_ns}"
              for i in dataset.items]
    key = digest(json.dumps([state_digest(model), layer, samples, seed, dataset.resize, dataset.crop, stamps]).encode())
    path = out_dir / "samples.pt"
    if path.exists():
        stored = torch.load(path, weights_only=True)
        if stored.get("key") == key:
            return stored
    per_image = max(1, math.ceil(samples / len(dataset)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=worker_count(workers))
    vectors, where = [], []
    bar = tqdm(total=len(dataset), unit="img", desc="sampling", disable=not progress, dynamic_ncols=True)
    with capture(model, [layer]) as cap, torch.no_grad():
        for batch in loader:
            good = batch["bad"] == 0
            bar.update(len(batch["id"]))
            if not bool(good.any()):
                continue
            act = as_bchw(cap.run(batch["image"][good].to(device))[layer]).float().cpu()
            for image_id, a in zip(batch["id"][good].tolist(), act):
                g = torch.Generator().manual_seed(seed * 1_000_003 + image_id)
                flat = torch.randperm(a.shape[1] * a.shape[2], generator=g)[:per_image]
                rows, cols = flat // a.shape[2], flat % a.shape[2]
                vectors.append(a[:, rows, cols].T)
                where.append(torch.stack([torch.full_like(rows, image_id), rows, cols], 1))
    bar.close()
    vectors, where = torch.cat(vectors), torch.cat(where)
    # A seeded random subset when the images gave more than asked, so that every image has its
    # chance, not only the first in file order.
    keep = torch.randperm(len(vectors), generator=torch.Generator().manual_seed(seed))[:samples].sort().values
    state = {"key": key, "vectors": vectors[keep], "where": where[keep]}
    export.atomic_write(path, lambda f: torch.save(state, f))
    return state


def umap_layout(vectors: torch.Tensor, seed: int) -> np.ndarray:
    """(S, 2) in [0, 1]²."""
    try:
        import umap
    except ImportError as error:
        raise ImportError(f"activation atlases need umap-learn ({error}); `pip install umap-learn`") from None
    neighbours = max(2, min(15, len(vectors) - 1))
    with warnings.catch_warnings():  # a seed makes UMAP single-threaded, and it says so each time
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        coords = umap.UMAP(n_components=2, n_neighbors=neighbours, random_state=seed, metric="cosine").fit_transform(
            vectors.numpy())
    low, high = coords.min(0), coords.max(0)
    return (coords - low) / np.maximum(high - low, 1e-12)


def _cells(coords: np.ndarray, vectors: torch.Tensor, grid: int, min_count: int) -> list[dict]:
    """Kept cells, row-major from the top-left: grid position, members and mean vector."""
    xy = np.minimum((coords * grid).astype(int), grid - 1)
    cells = []
    for y in range(grid - 1, -1, -1):  # UMAP's y grows upwards; the image's rows downwards
        for x in range(grid):
            members = np.flatnonzero((xy[:, 0] == x) & (xy[:, 1] == y))
            if len(members) >= min_count:
                cells.append({"cell": [x, y], "count": int(len(members)), "members": members.tolist(),
                              "mean": vectors[members].mean(0)})
    return cells


def _write_cells(out_dir, cells, result, model, class_names, sampled, items, folder, layer, crop, channels,
                 resize) -> None:
    """Each cell's image, nearest exemplar patches and top classes, into its entry."""
    field = receptive_fields(model, [layer], crop, channels)[layer]
    nearest = {}
    for i, cell in enumerate(cells):
        key = f"cell-{cell['cell'][0]}-{cell['cell'][1]}"
        nearest[key] = _nearest(cell.pop("members"), sampled, items, folder, field, resize, crop)
        cell["image"] = f"cells/{cell['cell'][0]}_{cell['cell'][1]}.png"
        export.save_png(export.display_stretch(result.images[i]), out_dir / cell["image"])
        cell["score"] = float(result.scores[i])
    patches = report.write_patches(out_dir, folder, nearest, {item.name: item for item in items})
    for cell, key in zip(cells, nearest):
        cell["exemplars"] = [{**entry, "patch": patch} for entry, patch in zip(nearest[key], patches[key])]
    for cell, classes in zip(cells, _top_classes(model, result.images, class_names, crop)):
        cell["classes"] = classes


def _nearest(members: list[int], sampled: dict, items, folder, field, resize: int, crop: int) -> list[dict]:
    """The cell's samples closest to its mean (cosine), as exemplar entries with boxes in the originals."""
    vectors = sampled["vectors"][members]
    similarity = torch.nn.functional.cosine_similarity(vectors, vectors.mean(0)[None], dim=1)
    entries = []
    for j in similarity.argsort(descending=True)[:NEAREST].tolist():
        image_id, row, column = sampled["where"][members[j]].tolist()
        entries.append({"image": items[image_id].name, "similarity": float(similarity[j]),
                        "box": report.crop_box(item_size(folder, items[image_id]), field.box(row, column), resize,
                                               crop)})
    return entries


def _top_classes(model, images: torch.Tensor, class_names, size: int) -> list[list[dict]]:
    """Per image (resized to the model's input), the model's top 3 classes when its output is
    (N, classes) logits; else nothing."""
    device = next(model.parameters()).device
    outputs = []
    with torch.no_grad():
        for chunk in images.split(CLASSIFY_BATCH):
            chunk = torch.nn.functional.interpolate(chunk.float(), size=(size, size), mode="bilinear",
                                                    antialias=True, align_corners=False)
            outputs.append(model(chunk.to(device)))
    if not all(isinstance(o, torch.Tensor) and o.dim() == 2 for o in outputs):
        return [[] for _ in images]
    out = torch.cat(outputs).float().cpu()
    names = class_names_for(model, class_names, out.shape[1])
    top = out.softmax(-1).topk(min(3, out.shape[1]))
    return [[{"index": int(k), "name": names[k] if names else None, "probability": float(v)}
             for v, k in zip(values, indices)] for values, indices in zip(top.values, top.indices)]


def _tile(out_dir: Path, cells: list[dict], grid: int) -> None:
    from PIL import Image

    canvas = Image.new("RGB", (grid * TILE, grid * TILE), (255, 255, 255))
    for cell in cells:
        x, y = cell["cell"]
        with Image.open(out_dir / cell["image"]) as tile:
            canvas.paste(tile.convert("RGB").resize((TILE, TILE), Image.Resampling.LANCZOS),
                         (x * TILE, (grid - 1 - y) * TILE))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    export.atomic_write(out_dir / "atlas.png", lambda f: f.write(buffer.getvalue()))
