"""Times the MACO synthesis: the fused op raw (torch.ops, what the render loop calls) and through the
public `maco_synthesis` (argument checks and all), the eager reference, torch.compile of the
reference, and the bare FFT floor (irfft2 + rfft2 of the same shape). Prints a markdown table of
medians in ms. On the CPU, malloc is tuned first, as every CPU run of the library does
(phasevis_ext.allocator).

    python benchmarks/synthesis.py [--sizes 224 512 1024] [--batches 1 8] [--device cpu] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import phasevis_ext as pv
from phasevis_ext.allocator import tune_for_cpu_runs
from phasevis_ext.ops.reference import maco_synthesis_reference


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def median_ms_interleaved(fns, device, repeats: int, warmup: int = 5) -> list[float]:
    """Medians of several functions timed in turn, call by call (alternating the order), so that a
    change in the machine's load hits them alike: what a ratio between them needs."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for i in range(repeats):
        for j in (range(len(fns)) if i % 2 == 0 else reversed(range(len(fns)))):
            _sync(device)
            start = time.perf_counter()
            fns[j]()
            _sync(device)
            times[j].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def bench_case(size: int, batch: int, device, repeats: int, with_compile: bool) -> dict:
    torch.manual_seed(0)
    # Timing does not depend on the magnitude's values; a 1/f profile stands in for the natural one.
    magnitude = pv.fourier_scale((size, size), device=device).expand(3, -1, -1).contiguous()
    phase = torch.randn(batch, 3, size, size // 2 + 1, device=device, requires_grad=True)
    grad = torch.rand(batch, 3, size, size, device=device)
    k = pv.default_color_matrix(3, device=device)
    args = dict(size=(size, size), values_range=(0.0, 1.0), color_matrix=k, eps=1e-4)

    def ext_forward():
        with torch.no_grad():
            pv.ops.maco_synthesis_op(phase, magnitude, size, size, 0.0, 1.0, k, 1e-4)

    def ext_both():
        out = pv.ops.maco_synthesis_op(phase, magnitude, size, size, 0.0, 1.0, k, 1e-4)
        torch.autograd.grad(out, phase, grad)

    saved = torch.ops.phasevis.maco_synthesis(phase.detach(), magnitude, size, size, 0.0, 1.0, k, 1e-4)

    def public_forward():
        with torch.no_grad():
            pv.maco_synthesis(phase, magnitude, backend="ext", **args)

    def public_both():
        torch.autograd.grad(pv.maco_synthesis(phase, magnitude, backend="ext", **args), phase, grad)

    def ext_backward_op():
        # the raw backward op, without autograd: what the Python autograd glue costs on top
        torch.ops.phasevis.maco_synthesis_backward(grad, phase.detach(), magnitude, saved[1], saved[2], saved[3], k, 0.0, 1.0, 1e-4)

    def ref(fn):
        def forward():
            with torch.no_grad():
                fn(phase, magnitude, (size, size), (0.0, 1.0), k, 1e-4)

        def both():
            torch.autograd.grad(fn(phase, magnitude, (size, size), (0.0, 1.0), k, 1e-4), phase, grad)

        return forward, both

    spectrum = torch.polar(magnitude.expand(batch, -1, -1, -1).contiguous(), phase.detach())

    def fft_floor():
        torch.fft.rfft2(torch.fft.irfft2(spectrum, s=(size, size)))

    row = {"size": size, "batch": batch}
    row["fft_floor"] = median_ms(fft_floor, device, repeats)
    if pv.extension_available():
        row["ext_fwd"], row["public_fwd"] = median_ms_interleaved([ext_forward, public_forward], device, repeats)
        row["ext_fwd_bwd"], row["public_fwd_bwd"] = median_ms_interleaved([ext_both, public_both], device, repeats)
        row["ext_bwd_op"] = median_ms(ext_backward_op, device, repeats)
    fwd, both = ref(maco_synthesis_reference)
    row["eager_fwd"] = median_ms(fwd, device, repeats)
    row["eager_fwd_bwd"] = median_ms(both, device, repeats)
    if with_compile:
        torch._dynamo.reset()
        fwd, both = ref(torch.compile(maco_synthesis_reference))
        row["compile_fwd"] = median_ms(fwd, device, repeats)
        row["compile_fwd_bwd"] = median_ms(both, device, repeats)
    return row


def format_table(rows: list[dict]) -> str:
    cols = [
        ("size", "size"), ("batch", "B"), ("ext_fwd", "ext fwd"), ("public_fwd", "public fwd"),
        ("eager_fwd", "eager fwd"), ("compile_fwd", "compile fwd"), ("ext_fwd_bwd", "ext fwd+bwd"),
        ("public_fwd_bwd", "public fwd+bwd"), ("eager_fwd_bwd", "eager fwd+bwd"), ("compile_fwd_bwd", "compile fwd+bwd"),
        ("ext_bwd_op", "ext bwd op alone"), ("fft_floor", "FFT floor"),
    ]
    cols = [c for c in cols if any(c[0] in r for r in rows)]
    ratios = [
        ("speed-up vs eager (fwd+bwd)", "eager_fwd_bwd", "ext_fwd_bwd", "{:.1f}×"),
        ("ext fwd+bwd / FFT floor", "ext_fwd_bwd", "fft_floor", "{:.2f}×"),
        ("public / ext (fwd+bwd)", "public_fwd_bwd", "ext_fwd_bwd", "{:.2f}×"),
    ]
    lines = ["| " + " | ".join([h for _, h in cols] + [h for h, *_ in ratios]) + " |"]
    lines.append("|" + "---|" * (len(cols) + len(ratios)))
    for r in rows:
        cells = [f"{r[k]}²" if k == "size" else str(r[k]) if k == "batch" else f"{r[k]:.2f}" if k in r else "–" for k, _ in cols]
        cells += [fmt.format(r[a] / r[b]) if a in r and b in r else "–" for _, a, b, fmt in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--compile-sizes", type=int, nargs="*", help="only these sizes get the compile column")
    parser.add_argument("--compile-batches", type=int, nargs="*", help="only these batches get the compile column")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        tune_for_cpu_runs()  # as every CPU run of the library does: the op's large buffers stay mapped
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            with_compile = (
                not args.no_compile
                and (args.compile_sizes is None or size in args.compile_sizes)
                and (args.compile_batches is None or batch in args.compile_batches)
            )
            rows.append(bench_case(size, batch, device, args.repeats, with_compile))
            print(rows[-1], flush=True)
            _write_json(args.json, device, rows)
    print(f"\nDevice: {_device_name(device)}; torch {torch.__version__}; median of {args.repeats} runs, ms\n")
    print(format_table(rows))


def _device_name(device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"


def _write_json(path, device, rows):
    """Rewritten after every case, so a run cut short still leaves its rows."""
    if path:
        with open(path, "w") as f:
            json.dump({"device": _device_name(device), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
