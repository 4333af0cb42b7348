"""Users' own models and data through the command line: checkpoints, factories, TorchScript,
any number of input channels, spectra computed from their images.

Every model is built here with random weights, saved to a temporary file and loaded back
through `phasevis` the way a user would; nothing is downloaded.
"""
import json
import textwrap
import warnings

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from phasevis_ext import cli, models
from phasevis_ext.io import export
from phasevis_ext.param import estimation, spectrum
from phasevis_ext.param.diagnostics import periodic_component
from phasevis_ext.render.visualize import visualize

FACTORIES = textwrap.dedent('''
    from torch import nn
    from torchvision.models import VisionTransformer

    def cnn(num_classes=10, in_channels=1):
        return nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))

    def cnn5(num_classes=10):
        return cnn(num_classes, in_channels=5)

    def vit(num_classes=10):
        return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                                 mlp_dim=64, num_classes=num_classes)

    def mlp():
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))

    def broken():
        raise RuntimeError("no such architecture")
''')
FAST = ["--steps", "2", "--crops", "2", "--image-size", "32", "--input-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """A folder with the factories file and weights for each model, as a user would have them."""
    root = tmp_path_factory.mktemp("zoo")
    (root / "nets.py").write_text(FACTORIES)
    namespace = {}
    exec(compile(FACTORIES, "nets.py", "exec"), namespace)
    torch.manual_seed(1)
    grey, five = namespace["cnn"](), namespace["cnn5"]()
    torch.save(grey.state_dict(), root / "grey.pth")
    # A training checkpoint: the state dict under "state_dict", DDP's "module." prefix, other entries beside.
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in five.state_dict().items()}}, root / "five.ckpt")
    torch.save(namespace["vit"]().state_dict(), root / "vit.pth")
    torch.save({"model": torchvision.models.resnet18(num_classes=7).state_dict()}, root / "resnet18.pth")
    torch.save(torchvision.models.resnet18(num_classes=7).state_dict(), root / "resnet18_other.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, and still what users have
        torch.jit.save(torch.jit.script(grey.eval()), root / "grey.pt")
    (root / "garbage.pth").write_bytes(b"not a checkpoint at all")
    return root


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of `phasevis ARGV`."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_scans(folder, count=3, size=40):
    """Greyscale 'scans': 8-bit PNGs and 16-bit TIFFs of smooth random fields."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(count):
        field = torch.nn.functional.avg_pool2d(torch.from_numpy(rng.random((1, 1, size, size))), 5, 1, 2)[0, 0].numpy()
        field = (field - field.min()) / (field.max() - field.min())
        Image.fromarray((field * 255).astype(np.uint8)).save(folder / f"scan{i}.png")
        Image.fromarray((field * 65535).astype(np.uint16)).save(folder / f"scan{i}.tif")


def write_bands(folder, channels=5, size=40):
    """Multispectral tiles as .npy: one (N, C, H, W) float stack and one (C, H, W) uint16 tile,
    with correlated bands so that the colour matrix has something to find."""
    folder.mkdir()
    rng = np.random.default_rng(4)
    base = rng.random((5, 1, size, size))
    mix = rng.random((1, channels, 1, 1))
    stack = (0.7 * base * mix + 0.3 * rng.random((5, channels, size, size))).astype(np.float32)
    np.save(folder / "stack.npy", stack)
    np.save(folder / "tile.npy", (stack[0] * 65535).astype(np.uint16))


# ---------------------------------------------------------------------------------------------
# End to end, one model kind each.


def test_grayscale_cnn_with_a_spectrum_from_scans(zoo, tmp_path, capsys):
    write_scans(tmp_path / "scans")
    code, out, _ = run_cli(capsys, "spectrum", "compute", "--images", tmp_path / "scans", "--size", "32",
                           "--out", tmp_path / "scans.npz")
    assert code == 0 and "wrote" in out
    stored = spectrum.load_magnitude(tmp_path / "scans.npz")
    assert stored.magnitude.shape == (1, 32, 17) and stored.meta["image_count"] == 6
    assert stored.color_matrix.shape == (1, 1)

    code, out, err = run_cli(capsys, "visualize", "logit:0,3", "4:1", "--model", f"{zoo}/nets.py:cnn",
                             "--weights", zoo / "grey.pth", "--spectrum", tmp_path / "scans.npz",
                             "--out", tmp_path / "out", *FAST)
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["settings"]["channels"] == 1
    assert results["settings"]["spectrum"]["file"] == "scans.npz"  # by name and content digest
    for unit in results["units"]:
        assert Image.open(tmp_path / "out" / unit["image"]).mode == "L"
        assert Image.open(tmp_path / "out" / unit["rgba"]).mode == "LA"
        assert "array" not in unit


def test_five_channel_cnn_writes_arrays_and_channel_sheets(zoo, tmp_path, capsys):
    write_bands(tmp_path / "bands")
    code, _, err = run_cli(capsys, "spectrum", "compute", "--images", tmp_path / "bands", "--size", "32",
                           "--out", tmp_path / "bands.npz")
    assert code == 0, err
    stored = spectrum.load_magnitude(tmp_path / "bands.npz")
    assert stored.magnitude.shape == (5, 32, 17) and stored.meta["image_count"] == 6
    assert stored.color_matrix.shape == (5, 5)

    code, _, err = run_cli(capsys, "visualize", "logit:2", "0:0-1", "--model", f"{zoo}/nets.py:cnn5",
                           "--weights", zoo / "five.ckpt", "--spectrum", tmp_path / "bands.npz",
                           "--normalize", *[0.5] * 5, *[0.25] * 5, "--out", tmp_path / "out", *FAST)
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["settings"]["channels"] == 5
    page = (tmp_path / "out" / "index.html").read_text()
    for unit in results["units"]:
        array = np.load(tmp_path / "out" / unit["array"])
        assert array.shape == (5, 32, 32) and array.dtype == np.float32
        assert 0 <= array.min() and array.max() <= 1
        sheet = Image.open(tmp_path / "out" / unit["image"])
        assert sheet.width > 5 * 32  # five tiles side by side
        assert unit["array"] in page
    # The atlas keeps the arrays too, and its index names them.
    code, _, err = run_cli(capsys, "atlas", "--model", f"{zoo}/nets.py:cnn5", "--weights", zoo / "five.ckpt",
                           "--spectrum", tmp_path / "bands.npz", "--no-normalize", "--layers", "3",
                           "--channels", "0:2", "--out", tmp_path / "atlas", *FAST)
    assert code == 0, err
    index = json.loads((tmp_path / "atlas" / "index.json").read_text())
    settings = index["settings"]
    assert settings["channels"] == 5 and settings["input_normalization"] is None
    assert settings["spectrum"] == {"file": "bands.npz", "sha256": models.file_sha256(tmp_path / "bands.npz")[:16]}
    for entry in index["units"]:
        assert np.load(tmp_path / "atlas" / entry["files"]["array"]).shape == (5, 32, 32)


def test_five_channels_without_a_spectrum_warn_and_use_a_power_law(zoo, tmp_path, capsys):
    code, _, err = run_cli(capsys, "visualize", "logit:0", "--model", f"{zoo}/nets.py:cnn5",
                           "--weights", zoo / "five.ckpt", "--out", tmp_path / "out", *FAST)
    assert code == 0
    assert "1/f power law" in err and "phasevis spectrum compute" in err


def test_torchvision_resnet18_checkpoint_through_the_atlas(zoo, tmp_path, capsys):
    argv = ["atlas", "--model", "torchvision:resnet18", "--weights", zoo / "resnet18.pth", "--num-classes", "7",
            "--layers", "layer3,layer4", "--channels", "0:2", "--logits", "0:2", "--out", tmp_path / "atlas", *FAST]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "6 units: 0 already done" in out
    settings = json.loads((tmp_path / "atlas" / "settings.json").read_text())
    assert settings["model"] == "torchvision:resnet18"
    assert settings["weights_file"] == {"file": "resnet18.pth", "sha256": models.file_sha256(zoo / "resnet18.pth")}
    assert settings["input_normalization"]["mean"] == pytest.approx(models.IMAGENET_MEAN)
    # Resuming with the same checkpoint skips everything; other weights under the same name are refused.
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "6 units: 6 already done" in out
    other = [a if a != zoo / "resnet18.pth" else zoo / "resnet18_other.pth" for a in argv]
    code, _, err = run_cli(capsys, *other)
    assert code == 2 and "weights" in err and "other settings" in err


def test_vit_channel_objective_on_a_token_layer(zoo, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "layers", "--model", f"{zoo}/nets.py:vit", "--weights", zoo / "vit.pth")
    assert code == 0 and "encoder.layers.encoder_layer_1" in out and "1x17x32" in out
    code, _, err = run_cli(capsys, "visualize", "encoder.layers.encoder_layer_1:0-2", "--model",
                           f"{zoo}/nets.py:vit", "--weights", zoo / "vit.pth", "--out", tmp_path / "out",
                           "--steps", "2", "--crops", "2", "--image-size", "48", "--no-progress")
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["settings"]["input_size"] == 32  # the ViT's own image_size
    assert [u["objective"] for u in results["units"]] == [
        f"channel(encoder.layers.encoder_layer_1, {c})" for c in range(3)]
    assert all(np.isfinite(u["score"]) for u in results["units"])


def test_torchscript_model_visualizes_its_output(zoo, tmp_path, capsys):
    code, _, err = run_cli(capsys, "visualize", "logit:0,1", "--model", zoo / "grey.pt", "--out", tmp_path / "out",
                           *FAST)
    assert code == 0, err
    code, _, err = run_cli(capsys, "visualize", "net.3:0", "--model", zoo / "grey.pt", "--out", tmp_path / "out",
                           *FAST)
    assert code == 2 and "TorchScript" in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------
# Bad input: exit code 2 and one line that says what is wrong.


@pytest.mark.parametrize("case, needle", [
    ("garbage weights", "not a PyTorch state dict"),
    ("missing weights", "no file"),
    ("weights of another model", "missing keys"),
    ("wrong channels", "does not run on 3-channel images"),
    ("spectrum of other channels", "is for 1-channel images, not 5"),
    ("state dict as a model", "not a TorchScript module"),
    ("factory that raises", "no such architecture"),
    ("unknown factory", "has no callable"),
    ("odd normalize", "--normalize"),
    ("head of another size", "--num-classes"),
])
def test_bad_input_exits_2_with_one_line(zoo, tmp_path, capsys, case, needle):
    write_scans(tmp_path / "scans", count=1)
    estimation.compute_magnitude(tmp_path / "scans", 32, channels=1, progress=False, out=tmp_path / "grey.npz")
    cnn, cnn5 = f"{zoo}/nets.py:cnn", f"{zoo}/nets.py:cnn5"
    args = {
        "garbage weights": ["--model", cnn, "--weights", zoo / "garbage.pth"],
        "missing weights": ["--model", cnn, "--weights", zoo / "nowhere.pth"],
        "weights of another model": ["--model", cnn, "--weights", zoo / "vit.pth"],
        "wrong channels": ["--model", cnn, "--weights", zoo / "grey.pth", "--input-channels", "3"],
        "spectrum of other channels": ["--model", cnn5, "--weights", zoo / "five.ckpt", "--spectrum",
                                       tmp_path / "grey.npz"],
        "state dict as a model": ["--model", zoo / "grey.pth"],
        "factory that raises": ["--model", f"{zoo}/nets.py:broken"],
        "unknown factory": ["--model", f"{zoo}/nets.py:nothing"],
        "odd normalize": ["--model", cnn, "--normalize", "0.5", "0.5", "0.5"],
        "head of another size": ["--model", "torchvision:resnet18", "--weights", zoo / "resnet18.pth"],
    }[case]
    code, _, err = run_cli(capsys, "visualize", "logit:0", *args, "--out", tmp_path / "out", *FAST)
    assert code == 2
    assert needle in err
    assert err.startswith("phasevis: error:") and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------
# The pieces, from Python.


def test_channels_are_inferred_checked_or_asked_for(zoo):
    namespace = {}
    exec(compile(FACTORIES, "nets.py", "exec"), namespace)
    assert models.input_channels(namespace["cnn5"]().eval(), input_size=32) == 5
    assert models.input_channels(namespace["vit"]().eval()) == 3
    with pytest.raises(ValueError, match="pass channels=C"):
        models.input_channels(namespace["mlp"]().eval(), input_size=32)
    # A model without convolution runs once it is told.
    assert models.input_channels(namespace["mlp"]().eval(), 3, input_size=32) == 3
    with pytest.raises(ValueError, match="first convolution '0' takes 5"):
        models.input_channels(namespace["cnn5"]().eval(), 3, input_size=32)


def test_visualize_any_channel_count_and_its_default_spectra():
    for channels in (1, 2, 3, 4):
        net = nn.Sequential(nn.Conv2d(channels, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        kwargs = dict(steps=2, crops=2, image_size=24, input_size=16, progress=False)
        if channels in (1, 3):
            result = visualize(net.eval(), "logit:0", **kwargs)
        else:
            with pytest.warns(spectrum.PowerLawSpectrumWarning):
                result = visualize(net.eval(), "logit:0", **kwargs)
        assert result.images.shape == (1, channels, 24, 24)
        assert result.settings["channels"] == channels


def test_grey_default_is_the_photos_luminance_spectrum():
    grey = spectrum.natural_spectrum(64, 1, dtype=torch.float64)
    stored = spectrum.load_magnitude(spectrum.DEFAULT_ASSET)
    expected = spectrum.resize_magnitude(stored.grey, 64, source_width=stored.meta["size"][1])
    torch.testing.assert_close(grey.magnitude, expected)
    assert grey.color_matrix.tolist() == [[1.0]]


def test_power_law_fallback_is_one_over_f():
    mag = spectrum.power_law_magnitude(64, 4)
    assert mag.shape == (4, 64, 33) and torch.equal(mag[0], mag[3])
    # Amplitude halves when the frequency doubles.
    assert mag[0, 0, 8] / mag[0, 0, 16] == pytest.approx(2.0)
    assert mag[0, 4, 0] / mag[0, 8, 0] == pytest.approx(2.0)


def test_data_color_matrix_is_a_square_root_of_the_covariance():
    rng = np.random.default_rng(5)
    mixing = rng.normal(size=(4, 4))
    cov = torch.from_numpy(mixing @ mixing.T)
    k = spectrum.data_color_matrix(cov)
    ktk = k.T @ k  # rgb = dec @ K, so uncorrelated unit-variance dec gives K^T K as the covariance
    torch.testing.assert_close(ktk / ktk.trace(), cov / cov.trace())
    assert (k.max(dim=1).values > 0).all()
    # On RGB photos it has the shape of the ImageNet matrix: an all-positive luminance row first.
    photos = spectrum.data_color_matrix(torch.tensor([[1.0, 0.9, 0.8], [0.9, 1.0, 0.9], [0.8, 0.9, 1.0]]))
    assert (photos[0] > 0).all() and photos[0].norm() == pytest.approx(1.0)


def test_decorrelated_spectrum_uses_the_stored_matrix(tmp_path):
    write_bands(tmp_path / "bands", channels=3)
    mag = estimation.compute_magnitude(tmp_path / "bands", 40, channels=None, color_matrix="data", progress=False,
                                     out=tmp_path / "b.npz")
    stored = spectrum.load_magnitude(tmp_path / "b.npz")
    images = [torch.from_numpy(a).double() for a in np.load(tmp_path / "bands" / "stack.npy")]
    images.append(torch.from_numpy(np.load(tmp_path / "bands" / "tile.npy").astype(np.float64) / 65535))
    k_inv = torch.linalg.inv(stored.color_matrix)
    assert not torch.allclose(stored.color_matrix, torch.eye(3, dtype=torch.float64), atol=0.05)
    direct = torch.stack([torch.fft.rfft2(periodic_component(torch.einsum("chw,cd->dhw", im, k_inv))).abs()
                          for im in images]).mean(0)
    torch.testing.assert_close(mag, direct, rtol=1e-4, atol=1e-4)


def test_weights_loading_finds_the_state_dict_and_names_mismatches(tmp_path):
    net = torchvision.models.resnet18(num_classes=3)
    state = net.state_dict()
    for key, wrapped in [("model", {f"module.{k}": v for k, v in state.items()}),
                         ("state_dict", {f"_orig_mod.{k}": v for k, v in state.items()}),
                         (None, state)]:
        torch.save(wrapped if key is None else {key: wrapped, "optimizer": {}}, tmp_path / "w.pth")
        fresh = torchvision.models.resnet18(num_classes=3)
        record = models.load_weights(fresh, tmp_path / "w.pth")
        assert record["sha256"] == models.file_sha256(tmp_path / "w.pth")
        assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    partial = {k: v for k, v in state.items() if not k.startswith("fc.")}
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, tmp_path / "p.pth")
    with pytest.raises(ValueError, match=r"2 missing keys \[fc.weight, fc.bias\], 1 unexpected keys \[extra.weight\]"):
        models.load_weights(torchvision.models.resnet18(num_classes=3), tmp_path / "p.pth")


def test_npy_layouts_and_channel_counts(tmp_path):
    from phasevis_ext.io.images import iter_images

    np.save(tmp_path / "a.npy", np.zeros((20, 30), np.uint8))          # one grey image
    np.save(tmp_path / "b.npy", np.ones((2, 1, 20, 30), np.float32))   # a stack of two
    names = [name for name, image in iter_images(tmp_path, channels=None)]
    assert len(names) == 3
    assert all(image.shape == (20, 30, 1) for _, image in iter_images(tmp_path, channels=None))
    np.save(tmp_path / "c.npy", np.ones((4, 20, 30), np.float32))
    with pytest.raises(ValueError, match="has 4 channels, not the 1 needed"):
        list(iter_images(tmp_path, channels=None))


def test_export_of_any_channel_count(tmp_path):
    torch.manual_seed(0)
    for channels in (1, 2, 3, 6):
        image, alpha = torch.rand(channels, 16, 16), torch.rand(1, 16, 16)
        files = export.save_unit_images(image, alpha, tmp_path, f"u{channels}")
        assert ("array" in files) == (channels not in (1, 3))
        if "array" in files:
            np.testing.assert_array_equal(np.load(tmp_path / files["array"]), image.numpy())
        mode = {1: "L", 3: "RGB"}.get(channels, "RGB")
        assert Image.open(tmp_path / files["image"]).mode == mode
    sheet = export.contact_sheet([torch.rand(c, 16, 16) for c in (1, 3, 5)])
    assert sheet.mode == "RGB"


def test_zoo_models_built_for_other_channel_counts(tmp_path):
    with pytest.warns(UserWarning, match="no known input statistics"):
        net = models.load("torchvision:resnet18", channels=4, num_classes=5, pretrained=False)
    assert models.input_channels(net, input_size=32) == 4
    assert models.input_normalization(net) is None
    assert net(torch.rand(2, 4, 32, 32)).shape == (2, 5)
    # Its checkpoint goes back into the same architecture, and not into the RGB one.
    torch.save(net.state_dict(), tmp_path / "r4.pth")
    with pytest.warns(UserWarning):
        again = models.load("torchvision:resnet18", channels=4, num_classes=5, weights=tmp_path / "r4.pth")
    assert torch.equal(again.conv1.weight, net.conv1.weight)
    with pytest.raises(ValueError, match=r"conv1.weight \(64, 4, 7, 7\) in the file, \(64, 3, 7, 7\)"):
        models.load("torchvision:resnet18", num_classes=5, weights=tmp_path / "r4.pth")


def test_timm_vit_checkpoint_with_a_channel_objective_on_tokens(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    torch.manual_seed(2)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "vit_tiny.pth")
    code, _, err = run_cli(capsys, "visualize", "blocks.1:0-1", "logit:4", "--model", "timm:vit_tiny_patch16_224",
                           "--num-classes", "5", "--weights", tmp_path / "vit_tiny.pth", "--out", tmp_path / "out",
                           "--steps", "2", "--crops", "2", "--image-size", "64", "--no-progress")
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["settings"]["input_size"] == 224 and results["settings"]["channels"] == 3
    assert len(results["units"]) == 3 and all(np.isfinite(u["score"]) for u in results["units"])
    code, _, err = run_cli(capsys, "visualize", "logit:0", "--model", "timm:vit_tiny_patch16_224",
                           "--weights", tmp_path / "vit_tiny.pth", "--out", tmp_path / "out", *FAST)
    assert code == 2 and "--num-classes" in err
