"""The suite's precision switch: PHASEVIS_TEST_AMP=bfloat16 makes amp="auto" run the model pass
under bf16 autocast, in the test process and in the processes the tests start.

bf16 is what "auto" runs on an AVX-512-bf16 CPU and what a user who asks for it runs elsewhere;
bf16 autocast runs on every CPU, emulated where it is not native, so any machine covers it, and
PHASEVIS_TEST_AMP=none gives a bf16 machine the fp32 path of the others. Tests that
compare numbers pin amp="none" and are not affected.
"""
from __future__ import annotations

import os

from phasevis_ext.render import settings as render

VARIABLE = "PHASEVIS_TEST_AMP"


def forced_auto_amp() -> dict | None:
    """{device type: autocast dtype} for amp="auto" under the switch, or None without it."""
    name = os.environ.get(VARIABLE)
    if name is None:
        return None
    if name not in render.AMP_NAMES:
        raise ValueError(f"{VARIABLE} must be one of {sorted(render.AMP_NAMES)}, got {name!r}")
    return {device_type: render.AMP_NAMES[name] for device_type in render.AUTO_AMP}
