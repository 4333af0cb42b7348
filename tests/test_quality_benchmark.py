"""The helpers of benchmarks/quality_per_second.py and against_lucent.py on tiny inputs (the
benchmarks themselves are run by hand; their results are in docs/)."""
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
quality = pytest.importorskip("quality_per_second")

from phasevis_ext.model.activations import LOGITS  # noqa: E402


@pytest.mark.parametrize("maker", ["efficientnet_lite0", "mobilenet_v2"])
def test_the_tuning_and_held_out_classes_are_disjoint_and_the_channels_span_the_network(maker):
    from phasevis_ext import models
    from phasevis_ext.model.activations import list_layers

    sets = quality.unit_sets(maker)
    tuning, held_out = ({index for _, index in sets[name]} for name in ("tuning", "held-out"))
    assert len(tuning) == len(held_out) == 8 and not tuning & held_out
    assert sorted(sets["all"]) == sorted(sets["tuning"] + sets["held-out"])
    assert all(layer == LOGITS for layer, _ in sets["all"])
    assert {layer for layer, _ in sets["channels"]} == set(quality.LAYERS[maker])
    widths = {layer.name: layer.shape[1] for layer in list_layers(models.load(maker, pretrained=False))}
    assert all(widths[layer] == width for layer, width in quality.LAYERS[maker].items())


def test_every_maker_is_judged_by_its_family_and_another():
    from recognition import JUDGES_OF

    for maker, judges in JUDGES_OF.items():
        assert maker not in judges and len(set(judges)) == 2
        assert any(j.split("_")[0] != maker.split("_")[0] for j in judges)


def test_options_are_python_literals():
    assert quality.parse_option("crops=4") == ("crops", 4)
    assert quality.parse_option("box_size=(0.5, 1.0)") == ("box_size", (0.5, 1.0))
    assert quality.parse_option("lr_schedule=cosine") == ("lr_schedule", "cosine")
    with pytest.raises(SystemExit):
        quality.parse_option("crops")


def test_a_schedule_over_the_steps_gets_a_run_per_budget(monkeypatch):
    calls = []

    class Result:
        def __init__(self, steps):
            self.images, self.seconds, self.settings = torch.zeros(1, 3, 8, 8), float(steps), {}

    def fake_visualize(model, objectives, *, steps, callback=None, **kwargs):
        calls.append(steps)
        for step in range(1, steps + 1):
            if callback is not None:
                callback(step, torch.zeros(1, 3, 8, 8), torch.zeros(1))
        return Result(steps)

    monkeypatch.setattr(quality, "visualize", fake_visualize)
    units = [(LOGITS, 1)]
    snapshots, _ = quality.run_ours(None, units, [16, 32], "maco", {"lr_schedule": "cosine"})
    assert calls == [16, 32] and sorted(snapshots) == [16, 32]
    calls.clear()
    quality.run_ours(None, units, [16, 32], "fourier", {"box_schedule": "shrink"})
    assert calls == [16, 32]
    calls.clear()
    quality.run_ours(None, units, [16, 32], "maco", {})  # MACO's default lr schedule is cosine
    assert calls == [16, 32]
    calls.clear()
    for param, options in (("fourier", {}), ("maco", {"lr_schedule": "constant"})):
        snapshots, _ = quality.run_ours(None, units, [16, 32], param, options)
        assert calls == [32] and sorted(snapshots) == [16, 32]  # one run, its image after 16 updates taken on the way
        calls.clear()


def test_report_tables_and_plots_every_run(tmp_path):
    scores = {"crops_top1": 0.5, "crops_top5": 1.0, "whole_top1": 0.5, "whole_top5": 1.0}
    budgets = {str(b): {"seconds_per_unit": b / 10, "judges": {j: {**scores, "crops_prob": b / 1000}
                                                               for j in ("efficientnet_lite2", "mobilenet_v2")},
                        "slope": -2.6, "hf": 0.03, "activations": [1.0]}
               for b in (16, 32)}
    for label in ("maco", "lucent"):
        record = {"label": label, "method": label, "model": "efficientnet_lite0", "set": "tuning",
                  "units": quality.unit_sets()["tuning"],
                  "options": {}, "budgets": budgets, "command": f"python run {label}", "machine": "test",
                  "torch": torch.__version__}
        (tmp_path / f"{label}-tuning.json").write_text(json.dumps(record))
    path = quality.report(tmp_path, "report", ["pair=maco,lucent"])
    text = path.read_text()
    assert text.count("| maco |") == 2 and text.count("| lucent |") == 2 and "python run lucent" in text
    assert "mobilenet_v2 top-5 crops" in text
    assert (tmp_path / "quality_per_second.png").stat().st_size > 0
    assert (tmp_path / "quality_per_second_pair.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="no run"):
        quality.report(tmp_path, "report", ["none=nobody"])


def test_against_lucent_measures_activations_itself_and_judges_stretched_images(tmp_path, monkeypatch):
    against_lucent = pytest.importorskip("against_lucent")
    monkeypatch.setattr(against_lucent, "JUDGE_CROPS", 2)
    from phasevis_ext import models

    lite0 = models.load("efficientnet_lite0", pretrained=False)
    units = {"tuning": [[LOGITS, 1], [LOGITS, 2]], "held-out": [[LOGITS, 3]], "channels": [["_blocks.2", 0]]}
    g = torch.Generator().manual_seed(0)
    for unit_set, members in units.items():
        # A record from before the runs measured activations: the report must not need them.
        budgets = {"4": {"seconds_per_unit": 1.0}}
        record = {"label": "old", "set": unit_set, "units": members, "options": {}, "budgets": budgets,
                  "command": "python run old", "machine": "test"}
        (tmp_path / f"old-{unit_set}.json").write_text(json.dumps(record))
        torch.save(torch.rand(len(members), 3, 32, 32, generator=g), tmp_path / f"old-{unit_set}-4.pt")
    judges = {"efficientnet_lite0": lite0}
    summary, shown = against_lucent.tool_summary(tmp_path, "old", 4, judges, stretch=True,
                                                 class_sets=("tuning", "held-out"), channels=True)
    assert len(summary["activations"]) == 4 and all(isinstance(a, float) for a in summary["activations"])
    assert set(summary["recognition_stretched"]) == {"efficientnet_lite0"}
    assert shown.shape == (3, 3, 32, 32)


def test_best_photo_activations_take_the_highest_over_the_photos(monkeypatch):
    import lattice_borders

    from phasevis_ext import models

    photos = [torch.zeros(3, 40, 40), torch.ones(3, 40, 40), torch.full((3, 40, 40), 0.5)]
    monkeypatch.setattr(lattice_borders, "photographs", lambda: photos)
    net = models.load("efficientnet_lite0", pretrained=False).eval()
    unit = ("_blocks.2", 3)
    best = quality.best_photo_activations(net, [unit])
    each = [quality.activations(net, p[None], [unit])[0] for p in photos]
    assert best == [pytest.approx(max(each), rel=1e-4)]
