"""The atlas's offline index.html: the cells at their grid positions, to pan (drag) and zoom
(wheel), with a cell's count, classes and nearest exemplars on hover or click."""
from __future__ import annotations

import html
import json
from pathlib import Path

from ..io import export

TILE = 96

_PAN_ZOOM_SCRIPT = """
const view = document.getElementById("view"), map = document.getElementById("map");
let scale = 1, x = 0, y = 0, drag = null;
const place = () => { map.style.transform = `translate(${x}px, ${y}px) scale(${scale})`; };
view.addEventListener("wheel", (e) => {
  e.preventDefault();
  const r = view.getBoundingClientRect(), px = e.clientX - r.left, py = e.clientY - r.top;
  const k = e.deltaY < 0 ? 1.2 : 1 / 1.2;
  x = px - (px - x) * k; y = py - (py - y) * k; scale *= k; place();
}, {passive: false});
view.addEventListener("mousedown", (e) => { drag = [e.clientX - x, e.clientY - y]; });
window.addEventListener("mouseup", () => { drag = null; });
window.addEventListener("mousemove", (e) => { if (drag) { x = e.clientX - drag[0]; y = e.clientY - drag[1]; place(); } });
const esc = (t) => String(t).replace(/[&<>"']/g, (ch) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[ch]));
function show(cell) {
  const c = JSON.parse(cell.dataset.info);
  const classes = c.classes.map((k) => `${esc(k.name || k.index)}: ${(100 * k.probability).toFixed(1)}%`).join("<br>");
  const patches = c.exemplars.map((e) => `<img src="${esc(e.patch)}" title="${esc(e.image)}">`).join("");
  document.getElementById("details").innerHTML = `<img src="${esc(c.image)}" style="width:100%">` +
    `<p>cell ${c.cell[0]}, ${c.cell[1]}: ${c.count} samples<br>${classes}</p><div class="patches">${patches}</div>`;
}
document.querySelectorAll(".cell").forEach((cell) => {
  cell.addEventListener("mouseenter", () => show(cell));
  cell.addEventListener("click", () => show(cell));
});
"""

_ATLAS_STYLE = """
body { font-family: sans-serif; margin: 0; display: flex; height: 100vh; }
#view { flex: 1; overflow: hidden; position: relative; background: #fff; cursor: grab; }
#map { position: absolute; transform-origin: 0 0; }
.cell { position: absolute; width: %dpx; height: %dpx; }
#details { width: 320px; padding: 8px; overflow-y: auto; border-left: 1px solid #ccc; font-size: 13px; }
.patches img { width: 30%%; margin: 1%%; }
""" % (TILE, TILE)


def write_index(out_dir: Path, cells: list[dict], grid: int, layer: str) -> Path:
    esc = html.escape
    tiles = "".join(
        f'<img class="cell" src="{esc(c["image"])}" alt="cell {c["cell"][0]}, {c["cell"][1]}" '
        f'style="left:{c["cell"][0] * TILE}px;top:{(grid - 1 - c["cell"][1]) * TILE}px" '
        f"data-info='{esc(json.dumps(c), quote=True)}'>" for c in cells)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>activation atlas of {esc(layer)}'
            f"</title><style>{_ATLAS_STYLE}</style></head><body>"
            f'<div id="view"><div id="map" style="width:{grid * TILE}px;height:{grid * TILE}px">{tiles}</div></div>'
            f'<div id="details"><h3>Activation atlas of {esc(layer)}</h3><p>{len(cells)} cells of a {grid}×{grid} '
            "grid. Drag to pan, scroll to zoom; hover or click a cell for its count, classes and the exemplar "
            'patches nearest its mean. <a href="cells.json">cells.json</a>, <a href="atlas.png">atlas.png</a>.</p>'
            f"</div><script>{_PAN_ZOOM_SCRIPT}</script></body></html>\n")
    return export.atomic_write(out_dir / "index.html", lambda f: f.write(page), mode="w")
