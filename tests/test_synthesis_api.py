"""The public synthesis API: fourier_scale, defaults, backends and input validation."""
import math

import pytest
import torch
from support.synthesis_cases import maco_inputs

import phasevis_ext as pv


def test_fourier_scale_definition():
    scale = pv.fourier_scale((6, 9), decay=1.5)
    assert scale.shape == (6, 5)
    fy, fx = 2 / 6, 3 / 9  # bin (2, 3) in cycles per pixel
    assert scale[2, 3].item() == pytest.approx((fy * fy + fx * fx) ** -0.75, rel=1e-6)
    assert scale[0, 0].item() == pytest.approx(9**1.5, rel=1e-6)  # DC clamped at 1/max(H, W)
    assert scale[5, 1].item() == pytest.approx(scale[1, 1].item())  # negative frequencies mirror


def test_default_color_matrix_and_identity():
    k = pv.default_color_matrix(3)
    assert torch.allclose(k, torch.tensor(pv.IMAGENET_COLOR_MATRIX))
    assert torch.equal(pv.default_color_matrix(2), torch.eye(2))


def test_default_width_and_horama_range():
    phase, magnitude = maco_inputs(1, 3, 12, 12)
    out = pv.maco_synthesis(phase, magnitude, values_range=(-2.5, 2.5), backend="torch")
    assert out.shape == (1, 3, 12, 12)


def test_auto_backend_matches_torch():
    phase, magnitude = maco_inputs(2, 3, 12, 14)
    torch.testing.assert_close(
        pv.maco_synthesis(phase, magnitude, size=(12, 14)),
        pv.maco_synthesis(phase, magnitude, size=(12, 14), backend="torch"),
        atol=2e-5,
        rtol=0,
    )


def test_reference_is_per_sample():
    phase, magnitude = maco_inputs(3, 3, 10, 10)
    batch = pv.maco_synthesis(phase, magnitude, backend="torch")
    single = pv.maco_synthesis(phase[1:2], magnitude, backend="torch")
    torch.testing.assert_close(batch[1:2], single)


GOOD_PHASE, GOOD_MAG = maco_inputs(1, 3, 8, 8)


@pytest.mark.parametrize(
    "change,error,match",
    [
        (dict(phase=GOOD_PHASE[0]), ValueError, "phase must have 4 dimensions"),
        (dict(phase=GOOD_PHASE.long()), TypeError, "phase must be float32 or float64"),
        (dict(phase=GOOD_PHASE[:0]), ValueError, "phase has an empty batch"),
        (dict(magnitude=GOOD_MAG.double()), TypeError, "magnitude must have the same dtype"),
        (dict(magnitude=GOOD_MAG[:, :4]), ValueError, "magnitude must have shape"),
        (dict(magnitude=-GOOD_MAG), ValueError, "magnitude must be non-negative"),
        (dict(magnitude=GOOD_MAG * math.inf), ValueError, "magnitude contains NaN"),
        (dict(phase=GOOD_PHASE * math.nan), ValueError, "phase contains NaN"),
        (dict(size=(8, 10)), ValueError, "size\\[1\\] = 10 does not match"),
        (dict(size=(7, 8)), ValueError, "size\\[0\\] = 7 does not match"),
        (dict(size="big"), TypeError, "size: expected an int or a pair"),
        (dict(values_range=(1.0, 1.0)), ValueError, "values_range must be finite with lo < hi"),
        (dict(values_range=3), TypeError, "values_range must be a pair"),
        (dict(color_matrix=torch.eye(2)), ValueError, "color_matrix must be \\(3, 3\\)"),
        (dict(eps=-1.0), ValueError, "eps must be"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
    ],
)
def test_maco_validation_names_the_argument(change, error, match):
    kwargs = dict(phase=GOOD_PHASE, magnitude=GOOD_MAG)
    kwargs.update(change)
    phase, magnitude = kwargs.pop("phase"), kwargs.pop("magnitude")
    with pytest.raises(error, match=match):
        pv.maco_synthesis(phase, magnitude, **kwargs)


def test_fourier_validation():
    spectrum = torch.randn(1, 3, 8, 5, 2)
    with pytest.raises(ValueError, match="scale must broadcast"):
        pv.fourier_synthesis(spectrum, torch.ones(3, 3))
    with pytest.raises(ValueError, match="spectrum must have 5 dimensions"):
        pv.fourier_synthesis(spectrum[0], torch.ones(8, 5))
    with pytest.raises(ValueError, match=r"\(B, C, H, Wr, 2\)"):
        pv.fourier_synthesis(torch.randn(1, 3, 8, 5, 3), torch.ones(8, 5))
    with pytest.raises(TypeError, match="spectrum must be a torch.Tensor"):
        pv.fourier_synthesis([1, 2], torch.ones(8, 5))
    with pytest.raises(ValueError, match="decay"):
        pv.fourier_scale(8, decay=-1)


@pytest.mark.skipif(not pv.extension_available(), reason="needs the extension")
def test_native_checks_raise_instead_of_crashing():
    phase, magnitude = maco_inputs(1, 3, 8, 8)
    k = pv.default_color_matrix(3)
    with pytest.raises(RuntimeError, match="width"):
        torch.ops.phasevis.maco_synthesis(phase, magnitude, 8, 11, 0.0, 1.0, k, 1e-4)
    with pytest.raises(RuntimeError, match="magnitude"):
        torch.ops.phasevis.maco_synthesis(phase, magnitude[:2], 8, 8, 0.0, 1.0, k, 1e-4)
    with pytest.raises(RuntimeError, match="color_matrix"):
        torch.ops.phasevis.maco_synthesis(phase, magnitude, 8, 8, 0.0, 1.0, k[:2], 1e-4)
