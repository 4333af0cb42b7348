"""A convolution and its ReLU6 apart (aten's conv, then clamp_) against oneDNN's convolution with
the clamp as a post-op (what model/conv_activation.py runs in bf16), on lite0-like shapes.
Prints a markdown table; channels-last throughout, ms per call, best of the rounds' means.

    python benchmarks/conv_activation.py [--repeats 20]
"""
import argparse
import time

import torch
import torch.nn.functional as F

SHAPES = [  # batch, in, side, out, kernel, groups
    (12, 96, 80, 96, 3, 96),
    (12, 16, 80, 96, 1, 1),
    (12, 192, 20, 1152, 1, 1),
    (12, 1152, 10, 1152, 5, 1152),
]


def per_call(fn, repeats):
    fn()
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return 1000 * (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    print("| dtype | shape (N, C, side, out, k, groups) | conv | conv + clamp_ | fused | apart / fused |")
    print("|---|---|---|---|---|---|")
    for dtype in (torch.bfloat16, torch.float32):
        for n, c, side, out, k, groups in SHAPES:
            fmt = torch.channels_last
            x = torch.randn(n, c, side, side).to(dtype).contiguous(memory_format=fmt)
            w = (torch.randn(out, c // groups, k, k) * 0.1).to(dtype).contiguous(memory_format=fmt)
            b = torch.randn(out).to(dtype)
            pad = k // 2
            conv = lambda: F.conv2d(x, w, b, 1, pad, 1, groups)  # noqa: E731
            apart = lambda: conv().clamp_(0, 6)  # noqa: E731
            fused = lambda: torch.ops.mkldnn._convolution_pointwise(  # noqa: E731
                x, w, b, [pad, pad], [1, 1], [1, 1], groups, "hardtanh", [0.0, 6.0], "")
            assert torch.equal(apart(), fused())
            t_conv, t_apart, t_fused = (per_call(f, args.repeats) for f in (conv, apart, fused))
            print(f"| {str(dtype).removeprefix('torch.')} | {(n, c, side, out, k, groups)} | {t_conv:.2f} | "
                  f"{t_apart:.2f} | {t_fused:.2f} | {t_apart / t_fused:.2f}× |")


if __name__ == "__main__":
    main()
