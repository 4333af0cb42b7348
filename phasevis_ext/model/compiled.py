"""The model pass through torch.compile (inductor), opt-in, with a fallback to eager.

Compiling pays only where the model's own kernels leave time on the table: on a 2-core AVX2 CPU,
inductor's EfficientNet-Lite0 forward and backward took 2.4 times eager's time, after a compile of
half a minute (docs/benchmarks.md, "The model pass"), so `compile` is off by default. The
module is compiled in place with `nn.Module.compile`, so its module names, and the hooks that read
layers, stay as they are. Compilation happens at the first call; a model that dynamo or the
backend cannot handle falls back to eager there, with one warning, and the run goes on. When
`activations.capture` stops a forward after the last layer it needs, dynamo compiles the forward
up to that point as a graph of its own.

Inductor's FX graph cache (on by default, under /tmp/torchinductor_$USER or
TORCHINDUCTOR_CACHE_DIR) leaves the CPU vector ISA out of its key: a graph compiled for 8-lane
AVX2 and replayed where AVX-512 is picked ran its 8-step loops with 16-lane stores, past the end
of their buffers (heap corruption), and the reverse summed half of each reduction. That happens
wherever the ISA differs under one cache: a cache directory shared across a cluster's nodes, or
`ATEN_CPU_CAPABILITY` set for one run. Naming the vector width in the compile options
(`cpp.simdlen`, the width inductor would pick anyway) puts it in the key.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .surgery import copy_sharing_tensors


def inductor_options() -> dict:
    """Options for torch.compile(backend="inductor") that key its cache by the CPU vector width."""
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        isa = pick_vec_isa()
    except Exception:  # noqa: BLE001 (a private module: without it, the cache key is inductor's own)
        return {}
    bits = isa.bit_width()  # 0 where inductor vectorizes nothing
    return {"cpp.simdlen": bits} if bits else {}


class CompileFallbackWarning(UserWarning):
    """torch.compile failed on the model; it runs eagerly."""


def compiled(module: nn.Module, *, backend: str = "inductor", owned: bool = False) -> nn.Module:
    """`module` compiled at its first call, or eager after one warning if compiling fails.
    owned: the module is the library's own copy; otherwise a copy sharing its tensors is compiled,
    so the caller's model is never changed (a model that cannot be copied stays eager, with a warning)."""
    if not owned:
        try:
            module = copy_sharing_tensors(module)
        except (RuntimeError, TypeError) as error:  # e.g. non-leaf tensors that weight_norm keeps
            warnings.warn(f"the model cannot be copied to compile it, so it runs eagerly: {error}",
                          CompileFallbackWarning, stacklevel=2)
            return module
    module.compile(backend=backend, options=inductor_options() if backend == "inductor" else None)
    compiled_call = module._compiled_call_impl  # what nn.Module.compile installs

    def call_or_fall_back(*args, **kwargs):
        try:
            return compiled_call(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as error:
            # Dynamo also wraps the model's own errors (a wrong input shape surfaces as a
            # TorchRuntimeError): only if the eager forward succeeds was it the compiler's fault.
            # A failure after a graph break reruns what already ran, hooks included.
            out = module._call_impl(*args, **kwargs)
            module._compiled_call_impl = None
            reason = str(error).splitlines()[0] if str(error) else ""
            warnings.warn(f"torch.compile failed on the model, which runs eagerly instead: {type(error).__name__}: "
                          f"{reason}", CompileFallbackWarning, stacklevel=3)
            return out

    module._compiled_call_impl = call_or_fall_back
    return module
