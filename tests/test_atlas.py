import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import html_links
from PIL import Image
from support.atlas_worker import LAYERS, LOGITS, OPTIONS, expected_units, tiny_model

from phasevis_ext import atlas, checks, models

WORKER = Path(__file__).parent / "support" / "atlas_worker.py"
ROOT = WORKER.parents[2]


def _worker(out, *args, torchrun=False, **popen):
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"] if torchrun else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, *launcher, str(WORKER), str(out), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _finish(proc, timeout=120):
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output
    return output


def _index(out) -> dict:
    return json.loads((Path(out) / "index.json").read_text())


def _shard_units(out) -> list[str]:
    shards = sorted(Path(out, "index").glob("rank-*.jsonl"))
    return [json.loads(line)["unit"] for shard in shards for line in shard.read_text().splitlines()]


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        image.verify()  # a truncated or corrupt PNG fails here or in load()
    with Image.open(path) as image:
        image.load()
        return np.asarray(image).astype(int)


def _check_complete(out):
    """Every unit listed once in index.json and in the shards, with decodable files."""
    entries = _index(out)["units"]
    assert sorted(e["unit"] for e in entries) == sorted(expected_units())
    assert Counter(_shard_units(out)) == Counter(expected_units())  # none rendered twice
    for entry in entries:
        assert _pixels(out / entry["files"]["image"]).shape == (32, 32, 3)
        assert _pixels(out / entry["files"]["rgba"]).shape == (32, 32, 4)
        assert json.loads((out / entry["files"]["record"]).read_text())["unit"] == entry["unit"]
    assert not list(out.rglob("*.tmp"))
    return entries


def test_torchrun_two_processes_split_the_units(tmp_path):
    out = tmp_path / "dist"
    output = _finish(_worker(out, torchrun=True))
    reports = [json.loads(text) for text in re.findall(r"\{[^{}]*\}", output)]  # the ranks' lines may interleave
    assert sorted((r["rank"], r["world_size"]) for r in reports) == [(0, 2), (1, 2)]
    assert sum(r["rendered"] for r in reports) == len(expected_units())
    entries = _check_complete(out)
    assert {e["rank"] for e in entries} == {0, 1}
    assert {p.name for p in (out / "index").iterdir()} == {"rank-00000.jsonl", "rank-00001.jsonl"}
    assert _index(out)["world_size"] == 2

    # A unit's image depends on the seed and its id only, not on the rank or the process count.
    single = tmp_path / "single"
    result = atlas.run(tiny_model(), single, layers=LAYERS, logits=LOGITS, batch_size=3, progress=False, **OPTIONS)
    assert (result.rank, result.world_size, result.rendered) == (0, 1, len(expected_units()))
    for entry in entries:
        diff = np.abs(_pixels(out / entry["files"]["image"]) - _pixels(single / entry["files"]["image"]))
        assert diff.max() <= 1, entry["unit"]


def test_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "atlas"
    proc = _worker(out, "--batch-size", "2", "--hold-after-units", "2")
    shard = out / "index" / "rank-00000.jsonl"
    deadline = time.monotonic() + 120
    while not (out / "holding").exists():  # the worker is inside its second batch, and waits there
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the worker did not reach its second batch within 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    done = _shard_units(out)
    assert len(done) == 2  # the first batch, whole; nothing of the batch in flight
    for line in shard.read_text().splitlines():  # a line only exists for a unit whose files are in place
        assert all((out / f).is_file() for f in json.loads(line)["files"].values())
    with open(shard, "a") as f:  # as if killed during the append
        f.write('{"unit": "relu2:c5", "files": {"ima')

    (out / "holding").unlink()
    output = _finish(_worker(out))
    report = json.loads(output.strip().splitlines()[-1])
    assert report["skipped"] == len(done) and report["rendered"] == len(expected_units()) - len(done)
    _check_complete(out)
    assert shard.read_text().endswith("}\n")  # the torn line was cut off before appending


def test_settings_mismatch_is_caught_and_new_run_overrides(tmp_path):
    out = tmp_path / "atlas"
    fast = {**OPTIONS, "steps": 2}
    first = atlas.run(tiny_model(), out, layers="conv1", channels="1:3", progress=False, **fast)
    assert (first.units, first.rendered) == (2, 2)
    again = atlas.run(tiny_model(), out, layers="conv1", channels="1:3", batch_size=1, progress=False, **fast)
    assert (again.skipped, again.rendered) == (2, 0)  # batch size does not change images: resumes
    (out / "units" / "conv1" / "c0002_rgba.png").unlink()
    again = atlas.run(tiny_model(), out, layers="conv1", channels="1:3", progress=False, **fast)
    assert (again.skipped, again.rendered) == (1, 1)  # an index line without its files is not done

    with pytest.raises(ValueError, match=r"steps \(2 there, 3 now\)") as error:
        atlas.run(tiny_model(), out, layers="conv1", channels="1:3", progress=False, **{**fast, "steps": 3})
    assert "new_run" in str(error.value)
    other_weights = tiny_model()
    other_weights.conv1.bias.data += 1
    with pytest.raises(ValueError, match="weights"):
        atlas.run(other_weights, out, layers="conv1", channels="1:3", progress=False, **fast)

    fresh = atlas.run(tiny_model(), out, layers="conv1", channels="1:3", new_run=True, progress=False,
                      **{**fast, "steps": 3})
    assert (fresh.skipped, fresh.rendered) == (0, 2)
    assert _index(out)["settings"]["steps"] == 3 and len(_index(out)["units"]) == 2
    (archived,) = (out / "archive").iterdir()
    assert json.loads((archived / "settings.json").read_text())["steps"] == 2
    assert len(list((archived / "units" / "conv1").glob("*.png"))) == 2 * 3  # image, transparency, raw


