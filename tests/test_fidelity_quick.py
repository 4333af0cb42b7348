"""The helpers of benchmarks/fidelity.py on tiny inputs (the benchmark itself is run by hand)."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
fidelity = pytest.importorskip("fidelity")

from phasevis_ext.param.diagnostics import radial_power  # noqa: E402


def test_pick_classes_starts_with_the_recognition_classes_and_never_repeats():
    from recognition import CLASSES

    assert fidelity.pick_classes(3) == list(CLASSES[:3])
    many = fidelity.pick_classes(40)
    assert len(many) == 40 and len(set(many)) == 40 and all(0 <= c < 1000 for c in many)


def test_luminance_weights_sum_to_one():
    grey = torch.full((2, 3, 8, 8), 0.25)
    assert torch.allclose(fidelity.luminance(grey), torch.full((2, 1, 8, 8), 0.25, dtype=torch.float64))


def test_high_frequency_fraction_separates_smooth_from_noise():
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(4, 1, 64, 64, generator=g)
    smooth = torch.nn.functional.avg_pool2d(torch.nn.functional.avg_pool2d(noise, 5, 1, 2), 5, 1, 2)
    white = fidelity.high_frequency_fraction(radial_power(noise))
    # White noise: the share of the disc |f| <= 0.5 beyond 0.25 is 3/4 (rings weighted by f: roughly).
    assert abs(white - 0.75) < 0.05
    assert fidelity.high_frequency_fraction(radial_power(smooth)) < white / 5


def test_mean_spectrum_refits_the_mean():
    a, b = (radial_power(torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(s))) for s in (1, 2))
    mean = fidelity.mean_spectrum([a, b])
    assert np.allclose(mean.power, (a.power + b.power) / 2)
    assert mean.slope.shape == (1,)


def test_lucent_runner_names_layers_as_lucent_does():
    lucent_runner = pytest.importorskip("lucent_runner")
    from phasevis_ext import models

    assert lucent_runner.lucent_layer_name("_blocks.15") == "_blocks_15"
    net = models.load("efficientnet_lite0", pretrained=False)
    assert lucent_runner.logits_layer(net) == "_fc"


def test_lucent_missing_says_how_to_install_it(monkeypatch):
    lucent_runner = pytest.importorskip("lucent_runner")

    def absent(name, *args, **kwargs):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(lucent_runner.importlib, "import_module", absent)
    missing = lucent_runner.lucent_missing()
    assert missing is not None and "pip install --no-deps torch-lucent==0.1.8" in missing


def test_lucent_missing_is_none_where_lucent_is_installed():
    lucent_runner = pytest.importorskip("lucent_runner")
    if importlib.util.find_spec("lucent") is None:
        pytest.skip("torch-lucent is not installed here (make setup installs it)")
    assert lucent_runner.lucent_missing() is None


@pytest.mark.parametrize("argv, message", [
    (["--low-steps", "500"], "--low-steps"),
    (["--parts", "spectra"], "invalid choice"),
])
def test_bad_options_exit_2_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fidelity.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
