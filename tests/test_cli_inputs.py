"""Every command's bad input ends with exit 2 and one line that names what is wrong; accentuate
and invert offer only the options they honour and keep their work on Ctrl-C; logits are named
only where the names are known."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from phasevis_ext import cli
from phasevis_ext.render import settings as render

FACTORY = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)
        self.unused = nn.Conv2d(8, 8, 1)  # registered, never called: not on the forward path

    def forward(self, x):
        return self.fc(self.pool(self.relu1(self.conv1(x))).flatten(1))


def build(num_classes=10):
    torch.manual_seed(0)
    return Net(num_classes)
'''
FAST = ["--steps", "2", "--crops", "1", "--image-size", "16", "--input-size", "16", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    (root / "net.py").write_text(FACTORY)
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    (root / "empty").mkdir()
    (root / "ten.txt").write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    (root / "three.json").write_text(json.dumps(["a", "b", "c"]))
    (root / "gaps.txt").write_text("a\n\nb\n")
    (root / "garbage.pt").write_bytes(b"not a checkpoint")
    (root / "grey").mkdir()
    np.save(root / "grey" / "g.npy", rng.random((1, 2, 20, 20), dtype=np.float32))
    return root


def _bad_inputs(f: Path) -> dict[str, list[str]]:
    net = f"{f}/net.py:build"
    model = ["--model", net]
    return {
        "unknown model": ["visualize", "logit:1", "--model", "nosuchnet", "--out", str(f / "o")],
        "input size 0 for layers": ["layers", "--input-size", "0"],
        "exemplars of a missing folder": ["exemplars", "--images", str(f / "nowhere"), "--layers", "_blocks.2",
                                          "--out", str(f / "x")],
        "activation atlas of a missing folder": ["activation-atlas", "--images", str(f / "nowhere"), "--layer",
                                                 "_blocks.2", "--out", str(f / "x")],
        "unknown model for layers": ["layers", "--model", "nosuchnet"],
        "unknown torchvision model": ["layers", "--model", "torchvision:nosuchnet"],
        "missing factory file": ["layers", "--model", f"{f}/nope.py:build"],
        "missing factory function": ["layers", "--model", f"{f}/net.py:nosuch"],
        "missing weights file": ["layers", *model, "--weights", str(f / "nope.pt")],
        "weights that are not a checkpoint": ["layers", *model, "--weights", str(f / "garbage.pt")],
        "odd --normalize": ["layers", *model, "--normalize", "0.5", "0.5", "0.5"],
        "input channels the model does not take": ["visualize", "logit:1", *model, "--input-channels", "5",
                                                   "--out", str(f / "o"), *FAST],
        "steps 0": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST, "--steps", "0"],
        "a device that is not one": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                     "--device", "gpu0"],
        "a GPU this machine lacks": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                     "--device", "cuda:99"],
        "atlas on a GPU this machine lacks": ["atlas", *model, "--layers", "conv1", "--out", str(f / "a"), *FAST,
                                              "--device", "cuda:99"],
        "batch size 0": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST, "--batch-size", "0"],
        "image too small": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST, "--image-size", "4"],
        "lr 0": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST, "--lr", "0"],
        "negative memory budget": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                   "--memory-budget", "-1"],
        "memory budget not a number": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                       "--memory-budget", "nan"],
        "invert photos at a negative size": ["invert", "conv1", *model, "--images", str(f / "photos"),
                                             "--out", str(f / "o"), *FAST, "--image-size", "-5"],
        "normalize of another channel count": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                               "--normalize", "0.5", "0.5", "0.5", "0.5"],
        "seed not an int": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST, "--seed", "x"],
        "negative noise": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST, "--noise", "-1"],
        "box size out of range": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                  "--box-size", "0.5", "2"],
        "unknown layer": ["visualize", "conv9:0", *model, "--out", str(f / "o"), *FAST],
        "layer off the forward path": ["visualize", "unused:0", *model, "--out", str(f / "o"), *FAST],
        "bad range": ["visualize", "conv1:3-1", *model, "--out", str(f / "o"), *FAST],
        "logit past the head": ["visualize", "logit:10", *model, "--out", str(f / "o"), *FAST],
        "diversity without samples": ["visualize", "conv1:0", *model, "--out", str(f / "o"), *FAST,
                                      "--diversity", "1"],
        "missing spectrum file": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                  "--spectrum", str(f / "nope.npz")],
        "class names of another length": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                          "--class-names", str(f / "three.json")],
        "class names file missing": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                     "--class-names", str(f / "nope.txt")],
        "class names with a gap": ["visualize", "logit:1", *model, "--out", str(f / "o"), *FAST,
                                   "--class-names", str(f / "gaps.txt")],
        "unknown amp": ["visualize", "logit:1", *model, "--out", str(f / "o"), "--amp", "fast"],
        "no --out": ["visualize", "logit:1", *model],
        "unknown command": ["render", "logit:1"],
        "accentuate --samples": ["accentuate", "logit:1", *model, "--images", str(f / "photos"),
                                 "--out", str(f / "o"), "--samples", "2"],
        "accentuate --diversity": ["accentuate", "logit:1", *model, "--images", str(f / "photos"),
                                   "--out", str(f / "o"), "--diversity", "100"],
        "accentuate --param pixel": ["accentuate", "logit:1", *model, "--images", str(f / "photos"),
                                     "--out", str(f / "o"), "--param", "pixel"],
        "invert --diversity-layer": ["invert", "conv1", *model, "--images", str(f / "photos"), "--out", str(f / "o"),
                                     "--diversity-layer", "conv1"],
        "invert --class-names": ["invert", "conv1", *model, "--images", str(f / "photos"), "--out", str(f / "o"),
                                 "--class-names", str(f / "ten.txt")],
        "accentuate an empty folder": ["accentuate", "logit:1", *model, "--images", str(f / "empty"),
                                       "--out", str(f / "o"), *FAST],
        "accentuate a missing folder": ["accentuate", "logit:1", *model, "--images", str(f / "nope"),
                                        "--out", str(f / "o"), *FAST],
        "invert photos of a channel count the model does not take": [
            "invert", "conv1", *model, "--images", str(f / "grey"), "--out", str(f / "o"),
            *FAST],
        "invert an unknown layer": ["invert", "conv9", *model, "--images", str(f / "photos"), "--out", str(f / "o"),
                                    *FAST],
        "atlas with nothing to do": ["atlas", *model, "--out", str(f / "a"), *FAST],
        "atlas bad channel range": ["atlas", *model, "--layers", "conv1", "--channels", "x", "--out", str(f / "a"),
                                    *FAST],
        "atlas unknown layer": ["atlas", *model, "--layers", "conv9", "--out", str(f / "a"), *FAST],
        "atlas class names of another length": ["atlas", *model, "--logits", ":", "--class-names",
                                                str(f / "three.json"), "--out", str(f / "a"), *FAST],
        "spectrum of an empty folder": ["spectrum", "compute", "--images", str(f / "empty"), "--out", str(f / "s")],
        "spectrum bad size": ["spectrum", "compute", "--images", str(f / "photos"), "--size", "big",
                              "--out", str(f / "s")],
        "spectrum plot of a missing file": ["spectrum", "plot", str(f / "nope.npz"), "--out", str(f / "p.png")],
    }


CASES = sorted(_bad_inputs(Path("/x")))


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line(files, case, capsys):
    argv = _bad_inputs(files)[case]
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, (case, err)
    lines = [line for line in err.splitlines() if not line.startswith("phasevis: warning:")]
    assert len(lines) == 1 and lines[0].startswith("phasevis") and " error: " in lines[0], (case, err)
    assert "internal error" not in err


def test_the_help_of_accentuate_and_invert_lists_only_what_they_honour(capsys):
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    accentuate, invert, visualize = (" ".join(commands[name].format_help().split())
                                     for name in ("accentuate", "invert", "visualize"))
    for text in (accentuate, invert):
        assert "--samples" not in text and "--diversity" not in text
    assert "--param {maco,fourier}" in accentuate and "--param {maco,fourier,pixel}" in invert
    assert "--class-names" in accentuate and "--class-names" not in invert
    assert "--samples" in visualize and "--diversity-layer" in visualize and "--class-names" in visualize


def _interrupt_at_step(monkeypatch, when: int):
    """NAdam whose `when`-th step raises KeyboardInterrupt, as Ctrl-C would inside the loop."""
    calls = []

    class Interrupting(torch.optim.NAdam):
        def step(self, closure=None):
            calls.append(1)
            if len(calls) == when:
                raise KeyboardInterrupt
            return super().step(closure)

    monkeypatch.setitem(render.OPTIMIZERS, "nadam", Interrupting)


@pytest.mark.parametrize("command", ["accentuate", "invert"])
def test_ctrl_c_in_accentuate_and_invert_writes_the_partial_gallery_and_exits_130(files, command, monkeypatch,
                                                                                  capsys, tmp_path):
    _interrupt_at_step(monkeypatch, 3)
    target = "logit:1" if command == "accentuate" else "conv1"
    out = tmp_path / "out"
    code = cli.main([command, target, "--model", f"{files}/net.py:build", "--images", str(files / "photos"),
                     "--out", str(out), *FAST, "--steps", "50"])
    assert code == cli.EXIT_INTERRUPTED
    assert "interrupted" in capsys.readouterr().err
    data = json.loads((out / "results.json").read_text())
    assert [u.get("partial") for u in data["units"]] == [True, True]
    assert data["settings"]["images"] == [str(files / "photos" / f"p{i}.png") for i in range(2)]
    for unit in data["units"]:
        assert (out / unit["image"]).exists() and (out / unit["photo"]).exists()
    assert "(partial)" in (out / "index.html").read_text()


def test_a_10_class_model_is_not_labelled_with_imagenet_names_unless_named(files, tmp_path, capsys):
    argv = ["visualize", "logit:3", "--model", f"{files}/net.py:build", *FAST]
    assert cli.main([*argv, "--out", str(tmp_path / "plain")]) == cli.EXIT_OK
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert "class_name" not in plain["units"][0] and plain["settings"]["class_names"] is None
    assert cli.main([*argv, "--out", str(tmp_path / "named"), "--class-names", str(files / "ten.txt")]) == cli.EXIT_OK
    named = json.loads((tmp_path / "named" / "results.json").read_text())
    assert named["units"][0]["class_name"] == "class 3"
    assert named["settings"]["class_names"] == {"file": "ten.txt"}
    assert "class 3" in (tmp_path / "named" / "index.html").read_text()
    assert "tiger shark" not in (tmp_path / "plain" / "index.html").read_text()
