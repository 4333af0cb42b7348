"""Ctrl-C keeps finished work; runs that cannot fit their memory budget fail fast."""
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from phasevis_ext.model.memory import MemoryBudgetError, plan_batch_size
from phasevis_ext.render.results import VisualizationInterrupted
from phasevis_ext.render.visualize import visualize


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10)).eval()


def _plan(budget, batch_size=8):
    return plan_batch_size(tiny_model(), batch_size=batch_size, input_size=32, crops=2, image_size=(32, 32),
                           device=torch.device("cpu"), amp=None, budget=budget)


def test_plan_keeps_the_batch_when_it_fits_and_shrinks_it_when_not():
    assert _plan(10 * 1024**3) == 8
    one_unit = _plan(10 * 1024**3, batch_size=1)
    assert one_unit == 1
    # find the estimate for one unit by bisection on the budget, then check 3 units need 3 times it
    lo, hi = 1, 10 * 1024**2
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            _plan(mid, batch_size=1)
            hi = mid
        except MemoryBudgetError:
            lo = mid + 1
    assert _plan(3 * lo, batch_size=8) == 3
    assert _plan(3 * lo - 1, batch_size=8) == 2


def test_too_small_a_budget_fails_before_any_step_and_says_what_would_fit():
    # How long the check takes is benchmarks/budget_check.py's figure; here, that no step runs.
    def no_step(step, images, scores):
        raise AssertionError(f"step {step} ran before the budget was checked")

    with pytest.raises(MemoryBudgetError, match="would fit: crops <= 1"):
        visualize(tiny_model(), "logit:1", steps=10**6, image_size=32, input_size=32, crops=2,
                  memory_budget=_unit_bytes_for_crops(1) + 1, progress=False, callback=no_step)
    with pytest.raises(MemoryBudgetError, match="smaller input_size"):
        visualize(tiny_model(), "logit:1", steps=10, image_size=32, input_size=32, crops=2, memory_budget=1000,
                  progress=False)


def _unit_bytes_for_crops(crops):
    from phasevis_ext.model.memory import unit_bytes

    return unit_bytes(tiny_model(), input_size=32, crops=crops, image_size=(32, 32), device=torch.device("cpu"),
                      amp=None)


def test_ctrl_c_keeps_finished_units_and_marks_the_partial_chunk():
    calls = []

    def interrupt(step, images, scores):
        calls.append(step)
        if len(calls) == 4 + 1:  # chunk 1 runs its 4 steps, then Ctrl-C at step 1 of chunk 2
            raise KeyboardInterrupt

    with pytest.raises(VisualizationInterrupted) as info:
        visualize(tiny_model(), "logit:1,2,3,4,5", steps=4, image_size=16, input_size=16, crops=1, batch_size=2,
                  callback=interrupt, progress=False)
    result = info.value.result
    # chunk 1 (2 units) finished its 4 steps; chunk 2 (2 units) stopped at step 1 of its 4
    assert len(result) == 4 and result.images.shape == (4, 3, 16, 16)
    assert result.partial.tolist() == [False, False, True, True]
    assert torch.isfinite(result.scores[:2]).all() and torch.isnan(result.scores[2:]).all()
    assert result.unit_ids == ["logit(1)", "logit(2)", "logit(3)", "logit(4)"]


def test_cli_sigint_writes_the_partial_gallery_and_exits_130(tmp_path):
    out = tmp_path / "gallery"
    proc = subprocess.Popen(
        [sys.executable, "-m", "phasevis_ext.cli", "visualize", "logit:1,2", "--out", str(out), "--steps", "100000",
         "--image-size", "32", "--input-size", "32", "--crops", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # A shell's background jobs ignore SIGINT, and Python keeps an ignored SIGINT ignored: give the
        # child the default disposition, so that this test does not depend on how the suite was started.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    try:
        # Interrupt only once the progress bar counts a few optimization steps, however slow the start-up.
        steps_done = re.compile(rb"\b([1-9]\d+)/200000 \[")
        deadline = time.monotonic() + 180
        while not steps_done.search(seen) and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += os.read(proc.stderr.fileno(), 65536)
        assert steps_done.search(seen), seen.decode(errors="replace")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    err = (seen + err).decode(errors="replace")
    assert proc.returncode == 130, err
    assert "interrupted" in err
    units = json.loads((out / "results.json").read_text())["units"]
    assert [u.get("partial") for u in units] == [True, True]
    assert "(partial)" in (out / "index.html").read_text()
    for unit in units:
        assert Path(out, unit["image"]).exists()
