"""Radially averaged spectra and their log-log slopes, for comparing images with natural statistics.

Frequencies are in cycles per pixel. Values are normalised per pixel (power |X|²/(H·W),
amplitude |X|/sqrt(H·W)) so that images and spectra of different sizes can share one plot:
for stationary statistics E|X|² = H·W·S(f), with S the power spectral density per pixel.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..checks import InvalidArgument

DEFAULT_BAND = (0.01, 0.1)


@dataclass(frozen=True)
class RadialPower:
    """Mean power per radial bin. freqs (n,) in cycles/pixel; power, (C, n); slope and intercept (C,),
    from log10(power) ≈ intercept + slope·log10(f) over the fitted band."""
    freqs: np.ndarray
    power: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray


@dataclass(frozen=True)
class RadialProfile:
    """Mean amplitude per radial bin; same layout as RadialPower (amplitude slopes are half the power ones)."""
    freqs: np.ndarray
    amplitude: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray


def radial_average(values: np.ndarray, height: int, width: int, bin_width: float | None = None):
    """Averages (C, H, W//2+1) rfft-layout values over rings of |f|, the DC bin left out.

    Interior rfft columns stand for two bins of the full plane (f_x and -f_x), so they weigh
    twice; the DC and (even-width) Nyquist columns appear once. Rings run up to 0.5 cycles/pixel:
    beyond it only the corners of the square are sampled. Each ring's frequency is its members'
    mean radius, which matters at the lowest rings where radii are spread widely in log scale.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fy, fx)
    weight = np.full(radius.shape, 2.0)
    weight[:, 0] = 1.0
    if width % 2 == 0:
        weight[:, -1] = 1.0
    step = bin_width if bin_width is not None else 1.0 / min(height, width)
    ring = np.rint(radius / step).astype(np.int64)
    keep = (ring > 0) & (radius <= 0.5)
    ring, weight, radius = ring[keep], weight[keep], radius[keep]
    n = ring.max() + 1 if ring.size else 1
    total = np.bincount(ring, weights=weight, minlength=n)
    used = total > 0
    freqs = np.bincount(ring, weights=weight * radius, minlength=n)[used] / total[used]
    sums = np.stack([np.bincount(ring, weights=weight * v[keep], minlength=n)[used] for v in values])
    return freqs, sums / total[used]


def fit_power_law(freqs: np.ndarray, values: np.ndarray, band=DEFAULT_BAND):
    """Least-squares line through (log10 f, log10 value) for f in band, per row of `values`.

    Points weigh 1/f so each octave counts equally: linear rings crowd the top of any band.
    """
    lo, hi = band
    if not (0 < lo < hi):
        raise InvalidArgument(f"band: expected 0 < low < high, got {band!r}")
    inside = (freqs >= lo) & (freqs <= hi)
    if inside.sum() < 2:
        raise InvalidArgument(f"band: {band!r} holds fewer than 2 radial bins (lowest {freqs.min():.4g}, "
                         f"highest {freqs.max():.4g} cycles/pixel)")
    x = np.log10(freqs[inside])
    w = 1.0 / freqs[inside]
    values = np.atleast_2d(values)
    y = np.log10(np.maximum(values[:, inside], np.finfo(np.float64).tiny))
    xm = (w * x).sum() / w.sum()
    ym = (y * w).sum(axis=1) / w.sum()
    slope = (w * (x - xm) * (y - ym[:, None])).sum(axis=1) / (w * (x - xm) ** 2).sum()
    return slope, ym - slope * xm


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.double() if not x.is_complex() else x
        return x.numpy()
    return np.asarray(x, dtype=np.float64)


