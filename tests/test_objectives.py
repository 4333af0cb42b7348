from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn

from phasevis_ext.model.activations import LOGITS, as_bchw, capture
from phasevis_ext.render.objectives import (
    Objective,
    batched_score,
    channel,
    direction,
    layer,
    logit,
    neuron,
    objective,
    parse_target,
    parse_targets,
)


def random_acts(rows: int, *, requires_grad: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = {"conv": (8, 5, 5), "deep": (6, 3, 4), "tokens": (17, 12), LOGITS: (10,)}
    return {name: torch.randn(rows, *shape, generator=generator).requires_grad_(requires_grad)
            for name, shape in shapes.items()}


@objective
def channel_max(acts, layer, c):
    return as_bchw(acts[layer])[:, c].amax(dim=(1, 2))


# --- arithmetic -------------------------------------------------------------------------------


def test_primitive_values():
    acts = random_acts(4)
    conv, tokens = acts["conv"], acts["tokens"]
    torch.testing.assert_close(channel("conv", 3)(acts), conv[:, 3].mean(dim=(1, 2)))
    torch.testing.assert_close(neuron("conv", 3)(acts), conv[:, 3, 2, 2])
    torch.testing.assert_close(neuron("deep", 1, x=3, y=0)(acts), acts["deep"][:, 1, 0, 3])
    torch.testing.assert_close(layer("conv")(acts), conv.pow(2).mean(dim=(1, 2, 3)))
    torch.testing.assert_close(logit(7)(acts), acts[LOGITS][:, 7])
    # 17 tokens = class token + 4x4 patch grid: positions skip the class token
    torch.testing.assert_close(channel("tokens", 5)(acts), tokens[:, 1:, 5].mean(dim=1))
    torch.testing.assert_close(neuron("tokens", 5)(acts), tokens[:, 1 + 2 * 4 + 2, 5])


@pytest.mark.parametrize("power", [0.0, 1.0, 3.0])
def test_direction_follows_lucid(power):
    acts = random_acts(3)
    vector = torch.randn(8)
    per_position = acts["conv"].permute(0, 2, 3, 1)  # (B, H, W, C)
    dot = per_position @ vector
    cossim = dot / ((per_position.norm(dim=-1) + 1e-4) * (vector.norm() + 1e-4))
    expected = (dot * cossim.clamp(min=0.1) ** power).mean(dim=(1, 2))
    torch.testing.assert_close(direction("conv", vector, cossim_power=power)(acts), expected)


def test_combined_objectives_equal_combined_values():
    acts = random_acts(4)
    a, b, c = channel("conv", 3), layer("deep"), logit(2)
    custom = channel_max("conv", 1)
    cases = {
        a - 0.1 * b: a(acts) - 0.1 * b(acts),
        a + b + c: a(acts) + b(acts) + c(acts),
        -a: -a(acts),
        a / 4: a(acts) / 4,
        2 * (a - b): 2 * (a(acts) - b(acts)),
        a * 3 - custom: 3 * a(acts) - custom(acts),
        sum([a, custom, c]): a(acts) + custom(acts) + c(acts),
        -(custom / 2): -custom(acts) / 2,
    }
    for combined, expected in cases.items():
        torch.testing.assert_close(combined(acts), expected, msg=combined.description)


def test_combination_tracks_layers_and_descriptions():
    combined = channel("conv", 3) - 0.1 * layer("deep")
    assert combined.layers == {"conv", "deep"} and not combined.needs_logits
    assert combined.description == "channel(conv, 3) - 0.1 * layer(deep)"
    assert (2 * (channel("conv", 3) - logit(1))).description == "2 * (channel(conv, 3) - logit(1))"
    with_logit = combined + logit(5)
    assert with_logit.needs_logits and with_logit.layers == {"conv", "deep"}
    assert (channel_max("conv", 1) + layer("deep")).layers == {"conv", "deep"}
    assert channel_max("conv", 1).description == "channel_max(conv, 1)"


def test_objectives_only_combine_with_objectives_and_scalars():
    with pytest.raises(TypeError):
        channel("conv", 1) * channel("conv", 2)
    with pytest.raises(TypeError):
        channel("conv", 1) + 1


def test_objective_decorator_checks_layer_argument():
    with pytest.raises(TypeError, match="layer"):
        @objective
        def no_layer(acts, name):
            return acts[name].mean()

    @objective(layer_args=("layers",))
    def pair(acts, layers):
        return sum(acts[name].flatten(1).mean(1) for name in layers)

    assert pair(["conv", "deep"]).layers == {"conv", "deep"}


# --- hooks ------------------------------------------------------------------------------------


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


def small_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        features=nn.Conv2d(3, 4, 3), act=nn.ReLU(), counter=Counter(), head=nn.Conv2d(4, 2, 1)))


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_are_removed_on_success_and_on_error():
    model = small_net()
    with capture(model, ["features", "act"]) as cap:
        assert hook_count(model) == 2
        cap.run(torch.rand(1, 3, 8, 8))
    assert hook_count(model) == 0

    with pytest.raises(KeyError):
        with capture(model, ["features"]):
            raise KeyError("inside the block")
    assert hook_count(model) == 0

    with pytest.raises(RuntimeError):
        with capture(model, ["features"]) as cap:
            cap.run(torch.rand(1, 5, 8, 8))  # wrong channel count fails inside the forward
    assert hook_count(model) == 0


