import json
import re

import numpy as np
import pytest
import torch
from conftest import html_links
from PIL import Image

from phasevis_ext.io.export import (
    class_label,
    contact_sheet,
    display_alpha,
    save_png,
    save_rgba,
    write_gallery,
    write_json,
)
from phasevis_ext.render.objectives import channel, logit
from phasevis_ext.render.results import VisualizationResult


def fake_result(count=3, size=(20, 24)):
    generator = torch.Generator().manual_seed(0)
    alpha_raw = torch.rand(count, 1, *size, generator=generator) * 5
    return VisualizationResult(
        images=torch.rand(count, 3, *size, generator=generator),
        alpha=alpha_raw / alpha_raw.amax(dim=(1, 2, 3), keepdim=True),
        alpha_raw=alpha_raw,
        scores=torch.arange(count, dtype=torch.float32) * 1.5,
        history=torch.zeros(4, count),
        objectives=["logit(1)", "channel(_blocks.15, 3)", "logit(207)"][:count],
        unit_ids=["logit(1)", "channel(_blocks.15, 3)", "logit(207)"][:count],
        units=[logit(1).unit, channel("_blocks.15", 3).unit, logit(207).unit][:count],
        settings={"param": "maco", "steps": 4, "box_size": [0.25, 1.0]},
        seconds=1.25,
    )


def test_save_png_round_trips(tmp_path):
    image = torch.rand(3, 10, 14)
    path = save_png(image, tmp_path / "sub" / "a.png")
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (14, 10)
        decoded = torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(decoded, image, rtol=0, atol=0.5 / 255 + 1e-6)
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temporary file left behind


def test_save_rgba_clips_alpha_at_the_percentile(tmp_path):
    alpha = torch.linspace(0, 1, 100).reshape(1, 10, 10)
    alpha[0, 9, 9] = 1000.0  # one extreme gradient must not make the rest transparent
    path = save_rgba(torch.rand(3, 10, 10), alpha, tmp_path / "a.png", percentile=90.0)
    with Image.open(path) as im:
        assert im.mode == "RGBA" and im.size == (10, 10)
        channel = im.getchannel("A")
        assert channel.getextrema() == (0, 255)
        assert channel.getpixel((5, 5)) > 100
    with pytest.raises(ValueError, match="alpha"):
        save_rgba(torch.rand(3, 10, 10), torch.rand(1, 5, 5), tmp_path / "b.png")


def test_display_alpha():
    alpha = torch.arange(101, dtype=torch.float32)
    shown = display_alpha(alpha, 50.0)
    assert shown.max() == 1 and (shown == 1).sum() == 51
    torch.testing.assert_close(shown[:50], alpha[:50] / 50)
    assert torch.all(display_alpha(torch.zeros(4, 4)) == 1)


def test_contact_sheet(tmp_path):
    images = torch.rand(5, 3, 16, 16)
    sheet = contact_sheet(images, [f"unit {i} with a long label" for i in range(5)], tmp_path / "s.png", cols=2)
    with Image.open(tmp_path / "s.png") as im:
        assert im.mode == "RGB" and im.size == sheet.size
        assert im.size[0] >= 2 * 16 and im.size[0] < 3 * 16 and im.size[1] >= 3 * 16
    with pytest.raises(ValueError, match="labels"):
        contact_sheet(images, ["one"])


@pytest.mark.parametrize("name, kind", [("s.png", "PNG"), ("s.jpg", "JPEG"), ("s.JPEG", "JPEG")])
def test_contact_sheet_format_follows_the_file_name(tmp_path, name, kind):
    contact_sheet(torch.rand(2, 3, 16, 16), path=tmp_path / name)
    with Image.open(tmp_path / name) as im:
        assert im.format == kind


def test_class_label_comes_from_the_objective_not_its_description():
    names = ("tench", "goldfish")
    assert class_label(logit(1).unit, names) == "goldfish"
    assert class_label(logit(5).unit, names) is None
    assert class_label(channel("logit", 1).unit, names) is None  # a layer that happens to be named "logit"
    assert class_label(logit(1).unit, None) is None
    assert class_label((logit(1) + logit(0)).unit, names) is None


