"""Image parameterizations for N units at once: one (N, ...) parameter tensor, images (N, C, H, W) in [0, 1].

    maco     the Fourier phase (N, C, H, W//2+1) under a fixed natural-image magnitude (MACO)
    fourier  the lucid spectrum (N, C, H, W//2+1, 2) scaled by 1/f^decay
    pixel    sigmoid of raw pixels (N, C, H, W)

C is any number of channels. maco and fourier recorrelate channels with a C x C colour matrix:
the ImageNet one for 3 channels by default, the identity otherwise, or the one stored with a
spectrum computed from the user's images (`estimation.compute_magnitude`).

Each unit's initial values come from that unit's own generator, so they do not depend on which
other units share its batch. Inside the optimization loop the fused ops run without the value
checks of `synthesis.maco_synthesis` (one device sync each), falling back to the reference.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..checks import InvalidArgument, finite_number, image_size
from ..ops import fused as ops
from ..ops.color import check_color_matrix
from ..ops.reference import fourier_synthesis_reference, maco_synthesis_reference, synthesis_tail
from ..ops.synthesis import fourier_scale
from .spectrum import natural_magnitude

PARAMS = ("maco", "fourier", "pixel")
MIN_SIZE = 8
VALUES_RANGE = (0.0, 1.0)
EPS = 1e-4  # the synthesis functions' default
# The standardized phase's spread, π/√3: the std of a phase uniform on the circle. At MACO's 1 the
# bins add in phase at the image's corners and burn them (synthesis.py gives the bound); measured
# in docs/benchmarks.md, "Lattice and borders", with lr kept at 1.
PHASE_SCALE = math.pi / math.sqrt(3.0)


def _per_unit_normal(shape, generators, std, *, device, dtype) -> torch.Tensor:
    """(N, *shape) with row i drawn from generators[i] only."""
    rows = [torch.randn(shape, generator=g, device=device, dtype=dtype) for g in generators]
    return torch.stack(rows) * std


class ImageParam(nn.Module):
    """N images of one size; `param` holds all their parameters, forward() gives (N, C, H, W) in [0, 1]."""

    kind: str

    def __init__(self, size: tuple[int, int], param: torch.Tensor):
        super().__init__()
        self.size = size
        self.channels = param.shape[1]
        self.param = nn.Parameter(param)

    def __len__(self) -> int:
        return self.param.shape[0]

    def extra_repr(self) -> str:
        return f"units={len(self)}, channels={self.channels}, size={self.size}"


def _color_matrix(color_matrix, channels: int, *, device, dtype) -> torch.Tensor:
    return check_color_matrix(color_matrix, channels, device=device, dtype=dtype, move=True)


class MacoParam(ImageParam):
    """MACO: only the phase is optimized; the magnitude is a fixed buffer shared by all units.

    The phase starts from N(0, std²) with std = 1 as in MACO (the synthesis standardizes the
    phase, so std only sets the scale the optimizer's steps are measured against). The angle is
    phase_scale times the standardized phase: MACO and Horama use 1, which burns the corners.
    """

    kind = "maco"

    def __init__(self, size, *, generators, channels: int = 3, device=None, dtype=torch.float32, magnitude=None,
                 color_matrix=None, std: float = 1.0, phase_scale: float = PHASE_SCALE):
        height, width = size
        shape = (channels, height, width // 2 + 1)
        phase_scale = finite_number(phase_scale, "phase_scale", positive=True)
        if magnitude is None:
            magnitude = natural_magnitude((height, width), channels, device=device, dtype=dtype)
        magnitude = torch.as_tensor(magnitude).to(device=device, dtype=dtype)
        if magnitude.shape != shape:
            raise InvalidArgument(f"magnitude must have shape (C, H, W//2+1) = {shape}, got {tuple(magnitude.shape)}")
        super().__init__(size, _per_unit_normal(shape, generators, std, device=device, dtype=dtype))
        self.phase_scale = phase_scale
        self.register_buffer("magnitude", magnitude.contiguous())
        self.register_buffer("color_matrix", _color_matrix(color_matrix, channels, device=device, dtype=dtype))

    def forward(self) -> torch.Tensor:
        height, width = self.size
        if ops.runs_on(self.param.device):
            return ops.maco_synthesis_op(self.param, self.magnitude, height, width, *VALUES_RANGE,
                                         self.color_matrix, EPS, self.phase_scale)
        return maco_synthesis_reference(self.param, self.magnitude, self.size, VALUES_RANGE, self.color_matrix, EPS,
                                        self.phase_scale)


class FourierParam(ImageParam):
    """Lucid's spectrum, real (re, im) pairs, under 1/f^decay scaling; starts from N(0, 0.01²) as lucid."""

    kind = "fourier"

    def __init__(self, size, *, generators, channels: int = 3, device=None, dtype=torch.float32,
                 decay: float = 1.0, color_matrix=None, std: float = 0.01):
        height, width = size
        shape = (channels, height, width // 2 + 1, 2)
        super().__init__(size, _per_unit_normal(shape, generators, std, device=device, dtype=dtype))
        self.register_buffer("scale", fourier_scale((height, width), decay, device=device, dtype=dtype))
        self.register_buffer("color_matrix", _color_matrix(color_matrix, channels, device=device, dtype=dtype))

    def forward(self) -> torch.Tensor:
        height, width = self.size
        if ops.runs_on(self.param.device):
            return ops.fourier_synthesis_op(self.param, self.scale, height, width, *VALUES_RANGE,
                                            self.color_matrix, EPS)
        spectrum = torch.view_as_complex(self.param)
        return fourier_synthesis_reference(spectrum, self.scale, self.size, VALUES_RANGE, self.color_matrix, EPS)


class PixelParam(ImageParam):
    """sigmoid(raw pixels), no colour decorrelation; starts from N(0, 0.01²), a flat grey."""

    kind = "pixel"

    def __init__(self, size, *, generators, channels: int = 3, device=None, dtype=torch.float32, std: float = 0.01):
        super().__init__(size, _per_unit_normal((channels, *size), generators, std, device=device, dtype=dtype))

    def forward(self) -> torch.Tensor:
        lo, hi = VALUES_RANGE
        return lo + (hi - lo) * torch.sigmoid(self.param)


class _PhotoParam(ImageParam):
    """A start that renders given photos exactly: no standardization of the parameter (it could
    not hold a photo's phases or spectrum) and, after the image's standardization, each photo's
    own std (gain) and mean (offset) in the decorrelated logit space. Runs the reference synthesis
    (torch.fft under autograd), not the fused ops, which have neither."""

    def __init__(self, size, param: torch.Tensor, *, gain: torch.Tensor, offset: torch.Tensor, color_matrix=None):
        super().__init__(size, param.detach().clone())
        self.register_buffer("gain", gain.detach().reshape(-1, 1, 1, 1).clone())
        self.register_buffer("offset", offset.detach().reshape(-1, 1, 1, 1).clone())
        self.register_buffer("color_matrix", _color_matrix(color_matrix, param.shape[1], device=param.device,
                                                           dtype=param.dtype))

    def _render(self, spectrum: torch.Tensor) -> torch.Tensor:
        return synthesis_tail(spectrum, self.size, VALUES_RANGE, self.color_matrix, EPS, self.gain, self.offset)


class PhotoPhaseParam(_PhotoParam):
    """MACO from a photo: the phase (N, C, H, W//2+1) is optimized, under the photo's own or the
    natural magnitude. A photo's phases spread over (-pi, pi] with a std near 1.8, which MACO's
    phase standardization would rescale, losing the photo: here the phase is used as it is."""

    kind = "maco"

    def __init__(self, size, *, phase: torch.Tensor, magnitude: torch.Tensor, gain, offset, color_matrix=None):
        super().__init__(size, phase, gain=gain, offset=offset, color_matrix=color_matrix)
        self.register_buffer("magnitude", magnitude.detach().expand_as(phase).contiguous())

    def forward(self) -> torch.Tensor:
        return self._render(torch.polar(self.magnitude, self.param))


class PhotoSpectrumParam(_PhotoParam):
    """The Fourier parameterization from a photo: the spectrum divided by the 1/f scale (and by its
    std, so that learning rates mean what they mean for a random start) is optimized."""

    kind = "fourier"

    def __init__(self, size, *, spectrum: torch.Tensor, scale: torch.Tensor, gain, offset, color_matrix=None):
        super().__init__(size, torch.view_as_real(spectrum), gain=gain, offset=offset, color_matrix=color_matrix)
        self.register_buffer("scale", scale)

    def forward(self) -> torch.Tensor:
        return self._render(torch.view_as_complex(self.param) * self.scale)


_CLASSES = {cls.kind: cls for cls in (MacoParam, FourierParam, PixelParam)}


def make_param(kind: str, n: int, size, *, generators: Sequence[torch.Generator], channels: int = 3, device=None,
               dtype: torch.dtype = torch.float32, magnitude: torch.Tensor | None = None, decay: float = 1.0,
               color_matrix: torch.Tensor | None = None, **kwargs) -> ImageParam:
    """An ImageParam of `kind` for `n` units of `size` (int or (H, W), each >= 8) with `channels` channels.

    generators: one torch.Generator per unit, on `device`. magnitude applies to "maco" only
    (default: `natural_magnitude(size, channels)`), decay to "fourier" only, color_matrix (C x C,
    default: `color.default_color_matrix(C)`) to both. kwargs go to the class (e.g. std, the
    initial standard deviation).
    """
    if kind not in _CLASSES:
        raise InvalidArgument(f"param must be one of {PARAMS}, got {kind!r}")
    height, width = image_size(size, "size")
    if min(height, width) < MIN_SIZE:
        raise InvalidArgument(f"size must be at least {MIN_SIZE} pixels per side, got {(height, width)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidArgument(f"n must be an int >= 1, got {n!r}")
    if len(generators) != n:
        raise InvalidArgument(f"generators: need one per unit ({n}), got {len(generators)}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise InvalidArgument(f"channels must be an int >= 1, got {channels!r}")
    if kind in ("maco", "fourier"):
        kwargs["color_matrix"] = color_matrix
    elif color_matrix is not None:
        raise InvalidArgument(f"color_matrix only applies to param='maco' or 'fourier', not {kind!r}")
    if kind == "maco":
        kwargs["magnitude"] = magnitude
    elif magnitude is not None:
        raise InvalidArgument(f"magnitude only applies to param='maco', not {kind!r}")
    if kind == "fourier":
        kwargs["decay"] = decay
    elif decay != 1.0:
        raise InvalidArgument(f"decay only applies to param='fourier', not {kind!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    return _CLASSES[kind]((height, width), generators=generators, channels=channels, device=device, dtype=dtype,
                          **kwargs)
