"""Robustness of the synthesis API: concurrent calls, and validation that names the argument.

tests/test_synthesis_api.py holds the first validation cases; these add the rest of the input
space (Fourier inputs, devices, non-finite values, dtypes) and the bugs the fuzzer found.
"""
import math
import random
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import requires_ext
from support.synthesis_cases import fourier_inputs, maco_inputs

import phasevis_ext as pv

# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------

THREAD_SHAPES = [  # (B, C, H, W); the larger ones split into several at::parallel_for tasks
    (1, 3, 8, 8),
    (2, 3, 33, 20),
    (4, 3, 128, 128),
    (1, 1, 1, 97),
    (3, 4, 97, 1),
    (2, 2, 64, 63),
]


def _thread_cases():
    cases = []
    for i, (b, c, h, w) in enumerate(THREAD_SHAPES):
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(i)
            maco = maco_inputs(b, c, h, w, dtype=dtype, per_sample=i % 2 == 1)
            fourier = fourier_inputs(b, c, h, w, dtype=dtype)
            grad_out = torch.randn(b, c, h, w, dtype=dtype)
            cases.append((pv.maco_synthesis, *maco, (h, w), grad_out))
            cases.append((pv.fourier_synthesis, *fourier, (h, w), grad_out))
    return cases


def _forward_backward(case):
    fn, head, other, size, grad_out = case
    leaf = head.clone().requires_grad_(True)
    out = fn(leaf, other, size=size, values_range=(-1.0, 2.0), backend="ext")
    (grad,) = torch.autograd.grad(out, leaf, grad_out)
    return out.detach(), grad


@requires_ext
def test_threads_match_single_threaded_results():
    cases = _thread_cases()
    expected = [_forward_backward(case) for case in cases]
    order = [i for i in range(len(cases)) for _ in range(3)]
    random.Random(0).shuffle(order)  # the same case in flight on several threads at once
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: _forward_backward(cases[i]), order))
    for i, (out, grad) in zip(order, results):
        # the kernels sum in a fixed order, so concurrency must not change a bit
        assert torch.equal(out, expected[i][0]) and torch.equal(grad, expected[i][1]), f"case {i} differs"


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

PHASE, MAGNITUDE = maco_inputs(2, 3, 8, 8)
SPECTRUM, SCALE = fourier_inputs(2, 3, 8, 8)


def _complex32(pairs):
    with warnings.catch_warnings():  # "ComplexHalf support is experimental"
        warnings.simplefilter("ignore")
        return torch.view_as_complex(pairs).to(torch.complex32)


def _poke(t, value):
    t = t.clone()
    t.view(-1)[3] = value
    return t


MACO_CASES = {
    "phase_float16": (dict(phase=PHASE.half()), TypeError, "phase must be float32 or float64"),
    "phase_complex": (dict(phase=PHASE.to(torch.complex64)), TypeError, "phase must be float32 or float64"),
    "phase_inf": (dict(phase=_poke(PHASE, -math.inf)), ValueError, "phase contains NaN or infinite"),
    "phase_empty_height": (dict(phase=PHASE[:, :, :0]), ValueError, "phase has an empty dimension"),
    "magnitude_nan": (dict(magnitude=_poke(MAGNITUDE, math.nan)), ValueError, "magnitude contains NaN"),
    "magnitude_float32_phase_float64": (dict(phase=PHASE.double()), TypeError, "magnitude must have the same dtype"),
    "magnitude_batch": (dict(magnitude=MAGNITUDE.expand(3, -1, -1, -1)), ValueError, "magnitude must have shape"),
    "magnitude_meta": (dict(magnitude=MAGNITUDE.to("meta")), ValueError, "magnitude must be on the same device"),
    "phase_meta": (dict(phase=PHASE.to("meta")), ValueError, "magnitude must be on the same device"),
    "color_matrix_meta": (dict(color_matrix=torch.eye(3, device="meta")), ValueError, "color_matrix must be on cpu"),
    "color_matrix_list": (dict(color_matrix=[[1.0, 0.0], [0.0, 1.0]]), ValueError, "color_matrix must be \\(3, 3\\)"),
    "values_range_reversed": (dict(values_range=(1.0, 0.0)), ValueError, "values_range must be finite with lo < hi"),
    "values_range_nan": (dict(values_range=(0.0, math.nan)), ValueError, "values_range must be finite"),
    "values_range_inf": (dict(values_range=(-math.inf, 1.0)), ValueError, "values_range must be finite"),
    "size_one_pixel": (dict(phase=PHASE[..., :1, :1], magnitude=MAGNITUDE[..., :1, :1], size=(1, 1)), ValueError, "size must hold at least two pixels"),
    "size_needed": (dict(phase=PHASE[..., :1], magnitude=MAGNITUDE[..., :1]), ValueError, "size is required"),
}


