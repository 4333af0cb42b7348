"""The CPU crop kernel against torchvision's roi_align (aligned=True, adaptive sampling), its oracle."""
import pytest
import torch
from conftest import requires_ext
from torchvision.ops import roi_align

from phasevis_ext import ops
from phasevis_ext.render.crops import eval_crops, random_crops

pytestmark = requires_ext


def _boxes(count, batch, height, width, dtype, *, inside=False, generator=None):
    index = torch.randint(0, batch, (count,), generator=generator).to(dtype)
    side = torch.rand(count, generator=generator, dtype=dtype) * max(height, width) * 0.9 + 0.2
    if inside:
        side = side.clamp(max=min(height, width))
        x1 = torch.rand(count, generator=generator, dtype=dtype) * (width - side)
        y1 = torch.rand(count, generator=generator, dtype=dtype) * (height - side)
    else:  # partly outside the image, as roi_align allows
        x1 = torch.rand(count, generator=generator, dtype=dtype) * width * 1.2 - 0.3 * width
        y1 = torch.rand(count, generator=generator, dtype=dtype) * height * 1.2 - 0.3 * height
    return torch.stack([index, x1, y1, x1 + side, y1 + side * 0.8], dim=1)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("batch,height,width,out,count", [
    (1, 64, 64, 32, 5),      # downsampling: several samples per pixel
    (3, 20, 33, 48, 9),      # upsampling, non-square
    (2, 384, 384, 224, 12),  # the engine's case
    (2, 1, 7, 5, 4),         # a one-row image
    (1, 3, 2, 1, 3),         # a one-pixel output
])
@pytest.mark.parametrize("inside", [True, False])
def test_matches_roi_align(dtype, tol, batch, height, width, out, count, inside):
    g = torch.Generator().manual_seed(height * 31 + out)
    images = torch.rand(batch, 3, height, width, dtype=dtype, generator=g, requires_grad=True)
    boxes = _boxes(count, batch, height, width, dtype, inside=inside, generator=g)
    expected = roi_align(images, boxes, out, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    got = ops.crop_resize_op(images, boxes, out)
    torch.testing.assert_close(got, expected, rtol=0, atol=tol)
    grad = torch.randn(expected.shape, dtype=dtype, generator=g)
    (want,) = torch.autograd.grad(expected, images, grad)
    (have,) = torch.autograd.grad(got, images, grad)
    torch.testing.assert_close(have, want, rtol=0, atol=tol * 10)


def test_empty_and_degenerate_boxes_give_zeros_like_roi_align():
    images = torch.rand(1, 2, 10, 10, dtype=torch.float64)
    boxes = torch.tensor([[0, 3.0, 3.0, 3.0, 3.0],       # zero size
                          [0, 50.0, 50.0, 60.0, 60.0],   # entirely outside
                          [0, 6.0, 6.0, 2.0, 2.0]], dtype=torch.float64)  # reversed
    expected = roi_align(images, boxes, 4, 1.0, -1, True)
    torch.testing.assert_close(ops.crop_resize_op(images, boxes, 4), expected, rtol=0, atol=1e-12)


def test_gradcheck_and_opcheck():
    images = torch.rand(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    boxes = _boxes(5, 2, 9, 11, torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda x: ops.crop_resize_op(x, boxes, 6), (images,))
    torch.library.opcheck(torch.ops.phasevis.crop_resize.default, (images, boxes, 6))
    grad = torch.rand(5, 3, 6, 6, dtype=torch.float64)
    torch.library.opcheck(torch.ops.phasevis.crop_resize_backward.default, (grad, boxes, 2, 9, 11))


def test_torch_compile_fullgraph():
    images = torch.rand(2, 3, 40, 40, requires_grad=True)
    boxes = _boxes(6, 2, 40, 40, torch.float32, inside=True, generator=torch.Generator().manual_seed(2))
    compiled = torch.compile(lambda x, b: ops.crop_resize_op(x, b, 16).square().sum(), fullgraph=True)
    value = compiled(images, boxes)
    (grad,) = torch.autograd.grad(value, images)
    expected = ops.crop_resize_op(images, boxes, 16).square().sum()
    (want,) = torch.autograd.grad(expected, images)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(grad, want)


def test_deterministic_across_thread_counts():
    images = torch.rand(3, 3, 96, 96, requires_grad=True)
    boxes = _boxes(24, 3, 96, 96, torch.float32, inside=True, generator=torch.Generator().manual_seed(3))
    grad = torch.rand(24, 3, 32, 32)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = ops.crop_resize_op(images, boxes, 32)
            results.append((out, torch.autograd.grad(out, images, grad)[0]))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize("boxes,message", [
    (torch.tensor([[2.0, 0, 0, 4, 4]]), "image index"),
    (torch.tensor([[0.5, 0, 0, 4, 4]]), "image index"),
    (torch.tensor([[0.0, 0, float("nan"), 4, 4]]), "finite"),
    (torch.tensor([[0.0, 0, 0, 1e12, 4]]), "more than 4 times"),
    (torch.tensor([[0.0, 0, 0, 4]]), r"\(K, 5\)"),
    (torch.tensor([[0.0, 0, 0, 4, 4]], dtype=torch.float64), "dtype"),
])
def test_bad_boxes_are_named(boxes, message):
    with pytest.raises(RuntimeError, match=message):
        ops.crop_resize_op(torch.rand(2, 3, 8, 8), boxes, 4)


def test_random_and_eval_crops_use_the_kernel_with_roi_align_values():
    assert ops.crop_kernel_available(torch.rand(1, 3, 8, 8))
    images = torch.rand(3, 3, 64, 64, requires_grad=True)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    crops = random_crops(images, 4, 32, generators=gens)
    assert crops.grad_fn is not None and "crop_resize" in crops.grad_fn.name().lower()
    crops.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    # eval crops are centred boxes: compare against roi_align on the same boxes
    evaluated = eval_crops(images.detach(), 32)
    side = 64.0
    box = torch.tensor([[i, 0.0, 0.0, side, side] for i in range(3)])
    full = roi_align(images.detach(), box, 32, 1.0, -1, True)
    torch.testing.assert_close(evaluated[0::evaluated.shape[0] // 3], full, rtol=0, atol=1e-5)


def test_fuzz_against_roi_align():
    # 300 random shapes and boxes (inside, outside, tiny, huge up to 4x the image), float64
    g = torch.Generator().manual_seed(12345)
    for case in range(300):
        batch, channels = (int(v) for v in torch.randint(1, 4, (2,), generator=g))
        height, width, out = (int(v) for v in torch.randint(1, 40, (3,), generator=g))
        count = int(torch.randint(1, 6, (1,), generator=g))
        images = torch.rand(batch, channels, height, width, dtype=torch.float64, generator=g, requires_grad=True)
        scale = torch.rand(count, 2, dtype=torch.float64, generator=g) * 4
        start = (torch.rand(count, 2, dtype=torch.float64, generator=g) * 1.6 - 0.3) * torch.tensor([width, height])
        index = torch.randint(0, batch, (count, 1), generator=g).double()
        boxes = torch.cat([index, start, start + scale * torch.tensor([width, height])], dim=1)
        want = roi_align(images, boxes, out, 1.0, -1, True)
        got = ops.crop_resize_op(images, boxes, out)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12, msg=f"case {case}")
        grad = torch.randn(want.shape, dtype=torch.float64, generator=g)
        torch.testing.assert_close(torch.autograd.grad(got, images, grad)[0], torch.autograd.grad(want, images, grad)[0],
                                   rtol=0, atol=1e-11, msg=f"case {case}")


def test_uniform_crop_centres_keep_boxes_inside_and_reach_the_borders():
    from phasevis_ext.render.crops import CENTER_STD, _uniform_centers

    generator = torch.Generator().manual_seed(0)
    sides = torch.full((4000,), 0.25)
    centers = _uniform_centers(sides, (64, 80), generator)
    half = torch.tensor([0.25 * 64 / 2 / 80, 0.125])  # the shorter side sets the box: 16 px of 80 and of 64
    assert (centers >= half - 1e-6).all() and (centers <= 1 - half + 1e-6).all()
    near_left = (centers[:, 0] < half[0] + 0.05).float().mean()
    gaussian = 0.5 + CENTER_STD * torch.randn(4000, generator=generator)
    gaussian_near_left = (gaussian.clamp(min=float(half[0])) < half[0] + 0.05).float().mean()
    assert near_left > 3 * gaussian_near_left  # small boxes see the border far more often
    images = torch.rand(2, 3, 40, 40)
    crops = random_crops(images, 3, 16, (0.25, 1.0), generators=[torch.Generator().manual_seed(i) for i in range(2)],
                         centers="uniform")
    assert crops.shape == (6, 3, 16, 16)
    with pytest.raises(ValueError, match="centers"):
        random_crops(images, 3, 16, generators=[torch.Generator()] * 2, centers="torus")
