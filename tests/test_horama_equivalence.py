"""With B = 1, C = 3, even W, the default K, float32 and values_range = (-2.5, 2.5), maco_synthesis
equals Horama 0.3.0's maco_preconditioner. Skipped unless horama is installed (benchmark extra)."""
import pytest
import torch

import phasevis_ext as pv

horama_maco = pytest.importorskip("horama.maco_fv")


@pytest.mark.parametrize("backend", ["torch", "auto"])
@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_matches_horama_maco_preconditioner(size, backend):
    h, w = size
    phase = torch.randn(1, 3, h, w // 2 + 1)
    magnitude = torch.rand(3, h, w // 2 + 1) * 50
    theirs = horama_maco.maco_preconditioner(magnitude, phase[0], (-2.5, 2.5), "cpu")[None]  # horama is unbatched
    ours = pv.maco_synthesis(phase, magnitude, values_range=(-2.5, 2.5), backend=backend)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
