import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from phasevis_ext import models
from phasevis_ext.checks import InvalidArgument
from phasevis_ext.model.activations import capture
from phasevis_ext.param.parameterizations import make_param
from phasevis_ext.render.crops import eval_crops, random_crops
from phasevis_ext.render.loop import ChunkRun
from phasevis_ext.render.objectives import batched_score, channel, logit, objective, parse_targets
from phasevis_ext.render.results import VisualizationResult, default_unit_ids, unit_seed
from phasevis_ext.render.visualize import visualize

FAST = dict(image_size=32, input_size=24, steps=5, crops=2, progress=False)


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 8, 3, padding=1), relu1=nn.ReLU(),
        conv2=nn.Conv2d(8, 16, 3, stride=2, padding=1), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(16, 10),
    )).eval()


def no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


@pytest.mark.parametrize("param", ["maco", "fourier", "pixel"])
def test_result_shapes_and_ranges(model, param):
    objectives = [logit(1), channel("conv2", 3), channel("relu1", 0)]
    result = visualize(model, objectives, param=param, **FAST)
    assert isinstance(result, VisualizationResult) and len(result) == 3
    assert result.images.shape == (3, 3, 32, 32) and result.images.device.type == "cpu"
    assert result.images.min() >= 0 and result.images.max() <= 1 and not result.images.requires_grad
    assert result.alpha.shape == result.alpha_raw.shape == (3, 1, 32, 32)
    assert result.alpha.min() >= 0
    torch.testing.assert_close(result.alpha.amax(dim=(1, 2, 3)), torch.ones(3))
    torch.testing.assert_close(result.alpha * result.alpha_raw.amax(dim=(1, 2, 3), keepdim=True), result.alpha_raw)
    assert result.scores.shape == (3,) and result.history.shape == (5, 3)
    assert result.objectives == ["logit(1)", "channel(conv2, 3)", "channel(relu1, 0)"]
    assert result.unit_ids == result.objectives
    assert result.seconds > 0
    json.dumps(result.settings)
    assert result.settings["param"] == param and result.settings["steps"] == 5


def test_scores_are_the_objectives_on_the_final_images_over_the_eval_crops(model):
    objectives = [logit(2), channel("conv2", 5)]
    result = visualize(model, objectives, box_size=(0.5, 1.0), amp="none", **FAST)  # fp32, as the check below
    crops = eval_crops(result.images, 24, (0.5, 1.0))
    with capture(model, ["conv2"], need_logits=True) as cap, torch.no_grad():
        expected = batched_score(objectives, cap.run(crops), crops.shape[0] // 2)
    torch.testing.assert_close(result.scores, expected, rtol=1e-4, atol=1e-5)


def test_same_seed_same_result_other_seed_other_result(model):
    objectives = parse_targets("conv2:0-1")
    a = visualize(model, objectives, noise=0.05, **FAST)
    b = visualize(model, objectives, noise=0.05, **FAST)
    c = visualize(model, objectives, noise=0.05, seed=1, **FAST)
    assert torch.equal(a.images, b.images) and torch.equal(a.history, b.history)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.alpha_raw, b.alpha_raw)
    assert not torch.allclose(a.images, c.images)


