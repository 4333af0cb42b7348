"""The CUDA kernels against the reference; skipped without a GPU."""
import pytest
import torch

import phasevis_ext as pv
from conftest import requires_cuda_ext
from synthesis_cases import SHAPES, fourier_inputs, maco_inputs, op_args

pytestmark = [requires_cuda_ext, pytest.mark.cuda]
CUDA_SHAPES = SHAPES + [(2, 3, 224, 224), (4, 3, 255, 257), (1, 3, 512, 384), (2, 1, 3, 2), (2, 5, 16, 12), (1, 4, 9, 8)]


def _compare(fn, head, other, size, atol):
    """Against the float64 reference on the CPU: the definition of irfft2 for any input, where
    cuFFT's c2r treats a non-Hermitian spectrum its own way."""
    head_ext = head.clone().requires_grad_(True)
    head_ref = head.detach().cpu().double().requires_grad_(True)
    out_ext = fn(head_ext, other, size=size, values_range=(-1.0, 2.0), backend="ext")
    out_ref = fn(head_ref, other.cpu().double(), size=size, values_range=(-1.0, 2.0), backend="torch")
    torch.testing.assert_close(out_ext.cpu().double(), out_ref, atol=atol, rtol=0)
    grad_out = torch.randn_like(out_ref)
    (g_ext,) = torch.autograd.grad(out_ext, head_ext, grad_out.to(out_ext))
    (g_ref,) = torch.autograd.grad(out_ref, head_ref, grad_out)
    torch.testing.assert_close(g_ext.cpu().double(), g_ref, atol=atol * max(g_ref.abs().max().item(), 1.0), rtol=0)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 5e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("shape", CUDA_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_maco_matches_reference(shape, dtype, atol):
    b, c, h, w = shape
    phase, magnitude = maco_inputs(b, c, h, w, dtype=dtype, device="cuda")
    _compare(pv.maco_synthesis, phase, magnitude, (h, w), atol)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 5e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("shape", CUDA_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_fourier_matches_reference(shape, dtype, atol):
    b, c, h, w = shape
    spectrum, scale = fourier_inputs(b, c, h, w, dtype=dtype, device="cuda")
    _compare(pv.fourier_synthesis, spectrum, scale, (h, w), atol)


def test_cuda_matches_cpu_kernel():
    phase, magnitude = maco_inputs(3, 3, 64, 63)
    cpu = pv.maco_synthesis(phase, magnitude, size=(64, 63), backend="ext")
    gpu = pv.maco_synthesis(phase.cuda(), magnitude.cuda(), size=(64, 63), backend="ext")
    torch.testing.assert_close(gpu.cpu(), cpu, atol=5e-5, rtol=0)


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


def test_cuda_per_sample_magnitude():
    phase, magnitude = maco_inputs(3, 3, 32, 32, device="cuda", per_sample=True)
    _compare(pv.maco_synthesis, phase, magnitude, (32, 32), 5e-5)


def test_cuda_gradcheck():
    phase, magnitude = maco_inputs(2, 3, 6, 7, dtype=torch.float64, device="cuda")
    phase.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: pv.maco_synthesis(p, magnitude, size=(6, 7), backend="ext"), (phase,))
    spectrum, scale = fourier_inputs(2, 3, 6, 6, dtype=torch.float64, device="cuda")
    spectrum.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: pv.fourier_synthesis(z, scale, size=(6, 6), backend="ext"), (spectrum,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_opcheck(dtype):
    phase, magnitude = maco_inputs(2, 3, 8, 9, dtype=dtype, device="cuda")
    phase.requires_grad_(True)
    torch.library.opcheck(torch.ops.phasevis.maco_synthesis.default, (phase, magnitude) + op_args(8, 9, 3, dtype, "cuda"))
    spectrum, scale = fourier_inputs(2, 3, 8, 8, dtype=dtype, device="cuda")
    spectrum.requires_grad_(True)
    torch.library.opcheck(torch.ops.phasevis.fourier_synthesis.default, (spectrum, scale) + op_args(8, 8, 3, dtype, "cuda"))


def test_cuda_compile_fullgraph():
    phase, magnitude = maco_inputs(2, 3, 32, 32, device="cuda")
    k = pv.default_color_matrix(3, device="cuda")
    step = lambda p: pv.maco_synthesis(p, magnitude, color_matrix=k, backend="ext").square().mean()  # noqa: E731
    compiled = torch.compile(step, fullgraph=True)
    p1, p2 = phase.clone().requires_grad_(True), phase.clone().requires_grad_(True)
    compiled(p1).backward()
    step(p2).backward()
    torch.testing.assert_close(p1.grad, p2.grad)


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
