"""Builds phasevis_ext/assets/natural_magnitude.npz, the default natural-image spectrum.

Run: .venv/bin/python scripts/make_default_spectrum.py [--out PATH] [--window 256] [--stride 32]

What it does, exactly (deterministic: no random numbers, fixed photo list and window grid):

1. Photos: the colour photographs of natural scenes that ship inside pip wheels and load without
   a network: scikit-image's astronaut, chelsea (the cat), coffee, rocket and the left view of
   stereo_motorcycle (the right view is its stereo twin, so it would count one scene twice);
   scikit-learn's china and flower (load_sample_images); matplotlib's grace_hopper.jpg. Synthetic, medical,
   astronomical and greyscale images in those packages are left out. Pixels are scaled to [0, 1].
2. Native resolution only: the photos are 300 to 741 px a side and are never resized. Every
   256x256 window on a grid with a 32 px stride, centred in the photo, is used (overlapping
   windows average out where the scene's objects fall), each also mirrored left-right: natural
   scenes have no preferred handedness, and mirroring removes the asymmetry between the two
   oblique orientations that eight photos would otherwise leave in the estimate.
3. Each window's |rfft2| is taken of its periodic component (`spectrum.periodic_component`,
   Moisan's periodic-plus-smooth decomposition) in the synthesis basis dec = rgb @ inv(K), and of
   its Rec. 601 luminance for the grey spectrum. The DFT of a window as it is sees the jumps
   between its opposite borders as edges of the scene: they put a cross of power on the frequency
   axes (axis/ring ratios of 4.5 to 21 between 0.05 and 0.45 cycles/px, growing with frequency),
   which MACO, holding the magnitude fixed, drew into every image as a lattice. The periodic
   component keeps the photos' own anisotropy (about 2x on the axes, flat in frequency: scenes
   have more horizontal and vertical structure than oblique) without blurring the spectrum as a
   taper would. No JPEG block peaks show at multiples of 1/8 cycles/px on the axes.
4. Windows are averaged within a photo, then photos are averaged with equal weights, so that a
   large photo (more windows) counts no more than a small one. Single photos are strongly
   tinted, so the per-photo channel balance (mean non-DC magnitude and DC/(H·W) per channel) is
   printed to keep any skew visible; the equal-weight mean comes out balanced across channels
   in its non-DC part (docs/spectrum.md), while its mean colour is warmer than ImageNet's.
5. The result is stored at the 256x256 size it was measured at (float32, compressed):
   `natural_magnitude(size)` moves it to any size with `resize_magnitude`, which for sizes above
   256 continues the radial profile below 1/256 cycles/pixel with a power law fitted over the
   lowest decade, instead of resizing any photo.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # an installed phasevis_ext, if any, comes first

from phasevis_ext.io.images import as_rgb_array, read_image
from phasevis_ext.param.spectrum import DEFAULT_ASSET, image_magnitude, save_magnitude

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg",)


def load_photos() -> list[tuple[str, np.ndarray]]:
    """(name, (H, W, 3) float32 RGB in [0, 1]) for every photo in the fixed list."""
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = []
    for name in SKIMAGE_PHOTOS:
        image = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":  # (left, right, disparity): the left view only
            name, image = "motorcycle_left", image[0]
        photos.append((f"skimage:{name}", as_rgb_array(image)))
    samples = load_sample_images()
    for name in SKLEARN_PHOTOS:
        index = [Path(f).name for f in samples.filenames].index(name)
        photos.append((f"sklearn:{name}", as_rgb_array(samples.images[index])))
    for name in MATPLOTLIB_PHOTOS:
        photos.append((f"matplotlib:{name}", read_image(matplotlib.cbook.get_sample_data(name, asfileobj=False))))
    return photos


def window_origins(length: int, window: int, stride: int) -> list[int]:
    """Window starts every `stride` px, the grid centred so both borders get the same margin."""
    count = (length - window) // stride + 1
    if count < 1:
        raise ValueError(f"a {length} px side cannot hold a {window} px window")
    offset = (length - window - (count - 1) * stride) // 2
    return [offset + i * stride for i in range(count)]


def photo_spectra(rgb: np.ndarray, window: int, stride: int):
    """Mean decorrelated and luminance |rfft2| over all windows of one photo and their mirrors."""
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).double()
    rows = window_origins(image.shape[1], window, stride)
    cols = window_origins(image.shape[2], window, stride)
    dec = torch.zeros(3, window, window // 2 + 1, dtype=torch.float64)
    grey = torch.zeros(1, window, window // 2 + 1, dtype=torch.float64)
    for y in rows:  # one row of windows at a time keeps memory small
        batch = torch.stack([image[:, y:y + window, x:x + window] for x in cols])
        batch = torch.cat([batch, batch.flip(-1)])
        dec += image_magnitude(batch).sum(0)
        grey += image_magnitude(batch, grey=True).sum(0)
    n = 2 * len(rows) * len(cols)
    return dec / n, grey / n, n


def channel_balance(mag: torch.Tensor, window: int) -> str:
    """Mean non-DC magnitude per channel and the mean colour DC/(H·W), as text."""
    ac = mag.clone()
    ac[:, 0, 0] = 0
    ac_mean = ac.sum((1, 2)) / (ac[0].numel() - 1)
    colour = mag[:, 0, 0] / window ** 2
    return ("non-DC mean " + " ".join(f"{v:8.3f}" for v in ac_mean.tolist())
            + " | DC/HW " + " ".join(f"{v:6.3f}" for v in colour.tolist()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_ASSET)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--stride", type=int, default=32)
    args = parser.parse_args(argv)

    photos = load_photos()
    decs, greys, counts = [], [], []
    print(f"{'photo':28s} {'size':>9s} {'windows':>7s}  channel balance (dec 0, 1, 2)")
    for name, rgb in photos:
        dec, grey, n = photo_spectra(rgb, args.window, args.stride)
        decs.append(dec)
        greys.append(grey)
        counts.append(n)
        print(f"{name:28s} {rgb.shape[1]:4d}x{rgb.shape[0]:<4d} {n:7d}  {channel_balance(dec, args.window)}")
    dec = torch.stack(decs).mean(0)
    grey = torch.stack(greys).mean(0)
    print(f"{'mean (equal weights)':28s} {'':9s} {sum(counts):7d}  {channel_balance(dec, args.window)}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_magnitude(
        args.out, dec, grey=grey, size=[args.window, args.window], image_count=len(photos),
        window_count=sum(counts), window=args.window, stride=args.stride,
        photos=[name for name, _ in photos],
        source="scripts/make_default_spectrum.py: native-resolution windows of photos shipped in "
               "scikit-image, scikit-learn and matplotlib, mirrored, equal weight per photo")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