def test_write_json(tmp_path):
    result = fake_result()
    data = json.loads(write_json(result, tmp_path / "r.json").read_text())
    assert [u["objective"] for u in data["units"]] == result.objectives
    assert [u["score"] for u in data["units"]] == pytest.approx(result.scores.tolist())
    assert data["settings"] == result.settings and data["seconds"] == 1.25


def test_gallery_is_complete_and_offline(tmp_path):
    result = fake_result()
    index = write_gallery(result, tmp_path / "gallery", class_names=("tench", "goldfish"))
    out = index.parent
    links = html_links(index.read_text())
    assert links
    for link in links:
        assert not re.match(r"^[a-z]+:|^/", link), f"not a relative link: {link}"
        assert (out / link).is_file(), f"missing {link}"
    assert "<script" not in index.read_text() and "stylesheet" not in index.read_text()
    assert "goldfish" in index.read_text()

    data = json.loads((out / "results.json").read_text())
    assert data["units"][0]["class_name"] == "goldfish" and "class_name" not in data["units"][2]
    for unit in data["units"]:
        with Image.open(out / unit["image"]) as im:
            assert im.mode == "RGB" and im.size == (24, 20)
        with Image.open(out / unit["rgba"]) as im:
            assert im.mode == "RGBA" and im.size == (24, 20)
    with Image.open(out / "contact_sheet.png") as im:
        assert im.mode == "RGB"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_gallery_labels_logits_with_imagenet_names_only_for_an_imagenet_classifier(tmp_path):
    result = fake_result()
    result.settings["class_names"] = "imagenet"  # what visualize records for models.has_imagenet_classifier
    text = write_gallery(result, tmp_path / "imagenet").read_text()
    assert "goldfish" in text and "golden retriever" in text
    result.settings["class_names"] = None
    text = write_gallery(result, tmp_path / "other").read_text()
    assert "goldfish" not in text and "golden retriever" not in text


def test_display_stretch_spans_the_range_and_keeps_the_order():
    from phasevis_ext.io.export import display_stretch

    torch.manual_seed(3)
    hazy = 0.35 + 0.3 * torch.rand(3, 40, 40)  # a MACO-like image: never near 0 or 1
    shown = display_stretch(hazy)
    values = shown.flatten()
    assert torch.quantile(values, 0.01) <= 0.01 and torch.quantile(values, 0.99) >= 0.99
    assert shown.min() == 0 and shown.max() == 1
    order = torch.argsort(hazy.flatten())
    assert (values[order].diff() >= -1e-6).all()  # monotone: the stretch changes contrast, not content
    flat = torch.full((3, 8, 8), 0.4)
    assert torch.equal(display_stretch(flat), flat)
    with pytest.raises(ValueError, match="percentile"):
        display_stretch(hazy, 50)


def test_gallery_shows_stretched_images_and_keeps_the_raw_ones(tmp_path):
    result = fake_result()
    result.images = 0.4 + 0.2 * result.images  # hazy
    write_gallery(result, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["display"] == {"stretch_percentile": 1.0, "alpha_percentile": 80.0}
    unit = data["units"][0]
    shown = np.asarray(Image.open(tmp_path / unit["image"])).astype(int)
    raw = np.asarray(Image.open(tmp_path / unit["raw"])).astype(int)
    assert shown.min() == 0 and shown.max() == 255
    expected_raw = (result.images[0].permute(1, 2, 0) * 255).round().numpy().astype(int)
    assert np.abs(raw - expected_raw).max() <= 1
    assert unit["raw"] in (tmp_path / "index.html").read_text()


def test_a_result_shows_itself_in_a_notebook():
    from phasevis_ext import models
    from phasevis_ext.render.visualize import visualize

    net = models.load("efficientnet_lite0", pretrained=False)
    result = visualize(net, ["logit:1", "_blocks.2:3"], steps=2, image_size=32, progress=False)
    page = result._repr_html_()
    assert page.count("data:image/png;base64,") == 4  # each image plain and with its transparency
    assert all(unit_id in page for unit_id in result.unit_ids) and "score" in page
    assert "goldfish" not in page  # random weights: not ImageNet's classes
    figure = result.show(columns=2)
    assert len(figure.axes) == 2 and result.unit_ids[0] in figure.axes[0].get_title()