def test_a_unit_does_not_depend_on_its_batch(model):
    target = channel("conv2", 7)
    alone = visualize(model, [target], noise=0.05, batch_size=1, **FAST)
    # other units with other objectives (one needs the logits, so the forward pass no longer stops early)
    batched = visualize(model, [logit(3), target, channel("relu1", 2)], noise=0.05, batch_size=3, **FAST)
    other = visualize(model, [logit(5), target], noise=0.05, batch_size=8, **FAST)
    for result, index in ((batched, 1), (other, 1)):
        torch.testing.assert_close(result.images[index], alone.images[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(result.history[:, index], alone.history[:, 0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(result.scores[index], alone.scores[0], rtol=1e-5, atol=1e-6)


def test_batch_size_does_not_change_the_result(model):
    objectives = [logit(0), logit(1), channel("conv2", 1)]
    one = visualize(model, objectives, batch_size=1, **FAST)
    two = visualize(model, objectives, batch_size=2, **FAST)
    torch.testing.assert_close(one.images, two.images, rtol=0, atol=1e-6)
    torch.testing.assert_close(one.alpha, two.alpha, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model_batch", [1, 4, 5])
def test_model_passes_do_not_change_the_result(model, model_batch):
    # 3 units x 2 crops in passes of 1 unit (model_batch 1 and 2 round to whole units), 2 units and 2 + 1
    objectives = [logit(0), channel("conv2", 1), logit(7)]
    whole = visualize(model, objectives, batch_size=3, model_batch=64, **FAST)
    split = visualize(model, objectives, batch_size=3, model_batch=model_batch, **FAST)
    torch.testing.assert_close(split.images, whole.images, rtol=0, atol=1e-6)
    torch.testing.assert_close(split.alpha_raw, whole.alpha_raw, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(split.scores, whole.scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(split.history, whole.history, rtol=1e-5, atol=1e-6)
    assert split.settings["model_batch"] == model_batch


@pytest.mark.parametrize("units, samples, model_batch, passes", [
    (8, 1, 6, [6, 6, 6, 6]),    # 3 crops a unit: at most 2 units a pass
    (8, 1, 10, [9, 9, 6]),      # at most 3 units: 3 + 3 + 2, not fewer in the last pass alone
    (8, 1, 16, [12, 12]),       # the demo's 8 units under the default budget at 224²: 4 + 4, not 5 + 3
    (7, 1, 16, [12, 9]),        # at most 5 units: 4 + 3, not 5 + 2
    (4, 2, 17, [12, 12]),       # 2 samples of 3 crops a unit: whole units, 2 a pass (not 5 samples)
    (3, 1, 64, [9]),
])
def test_model_passes_are_of_equal_size(model, monkeypatch, units, samples, model_batch, passes):
    seen = []
    model_acts = ChunkRun.model_acts
    monkeypatch.setattr(ChunkRun, "model_acts", lambda run, crops: seen.append(crops.shape[0]) or model_acts(run, crops))
    visualize(model, [logit(i) for i in range(units)], batch_size=units * samples, samples=samples,
              model_batch=model_batch, **{**FAST, "crops": 3, "steps": 1})
    assert seen[:len(passes)] == passes


def test_a_units_gradient_ignores_the_other_units_objectives(model):
    def unit_gradients(objectives):
        generators = [torch.Generator().manual_seed(unit_seed(0, f"unit{i}")) for i in range(2)]
        param = make_param("maco", 2, 32, generators=generators)
        crops = random_crops(param(), 3, 24, generators=generators, noise=0.05)
        with capture(model, ["conv2"], need_logits=True) as cap:
            (-batched_score(objectives, cap.run(crops), 3).sum()).backward()
        return param.param.grad

    first = unit_gradients([logit(1), channel("conv2", 0)])
    second = unit_gradients([logit(1), logit(9)])
    torch.testing.assert_close(first[0], second[0], rtol=1e-5, atol=1e-7)
    assert not torch.allclose(first[1], second[1])


def test_duplicate_objectives_get_distinct_ids_and_images(model):
    assert default_unit_ids([logit(1), logit(2), logit(1)]) == ["logit(1)#0", "logit(2)", "logit(1)#2"]
    result = visualize(model, [logit(1), logit(1)], **FAST)
    assert result.unit_ids == ["logit(1)#0", "logit(1)#1"]
    assert not torch.allclose(result.images[0], result.images[1])


def test_explicit_unit_ids_seed_the_units(model):
    a = visualize(model, [logit(1), logit(2)], unit_ids=["x", "y"], **FAST)
    b = visualize(model, [logit(2)], unit_ids=["y"], **FAST)
    torch.testing.assert_close(a.images[1], b.images[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="unit_ids"):
        visualize(model, [logit(1), logit(2)], unit_ids=["x", "x"], **FAST)
    with pytest.raises(ValueError, match="unit_ids"):
        visualize(model, [logit(1), logit(2)], unit_ids=["x"], **FAST)


def test_hooks_removed_and_model_restored_also_on_error():
    model = tiny_cnn().train()
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.warns(UserWarning, match="train mode"):
        visualize(model, [logit(1), channel("conv1", 0)], **FAST)
    assert no_hooks(model) and model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())

    @objective
    def explode(acts, layer):
        raise RuntimeError("objective failed")

    model.eval()
    with pytest.raises(RuntimeError, match="objective failed"):
        visualize(model, [explode("conv2")], **FAST)
    assert no_hooks(model) and not model.training
    assert [p.requires_grad for p in model.parameters()] == flags


def test_callback_every_k_steps(model):
    calls = []

    def record(step, images, scores):
        calls.append((step, images.shape, scores.shape, images.requires_grad))

    visualize(model, [logit(1), logit(2), logit(3)], callback=record, callback_every=3,
              batch_size=2, **{**FAST, "steps": 7})
    # two chunks (2 units, then 1), each calling at steps 3 and 6
    assert [c[0] for c in calls] == [3, 6, 3, 6]
    assert calls[0][1:] == ((2, 3, 32, 32), (2,), False)
    assert calls[2][1:] == ((1, 3, 32, 32), (1,), False)


def test_normalize_is_applied_to_the_crops():
    model = tiny_cnn()
    seen = []
    model.conv1.register_forward_pre_hook(lambda _m, args: seen.append(args[0].min().item()))
    visualize(model, [channel("conv1", 0)], noise=0.0, **FAST)
    assert min(seen) >= 0
    seen.clear()
    result = visualize(model, [channel("conv1", 0)], noise=0.0, normalize=((0.5,) * 3, (0.25,) * 3), **FAST)
    assert min(seen) < 0
    assert result.settings["normalize"] == [[0.5] * 3, [0.25] * 3]


def test_amp_bfloat16_runs(model):
    result = visualize(model, [logit(1)], amp=torch.bfloat16, **FAST)
    assert torch.isfinite(result.images).all() and result.scores.dtype == torch.float32
    assert result.settings["amp"] == "bfloat16"


def test_objectives_as_strings_and_single_objective(model):
    assert visualize(model, "conv2:3-4", **FAST).objectives == ["channel(conv2, 3)", "channel(conv2, 4)"]
    assert visualize(model, logit(0), **FAST).objectives == ["logit(0)"]


@pytest.mark.parametrize("options, name", [
    (dict(steps=0), "steps"), (dict(batch_size=0), "batch_size"), (dict(crops=0), "crops"),
    (dict(box_size=(0.5, 0.2)), "box_size"), (dict(box_size=(0.0, 1.0)), "box_size"),
    (dict(param="wavelet"), "param"), (dict(lr=0.0), "lr"), (dict(noise=-0.1), "noise"),
    (dict(image_size=4), "image_size"), (dict(input_size=0), "input_size"),
    (dict(callback_every=0), "callback_every"), (dict(optimizer="sgd"), "optimizer"),
    (dict(amp=torch.float64), "amp"), (dict(normalize=((0.5,), (0.0,))), "normalize"),
    (dict(model_batch=0), "model_batch"), (dict(model_batch=2.5), "model_batch"),
])
def test_option_validation(model, options, name):
    with pytest.raises(ValueError, match=name):
        visualize(model, [logit(1)], **{**FAST, **options})
    assert no_hooks(model)


def test_optimizer_callable(model):
    result = visualize(model, [logit(1)], optimizer=torch.optim.SGD, lr=0.1, **FAST)
    assert result.settings["optimizer"] == "SGD"


def test_lite0_logit_rises():
    model = models.load("efficientnet_lite0")
    hooks_before = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    result = visualize(model, [logit(1)], image_size=128, steps=20, crops=2, progress=False)
    start = result.history[0, 0].item()
    assert result.history[-3:, 0].mean().item() > start + 5
    assert result.scores[0].item() > start + 5
    assert [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()] == hooks_before
    assert result.settings["input_size"] == 224


def test_cli_passes_the_model_pass_options():
    from phasevis_ext.cli import build_parser, render_overrides

    base = ["visualize", "logit:1", "--out", "unused", "--device", "cpu"]
    kwargs = render_overrides(build_parser().parse_args(base + ["--model-batch", "6", "--no-fold-batchnorm"]))
    assert kwargs["model_batch"] == 6 and kwargs["fold_batchnorm"] is False
    defaults = render_overrides(build_parser().parse_args(base))
    assert "model_batch" not in defaults and "fold_batchnorm" not in defaults


def test_cosine_schedule_decays_the_learning_rate(model):
    from phasevis_ext.render.settings import LR_SCHEDULES

    cosine = LR_SCHEDULES["cosine"]
    assert cosine(0, 10) == 1.0 and abs(cosine(10, 10)) < 1e-12 and 0 < cosine(5, 10) < 1
    objectives = [channel("conv2", 0)]
    constant = visualize(model, objectives, lr_schedule="constant", **FAST)
    decayed = visualize(model, objectives, **FAST)
    # cosine is MACO's default, constant the others'
    assert decayed.settings["lr_schedule"] == "cosine" and constant.settings["lr_schedule"] == "constant"
    assert visualize(model, objectives, param="fourier", **FAST).settings["lr_schedule"] == "constant"
    # The first step is taken at the full rate either way; the later ones are smaller.
    assert not torch.equal(constant.images, decayed.images)
    with pytest.raises(InvalidArgument, match="lr_schedule"):
        visualize(model, objectives, lr_schedule="linear", **FAST)


def test_shrinking_boxes_slide_from_the_upper_to_the_lower_half_of_the_range(model):
    from phasevis_ext.render.settings import BOX_SCHEDULES

    shrink = BOX_SCHEDULES["shrink"]
    assert shrink((0.2, 1.0), 0, 9) == pytest.approx((0.6, 1.0))
    assert shrink((0.2, 1.0), 8, 9) == pytest.approx((0.2, 0.6))
    assert shrink((0.2, 1.0), 4, 9) == pytest.approx((0.4, 0.8))
    assert BOX_SCHEDULES["constant"]((0.2, 1.0), 4, 9) == (0.2, 1.0)
    objectives = [channel("conv2", 0)]
    constant = visualize(model, objectives, **FAST)
    shrinking = visualize(model, objectives, box_schedule="shrink", **FAST)
    assert shrinking.settings["box_schedule"] == "shrink" and constant.settings["box_schedule"] == "constant"
    assert not torch.equal(constant.images, shrinking.images)
    with pytest.raises(InvalidArgument, match="box_schedule"):
        visualize(model, objectives, box_schedule="grow", **FAST)
