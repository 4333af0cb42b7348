"""RenderSettings: the one place of each rendering option, its check, its JSON form and its flag."""
import dataclasses

import pytest
import torch
from test_render import tiny_cnn

import phasevis_ext as pv
from phasevis_ext import cli
from phasevis_ext.checks import InvalidArgument
from phasevis_ext.render.settings import RenderSettings, overrides_from_args


@pytest.mark.parametrize("change, match", [
    (dict(steps=0), "^steps"), (dict(param="vector"), "^param"), (dict(box_size=(0.5, 2)), "^box_size"),
    (dict(noise=-1.0), "^noise"), (dict(seed=1.5), "^seed"), (dict(amp="fast"), "^amp"),
    (dict(image_size=4), "^image_size"), (dict(device="gpu0"), "^device"), (dict(diversity=1.0), "samples >= 2"),
    (dict(diversity_layer="conv1"), "diversity_layer"), (dict(param="pixel", spectrum="imagenet"), "spectrum"),
    (dict(normalize=([0.5], [0.0])), "^normalize"), (dict(batch_size=0), "^batch_size"),
])
def test_each_field_checks_itself_and_names_itself(change, match):
    with pytest.raises(InvalidArgument, match=match):
        RenderSettings(**change)


def test_values_are_normalized_and_unknown_names_refused():
    settings = RenderSettings(image_size=64, box_size=[0.5, 1], spectrum="default")
    assert settings.image_size == (64, 64) and settings.box_size == (0.5, 1.0) and settings.spectrum is None
    with pytest.raises(TypeError, match="stepz"):
        settings.replace(stepz=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.steps = 3


def test_json_form_and_the_differences_a_resume_names(tmp_path):
    spectrum = tmp_path / "mine.npz"
    spectrum.write_bytes(b"any bytes: the digest is of the content")
    settings = RenderSettings(steps=7, spectrum=str(spectrum))
    record = settings.to_json(images_only=True)
    assert record["steps"] == 7 and record["spectrum"]["file"] == "mine.npz" and "batch_size" not in record
    assert settings.differences(record) == []
    other = settings.replace(steps=8, crops=2, batch_size=1)  # batch_size changes no image
    assert other.differences(record) == ["steps (7 there, 8 now)", "crops (3 there, 2 now)"]


def test_every_field_the_command_line_has_is_a_flag_with_its_default_in_the_help():
    parser = cli.build_parser()
    visualize = parser._subparsers._group_actions[0].choices["visualize"]
    flags = {option for action in visualize._actions for option in action.option_strings}
    for field in dataclasses.fields(RenderSettings):
        if field.metadata["flag"]:
            name = field.name.replace("_", "-")
            assert f"--{name}" in flags or f"--no-{name}" in flags, field.name
    args = parser.parse_args(["visualize", "logit:1", "--out", "x", "--steps", "7", "--box-size", "0.5", "1",
                              "--no-fold-batchnorm", "--memory-budget", "0.5", "--amp", "bfloat16"])
    assert overrides_from_args(args) == {"steps": 7, "box_size": (0.5, 1.0), "fold_batchnorm": False,
                                         "memory_budget": 2**29, "amp": "bfloat16"}
    assert overrides_from_args(parser.parse_args(["visualize", "logit:1", "--out", "x"])) == {}


def test_visualize_takes_settings_or_overrides_alike():
    model = tiny_cnn()
    fast = dict(steps=3, image_size=32, input_size=24, crops=2)
    by_keywords = pv.visualize(model, "conv2:0-1", progress=False, **fast)
    by_object = pv.visualize(model, "conv2:0-1", RenderSettings(**fast), progress=False)
    mixed = pv.visualize(model, "conv2:0-1", RenderSettings(steps=3, crops=2), progress=False, image_size=32,
                         input_size=24)
    assert torch.equal(by_keywords.images, by_object.images) and torch.equal(by_keywords.images, mixed.images)
    assert by_object.settings["steps"] == 3 and by_object.settings["lr"] == 1.0  # resolved: maco's rate


def test_resolved_settings_are_concrete():
    resolved = RenderSettings(steps=2).resolved_for(tiny_cnn())
    assert resolved.device == torch.device("cpu") and resolved.lr == 1.0 and resolved.channels == 3
    assert resolved.input_size == 224 and resolved.channels_last is True and resolved.model_batch == 16
    assert RenderSettings(input_size=160).resolved_for(tiny_cnn()).model_batch == 32
    assert RenderSettings(input_size=1024).resolved_for(tiny_cnn()).model_batch == 1
    assert {"magnitude", "color_matrix"} <= set(resolved.param_kwargs)
