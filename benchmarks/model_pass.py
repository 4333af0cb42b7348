"""What makes the model pass of a visualization step cheaper: forward + backward to the input of
48 lite0 crops (8 units x 6 crops), as `visualize` runs it. Prints a markdown table.

    python benchmarks/model_pass.py [--crops 48] [--repeats 3] [--compile] [--no-bf16] [--device cpu]

Rows: memory format, bf16 autocast, BatchNorm folding (phasevis_ext.model.folding), static
pads folded into their convolutions (phasevis_ext.model.padding), activations in place
(phasevis_ext.model.inplace; also through autograd's own in-place hardtanh_, which copies its
input to save it, and in bf16 with and without the activations inside the convolutions before
them, phasevis_ext.model.conv_activation), bf16 with and without the strided depthwise input gradient of
phasevis_ext.model.depthwise, and passes of 12 crops instead of one pass of 48; --compile adds the
library's fp32 setting through torch.compile (its compile time is printed separately). On the
CPU, malloc is tuned first, as every CPU run of the library does (phasevis_ext.allocator). The
settings run in turn, one pass each, round after round, and each row is the median over rounds,
so that a drift of the machine hits every row alike.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

from phasevis_ext import models
from phasevis_ext.allocator import tune_for_cpu_runs
from phasevis_ext.model.compiled import compiled
from phasevis_ext.model.folding import fold_batchnorm
from phasevis_ext.model.inplace import InPlaceHardtanh, inplace_activations
from phasevis_ext.model.padding import fold_same_padding
from phasevis_ext.model.surgery import copy_sharing_tensors, replace_module


def model_pass(model, crops, per_pass, amp, device):
    x = crops.clone().requires_grad_(True)
    for start in range(0, x.shape[0], per_pass):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x[start:start + per_pass])
        logits.float().sum().backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=48)
    parser.add_argument("--per-pass", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-bf16", action="store_true", help="fp32 rows only (bf16 is emulated, and slow, without AVX-512-bf16)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        tune_for_cpu_runs()  # as every CPU run of the library does
    base = models.load("efficientnet_lite0", device=device)
    folded, count = fold_batchnorm(base)
    padded, pads = fold_same_padding(folded)
    in_place, acts = inplace_activations(padded)
    separate, _ = inplace_activations(padded, into_convolutions=False)  # each activation a module of its own
    # The same activations through autograd's own in-place hardtanh_, which saves (copies) its input.
    autograd_in_place = copy_sharing_tensors(separate)
    for name, module in list(autograd_in_place.named_modules()):
        if isinstance(module, InPlaceHardtanh):
            replace_module(autograd_in_place, name, nn.Hardtanh(module.min_val, module.max_val, inplace=True))
    crops = torch.rand(args.crops, 3, 224, 224, device=device)
    n, p = args.crops, args.per_pass
    # The cropped convolutions without depthwise.py's input gradient: aten's own backward throughout.
    aten_gradient = mock.patch("phasevis_ext.model.padding.conv2d", F.conv2d)
    # depthwise.py's input gradient, on any CPU (the library takes it only where bf16 is native).
    spread_gradient = mock.patch("phasevis_ext.model.depthwise.native_bf16", lambda: True)
    settings = [  # label, model, channels-last, bf16, crops per pass[, context]
        (f"fp32, contiguous, 1 pass of {n}", base, False, False, n),
        (f"fp32, channels-last, 1 pass of {n}", base, True, False, n),
        (f"bf16, contiguous, 1 pass of {n}", base, False, True, n),
        (f"bf16, channels-last, 1 pass of {n}", base, True, True, n),
        (f"bf16, channels-last, passes of {p}", base, True, True, p),
        (f"bf16, channels-last, {count} BatchNorms folded, passes of {p}", folded, True, True, p),
        (f"bf16, channels-last, BatchNorms and {pads} pads folded, aten's strided depthwise input gradient, "
         f"passes of {p}", padded, True, True, p, aten_gradient),
        (f"bf16, channels-last, BatchNorms and {pads} pads folded, depthwise.py's strided depthwise input "
         f"gradient, passes of {p}", padded, True, True, p, spread_gradient),
        (f"fp32, channels-last, {count} BatchNorms folded, passes of {p}", folded, True, False, p),
        (f"fp32, channels-last, BatchNorms and {pads} pads folded, passes of {p}", padded, True, False, p),
        (f"fp32, channels-last, BatchNorms and pads folded, {acts} activations in place through autograd's "
         f"hardtanh_, passes of {p}", autograd_in_place, True, False, p),
        (f"fp32, channels-last, BatchNorms and pads folded, {acts} activations in place (fp32 runs those "
         f"inside convolutions after them), passes of {p} (the library's fp32)", in_place, True, False, p),
        (f"bf16, channels-last, BatchNorms and pads folded, {acts} activations in place after their "
         f"convolutions, passes of {p}", separate, True, True, p),
        (f"bf16, channels-last, BatchNorms and pads folded, {acts} activations in place or inside their "
         f"convolutions, passes of {p} (the library's bf16, auto with native bf16)", in_place, True, True, p),
    ]
    if args.no_bf16:
        settings = [row for row in settings if not row[3]]
    if args.compile:
        fast = compiled(in_place)
        in_place.to(memory_format=torch.channels_last)
        start = time.perf_counter()
        model_pass(fast, crops.contiguous(memory_format=torch.channels_last), p, False, device)
        print(f"torch.compile: first call (compile) {time.perf_counter() - start:.1f} s", flush=True)
        settings.append((f"fp32, channels-last, the library's preparation, passes of {p}, torch.compile", fast, True,
                         False, p))

    def once(model, channels_last, amp, per_pass, context=None):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=fmt)
        with context or contextlib.nullcontext():
            start = time.perf_counter()
            model_pass(model, crops.contiguous(memory_format=fmt), per_pass, amp, device)
            return time.perf_counter() - start

    for setting in settings:
        once(*setting[1:])  # oneDNN/cuDNN pick their kernels on the first call of each shape
    times = {label: [] for label, *_ in settings}
    for _ in range(args.repeats):
        for label, *setting in settings:
            times[label].append(once(*setting))
    rows = [(label, statistics.median(times[label])) for label, *_ in settings]

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nlite0 forward + backward to the input, {n} crops of 224², median of {args.repeats} rounds; {where}\n")
    print("| setting | seconds | per crop (ms) | vs fp32 contiguous |")
    print("|---|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.3f} | {1000 * seconds / n:.1f} | {rows[0][1] / seconds:.2f}× |")


if __name__ == "__main__":
    main()
