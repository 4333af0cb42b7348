import pytest
import torch

import phasevis_ext as pv

requires_ext = pytest.mark.skipif(not pv.extension_available(), reason="the compiled extension is not built")
requires_cuda_ext = pytest.mark.skipif(
    not (torch.cuda.is_available() and pv.ops.cuda_kernels_available()), reason="needs a GPU and the CUDA kernels"
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
