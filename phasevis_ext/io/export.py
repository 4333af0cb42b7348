"""Writing results: PNGs, RGBA PNGs with MACO's transparency, contact sheets, JSON and an offline gallery.

Images are shown the way the field shows MACO results (Horama's `plot_maco`): each image
stretched between its 1st and 99th percentiles (`display_stretch`), and a transparency view whose
alpha is the accumulated gradient magnitude clipped at its 80th percentile (`display_alpha`).
The sigmoid of a standardized image rarely reaches 0 or 1, so unstretched MACO images look hazy.
The optimizer's own image stays in the results (`result.images`) and on disk (STEM_raw.png, and
the .npy below).

Images of any channel count C are written: C = 3 as RGB PNGs, C = 1 as greyscale PNGs, and any
other C as the raw (C, H, W) float32 array in an .npy file plus a per-channel sheet PNG (each
channel a greyscale tile, labelled), which is what the gallery and contact sheets show.

Every file is written to a temporary file in its destination folder and moved into place with
os.replace, so a reader never sees a half-written file and an interrupted run leaves the old one.
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import os
import re
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..checks import InvalidArgument


def atomic_write(path, write: Callable, mode: str = "wb") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            write(f)
        os.chmod(temp, 0o644)  # mkstemp makes it private; published files should be readable like any other
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    return path


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) floats in [0, 1] to (H, W, C) / (H, W) uint8."""
    t = t.detach().float().cpu().clamp(0, 1)
    if t.dim() == 3:
        t = t.permute(1, 2, 0)
    return (t * 255).round().to(torch.uint8).numpy()


def _check_image(image) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] < 1:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InvalidArgument(f"image must be a (C, H, W) tensor, got {shape}")
    return image


JPEG_SUFFIXES = (".jpg", ".jpeg")
JPEG_QUALITY = 88  # contact sheets for documents: a fifth of the PNG's size, no visible loss at 100%


def _save_pil(picture: Image.Image, path) -> Path:
    """PNG, or JPEG when the name says so (JPEG has no transparency: RGB only)."""
    if Path(path).suffix.lower() in JPEG_SUFFIXES:
        rgb = picture.convert("RGB")
        return atomic_write(path, lambda f: rgb.save(f, format="JPEG", quality=JPEG_QUALITY))
    return atomic_write(path, lambda f: picture.save(f, format="PNG"))


CHANNEL_GAP = 4  # pixels between the tiles of a per-channel sheet


