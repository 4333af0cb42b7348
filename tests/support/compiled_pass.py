"""Run in a subprocess by tests/test_compiled.py: one compiled model pass against eager, so that
two processes with different CPU vector ISAs can share an inductor cache directory."""
import sys

import torch
from torch import nn

from phasevis_ext.model.compiled import compiled


class Pooled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)

    def forward(self, x):
        y = torch.relu(self.conv(x))
        return (y * y).mean(dim=(2, 3)) + y.amax(dim=(2, 3))


def main() -> int:
    torch.manual_seed(0)
    model = Pooled()
    x = torch.randn(2, 3, 24, 40, requires_grad=True)
    eager = model(x)
    (grad_eager,) = torch.autograd.grad(eager.sum(), x)
    fast = compiled(model, owned=True)
    out = fast(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    error = max((out - eager).abs().max().item(), (grad - grad_eager).abs().max().item())
    print(f"max error {error:.3e}")
    return 0 if error < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
