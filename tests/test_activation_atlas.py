"""The activation atlas on planted detectors (a red and a blue one): its cells, files, page and
bad input."""
import json

import pytest
import torch
from support.planted import planted, write_images

from phasevis_ext import cli
from phasevis_ext.activation_atlas import activation_atlas
from phasevis_ext.checks import InvalidArgument

pytest.importorskip("umap")
RENDER = dict(steps=2, image_size=32, input_size=32)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    write_images(folder, {f"{c}{i}.png": (c, 0.3 + 0.1 * i) for c in ("red", "blue") for i in range(4)})
    return folder


def test_cells_are_rendered_and_described(photos, tmp_path):
    result = activation_atlas(planted(), photos, tmp_path, layer="detect", grid=3, min_count=2, samples=400,
                              input_size=32, workers=0, progress=False, render=RENDER)
    data = json.loads((tmp_path / "cells.json").read_text())
    assert data["cells"] == result.cells and 1 <= len(result.cells) <= 9
    assert sum(c["count"] for c in result.cells) <= 400
    for cell in result.cells:
        assert (tmp_path / cell["image"]).is_file() and cell["count"] >= 2
        assert 1 <= len(cell["exemplars"]) <= 3 and all((tmp_path / e["patch"]).is_file() for e in cell["exemplars"])
        assert [c["index"] for c in cell["classes"]] and cell["classes"][0]["name"] is None  # no class names known
    from PIL import Image

    with Image.open(tmp_path / "atlas.png") as atlas:
        assert atlas.size == (3 * 96, 3 * 96)
    page = (tmp_path / "index.html").read_text()
    assert page.count('class="cell"') == len(result.cells) and "http" not in page
    assert "data:image/png;base64," in result._repr_html_()
    # The samples are kept: another grid reuses them.
    stamp = (tmp_path / "samples.pt").stat().st_mtime_ns
    again = activation_atlas(planted(), photos, tmp_path, layer="detect", grid=2, min_count=2, samples=400,
                             input_size=32, workers=0, progress=False, render=RENDER)
    assert (tmp_path / "samples.pt").stat().st_mtime_ns == stamp and again.grid == 2


def test_a_grid_too_fine_for_the_samples_is_refused(photos, tmp_path):
    with pytest.raises(InvalidArgument, match="coarser --grid"):
        activation_atlas(planted(), photos, tmp_path, layer="detect", grid=50, min_count=20, samples=60,
                         input_size=32, workers=0, progress=False, render=RENDER)
    with pytest.raises(InvalidArgument, match="min_count"):
        activation_atlas(planted(), photos, tmp_path, layer="detect", samples=2, min_count=3)
    with pytest.raises(InvalidArgument, match="at least 16"):
        activation_atlas(planted(), photos, tmp_path / "few", layer="pool", samples=8, min_count=1, input_size=32,
                         workers=0, progress=False, render=RENDER)


@pytest.mark.parametrize("case", ["layer", "empty", "grid"])
def test_bad_input_exits_2_with_one_line(case, photos, tmp_path, capsys):
    folder = photos
    if case == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    argv = ["activation-atlas", "--images", str(folder), "--layer", "nowhere" if case == "layer" else "detect",
            "--model", f"{cli.__file__.rsplit('/', 2)[0]}/../tests/support/planted.py:planted", "--out",
            str(tmp_path / "out"), "--no-progress", "--grid", "0" if case == "grid" else "3"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("phasevis: error:"), err
    torch.manual_seed(0)
