"""Fuzz driver for the fused synthesis ops: many seeded cases in one process.

    python tests/support/fuzz_ops.py --seed S --cases N [--start K] [--describe]

Case i draws every parameter from random.Random(f"{S}:{i}") and every tensor from a generator
seeded by that draw, so (S, i) replays a case exactly: `--start i --cases 1`. Its image size is
SHAPES[i % len(SHAPES)], so any len(SHAPES) consecutive cases cover every size. The draws mirror
hypothesis strategies (sampled_from over 1-sized, odd and elongated sides, dtypes, memory
layouts, and one deliberate fault per invalid case) but stay cheap, and a case replays without
hypothesis' database. `--describe` prints the drawn parameters instead of running the cases.

One line per case, flushed, so a parent process sees how far a crashing batch got:
    <i> ok                       the result matched the reference, or the fault raised as required
    <i> raised <Type>: <msg>     an invalid input raised an accepted error
    <i> MISMATCH <why> | <json>  anything else: wrong values, a wrong or missing error
A crash kills the process; finding and naming the case is the caller's job (tests/test_fuzz.py).
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import math
import os
import random
import signal
import sys
import warnings

import torch

import phasevis_ext as pv
from phasevis_ext.ops.reference import fourier_synthesis_reference, maco_synthesis_reference

OPS = torch.ops.phasevis
KINDS = ("wrapper", "raw", "wrapper_fault", "raw_fault", "backward_fault")
SIDES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 31, 32, 33, 48, 63, 64)
ELONGATED = ((1, 97), (97, 1), (2, 97), (97, 2), (1, 64), (64, 1), (3, 61), (61, 4))
# Every (H, W) of SIDES², and each elongated size 8 times (about 15% of the cases).
SHAPES = tuple((h, w) for h in SIDES for w in SIDES) + ELONGATED * 8
HEAD_LAYOUTS = ("contiguous", "sliced", "transposed", "channels_last", "batch_strided", "offset", "expanded")
MAGNITUDE_LAYOUTS = ("shared", "shared_transposed", "expanded", "per_sample", "per_sample_transposed", "per_sample_sliced")
SCALE_LAYOUTS = ("full", "full_transposed", "row", "column", "vector", "scalar", "fourier_scale")
# Raw-op inputs beyond the well-conditioned ones: "compare" values are checked against the
# reference, degenerate ones only for finiteness, since float32 rounding divided by eps is noise.
RAW_VALUES = ("normal", "negative_other", "constant_head", "zero_other", "huge", "nan_head", "inf_head", "nan_other", "inf_other")
COMPARED_VALUES = ("normal", "negative_other")
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}
FLOAT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---------------------------------------------------------------------------
# drawing a case
# ---------------------------------------------------------------------------


def draw(seed: int, index: int) -> dict:
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choices(KINDS, weights=(30, 20, 20, 15, 15))[0]
    op = rng.choice(("maco", "fourier"))
    height, width = SHAPES[index % len(SHAPES)]
    channels = rng.randint(1, 4)
    wrapped = kind.startswith("wrapper")
    # The wrapper needs two pixels per channel; the raw ops only two per sample.
    if height * width * (1 if wrapped else channels) < 2:
        width = 2
    lo = rng.uniform(-3, 3)
    spec = dict(
        seed=seed, index=index, kind=kind, op=op,
        dtype=rng.choice(tuple(FLOAT_DTYPES)),
        batch=rng.randint(1, 4), channels=channels, height=height, width=width,
        explicit_size=width % 2 == 1 or rng.random() < 0.5,
        head_layout=rng.choice(HEAD_LAYOUTS),
        other_layout=rng.choice(MAGNITUDE_LAYOUTS if op == "maco" else SCALE_LAYOUTS),
        complex=op == "fourier" and wrapped and rng.random() < 0.3,
        head_scale=rng.choice((1.0, 1.0, 1e-3, 1e3, 1e-30, 1e30)),  # the standardization makes it moot
        other_scale=rng.choice((1.0, 1.0, 1e-3, 1e3)),
        color=rng.choice(("none", "default", "random", "random_transposed") + (("other_dtype",) if wrapped else ())),
        values_range=rng.choice(((0.0, 1.0), (-2.5, 2.5), (lo, lo + rng.choice((1e-3, 0.5, 10.0))))),
        eps=rng.choice((1e-4, 1e-4, 1e-2, 1e-6, 0.0, 0.5)),
        backend=rng.choice(("ext", "ext", "auto", "torch")) if kind == "wrapper_fault" else "ext",
        threads=rng.choice((1, 1, 1, 2)),
        tensor_seed=rng.getrandbits(62),
        values="normal",
    )
    if kind == "raw":
        spec["values"] = rng.choices(RAW_VALUES, weights=(10, 3, 2, 2, 2, 1, 1, 1, 1))[0]
        if rng.random() < 0.2:  # the raw ops take any range; the wrapper requires lo < hi
            spec["values_range"] = rng.choice(((1.0, -1.0), (0.5, 0.5), (-1e6, 1e6)))
    faults = {"wrapper_fault": WRAPPER_FAULTS[op], "raw_fault": RAW_FAULTS[op], "backward_fault": BACKWARD_FAULTS}
    if kind in faults:
        spec["fault"] = rng.choice(sorted(faults[kind]))
        if spec["fault"] == "other_single_sample":  # a (1, C, H, Wr) magnitude is valid for B = 1
            spec["batch"] = max(2, spec["batch"])
    return spec


# ---------------------------------------------------------------------------
# building tensors
# ---------------------------------------------------------------------------


def with_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """`t`'s values (all samples equal to the first for "expanded") in the given memory layout."""
    if layout == "sliced":  # stride 2 in the last dimension
        out = t.new_zeros(t.shape[:-1] + (2 * t.shape[-1],))[..., ::2]
    elif layout == "transposed":  # dims 2 and 3 swapped in memory
        out = t.new_empty(t.shape[:2] + (t.shape[3], t.shape[2]) + t.shape[4:]).transpose(2, 3)
    elif layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)
    elif layout == "batch_strided":
        out = t.new_zeros((2 * t.shape[0],) + t.shape[1:])[::2]
    elif layout == "offset":
        out = t.new_zeros(t.numel() + 7)[7:].view(t.shape)
    elif layout == "expanded":
        return t[:1].expand(t.shape)
    else:
        return t
    return out.copy_(t)


