"""benchmarks/beyond_one_image.py on tiny models (the benchmark itself is run by hand)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
pytest.importorskip("skimage")
beyond = pytest.importorskip("beyond_one_image")


class TinyNet(nn.Module):
    """Named like the lite models where the benchmark looks: `conv1` to invert and diversify, `_fc`."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self._fc = nn.Linear(8, 1000)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self._fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def nets():
    return TinyNet(0).eval(), TinyNet(1).eval()


@pytest.fixture(scope="module")
def photos():
    g = torch.Generator().manual_seed(2)
    return nn.functional.avg_pool2d(torch.rand(3, 3, 36, 36, generator=g), 5, stride=1).clamp(0.02, 0.98)


OPTIONS = dict(crops=2, device="cpu", amp=None, progress=False, batch_size=8, input_size=24)


def test_mean_pairwise_distance_is_zero_for_copies_and_one_for_orthogonal_samples():
    same = torch.ones(2, 3, 5)
    orthogonal = torch.eye(3)[None]
    assert torch.allclose(beyond.mean_pairwise_distance(same), torch.zeros(2), atol=1e-6)
    assert torch.allclose(beyond.mean_pairwise_distance(orthogonal), torch.ones(1))


def test_ranks_count_from_one():
    logits = torch.tensor([[0.1, 0.9, 0.5], [3.0, 2.0, 1.0]])
    assert beyond.ranks(logits, [1, 2]) == [1, 3]


def test_blurred_ssim_is_one_for_the_same_image_and_lower_for_another(photos):
    same = beyond.blurred_ssim(photos, photos)
    assert np.allclose(same, 1.0)
    assert (beyond.blurred_ssim(photos, photos.roll(1, 0)) < 0.99).all()


def test_judge_features_are_the_classifier_input(nets):
    _, judge = nets
    images = torch.rand(2, 3, 20, 20)
    features, logits = beyond.judge_outputs(judge, images, 24)
    assert features.shape == (2, 8) and logits.shape == (2, 1000)
    torch.testing.assert_close(judge._fc(features), logits)


def test_targets_are_classes_the_judge_ranks_low(nets, photos):
    _, judge = nets
    _, logits = beyond.judge_outputs(judge, photos, 24)
    targets = beyond.pick_targets(logits)
    assert len(targets) == len(photos) and all(t in beyond.CANDIDATE_TARGETS for t in targets)
    assert all(r >= beyond.UNRELATED_RANK for r in beyond.ranks(logits, targets))


def test_parts_write_their_numbers_and_sheets(nets, photos, tmp_path):
    model, judge = nets
    names = ["a", "b", "c"]
    data = {"inversion": beyond.inversion_part(model, judge, 24, photos, names, ["conv1"], steps=3,
                                               options=OPTIONS, out=tmp_path),
            "diversity": beyond.diversity_part(model, judge, 24, "conv2", [0, 5], samples=3, weight=1.0, steps=3,
                                               options={**OPTIONS, "image_size": 32}, out=tmp_path),
            "accentuation": beyond.accentuation_part(model, judge, 24, photos, names, penalty=1.0, reg_layer=None,
                                                     steps=3, options=OPTIONS, out=tmp_path)}
    assert {p.name for p in tmp_path.iterdir()} == {"inversion.jpg", "diversity.jpg", "accentuation.jpg"}
    assert set(data["inversion"]["runs"]) == {f"conv1/{m}" for m in beyond.INVERSION_METHODS}
    assert all(len(run["lite2_cosine"]) == 3 for run in data["inversion"]["runs"].values())
    assert [len(run["lite2_distance"]) for run in data["diversity"]["runs"].values()] == [2, 2]
    assert set(data["accentuation"]["runs"]) == {"maco/photo", "maco/natural", "fourier"}
    json.dumps(data)  # the report's JSON
    text = "\n".join(beyond.report_sections(data, lambda header, rows: "\n".join(map(str, [header, *rows]))))
    for heading in ("## Inversion", "## Diversity", "## Accentuation"):
        assert heading in text