def radial_power(images, *, band=DEFAULT_BAND, bin_width: float | None = None) -> RadialPower:
    """Radially averaged power spectrum of images (H, W), (C, H, W) or (B, C, H, W), averaged over B.

    Power is |rfft2|²/(H·W) per channel (the mean is removed first so DC leakage cannot bias the
    lowest rings); `bin_width` defaults to one bin, 1/min(H, W) cycles/pixel.
    """
    x = _as_numpy(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or min(x.shape) == 0:
        raise InvalidArgument(f"images: expected (H, W), (C, H, W) or (B, C, H, W), got shape {x.shape}")
    h, w = x.shape[-2:]
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    power = (np.abs(np.fft.rfft2(x)) ** 2).mean(axis=0) / (h * w)
    freqs, radial = radial_average(power, h, w, bin_width)
    slope, intercept = fit_power_law(freqs, radial, band)
    return RadialPower(freqs, radial, slope, intercept)


def radial_profile(magnitude, *, source_width: int | None = None, band=DEFAULT_BAND,
                   bin_width: float | None = None, normalize: bool = True) -> RadialProfile:
    """Radially averaged amplitude of a (C, H, W//2+1) or (H, W//2+1) rfft-layout magnitude spectrum.

    `source_width` is the image width (default 2·(Wr−1); give it for odd widths). With `normalize`
    the amplitude is divided by sqrt(H·W), which makes spectra of different sizes comparable.
    """
    m = _as_numpy(magnitude)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or min(m.shape) == 0:
        raise InvalidArgument(f"magnitude: expected (C, H, W//2+1), got shape {m.shape}")
    h, wr = m.shape[-2:]
    w = 2 * (wr - 1) if source_width is None else int(source_width)
    if w // 2 + 1 != wr or w < 1:
        raise InvalidArgument(f"source_width: {w} does not match {wr} rfft columns (need width // 2 + 1 == {wr})")
    if normalize:
        m = m / np.sqrt(h * w)
    freqs, radial = radial_average(m, h, w, bin_width)
    slope, intercept = fit_power_law(freqs, radial, band)
    return RadialProfile(freqs, radial, slope, intercept)


def plot_radial_profiles(named_profiles: Mapping[str, RadialProfile | RadialPower], path: str | os.PathLike,
                         *, title: str | None = None, channel_names=None) -> None:
    """Writes a log-log plot of each profile, one panel per channel, with its fitted slope in the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # a bare Figure never touches pyplot's global backend

    if not named_profiles:
        raise InvalidArgument("named_profiles: nothing to plot")
    channels = max(_values(p).shape[0] for p in named_profiles.values())
    if channel_names is None:
        channel_names = ["dec 0 (achromatic)", "dec 1 (red-blue)", "dec 2 (green-magenta)"] if channels == 3 else \
            [f"channel {c}" for c in range(channels)]
    fig = Figure(figsize=(3.6 * channels, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, channels, squeeze=False)[0]
    for c, ax in enumerate(axes):
        for name, profile in named_profiles.items():
            values = _values(profile)
            row = min(c, values.shape[0] - 1)  # a grey profile is drawn in every panel
            ax.loglog(profile.freqs, values[row], lw=1.2, label=f"{name} ({profile.slope[row]:+.2f})")
        ax.set_title(channel_names[c], fontsize=9)
        ax.set_xlabel("cycles / pixel", fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, title="slope", title_fontsize=7)
    power = isinstance(next(iter(named_profiles.values())), RadialPower)
    axes[0].set_ylabel("power |X|² / (H·W)" if power else "amplitude |X| / √(H·W)", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(os.fspath(path))


def _values(profile) -> np.ndarray:
    return profile.power if isinstance(profile, RadialPower) else profile.amplitude


# ---------------------------------------------------------------------------------------------
# Anisotropy: power on the frequency axes against the ring at the same radius.

AXIS_RING_HALF_WIDTH = 0.02  # cycles/px: the radial band of each ratio
AXIS_EXCLUSION_DEGREES = 10.0  # the ring leaves out bins within this angle of an axis


def axis_ring_ratio(power, radius: float, *, full_width: int | None = None) -> np.ndarray:
    """Per channel, the mean power of the bins on the two frequency axes at `radius` (cycles/px,
    within AXIS_RING_HALF_WIDTH) over the mean power of the other bins at that radius (those more
    than AXIS_EXCLUSION_DEGREES off both axes). 1 for an isotropic spectrum; a cross or a lattice
    in the images, or in the estimate of a spectrum, puts it above 1.

    power: (C, H, Wr) in rfft layout (Wr = W // 2 + 1; full_width gives W when it is odd) or (H, W)."""
    p = _as_numpy(power).astype(np.float64)
    if p.ndim == 2:
        p = p[None]
    height, half = p.shape[-2:]
    width = full_width or 2 * (half - 1)
    fy = np.fft.fftfreq(height)[:, None] * np.ones((1, half))
    fx = np.fft.rfftfreq(width)[None, :half] * np.ones((height, 1))
    r = np.hypot(fx, fy)
    band = (np.abs(r - radius) <= AXIS_RING_HALF_WIDTH) & (r > 0)  # the mean is on both axes, not structure
    on_axis = band & ((np.abs(fy) < 0.5 / height) | (np.abs(fx) < 0.5 / width))
    angle = np.degrees(np.arctan2(np.abs(fy), np.abs(fx)))
    off_axis = band & (angle > AXIS_EXCLUSION_DEGREES) & (angle < 90 - AXIS_EXCLUSION_DEGREES)
    if not on_axis.any() or not off_axis.any():
        raise InvalidArgument(f"radius: {radius} c/px has no axis or ring bins at {height}x{width}")
    return p[:, on_axis].mean(1) / p[:, off_axis].mean(1)


def periodic_component(images):
    """The periodic part of (..., H, W) images (Moisan, "Periodic plus smooth image decomposition",
    2011): the image minus the smooth field whose Laplacian is the jump across its opposite
    borders. The DFT treats an image as one tile of a periodic plane; a photo's left and right
    (top and bottom) borders do not meet, and the jumps put a cross of power on the frequency axes
    that no scene has. The periodic part has the photo's spectrum without that cross and without
    the blur a taper window would add."""


    height, width = images.shape[-2:]
    jumps = torch.zeros_like(images)
    rows = images[..., -1, :] - images[..., 0, :]
    cols = images[..., :, -1] - images[..., :, 0]
    jumps[..., 0, :] += rows
    jumps[..., -1, :] -= rows
    jumps[..., :, 0] += cols
    jumps[..., :, -1] -= cols
    qy = torch.cos(2 * math.pi * torch.arange(height, dtype=images.dtype) / height)[:, None]
    qx = torch.cos(2 * math.pi * torch.arange(width, dtype=images.dtype) / width)[None, :]
    denominator = 2 * qy + 2 * qx - 4
    denominator[0, 0] = 1.0  # the smooth part has no mean: its DC is set to 0 below
    smooth_hat = torch.fft.fft2(jumps) / denominator
    smooth_hat[..., 0, 0] = 0
    return images - torch.fft.ifft2(smooth_hat).real


def lattice(images, periods=(2, 4, 8), *, input_size: int | None = None) -> dict[int, float]:
    """Axis/ring power ratio of the luminance (Rec. 601) of images at the given periods in pixels
    of the model's input, the mean over images of each image's ratio. images: (N, 3 or 1, H, W)
    in [0, 1], or a list of (3 or 1, H, W) of any sizes (photos). A period of p input pixels is
    input_size / (p * side) cycles per image pixel, with side the image's shorter side, as the
    model sees the whole image resized to its input (input_size=None: the image's own pixels).
    The spectrum is that of each image's periodic component, so that the jumps between an
    image's opposite borders, which a viewer never sees side by side, do not count as a cross."""


    ratios = {p: [] for p in periods}
    for image in images:
        x = torch.as_tensor(_as_numpy(image), dtype=torch.float64)
        if x.shape[0] == 3:
            x = (x * torch.tensor((0.299, 0.587, 0.114), dtype=torch.float64)[:, None, None]).sum(0)
        else:
            x = x[0]
        power = torch.fft.rfft2(periodic_component(x)).abs().pow(2)[None].numpy()
        scale = 1.0 if input_size is None else input_size / min(x.shape)
        for p in periods:
            ratios[p].append(float(axis_ring_ratio(power, min(0.5, scale / p), full_width=x.shape[-1])[0]))
    return {p: float(np.mean(values)) for p, values in ratios.items()}
