"""The fused ops against the pure-PyTorch reference: values, gradients, opcheck, compile."""
import pytest
import torch

import phasevis_ext as pv
from conftest import requires_ext
from synthesis_cases import SHAPES, fourier_inputs, maco_inputs, op_args

pytestmark = requires_ext


def _compare(fn, head, other, size, atol, values_range=(-1.0, 2.0)):
    kwargs = dict(size=size, values_range=values_range)
    head_ext = head.clone().requires_grad_(True)
    head_ref = head.clone().requires_grad_(True)
    out_ext = fn(head_ext, other, backend="ext", **kwargs)
    out_ref = fn(head_ref, other, backend="torch", **kwargs)
    torch.testing.assert_close(out_ext, out_ref, atol=atol, rtol=0)
    grad_out = torch.randn_like(out_ref)
    (g_ext,) = torch.autograd.grad(out_ext, head_ext, grad_out)
    (g_ref,) = torch.autograd.grad(out_ref, head_ref, grad_out)
    scale = g_ref.abs().max().item()
    torch.testing.assert_close(g_ext, g_ref, atol=atol * max(scale, 1.0), rtol=0)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 2e-5), (torch.float64, 1e-11)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_maco_matches_reference(shape, dtype, atol):
    b, c, h, w = shape
    phase, magnitude = maco_inputs(b, c, h, w, dtype=dtype)
    _compare(pv.maco_synthesis, phase, magnitude, (h, w), atol)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 2e-5), (torch.float64, 1e-11)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fourier_matches_reference(shape, dtype, atol):
    b, c, h, w = shape
    spectrum, scale = fourier_inputs(b, c, h, w, dtype=dtype)
    _compare(pv.fourier_synthesis, spectrum, scale, (h, w), atol)


def test_magnitude_per_sample_shared_and_expanded_agree():
    phase, magnitude = maco_inputs(3, 3, 20, 22)
    shared = pv.maco_synthesis(phase, magnitude, backend="ext")
    expanded = pv.maco_synthesis(phase, magnitude.expand(3, -1, -1, -1), backend="ext")
    per_sample = pv.maco_synthesis(phase, magnitude.expand(3, -1, -1, -1).contiguous(), backend="ext")
    torch.testing.assert_close(shared, expanded, atol=0, rtol=0)
    torch.testing.assert_close(shared, per_sample, atol=0, rtol=0)
    _compare(pv.maco_synthesis, phase, torch.rand(3, 3, 20, 12) + 0.5, (20, 22), 2e-5)


def test_non_contiguous_inputs():
    base = torch.randn(2, 3, 24, 40)
    phase = base[:, :, :, ::3]  # (2, 3, 24, 14), strided
    assert not phase.is_contiguous()
    magnitude = (torch.rand(3, 14, 24) + 0.1).transpose(1, 2)
    _compare(pv.maco_synthesis, phase, magnitude, (24, 26), 2e-5)
    spectrum = torch.randn(2, 3, 14, 24, 2).transpose(2, 3)
    _compare(pv.fourier_synthesis, spectrum, pv.fourier_scale((24, 27)), (24, 27), 2e-5)


def test_complex_spectrum_input_matches_pairs():
    spectrum, scale = fourier_inputs(2, 3, 16, 16)
    as_complex = torch.view_as_complex(spectrum)
    for backend in ("ext", "torch"):
        torch.testing.assert_close(
            pv.fourier_synthesis(as_complex, scale, backend=backend),
            pv.fourier_synthesis(spectrum, scale, backend=backend),
        )
    z = as_complex.clone().requires_grad_(True)
    pv.fourier_synthesis(z, scale, backend="ext").square().sum().backward()
    z_ref = as_complex.clone().requires_grad_(True)
    pv.fourier_synthesis(z_ref, scale, backend="torch").square().sum().backward()
    torch.testing.assert_close(z.grad, z_ref.grad, atol=1e-5, rtol=1e-4)


def test_values_range_and_odd_width_keeps_every_column():
    phase, magnitude = maco_inputs(1, 3, 10, 11)
    out = pv.maco_synthesis(phase, magnitude, size=(10, 11), values_range=(-2.5, 2.5), backend="ext")
    assert out.shape == (1, 3, 10, 11)
    assert out.min() > -2.5 and out.max() < 2.5
    # the last column is real content, not a copy or a zero
    assert (out[..., -1] - out[..., -2]).abs().max() > 1e-3


