"""The natural-image magnitude spectrum that MACO keeps fixed while it optimises the phase.

Basis and units, shared by every function here:

* Pixels are row vectors and the synthesis recorrelates with rgb = dec @ K, so spectra are of
  dec = rgb @ inv(K), K from `phasevis_ext.color` ("decorrelated: dec = rgb @ inv(K)").
* A spectrum for images of size (H, W) is the mean of |torch.fft.rfft2(dec)| (norm "backward")
  over images with pixel values in [0, 1]: shape (C, H, W//2+1). Its DC bin is H·W times the
  mean decorrelated colour (in absolute value).
* A spectrum computed from the user's own C-channel images is stored with its own C x C colour
  matrix K (`data_color_matrix`: the square root of the images' channel covariance, the way
  lucid's and MACO's ImageNet matrix was made), and is of dec = image @ inv(K) in that basis.
* Without such a file: 3 channels use the shipped photos' spectrum (ImageNet K), 1 channel
  their luminance spectrum (Rec. 601 weights), and any other count a 1/f power law
  (`power_law_magnitude`) with the identity K, with a warning that says how to compute one.

Frequencies are cycles per pixel throughout. For statistics that do not depend on where the
image is sampled, E|X(f)|² = H·W·S(f) with S the power spectral density per pixel, so a spectrum
moved to another size keeps S(f) on the new cycles-per-pixel grid, scales its non-DC bins by
sqrt(H·W) and its DC bin (a sum of pixels) by H·W. This is exact for crops of different sizes
from the same photos and, for 1/f images, for rescaled images too.
"""
from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..checks import InvalidArgument, InvalidArgumentType, channel_count, image_size
from ..ops.color import IMAGENET_MEAN, IMAGENET_STD, check_color_matrix, decorrelate, default_color_matrix
from . import diagnostics
from .diagnostics import periodic_component

BASIS = "decorrelated: dec = rgb @ inv(K)"
GREY_BASIS = "luminance: Y = rgb @ (0.299, 0.587, 0.114)"
IDENTITY_BASIS = "channels as they are (K = identity)"
STORED_BASIS = "decorrelated with the stored color_matrix: dec = image @ inv(color_matrix)"
LUMA = (0.299, 0.587, 0.114)
DEFAULT_ASSET = Path(__file__).parents[1] / "assets" / "natural_magnitude.npz"
IMAGENET_FILE = "xplique/features_visualizations/spectrum_decorrelated.npy"
IMAGENET_INSTALL = "pip install --no-deps xplique==2.0.2"
_IMAGENET_SIZE = 512

# Units of xplique's ImageNet spectrum, as measured (docs/spectrum.md): 512x512 images in the
# same decorrelated basis but normalised per channel, x' = (x - mean) / std, before the FFT.
# Evidence: its DC/(H·W) is (0.97, 1.03, 0.87) per channel, which no mean colour in [0, 1]
# gives (ImageNet's mean is (0.78, 0.25, -0.01) in this basis) but mean-subtracted images do;
# and by Parseval its non-DC bins imply a within-image std of about 1.5 per channel, where K
# whitens ImageNet's [0, 1] pixels to about 0.46 (K is the normalised square root of their
# covariance): a factor near 1/std = 4.4.


# ----------------------------------------------------------------------------- argument checks

def _check_spectrum(array, name: str) -> torch.Tensor:
    """A (C, H, Wr) real, finite, non-negative spectrum as float64."""
    try:
        t = torch.as_tensor(array if isinstance(array, torch.Tensor) else np.asarray(array))
    except (TypeError, RuntimeError) as err:
        raise InvalidArgument(f"{name}: expected a real numeric array ({err})") from None
    if t.is_complex() or t.dtype == torch.bool:
        raise InvalidArgument(f"{name}: expected a real array, got dtype {t.dtype}")
    if t.dim() != 3 or min(t.shape) == 0:
        raise InvalidArgument(f"{name}: expected shape (C, H, W//2+1), got {tuple(t.shape)}")
    t = t.detach().to(torch.float64)
    if not torch.isfinite(t).all():
        raise InvalidArgument(f"{name}: contains non-finite values")
    if (t < 0).any():
        raise InvalidArgument(f"{name}: contains negative values; a magnitude spectrum is |rfft2| >= 0")
    return t


def _source_width(wr: int, source_width) -> int:
    width = 2 * (wr - 1) if source_width is None else source_width
    if not isinstance(width, (int, np.integer)) or isinstance(width, bool) or width < 1 or width // 2 + 1 != wr:
        raise InvalidArgument(f"source_width: {width!r} does not fit {wr} rfft columns (need width // 2 + 1 == {wr})")
    return int(width)