@pytest.mark.parametrize("name", MACO_CASES)
def test_maco_validation_names_the_argument(name):
    change, error, match = MACO_CASES[name]
    kwargs = {"phase": PHASE, "magnitude": MAGNITUDE, **change}
    with pytest.raises(error, match=match):
        pv.maco_synthesis(kwargs.pop("phase"), kwargs.pop("magnitude"), **kwargs)


FOURIER_CASES = {
    "spectrum_int": (dict(spectrum=SPECTRUM.long()), TypeError, "spectrum must be float32 or float64"),
    "spectrum_float16": (dict(spectrum=SPECTRUM.half()), TypeError, "spectrum must be float32 or float64"),
    "spectrum_complex32": (dict(spectrum=_complex32(SPECTRUM)), TypeError, "spectrum must be float32"),
    "spectrum_empty_batch": (dict(spectrum=SPECTRUM[:0]), ValueError, "spectrum has an empty batch"),
    "spectrum_nan": (dict(spectrum=_poke(SPECTRUM, math.nan)), ValueError, "spectrum contains NaN or infinite"),
    "complex_spectrum_inf": (dict(spectrum=torch.view_as_complex(_poke(SPECTRUM, math.inf))), ValueError, "spectrum contains"),
    "scale_float64": (dict(scale=SCALE.double()), TypeError, "scale must have the same dtype"),
    "scale_float32_complex128": (dict(spectrum=torch.view_as_complex(SPECTRUM.double())), TypeError, "scale must have the same dtype"),
    "scale_int": (dict(scale=SCALE.long()), TypeError, "scale must have the same dtype"),
    "scale_nan": (dict(scale=_poke(SCALE, math.nan)), ValueError, "scale contains NaN"),
    "scale_meta": (dict(scale=SCALE.to("meta")), ValueError, "scale must be on the same device"),
    "scale_rank3": (dict(scale=SCALE[None]), ValueError, "scale must broadcast"),
    "scale_list": (dict(scale=SCALE.tolist()), TypeError, "scale must be a torch.Tensor"),
    "color_matrix_channels": (dict(color_matrix=torch.eye(2)), ValueError, "color_matrix must be \\(3, 3\\) to match C = 3"),
    "size_width": (dict(size=(8, 10)), ValueError, "size\\[1\\] = 10 does not match"),
    "values_range_equal": (dict(values_range=(2.0, 2.0)), ValueError, "values_range must be finite with lo < hi"),
    "eps_nan": (dict(eps=math.nan), ValueError, "eps must be"),
}


@pytest.mark.parametrize("name", FOURIER_CASES)
def test_fourier_validation_names_the_argument(name):
    change, error, match = FOURIER_CASES[name]
    kwargs = {"spectrum": SPECTRUM, "scale": SCALE, **change}
    with pytest.raises(error, match=match):
        pv.fourier_synthesis(kwargs.pop("spectrum"), kwargs.pop("scale"), **kwargs)


@pytest.mark.parametrize("backend", ["ext", "torch"])
def test_fourier_scale_must_not_broadcast_the_spectrum_up(backend):
    spectrum = torch.randn(1, 3, 1, 5, 2)  # H = 1
    with pytest.raises(ValueError, match="scale must broadcast"):
        pv.fourier_synthesis(spectrum, torch.ones(2, 5), size=(1, 8), backend=backend)


def test_fourier_torch_backend_takes_pairs_at_an_odd_offset():
    buffer = torch.randn(SPECTRUM.numel() + 1)
    spectrum = buffer[1:].view(SPECTRUM.shape)  # contiguous, storage offset 1
    torch.testing.assert_close(
        pv.fourier_synthesis(spectrum, SCALE, backend="torch"),
        pv.fourier_synthesis(spectrum.clone(), SCALE, backend="torch"),
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second real device")
def test_cuda_argument_with_cpu_input_names_the_argument():
    with pytest.raises(ValueError, match="magnitude must be on the same device"):
        pv.maco_synthesis(PHASE, MAGNITUDE.cuda())
    with pytest.raises(ValueError, match="scale must be on the same device"):
        pv.fourier_synthesis(SPECTRUM, SCALE.cuda())
    with pytest.raises(ValueError, match="color_matrix must be on cpu"):
        pv.maco_synthesis(PHASE, MAGNITUDE, color_matrix=torch.eye(3, device="cuda"))


@requires_ext
def test_raw_op_rejects_mixed_meta_and_cpu_tensors():
    k = pv.default_color_matrix(3)
    with pytest.raises(RuntimeError):
        torch.ops.phasevis.maco_synthesis(PHASE, MAGNITUDE.to("meta"), 8, 8, 0.0, 1.0, k, 1e-4)
