"""Memory planning for `visualize`: how many units fit a budget, decided before any work starts,
so that a request too large for the machine fails fast with what would fit instead of being
killed by the kernel (CPU) or running out of device memory halfway (GPU).

The estimate per unit is: the image parameters with their gradient and two optimizer states, the
synthesis buffers (image, x, their gradients, the spectrum), and per crop the model's activations
measured by one probe forward of a single crop, doubled for what autograd keeps and the gradients
of the backward. It errs high; `memory_budget` can be set by hand.
"""
from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from ..checks import InvalidArgument

GIB = 1024**3
# Part of the free memory a run may plan for: the rest is headroom for the allocator, the
# framework's workspaces and whatever else the process holds.
FREE_FRACTION = {"cpu": 0.7, "cuda": 0.85}


class MemoryBudgetError(InvalidArgument):
    """A run that cannot fit its memory budget even with one unit per batch."""


def available_bytes(device: torch.device) -> int:
    """Free memory on `device`: MemAvailable on the CPU (Linux), the driver's free count on CUDA."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def default_budget(device: torch.device) -> int:
    return int(available_bytes(device) * FREE_FRACTION.get(device.type, 0.7))


@torch.no_grad()
def activation_bytes_per_crop(model: nn.Module, input_size: int, device: torch.device, amp, channels: int = 3) -> int:
    """Bytes of every module output for one crop, measured by a probe forward."""
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()

    # TorchScript modules take no hooks; their activations are not counted.
    leaves = [m for m in model.modules() if not list(m.children()) and not isinstance(m, torch.jit.ScriptModule)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        probe = torch.rand(1, channels, input_size, input_size, device=device)
        with torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext():
            model(probe)
    finally:
        for h in handles:
            h.remove()
    return total


def unit_bytes(model, *, input_size: int, crops: int, image_size: tuple[int, int], device, amp,
               channels: int = 3) -> int:
    pixels = channels * image_size[0] * image_size[1]
    params = 4 * 4 * pixels  # parameters (at most one per pixel), gradient, two optimizer states
    synthesis = 6 * 4 * pixels  # image, x, their gradients, the complex spectrum
    crops_in = 2 * 4 * crops * channels * input_size * input_size  # the crops and their gradient
    activations = 2 * crops * activation_bytes_per_crop(model, input_size, device, amp, channels)
    return params + synthesis + crops_in + activations


def plan_batch_size(model, *, batch_size: int, input_size: int, crops: int, image_size: tuple[int, int], device,
                    amp, budget: int | None, channels: int = 3) -> int:
    """The largest batch size <= `batch_size` whose estimate fits `budget` (bytes; None: automatic)."""
    budget = default_budget(device) if budget is None else int(budget)
    if budget <= 0:
        raise InvalidArgument(f"memory_budget must be positive, got {budget}")
    per_unit = unit_bytes(model, input_size=input_size, crops=crops, image_size=image_size, device=device, amp=amp,
                          channels=channels)
    fits = budget // per_unit
    if fits >= 1:
        return int(min(batch_size, fits))
    per_crop = max(1, (per_unit - unit_bytes(model, input_size=input_size, crops=0, image_size=image_size,
                                             device=device, amp=amp, channels=channels)) // crops)
    fixed = per_unit - per_crop * crops
    crops_fit = (budget - fixed) // per_crop
    hint = f"crops <= {crops_fit}" if crops_fit >= 1 else f"a smaller input_size than {input_size}"
    raise MemoryBudgetError(
        f"one unit needs about {per_unit / GIB:.2f} GiB ({crops} crops of {input_size}², image "
        f"{image_size[0]}x{image_size[1]}) but the memory budget is {budget / GIB:.2f} GiB on {device}; "
        f"would fit: {hint}, or a larger memory_budget")