# ------------------------------------------------------------------------ spectra of images

def image_magnitude(rgb: torch.Tensor, *, grey: bool = False) -> torch.Tensor:
    """|rfft2| of the periodic part (`periodic_component`) of (..., 3, H, W) RGB images in
    [0, 1]: in the decorrelated basis, or of luminance as (..., 1, H, W//2+1) when `grey`."""
    rgb = torch.as_tensor(rgb, dtype=torch.float64)
    if rgb.dim() < 3 or rgb.shape[-3] != 3:
        raise InvalidArgument(f"rgb: expected (..., 3, H, W), got shape {tuple(rgb.shape)}")
    if grey:
        basis = torch.einsum("...chw,c->...hw", rgb, torch.tensor(LUMA, dtype=torch.float64))[..., None, :, :]
    else:
        basis = decorrelate(rgb)
    return torch.fft.rfft2(periodic_component(basis), norm="backward").abs()


def data_color_matrix(covariance: torch.Tensor) -> torch.Tensor:
    """K with rgb = dec @ K from a C x C channel covariance, as lucid's ImageNet matrix was made.

    K = (U·sqrt(S))^T for the eigendecomposition covariance = U·S·U^T (largest eigenvalue first,
    each eigenvector signed so that its largest entry is positive), divided by its largest
    column norm of U·sqrt(S) as lucid does: then K^T·K is the covariance up to that scale. A
    channel that never varies would give a singular K; its eigenvalue is raised to 1e-6 of
    the largest so that images can still be decorrelated.
    """
    cov = torch.as_tensor(covariance, dtype=torch.float64)
    values, vectors = torch.linalg.eigh((cov + cov.T) / 2)
    values, vectors = values.flip(0), vectors.flip(1)
    top = values[0].clamp(min=torch.finfo(torch.float64).tiny)
    scales = (values / top).clamp(min=1e-6).sqrt()
    rows = torch.arange(vectors.shape[1])
    signs = torch.sign(vectors[vectors.abs().argmax(dim=0), rows])
    return (vectors * signs).T * scales[:, None]


# --------------------------------------------------------------------------------- storage

class MagnitudeFile(NamedTuple):
    magnitude: torch.Tensor        # (C, H, W//2+1) float64, of dec = image @ inv(color_matrix)
    grey: torch.Tensor | None      # (1, H, W//2+1) luminance spectrum, when stored
    meta: dict                     # size [H, W], image_count, basis, source, ...
    color_matrix: torch.Tensor | None = None  # (C, C) float64, when stored; else the default K applies