def test_model_in_train_mode_resumes(tmp_path):
    # A forward pass in train mode would update BatchNorm's running stats, hence the weights digest.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    with pytest.warns(UserWarning, match="train mode"):
        atlas.run(model, tmp_path, layers="1", channels=":2", progress=False, **{**OPTIONS, "steps": 1})
    result = atlas.run(model, tmp_path, layers="1", channels=":2", progress=False, **{**OPTIONS, "steps": 1})
    assert (result.skipped, result.rendered) == (2, 0)


def test_index_line_only_after_the_files(tmp_path, monkeypatch):
    out, calls = tmp_path / "atlas", []
    save_rgba = atlas.export.save_rgba

    def failing_save_rgba(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first unit of the second batch
            raise OSError("disk full")
        return save_rgba(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(atlas.export, "save_rgba", failing_save_rgba)
        with pytest.raises(OSError, match="disk full"):
            atlas.run(tiny_model(), out, layers="conv1", batch_size=2, progress=False, **{**OPTIONS, "steps": 1})
    assert _shard_units(out) == ["conv1:c0", "conv1:c1"]
    result = atlas.run(tiny_model(), out, layers="conv1", batch_size=2, progress=False, **{**OPTIONS, "steps": 1})
    assert (result.skipped, result.rendered) == (2, 2)
    assert sorted(_shard_units(out)) == [f"conv1:c{c}" for c in range(4)]


def test_gallery_links_only_existing_files_and_sorts_offline(tmp_path):
    out = tmp_path / "atlas"
    atlas.run(tiny_model(), out, layers=["conv1", "relu2"], channels=":5", logits="3:", progress=False, **OPTIONS)
    pages = sorted(out.glob("*.html"))
    assert [p.name for p in pages] == ["index.html", "layer-conv1.html", "layer-logits.html", "layer-relu2.html"]
    for page in pages:
        text = page.read_text()
        links = html_links(text)
        assert links
        for link in links:
            assert "://" not in link and (out / link).is_file(), (page.name, link)
        if page.name != "index.html":
            assert "sortUnits('score', -1)" in text and "function sortUnits" in text
    relu2 = (out / "layer-relu2.html").read_text()
    assert relu2.count("<figure") == 5 and relu2.count('src="units/relu2/') == 5  # channels clipped to 0:5
    assert (out / "layer-logits.html").read_text().count("<figure") == 2  # logits 3:5


def test_cli_parser_and_command(tmp_path, monkeypatch, capsys):
    from phasevis_ext import cli

    # A registry name stands for the tiny model, so the test needs no weights.
    monkeypatch.setattr(models, "load", lambda name, device=None, **_: tiny_model().to(device))
    parser = cli.build_parser()
    argv = ["atlas", "--model", "tiny", "--layers", "conv1", "--channels", "0:2", "--logits", "0:1", "--out",
            str(tmp_path), "--steps", "2", "--image-size", "32", "--input-size", "24", "--crops", "2",
            "--device", "cpu", "--no-progress"]
    args = parser.parse_args(argv)
    assert (args.layers, args.channels, args.logits, args.new_run) == ("conv1", "0:2", "0:1", False)
    assert cli.cmd_atlas(args) == cli.EXIT_OK
    assert "3 units: 0 already done" in capsys.readouterr().out
    assert json.loads((tmp_path / "settings.json").read_text())["model"] == "tiny"
    assert cli.cmd_atlas(parser.parse_args(argv)) == cli.EXIT_OK
    assert "3 units: 3 already done" in capsys.readouterr().out
    assert cli.main([*argv, "--crops", "3"]) == cli.EXIT_USAGE
    assert "crops (2 there, 3 now)" in capsys.readouterr().err
    assert cli.cmd_atlas(parser.parse_args([*argv, "--crops", "3", "--new-run"])) == cli.EXIT_OK


@pytest.mark.parametrize("spec, expected", [(None, [0, 1, 2, 3]), ("1:3", [1, 2]), ("2:", [2, 3]), (":2", [0, 1]),
                                            ("3", [3]), (2, [2]), ("0:64", [0, 1, 2, 3]), (range(1, 9), [1, 2, 3]),
                                            ("1-2", [1, 2]), ("0,2-3", [0, 2, 3]), (":", [0, 1, 2, 3])])
def test_unit_selection(spec, expected):
    # The atlas's --channels and --logits take the same ranges as targets such as _blocks.15:0-15.
    assert checks.indices(spec, "channels", 4) == expected


@pytest.mark.parametrize("spec", ["4:8", "a:b", "3-1", ""])
def test_unit_selection_errors(spec):
    with pytest.raises(checks.InvalidArgument, match="channels"):
        checks.indices(spec, "channels", 4)


def test_images_put_each_units_exemplars_beside_its_image(tmp_path):
    from support.planted import write_images

    photos = tmp_path / "photos"
    write_images(photos, {f"p{i}.png": ("red" if i % 2 else "blue", 0.2 * i) for i in range(5)})
    out = tmp_path / "atlas"
    atlas.run(tiny_model(), out, layers=LAYERS, channels="0:2", images=photos, exemplars_top=3, progress=False,
              **OPTIONS)
    entries = _index(out)["units"]
    assert entries and all(len(e["exemplars"]) == 3 for e in entries)
    for entry in entries:
        values = [x["activation"] for x in entry["exemplars"]]
        assert values == sorted(values, reverse=True)
        assert all((out / x["patch"]).is_file() for x in entry["exemplars"])
    links = {link for page in out.glob("layer-*.html") for link in html_links(page.read_text())}
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {x["patch"] for e in entries for x in e["exemplars"]} <= links & files
