"""Dataset exemplars on models whose answers are known: planted detectors, resumption after
SIGKILL, torchrun with two gloo ranks, bad input, and how results show in a notebook."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support.planted import SQUARE, planted, write_images

from phasevis_ext import cli
from phasevis_ext.checks import InvalidArgument
from phasevis_ext.exemplars import exemplars
from phasevis_ext.exemplars.topk import RunningTopK
from phasevis_ext.io.images import UnreadableImageWarning

ROOT = Path(__file__).resolve().parents[1]
FACTORY = f"{ROOT / 'tests' / 'support' / 'planted.py'}:planted"
STRENGTHS = {"red/weak.png": ("red", 0.2), "red/strong.png": ("red", 0.9), "red/middle.jpg": ("red", 0.5),
             "blue/strong.npy": ("blue", 0.8), "blue/weak.tif": ("blue", 0.3), "grey.png": ("red", 0.0)}


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, STRENGTHS)
    return folder


def _run(folder, out, **kwargs):
    options = dict(layers=["detect", "pool"], logits=":", top=3, batch_size=2, workers=0, progress=False)
    return exemplars(planted(), folder, out, **{**options, **kwargs})


def test_planted_detectors_find_their_images_in_order_with_boxes_on_the_square(photos, tmp_path):
    result = _run(photos, tmp_path / "out")
    red = [e["image"] for e in result.units["detect:c0"]]
    assert red == ["red/strong.png", "red/middle.jpg", "red/weak.png"]
    assert [e["image"] for e in result.units["detect:c1"]][:2] == ["blue/strong.npy[0]", "blue/weak.tif"]
    assert [e["image"] for e in result.units["logit:0"]] == red
    values = [e["activation"] for e in result.units["detect:c0"]]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(0.9, abs=0.01)  # R - (G + B)/2 = strength
    x0, y0, x1, y1 = SQUARE
    for entry in result.units["detect:c0"]:  # a 1x1 detector: its box is inside the square
        bx0, by0, bx1, by1 = entry["box"]
        assert x0 - 1 <= bx0 < bx1 <= x1 + 1 and y0 - 1 <= by0 < by1 <= y1 + 1
    for entry in result.units["pool:c0"]:  # a 4x4 pool of it: a box that overlaps the square
        bx0, by0, bx1, by1 = entry["box"]
        assert bx0 < x1 and bx1 > x0 and by0 < y1 and by1 > y0 and (bx1 - bx0) >= 4 * 64 / 256
    data = json.loads((tmp_path / "out" / "exemplars.json").read_text())
    assert data["units"]["detect:c0"][0]["image"] == "red/strong.png"
    assert (tmp_path / "out" / data["units"]["detect:c0"][0]["patch"]).stat().st_size > 0
    html = (tmp_path / "out" / "index.html").read_text()
    assert "detect:c0" in html and "http" not in html.replace("http-equiv", "")


def test_a_corrupt_file_is_skipped_counted_and_warned(photos, tmp_path):
    (photos / "red" / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UnreadableImageWarning, match="broken.png"):
        result = _run(photos, tmp_path / "out")
    assert result.skipped["unreadable"] == ["red/broken.png"]
    assert [e["image"] for e in result.units["detect:c0"]][0] == "red/strong.png"


def test_a_file_name_that_is_not_utf8_is_read_and_named_with_escapes(photos, tmp_path):
    strong = photos / "red" / "strong.png"
    os.rename(strong, os.path.join(os.fsencode(photos / "red"), b"str\xffong.png"))
    result = _run(photos, tmp_path / "out")
    assert result.units["detect:c0"][0]["image"] == "red/str\\xffong.png"
    data = json.loads((tmp_path / "out" / "exemplars.json").read_text(encoding="utf-8"))
    assert data["units"]["detect:c0"][0]["image"] == "red/str\\xffong.png"
    assert "str\\xffong.png" in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")


def test_the_top_k_does_not_depend_on_how_the_stream_is_cut():
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 5, (40, 3), generator=g).double()  # many ties
    positions = torch.randint(0, 7, (40, 3, 2), generator=g)
    whole = RunningTopK(3, 6)
    whole.update(values, torch.arange(40), positions)
    for cut in ([40], [7, 13, 20], [1] * 40):
        parts, start = [RunningTopK(3, 6), RunningTopK(3, 6)], 0
        for i, size in enumerate(cut):
            parts[i % 2].update(values[start:start + size], torch.arange(start, start + size),
                                positions[start:start + size])
            start += size
        parts[0].merge(parts[1])
        assert torch.equal(parts[0].values, whole.values) and torch.equal(parts[0].ids, whole.ids)
        assert torch.equal(parts[0].positions, whole.positions)
    expected = sorted(range(40), key=lambda i: (-values[i, 0].item(), i))[:6]
    assert whole.ids[0].tolist() == expected


def test_a_rerun_skips_finished_work_and_another_pass_is_refused(photos, tmp_path):
    out = tmp_path / "out"
    first = _run(photos, out)
    state = torch.load(out / ".exemplars-rank0.pt", weights_only=True)
    assert state["next"] == 3  # 6 images in batches of 2
    mtime = (out / ".exemplars-rank0.pt").stat().st_mtime_ns
    assert _run(photos, out).units == first.units
    assert (out / ".exemplars-rank0.pt").stat().st_mtime_ns == mtime  # nothing was run again
    with pytest.raises(InvalidArgument, match="top"):
        _run(photos, out, top=2)
    write_images(photos, {"red/new.png": ("red", 0.7)})
    with pytest.raises(InvalidArgument, match="files, image_count"):
        _run(photos, out)
    other = planted()
    with torch.no_grad():
        other.detect.weight.mul_(2)
    with pytest.raises(InvalidArgument, match="weights"):
        exemplars(other, photos, out, layers=["detect", "pool"], logits=":", top=3, batch_size=2, workers=0,
                  progress=False)
    assert len(_run(photos, out, new_run=True).units["detect:c0"]) == 3


def _cli(*args, env=None, **popen):
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _exemplars_args(folder, out, *extra):
    return ["-m", "phasevis_ext", "exemplars", "--images", str(folder), "--layers", "detect,pool", "--logits", ":",
            "--top", "3", "--model", FACTORY, "--input-size", "64", "--no-progress", "--workers", "0", "--out",
            str(out), *extra]


def _units(out) -> dict:
    return json.loads((Path(out) / "exemplars.json").read_text())["units"]


def test_a_pass_killed_by_sigkill_resumes_where_it_stopped(tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, {f"red/{i:02d}.png": ("red", 0.05 * i) for i in range(12)})
    clean = tmp_path / "clean"
    assert _cli(*_exemplars_args(folder, clean, "--batch-size", "1")).wait(timeout=120) == 0
    out = tmp_path / "killed"
    proc = _cli(*_exemplars_args(folder, out, "--batch-size", "1"), env={"PHASEVIS_TEST_SLOW_FORWARD": "0.3"},
                start_new_session=True)
    state_file = out / ".exemplars-rank0.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once three batches are on disk
        if state_file.exists() and torch.load(state_file, weights_only=True)["next"] >= 3:
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = torch.load(state_file, weights_only=True)["next"]
    assert 3 <= done < 12 and not (out / "exemplars.json").exists()
    assert _cli(*_exemplars_args(folder, out, "--batch-size", "1")).wait(timeout=120) == 0
    assert _units(out) == _units(clean)
    assert not list(out.rglob("*.tmp"))


def test_torchrun_two_gloo_ranks_split_the_images_and_agree_with_one(photos, tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    assert _cli(*_exemplars_args(photos, single, "--batch-size", "2")).wait(timeout=120) == 0
    proc = _cli("-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                *_exemplars_args(photos, double, "--batch-size", "2"), env={"PHASEVIS_TRACEBACK": "1"})
    output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output
    assert _units(double) == _units(single)
    states = [torch.load(double / f".exemplars-rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [s["next"] for s in states] == [2, 2]  # 3 images each, in batches of 2


@pytest.mark.parametrize("case", ["empty", "not a folder", "channels", "layer", "top"])
def test_bad_input_exits_2_with_one_line(case, tmp_path, photos, capsys):
    folder, extra = photos, []
    if case == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "not a folder":
        folder = photos / "grey.png"
    elif case == "channels":
        extra = ["--model", FACTORY.replace(":planted", ":planted_grey"), "--layers", "0"]
    elif case == "layer":
        extra = ["--layers", "nowhere"]
    else:
        extra = ["--top", "0"]
    argv = _exemplars_args(folder, tmp_path / "out")[2:] + extra
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("phasevis: error:"), err
    assert {"empty": "no PNG", "not a folder": "not a folder", "channels": "the model takes 1", "layer": "nowhere",
            "top": "top"}[case] in err


def test_results_show_in_a_notebook(photos, tmp_path):
    result = _run(photos, tmp_path / "out")
    page = result._repr_html_()
    assert page.count("data:image/png;base64,") == sum(len(v) for v in result.units.values())
    assert "detect:c0" in page
    figure = result.show(["detect:c0", "detect:c1"])
    assert len(figure.axes) == 6


def test_a_neuron_reads_the_layers_centre_only(photos, tmp_path):
    write_images(photos, {"red/corner.png": ("red", 1.0)}, square=(0, 0, 12, 12))  # the strongest, off-centre
    result = exemplars(planted(), photos, tmp_path / "out", layers="detect", channels="0", neurons="0", top=2,
                       batch_size=2, workers=0, progress=False)
    assert set(result.units) == {"detect:c0", "detect:n0"}
    assert result.units["detect:c0"][0]["image"] == "red/corner.png"
    assert [e["image"] for e in result.units["detect:n0"]] == ["red/strong.png", "red/middle.jpg"]
    x0, y0, x1, y1 = result.units["detect:n0"][0]["box"]
    assert x0 <= 32 < x1 and y0 <= 32 < y1  # the centre of the 64 px original


def test_an_output_folder_inside_the_images_is_not_read_and_new_run_keeps_other_files(photos):
    out = photos / "exemplars-out"
    first = _run(photos, out)
    (out / "notes.txt").write_text("mine")
    assert _run(photos, out).units == first.units  # its patches are not images of the pass: it resumes
    _run(photos, out, new_run=True)
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("height, width", [(300, 451), (451, 300), (257, 257), (333, 1001)])
def test_the_evaluation_view_is_torchvisions_resize_and_centre_crop(height, width):
    from torchvision.transforms import v2

    from phasevis_ext.exemplars.dataset import eval_view

    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height + width))
    theirs = v2.CenterCrop(224)(v2.Resize(256, antialias=True)(image))
    assert torch.allclose(eval_view(image, 256, 224), theirs, atol=1e-5)


def test_a_box_maps_back_with_each_axis_own_scale():
    from phasevis_ext.exemplars.report import crop_box

    # 3000 x 4511: the resize truncates the long side, so the two axes scale apart (by 7 px here).
    x0, y0, x1, y1 = crop_box((3000, 4511), [0, 0, 224, 224], 256, 224)
    resized_w = int(256 * 4511 / 3000)
    left = round((resized_w - 224) / 2)
    assert abs(x0 - left * 4511 / resized_w) <= 1 and abs(x1 - (left + 224) * 4511 / resized_w) <= 1
    assert abs(y0 - 16 * 3000 / 256) <= 1 and abs(y1 - 240 * 3000 / 256) <= 1


def test_a_resize_below_the_crop_keeps_the_crop_inside_the_image():
    from phasevis_ext.exemplars.dataset import eval_view

    assert eval_view(torch.rand(3, 300, 400), 200, 224).shape == (3, 224, 224)
