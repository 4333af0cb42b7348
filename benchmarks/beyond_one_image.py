"""Evidence for the runs that start from or aim at photos, and for k samples per unit: the
inversion, diversity and accentuation parts of benchmarks/fidelity.py (`--parts`).

Every score comes from EfficientNet-Lite2, a model that made none of the images:
- inversion: how close each inversion is to its photo: the cosine of their lite2 penultimate
  features, and the SSIM of the two images after a Gaussian blur (an inversion from a deep layer
  cannot place every edge, so the unblurred SSIM would measure texture it was never asked for);
- diversity: how far apart a unit's k samples are (mean pairwise 1 - cosine of their lite2
  penultimate features), beside the unit's own activation, so the cost of the term shows;
- accentuation: the rank of the target class under lite2 on the photo and on the result, and how
  far the result moved from its seed (RMSE, SSIM, lite2 feature cosine).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sheets import save_sheet, thumbnails

from phasevis_ext.guided.accentuation import DEFAULT_PENALTY, accentuate
from phasevis_ext.guided.inversion import invert
from phasevis_ext.io.imagenet_classes import IMAGENET_CLASSES
from phasevis_ext.param.spectrum import LUMA
from phasevis_ext.render.objectives import channel, logit
from phasevis_ext.render.visualize import visualize

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("inversion", "diversity", "accentuation")
INVERSION_METHODS = ("maco", "fourier", "pixel")
# (param, magnitude) of the accentuation runs: MACO under each magnitude, and Fourier.
ACCENTUATION_RUNS = (("maco", "photo"), ("maco", "natural"), ("fourier", "photo"))
BLUR_SIGMA = 3.0  # px at 256²: about 1% of the side
CANDIDATE_TARGETS = (1, 9, 22, 76, 94, 130, 207, 291, 323, 340, 388, 417, 440, 511, 574, 717, 779, 852, 933, 980)
UNRELATED_RANK = 100  # a target must be ranked below this by lite2 on the photo: a class the photo is not


def shipped_photos(size: int) -> tuple[torch.Tensor, list[str]]:
    """(N, 3, size, size) in [0, 1]: the centre square of each photo behind the default spectrum,
    resized with antialiasing, and the photos' names."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_default_spectrum import load_photos

    images, names = [], []
    for name, rgb in load_photos():
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()
        side = min(image.shape[1:])
        top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
        square = image[None, :, top:top + side, left:left + side]
        images.append(F.interpolate(square, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
        names.append(name.split(":", 1)[1].removesuffix(".jpg"))
    return torch.cat(images).clamp(0, 1), names


@torch.no_grad()
def judge_outputs(judge, images: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of whole images resized to the judge's input: features are the input of
    its classifier (`_fc`), the penultimate layer."""
    captured = {}
    handle = judge._fc.register_forward_pre_hook(lambda module, args: captured.setdefault("x", args[0]))
    try:
        logits = judge(F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                                     align_corners=False))
    finally:
        handle.remove()
    return captured["x"].flatten(1).float(), logits.float()


def feature_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a, b, dim=1)


def mean_pairwise_distance(features: torch.Tensor) -> torch.Tensor:
    """(G,) for features (G, k, D): the mean over pairs of 1 - cosine."""
    unit = F.normalize(features, dim=-1)
    cosine = unit @ unit.transpose(1, 2)
    k = features.shape[1]
    return (k * k - cosine.sum(dim=(1, 2))) / (k * (k - 1))


def blurred_ssim(a: torch.Tensor, b: torch.Tensor, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """(N,) SSIM of the luminance of a[i] and b[i] after a Gaussian blur of `sigma` px (none for 0)."""
    from skimage.filters import gaussian
    from skimage.metrics import structural_similarity

    luma = torch.tensor(LUMA)

    def prepared(image: torch.Tensor) -> np.ndarray:
        grey = torch.einsum("chw,c->hw", image.float().cpu(), luma).numpy()
        return gaussian(grey, sigma=sigma) if sigma else grey

    return np.array([structural_similarity(prepared(x), prepared(y), data_range=1.0) for x, y in zip(a, b)])


def ranks(logits: torch.Tensor, targets: list[int]) -> list[int]:
    """1-based rank of each row's target."""
    target_logit = logits.gather(1, torch.tensor(targets)[:, None])
    return ((logits > target_logit).sum(1) + 1).tolist()


def inversion_part(model, judge, judge_size, photos, names, layers, *, steps, options, out: Path) -> dict:
    """Each photo inverted at each layer by each parameterization, same steps and crops."""
    photo_features, _ = judge_outputs(judge, photos, judge_size)
    # The floor: how close an unrelated photo is (each photo against every other one).
    unrelated = 1 - mean_pairwise_distance(photo_features[None]).item()
    n = len(photos)
    shuffled = photos.roll(1, dims=0)
    data = {"layers": list(layers), "methods": list(INVERSION_METHODS), "photos": names, "runs": {},
            "unrelated": {"cosine": unrelated, "ssim": float(blurred_ssim(shuffled, photos).mean())}}
    rows, labels = [thumbnails(photos)], [f"photo: {name}" for name in names]
    for layer in layers:
        for method in INVERSION_METHODS:
            result = invert(model, photos, layer, param=method, steps=steps, **options)
            features, _ = judge_outputs(judge, result.images, judge_size)
            cosine = feature_cosine(features, photo_features)
            ssim = blurred_ssim(result.images, photos)
            data["runs"][f"{layer}/{method}"] = {
                "layer": layer, "method": method, "seconds": result.seconds,
                "similarity_at_layer": result.scores.tolist(), "lite2_cosine": cosine.tolist(),
                "blurred_ssim": ssim.tolist()}
            print(f"inversion {layer} {method}: lite2 cosine {cosine.mean():.3f}, SSIM {ssim.mean():.3f}, "
                  f"{result.seconds:.0f} s", flush=True)
            rows.append(thumbnails(result.images))
            labels += [f"{layer} {method}"] * n
    save_sheet(torch.cat(rows), labels, out / "inversion.jpg", cols=n)
    return data


def diversity_part(model, judge, judge_size, layer, units, *, samples, weight, steps, options, out: Path) -> dict:
    """k samples of each channel, without and with the diversity term."""
    data = {"layer": layer, "channels": units, "samples": samples, "weight": weight, "runs": {}}
    sheet, labels = [], []
    for name, w in (("without", 0.0), ("with", weight)):
        result = visualize(model, [channel(layer, c) for c in units], samples=samples, diversity=w, steps=steps,
                           **options)
        flat = result.images.flatten(0, 1)
        features, _ = judge_outputs(judge, flat, judge_size)
        distance = mean_pairwise_distance(features.unflatten(0, (len(units), samples)))
        data["runs"][name] = {"weight": w, "seconds": result.seconds, "activation": result.scores.mean(1).tolist(),
                              "activation_per_sample": result.scores.tolist(),
                              "lite2_distance": distance.tolist()}
        print(f"diversity {name} (w={w:g}): lite2 distance {distance.mean():.3f}, "
              f"activation {result.scores.mean():.3g}, {result.seconds:.0f} s", flush=True)
        sheet.append(result.images)
    # One row per channel: its k samples without the term, then its k samples with it.
    for u, c in enumerate(units):
        for name, images in zip(("without", "with"), sheet):
            labels += [f"c{c} {name} s{j}" for j in range(samples)]
    images = torch.cat([torch.cat([sheet[0][u], sheet[1][u]]) for u in range(len(units))])
    save_sheet(images, labels, out / "diversity.jpg", cols=2 * samples)
    return data


def pick_targets(photo_logits: torch.Tensor) -> list[int]:
    """For photo i, the first of CANDIDATE_TARGETS (starting at the i-th, so photos differ) that
    lite2 ranks at UNRELATED_RANK or below on the photo."""
    targets = []
    for i, row in enumerate(photo_logits):
        for j in range(len(CANDIDATE_TARGETS)):
            c = CANDIDATE_TARGETS[(i + j) % len(CANDIDATE_TARGETS)]
            if ranks(row[None], [c])[0] >= UNRELATED_RANK:
                targets.append(c)
                break
        else:
            raise RuntimeError(f"photo {i}: every candidate target is ranked above {UNRELATED_RANK} by lite2")
    return targets


def accentuation_part(model, judge, judge_size, photos, names, *, penalty, reg_layer, steps, options,
                      out: Path) -> dict:
    """Each photo accentuated toward a class it is not, by each (param, magnitude)."""
    if penalty is None:
        penalty = DEFAULT_PENALTY["pixels" if reg_layer is None else "reg_layer"]
    _, photo_logits = judge_outputs(judge, photos, judge_size)
    targets = pick_targets(photo_logits)
    data = {"photos": names, "targets": targets, "penalty": penalty, "reg_layer": reg_layer,
            "rank_before": ranks(photo_logits, targets), "runs": {}}
    sheet, labels = [thumbnails(photos)], [f"{name} -> {IMAGENET_CLASSES[t]}" for name, t in zip(names, targets)]
    for param, magnitude in ACCENTUATION_RUNS:
        result = accentuate(model, photos, [logit(t) for t in targets], param=param, magnitude=magnitude,
                            penalty=penalty, reg_layer=reg_layer, steps=steps, **options)
        features, logits = judge_outputs(judge, result.images, judge_size)
        seed_features, seed_logits = judge_outputs(judge, result.seeds, judge_size)
        key = f"{param}/{magnitude}" if param == "maco" else param
        data["runs"][key] = {
            "seconds": result.seconds, "rank_after": ranks(logits, targets), "rank_seed": ranks(seed_logits, targets),
            "p_after": logits.softmax(1).gather(1, torch.tensor(targets)[:, None])[:, 0].tolist(),
            "rmse": (result.images - result.seeds).pow(2).flatten(1).mean(1).sqrt().tolist(),
            "ssim": blurred_ssim(result.images, result.seeds, sigma=0).tolist(),
            "lite2_cosine_to_seed": feature_cosine(features, seed_features).tolist(),
            "seed_rmse_to_photo": (result.seeds - photos).pow(2).flatten(1).mean(1).sqrt().tolist()}
        run = data["runs"][key]
        print(f"accentuation {key}: median rank {np.median(data['rank_before']):.0f} -> "
              f"{np.median(run['rank_after']):.0f}, RMSE {np.mean(run['rmse']):.3f}, {result.seconds:.0f} s", flush=True)
        sheet += [thumbnails(result.images), thumbnails(result.alpha.expand(-1, 3, -1, -1))]
        labels += [f"{key}: rank {r}" for r in run["rank_after"]] + [f"{key}: transparency"] * len(names)
    save_sheet(torch.cat(sheet), labels, out / "accentuation.jpg", cols=len(names))
    return data


def fmt(values, spec=".3f") -> str:
    return format(float(np.mean(values)), spec)


def report_sections(data: dict, table) -> list[str]:
    """The markdown sections of the parts that ran; `table(header, rows)` formats a table."""
    lines = []
    if "inversion" in data:
        inv = data["inversion"]
        rows = [[run["layer"], run["method"], fmt(run["similarity_at_layer"]), fmt(run["lite2_cosine"]),
                 fmt(run["blurred_ssim"]), f"{run['seconds']:.0f}"] for run in inv["runs"].values()]
        lines += [
            "## Inversion", "",
            f"The {len(inv['photos'])} photos ({', '.join(inv['photos'])}; centre square, 256²) inverted at an "
            "early, a middle and the last block of lite0 by each parameterization, same steps, crops and "
            "similarity (cosine, the library's default). Columns: the similarity lite0 reached at the layer "
            "(what was optimized), then what lite2 sees: the cosine of its penultimate features of inversion "
            f"and photo, and the SSIM of their luminance after a {BLUR_SIGMA:g} px Gaussian blur. Means over "
            f"the photos. For scale, an unrelated photo (every other one of the set) scores a lite2 cosine of "
            f"{inv['unrelated']['cosine']:.3f} and a blurred SSIM of {inv['unrelated']['ssim']:.3f}.", "",
            table(["layer", "param", "cosine at the layer (lite0)", "lite2 feature cosine", "blurred SSIM",
                   "seconds"], rows), "",
            "Photos on the first row, then one row per layer and parameterization:", "",
            "![inversion](inversion.jpg)", ""]
    if "diversity" in data:
        div = data["diversity"]
        rows = [[name, f"{run['weight']:g}", fmt(run["lite2_distance"]), fmt(run["activation"], ".3g"),
                 f"{run['seconds']:.0f}"] for name, run in div["runs"].items()]
        lines += [
            "## Diversity", "",
            f"{len(div['channels'])} channels of `{div['layer']}` ({', '.join(map(str, div['channels']))}), "
            f"k = {div['samples']} samples each, without and with the diversity term at that layer. Distance: "
            "the mean over a unit's pairs of samples of 1 - cosine of their lite2 penultimate features, averaged "
            "over the units; activation: the channel's mean activation on its samples (fixed evaluation crops).",
            "", table(["diversity term", "weight", "lite2 pairwise distance", "activation", "seconds"], rows), "",
            "Per unit: " + ", ".join(
                f"c{c} {div['runs']['without']['lite2_distance'][u]:.3f} → {div['runs']['with']['lite2_distance'][u]:.3f}"
                f" (activation {div['runs']['without']['activation'][u]:.3g} → {div['runs']['with']['activation'][u]:.3g})"
                for u, c in enumerate(div["channels"])) + ".", "",
            "One row per channel: its samples without the term, then with it:", "",
            "![diversity](diversity.jpg)", ""]
    if "accentuation" in data:
        acc = data["accentuation"]
        where = f"at `{acc['reg_layer']}`" if acc["reg_layer"] else "in pixels"
        rows = []
        for key, run in acc["runs"].items():
            rows.append([key, f"{np.median(acc['rank_before']):.0f}", f"{np.median(run['rank_seed']):.0f}",
                         f"{np.median(run['rank_after']):.0f}",
                         f"{sum(r <= 5 for r in run['rank_after'])}/{len(run['rank_after'])}", fmt(run["p_after"]),
                         fmt(run["rmse"]), fmt(run["ssim"]), fmt(run["lite2_cosine_to_seed"]),
                         f"{run['seconds']:.0f}"])
        pairs = ", ".join(f"{name} → {IMAGENET_CLASSES[t]}" for name, t in zip(acc["photos"], acc["targets"]))
        lines += [
            "## Accentuation", "",
            f"Each photo pushed toward a lite0 class logit that lite2 ranks {UNRELATED_RANK} or lower on the photo "
            f"({pairs}); penalty {acc['penalty']:g} {where}. Ranks are lite2's (1 = top), medians over the "
            "photos; the seed is the start as the parameterization renders it (MACO with the natural magnitude "
            "starts from the photo's phases under the average spectrum). Distances are from the seed: RMSE "
            "and SSIM of the pixels, and the cosine of lite2 penultimate features.", "",
            table(["run", "rank on photo", "rank on seed", "rank after", "top-5 after", "p(target) after",
                   "RMSE to seed", "SSIM to seed", "lite2 cosine to seed", "seconds"], rows), "",
            "Per photo, lite2 rank before → after: " + "; ".join(
                f"{key}: " + ", ".join(f"{b}→{a}" for b, a in zip(acc["rank_before"], run["rank_after"]))
                for key, run in acc["runs"].items()) + ".", "",
            "Photos on the first row, then per run its results and their transparency maps:", "",
            "![accentuation](accentuation.jpg)", ""]
    return lines
