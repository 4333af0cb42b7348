"""The fused synthesis ops against the pure-PyTorch reference, on every device the build has kernels
for: values, gradients (gradcheck in float64), opcheck, torch.compile, non-finite inputs; then what
only one device has (threads on the CPU; streams, unaligned views and CUDA graphs on a GPU)."""
import math

import pytest
import torch
from conftest import requires_cuda_ext, requires_ext
from support.synthesis_cases import SHAPES, fourier_inputs, maco_inputs, op_args

import phasevis_ext as pv
from phasevis_ext.checks import InvalidArgument
from phasevis_ext.model.compiled import inductor_options
from phasevis_ext.param.parameterizations import PHASE_SCALE

pytestmark = requires_ext
DEVICES = ["cpu", pytest.param("cuda", marks=[requires_cuda_ext, pytest.mark.cuda])]
# Beyond SHAPES: sizes where several rows or thread blocks share a sample, planes the CPU inverts
# one at a time (512² and up), batches the CPU op runs in groups of samples (more than 8 MiB of
# image: 12 x 3 x 256² in two groups of 6, 3 x 3 x 512² in groups of 2 and 1), and C = 4, 5 (5:
# the kernels' any-channel path).
LARGE_SHAPES = [(2, 3, 224, 224), (4, 3, 255, 257), (1, 3, 512, 384), (2, 2, 512, 520), (1, 1, 600, 513),
                (12, 3, 256, 256), (3, 3, 512, 512), (2, 1, 3, 2), (2, 5, 16, 12), (1, 4, 9, 8)]
# Per device: (float32, float64) tolerances against the float64 reference.
ATOL = {"cpu": (2e-5, 1e-11), "cuda": (5e-5, 1e-10)}


def _atol(device, dtype):
    return ATOL[device][dtype == torch.float64]