def build(spec: dict):
    """(head, other, color_matrix) for the spec; the head is pairs (…, 2) for Fourier unless complex."""
    g = torch.Generator().manual_seed(spec["tensor_seed"])
    dtype = FLOAT_DTYPES[spec["dtype"]]
    b, c, h, w = spec["batch"], spec["channels"], spec["height"], spec["width"]
    wr = w // 2 + 1
    values = spec["values"]

    def randn(*shape):
        return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)

    maco = spec["op"] == "maco"
    head = randn(b, c, h, wr, *(() if maco else (2,))) * spec["head_scale"]
    if maco:
        per_sample = spec["other_layout"].startswith("per_sample")
        other = randn(*((b,) if per_sample else ()), c, h, wr).abs() * 2 + 0.1
        if values == "negative_other":
            other = randn(*other.shape)
    else:
        other = randn(h, wr).abs() + 0.1
        if values == "negative_other":
            other = randn(h, wr)
    other = other * spec["other_scale"]
    if values == "constant_head":
        head = torch.full_like(head, 0.37)
    elif values == "zero_other":
        other = torch.zeros_like(other)
    elif values == "huge":
        head, other = head * 1e30, other * 1e30
    elif values in ("nan_head", "inf_head"):
        head[0, 0, 0, 0] = math.nan if values == "nan_head" else -math.inf
    elif values in ("nan_other", "inf_other"):
        other.view(-1)[other.numel() // 2] = math.nan if values == "nan_other" else math.inf

    if spec["complex"]:
        head = torch.view_as_complex(head)
    head = with_layout(head, spec["head_layout"])
    if maco:
        layout = spec["other_layout"]
        if layout == "expanded":
            other = other.expand(b, c, h, wr)
        elif layout.endswith("transposed"):
            other = other.transpose(-1, -2).contiguous().transpose(-1, -2)
        elif layout.endswith("sliced"):
            other = with_layout(other, "sliced")
    else:
        other = {
            "full": lambda s: s,
            "full_transposed": lambda s: s.t().contiguous().t(),
            "row": lambda s: s[:1],
            "column": lambda s: s[:, :1],
            "vector": lambda s: s[0],
            "scalar": lambda s: s[0, 0],
            "fourier_scale": lambda s: pv.fourier_scale((h, w), decay=1.0, dtype=dtype) * spec["other_scale"],
        }[spec["other_layout"]](other)

    color = spec["color"]
    if color in ("none", "default"):
        k = pv.default_color_matrix(c, dtype=dtype)
    else:
        k = randn(c, c)
        if color == "random_transposed":
            k = k.t()
        elif color == "other_dtype":  # the wrapper converts K to the input's dtype
            k = k.to(torch.float64 if dtype == torch.float32 else torch.float32)
    return head, other, k


def wrapper_kwargs(spec: dict, k: torch.Tensor) -> dict:
    return dict(
        size=(spec["height"], spec["width"]) if spec["explicit_size"] else None,
        values_range=spec["values_range"],
        color_matrix=None if spec["color"] == "none" else k,
        eps=spec["eps"],
        backend=spec["backend"],
    )


# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------


class Mismatch(Exception):
    pass


def check_close(what: str, got: torch.Tensor, want: torch.Tensor, atol: float | None) -> None:
    """`got` finite wherever `want` is, and (if atol is given) within atol of it there."""
    if got.shape != want.shape:
        raise Mismatch(f"{what}: shape {tuple(got.shape)} != reference {tuple(want.shape)}")
    got, want = got.detach().to(want.dtype), want.detach()
    finite = torch.isfinite(want)
    if not bool(torch.isfinite(got[finite]).all()):
        raise Mismatch(f"{what}: non-finite where the reference is finite")
    if atol is not None and finite.any():
        err = (got[finite] - want[finite]).abs().max().item()
        if not err <= atol:
            raise Mismatch(f"{what}: max error {err:.3g} > atol {atol:.3g}")


def reference_and_grad(spec, head, other, k, grad_out, size, values_range, eps):
    """The float64 reference image and its gradient wrt the head (pairs or complex, as given)."""
    to64 = torch.complex128 if head.is_complex() else torch.float64
    leaf = head.detach().to(to64, copy=True).contiguous().requires_grad_(True)
    other, k = other.detach().double(), k.detach().double()
    if spec["op"] == "maco":
        out = maco_synthesis_reference(leaf, other, size, values_range, k, eps)
    else:
        z = leaf if leaf.is_complex() else torch.view_as_complex(leaf)
        out = fourier_synthesis_reference(z, other, size, values_range, k, eps)
    (grad,) = torch.autograd.grad(out, leaf, grad_out.double())
    return out.detach(), grad


def compare(spec, out, grad, head, other, k, grad_out, size, values_range, eps, exact: bool) -> None:
    ref, ref_grad = reference_and_grad(spec, head, other, k, grad_out, size, values_range, eps)
    tol = TOLERANCE[spec["dtype"]]
    lo, hi = values_range
    check_close("image", out, ref, tol * max(abs(lo), abs(hi), abs(hi - lo)) if exact else None)
    if torch.is_complex(grad):
        grad, ref_grad = torch.view_as_real(grad), torch.view_as_real(ref_grad)
    finite = ref_grad[torch.isfinite(ref_grad)]
    scale = finite.abs().max().item() if finite.numel() else 0.0
    check_close("grad", grad, ref_grad, tol * scale if exact and not flat(spec) else None)


def flat(spec) -> bool:
    """Whether the gradient is zero up to eps: two real values (a MACO sample's phase, or an
    image sample) standardize to ±1/√2 whatever they are, so the largest gradient is no scale."""
    c, h, w = spec["channels"], spec["height"], spec["width"]
    return c * h * w <= 2 or (spec["op"] == "maco" and c * h * (w // 2 + 1) <= 2)


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)


def forward_op(spec):
    return OPS.maco_synthesis if spec["op"] == "maco" else OPS.fourier_synthesis


def backward_op(spec):
    return OPS.maco_synthesis_backward if spec["op"] == "maco" else OPS.fourier_synthesis_backward


def raw_args(spec, head, other, k) -> list:
    lo, hi = spec["values_range"]
    return [head, other, spec["height"], spec["width"], lo, hi, k, spec["eps"]]


# ---------------------------------------------------------------------------
# valid cases
# ---------------------------------------------------------------------------


def run_wrapper(spec) -> str:
    """The public function on both backends, each against the float64 reference."""
    head, other, k = build(spec)
    fn = pv.maco_synthesis if spec["op"] == "maco" else pv.fourier_synthesis
    size = (spec["height"], spec["width"])
    # torch.std in float32 overflows (or underflows) for |head| past ~1e±19: a float32 limit of
    # the pure-PyTorch path that the native op, summing in double, does not share.
    extreme = spec["dtype"] == "float32" and not 1e-6 < spec["head_scale"] < 1e6
    for backend in ("ext",) if extreme else ("ext", "torch"):
        try:
            leaf = head.detach().requires_grad_(True)
            out = fn(leaf, other, **{**wrapper_kwargs(spec, k), "backend": backend})
            grad_out = random_like(out, spec["tensor_seed"] + 1)
            (grad,) = torch.autograd.grad(out, leaf, grad_out)
            compare(spec, out, grad, head, other, k, grad_out, size, spec["values_range"], spec["eps"], exact=True)
        except Mismatch as error:
            raise Mismatch(f"backend={backend}: {error}") from None
        except Exception as error:
            raise Mismatch(f"backend={backend}: unexpected {raised(error)}") from None
    return "ok"


def run_raw(spec) -> str:
    head, other, k = build(spec)
    args = raw_args(spec, head, other, k)
    # A NaN or an infinity in the inputs (poked, or overflowed by the "huge" scales; a scale layout
    # that keeps one row or one value may have left a poked one out) must raise, naming the first.
    culprit = next((which for which, t in (("head", head), ("other", other)) if not bool(torch.isfinite(t).all())), None)
    if culprit:
        name = ARGUMENT_NAMES[spec["op"]][culprit]
        try:
            forward_op(spec)(*args)
        except ValueError as error:
            if f"{name} contains NaN or infinite values" not in str(error):
                raise Mismatch(f"wanted a ValueError naming {name!r}, got {raised(error)}") from None
            return raised(error)
        raise Mismatch(f"accepted: wanted a ValueError naming {name!r}")
    image, x, head_stats, image_stats = forward_op(spec)(*args)
    grad_out = random_like(image, spec["tensor_seed"] + 1)
    lo, hi = spec["values_range"]
    grad = backward_op(spec)(grad_out, head, other, x, head_stats, image_stats, k, lo, hi, spec["eps"])
    if spec["eps"] == 0 and spec["values"] in ("constant_head", "zero_other"):
        # 0/0 standardization: the op's NaN and the reference's rounding noise are equally right
        return "ok"
    size = (spec["height"], spec["width"])
    exact = spec["values"] in COMPARED_VALUES
    compare(spec, image, grad, head, other, k, grad_out, size, (lo, hi), spec["eps"], exact)
    return "ok"


# ---------------------------------------------------------------------------
# faults: each breaks one argument of an otherwise valid call
# ---------------------------------------------------------------------------


def grow(t: torch.Tensor, dim: int) -> torch.Tensor:
    """`t` with one more entry along `dim`."""
    return torch.cat([t, t.narrow(dim, 0, 1)], dim)


def other_float(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32 if t.dtype == torch.float64 else torch.float64)


def poked(t: torch.Tensor, value: float, at: int = 0) -> torch.Tensor:
    t = t.clone(memory_format=torch.contiguous_format)
    t.view(-1)[at] = value
    return t


def cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if t.is_complex() and not dtype.is_complex:
        t = torch.view_as_real(t)
    return t.to(dtype)


def _dtype(spec) -> torch.dtype:
    return FLOAT_DTYPES[spec["dtype"]]


def edit(**fns):
    """A fault setting each named argument to fn(old value, spec)."""
    return lambda a, s: {**a, **{name: fn(a[name], s) for name, fn in fns.items()}}


def put(**values):
    return lambda a, s: {**a, **values}


def transposed_copy(t: torch.Tensor) -> torch.Tensor:
    """Same values, last two dimensions swapped in memory."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


ARGUMENT_NAMES = {"maco": {"head": "phase", "other": "magnitude"}, "fourier": {"head": "spectrum", "other": "scale"}}


def _wrapper_faults(op: str) -> dict:
    """name -> (fault, error type, argument the message must name); keys of `a` are generic."""
    head, other = ARGUMENT_NAMES[op]["head"], ARGUMENT_NAMES[op]["other"]
    faults = {
        "head_rank_low": (edit(head=lambda t, s: t[0]), ValueError, head),
        "head_rank_high": (edit(head=lambda t, s: t[None]), ValueError, head),
        "head_empty_batch": (edit(head=lambda t, s: t[:0]), ValueError, head),
        "head_empty_height": (edit(head=lambda t, s: t[:, :, :0]), ValueError, head),
        "head_list": (edit(head=lambda t, s: t.tolist()), TypeError, head),
        "head_nan": (edit(head=lambda t, s: poked(t, math.nan)), ValueError, head),
        "head_inf": (edit(head=lambda t, s: poked(t, -math.inf)), ValueError, head),
        "head_meta": (edit(head=lambda t, s: t.to("meta")), ValueError, other),  # `other` is then on the wrong device
        "other_int": (edit(other=lambda t, s: t.long()), TypeError, other),
        "other_other_float": (edit(other=lambda t, s: other_float(t)), TypeError, other),
        "other_meta": (edit(other=lambda t, s: t.to("meta")), ValueError, other),
        "other_list": (edit(other=lambda t, s: t.tolist()), TypeError, other),
        "other_nan": (edit(other=lambda t, s: poked(t, math.nan)), ValueError, other),
        "other_inf": (edit(other=lambda t, s: poked(t, math.inf)), ValueError, other),
        "size_height": (lambda a, s: {**a, "size": (s["height"] + 1, s["width"])}, ValueError, "size"),
        "size_width": (lambda a, s: {**a, "size": (s["height"], s["width"] + 2)}, ValueError, "size"),
        "size_zero": (lambda a, s: {**a, "size": (0, s["width"])}, ValueError, "size"),
        "size_float": (lambda a, s: {**a, "size": (s["height"], float(s["width"]))}, TypeError, "size"),
        "size_string": (put(size="big"), TypeError, "size"),
        "color_matrix_shape": (lambda a, s: {**a, "color_matrix": torch.eye(s["channels"] + 1)}, ValueError, "color_matrix"),
        "color_matrix_rank1": (lambda a, s: {**a, "color_matrix": torch.ones(s["channels"])}, ValueError, "color_matrix"),
        "color_matrix_meta": (lambda a, s: {**a, "color_matrix": torch.eye(s["channels"], device="meta")}, ValueError, "color_matrix"),
        "values_range_equal": (put(values_range=(0.5, 0.5)), ValueError, "values_range"),
        "values_range_reversed": (put(values_range=(1.0, 0.0)), ValueError, "values_range"),
        "values_range_nan": (put(values_range=(0.0, math.nan)), ValueError, "values_range"),
        "values_range_inf": (put(values_range=(-math.inf, 1.0)), ValueError, "values_range"),
        "values_range_scalar": (put(values_range=3), TypeError, "values_range"),
        "values_range_triple": (put(values_range=(0, 1, 2)), TypeError, "values_range"),
        "eps_negative": (put(eps=-1e-4), ValueError, "eps"),
        "eps_nan": (put(eps=math.nan), ValueError, "eps"),
        "eps_inf": (put(eps=math.inf), ValueError, "eps"),
        "eps_string": (put(eps="0.1"), ValueError, "eps"),
        "backend": (put(backend="cuda"), ValueError, "backend"),
    }
    dtypes = ("float16", "bfloat16", "int64", "int32", "bool", "complex64" if op == "maco" else "complex32")
    for name in dtypes:
        faults[f"head_{name}"] = (edit(head=lambda t, s, d=getattr(torch, name): cast(t, d)), TypeError, head)
    if op == "maco":
        faults.update({
            "other_negative": (edit(other=lambda t, s: poked(t, -1.0)), ValueError, other),
            "other_width": (edit(other=lambda t, s: grow(t, -1)), ValueError, other),
            "other_height": (edit(other=lambda t, s: grow(t, -2)), ValueError, other),
            "other_channels": (edit(other=lambda t, s: grow(t, -3)), ValueError, other),
            "other_batch": (lambda a, s: {**a, "other": grow(a["other"].expand(a["head"].shape), 0)}, ValueError, other),
            "other_rank2": (edit(other=lambda t, s: t.reshape(-1, t.shape[-1])), ValueError, other),
            "other_rank5": (edit(other=lambda t, s: t.reshape((1,) * (5 - t.dim()) + t.shape)), ValueError, other),
        })
    else:
        faults.update({
            "head_last_dim": (edit(head=lambda t, s: grow(torch.view_as_real(t) if t.is_complex() else t, -1)), ValueError, head),
            # taller or wider than (H, Wr): must not broadcast the spectrum up (H = 1 or Wr = 1)
            "other_height": (lambda a, s: {**a, "other": torch.ones(s["height"] + 1, s["width"] // 2 + 1, dtype=_dtype(s))}, ValueError, other),
            "other_width": (lambda a, s: {**a, "other": torch.ones(s["height"], s["width"] // 2 + 2, dtype=_dtype(s))}, ValueError, other),
            "other_rank3": (lambda a, s: {**a, "other": torch.ones(1, s["height"], s["width"] // 2 + 1, dtype=_dtype(s))}, ValueError, other),
        })
    return faults


def _raw_faults(op: str) -> dict:
    """name -> fault on the raw forward op's arguments; every one must raise."""
    maco = op == "maco"

    def narrowed(dim_head, dim_other, length, **extra):
        """Head (and a magnitude that has the dimension) cut to `length` along a dimension."""
        def apply(a, s):
            out = {**a, "head": a["head"].narrow(dim_head, 0, length), **extra}
            if maco and a["other"].dim() + dim_other >= 0:
                out["other"] = a["other"].narrow(dim_other, 0, length)
            return out
        return apply

    def all_cast(dtype):
        return edit(head=lambda t, s: cast(t, dtype), other=lambda t, s: cast(t, dtype), k=lambda t, s: cast(t, dtype))

    def single_pixel(a, s):  # C = H = W = 1: one pixel per sample, nothing to take a std of
        other = a["other"][..., :1, :1, :1] if maco else a["other"].new_ones(())
        return {**a, "head": a["head"][:, :1, :1, :1], "other": other, "k": a["k"][:1, :1], "height": 1, "width": 1}

    faults = {
        "single_pixel": single_pixel,
        "head_rank_low": edit(head=lambda t, s: t[0]),
        "head_rank_high": edit(head=lambda t, s: t[None]),
        "head_empty_batch": narrowed(0, -4, 0),
        "head_empty_channels": narrowed(1, -3, 0, k=torch.empty(0, 0)),
        "head_empty_height": narrowed(2, -2, 0, height=0),
        "head_none": put(head=None),
        "other_none": put(other=None),
        "k_none": put(k=None),
        "other_other_float": edit(other=lambda t, s: other_float(t)),
        "other_int": edit(other=lambda t, s: t.long()),
        "k_other_float": edit(k=lambda t, s: other_float(t)),
        "k_int": edit(k=lambda t, s: t.long()),
        "k_grow": edit(k=lambda t, s: grow(grow(t, 0), 1)),
        "k_nonsquare": edit(k=lambda t, s: grow(t, 1)),
        "k_rank1": edit(k=lambda t, s: t[0]),
        "k_rank3": edit(k=lambda t, s: t[None]),
        "height_plus": edit(height=lambda v, s: v + 1),
        "height_minus": edit(height=lambda v, s: v - 1),
        "height_negative": put(height=-1),
        "height_huge": put(height=2**62),
        "height_float": edit(height=lambda v, s: float(v)),
        "width_zero": put(width=0),
        "width_negative": put(width=-2),
        "width_double": edit(width=lambda v, s: 2 * (v // 2 + 1)),
        "width_short": edit(width=lambda v, s: 2 * (v // 2 + 1) - 3),
        "width_huge": put(width=2**62),
        "width_huge_negative": put(width=-(2**62)),
    }
    for name in ("float16", "bfloat16", "int64", "int32", "uint8", "bool", "complex64", "complex128"):
        faults[f"all_{name}"] = all_cast(getattr(torch, name))
    if maco:
        faults.update({
            "other_width": edit(other=lambda t, s: grow(t, -1)),
            "other_height": edit(other=lambda t, s: grow(t, -2)),
            "other_channels": edit(other=lambda t, s: grow(t, -3)),
            "other_batch": lambda a, s: {**a, "other": grow(a["other"].expand(a["head"].shape), 0)},
            "other_single_sample": lambda a, s: {**a, "other": a["other"].expand(a["head"].shape)[:1].contiguous()},
            "other_expanded_wrong_channels": lambda a, s: {**a, "other": grow(a["other"].expand(a["head"].shape)[:1], 1).expand(s["batch"], -1, -1, -1)},
            "other_rank2": edit(other=lambda t, s: t.reshape(-1, t.shape[-1])),
            "other_rank5": edit(other=lambda t, s: t.reshape((1,) * (5 - t.dim()) + t.shape)),
        })
    else:
        faults.update({
            "head_last_dim3": edit(head=lambda t, s: grow(t, -1)),
            "head_last_dim1": edit(head=lambda t, s: t[..., :1]),
            "other_rank3": lambda a, s: {**a, "other": torch.ones(1, s["height"], s["width"] // 2 + 1, dtype=_dtype(s))},
            "other_height": lambda a, s: {**a, "other": torch.ones(s["height"] + 1, s["width"] // 2 + 1, dtype=_dtype(s))},
            "other_width": lambda a, s: {**a, "other": torch.ones(s["height"], s["width"] // 2 + 2, dtype=_dtype(s))},
        })
    return faults


def _stats_faults(name: str) -> dict:
    return {
        f"{name}_float32": ("raise", edit(**{name: lambda t, s: t.float()})),
        f"{name}_int64": ("raise", edit(**{name: lambda t, s: t.long()})),
        f"{name}_rows_plus": ("raise", edit(**{name: lambda t, s: grow(t, 0)})),
        f"{name}_rows_minus": ("raise", edit(**{name: lambda t, s: t[:-1]})),
        f"{name}_cols_plus": ("raise", edit(**{name: lambda t, s: grow(t, 1)})),
        f"{name}_cols_minus": ("raise", edit(**{name: lambda t, s: t[:, :-1]})),
        f"{name}_rank1": ("raise", edit(**{name: lambda t, s: t.reshape(-1)})),
        f"{name}_rank3": ("raise", edit(**{name: lambda t, s: t[None]})),
        f"{name}_transposed": ("same", edit(**{name: lambda t, s: t.t().contiguous().t()})),
        f"{name}_offset": ("same", edit(**{name: lambda t, s: torch.cat([t.new_zeros(1), t.reshape(-1)])[1:].view(t.shape)})),
        f"{name}_nan": ("any", edit(**{name: lambda t, s: poked(t, math.nan)})),
        # std = -eps makes 1 / (std + eps) infinite
        f"{name}_negative_std": ("any", lambda a, s: {**a, name: poked(a[name], -s["eps"], a[name].shape[1] - 1)}),
        f"{name}_zero_std": ("any", lambda a, s: {**a, name: poked(a[name], 0.0, a[name].shape[1] - 1)}),
    }


def _other_width(a, s):
    """x and grad_out of the other width that shares Wr (or an impossible one for W = 1)."""
    b, c, h, w = a["x"].shape
    w2 = w + 1 if w % 2 == 0 else w - 1
    return {**a, "x": a["x"].new_ones(b, c, h, w2), "grad_out": a["grad_out"].new_ones(b, c, h, w2)}


# Backward faults: name -> (expectation, fault). "raise": one of RAW_ERRORS; "same": the result equals
# the unfaulted one exactly (only the memory layout changed); "any": a result or an error, no crash.
BACKWARD_FAULTS = {
    "grad_out_width": ("raise", edit(grad_out=lambda t, s: grow(t, -1))),
    "grad_out_batch": ("raise", edit(grad_out=lambda t, s: grow(t, 0))),
    "grad_out_rank3": ("raise", edit(grad_out=lambda t, s: t[0])),
    "grad_out_other_float": ("raise", edit(grad_out=lambda t, s: other_float(t))),
    "grad_out_int": ("raise", edit(grad_out=lambda t, s: t.long())),
    "x_height": ("raise", edit(x=lambda t, s: grow(t, 2))),
    "x_rank3": ("raise", edit(x=lambda t, s: t[0])),
    "x_scalar": ("raise", edit(x=lambda t, s: t.new_tensor(1.0))),
    "x_other_float": ("raise", edit(x=lambda t, s: other_float(t))),
    "head_scalar": ("raise", edit(head=lambda t, s: t.new_tensor(1.0))),
    "head_rank_low": ("raise", edit(head=lambda t, s: t[0])),
    "head_height": ("raise", edit(head=lambda t, s: grow(t, 2))),
    "head_batch": ("raise", edit(head=lambda t, s: grow(t, 0))),
    "head_other_float": ("raise", edit(head=lambda t, s: other_float(t))),
    "head_int": ("raise", edit(head=lambda t, s: t.long())),
    "other_other_float": ("raise", edit(other=lambda t, s: other_float(t))),
    "other_int": ("raise", edit(other=lambda t, s: t.long())),
    # a magnitude one column wider; a scale one row taller than H (expanding cannot shrink it)
    "other_grow": ("raise", edit(other=lambda t, s: grow(t, -1) if s["op"] == "maco" else t.new_ones(s["height"] + 1, 1))),
    "k_grow": ("raise", edit(k=lambda t, s: grow(grow(t, 0), 1))),
    "k_other_float": ("raise", edit(k=lambda t, s: other_float(t))),
    "k_rank1": ("raise", edit(k=lambda t, s: t[0])),
    **_stats_faults("head_stats"),
    **_stats_faults("image_stats"),
    "grad_out_transposed": ("same", edit(grad_out=lambda t, s: transposed_copy(t))),
    "x_transposed": ("same", edit(x=lambda t, s: transposed_copy(t))),
    "head_channels_last": ("same", edit(head=lambda t, s: with_layout(t, "channels_last"))),
    "k_transposed": ("same", edit(k=lambda t, s: t.t().contiguous().t())),
    "grad_out_nan": ("any", edit(grad_out=lambda t, s: poked(t, math.nan))),
    "x_inf": ("any", edit(x=lambda t, s: poked(t, math.inf))),
    "x_other_width": ("any", _other_width),
    "k_nan": ("any", edit(k=lambda t, s: poked(t, math.nan))),
    "eps_nan": ("any", put(eps=math.nan)),
    "eps_negative": ("any", put(eps=-1.0)),
    "lo_nan": ("any", put(lo=math.nan)),
    "hi_inf": ("any", put(hi=math.inf)),
}
WRAPPER_FAULTS = {op: _wrapper_faults(op) for op in ("maco", "fourier")}
RAW_FAULTS = {op: _raw_faults(op) for op in ("maco", "fourier")}
# Raw ops raise c10::Error (RuntimeError); reading a size past a tensor's rank raises c10::IndexError,
# and a Python value of the wrong type for the schema a TypeError. None of these is a crash.
RAW_ERRORS = (RuntimeError, IndexError, TypeError)


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:160] if text else ""


def raised(error: BaseException) -> str:
    return f"raised {type(error).__name__}: {first_line(error)}"


def run_wrapper_fault(spec) -> str:
    fault, error_type, argument = WRAPPER_FAULTS[spec["op"]][spec["fault"]]
    head, other, k = build(spec)
    a = fault({"head": head, "other": other, **wrapper_kwargs(spec, k)}, spec)
    fn = pv.maco_synthesis if spec["op"] == "maco" else pv.fourier_synthesis
    try:
        fn(a.pop("head"), a.pop("other"), **a)
    except (TypeError, ValueError) as error:
        # checks.InvalidArgumentType is a TypeError and a ValueError; a ValueError case must not raise it.
        right_kind = isinstance(error, TypeError) if error_type is TypeError else not isinstance(error, TypeError)
        if not right_kind or argument not in str(error):
            raise Mismatch(f"wanted {error_type.__name__} naming {argument!r}, got {raised(error)}") from None
        return raised(error)
    raise Mismatch(f"accepted: wanted {error_type.__name__} naming {argument!r}")


def run_raw_fault(spec) -> str:
    head, other, k = build(spec)
    a = RAW_FAULTS[spec["op"]][spec["fault"]](dict(zip(("head", "other", "height", "width", "lo", "hi", "k", "eps"), raw_args(spec, head, other, k))), spec)
    try:
        forward_op(spec)(*a.values())
    except RAW_ERRORS as error:
        return raised(error)
    raise Mismatch("accepted: wanted an error")


def run_backward_fault(spec) -> str:
    head, other, k = build(spec)
    lo, hi = spec["values_range"]
    image, x, head_stats, image_stats = forward_op(spec)(*raw_args(spec, head, other, k))
    valid = dict(grad_out=random_like(image, spec["tensor_seed"] + 1), head=head, other=other, x=x,
                 head_stats=head_stats, image_stats=image_stats, k=k, lo=lo, hi=hi, eps=spec["eps"])
    expect, fault = BACKWARD_FAULTS[spec["fault"]]
    try:
        grad = backward_op(spec)(*fault(valid, spec).values())
    except RAW_ERRORS as error:
        if expect == "same":
            raise Mismatch(f"a layout change raised: {raised(error)}") from None
        return raised(error)
    if expect == "raise":
        raise Mismatch("accepted: wanted an error")
    if expect == "same" and not torch.equal(grad, backward_op(spec)(*valid.values())):
        raise Mismatch("a layout change changed the gradient")
    if grad.shape != head.shape:
        raise Mismatch(f"gradient shape {tuple(grad.shape)} != head shape {tuple(head.shape)}")
    return "ok"


RUNNERS = {
    "wrapper": run_wrapper,
    "raw": run_raw,
    "wrapper_fault": run_wrapper_fault,
    "raw_fault": run_raw_fault,
    "backward_fault": run_backward_fault,
}


def run_case(spec: dict) -> str:
    torch.set_num_threads(spec["threads"])
    try:
        return RUNNERS[spec["kind"]](spec)
    except Mismatch as error:
        return f"MISMATCH {error} | {json.dumps(spec)}"
    except Exception as error:  # a valid call raised, or the driver broke: either way a finding
        return f"MISMATCH unexpected {raised(error)} | {json.dumps(spec)}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--describe", action="store_true", help="print each case's parameters instead of running it")
    parser.add_argument("--crash-at", type=int, help="die by SIGSEGV at this case (tests the harness)")
    args = parser.parse_args(argv)
    faulthandler.enable()  # a crash prints the Python stack to stderr
    warnings.simplefilter("ignore")  # casts that drop an imaginary part are part of the faults
    for index in range(args.start, args.start + args.cases):
        if index == args.crash_at:
            os.kill(os.getpid(), signal.SIGSEGV)
        spec = draw(args.seed, index)
        line = json.dumps(spec) if args.describe else run_case(spec)
        print(f"{index} {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