def _channel_sheet(image: torch.Tensor, alpha: torch.Tensor | None = None) -> Image.Image:
    """Each channel of a (C, H, W) image as a labelled greyscale tile, side by side, 8 per row;
    with `alpha` (H, W) in [0, 1], every tile carries it as transparency."""
    channels, height, width = image.shape
    cols = min(channels, 8)
    rows = math.ceil(channels / cols)
    label_height = 12
    sheet = Image.new("RGBA", (cols * (width + CHANNEL_GAP) - CHANNEL_GAP, rows * (height + label_height)),
                      (255, 255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c in range(channels):
        x, y = (c % cols) * (width + CHANNEL_GAP), (c // cols) * (height + label_height)
        grey = _to_uint8(image[c])
        opacity = _to_uint8(alpha) if alpha is not None else np.full_like(grey, 255)
        sheet.paste(Image.fromarray(np.stack([grey, grey, grey, opacity], axis=-1), "RGBA"), (x, y))
        draw.text((x + 2, y + height), f"ch {c}", fill="black", font=font)
    return sheet if alpha is not None else sheet.convert("RGB")


def display_image(image: torch.Tensor) -> Image.Image:
    """How an image of any channel count is shown: RGB, greyscale, or a per-channel sheet."""
    image = _check_image(image)
    if image.shape[0] == 3:
        return Image.fromarray(_to_uint8(image), "RGB")
    if image.shape[0] == 1:
        return Image.fromarray(_to_uint8(image[0]), "L")
    return _channel_sheet(image)


def save_png(image: torch.Tensor, path) -> Path:
    """A (C, H, W) tensor in [0, 1] (values outside are clipped) as an 8-bit PNG: RGB for 3
    channels, greyscale for 1, a per-channel sheet otherwise."""
    return _save_pil(display_image(image), path)


def save_array(image: torch.Tensor, path) -> Path:
    """The raw (C, H, W) image as float32 .npy, for channel counts no PNG holds."""
    array = _check_image(image).detach().float().cpu().numpy()
    return atomic_write(path, lambda f: np.save(f, array))


STRETCH_PERCENTILE = 1.0  # Horama's plot_maco: clip to the 1st..99th percentile, then to [0, 1]
ALPHA_PERCENTILE = 80.0  # Horama's plot_maco: alpha clipped at its 80th percentile, then to [0, 1]


def display_stretch(image: torch.Tensor, percentile: float = STRETCH_PERCENTILE) -> torch.Tensor:
    """The image clipped to its [percentile, 100 - percentile] range (over all its values, so colour
    balance is kept) and mapped linearly onto [0, 1]. A flat image is returned as it is."""
    if not 0 <= percentile < 50:
        raise InvalidArgument(f"percentile must be in [0, 50), got {percentile}")
    image = _check_image(image).detach().float().cpu()
    values = image.flatten()
    lo, hi = torch.quantile(values, percentile / 100), torch.quantile(values, 1 - percentile / 100)
    if hi <= lo:
        return image.clamp(0, 1)
    return ((image.clamp(lo, hi) - lo) / (hi - lo)).clamp(0, 1)


def display_alpha(alpha: torch.Tensor, percentile: float = ALPHA_PERCENTILE) -> torch.Tensor:
    """Alpha as MACO displays it: divided by its `percentile`-th percentile, clipped to [0, 1].

    Clipping the strongest gradients keeps a few extreme ones from making everything else
    transparent. A map with no positive value gives a fully opaque alpha (nothing to show).
    """
    if not 0 < percentile <= 100:
        raise InvalidArgument(f"percentile must be in (0, 100], got {percentile}")
    alpha = alpha.detach().float().cpu()
    level = torch.quantile(alpha.flatten(), percentile / 100)
    if level <= 0:
        level = alpha.max()
    if level <= 0:
        return torch.ones_like(alpha)
    return (alpha / level).clamp(0, 1)


def save_rgba(image: torch.Tensor, alpha: torch.Tensor, path, percentile: float = ALPHA_PERCENTILE) -> Path:
    """(C, H, W) with alpha (1, H, W) or (H, W), rescaled by `display_alpha`, as a PNG with
    transparency: RGBA for 3 channels, greyscale + alpha for 1, a per-channel sheet otherwise."""
    image = _check_image(image)
    alpha = alpha.reshape(alpha.shape[-2:]) if alpha.dim() == 3 and alpha.shape[0] == 1 else alpha
    if alpha.shape != image.shape[1:]:
        raise InvalidArgument(f"alpha must be (1, H, W) or (H, W) matching the image's {tuple(image.shape[1:])}, "
                         f"got {tuple(alpha.shape)}")
    shown = display_alpha(alpha, percentile)
    if image.shape[0] == 3:
        picture = Image.fromarray(np.concatenate([_to_uint8(image), _to_uint8(shown)[..., None]], axis=-1), "RGBA")
    elif image.shape[0] == 1:
        picture = Image.fromarray(np.stack([_to_uint8(image[0]), _to_uint8(shown)], axis=-1), "LA")
    else:
        picture = _channel_sheet(image, shown)
    return _save_pil(picture, path)


def save_unit_images(image: torch.Tensor, alpha: torch.Tensor, out_dir, stem: str,
                     percentile: float = ALPHA_PERCENTILE) -> dict[str, str]:
    """A unit's image files under out_dir, paths relative to it: "image" STEM.png (stretched, see
    `display_stretch`), "rgba" STEM_rgba.png (stretched, with transparency), "raw" STEM_raw.png
    (the optimizer's image) and, for channel counts other than 1 and 3, "array" STEM.npy (raw)."""
    out_dir = Path(out_dir)
    files = {"image": f"{stem}.png", "rgba": f"{stem}_rgba.png", "raw": f"{stem}_raw.png"}
    shown = display_stretch(image)
    save_png(shown, out_dir / files["image"])
    save_rgba(shown, alpha, out_dir / files["rgba"], percentile)
    save_png(image, out_dir / files["raw"])
    if image.shape[0] not in (1, 3):
        files["array"] = f"{stem}.npy"
        save_array(image, out_dir / files["array"])
    return files


def contact_sheet(images, labels: Sequence[str] | None = None, path=None, *, cols: int | None = None,
                  pad: int = 4) -> Image.Image:
    """A grid of (C, H, W) images (shown as `display_image` shows them) with optional small labels
    under each; saved to `path` if given."""
    images = list(images)
    if not images:
        raise InvalidArgument("contact_sheet needs at least one image")
    tiles = [display_image(image).convert("RGB") for image in images]
    if labels is not None and len(labels) != len(images):
        raise InvalidArgument(f"labels: need one per image ({len(images)}), got {len(labels)}")
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    height = max(tile.height for tile in tiles)
    width = max(tile.width for tile in tiles)
    font = ImageFont.load_default()
    label_height = 14 if labels is not None else 0
    cell_w, cell_h = width + pad, height + label_height + pad
    sheet = Image.new("RGB", (cols * cell_w + pad, rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for index, tile in enumerate(tiles):
        x, y = pad + (index % cols) * cell_w, pad + (index // cols) * cell_h
        sheet.paste(tile, (x, y))
        if labels is not None:
            draw.text((x, y + height + 1), _fit(draw, str(labels[index]), font, width), fill="black", font=font)
    if path is not None:
        _save_pil(sheet, path)
    return sheet


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """text cut with an ellipsis so it fits in `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def class_label(unit, class_names: Sequence[str] | None) -> str | None:
    """The class name of a logit unit (an `objectives.UnitRef`, or its (kind, layer, index) list
    from JSON), when class_names knows its index."""
    if unit is None or not class_names or unit[0] != "logit":
        return None
    index = unit[2]
    return class_names[index] if index < len(class_names) else None


def default_class_names(result) -> Sequence[str] | None:
    """ImageNet's names where the result's model is an ImageNet classifier (its settings say so:
    `models.has_imagenet_classifier`), else None: other models' logits are not ImageNet's classes."""
    if result.settings.get("class_names") != "imagenet":
        return None
    from .imagenet_classes import IMAGENET_CLASSES

    return IMAGENET_CLASSES


def one_entry_per_image(result):
    """A result with samples=k > 1 seen as N * k single images (unit i's sample j at i * k + j), each
    with its unit's objective and its sample's id; a result with one image per unit, as it is."""
    samples = getattr(result, "samples", 1)
    if samples == 1:
        return result
    flat = (result.images.flatten(0, 1), result.alpha.flatten(0, 1), result.scores.flatten())
    repeat = lambda values: [v for v in values for _ in range(samples)]  # noqa: E731
    partial = None if result.partial is None else result.partial.repeat_interleave(samples)
    return SimpleNamespace(images=flat[0], alpha=flat[1], scores=flat[2], objectives=repeat(result.objectives),
                           unit_ids=result.sample_unit_ids(), units=repeat(result.units or
                                                                                       [None] * len(result)),
                           partial=partial, settings=result.settings, seconds=result.seconds, samples=1,
                           per_unit=samples)


def _units(result, class_names, files=None) -> list[dict]:
    samples = getattr(result, "per_unit", 1)
    units = []
    refs = getattr(result, "units", None) or [None] * len(result.objectives)
    for index, (description, unit_id, ref) in enumerate(zip(result.objectives, result.unit_ids, refs)):
        score = float(result.scores[index])
        unit = {"index": index // samples, "unit_id": unit_id, "objective": description,
                "score": score if math.isfinite(score) else None}
        if samples > 1:
            unit["sample"] = index % samples
        if getattr(result, "partial", None) is not None and bool(result.partial[index]):
            unit["partial"] = True  # cut short by Ctrl-C: the image is what the run had reached
        if ref is not None:
            unit["unit"] = {"kind": ref[0], "layer": ref[1], "index": ref[2]}
        name = class_label(ref, class_names)
        if name is not None:
            unit["class_name"] = name
        if files is not None:
            unit.update(files[index])
        units.append(unit)
    return units


def _results_json(result, class_names, files=None) -> dict:
    result = one_entry_per_image(result)
    display = {"stretch_percentile": STRETCH_PERCENTILE, "alpha_percentile": ALPHA_PERCENTILE}
    return {"units": _units(result, class_names, files), "settings": result.settings, "display": display,
            "seconds": result.seconds}


def write_json(result, path, class_names: Sequence[str] | None = None) -> Path:
    """Objectives, unit ids, final scores, settings and run time of a VisualizationResult as JSON."""
    data = _results_json(result, class_names)
    return atomic_write(path, lambda f: json.dump(data, f, indent=2), mode="w")


def write_gallery(result, out_dir, class_names: Sequence[str] | None = None, *,
                  percentile: float = ALPHA_PERCENTILE) -> Path:
    """Per-unit PNGs (see `save_unit_images`), contact_sheet.png (stretched), results.json and an
    offline index.html; returns index.html.

    Logit objectives are labelled with class_names (default: ImageNet's, for an ImageNet classifier
    only; `class_names.class_names_for` gives any model's from a file).
    """
    out_dir = Path(out_dir)
    class_names = default_class_names(result) if class_names is None else class_names
    result = one_entry_per_image(result)
    samples = getattr(result, "per_unit", 1)
    files = []
    for index in range(len(result.objectives)):
        stem = f"unit_{index // samples:04d}" + (f"_s{index % samples}" if samples > 1 else "")
        files.append(save_unit_images(result.images[index], result.alpha[index], out_dir, stem, percentile))
    # Accentuation and inversion: the photo (and the start made from it) beside each result.
    beside = {name: getattr(result, name, None) for name in ("photos", "seeds")}
    beside = {name: images for name, images in beside.items() if images is not None}
    for name, images in beside.items():
        for index, entry in enumerate(files):
            entry[name[:-1]] = f"unit_{index:04d}_{name[:-1]}.png"
            save_png(images[index], out_dir / entry[name[:-1]])
    units = _units(result, class_names, files)
    titles = [_title(unit) for unit in units]
    sheet = [display_stretch(image) for image in result.images]
    if beside:
        rows = list(zip(*beside.values(), sheet))
        sheet = [image for row in rows for image in row]
        titles_shown = [t for title in titles for t in [*(f"{name[:-1]}" for name in beside), title]]
    else:
        titles_shown = titles
    contact_sheet(sheet, titles_shown, out_dir / "contact_sheet.png",
                  cols=len(beside) + 1 if beside else (samples if samples > 1 else None))
    atomic_write(out_dir / "results.json",
                 lambda f: json.dump(_results_json(result, class_names, files), f, indent=2), mode="w")
    page = _gallery_html(units, titles, result.settings)
    return atomic_write(out_dir / "index.html", lambda f: f.write(page), mode="w")


def _format_score(score) -> str:
    if score is None or not math.isfinite(score):
        return "–" if score is None else str(score)
    return f"{score:.4g}"


def _title(unit: dict) -> str:
    name = unit.get("class_name")
    title = f"{unit['objective']} {name}" if name else unit["objective"]
    if "sample" in unit:
        title += f" #{unit['sample']}"
    return f"{title} (partial)" if unit.get("partial") else title


# ---------------------------------------------------------------------------------------------
# HTML: one page writer and one style for the gallery of a run and the pages of an atlas. Pages
# are self-contained (no external resources), so a folder opens offline.

_STYLE = """
body { font-family: sans-serif; margin: 1em; background: #fafafa; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 200px; }
figure img { width: 100%; height: auto; display: block; }
figure img.sample { width: 32%; display: inline-block; margin: 2px 1% 0 0; }
figure.channels { width: 480px; }
.rgba { background: repeating-conic-gradient(#ccc 0% 25%, #fff 0% 50%) 50% / 16px 16px; }
figcaption { font-size: 12px; overflow-wrap: anywhere; }
details pre { font-size: 12px; }
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


def write_page(path, title: str, body: str) -> Path:
    return atomic_write(path, lambda f: f.write(_page(title, body)), mode="w")


def _settings_details(settings: dict) -> str:
    return f"<details><summary>settings</summary><pre>{html.escape(json.dumps(settings, indent=2))}</pre></details>"


def _card(files: dict, title: str, caption: str, *, show: str = "image", data: str = "") -> str:
    """One unit: its image (or its transparency view), linked to the files, with a caption (HTML)."""
    esc = html.escape
    wide = " channels" if files.get("array") else ""
    shown = f'<a href="{esc(files["image"])}"><img class="rgba" src="{esc(files[show])}" alt="{esc(title)}" ' \
            f'loading="lazy"></a>'
    if show == "image":
        shown = (f'<a href="{esc(files["image"])}"><img src="{esc(files["image"])}" alt="{esc(title)}"></a>'
                 f'<a href="{esc(files["rgba"])}"><img class="rgba" src="{esc(files["rgba"])}" '
                 f'alt="{esc(title)} with transparency"></a>')
        shown = "".join(f'<a href="{esc(files[k])}"><img src="{esc(files[k])}" alt="{k}" title="{k}"></a>'
                        for k in ("photo", "seed") if files.get(k)) + shown
    others = [name for key, name in files.items() if key.startswith("sample") and key.endswith("_image")]
    shown += "".join(f'<a href="{esc(name)}"><img class="sample" src="{esc(name)}" alt="{esc(title)} sample" '
                     f'loading="lazy"></a>' for name in others)
    links = "".join(f' <a href="{esc(files[k])}">{k if k != "array" else "npy"}</a>'
                    for k in ("raw", "array", "record") if files.get(k))
    return f'<figure class="unit{wide}"{data}>{shown}<figcaption>{caption}{links}</figcaption></figure>'


def _gallery_html(units: list[dict], titles: list[str], settings: dict) -> str:
    esc = html.escape
    cards = []
    for unit, title in zip(units, titles):
        caption = (f'<b>{esc(unit["objective"])}</b>' + (f' {esc(unit["class_name"])}' if "class_name" in unit else "")
                   + f'<br>score {_format_score(unit["score"])}<br><small>{esc(unit["unit_id"])}</small>')
        cards.append(_card(unit, title, caption))
    body = (f"<h1>phasevis gallery</h1>\n<p>{len(units)} units. Each unit: the image stretched between its 1st "
            "and 99th percentiles, then with MACO's transparency (the accumulated gradient magnitude) over a "
            "checkerboard; <i>raw</i> is the optimizer's image as it is. Images with other channel "
            "counts than 1 and 3 show one greyscale tile per channel; their raw values are in the .npy files. "
            '<a href="contact_sheet.png">Contact sheet</a>, <a href="results.json">results.json</a>.</p>\n'
            f'<div class="grid">\n' + "\n".join(cards) + "\n</div>\n" + _settings_details(settings))
    return _page("phasevis gallery", body)


def safe_name(name: str) -> str:
    """A file name for a layer; a short digest keeps altered names apart."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "_"
    return safe if safe == name else f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def _page_name(group: str) -> str:
    return f"layer-{safe_name(group)}.html"


def _exemplar_strip(entry: dict) -> str:
    """The unit's dataset exemplars under its image: patches with their activation and file."""
    esc = html.escape
    return "".join(f'<a href="{esc(x["patch"])}"><img class="sample" src="{esc(x["patch"])}" loading="lazy" '
                   f'title="{esc(x["image"])}: {x["activation"]:.4g}" alt="exemplar {esc(x["image"])}"></a>'
                   for x in entry.get("exemplars", []))


def write_atlas_gallery(out_dir, entries: list[dict], settings: dict) -> Path:
    """index.html (one row per layer) and layer-*.html (its units, sortable by score) of an atlas
    folder, from its index entries in display order; returns index.html."""
    esc = html.escape
    out_dir = Path(out_dir)
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        groups.setdefault(entry["group"], []).append(entry)
    rows = []
    for group, units in groups.items():
        cards = []
        for e in units:
            name = e["unit"] + (f" {e['label']}" if e.get("label") else "")
            caption = f'{esc(name)}<br>score <b>{_format_score(e["score"])}</b>' + _exemplar_strip(e)
            cards.append(_card(e["files"], name, caption, show="rgba",
                               data=f' data-score="{e["score"]}" data-index="{e["index"]}"'))
        body = (f'<p><a href="index.html">atlas</a> / {esc(group)}: {len(units)} units, shown with MACO\'s '
                f'transparency (click for the plain image).</p>\n<p>Sort: '
                f'<button onclick="sortUnits(\'score\', -1)">score &darr;</button> '
                f'<button onclick="sortUnits(\'score\', 1)">score &uarr;</button> '
                f'<button onclick="sortUnits(\'index\', 1)">unit</button></p>\n'
                f'<div class="grid" id="grid">\n' + "\n".join(cards) + f"\n</div>\n<script>{_SORT_JS}</script>")
        write_page(out_dir / _page_name(group), group, body)
        scores = [e["score"] for e in units if math.isfinite(e["score"])]
        span = f"{_format_score(min(scores))} .. {_format_score(max(scores))}" if scores else "-"
        rows.append(f'<tr><td><a href="{esc(_page_name(group))}">{esc(group)}</a></td>'
                    f"<td>{len(units)}</td><td>{span}</td></tr>")
    body = (f"<h1>Atlas of {esc(str(settings.get('model')))}</h1>\n<p>{len(entries)} units. "
            f'<a href="index.json">index.json</a>, <a href="settings.json">settings.json</a>.</p>\n'
            f"<table><tr><th>layer</th><th>units</th><th>scores</th></tr>\n" + "\n".join(rows) + "</table>\n"
            + _settings_details(settings))
    return write_page(out_dir / "index.html", "atlas", body)


# ---------------------------------------------------------------------------------------------
# Notebooks: a result shows itself as MACO images are shown (Horama's plot_maco): the stretched
# image, and the same image with the transparency of its accumulated gradient.


def _png_base64(picture: Image.Image) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def result_html(result, class_names: Sequence[str] | None = None, side: int = 160) -> str:
    """A grid of every image of a VisualizationResult: plain and with transparency, its unit, class and score."""
    esc = html.escape
    flat = one_entry_per_image(result)
    names = class_names if class_names is not None else default_class_names(result)
    cells = []
    for i, unit_id in enumerate(flat.unit_ids):
        shown = display_stretch(flat.images[i])
        alpha = display_alpha(flat.alpha[i].reshape(shown.shape[-2:]))
        plain = display_image(shown)
        rgba = display_image(shown).convert("RGBA")
        if shown.shape[0] in (1, 3):
            rgba.putalpha(Image.fromarray(_to_uint8(alpha)))
        label = class_label(flat.units[i], names) if flat.units else None
        images = "".join(f'<img src="data:image/png;base64,{_png_base64(p)}" style="width:{side // 2 - 2}px" '
                         f'class="{k}">' for k, p in (("plain", plain), ("rgba", rgba)))
        cells.append(f'<figure style="margin:4px;width:{side}px;display:inline-block;vertical-align:top">'
                     f'<div class="rgba">{images}</div><figcaption style="font-size:11px">{esc(unit_id)}'
                     + (f" {esc(label)}" if label else "") + f"<br>score {_format_score(float(flat.scores[i]))}"
                     "</figcaption></figure>")
    return f"<div><style>.rgba img.rgba {{{_CHECKERBOARD}}}</style>" + "".join(cells) + "</div>"


_CHECKERBOARD = "background: repeating-conic-gradient(#ccc 0% 25%, #fff 0% 50%) 50% / 12px 12px;"


def result_figure(result, columns: int = 8, class_names: Sequence[str] | None = None):
    """The images of a VisualizationResult as a matplotlib figure, titled by unit, class and score."""
    import matplotlib.pyplot as plt

    flat = one_entry_per_image(result)
    names = class_names if class_names is not None else default_class_names(result)
    count = len(flat.unit_ids)
    cols = max(1, min(columns, count))
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in zip(range(count), axes.flat):
        ax.imshow(display_image(display_stretch(flat.images[i])), cmap="gray")
        label = class_label(flat.units[i], names) if flat.units else None
        ax.set_title(f"{flat.unit_ids[i]}{' ' + label if label else ''}\n{_format_score(float(flat.scores[i]))}",
                     fontsize=8)
    return fig
