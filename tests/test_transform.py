import pytest
import torch

from phasevis_ext.render.crops import eval_boxes, eval_crops, random_crops


def generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def distinct_images(count, size=32):
    """Each image is constant = its index, so every crop reveals which image it came from."""
    return torch.arange(count, dtype=torch.float32).view(count, 1, 1, 1).expand(count, 3, size, size).contiguous()


def test_shape_and_unit_major_order():
    out = random_crops(distinct_images(3), 4, 12, (0.3, 0.9), generators=generators([0, 1, 2]))
    assert out.shape == (12, 3, 12, 12)
    expected = torch.arange(3, dtype=torch.float32).repeat_interleave(4)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), expected)


def test_crops_stay_inside_the_image():
    # A border of ones around zeros: a box reaching outside would average in roi_align's zero padding
    # and lower the crop's mean at the edges; a box inside never sees anything but the image.
    images = torch.ones(1, 3, 40, 40)
    out = random_crops(images, 64, 8, (0.9, 1.0), generators=generators([3]))
    torch.testing.assert_close(out, torch.ones_like(out))


def test_same_generators_same_crops():
    images = torch.rand(2, 3, 32, 32)
    a = random_crops(images, 3, 16, generators=generators([5, 6]), noise=0.1)
    b = random_crops(images, 3, 16, generators=generators([5, 6]), noise=0.1)
    c = random_crops(images, 3, 16, generators=generators([5, 7]), noise=0.1)
    assert torch.equal(a, b)
    assert torch.equal(a[:3], c[:3]) and not torch.equal(a[3:], c[3:])


@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_unit_crops_do_not_depend_on_the_batch(noise):
    images = torch.rand(3, 3, 32, 32)
    batched = random_crops(images, 4, 16, generators=generators([10, 11, 12]), noise=noise)
    alone = random_crops(images[1:2], 4, 16, generators=generators([11]), noise=noise)
    torch.testing.assert_close(batched[4:8], alone, rtol=0, atol=0)


def test_noise_is_added():
    images = torch.full((1, 3, 32, 32), 0.5)
    clean = random_crops(images, 2, 16, generators=generators([0]))
    noisy = random_crops(images, 2, 16, generators=generators([0]), noise=0.2)
    assert torch.allclose(clean, torch.full_like(clean, 0.5))
    assert 0.15 < (noisy - 0.5).std() < 0.25


def test_downsampling_is_antialiased():
    # White noise shrunk 4x: averaging each 4x4 block divides its std by 4; one sample per pixel would not.
    noise = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    out = random_crops(noise, 1, 64, (1.0, 1.0), generators=generators([0]))
    assert out.std() < 0.6 * noise.std() / 2


def test_gradients_reach_only_the_cropped_image():
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = random_crops(images, 2, 16, generators=generators([0, 1]))
    out[:2].sum().backward()
    assert images.grad[0].abs().sum() > 0 and images.grad[1].abs().sum() == 0


def test_eval_crops_are_fixed():
    images = torch.rand(2, 3, 48, 48)
    a, b = eval_crops(images, 16, (0.25, 1.0)), eval_crops(images, 16, (0.25, 1.0))
    count = len(eval_boxes((0.25, 1.0)))
    assert a.shape == (2 * count, 3, 16, 16) and torch.equal(a, b)
    torch.testing.assert_close(eval_crops(images[1:], 16, (0.25, 1.0)), a[count:])
    # the first box is the whole image when box_size reaches 1
    whole = eval_crops(images, 48, (1.0, 1.0))
    torch.testing.assert_close(whole, images, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("box_size", [(0.0, 0.5), (0.6, 0.5), (0.5, 1.2), (-0.1, 0.2), (0.5,), "big"])
def test_box_size_validation(box_size):
    with pytest.raises(ValueError, match="box_size"):
        random_crops(torch.rand(1, 3, 16, 16), 2, 8, box_size, generators=generators([0]))
    with pytest.raises(ValueError, match="box_size"):
        eval_crops(torch.rand(1, 3, 16, 16), 8, box_size)


def test_argument_validation():
    images = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="crops"):
        random_crops(images, 0, 8, generators=generators([0, 1]))
    with pytest.raises(ValueError, match="generators"):
        random_crops(images, 1, 8, generators=generators([0]))
    with pytest.raises(ValueError, match="noise"):
        random_crops(images, 1, 8, generators=generators([0, 1]), noise=-1.0)
