import pytest
import torch
from conftest import requires_ext

from phasevis_ext.ops.reference import fourier_synthesis_reference, maco_synthesis_reference
import phasevis_ext as pv
from phasevis_ext.checks import InvalidArgument
from phasevis_ext.param import parameterizations
from phasevis_ext.param.parameterizations import PARAMS, make_param


def generators(count, base=0):
    return [torch.Generator().manual_seed(base + i) for i in range(count)]


@pytest.mark.parametrize("kind", PARAMS)
def test_images_in_unit_range_and_gradients_reach_the_parameters(kind):
    param = make_param(kind, 3, (16, 24), generators=generators(3))
    images = param()
    assert images.shape == (3, 3, 16, 24)
    assert images.min() >= 0 and images.max() <= 1
    assert images.std() > 0 or kind == "pixel"
    weights = torch.randn_like(images)
    (images * weights).sum().backward()
    grad = param.param.grad
    assert grad is not None and grad.shape == param.param.shape
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert [name for name, _ in param.named_parameters()] == ["param"]


def test_maco_magnitude_is_a_fixed_buffer():
    param = make_param("maco", 2, 16, generators=generators(2))
    assert param.param.shape == (2, 3, 16, 9)
    assert "magnitude" in dict(param.named_buffers())
    assert not param.magnitude.requires_grad
    assert all(p is not param.magnitude for p in param.parameters())


def test_custom_magnitude_and_shape_check():
    magnitude = torch.rand(3, 16, 9)
    param = make_param("maco", 1, 16, generators=generators(1), magnitude=magnitude)
    torch.testing.assert_close(param.magnitude, magnitude)
    with pytest.raises(ValueError, match="magnitude"):
        make_param("maco", 1, 16, generators=generators(1), magnitude=torch.rand(3, 16, 16))


def test_unit_init_depends_only_on_its_generator():
    alone = make_param("maco", 1, 16, generators=generators(1, base=7))
    batched = make_param("maco", 3, 16, generators=generators(2) + generators(1, base=7))
    torch.testing.assert_close(batched.param[2], alone.param[0], rtol=0, atol=0)
    assert not torch.equal(batched.param[0], batched.param[2])


@requires_ext  # without the extension the fast path is the reference itself
@pytest.mark.parametrize("kind", ["maco", "fourier"])
def test_fast_path_matches_the_reference(kind):
    param = make_param(kind, 2, (16, 20), generators=generators(2))
    k = param.color_matrix
    if kind == "maco":
        expected = maco_synthesis_reference(param.param, param.magnitude, (16, 20), (0.0, 1.0), k, 1e-4,
                                            parameterizations.PHASE_SCALE)
    else:
        expected = fourier_synthesis_reference(torch.view_as_complex(param.param), param.scale, (16, 20),
                                               (0.0, 1.0), k, 1e-4)
    torch.testing.assert_close(param(), expected, rtol=1e-4, atol=1e-5)


def test_fourier_decay_sets_the_scale():
    flat = make_param("fourier", 1, 16, generators=generators(1), decay=0.0)
    steep = make_param("fourier", 1, 16, generators=generators(1), decay=2.0)
    assert torch.all(flat.scale == 1)
    assert steep.scale[0, 0] > steep.scale[8, 8]


def test_validation():
    with pytest.raises(ValueError, match=r"param.*maco.*fourier.*pixel"):
        make_param("wavelet", 1, 16, generators=generators(1))
    with pytest.raises(ValueError, match="size"):
        make_param("pixel", 1, (7, 16), generators=generators(1))
    with pytest.raises(ValueError, match="generators"):
        make_param("pixel", 2, 16, generators=generators(1))
    with pytest.raises(ValueError, match="magnitude"):
        make_param("pixel", 1, 16, generators=generators(1), magnitude=torch.rand(3, 16, 9))
    with pytest.raises(ValueError, match="decay"):
        make_param("maco", 1, 16, generators=generators(1), decay=2.0)


def _corner_over_centre(images: torch.Tensor) -> float:
    """Mean distance from mid-grey in the 4 corner squares over that in the central quarter."""
    deviation = (images - 0.5).abs().mean(1)
    size, b = images.shape[-1], images.shape[-1] // 16
    corners = torch.cat([deviation[:, :b, :b], deviation[:, :b, -b:], deviation[:, -b:, :b], deviation[:, -b:, -b:]], 1)
    return float(corners.mean() / deviation[:, size // 4:3 * size // 4, size // 4:3 * size // 4].mean())


@pytest.mark.parametrize("backend_runs", [True, False], ids=["ext", "torch"])
def test_default_phase_scale_keeps_the_corners_like_the_rest(monkeypatch, backend_runs):
    """At MACO's phase scale of 1 every bin is half in phase at pixel (0, 0): the corners of a fresh
    image stand out (~3x the centre's distance from grey); at the default they do not."""
    if not backend_runs:
        monkeypatch.setattr(parameterizations.ops, "runs_on", lambda device: False)
    elif not pv.extension_available():
        pytest.skip("extension not built")
    ratios = {}
    for scale in (1.0, parameterizations.PHASE_SCALE):
        generators = [torch.Generator().manual_seed(i) for i in range(16)]
        with torch.no_grad():
            ratios[scale] = _corner_over_centre(parameterizations.MacoParam((64, 64), generators=generators,
                                                                            phase_scale=scale)())
    assert ratios[1.0] > 2.0
    assert ratios[parameterizations.PHASE_SCALE] < 1.5


def test_phase_scale_is_checked():
    with pytest.raises(InvalidArgument, match="phase_scale"):
        parameterizations.MacoParam((16, 16), generators=[torch.Generator()], phase_scale=0.0)
