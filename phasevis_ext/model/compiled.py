"""The model pass through torch.compile (inductor), opt-in, with a fallback to eager.

Compiling pays only where the model's own kernels leave time on the table: on the 2-core CPUs
measured, inductor's EfficientNet-Lite0 forward and backward took about twice eager's time after a
compile of 20-70 s (docs/benchmarks.md, "The model pass"), so `compile` is off by default. The
module is compiled in place with `nn.Module.compile`, so its module names, and the hooks that read
layers, stay as they are. Compilation happens at the first call; a model that dynamo or the
backend cannot handle falls back to eager there, with one warning, and the run goes on.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


class CompileFallbackWarning(UserWarning):
    """torch.compile failed on the model; it runs eagerly."""


def compiled(module: nn.Module, *, backend: str = "inductor", owned: bool = False) -> nn.Module:
    """`module` compiled at its first call, or eager after one warning if compiling fails.
    owned: the module is the library's own copy; otherwise a copy sharing its tensors is compiled,
    so the caller's model is never changed."""
    if not owned:
        shared = {id(t): t for t in (*module.parameters(), *module.buffers())}
        module = copy.deepcopy(module, memo=shared)
    module.compile(backend=backend)
    compiled_call = module._compiled_call_impl  # what nn.Module.compile installs

    def call_or_fall_back(*args, **kwargs):
        try:
            return compiled_call(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as error:
            # An error of the compiler, not of the model: the model's own errors, and the
            # BaseException that capture() uses to stop a forward early, pass through.
            module._compiled_call_impl = None
            warnings.warn(f"torch.compile failed on the model, which runs eagerly instead: "
                          f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                          CompileFallbackWarning, stacklevel=2)
            return module._call_impl(*args, **kwargs)

    module._compiled_call_impl = call_or_fall_back
    return module
