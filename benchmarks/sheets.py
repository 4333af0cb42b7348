"""Contact sheets for the benchmark reports: the raw images (no display stretch: these are the
images measured) at thumbnail size; a .jpg path keeps them small enough for the repository."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from phasevis_ext.io import export

THUMBNAIL = 128  # px


def thumbnails(images: torch.Tensor, side: int = THUMBNAIL) -> torch.Tensor:
    """(N, C, side, side); images already that small are left as they are."""
    if images.shape[-1] <= side:
        return images
    return F.interpolate(images.float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)


def save_sheet(images: torch.Tensor, labels, path: Path, cols: int) -> None:
    export.contact_sheet(thumbnails(images), labels, path, cols=cols)
