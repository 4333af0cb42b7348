"""Public synthesis functions: validate, then run the fused op or the pure-PyTorch reference.

Semantics (per sample b; means and unbiased stds run over all non-batch elements of b):
  MACO head     φ̂ = (φ − mean φ)/(std φ + eps),  X = M·exp(i·s·φ̂), s = phase_scale
  Fourier head  ẑ = (z − mean z)/(std z + eps) with complex mean and std, X = ẑ·scale
  shared tail   x = irfft2(X, s=size), x̂ = (x − mean x)/(std x + eps),
                y[d] = Σ_c x̂[c]·K[c, d],  out = lo + (hi − lo)·sigmoid(y)

With B = 1, C = 3, even W, the default K, float32, values_range = (−2.5, 2.5) and phase_scale = 1,
`maco_synthesis` equals Horama 0.3.0's `maco_preconditioner` (measured within 1e-5).

Why the phase scale matters: the spectrum's bins all add up at pixel (0, 0), the image's corners,
with the weight E[cos s·φ̂] ≥ 1 − s²/2 (cos t ≥ 1 − t²/2, and φ̂ has mean 0 and variance ~1).
At MACO's s = 1 at least half of every bin's amplitude is in phase at the corners, whatever the
optimizer does: a bright or dark blob there that the sigmoid saturates. At s = π/√3 (the spread of
a uniform phase, `parameterizations.PHASE_SCALE`) the bound is void and a uniform start is left
uniform (docs/benchmarks.md, "Lattice and borders").

The magnitude is held exactly only where the rfft layout is free: irfft2 drops the imaginary
part of the self-conjugate bins (DC, the Nyquist row and column) and treats the redundant entries
of column 0 (and column W/2 for even W) as one Hermitian pair.
"""
from __future__ import annotations

import math

import torch

from ..checks import InvalidArgument, InvalidArgumentType, finite_number, image_size
from . import fused as ops
from .color import check_color_matrix
from .reference import fourier_synthesis_reference, maco_synthesis_reference

BACKENDS = ("auto", "ext", "torch")


