"""The native ops: loading the extension, fake kernels and autograd.

The synthesis ops return the image together with what their backward needs (x, the unnormalized
inverse transform, and per-sample statistics); the functions here expose only the image. `crop_resize` is the CPU kernel behind
the batched crops (the values of torchvision's roi_align, with a parallel backward).
"""
from __future__ import annotations

import torch

try:
    from .. import _C  # noqa: F401  (loading the library registers torch.ops.phasevis)

    _LOAD_ERROR: Exception | None = None
except ImportError as error:  # the pure-PyTorch reference still works
    _C = None
    _LOAD_ERROR = error


def extension_available() -> bool:
    """Whether the compiled ops are loaded (`backend="auto"` then uses them)."""
    return _C is not None


def extension_load_error() -> Exception | None:
    return _LOAD_ERROR


def cuda_kernels_available() -> bool:
    return _C is not None and bool(_C.with_cuda)


def runs_on(device: torch.device) -> bool:
    """Whether the compiled ops have kernels for `device`."""
    if _C is None:
        return False
    return device.type == "cpu" or (device.type == "cuda" and cuda_kernels_available())


def maco_synthesis_op(phase, magnitude, height: int, width: int, lo: float, hi: float, color_matrix, eps: float,
                      phase_scale: float = 1.0):
    return torch.ops.phasevis.maco_synthesis.default(phase, magnitude, height, width, lo, hi, color_matrix, eps,
                                                     phase_scale)[0]


def fourier_synthesis_op(spectrum, scale, height: int, width: int, lo: float, hi: float, color_matrix, eps: float):
    """`spectrum` is real (B, C, H, Wr, 2)."""
    return torch.ops.phasevis.fourier_synthesis.default(spectrum, scale, height, width, lo, hi, color_matrix, eps)[0]


def crop_resize_op(images, boxes, out_size: int):
    """(K, C, out, out) crops of `images` at `boxes` (K, 5) = (index, x1, y1, x2, y2), CPU only."""
    return torch.ops.phasevis.crop_resize.default(images, boxes, out_size)


def crop_kernel_available(images) -> bool:
    """Whether `crop_resize` has a kernel for these images (CPU, float32/float64)."""
    return _C is not None and images.device.type == "cpu" and images.dtype in (torch.float32, torch.float64)


if _C is not None:

    def _fake_outputs(head, fixed, color_matrix, height, width, stats_columns):
        # The checks that need no values, so a meta tensor among real ones cannot slip through.
        for name, t in (("magnitude/scale", fixed), ("color_matrix", color_matrix)):
            torch._check(t.device == head.device, lambda: f"{name} must be on {head.device}, got {t.device}")
        torch._check(head.dim() >= 4, lambda: f"the synthesis input must have 4 or 5 dimensions, got {head.dim()}")
        torch._check(head.shape[2] == height, lambda: f"height {height} does not match {head.shape[2]} rows")
        torch._check(width // 2 + 1 == head.shape[3], lambda: f"width {width} does not match {head.shape[3]} columns")
        batch, channels = head.shape[0], head.shape[1]
        image = head.new_empty((batch, channels, height, width))
        stats = head.new_empty((batch, stats_columns), dtype=torch.float64)
        image_stats = head.new_empty((batch, 2), dtype=torch.float64)
        return image, torch.empty_like(image), stats, image_stats

    @torch.library.register_fake("phasevis::maco_synthesis")
    def _(phase, magnitude, height, width, lo, hi, color_matrix, eps, phase_scale=1.0):
        return _fake_outputs(phase, magnitude, color_matrix, height, width, 2)

    @torch.library.register_fake("phasevis::fourier_synthesis")
    def _(spectrum, scale, height, width, lo, hi, color_matrix, eps):
        return _fake_outputs(spectrum, scale, color_matrix, height, width, 3)

    @torch.library.register_fake("phasevis::maco_synthesis_backward")
    def _(grad_out, phase, magnitude, x, phase_stats, image_stats, color_matrix, lo, hi, eps, phase_scale=1.0):
        return torch.empty_like(phase)

    @torch.library.register_fake("phasevis::fourier_synthesis_backward")
    def _(grad_out, spectrum, scale, x, spectrum_stats, image_stats, color_matrix, lo, hi, eps):
        return torch.empty_like(spectrum)

    # The synthesis ops' autograd is registered in C++ (csrc/synthesis_autograd.cpp): on small
    # images the Python formula's host overhead cost as much as the kernels.

    @torch.library.register_fake("phasevis::crop_resize")
    def _(images, boxes, out_size):
        torch._check(boxes.device == images.device, lambda: f"boxes must be on {images.device}, got {boxes.device}")
        torch._check(images.dim() == 4, lambda: f"images must be (N, C, H, W), got {images.dim()} dimensions")
        torch._check(boxes.dim() == 2 and boxes.shape[1] == 5, lambda: "boxes must be (K, 5)")
        return images.new_empty((boxes.shape[0], images.shape[1], out_size, out_size))

    @torch.library.register_fake("phasevis::crop_resize_backward")
    def _(grad, boxes, batch, height, width):
        return grad.new_empty((batch, grad.shape[1], height, width))

    def _crop_setup_context(ctx, inputs, output):
        images, boxes, _ = inputs
        ctx.save_for_backward(boxes)
        ctx.image_shape = (images.shape[0], images.shape[2], images.shape[3])

    def _crop_backward(ctx, grad):
        (boxes,) = ctx.saved_tensors
        grad_images = None
        if ctx.needs_input_grad[0]:
            grad_images = torch.ops.phasevis.crop_resize_backward.default(grad.contiguous(), boxes, *ctx.image_shape)
        return grad_images, None, None

    torch.library.register_autograd("phasevis::crop_resize", _crop_backward, setup_context=_crop_setup_context)