@pytest.mark.parametrize("per_sample", [False, True])
def test_gradcheck_maco(per_sample):
    phase, magnitude = maco_inputs(2, 3, 6, 7, dtype=torch.float64, per_sample=per_sample)
    phase.requires_grad_(True)
    fn = lambda p: pv.maco_synthesis(p, magnitude, size=(6, 7), backend="ext")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (phase,), eps=1e-6, atol=1e-6)


def test_gradcheck_fourier():
    spectrum, scale = fourier_inputs(2, 3, 6, 6, dtype=torch.float64)
    spectrum.requires_grad_(True)
    fn = lambda z: pv.fourier_synthesis(z, scale, size=(6, 6), values_range=(-1.0, 1.0), backend="ext")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (spectrum,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_maco(dtype):
    phase, magnitude = maco_inputs(2, 3, 8, 9, dtype=dtype)
    phase.requires_grad_(True)
    torch.library.opcheck(torch.ops.phasevis.maco_synthesis.default, (phase, magnitude) + op_args(8, 9, 3, dtype, "cpu"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_fourier(dtype):
    spectrum, scale = fourier_inputs(2, 3, 8, 8, dtype=dtype)
    spectrum.requires_grad_(True)
    torch.library.opcheck(torch.ops.phasevis.fourier_synthesis.default, (spectrum, scale) + op_args(8, 8, 3, dtype, "cpu"))


def test_opcheck_backward_ops():
    phase, magnitude = maco_inputs(2, 3, 8, 8)
    out, x, phase_stats, image_stats = torch.ops.phasevis.maco_synthesis(phase, magnitude, *op_args(8, 8, 3, torch.float32, "cpu"))
    k = pv.default_color_matrix(3)
    torch.library.opcheck(
        torch.ops.phasevis.maco_synthesis_backward.default,
        (torch.randn_like(out), phase, magnitude, x, phase_stats, image_stats, k, -1.0, 2.0, 1e-4),
    )


def test_torch_compile_fullgraph_no_graph_breaks():
    phase, magnitude = maco_inputs(2, 3, 16, 16)
    spectrum, scale = fourier_inputs(2, 3, 16, 16)

    def step(p, z):
        a = pv.maco_synthesis(p, magnitude, backend="ext")
        b = pv.fourier_synthesis(z, scale, backend="ext")
        return (a * b).mean()

    compiled = torch.compile(step, fullgraph=True)
    p1, z1 = phase.clone().requires_grad_(True), spectrum.clone().requires_grad_(True)
    p2, z2 = phase.clone().requires_grad_(True), spectrum.clone().requires_grad_(True)
    compiled(p1, z1).backward()
    step(p2, z2).backward()
    torch.testing.assert_close(p1.grad, p2.grad)
    torch.testing.assert_close(z1.grad, z2.grad)


def test_ops_called_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    cases = [maco_inputs(2, 3, 32, 30) for _ in range(8)]
    expected = [pv.maco_synthesis(p, m, backend="torch") for p, m in cases]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda pm: pv.maco_synthesis(*pm, backend="ext"), cases))
    for got, want in zip(results, expected):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


@pytest.mark.parametrize("op", ["maco_synthesis", "fourier_synthesis"])
def test_autograd_is_the_cpp_kernel_and_only_the_image_is_differentiable(op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"phasevis::{op}", "Autograd")
    if op == "maco_synthesis":
        head, fixed = maco_inputs(2, 3, 8, 8, dtype=torch.float64)
    else:
        head, fixed = fourier_inputs(2, 3, 8, 8, dtype=torch.float64)
        head = torch.view_as_real(head) if head.is_complex() else head
    head = head.clone().requires_grad_(True)
    image, x, head_stats, image_stats = getattr(torch.ops.phasevis, op)(
        head, fixed, 8, 8, 0.0, 1.0, pv.default_color_matrix(3, dtype=torch.float64), 1e-4)
    assert image.requires_grad and not (x.requires_grad or head_stats.requires_grad or image_stats.requires_grad)
    (grad,) = torch.autograd.grad(image.sum(), head)
    assert grad.shape == head.shape and torch.isfinite(grad).all()
    with torch.no_grad():
        assert not getattr(torch.ops.phasevis, op)(
            head, fixed, 8, 8, 0.0, 1.0, pv.default_color_matrix(3, dtype=torch.float64), 1e-4)[0].requires_grad