def fourier_scale(size, decay: float = 1.0, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W//2+1) scale 1 / max(f, 1/max(H, W))^decay, f the radial frequency in cycles per pixel.

    Lucid's 1/f scaling without its constant factor, which the standardization makes moot.
    """
    height, width = image_size(size, "size")
    if not math.isfinite(decay) or decay < 0:
        raise InvalidArgument(f"decay must be a finite number >= 0, got {decay}")
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    radius = torch.sqrt(fx * fx + fy * fy).clamp_min(1.0 / max(height, width))
    return radius.pow(-decay).to(device=device, dtype=dtype)


def maco_synthesis(
    phase: torch.Tensor,
    magnitude: torch.Tensor,
    *,
    size=None,
    values_range=(0.0, 1.0),
    color_matrix: torch.Tensor | None = None,
    eps: float = 1e-4,
    phase_scale: float = 1.0,
    backend: str = "auto",
) -> torch.Tensor:
    """Image (B, C, H, W) from a phase (B, C, H, Wr) under a fixed magnitude (C, H, Wr) or (B, C, H, Wr)."""
    _check_head(phase, "phase", rank=4)
    batch, channels, height, half_width = phase.shape
    _check_tensor(magnitude, "magnitude", like=phase)
    if magnitude.shape not in ((channels, height, half_width), (batch, channels, height, half_width)):
        raise InvalidArgument(
            f"magnitude must have shape (C, H, Wr) = {(channels, height, half_width)} or (B, C, H, Wr), "
            f"got {tuple(magnitude.shape)}"
        )
    height, width = _output_size(size, height, half_width)
    lo, hi = _values_range(values_range)
    color_matrix = _color_matrix(color_matrix, channels, phase)
    _check_eps(eps)
    phase_scale = finite_number(phase_scale, "phase_scale", positive=True)
    use_extension = _use_extension(backend, phase)
    if _eager():
        if not use_extension:
            _check_finite(phase, "phase")
            _check_finite(magnitude, "magnitude")
        if _any_negative(magnitude):
            raise InvalidArgument("magnitude must be non-negative")
    if use_extension:
        return _run_op(torch.ops.phasevis.maco_synthesis.default, (phase, "phase"), (magnitude, "magnitude"),
                       height, width, lo, hi, color_matrix, eps, phase_scale)
    return maco_synthesis_reference(phase, magnitude, (height, width), (lo, hi), color_matrix, eps, phase_scale)


def fourier_synthesis(
    spectrum: torch.Tensor,
    scale: torch.Tensor,
    *,
    size=None,
    values_range=(0.0, 1.0),
    color_matrix: torch.Tensor | None = None,
    eps: float = 1e-4,
    backend: str = "auto",
) -> torch.Tensor:
    """Image from a spectrum, real (B, C, H, Wr, 2) or complex (B, C, H, Wr), and a real scale broadcastable to (H, Wr)."""
    if not isinstance(spectrum, torch.Tensor):
        raise InvalidArgumentType(f"spectrum must be a torch.Tensor, got {type(spectrum).__name__}")
    pairs = torch.view_as_real(spectrum) if spectrum.is_complex() else spectrum
    _check_head(pairs, "spectrum", rank=5)
    if pairs.shape[-1] != 2:
        raise InvalidArgument(f"a real spectrum must be (B, C, H, Wr, 2) holding (re, im), got {tuple(spectrum.shape)}")
    _, channels, height, half_width, _ = pairs.shape
    _check_tensor(scale, "scale", like=pairs)
    try:
        fits = torch.broadcast_shapes(scale.shape, (height, half_width)) == (height, half_width)
    except RuntimeError:
        fits = False
    if not fits:  # a scale that broadcast the spectrum up (e.g. (2, Wr) for H = 1) would change the image size
        raise InvalidArgument(f"scale must broadcast to (H, Wr) = {(height, half_width)}, got {tuple(scale.shape)}")
    height, width = _output_size(size, height, half_width)
    lo, hi = _values_range(values_range)
    color_matrix = _color_matrix(color_matrix, channels, pairs)
    _check_eps(eps)
    if _use_extension(backend, pairs):
        return _run_op(torch.ops.phasevis.fourier_synthesis.default, (pairs, "spectrum"), (scale, "scale"),
                       height, width, lo, hi, color_matrix, eps)
    if _eager():
        _check_finite(pairs, "spectrum")
        _check_finite(scale, "scale")
    complex_spectrum = spectrum if spectrum.is_complex() else torch.complex(pairs[..., 0], pairs[..., 1])
    return fourier_synthesis_reference(complex_spectrum, scale, (height, width), (lo, hi), color_matrix, eps)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _eager() -> bool:
    """Value checks sync with the device: run them in eager calls only, never while compiling or capturing."""
    if torch.compiler.is_compiling():
        return False
    return not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def _use_extension(backend: str, head: torch.Tensor) -> bool:
    if backend not in BACKENDS:
        raise InvalidArgument(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return False
    supported = ops.runs_on(head.device)
    if backend == "ext" and not supported:
        reason = ops.extension_load_error() or f"it was built without kernels for {head.device.type}"
        raise RuntimeError(f"backend='ext' requested but the extension cannot run here: {reason}")
    return supported


def _check_tensor(t, name: str, *, like: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise InvalidArgumentType(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != like.dtype:
        raise InvalidArgumentType(f"{name} must have the same dtype as the input ({like.dtype}), got {t.dtype}")
    if t.device != like.device:
        raise InvalidArgument(f"{name} must be on the same device as the input ({like.device}), got {t.device}")


def _check_head(t, name: str, *, rank: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise InvalidArgumentType(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64):
        raise InvalidArgumentType(f"{name} must be float32 or float64 (complex64/128 for a spectrum), got {t.dtype}")
    if t.dim() != rank:
        raise InvalidArgument(f"{name} must have {rank} dimensions, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise InvalidArgument(f"{name} has an empty batch")
    if t.numel() == 0:
        raise InvalidArgument(f"{name} has an empty dimension: shape {tuple(t.shape)}")


def _check_finite(t: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise InvalidArgument(f"{name} contains NaN or infinite values")


def _any_negative(t: torch.Tensor) -> bool:
    # On the CPU through NumPy, on this thread: for a magnitude's size the comparison costs less than
    # waking ATen's thread pool, which on a loaded machine took milliseconds (a quarter of the op).
    if t.device.type == "cpu":
        return bool((t.detach().numpy() < 0).any())
    return bool((t < 0).any())


def _run_op(op, head: tuple[torch.Tensor, str], fixed: tuple[torch.Tensor, str], *args) -> torch.Tensor:
    """The image of a native synthesis op, whose first passes find non-finite inputs: the CPU kernels
    raise a ValueError naming the argument themselves (here made an InvalidArgument, as every other
    check's). The CUDA kernels never synchronize with the host (a whole step can be captured in a
    CUDA graph), so they cannot raise; their per-sample statistics, which those passes make
    non-finite exactly when an input is, are read here instead, in eager calls: one small read where
    two full passes over the inputs would be. Only when they are not finite are the inputs looked at,
    to name the culprit (finite inputs whose squares overflow float64 are let through)."""
    if not _eager():
        return op(head[0], fixed[0], *args)[0]
    try:
        image, _, head_stats, image_stats = op(head[0], fixed[0], *args)
    except ValueError as error:  # TORCH_CHECK_VALUE: only the finiteness checks raise it
        raise InvalidArgument(str(error)) from None
    if head[0].device.type != "cpu" and not bool(torch.isfinite(torch.cat([head_stats, image_stats], 1)).all()):
        _check_finite(*head)
        _check_finite(*fixed)
    return image


def _check_eps(eps) -> None:
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise InvalidArgument(f"eps must be a finite number >= 0, got {eps!r}")


def _output_size(size, height: int, half_width: int) -> tuple[int, int]:
    if size is None:
        width = 2 * (half_width - 1)
        if width <= 0:
            raise InvalidArgument("size is required when the spectrum has a single column (W would be 0)")
        return height, width
    out_h, out_w = image_size(size, "size")
    if out_h != height:
        raise InvalidArgument(f"size[0] = {out_h} does not match the spectrum's H = {height}")
    if out_w // 2 + 1 != half_width:
        raise InvalidArgument(f"size[1] = {out_w} does not match the spectrum's Wr = {half_width}: need W // 2 + 1 == Wr")
    if out_h * out_w < 2:
        raise InvalidArgument("size must hold at least two pixels (the image std needs two)")
    return out_h, out_w


def _values_range(values_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in values_range)
    except (TypeError, ValueError):
        raise InvalidArgumentType(f"values_range must be a pair of numbers (lo, hi), got {values_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise InvalidArgument(f"values_range must be finite with lo < hi, got {(lo, hi)}")
    return lo, hi


def _color_matrix(color_matrix, channels: int, like: torch.Tensor) -> torch.Tensor:
    return check_color_matrix(color_matrix, channels, device=like.device, dtype=like.dtype, move=False, finite=False)