def _compare(fn, head, other, size, atol, values_range=(-1.0, 2.0), **options):
    """The extension on head's device against the float64 reference on the CPU: the definition of
    irfft2 for any input (cuFFT's c2r treats a non-Hermitian spectrum its own way)."""
    head_ext = head.clone().requires_grad_(True)
    head_ref = head.detach().cpu().to(torch.complex128 if head.is_complex() else torch.float64).requires_grad_(True)
    kwargs = dict(size=size, values_range=values_range, **options)
    out_ext = fn(head_ext, other, backend="ext", **kwargs)
    out_ref = fn(head_ref, other.cpu().double(), backend="torch", **kwargs)
    torch.testing.assert_close(out_ext.cpu().double(), out_ref, atol=atol, rtol=0)
    grad_out = torch.randn_like(out_ref)
    (g_ext,) = torch.autograd.grad(out_ext, head_ext, grad_out.to(out_ext))
    (g_ref,) = torch.autograd.grad(out_ref, head_ref, grad_out)
    scale = max(g_ref.abs().max().item(), 1.0)
    torch.testing.assert_close(g_ext.cpu().to(g_ref.dtype), g_ref, atol=atol * scale, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES + LARGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_maco_matches_reference(device, shape, dtype):
    b, c, h, w = shape
    phase, magnitude = maco_inputs(b, c, h, w, dtype=dtype, device=device)
    _compare(pv.maco_synthesis, phase, magnitude, (h, w), _atol(device, dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("phase_scale", [0.3, PHASE_SCALE, 3.5])
@pytest.mark.parametrize("shape", [(2, 3, 8, 10), (1, 3, 9, 13), (2, 1, 8, 1), (2, 3, 64, 63)],
                         ids=lambda s: "x".join(map(str, s)))
def test_maco_phase_scale_matches_reference(device, shape, phase_scale):
    b, c, h, w = shape
    phase, magnitude = maco_inputs(b, c, h, w, device=device)
    _compare(pv.maco_synthesis, phase, magnitude, (h, w), _atol(device, torch.float32), phase_scale=phase_scale)
    # and the scale does act: the same phase at another scale is another image
    assert not torch.allclose(pv.maco_synthesis(phase, magnitude, size=(h, w), phase_scale=phase_scale),
                              pv.maco_synthesis(phase, magnitude, size=(h, w)), atol=1e-3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES + LARGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fourier_matches_reference(device, shape, dtype):
    b, c, h, w = shape
    spectrum, scale = fourier_inputs(b, c, h, w, dtype=dtype, device=device)
    _compare(pv.fourier_synthesis, spectrum, scale, (h, w), _atol(device, dtype))


@pytest.mark.parametrize("device", DEVICES)
def test_magnitude_per_sample_shared_and_expanded_agree(device):
    phase, magnitude = maco_inputs(3, 3, 20, 22, device=device)
    shared = pv.maco_synthesis(phase, magnitude, backend="ext")
    expanded = pv.maco_synthesis(phase, magnitude.expand(3, -1, -1, -1), backend="ext")
    per_sample = pv.maco_synthesis(phase, magnitude.expand(3, -1, -1, -1).contiguous(), backend="ext")
    torch.testing.assert_close(shared, expanded, atol=0, rtol=0)
    torch.testing.assert_close(shared, per_sample, atol=0, rtol=0)
    _compare(pv.maco_synthesis, phase, torch.rand(3, 3, 20, 12, device=device) + 0.5, (20, 22), _atol(device, torch.float32))
    # a per-sample magnitude in a batch the CPU op runs in groups (2 + 1 samples of 3 x 512²)
    phase, _ = maco_inputs(3, 3, 512, 512, device=device)
    _compare(pv.maco_synthesis, phase, torch.rand(3, 3, 512, 257, device=device) + 0.5, (512, 512),
             _atol(device, torch.float32))


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    base = torch.randn(2, 3, 24, 40, device=device)
    phase = base[:, :, :, ::3]  # (2, 3, 24, 14), strided
    assert not phase.is_contiguous()
    magnitude = (torch.rand(3, 14, 24, device=device) + 0.1).transpose(1, 2)
    atol = _atol(device, torch.float32)
    _compare(pv.maco_synthesis, phase, magnitude, (24, 26), atol)
    spectrum = torch.randn(2, 3, 14, 24, 2, device=device).transpose(2, 3)
    _compare(pv.fourier_synthesis, spectrum, pv.fourier_scale((24, 27), device=device), (24, 27), atol)


@pytest.mark.parametrize("device", DEVICES)
def test_complex_spectrum_input_matches_pairs(device):
    spectrum, scale = fourier_inputs(2, 3, 16, 16, device=device)
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


@pytest.mark.parametrize("device", DEVICES)
def test_values_range_and_odd_width_keeps_every_column(device):
    phase, magnitude = maco_inputs(1, 3, 10, 11, device=device)
    out = pv.maco_synthesis(phase, magnitude, size=(10, 11), values_range=(-2.5, 2.5), backend="ext")
    assert out.shape == (1, 3, 10, 11)
    assert out.min() > -2.5 and out.max() < 2.5
    # the last column is real content, not a copy or a zero
    assert (out[..., -1] - out[..., -2]).abs().max() > 1e-3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("per_sample", [False, True])
def test_gradcheck_maco(device, per_sample):
    phase, magnitude = maco_inputs(2, 3, 6, 7, dtype=torch.float64, device=device, per_sample=per_sample)
    phase.requires_grad_(True)
    for phase_scale in (1.0, PHASE_SCALE):
        fn = lambda p: pv.maco_synthesis(p, magnitude, size=(6, 7), phase_scale=phase_scale, backend="ext")  # noqa: E731
        assert torch.autograd.gradcheck(fn, (phase,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [(6, 6), (5, 7)])
def test_gradcheck_fourier(device, size):
    spectrum, scale = fourier_inputs(2, 3, *size, dtype=torch.float64, device=device)
    spectrum.requires_grad_(True)
    fn = lambda z: pv.fourier_synthesis(z, scale, size=size, values_range=(-1.0, 1.0), backend="ext")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (spectrum,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_maco(device, dtype):
    phase, magnitude = maco_inputs(2, 3, 8, 9, dtype=dtype, device=device)
    phase.requires_grad_(True)
    torch.library.opcheck(torch.ops.phasevis.maco_synthesis.default, (phase, magnitude) + op_args(8, 9, 3, dtype, device))
    torch.library.opcheck(torch.ops.phasevis.maco_synthesis.default,
                          (phase, magnitude) + op_args(8, 9, 3, dtype, device) + (PHASE_SCALE,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_fourier(device, dtype):
    spectrum, scale = fourier_inputs(2, 3, 8, 8, dtype=dtype, device=device)
    spectrum.requires_grad_(True)
    torch.library.opcheck(torch.ops.phasevis.fourier_synthesis.default, (spectrum, scale) + op_args(8, 8, 3, dtype, device))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_backward_ops(device):
    args = op_args(8, 8, 3, torch.float32, device)
    k = args[4]
    phase, magnitude = maco_inputs(2, 3, 8, 8, device=device)
    out, x, phase_stats, image_stats = torch.ops.phasevis.maco_synthesis(phase, magnitude, *args)
    torch.library.opcheck(
        torch.ops.phasevis.maco_synthesis_backward.default,
        (torch.randn_like(out), phase, magnitude, x, phase_stats, image_stats, k, -1.0, 2.0, 1e-4),
    )
    out, x, phase_stats, image_stats = torch.ops.phasevis.maco_synthesis(phase, magnitude, *args, 2.0)
    torch.library.opcheck(
        torch.ops.phasevis.maco_synthesis_backward.default,
        (torch.randn_like(out), phase, magnitude, x, phase_stats, image_stats, k, -1.0, 2.0, 1e-4, 2.0),
    )
    spectrum, scale = fourier_inputs(2, 3, 8, 8, device=device)
    out, x, spectrum_stats, image_stats = torch.ops.phasevis.fourier_synthesis(spectrum, scale, *args)
    torch.library.opcheck(
        torch.ops.phasevis.fourier_synthesis_backward.default,
        (torch.randn_like(out), spectrum, scale, x, spectrum_stats, image_stats, k, -1.0, 2.0, 1e-4),
    )


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph_no_graph_breaks(device):
    phase, magnitude = maco_inputs(2, 3, 16, 16, device=device)
    spectrum, scale = fourier_inputs(2, 3, 16, 16, device=device)
    k = pv.default_color_matrix(3, device=device)

    def step(p, z):
        a = pv.maco_synthesis(p, magnitude, color_matrix=k, backend="ext")
        b = pv.fourier_synthesis(z, scale, color_matrix=k, backend="ext")
        return (a * b).mean()

    compiled = torch.compile(step, fullgraph=True, options=inductor_options())
    p1, z1 = phase.clone().requires_grad_(True), spectrum.clone().requires_grad_(True)
    p2, z2 = phase.clone().requires_grad_(True), spectrum.clone().requires_grad_(True)
    compiled(p1, z1).backward()
    step(p2, z2).backward()
    torch.testing.assert_close(p1.grad, p2.grad)
    torch.testing.assert_close(z1.grad, z2.grad)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ["maco_synthesis", "fourier_synthesis"])
def test_autograd_is_the_cpp_kernel_and_only_the_image_is_differentiable(device, op):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"phasevis::{op}", "Autograd")
    if op == "maco_synthesis":
        head, fixed = maco_inputs(2, 3, 8, 8, dtype=torch.float64, device=device)
    else:
        head, fixed = fourier_inputs(2, 3, 8, 8, dtype=torch.float64, device=device)
    head = head.clone().requires_grad_(True)
    args = (8, 8, 0.0, 1.0, pv.default_color_matrix(3, dtype=torch.float64, device=device), 1e-4)
    image, x, head_stats, image_stats = getattr(torch.ops.phasevis, op)(head, fixed, *args)
    assert image.requires_grad and not (x.requires_grad or head_stats.requires_grad or image_stats.requires_grad)
    (grad,) = torch.autograd.grad(image.sum(), head)
    assert grad.shape == head.shape and torch.isfinite(grad).all()
    with torch.no_grad():
        assert not getattr(torch.ops.phasevis, op)(head, fixed, *args)[0].requires_grad


def _poke(t, value, index):
    t = t.clone()
    t.view(-1)[index] = value
    return t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["head", "fixed"])
@pytest.mark.parametrize("op", ["maco", "fourier"])
def test_non_finite_input_raises_naming_it(device, op, where, value):
    """The ops' first passes find a non-finite value wherever it is, including the bins of the
    self-conjugate columns (index 0: DC) and the last one."""
    fn, (head, fixed), names = {
        "maco": (pv.maco_synthesis, maco_inputs(2, 3, 8, 10, device=device), ("phase", "magnitude")),
        "fourier": (pv.fourier_synthesis, fourier_inputs(2, 3, 8, 10, device=device), ("spectrum", "scale")),
    }[op]
    name = names[where == "fixed"]
    if name == "magnitude" and value < 0:  # the magnitude's sign is checked first
        value = -value
    for index in (0, 7, -1):
        poked = _poke(head if where == "head" else fixed, value, index % (head if where == "head" else fixed).numel())
        args = (poked, fixed) if where == "head" else (head, poked)
        with pytest.raises(InvalidArgument, match=f"{name} contains NaN or infinite values"):
            fn(*args, size=(8, 10), backend="ext")


def test_raw_cpu_op_raises_the_value_error_itself():
    """The CPU kernels check in their first pass, so callers of the raw op (the render loop) get it too."""
    phase, magnitude = maco_inputs(2, 3, 8, 8)
    args = op_args(8, 8, 3, torch.float32, "cpu")
    with pytest.raises(ValueError, match="phase contains NaN or infinite values"):
        torch.ops.phasevis.maco_synthesis(_poke(phase, math.nan, 5), magnitude, *args)
    with pytest.raises(ValueError, match="magnitude contains NaN or infinite values"):
        torch.ops.phasevis.maco_synthesis(phase, _poke(magnitude, math.inf, 5), *args)


def test_huge_finite_inputs_are_not_taken_for_non_finite():
    """In float64 a sum of squares can overflow with every value finite: not an error."""
    phase, magnitude = maco_inputs(1, 3, 8, 8, dtype=torch.float64)
    out = pv.maco_synthesis(phase * 1e200, magnitude, backend="ext")
    assert out.shape == (1, 3, 8, 8)


# ---------------------------------------------------------------------------
# one device only
# ---------------------------------------------------------------------------


def test_ops_called_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    cases = [maco_inputs(2, 3, 32, 30) for _ in range(8)]
    expected = [pv.maco_synthesis(p, m, backend="torch") for p, m in cases]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda pm: pv.maco_synthesis(*pm, backend="ext"), cases))
    for got, want in zip(results, expected):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


@requires_cuda_ext
@pytest.mark.cuda
def test_cuda_matches_cpu_kernel():
    phase, magnitude = maco_inputs(3, 3, 64, 63)
    cpu = pv.maco_synthesis(phase, magnitude, size=(64, 63), backend="ext")
    gpu = pv.maco_synthesis(phase.cuda(), magnitude.cuda(), size=(64, 63), backend="ext")
    torch.testing.assert_close(gpu.cpu(), cpu, atol=5e-5, rtol=0)


@requires_cuda_ext
@pytest.mark.cuda
@pytest.mark.parametrize("offset", [1, 2])
def test_cuda_unaligned_views(offset):
    """Inputs that start off a 16-byte boundary take the one-element chunks; same values and grads."""
    b, c, h, w = 2, 3, 32, 30
    half = w // 2 + 1
    for fn, numel, shape, other in [
        (pv.maco_synthesis, b * c * h * half, (b, c, h, half), torch.rand(c, h, half, device="cuda") + 0.1),
        (pv.fourier_synthesis, b * c * h * half * 2, (b, c, h, half, 2), pv.fourier_scale((h, w), device="cuda")),
    ]:
        buffer = torch.randn(numel + offset, device="cuda", requires_grad=True)
        head = buffer[offset:].view(shape)
        assert head.data_ptr() % 16 != 0
        head_ref = head.detach().cpu().double().requires_grad_(True)
        out = fn(head, other, size=(h, w), backend="ext")
        out_ref = fn(head_ref, other.cpu().double(), size=(h, w), backend="torch")
        torch.testing.assert_close(out.cpu().double(), out_ref, atol=5e-5, rtol=0)
        grad_out = torch.randn_like(out_ref)
        out.backward(grad_out.to(out))
        out_ref.backward(grad_out)
        grad = buffer.grad[offset:].view(shape).cpu().double()
        torch.testing.assert_close(grad, head_ref.grad, atol=5e-5 * max(head_ref.grad.abs().max().item(), 1.0), rtol=0)


@requires_cuda_ext
@pytest.mark.cuda
def test_cuda_on_a_side_stream():
    """The kernels and the cuFFT plans run on the current stream, whichever it is."""
    phase, magnitude = maco_inputs(4, 3, 128, 128, device="cuda")
    want = pv.maco_synthesis(phase, magnitude, size=(128, 128), backend="ext")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = pv.maco_synthesis(phase, magnitude, size=(128, 128), backend="ext")
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


@requires_cuda_ext
@pytest.mark.cuda
def test_cuda_graph_captures_a_full_maco_step():
    """A whole optimization step (synthesis, a small CNN, backward, optimizer) replays from a CUDA graph."""
    torch.manual_seed(0)
    size = 64
    magnitude = torch.rand(3, size, size // 2 + 1, device="cuda") + 0.1
    k = pv.default_color_matrix(3, device="cuda")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)
    ).cuda()
    model.requires_grad_(False)
    phase = torch.randn(4, 3, size, size // 2 + 1, device="cuda", requires_grad=True)
    opt = torch.optim.Adam([phase], lr=0.05, capturable=True)
    targets = torch.arange(4, device="cuda")

    def step():
        opt.zero_grad(set_to_none=False)
        images = pv.ops.maco_synthesis_op(phase, magnitude, size, size, 0.0, 1.0, k, 1e-4)
        logits = model(images)
        loss = -logits.gather(1, targets[:, None]).sum()
        loss.backward()
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up: plans, allocator, optimizer state
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step()
    before = phase.detach().clone()
    losses = []
    for _ in range(5):
        graph.replay()
        losses.append(static_loss.item())
    assert not torch.equal(before, phase.detach())  # the replay really stepped the optimizer
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("phase_scale", [0, -1.0, math.nan, math.inf, True, "2"])
def test_phase_scale_must_be_a_positive_number(phase_scale):
    phase, magnitude = maco_inputs(1, 3, 8, 8)
    for backend in ("ext", "torch"):
        with pytest.raises(InvalidArgument, match="phase_scale"):
            pv.maco_synthesis(phase, magnitude, phase_scale=phase_scale, backend=backend)


def test_raw_op_refuses_a_bad_phase_scale_as_an_internal_error():
    phase, magnitude = maco_inputs(1, 3, 8, 8)
    with pytest.raises(RuntimeError, match="phase_scale must be finite and > 0") as caught:
        torch.ops.phasevis.maco_synthesis(phase, magnitude, *op_args(8, 8, 3, torch.float32, "cpu"), 0.0)
    assert not isinstance(caught.value, ValueError)
