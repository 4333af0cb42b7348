"""The natural-image magnitude spectrum: units, resizing, sources, image reading and diagnostics."""
from __future__ import annotations

import importlib.metadata
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from phasevis_ext.io.images import UnreadableImageWarning, read_image
from phasevis_ext.ops.color import decorrelate, default_color_matrix, recorrelate
from phasevis_ext.param import diagnostics, estimation, spectrum


def pink_noise(n_images: int, size: int, seed: int, *, exponent: float = 1.0, peak: float | None = None):
    """(H, W, 3) float32 images in [0, 1] with an isotropic 1/f**exponent amplitude spectrum
    (optionally a ring at `peak` cycles/pixel instead), random mean colours, periodic borders."""
    rng = np.random.default_rng(seed)
    r = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :])
    r[0, 0] = 1.0
    amplitude = r ** -exponent if peak is None else np.exp(-0.5 * ((r - peak) / 0.03) ** 2)
    amplitude[0, 0] = 0.0
    images = []
    for _ in range(n_images):
        noise = rng.normal(size=(3, size, size // 2 + 1)) + 1j * rng.normal(size=(3, size, size // 2 + 1))
        x = np.fft.irfft2(noise * amplitude, s=(size, size))
        x = 0.12 * x / x.std() + rng.uniform(0.35, 0.65, size=(3, 1, 1))
        images.append(np.clip(x, 0, 1).transpose(1, 2, 0).astype(np.float32))
    return images


def profile(mag, width=None):
    return diagnostics.radial_profile(mag, source_width=width)


def median_rel_error(a, b, max_freq=0.5, keep=None):
    """Median relative difference of two radial profiles on the same rings up to max_freq."""
    assert np.allclose(a.freqs, b.freqs)
    keep = (a.freqs <= max_freq) if keep is None else keep
    return np.median(np.abs(a.amplitude[:, keep] / b.amplitude[:, keep] - 1), axis=1)


def crops(images, size):
    """Top-left (size, size) crops, as a (B, 3, size, size) tensor."""
    return torch.stack([torch.from_numpy(im[:size, :size]).permute(2, 0, 1) for im in images])


# ----------------------------------------------------------------------------------- resizing

def test_resize_512_to_256_matches_computing_at_256():
    images = pink_noise(8, 512, seed=1)
    at_512 = estimation.compute_magnitude(images, 512, progress=False)
    at_256 = estimation.compute_magnitude(images, 256, progress=False)  # the same images, resized by PIL
    resized = spectrum.resize_magnitude(at_512, 256)
    assert resized.shape == at_256.shape == (3, 256, 129)
    assert (median_rel_error(profile(resized), profile(at_256)) < 0.10).all()
    # The antialias filter of the image resize darkens the top octave, which no spectrum can know.
    assert (median_rel_error(profile(resized), profile(at_256), max_freq=0.25) < 0.05).all()
    torch.testing.assert_close(resized[:, 0, 0], at_256[:, 0, 0], rtol=0.05, atol=0)


def test_resize_keeps_cycles_per_pixel_for_crops():
    # A ring at 0.15 cycles/pixel is no 1/f spectrum: only a cycles-per-pixel resize with
    # sqrt(H·W) units maps a spectrum of 512-pixel crops onto one of 256-pixel crops (a
    # cycles-per-image one would move the ring to 0.3). Off the ring there is only the crops'
    # spectral leakage, which depends on the crop size, so the comparison is where the ring is.
    images = pink_noise(6, 768, seed=2, peak=0.15)
    big = spectrum.image_magnitude(crops(images, 512)).mean(0)
    small = spectrum.image_magnitude(crops(images, 256)).mean(0)
    down, direct = profile(spectrum.resize_magnitude(big, 256)), profile(small)
    ring = direct.amplitude[0] > 0.1 * direct.amplitude[0].max()
    assert (median_rel_error(down, direct, keep=ring) < 0.05).all()
    assert np.allclose(down.freqs[down.amplitude.argmax(1)], 0.15, atol=0.01)
    up, truth = profile(spectrum.resize_magnitude(small, 512)), profile(big)
    ring = truth.amplitude[0] > 0.1 * truth.amplitude[0].max()
    assert (median_rel_error(up, truth, keep=ring) < 0.05).all()


def test_upsampling_extends_the_power_law():
    images = pink_noise(8, 1024, seed=3, exponent=1.2)
    small = spectrum.image_magnitude(crops(images, 256)).mean(0)
    big = spectrum.image_magnitude(crops(images, 512)).mean(0)
    up = spectrum.resize_magnitude(small, 512)
    up_profile, big_profile = profile(up), profile(big)
    assert (median_rel_error(up_profile, big_profile) < 0.10).all()
    # Below 1/256 cycles/pixel there is no data at 256: the fitted power law must land near the
    # truth (a flat or blurred continuation would be about 2**-1.2 = 0.44 of it). The few bins of
    # that ring are noisy, so the three channels (independent draws) are pooled.
    lowest = up_profile.freqs < 1 / 256
    assert lowest.any()
    ratio = (up_profile.amplitude[:, lowest] / big_profile.amplitude[:, lowest]).mean()
    assert 0.8 < ratio < 1.25
    torch.testing.assert_close(up[:, 0, 0], small[:, 0, 0] * 4, rtol=1e-12, atol=0)


def test_resize_identity_and_source_width():
    mag = spectrum.image_magnitude(torch.rand(2, 3, 33, 47)).mean(0)
    torch.testing.assert_close(spectrum.resize_magnitude(mag, (33, 47), source_width=47), mag.double())
    with pytest.raises(ValueError, match="source_width"):
        spectrum.resize_magnitude(mag, 32, source_width=40)
    odd = spectrum.resize_magnitude(mag, (65, 91), source_width=47)
    assert odd.shape == (3, 65, 46) and torch.isfinite(odd).all() and (odd > 0).all()


# ------------------------------------------------------------------------------ the default

def test_default_slope_is_natural():
    for size in (256, 512):
        prof = profile(spectrum.natural_magnitude(size, dtype=torch.float64))
        assert ((prof.slope > -1.8) & (prof.slope < -0.9)).all(), prof.slope


@pytest.mark.parametrize("size", [1, 7, (17, 31), (31, 17), 255, (300, 401), (64, 1), (1, 64), 513])
@pytest.mark.parametrize("channels", [3, 1, 4])
@pytest.mark.filterwarnings("ignore::phasevis_ext.param.spectrum.PowerLawSpectrumWarning")
def test_any_size_and_channel_count(size, channels):
    mag = spectrum.natural_magnitude(size, channels)
    h, w = (size, size) if isinstance(size, int) else size
    assert mag.shape == (channels, h, w // 2 + 1)
    assert mag.dtype == torch.float32
    assert torch.isfinite(mag).all() and (mag > 0).all()


def test_units_dc_is_the_mean_colour_times_area():
    asset = spectrum.load_magnitude(spectrum.DEFAULT_ASSET)
    h, w = asset.meta["size"]
    for size in [(128, 128), (300, 401)]:
        mag = spectrum.natural_magnitude(size, dtype=torch.float64)
        colour = mag[:, 0, 0] / (size[0] * size[1])
        torch.testing.assert_close(colour, asset.magnitude[:, 0, 0] / (h * w))
    assert asset.meta["basis"] == spectrum.BASIS


def test_other_channel_counts_fall_back_to_a_power_law_with_a_warning():
    with pytest.warns(spectrum.PowerLawSpectrumWarning, match="spectrum compute"):
        four = spectrum.natural_spectrum(64, 4, dtype=torch.float64)
    torch.testing.assert_close(four.magnitude, spectrum.power_law_magnitude(64, 4))
    assert torch.equal(four.color_matrix, torch.eye(4, dtype=torch.float64))


def test_the_grey_default_is_the_stored_luminance_spectrum():
    grey = spectrum.natural_magnitude(64, 1, dtype=torch.float64)
    # The stored luminance spectrum agrees with the one derived from the decorrelated channels.
    derived = spectrum._grey_from_decorrelated(spectrum.natural_magnitude(64, dtype=torch.float64))
    assert (median_rel_error(profile(derived), profile(grey)) < 0.05).all()


def test_cache_returns_fresh_copies_with_the_requested_dtype():
    a = spectrum.natural_magnitude(32, dtype=torch.float64)
    a.zero_()
    b = spectrum.natural_magnitude(32, dtype=torch.float64)
    assert (b > 0).all()
    assert spectrum.natural_magnitude(32, dtype=torch.float16, device="cpu").dtype == torch.float16


# --------------------------------------------------------------------------- colour basis

def test_the_periodic_part_has_no_border_jump_and_the_smooth_part_holds_it_all():
    """Moisan's decomposition: u = p + s, where s has zero mean and its periodic Laplacian is the
    jump of u across its opposite borders (and zero inside), so p wraps around smoothly."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 24, dtype=torch.float64), torch.linspace(0, 1, 20, dtype=torch.float64),
                          indexing="ij")
    u = 3 * x + 2 * y ** 2 + 0.1 * torch.rand(24, 20, dtype=torch.float64)
    p = spectrum.periodic_component(u)
    s = u - p
    laplacian = sum(torch.roll(s, shift, dim) for shift in (1, -1) for dim in (0, 1)) - 4 * s
    jumps = torch.zeros_like(u)
    jumps[0, :] += u[-1] - u[0]
    jumps[-1, :] -= u[-1] - u[0]
    jumps[:, 0] += u[:, -1] - u[:, 0]
    jumps[:, -1] -= u[:, -1] - u[:, 0]
    torch.testing.assert_close(laplacian, jumps)
    assert abs(float(s.mean())) < 1e-12
    # The cross: u's spectrum has far more power on the axes than at the same radius elsewhere; p's not.
    from phasevis_ext.param.diagnostics import axis_ring_ratio

    cross = [float(axis_ring_ratio(torch.fft.rfft2(v).abs().pow(2)[None].numpy(), 0.2, full_width=20)[0])
             for v in (u - u.mean(), p - p.mean())]
    assert cross[0] > 20 * cross[1], cross


def test_colour_basis_round_trips():
    rgb = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    torch.testing.assert_close(recorrelate(decorrelate(rgb)), rgb)
    torch.testing.assert_close(decorrelate(recorrelate(rgb)), rgb)


def test_image_magnitude_is_rfft2_of_the_periodic_part_of_rgb_times_inverse_k():
    rgb = torch.rand(3, 12, 10, dtype=torch.float64)
    k = default_color_matrix(3, dtype=torch.float64).numpy()
    dec = np.einsum("chw,cd->dhw", rgb.numpy(), np.linalg.inv(k))  # pixels are row vectors
    periodic = spectrum.periodic_component(torch.from_numpy(dec)).numpy()
    np.testing.assert_allclose(spectrum.image_magnitude(rgb).numpy(), np.abs(np.fft.rfft2(periodic)), rtol=1e-10)
    mean_colour = rgb.mean((1, 2)).numpy() @ np.linalg.inv(k)
    np.testing.assert_allclose(spectrum.image_magnitude(rgb)[:, 0, 0].numpy(), np.abs(mean_colour) * 120)


# --------------------------------------------------------------------- computing from images

def save_png(path, image01):
    Image.fromarray((np.clip(image01, 0, 1) * 255).round().astype(np.uint8)).save(path)


def test_folder_computation_and_npz_round_trip(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(pink_noise(4, 96, seed=4)):
        save_png(folder / f"{i}.png", image)
    out = tmp_path / "spectrum.npz"
    mag = estimation.compute_magnitude(folder, (48, 40), progress=False, out=out, note="test")
    assert mag.shape == (3, 48, 21)
    loaded = spectrum.load_magnitude(out)
    torch.testing.assert_close(loaded.magnitude, mag, rtol=1e-6, atol=1e-3)
    assert loaded.grey.shape == (1, 48, 21)
    assert loaded.meta["size"] == [48, 40] and loaded.meta["image_count"] == 4
    assert loaded.meta["basis"] == spectrum.BASIS and loaded.meta["source"] == str(folder)
    assert loaded.meta["note"] == "test"
    # The file works as a source, at its own size and any other, grey included.
    torch.testing.assert_close(spectrum.natural_magnitude((48, 40), source=out), mag.float(), rtol=1e-6, atol=1e-3)
    assert spectrum.natural_magnitude(33, 1, source=str(out)).shape == (1, 33, 17)
    with pytest.raises(ValueError, match="is for 3-channel images, not 2"):
        spectrum.natural_magnitude(33, 2, source=str(out))
    # And the CLI entry point writes the same thing.
    written = estimation.cli_compute(str(folder), "48x40", tmp_path / "cli", color_matrix="default", progress=False)
    assert written.name == "cli.npz"
    torch.testing.assert_close(spectrum.load_magnitude(written).magnitude, loaded.magnitude)
    # By default the command decorrelates with the images' own matrix, and stores it.
    own = spectrum.load_magnitude(estimation.cli_compute(str(folder), "48x40", tmp_path / "own", progress=False))
    assert own.meta["basis"] == spectrum.STORED_BASIS
    assert not torch.allclose(own.color_matrix, default_color_matrix(3, dtype=torch.float64), atol=1e-3)


def test_inputs_in_memory_agree():
    images = pink_noise(3, 32, seed=5)
    as_uint8 = [(im * 255).round().astype(np.uint8) for im in images]
    batch = torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im in as_uint8])
    from_list = estimation.compute_magnitude(as_uint8, 32, progress=False)
    from_batch = estimation.compute_magnitude(batch, 32, progress=False)
    from_float = estimation.compute_magnitude([im.astype(np.float32) / 255 for im in as_uint8], 32, progress=False)
    torch.testing.assert_close(from_list, from_batch)
    torch.testing.assert_close(from_list, from_float)


def test_npy_source(tmp_path):
    path = tmp_path / "plain.npy"
    np.save(path, spectrum.natural_magnitude(64).numpy())
    mag = spectrum.natural_magnitude(32, source=path)
    assert mag.shape == (3, 32, 17) and (mag > 0).all()


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no readable image"):
        estimation.compute_magnitude(tmp_path, 16, progress=False)


def test_non_image_and_truncated_files_warn_and_are_skipped(tmp_path):
    images = pink_noise(3, 64, seed=6)
    save_png(tmp_path / "a.png", images[0])
    save_png(tmp_path / "b.png", images[1])
    (tmp_path / "notes.txt").write_text("not an image")
    Image.fromarray((images[2] * 255).astype(np.uint8)).save(tmp_path / "c.jpg", quality=90)
    data = (tmp_path / "c.jpg").read_bytes()
    (tmp_path / "c.jpg").write_bytes(data[: len(data) // 2])
    with pytest.warns(UnreadableImageWarning) as record:
        estimation.compute_magnitude(tmp_path, 32, progress=False, out=tmp_path / "s.npz")
    skipped = sorted(str(w.message).split("'")[1].rsplit("/", 1)[-1] for w in record
                     if issubclass(w.category, UnreadableImageWarning))
    assert skipped == ["c.jpg", "notes.txt"]
    assert spectrum.load_magnitude(tmp_path / "s.npz").meta["image_count"] == 2


def test_grey_rgba_and_16_bit_images_are_converted(tmp_path):
    rng = np.random.default_rng(7)
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_allclose(read_image(tmp_path / "grey.png"), np.repeat(grey[..., None] / 255, 3, -1), atol=1e-6)

    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), rgba[..., :3] / 255, atol=1e-6)

    deep = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_allclose(read_image(tmp_path / "deep.png"), np.repeat(deep[..., None] / 65535, 3, -1), atol=1e-6)

    mag = estimation.compute_magnitude(tmp_path, 16, progress=False)
    assert torch.isfinite(mag).all()


def test_mixed_sizes_are_cropped_and_resized(tmp_path):
    for i, (h, w) in enumerate([(64, 64), (80, 50), (50, 120), (40, 40)]):
        save_png(tmp_path / f"{i}.png", pink_noise(1, max(h, w), seed=10 + i)[0][:h, :w])
    with pytest.warns(UserWarning, match="1 of 4 images were smaller"):
        mag = estimation.compute_magnitude(tmp_path, (48, 48), progress=False, out=tmp_path / "s.npz")
    assert mag.shape == (3, 48, 25) and torch.isfinite(mag).all()
    assert spectrum.load_magnitude(tmp_path / "s.npz").meta["image_count"] == 4


# ------------------------------------------------------------------------------ validation

@pytest.mark.parametrize("size, error", [(0, ValueError), (-3, ValueError), ((4, 0), ValueError), (1.5, TypeError),
                                         ((3,), TypeError), (True, TypeError), ("8", TypeError)])
def test_bad_size(size, error):
    with pytest.raises(error, match="size"):
        spectrum.natural_magnitude(size)


@pytest.mark.parametrize("channels, error", [(0, ValueError), (2.0, TypeError), (None, TypeError)])
def test_bad_channels(channels, error):
    with pytest.raises(error, match="channels"):
        spectrum.natural_magnitude(8, channels)


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="source"):
        spectrum.natural_magnitude(8, source="imagenet21k")
    with pytest.raises(TypeError, match="source"):
        spectrum.natural_magnitude(8, source=3)
    with pytest.raises(FileNotFoundError, match="source"):
        spectrum.natural_magnitude(8, source=tmp_path / "missing.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="could not read"):
        spectrum.natural_magnitude(8, source=tmp_path / "corrupt.npz")
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="could not read"):
        spectrum.natural_magnitude(8, source=tmp_path / "corrupt.npy")
    good = spectrum.natural_magnitude(16).numpy()
    for name, array, message in [("flat.npy", good[0], "shape"), ("negative.npy", -good, "negative"),
                                 ("nan.npy", np.where(good > 1, np.nan, good), "non-finite")]:
        np.save(tmp_path / name, array)
        with pytest.raises(ValueError, match=message):
            spectrum.natural_magnitude(8, source=tmp_path / name)
    np.savez(tmp_path / "badmeta.npz", magnitude=good, meta=np.array(json.dumps({"size": [16, 40]})))
    with pytest.raises(ValueError, match="size"):
        spectrum.natural_magnitude(8, source=tmp_path / "badmeta.npz")


# ------------------------------------------------------------------------------- ImageNet

def test_imagenet_source_when_installed():
    try:
        spectrum.imagenet_spectrum_path()
    except FileNotFoundError:
        pytest.skip("xplique 2.0.2 is not installed")
    mag = spectrum.natural_magnitude(256, source="imagenet", dtype=torch.float64)
    assert mag.shape == (3, 256, 129) and torch.isfinite(mag).all() and (mag >= 0).all()
    mean_colour = torch.tensor(spectrum.IMAGENET_MEAN, dtype=torch.float64) @ torch.linalg.inv(
        default_color_matrix(3, dtype=torch.float64))
    torch.testing.assert_close(mag[:, 0, 0], mean_colour.abs() * 256 * 256)
    imagenet, default = profile(mag), profile(spectrum.natural_magnitude(256, dtype=torch.float64))
    assert ((imagenet.slope > -1.8) & (imagenet.slope < -0.9)).all()
    assert (np.abs(imagenet.slope - default.slope) < 0.25).all()


def test_imagenet_missing_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    spectrum.natural_magnitude.cache_clear()
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps xplique==2\.0\.2"):
        spectrum.natural_magnitude(64, source="imagenet")
    spectrum.natural_magnitude.cache_clear()


# ---------------------------------------------------------------------------- diagnostics

def test_radial_power_and_profile_slopes():
    images = torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im in pink_noise(4, 256, seed=8, exponent=1.3)])
    power = diagnostics.radial_power(images)
    assert power.power.shape == (3, len(power.freqs))
    np.testing.assert_allclose(power.slope, -2.6, atol=0.15)  # clipping to [0, 1] bends it a little
    amplitude = diagnostics.radial_profile(spectrum.image_magnitude(images).mean(0))
    np.testing.assert_allclose(amplitude.slope, -1.3, atol=0.1)
    with pytest.raises(ValueError, match="band"):
        diagnostics.radial_power(images, band=(0.2, 0.1))


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    images = torch.rand(2, 3, 64, 64)
    diagnostics.plot_radial_profiles({"noise": diagnostics.radial_power(images)}, tmp_path / "power.png")
    saved = spectrum.save_magnitude(tmp_path / "s.npz", spectrum.natural_magnitude(128))
    out = estimation.cli_plot([saved], tmp_path / "profiles.png")
    for png in (tmp_path / "power.png", out):
        with Image.open(png) as im:
            assert im.format == "PNG" and min(im.size) > 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimation.cli_plot([saved], tmp_path / "again.png", references=False)


def test_axis_ring_ratio_and_lattice_see_a_grid_and_not_noise():
    from phasevis_ext.param.diagnostics import axis_ring_ratio, lattice

    g = torch.Generator().manual_seed(0)
    noise = torch.rand(16, 1, 64, 64, generator=g, dtype=torch.float64)
    assert all(0.8 < v < 1.25 for v in lattice(noise).values())
    grid = noise.clone()
    grid[..., 2::4, :] += 1.0  # lines every 4 px, horizontal and vertical: power on both axes at 1/4 c/px
    grid[..., :, 2::4] += 1.0
    measured = lattice(grid / 3)
    assert measured[4] > 20 and measured[8] < 2, measured
    # at the model's input: a 64 px image shown to a 32 px input has its 4 px grid at 2 input pixels
    assert lattice(grid / 3, periods=(2,), input_size=32)[2] == pytest.approx(measured[4])
    assert axis_ring_ratio(torch.ones(2, 32, 17), 0.25).tolist() == [1.0, 1.0]