def save_magnitude(path, magnitude, *, grey=None, color_matrix=None, **meta) -> Path:
    """Writes an .npz: float32 arrays `magnitude` (and `grey`), float64 `color_matrix`, and `meta`
    as a JSON string.

    `size` defaults to (H, 2·(Wr−1)); pass it for odd widths. Metadata must be JSON-serialisable.
    ".npz" is appended to a path without it; the path written is returned.
    """
    mag = _check_spectrum(magnitude, "magnitude")
    h, wr = mag.shape[-2:]
    size = image_size(meta.pop("size", (h, 2 * (wr - 1))), "size")
    if size[0] != h or size[1] // 2 + 1 != wr:
        raise InvalidArgument(f"size: {size} does not match a magnitude of shape {tuple(mag.shape)}")
    arrays = {"magnitude": mag.float().numpy()}
    basis = BASIS if mag.shape[0] == 3 else GREY_BASIS if mag.shape[0] == 1 else IDENTITY_BASIS
    if color_matrix is not None:
        k = _check_color_matrix(color_matrix, mag.shape[0], "color_matrix")
        arrays["color_matrix"] = k.numpy()
        if not torch.equal(k, default_color_matrix(mag.shape[0], dtype=torch.float64)):
            basis = STORED_BASIS
    meta = {"size": list(size), "basis": basis, "units":
            "mean |rfft2| (norm='backward') of images with pixel values in [0, 1]", **meta}
    if grey is not None:
        g = _check_spectrum(grey, "grey")
        if g.shape != (1, h, wr):
            raise InvalidArgument(f"grey: expected shape {(1, h, wr)}, got {tuple(g.shape)}")
        arrays["grey"] = g.float().numpy()
    path = Path(path)
    if path.suffix != ".npz":  # numpy would append it anyway; return the name actually written
        path = path.with_name(path.name + ".npz")
    np.savez_compressed(path, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return path


def _check_color_matrix(k, channels: int, name: str) -> torch.Tensor:
    k = torch.as_tensor(np.asarray(k) if not isinstance(k, torch.Tensor) else k)
    return check_color_matrix(k, channels, device="cpu", dtype=torch.float64, move=True, invertible=True, name=name)

def load_magnitude(path) -> MagnitudeFile:
    """Reads an .npz from save_magnitude, or a bare (C, H, W//2+1) .npy/.npz array, validated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"source: no spectrum file at {str(path)!r}")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            arrays, meta = {"magnitude": data}, {}
        else:
            with data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else {}
    except Exception as err:  # numpy raises many kinds for a damaged file; all mean the same here
        raise InvalidArgument(f"source: could not read spectrum file {str(path)!r} "
                         f"({type(err).__name__}: {err})") from err
    color_matrix = arrays.pop("color_matrix", None)
    if "magnitude" not in arrays:
        if len(arrays) != 1:
            raise InvalidArgument(f"source: {str(path)!r} has no 'magnitude' array (found {sorted(arrays)})")
        arrays = {"magnitude": next(iter(arrays.values()))}
    mag = _check_spectrum(arrays["magnitude"], f"source {str(path)!r}")
    grey = _check_spectrum(arrays["grey"], f"source {str(path)!r} (grey)") if "grey" in arrays else None
    if color_matrix is not None:
        color_matrix = _check_color_matrix(color_matrix, mag.shape[0], f"source {str(path)!r} (color_matrix)")
    h, wr = mag.shape[-2:]
    size = meta.get("size", [h, 2 * (wr - 1)])
    if not isinstance(size, list) or len(size) != 2 or size[0] != h or not isinstance(size[1], int) \
            or size[1] < 1 or size[1] // 2 + 1 != wr:
        raise InvalidArgument(f"source: {str(path)!r} metadata size {size!r} does not match its shape {tuple(mag.shape)}")
    if grey is not None and grey.shape != (1, h, wr):
        raise InvalidArgument(f"source: {str(path)!r} grey spectrum has shape {tuple(grey.shape)}, expected {(1, h, wr)}")
    meta["size"] = list(size)
    return MagnitudeFile(mag, grey, meta, color_matrix)


# -------------------------------------------------------------------------------- resizing

def _full_plane(m: torch.Tensor, width: int) -> torch.Tensor:
    """(C, H, W//2+1) to (C, H, W) using |X(fy, -fx)| = |X(-fy, fx)| for real images."""
    h = m.shape[-2]
    flipped = m[:, (-torch.arange(h)) % h]
    mirrored = flipped[:, :, width - torch.arange(width // 2 + 1, width)]
    return torch.cat([m, mirrored], dim=-1)


def _cell_overlap(n_src: int, n_dst: int) -> torch.Tensor:
    """(n_dst, n_src) weights: the share of each target frequency cell covered by each source cell.

    Cells are 1/n wide around fftfreq(n) and wrap around at ±0.5 (Nyquist), so this is the
    box filter of the target bin width on the periodic cycles-per-pixel axis.
    """
    fs = torch.fft.fftfreq(n_src, dtype=torch.float64)
    ft = torch.fft.fftfreq(n_dst, dtype=torch.float64)
    d = (fs[None, :] - ft[:, None] + 0.5) % 1.0 - 0.5
    hs, ht = 0.5 / n_src, 0.5 / n_dst
    overlap = (torch.minimum(d + hs, torch.tensor(ht)) - torch.maximum(d - hs, torch.tensor(-ht))).clamp(min=0)
    return overlap / overlap.sum(dim=1, keepdim=True)


def _linear_interp(n_src: int, n_dst: int) -> torch.Tensor:
    """(n_dst, n_src) linear interpolation weights on the periodic cycles-per-pixel axis."""
    pos = torch.fft.fftfreq(n_dst, dtype=torch.float64) * n_src
    lo = torch.floor(pos)
    frac = pos - lo
    rows = torch.arange(n_dst)
    weights = torch.zeros(n_dst, n_src, dtype=torch.float64)
    weights.index_put_((rows, lo.long() % n_src), 1 - frac, accumulate=True)
    weights.index_put_((rows, (lo.long() + 1) % n_src), frac, accumulate=True)
    return weights


def _radial_model(m: torch.Tensor, width: int):
    """R(|f|) per channel: the measured radial profile, log-log interpolated, continued below its
    lowest ring by a power law fitted over the lowest decade of rings."""
    h = m.shape[-2]
    freqs, profile = diagnostics.radial_average(m.numpy(), h, width)
    if len(freqs) < 2:
        return None
    slope, intercept = diagnostics.fit_power_law(freqs, profile, (freqs[0], 10 * freqs[0]))
    log_f, log_p = np.log(freqs), np.log(np.maximum(profile, 1e-300))

    def evaluate(radius: torch.Tensor) -> torch.Tensor:
        r = np.maximum(radius.numpy(), 1e-12)
        out = np.stack([np.exp(np.interp(np.log(r), log_f, lp)) for lp in log_p])
        low = r < freqs[0]
        out[:, low] = 10.0 ** (intercept[:, None] + slope[:, None] * np.log10(r[low])[None])
        return torch.from_numpy(out)

    return evaluate


def _radius(h: int, w: int) -> torch.Tensor:
    return torch.hypot(torch.fft.fftfreq(h, dtype=torch.float64)[:, None],
                       torch.fft.fftfreq(w, dtype=torch.float64)[None, :])


def _resample_power(power: torch.Tensor, target: tuple[int, int]) -> torch.Tensor:
    """(C, H, W) full-plane values onto the target grid, separably: cell averages along an axis
    that shrinks, linear interpolation along one that grows.

    The lines f_y = 0 and f_x = 0 are resampled on their own, as 1-D profiles. A finite image's
    borders (and a scene's horizontal and vertical edges) put a cross on them that is one bin
    wide at every size: averaging it with the next rows would dilute it as the size drops, and
    interpolating would widen it as the size grows. The 2-D pass sees those lines replaced by
    the mean of their neighbours.
    """
    h, w = power.shape[-2:]

    def weights(n_src, n_dst):
        return _linear_interp(n_src, n_dst) if n_dst > n_src else _cell_overlap(n_src, n_dst)

    wy, wx = weights(h, target[0]), weights(w, target[1])
    if h == 1 or w == 1:
        return torch.einsum("yh,chw,xw->cyx", wy, power, wx)
    body = power.clone()
    body[:, 0, :] = (body[:, 1, :] + body[:, -1, :]) / 2
    body[:, :, 0] = (body[:, :, 1] + body[:, :, -1]) / 2
    out = torch.einsum("yh,chw,xw->cyx", wy, body, wx)
    out[:, 0, :] = power[:, 0, :] @ wx.T
    out[:, :, 0] = power[:, :, 0] @ wy.T
    return out


def resize_magnitude(magnitude, size, *, source_width: int | None = None) -> torch.Tensor:
    """A (C, H, W//2+1) spectrum of (H, W) images moved to images of `size`, as float64.

    Frequencies stay in cycles per pixel. Non-DC bins scale by sqrt(H'·W'/(H·W)) and the DC bin by
    H'·W'/(H·W) (see the module doc). `source_width` defaults to 2·(Wr−1); give it for odd widths.

    The spectrum is split into its radial profile R(|f|) and the anisotropy M/R (axis cross,
    orientation bias). R is evaluated at the exact target radii: log-log interpolation between
    the measured rings, and below the lowest ring (upsampling only) a power law fitted over the
    lowest decade. The anisotropy varies slowly, so only it is resampled: averaged over the source
    cells inside each target cell when downsampling (in power, which adds over frequency; this
    is the antialiasing), linearly interpolated when upsampling, with the axis lines kept one
    bin wide (see _resample_power). Averaging M itself would bias the steep 1/f fall-off near DC
    (a 1/f² power averaged over the first 2x cell is 27% high); interpolating it would blur it.
    The result is on the CPU.
    """
    m = _check_spectrum(magnitude, "magnitude").cpu()
    h, wr = m.shape[-2:]
    width = _source_width(wr, source_width)
    target = image_size(size)
    if (h, width) == target:
        return m.clone()
    profile = _radial_model(m, width)
    if profile is None:
        if target[0] > h or target[1] > width:
            raise InvalidArgument(f"magnitude: a {h}x{width} spectrum has too few frequencies to upsample")

        def profile(radius):  # too few rings for a profile: resample the spectrum itself
            return torch.ones(m.shape[0], *radius.shape, dtype=torch.float64)
    aniso = _full_plane(m, width) / profile(_radius(h, width)).clamp(min=1e-300)
    neighbours = [aniso[:, i, j] for i, j in ((1, 0), (-1, 0), (0, 1), (0, -1))
                  if (i == 0 or h > 1) and (j == 0 or width > 1)]
    aniso[:, 0, 0] = torch.stack(neighbours).mean(0) if neighbours else 1.0  # DC is set apart below

    aniso_power = _resample_power(aniso ** 2, target)
    area = target[0] * target[1] / (h * width)
    out = (profile(_radius(*target)) * aniso_power.sqrt())[..., : target[1] // 2 + 1] * math.sqrt(area)
    out[:, 0, 0] = m[:, 0, 0] * area
    return out


# ----------------------------------------------------------------------------------- sources

def imagenet_spectrum_path() -> Path:
    """The ImageNet spectrum shipped in the xplique 2.0.2 wheel, found without importing xplique."""
    try:
        dist = importlib.metadata.distribution("xplique")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    path = Path(dist.locate_file(IMAGENET_FILE)) if dist is not None else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "source='imagenet' needs the ImageNet spectrum from the MIT-licensed xplique 2.0.2 wheel "
            f"({IMAGENET_FILE}); install it with `{IMAGENET_INSTALL}`")
    return path


def load_imagenet_magnitude() -> MagnitudeFile:
    """xplique's ImageNet spectrum converted to this module's units (see _imagenet_to_units)."""
    path = imagenet_spectrum_path()
    raw = _check_spectrum(np.load(path, allow_pickle=False), f"source {str(path)!r}")
    if raw.shape != (3, _IMAGENET_SIZE, _IMAGENET_SIZE // 2 + 1):
        raise InvalidArgument(f"source: {str(path)!r} has shape {tuple(raw.shape)}, expected (3, 512, 257)")
    meta = {"size": [_IMAGENET_SIZE, _IMAGENET_SIZE], "basis": BASIS, "source": f"xplique: {IMAGENET_FILE}"}
    return MagnitudeFile(_imagenet_to_units(raw), None, meta, None)


def _imagenet_to_units(raw: torch.Tensor) -> torch.Tensor:
    """dec = dec' @ M with M = K·diag(std)·inv(K) (about 0.226·I); the channels are uncorrelated,
    so powers add through M. The DC of mean-subtracted images holds no colour: it becomes
    ImageNet's mean colour, |mean @ inv(K)|·H·W."""
    k = default_color_matrix(3, dtype=torch.float64)
    k_inv = torch.linalg.inv(k)
    mix = k @ torch.diag(torch.tensor(IMAGENET_STD, dtype=torch.float64)) @ k_inv
    out = torch.einsum("jc,jhw->chw", mix ** 2, raw ** 2).sqrt()
    h, wr = raw.shape[-2:]
    out[:, 0, 0] = (torch.tensor(IMAGENET_MEAN, dtype=torch.float64) @ k_inv).abs() * h * 2 * (wr - 1)
    return out


def _grey_from_decorrelated(mag: torch.Tensor) -> torch.Tensor:
    """Luminance spectrum from a decorrelated one. Y = dec @ (K @ luma) and the decorrelated
    channels are uncorrelated by construction, so their powers add."""
    a = default_color_matrix(3, dtype=torch.float64) @ torch.tensor(LUMA, dtype=torch.float64)
    return ((a[:, None, None] * mag) ** 2).sum(0, keepdim=True).sqrt()


def _source_key(source) -> tuple:
    if isinstance(source, os.PathLike) or (isinstance(source, str) and source not in ("default", "imagenet")):
        path = Path(source)
        if path.suffix.lower() not in (".npy", ".npz"):
            raise InvalidArgument(f"source: unknown source {str(source)!r}; expected 'default', 'imagenet' "
                             "or a path to a .npy/.npz file")
        if not path.is_file():
            raise FileNotFoundError(f"source: no spectrum file at {str(path)!r}")
        return ("file", str(path.resolve()), path.stat().st_mtime_ns)  # a rewritten file is reloaded
    if not isinstance(source, str):
        raise InvalidArgumentType(f"source: expected 'default', 'imagenet' or a path, got {type(source).__name__}")
    return (source,)


def _load_source(key: tuple) -> MagnitudeFile:
    if key[0] == "default":
        return load_magnitude(DEFAULT_ASSET)
    if key[0] == "imagenet":
        return load_imagenet_magnitude()
    return load_magnitude(key[1])


class Spectrum(NamedTuple):
    magnitude: torch.Tensor     # (C, H, W//2+1)
    color_matrix: torch.Tensor  # (C, C): rgb = dec @ color_matrix


COMPUTE_HINT = "phasevis spectrum compute --images DIR --out FILE.npz, then --spectrum FILE.npz"


def power_law_magnitude(size, channels: int, *, exponent: float = 1.0, dtype=torch.float64) -> torch.Tensor:
    """(C, H, W//2+1) amplitude sqrt(H·W)·f0/max(f, f0)^exponent, f in cycles per pixel, f0 = 1/max(H, W).

    The textbook natural-image law (amplitude ~ 1/f, power ~ 1/f²), the same for every channel:
    the fallback when there is no measured spectrum for `channels`. MACO standardizes the image,
    so only the shape of the law matters, not its scale; the DC bin takes the value at f0.
    """
    height, width = image_size(size)
    radius = torch.hypot(torch.fft.fftfreq(height, dtype=torch.float64)[:, None],
                         torch.fft.rfftfreq(width, dtype=torch.float64)[None, :])
    f0 = 1.0 / max(height, width)
    amplitude = math.sqrt(height * width) * (f0 / radius.clamp(min=f0)) ** exponent
    return amplitude.expand(channel_count(channels), -1, -1).to(dtype).contiguous()


@functools.lru_cache(maxsize=16)
def _natural_spectrum_cpu(key: tuple, size: tuple[int, int], channels: int) -> Spectrum:
    if key[0] == "default" and channels not in (1, 3):
        return Spectrum(power_law_magnitude(size, channels), torch.eye(channels, dtype=torch.float64))
    mag, grey, meta, k = _load_source(key)
    c = mag.shape[0]
    if c == channels:
        base, k = mag, (default_color_matrix(c, dtype=torch.float64) if k is None else k)
    elif channels == 1 and (grey is not None or c == 3 and k is None):
        # Luminance: stored, or derived from ImageNet-decorrelated channels whose powers add.
        base, k = (grey if grey is not None else _grey_from_decorrelated(mag)), torch.ones(1, 1, dtype=torch.float64)
    else:
        where = "the shipped spectrum" if key[0] != "file" else repr(key[1])
        raise InvalidArgument(f"channels: {where} is for {c}-channel images, not {channels}; compute one from "
                         f"{channels}-channel images: {COMPUTE_HINT}")
    return Spectrum(resize_magnitude(base, size, source_width=meta["size"][1]), k)


def natural_spectrum(size, channels: int = 3, *, source="default", device=None,
                     dtype: torch.dtype = torch.float32) -> Spectrum:
    """The magnitude MACO holds fixed for `channels`-channel images of `size`, and its colour matrix.

    source: "default" (the package asset, from photos shipped in scikit-image, scikit-learn and
    matplotlib; see scripts/make_default_spectrum.py), "imagenet" (xplique 2.0.2's ImageNet
    spectrum, converted to these units; needs `pip install --no-deps xplique==2.0.2`), or a path to
    a .npy/.npz file (from `compute_magnitude` / `phasevis spectrum compute`, or a bare
    (C, H, W//2+1) array of 2·(W//2) wide images).
    channels: a file serves its own channel count, and 1 when it holds a luminance spectrum.
    The default serves 3 (ImageNet colour matrix) and 1 (luminance); any other count gets
    `power_law_magnitude` with the identity matrix and a warning, since no data says better.
    Results are cached per (source, size, channels); each call returns fresh copies.
    """
    size = image_size(size)
    channels = channel_count(channels)
    key = _source_key(source)
    if key[0] == "default" and channels not in (1, 3):
        warnings.warn(f"no natural-image spectrum for {channels}-channel images: MACO uses a 1/f power law with "
                      f"uncorrelated channels. For a faithful one, {COMPUTE_HINT}", PowerLawSpectrumWarning,
                      stacklevel=2)
    mag, k = _natural_spectrum_cpu(key, size, channels)
    return Spectrum(mag.to(device=device, dtype=dtype, copy=True), k.to(device=device, dtype=dtype, copy=True))


class PowerLawSpectrumWarning(UserWarning):
    """No measured spectrum for this channel count: a 1/f power law stands in."""


def natural_magnitude(size, channels: int = 3, *, source="default", device=None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The magnitude of `natural_spectrum`: (channels, H, W//2+1)."""
    return natural_spectrum(size, channels, source=source, device=device, dtype=dtype).magnitude


def _cache_clear() -> None:
    _natural_spectrum_cpu.cache_clear()


natural_magnitude.cache_clear = _cache_clear
natural_spectrum.cache_clear = _cache_clear
