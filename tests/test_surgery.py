"""surgery.change_modules, the copy-then-rewrite every module-rewriting pass runs through."""
import warnings

import torch
from torch import nn

from phasevis_ext.model.surgery import change_modules, replace_module


def _to_identity(model, name):
    replace_module(model, name, nn.Identity())


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 1))


def test_a_copy_sharing_tensors_is_changed_and_the_original_is_not():
    model = _model()
    changed, count = change_modules(model, ["1"], _to_identity)
    assert count == 1 and changed is not model
    assert isinstance(changed[1], nn.Identity) and isinstance(model[1], nn.ReLU)
    assert changed[0].weight is model[0].weight


def test_an_owned_model_is_changed_as_it_is():
    model = _model()
    changed, count = change_modules(model, ["1", "2"], _to_identity, owned=True)
    assert changed is model and count == 2 and isinstance(model[2], nn.Identity)


def test_no_change_returns_the_model_itself():
    model = _model()
    assert change_modules(model, [], _to_identity) == (model, 0)


def test_a_model_that_cannot_be_copied_is_left_as_it_is():
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.nn.utils.weight_norm(model[0])  # keeps a non-leaf weight, which deepcopy refuses
    changed, count = change_modules(model, ["1"], _to_identity)
    assert changed is model and count == 0 and isinstance(model[1], nn.ReLU)
