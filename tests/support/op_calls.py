"""The ATen ops a block of code dispatches, in order."""
from torch.utils._python_dispatch import TorchDispatchMode


class OpCalls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append(func)
        return func(*args, **(kwargs or {}))
