from html.parser import HTMLParser

import pytest
import torch
from support.forced_amp import forced_auto_amp

import phasevis_ext as pv
from phasevis_ext.render import settings as render

FORCED_AMP = forced_auto_amp()  # the PHASEVIS_TEST_AMP switch, read once for the whole run

requires_ext = pytest.mark.skipif(not pv.extension_available(), reason="the compiled extension is not built")
requires_cuda_ext = pytest.mark.skipif(
    not (torch.cuda.is_available() and pv.ops.cuda_kernels_available()), reason="needs a GPU and the CUDA kernels"
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _forced_amp(monkeypatch):
    for device_type, dtype in (FORCED_AMP or {}).items():
        monkeypatch.setitem(render.AUTO_AMP, device_type, dtype)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href")]


def html_links(text: str) -> list[str]:
    """Every src and href of an HTML page."""
    parser = _Links()
    parser.feed(text)
    return parser.links