def test_early_stop_skips_the_rest_of_the_network():
    model = small_net()
    images = torch.rand(2, 3, 8, 8)
    with capture(model, ["act"]) as cap:
        first = cap.run(images)  # the first run completes once, to count calls per layer
        calls_after_first = model.counter.calls
        second = cap.run(images)
    assert model.counter.calls == calls_after_first == 1
    assert LOGITS not in second
    torch.testing.assert_close(second["act"], torch.relu(model.features(images)))
    torch.testing.assert_close(first["act"], second["act"])

    with capture(model, ["act"], need_logits=True) as cap:
        for _ in range(2):
            acts = cap.run(images)
    assert model.counter.calls == 3
    torch.testing.assert_close(acts[LOGITS], model(images))


def test_shared_module_gives_its_last_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.act, self.counter = nn.Conv2d(3, 3, 1), nn.Tanh(), Counter()

        def forward(self, x):
            return self.counter(self.act(self.conv(self.act(x))))

    model, images = Twice(), torch.randn(2, 3, 4, 4)
    expected = torch.tanh(model.conv(torch.tanh(images)))
    with capture(model, ["act"]) as cap:
        with pytest.warns(UserWarning, match="several times"):
            first = cap.run(images)
        second = cap.run(images)
    torch.testing.assert_close(first["act"], expected)
    torch.testing.assert_close(second["act"], expected)
    assert model.counter.calls == 1  # the second run stopped after the second call of act


def test_capture_is_not_overwritten_by_inplace_ops():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))
    images = torch.randn(2, 3, 6, 6)
    with capture(model, ["0"], stop_after_last=False) as cap:
        acts = cap.run(images)
    assert (acts["0"] < 0).any()
    torch.testing.assert_close(acts["0"], model[0](images))


def test_unknown_layer_suggests_close_matches():
    with pytest.raises(ValueError, match="unknown layer 'featurs'.*'features'"):
        with capture(small_net(), ["featurs"]):
            pass
    with pytest.raises(ValueError, match="reserved"):
        with capture(small_net(), [LOGITS]):
            pass


# --- batched scoring --------------------------------------------------------------------------

UNITS, CROPS = 6, 3


def unit_objectives() -> list[Objective]:
    return [
        channel("conv", 2),
        channel("conv", 7),
        neuron("tokens", 4, x=1, y=3) - 0.5 * layer("deep"),
        direction("conv", torch.arange(8.0) - 3, cossim_power=2) + logit(9),
        channel_max("deep", 5),
        2 * channel("tokens", 11) - channel_max("conv", 0),
    ]


def test_batched_score_is_each_units_own_objective():
    objectives = unit_objectives()
    acts = random_acts(UNITS * CROPS)
    scores = batched_score(objectives, acts, CROPS)
    assert scores.shape == (UNITS,)
    for unit, obj in enumerate(objectives):
        own = {name: act[unit * CROPS:(unit + 1) * CROPS] for name, act in acts.items()}
        torch.testing.assert_close(scores[unit], obj(own).mean(), msg=obj.description)


@pytest.mark.parametrize("perturbed", range(UNITS))
def test_batched_score_units_are_independent(perturbed):
    objectives = unit_objectives()
    acts = random_acts(UNITS * CROPS, requires_grad=True)
    scores = batched_score(objectives, acts, CROPS)
    others = [unit for unit in range(UNITS) if unit != perturbed]

    changed = {name: act.detach().clone() for name, act in acts.items()}
    for act in changed.values():
        act[perturbed * CROPS:(perturbed + 1) * CROPS] += 10 * torch.randn_like(act[:CROPS])
    new_scores = batched_score(objectives, changed, CROPS)
    assert torch.equal(new_scores[others], scores.detach()[others])
    assert new_scores[perturbed] != scores[perturbed]

    grads = torch.autograd.grad(scores[perturbed], list(acts.values()), allow_unused=True)
    own_rows = torch.zeros(UNITS * CROPS, dtype=torch.bool)
    own_rows[perturbed * CROPS:(perturbed + 1) * CROPS] = True
    used = 0
    for grad in grads:
        if grad is not None:
            assert torch.count_nonzero(grad[~own_rows]) == 0
            used += torch.count_nonzero(grad[own_rows])
    assert used > 0


def test_out_of_range_channel_is_reported_when_activations_are_seen():
    too_far = channel("conv", 8)  # fine until the layer turns out to have 8 channels
    with pytest.raises(ValueError, match=r"channel 8 .*'conv' has 8 channels"):
        batched_score([channel("conv", 1), too_far], random_acts(4), 2)
    with pytest.raises(ValueError, match="class 10 .*10 classes"):
        logit(10)(random_acts(2))
    with pytest.raises(ValueError, match="column 5"):
        neuron("conv", 0, x=5)(random_acts(2))


