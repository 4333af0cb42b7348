"""Writes the greyscale images that ship with scikit-image (a CT phantom, microscopy, the moon,
textures, ...) into a folder, as 8-bit PNGs and 16-bit TIFFs: a stand-in for a folder of scans.

    python examples/grey_scans.py scans/
"""
import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

GREY_IMAGES = ("camera", "cell", "coins", "moon", "brick", "grass", "gravel", "shepp_logan_phantom", "clock")


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(GREY_IMAGES):
        image = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
        image = (image - image.min()) / max(image.max() - image.min(), 1e-12)
        if index % 2:
            Image.fromarray((image * 65535).round().astype(np.uint16)).save(out / f"{name}.tif")
        else:
            Image.fromarray((image * 255).round().astype(np.uint8)).save(out / f"{name}.png")
    print(f"wrote {len(GREY_IMAGES)} images to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "scans")
