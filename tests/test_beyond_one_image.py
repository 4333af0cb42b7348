"""Several images per unit (samples, diversity), feature accentuation and feature inversion:
shapes, batching independence, samples=1 as before, gradients that do what they say, and clear
errors for bad input."""
import math

import pytest
import torch
from torch import nn

from phasevis_ext import cli
from phasevis_ext.checks import InvalidArgument
from phasevis_ext.guided.accentuation import accentuate, seeded_param
from phasevis_ext.guided.inversion import invert, similarity
from phasevis_ext.io import export
from phasevis_ext.render.diversity import gram_similarity
from phasevis_ext.render.visualize import visualize

OPTIONS = dict(steps=4, input_size=24, crops=2, progress=False, device="cpu")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(3, 8, 3, padding=1))
    net.add_module("relu1", nn.ReLU())
    net.add_module("conv2", nn.Conv2d(8, 8, 3, padding=1))
    net.add_module("relu2", nn.ReLU())
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(8, 5))
    return net.eval()


@pytest.fixture(scope="module")
def photos():
    g = torch.Generator().manual_seed(1)
    smooth = nn.functional.avg_pool2d(torch.rand(3, 3, 36, 36, generator=g), 5, stride=1)
    return smooth.clamp(0.02, 0.98)


# --- samples and diversity -----------------------------------------------------------------------


def test_samples_shapes_and_samples_1_is_the_single_image(model):
    one = visualize(model, "conv2:0-2", image_size=32, **OPTIONS)
    many = visualize(model, "conv2:0-2", image_size=32, samples=3, **OPTIONS)
    assert many.images.shape == (3, 3, 3, 32, 32) and many.alpha.shape == (3, 3, 1, 32, 32)
    assert many.scores.shape == (3, 3) and many.history.shape == (4, 3, 3) and many.samples == 3
    assert torch.equal(many.images[:, 0], one.images)  # sample 0 is samples=1's image, bit for bit
    assert not torch.equal(many.images[:, 1], many.images[:, 0])  # the others start elsewhere
    assert len(many) == 3 and many.objectives == one.objectives


def test_diversity_changes_a_units_samples_but_no_other_unit(model):
    kwargs = dict(image_size=32, samples=3, diversity=5.0, **OPTIONS)
    three = visualize(model, "conv2:0-2", batch_size=9, **kwargs)
    alone = visualize(model, "conv2:1", **kwargs)
    torch.testing.assert_close(alone.images[0], three.images[1], atol=1e-5, rtol=0)
    plain = visualize(model, "conv2:0-2", image_size=32, samples=3, **OPTIONS)
    assert not torch.allclose(plain.images, three.images)
    # The term moves every sample, the first too: sample 0 is samples=1's image only without it.
    for unit in range(3):
        assert not torch.allclose(three.images[unit, 0], plain.images[unit, 0], atol=1e-4, rtol=0)


def test_diversity_term_pushes_samples_apart(model):
    """Optimizing the diversity term alone lowers the samples' Gram similarity."""
    kwargs = dict(image_size=32, samples=3, input_size=24, crops=2, progress=False)
    def similarity_of(result):
        acts = {}
        hook = model.conv2.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
        model(nn.functional.interpolate(result.images[0], size=24))
        hook.remove()
        return gram_similarity(acts["a"], 1, 3).item()

    objective = "conv2:0"
    pushed = visualize(model, objective, steps=30, diversity=50.0, lr=0.2, **kwargs)
    free = visualize(model, objective, steps=30, lr=0.2, **kwargs)
    assert similarity_of(pushed) < similarity_of(free)