def test_batched_score_checks_row_count():
    with pytest.raises(ValueError, match="expected 2 units x 3 crops"):
        batched_score([channel("conv", 1), logit(1)], random_acts(5), 3)


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, descriptions", [
    ("logit:1,207", ["logit(1)", "logit(207)"]),
    ("_blocks.15:0-15", [f"channel(_blocks.15, {c})" for c in range(16)]),
    ("_blocks.15:3", ["channel(_blocks.15, 3)"]),
    ("layer4.1.conv2:5", ["channel(layer4.1.conv2, 5)"]),
    ("neuron:_blocks.15:3", ["neuron(_blocks.15, 3)"]),
    ("channel:logit:4", ["channel(logit, 4)"]),
    (" conv:1, 3-5 ,7 ", [f"channel(conv, {c})" for c in (1, 3, 4, 5, 7)]),
])
def test_parse_targets(spec, descriptions):
    assert [obj.description for obj in parse_targets(spec)] == descriptions


def test_parsed_targets_score_like_the_factories():
    acts = random_acts(3)
    torch.testing.assert_close(parse_target("conv:6")(acts), channel("conv", 6)(acts))
    torch.testing.assert_close(parse_target("logit:3")(acts), logit(3)(acts))
    torch.testing.assert_close(parse_target("neuron:tokens:2")(acts), neuron("tokens", 2)(acts))


def test_parse_accepts_objectives_and_lists():
    obj = channel("conv", 1) + logit(2)
    assert parse_target(obj) is obj
    parsed = parse_targets(["conv:0-1", obj])
    assert [o.description for o in parsed[:2]] == ["channel(conv, 0)", "channel(conv, 1)"] and parsed[2] is obj


def test_one_range_syntax_and_the_whole_layer_target():
    inclusive = [o.description for o in parse_targets("conv:2-4,7")]
    half_open = [o.description for o in parse_targets("conv:2:5,7")]
    assert inclusive == half_open == ["channel(conv, 2)", "channel(conv, 3)", "channel(conv, 4)", "channel(conv, 7)"]
    whole = parse_target("conv")
    assert whole.description == "layer(conv)" and whole.unit == ("layer", "conv", None)
    assert parse_target("logit:3").unit == ("logit", None, 3)


@pytest.mark.parametrize("spec, token", [
    ("_blocks.15:", "_blocks.15:"),
    ("_blocks.15:3:", "'3:'"),
    (":3", ":3"),
    ("_blocks.15:x", "'x'"),
    ("_blocks.15:1,,2", "''"),
    ("_blocks.15:5-3", "'5-3'"),
    ("_blocks.15:-3", "'-3'"),
    ("neuron::3", "missing the layer"),
])
def test_parse_errors_name_the_bad_token(spec, token):
    with pytest.raises(ValueError) as error:
        parse_targets(spec)
    assert token in str(error.value)


def test_parse_target_wants_exactly_one():
    with pytest.raises(ValueError, match="3 objectives"):
        parse_target("conv:0-2")
    with pytest.raises(TypeError):
        parse_targets([3])


# --- transformer tokens -----------------------------------------------------------------------


def test_vit_token_objectives_give_input_gradients():
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10).eval()
    name = "encoder.layers.encoder_layer_1"
    objectives = [channel(name, 3), neuron(name, 3), neuron(name, 7, x=0, y=3) + 0.1 * logit(4)]
    images = torch.rand(len(objectives), 3, 32, 32, requires_grad=True)
    with capture(vit, [name], need_logits=True) as cap:
        acts = cap.run(images)
    tokens = acts[name]
    assert tokens.shape == (3, 17, 32) and as_bchw(tokens).shape == (3, 32, 4, 4)

    scores = batched_score(objectives, acts, 1)
    torch.testing.assert_close(scores[0], tokens[0, 1:, 3].mean())
    torch.testing.assert_close(scores[1], tokens[1, 1 + 2 * 4 + 2, 3])
    torch.testing.assert_close(scores[2], tokens[2, 1 + 3 * 4 + 0, 7] + 0.1 * acts[LOGITS][2, 4])
    for unit in range(len(objectives)):
        (grad,) = torch.autograd.grad(scores[unit], images, retain_graph=True)
        assert grad[unit].abs().sum() > 0
        assert torch.count_nonzero(grad[torch.arange(len(objectives)) != unit]) == 0


def test_as_bchw_layouts():
    assert as_bchw(torch.zeros(2, 10)).shape == (2, 10, 1, 1)
    assert as_bchw(torch.zeros(2, 16, 7)).shape == (2, 7, 4, 4)  # square grid, no class token
    assert as_bchw(torch.zeros(2, 17, 7)).shape == (2, 7, 4, 4)  # class token + 4x4 grid
    assert as_bchw(torch.zeros(2, 6, 7)).shape == (2, 7, 1, 6)  # no grid: a row of tokens
    with pytest.raises(ValueError):
        as_bchw(torch.zeros(2, 3, 4, 5, 6))
