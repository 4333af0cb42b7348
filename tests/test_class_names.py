"""Names of logits: ImageNet's only for ImageNet classifiers, any model's from a file."""
import json

import pytest
import torch
from support.atlas_worker import OPTIONS, tiny_model

import phasevis_ext as pv
from phasevis_ext import atlas, models
from phasevis_ext.checks import InvalidArgument
from phasevis_ext.io.class_names import class_names_for, read_class_names
from phasevis_ext.io.export import write_gallery
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES


def test_names_from_lines_or_a_json_list(tmp_path):
    (tmp_path / "lines.txt").write_text("cat\n dog \nbird\n\n")
    (tmp_path / "list.json").write_text('["cat", "dog", "bird"]')
    assert read_class_names(tmp_path / "lines.txt") == read_class_names(tmp_path / "list.json") == ("cat", "dog", "bird")
    for name, text, match in [("gap.txt", "cat\n\ndog\n", "blank line"), ("empty.txt", "\n", "no names"),
                              ("bad.json", "[1, 2]", "list of strings"), ("broken.json", "[\"a\",", "not one")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(InvalidArgument, match=match):
            read_class_names(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="class_names"):
        read_class_names(tmp_path / "nope.txt")


def test_only_an_imagenet_head_gets_imagenet_names(tmp_path):
    lite = models.load("efficientnet_lite0")
    assert models.has_imagenet_classifier(lite)
    assert class_names_for(lite, None, 1000) is IMAGENET_CLASSES
    for other in (models.load("efficientnet_lite0", pretrained=False),
                  models.load("torchvision:resnet18", pretrained=False),
                  models.load("torchvision:resnet18", pretrained=False, num_classes=10), tiny_model()):
        assert not models.has_imagenet_classifier(other)
        assert class_names_for(other, None, 1000) is None
    torch.save(models.load("torchvision:resnet18", pretrained=False).state_dict(), tmp_path / "mine.pt")
    own = models.load("torchvision:resnet18", weights=tmp_path / "mine.pt")  # the user's weights: any dataset
    assert not models.has_imagenet_classifier(own)
    with pytest.raises(InvalidArgument, match="has 3 names but the model has 5 logits"):
        class_names_for(tiny_model(), ["a", "b", "c"], 5)


def test_the_gallery_names_imagenet_classes_for_lite0_and_not_for_a_10_class_head(tmp_path):
    fast = dict(steps=1, image_size=16, input_size=32, crops=1, progress=False)
    lite = pv.visualize(models.load("efficientnet_lite0"), "logit:3", **fast)
    write_gallery(lite, tmp_path / "lite")
    assert json.loads((tmp_path / "lite" / "results.json").read_text())["units"][0]["class_name"] == "tiger shark"
    small = pv.visualize(tiny_model(), "logit:3", **{**fast, "input_size": 24})
    write_gallery(small, tmp_path / "small")
    assert "class_name" not in json.loads((tmp_path / "small" / "results.json").read_text())["units"][0]


def test_the_atlas_labels_logits_from_class_names_and_relabels_on_resume(tmp_path):
    out = tmp_path / "atlas"
    with pytest.raises(InvalidArgument, match="has 2 names but the model has 5 logits"):
        atlas.run(tiny_model(), out, logits=":", class_names=["a", "b"], progress=False, **{**OPTIONS, "steps": 1})
    names = [f"kind {i}" for i in range(5)]
    atlas.run(tiny_model(), out, logits=":", class_names=names, progress=False, **{**OPTIONS, "steps": 1})
    index = json.loads((out / "index.json").read_text())
    assert [u["label"] for u in index["units"]] == names
    assert "kind 3" in (out / "layer-logits.html").read_text()
    renamed = [f"sort {i}" for i in range(5)]
    result = atlas.run(tiny_model(), out, logits=":", class_names=renamed, progress=False, **{**OPTIONS, "steps": 1})
    assert result.skipped == 5
    assert [u["label"] for u in json.loads((out / "index.json").read_text())["units"]] == renamed
    plain = atlas.run(tiny_model(), tmp_path / "plain", logits=":", progress=False, **{**OPTIONS, "steps": 1})
    assert plain.rendered == 5
    assert [u["label"] for u in json.loads((tmp_path / "plain" / "index.json").read_text())["units"]] == [None] * 5
