"""Dataset exemplars and an activation atlas on the photos shipped with scikit-image, scikit-learn
and matplotlib, and what they cost. Prints markdown tables and writes the sheets for docs/.

    python benchmarks/exemplars_atlas.py [--out exemplars-bench] [--docs docs/exemplars]
        [--layer _blocks.15] [--grid 8] [--umap 10000 100000] [--no-atlas]

The folder: every shipped photo whole and in 9 overlapping crops (half its side, a 3 x 3 grid),
as PNGs. Parts:
- exemplars of EfficientNet-Lite0's 8 class logits of the demo and 4 channels of `_blocks.15`
  (top 6), as a sheet of patches;
- the pass's images/s against a plain `torch` loop over the same files through the same
  DataLoader (ImageFolder, the same workers and batch size), run in turn, 3 rounds, and its
  peak memory (max RSS, a subprocess each) on the folder and on 4 copies of it;
- an activation atlas of `--layer` (its tiles as docs' sheet), and the UMAP step's seconds for
  10^4 and 10^5 vectors (real activations, repeated with 1% noise past what the photos give).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from amp_choice import cpu_model
from PIL import Image

from phasevis_ext import models
from phasevis_ext.activation_atlas import umap_layout, activation_atlas
from phasevis_ext.exemplars import exemplars
from phasevis_ext.exemplars.dataset import ImageFolder, list_items
from phasevis_ext.exemplars.scan import model_geometry
from phasevis_ext.io import export
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES

ROOT = Path(__file__).resolve().parents[1]
DEMO_LOGITS = "1,9,130,207,291,323,417,980"


def photo_folder(out: Path, copies: int = 1) -> Path:
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_default_spectrum import load_photos

    folder = out / f"photos-x{copies}"
    if folder.exists():
        return folder
    for name, rgb in load_photos():
        image = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
        height, width = rgb.shape[:2]
        crops = [(0, 0, width, height)] + [(int(x * width / 4), int(y * height / 4), int(x * width / 4 + width / 2),
                                            int(y * height / 4 + height / 2)) for y in range(3) for x in range(3)]
        for copy in range(copies):
            for i, box in enumerate(crops):
                path = folder / f"copy{copy}" / f"{Path(name).stem}-{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                image.crop(box).save(path)
    return folder


def plain_loop(model, folder: Path, batch_size: int, workers: int) -> float:
    """images/s of a bare inference loop over the same DataLoader."""
    resize, crop = model_geometry(model, None)
    dataset = ImageFolder(folder, list_items(folder), channels=3, resize=resize, crop=crop)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            model(batch["image"])
    return len(dataset) / (time.perf_counter() - start)


def ours(model, folder: Path, out: Path, batch_size: int, workers: int) -> tuple[float, float]:
    """(images/s of the pass, seconds writing its files: receptive fields, patches, JSON, page)."""
    result = exemplars(model, folder, out, layers=["_blocks.15"], logits=DEMO_LOGITS, top=6, batch_size=batch_size,
                       workers=workers, new_run=True, progress=False)
    return len(list_items(folder)) / result.seconds["pass"], result.seconds["files"]


def peak_rss_mib(folder: Path, out: Path, batch_size: int, workers: int) -> float:
    code = (f"import resource, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); from exemplars_atlas import ours; "
            f"from phasevis_ext import models; m = models.load('efficientnet_lite0'); "
            f"ours(m, __import__('pathlib').Path({str(folder)!r}), __import__('pathlib').Path({str(out)!r}), "
            f"{batch_size}, {workers}); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(output.strip().splitlines()[-1]) / 1024


def sheet_of_exemplars(out: Path, path: Path, channels: int = 4) -> None:
    """The patches of the logits and of the first `channels` channels, a row of 6 per unit."""
    data = json.loads((out / "exemplars.json").read_text())
    shown = [u for u in data["units"] if u.startswith("logit:")] + [u for u in data["units"] if ":c" in u][:channels]
    tiles, labels = [], []
    for unit in shown:
        entries = data["units"][unit]
        for e in entries:
            with Image.open(out / e["patch"]) as patch:
                tile = torch.from_numpy(np.asarray(patch.convert("RGB").resize((96, 96)))).permute(2, 0, 1) / 255
            tiles.append(tile)
            labels.append(f"{IMAGENET_CLASSES[int(unit[6:])] if unit.startswith('logit:') else unit} "
                          f"{e['activation']:.3g}")
    export.contact_sheet(tiles, labels, path, cols=6)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("exemplars-bench"))
    parser.add_argument("--docs", type=Path, default=None, help="where the sheets go (default: --out)")
    parser.add_argument("--layer", default="_blocks.15")
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument("--umap", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-atlas", action="store_true", help="the exemplar pass and its memory only")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    docs = args.docs or args.out
    docs.mkdir(parents=True, exist_ok=True)
    folder, big = photo_folder(args.out), photo_folder(args.out, copies=4)
    model = models.load("efficientnet_lite0")
    count = len(list_items(folder))
    print(f"# Exemplars and an activation atlas on the shipped photos ({count} images); {cpu_model()}, "
          f"torch {torch.__version__}, batch {args.batch_size}, {args.workers} worker(s)\n")

    ours(model, folder, args.out / "warm-up", args.batch_size, args.workers)
    rounds = [(plain_loop(model, folder, args.batch_size, args.workers),
               ours(model, folder, args.out / "exemplars", args.batch_size, args.workers)) for _ in range(3)]
    plain = float(np.median([r[0] for r in rounds]))
    mine = float(np.median([r[1][0] for r in rounds]))
    files = float(np.median([r[1][1] for r in rounds]))
    sheet_of_exemplars(args.out / "exemplars", docs / "exemplars.jpg")
    print("| pass | images/s (median of 3) | against the plain loop |\n|---|---|---|")
    print(f"| plain torch loop, same DataLoader | {plain:.1f} | 1.00 |")
    print(f"| exemplars pass (_blocks.15's 320 channels + 8 logits, top 6) | {mine:.1f} | {plain / mine:.2f}x the time |\n")
    print(f"Writing the {328 * 6} patches, exemplars.json and index.html after the pass: {files:.1f} s.\n")
    small = peak_rss_mib(folder, args.out / "rss-1", args.batch_size, args.workers)
    large = peak_rss_mib(big, args.out / "rss-4", args.batch_size, args.workers)
    print(f"| images | peak RSS, MiB |\n|---|---|\n| {count} | {small:.0f} |\n| {4 * count} | {large:.0f} |\n")

    if args.no_atlas:
        return
    start = time.perf_counter()
    result = activation_atlas(model, folder, args.out / "atlas", layer=args.layer, grid=args.grid, min_count=3,
                              samples=max(args.umap), workers=args.workers, progress=False)
    atlas_seconds = time.perf_counter() - start
    Image.open(args.out / "atlas" / "atlas.png").convert("RGB").save(docs / "activation_atlas.jpg", quality=90)
    vectors = torch.load(args.out / "atlas" / "samples.pt", weights_only=True)["vectors"]
    print(f"Activation atlas of {args.layer}: {len(result.cells)} cells of {args.grid}x{args.grid} from "
          f"{len(vectors)} vectors, {atlas_seconds:.0f} s in all.\n")
    print("| UMAP input | seconds |\n|---|---|")
    for n in args.umap:
        generator = torch.Generator().manual_seed(0)
        repeats = vectors[torch.randint(0, len(vectors), (n,), generator=generator)]
        noisy = repeats + 0.01 * repeats.std() * torch.randn(repeats.shape, generator=generator)
        start = time.perf_counter()
        umap_layout(noisy, 0)
        print(f"| {n} x {vectors.shape[1]} | {time.perf_counter() - start:.1f} |")


if __name__ == "__main__":
    main()