def test_gram_similarity_of_identical_samples_is_one_and_groups_stay_apart():
    act = torch.rand(2, 4, 5, 5).repeat_interleave(2, 0)  # 2 groups x 2 samples, 1 crop each, equal pairs
    torch.testing.assert_close(gram_similarity(act, 1, 2), torch.ones(2))
    act = torch.randn(12, 4, 5, 5, requires_grad=True)  # 2 groups x 3 samples x 2 crops
    gram_similarity(act, 2, 3)[0].backward()
    assert act.grad[6:].abs().sum() == 0 and act.grad[:6].abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(samples=0), "samples"), (dict(samples=2, diversity=-1.0), "diversity"),
    (dict(diversity=1.0), "samples >= 2"), (dict(samples=2, diversity_layer="conv1"), "diversity_layer"),
    (dict(samples=2, diversity=1.0, diversity_layer="nope"), "unknown layer"),
])
def test_bad_samples_and_diversity(model, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        visualize(model, "conv2:0", image_size=32, **{**OPTIONS, **kwargs})


def test_diversity_of_logits_needs_a_layer(model):
    with pytest.raises(InvalidArgument, match="diversity_layer"):
        visualize(model, "logit:1", image_size=32, samples=2, diversity=1.0, **OPTIONS)
    result = visualize(model, "logit:1", image_size=32, samples=2, diversity=1.0, diversity_layer="conv2", **OPTIONS)
    assert result.images.shape[:2] == (1, 2)


def test_gallery_shows_every_sample(model, tmp_path):
    result = visualize(model, "conv2:0-1", image_size=32, samples=2, **OPTIONS)
    export.write_gallery(result, tmp_path)
    assert {p.name for p in tmp_path.glob("unit_*_s?.png")} == {f"unit_000{u}_s{s}.png" for u in (0, 1)
                                                                 for s in (0, 1)}
    data = __import__("json").loads((tmp_path / "results.json").read_text())
    assert [(u["index"], u["sample"]) for u in data["units"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]


# --- accentuation --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, magnitude", [("maco", "photo"), ("fourier", "photo")])
def test_the_start_is_the_photo(photos, kind, magnitude):
    param = seeded_param(kind, photos, magnitude=magnitude, natural=None, color_matrix=None)
    torch.testing.assert_close(param(), photos, atol=1e-3, rtol=0)


def test_accentuate_shapes_seeds_and_a_rising_score(model, photos):
    # fp32: every one of 12 steps' scores is compared (test_amp.py has bf16's own version)
    result = accentuate(model, photos, "logit:3", steps=12, penalty=0.0, amp="none",
                        **{k: v for k, v in OPTIONS.items() if k != "steps"})
    assert result.images.shape == photos.shape and result.seeds.shape == photos.shape
    torch.testing.assert_close(result.seeds, photos, atol=1e-4, rtol=0)
    assert torch.equal(result.photos, photos)
    assert result.history.shape == (12, 3)
    assert (result.history[-1] > result.history[0]).all()


def test_penalty_keeps_the_image_near_its_seed(model, photos):
    options = {k: v for k, v in OPTIONS.items() if k != "steps"}
    free = accentuate(model, photos, "logit:3", steps=10, penalty=0.0, **options)
    held = accentuate(model, photos, "logit:3", steps=10, penalty=1e4, **options)
    distance = lambda r: (r.images - r.seeds).pow(2).mean().item()  # noqa: E731
    assert distance(held) < distance(free)
    at_layer = accentuate(model, photos, "logit:3", steps=10, penalty=1e4, reg_layer="conv1", **options)
    assert torch.isfinite(at_layer.scores).all()


@pytest.mark.parametrize("reg_layer", [None, "conv1"])
def test_accentuation_is_the_same_when_the_model_runs_in_several_passes(model, photos, reg_layer):
    # model_batch=2 (the crops of one photo) splits every step into three passes; the pixel
    # penalty reads the images, which then need their own detached copy.
    one = accentuate(model, photos, "logit:3", penalty=10.0, reg_layer=reg_layer, **OPTIONS)
    passes = accentuate(model, photos, "logit:3", penalty=10.0, reg_layer=reg_layer, model_batch=2, **OPTIONS)
    torch.testing.assert_close(passes.images, one.images, atol=1e-5, rtol=0)
    torch.testing.assert_close(passes.alpha, one.alpha, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("reg_layer, weight", [(None, 100.0), ("conv1", 10.0)])
def test_the_default_penalty_depends_on_where_it_is_measured(model, photos, reg_layer, weight):
    default = accentuate(model, photos, "logit:3", reg_layer=reg_layer, **OPTIONS)
    explicit = accentuate(model, photos, "logit:3", reg_layer=reg_layer, penalty=weight, **OPTIONS)
    other = accentuate(model, photos, "logit:3", reg_layer=reg_layer, penalty=weight / 10, **OPTIONS)
    assert torch.equal(default.images, explicit.images) and not torch.equal(default.images, other.images)


def test_accentuation_is_independent_of_the_batch(model, photos):
    together = accentuate(model, photos, ["logit:1", "logit:2", "logit:3"], reg_layer="conv1", **OPTIONS)
    alone = accentuate(model, photos[1:2], "logit:2", unit_ids=[together.unit_ids[1]], reg_layer="conv1", **OPTIONS)
    torch.testing.assert_close(alone.images[0], together.images[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("images, kwargs, match", [
    (lambda p: p * 2, {}, r"\[0, 1\]"),
    (lambda p: p[:, :, :30], dict(image_size=36), "image_size"),
    (lambda p: p[:, :1], {}, "channels"),
    (lambda p: (p * 255).to(torch.uint8), {}, "floating point"),
    (lambda p: p[0], {}, r"\(N, C, H, W\)"),
    (lambda p: p, dict(reg_layer="nope"), "unknown layer"),
    (lambda p: p, dict(penalty=-1.0), "penalty"),
    (lambda p: p, dict(param="pixel"), "param"),
    (lambda p: p, dict(magnitude="flat"), "magnitude"),
])
def test_bad_accentuation_input(model, photos, images, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        accentuate(model, images(photos), "logit:1", **{**OPTIONS, **kwargs})


def test_one_objective_per_image_or_one_for_all(model, photos):
    with pytest.raises(InvalidArgument, match="one per image"):
        accentuate(model, photos, ["logit:1", "logit:2"], **OPTIONS)


# --- inversion -----------------------------------------------------------------------------------


def test_invert_raises_the_similarity_to_the_photo(model, photos):
    options = {k: v for k, v in OPTIONS.items() if k != "steps"}
    result = invert(model, photos, "conv2", steps=15, lr=0.3, **options)
    assert result.images.shape == photos.shape and torch.equal(result.photos, photos)
    assert (result.history[-1] > result.history[0]).all()
    assert ((-1 <= result.scores) & (result.scores <= 1)).all()


def test_inversion_is_independent_of_the_batch(model, photos):
    together = invert(model, photos, "conv2", **OPTIONS)
    alone = invert(model, photos[2:], "conv2", unit_ids=[together.unit_ids[2]], **OPTIONS)
    torch.testing.assert_close(alone.images[0], together.images[2], atol=1e-5, rtol=0)


def test_similarities():
    a = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(similarity(a, a, 2, "cosine"), torch.ones(3))
    torch.testing.assert_close(similarity(a, 2 * a, 3, "cosine"), torch.ones(2))
    assert similarity(a, a, 2, "l2").abs().max() == 0
    assert (similarity(a, -a, 2, "cosine") + 1).abs().max() < 1e-6
    assert math.isclose(similarity(a, 2 * a, 6, "l2").item(), -0.25, rel_tol=1e-5)


@pytest.mark.parametrize("layer, kwargs, match", [
    ("nope", {}, "unknown layer"), ("conv2", dict(similarity_kind="dot"), "similarity_kind"),
    ("", {}, "layer"), ("conv2", dict(samples=2), "visualize only"),
])
def test_bad_inversion_input(model, photos, layer, kwargs, match):
    with pytest.raises(InvalidArgument, match=match):
        invert(model, photos, layer, **{**OPTIONS, **kwargs})


# --- command line --------------------------------------------------------------------------------


def test_command_line_accentuate_and_invert(model, photos, tmp_path, monkeypatch):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, p in enumerate(photos):
        Image.fromarray((p.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(folder / f"{i}.png")
    monkeypatch.setattr(cli, "load_model", lambda args, device=None: model)
    common = ["--images", str(folder), "--steps", "2", "--image-size", "32", "--input-size", "24", "--crops", "1",
              "--no-progress"]
    assert cli.main(["accentuate", "logit:1", "--out", str(tmp_path / "acc"), *common]) == 0
    assert (tmp_path / "acc" / "unit_0002_seed.png").exists() and (tmp_path / "acc" / "unit_0002_photo.png").exists()
    assert cli.main(["invert", "conv2", "--out", str(tmp_path / "inv"), *common]) == 0
    assert (tmp_path / "inv" / "unit_0000_photo.png").exists() and not (tmp_path / "inv" / "unit_0000_seed.png").exists()
    assert cli.main(["invert", "nope", "--out", str(tmp_path / "bad"), *common]) == 2
    assert cli.main(["accentuate", "logit:1", "--out", str(tmp_path / "bad"), "--images", str(tmp_path / "none"),
                     "--no-progress"]) == 2


def test_atlas_stores_every_sample(model, tmp_path):
    import json

    from phasevis_ext import atlas

    atlas.run(model, tmp_path, layers="conv2", channels="0:2", image_size=32, input_size=24, steps=2, crops=1,
              samples=3, progress=False, device="cpu")
    entries = json.loads((tmp_path / "index.json").read_text())
    entries = entries["units"] if isinstance(entries, dict) else entries
    assert len(entries) == 2
    for entry in entries:
        assert len(entry["scores"]) == 3 and math.isclose(entry["score"], sum(entry["scores"]) / 3, rel_tol=1e-6)
        for j in (1, 2):
            assert (tmp_path / entry["files"][f"sample{j}_image"]).exists()
    assert "sample" in (tmp_path / "layer-conv2.html").read_text()
