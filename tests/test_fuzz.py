"""Fuzz the native ops through tests/support/fuzz_ops.py in subprocesses, so that a crash fails a
test instead of killing the run.

By default: one case per image size the driver draws (len(fuzz_ops.SHAPES) = 425 cases of
FUZZ_SEED=0), every size once. Marked slow, and deselected unless asked for with `-m slow`:
FUZZ_CASES=4000 cases. Either runs in FUZZ_BATCHES=4 processes, FUZZ_JOBS=2 at a time. A larger run:
    FUZZ_CASES=20000 FUZZ_SEED=12345 .venv/bin/python -m pytest -m slow tests/test_fuzz.py -q
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import requires_ext
from support import fuzz_ops

pytestmark = requires_ext

DRIVER = Path(fuzz_ops.__file__)
CASES = int(os.environ.get("FUZZ_CASES", "4000"))
SEED = int(os.environ.get("FUZZ_SEED", "0"))
BATCHES = int(os.environ.get("FUZZ_BATCHES", "4"))
JOBS = int(os.environ.get("FUZZ_JOBS", "2"))
# Cases take ~20 ms; the allowance covers startup and a loaded machine, not a hang.
SECONDS_PER_CASE, STARTUP_SECONDS = 1.0, 60.0


def run_driver(seed: int, start: int, cases: int, *extra: str) -> tuple[int | None, list[str], str]:
    """(return code, or None on a timeout; the case lines printed; stderr)."""
    command = [sys.executable, str(DRIVER), "--seed", str(seed), "--start", str(start), "--cases", str(cases), *extra]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=STARTUP_SECONDS + SECONDS_PER_CASE * cases)
    except subprocess.TimeoutExpired as error:  # the output so far still says where it hung
        out, err = (s.decode() if isinstance(s, bytes) else s or "" for s in (error.stdout, error.stderr))
        return None, out.splitlines(), err
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def how_it_died(returncode: int | None) -> str:
    if returncode is None:
        return "timed out"
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def replay(seed: int, index: int) -> str:
    return f"python tests/support/{DRIVER.name} --seed {seed} --start {index} --cases 1"


def stderr_tail(stderr: str, lines: int = 8) -> str:
    """The end of faulthandler's report: the error and the innermost frames, without its module list."""
    kept = stderr.split("\nExtension modules:")[0].strip().splitlines()
    return "\n    ".join(kept[-lines:])


def locate_crash(seed: int, start: int, cases: int, returncode, lines: list[str], stderr: str, *extra: str) -> str:
    """Name the case that took the batch down: each line is flushed once its case is done, so
    it is the first one unreported; rerun it alone to confirm."""
    index = start + len(lines)
    tail = stderr_tail(stderr)
    if index >= start + cases:
        return f"seed {seed}, cases {start}..{start + cases - 1}: every case passed, then the process {how_it_died(returncode)}\n    {tail}"
    alone, _, alone_stderr = run_driver(seed, index, 1, *extra)
    (spec,) = run_driver(seed, index, 1, "--describe")[1]
    spec = spec.split(" ", 1)[1]
    if alone == 0:
        return (f"seed {seed}: the batch from case {start} {how_it_died(returncode)} in case {index}, which passes alone; "
                f"replay the batch with --start {start} --cases {index - start + 1}\n    case {index}: {spec}\n    {tail}")
    return f"seed {seed}, case {index} {how_it_died(alone)}: {spec}\n    replay: {replay(seed, index)}\n    {stderr_tail(alone_stderr)}"


def fuzz_batch(seed: int, start: int, cases: int, *extra: str) -> list[str]:
    """The failures of one batch: its mismatches, and the case that crashed it, if any."""
    returncode, lines, stderr = run_driver(seed, start, cases, *extra)
    failures = [f"seed {seed}, case {line}" for line in lines if line.split(" ", 2)[1:2] == ["MISMATCH"]]
    if returncode != 0 or len(lines) != cases:
        failures.append(locate_crash(seed, start, cases, returncode, lines, stderr, *extra))
    return failures


def fuzz(cases: int) -> None:
    size = -(-cases // BATCHES)
    starts = range(0, cases, size)
    with ThreadPoolExecutor(JOBS) as pool:
        results = pool.map(lambda start: fuzz_batch(SEED, start, min(size, cases - start)), starts)
    failures = [failure for batch in results for failure in batch]
    reasons = Counter(reason(failure) for failure in failures)
    summary = "\n".join(f"{count:6d}  {why}" for why, count in reasons.most_common())
    assert not failures, (
        f"{len(failures)} of {cases} fuzz cases failed (seed {SEED}), by reason:\n{summary}\nthe first ones:\n"
        + "\n".join(failures[:20])
    )


def test_fuzz_every_shape():
    fuzz(len(fuzz_ops.SHAPES))


@pytest.mark.slow
def test_fuzz_native_ops():
    fuzz(CASES)


def reason(failure: str) -> str:
    """A failure's kind: its MISMATCH text without the numbers, or how its process died."""
    if " MISMATCH " not in failure:
        return "crash: " + re.sub(r"\d+", "#", failure.split(":")[0])
    why = failure.split(" MISMATCH ", 1)[1].split(" | ")[0]
    return re.sub(r"-?\d[\d.e+-]*", "#", why)


def test_cases_replay_from_seed_and_index():
    first = run_driver(7, 40, 3, "--describe")[1]
    again = run_driver(7, 41, 1, "--describe")[1]
    assert again == first[1:2]
    assert json.loads(again[0].split(" ", 1)[1])["index"] == 41


def test_a_crash_names_its_case():
    failures = fuzz_batch(SEED, 10, 5, "--crash-at", "12")
    assert len(failures) == 1
    assert "case 12 was killed by SIGSEGV" in failures[0]
    assert "--start 12 --cases 1" in failures[0]
