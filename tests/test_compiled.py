"""The opt-in torch.compile of the model pass: the same results, the caller's model untouched,
a model that does not compile runs eagerly after one warning, and inductor's cache is keyed by
the CPU vector width."""
import os
import pathlib
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from phasevis_ext import cli
from phasevis_ext.model.activations import capture
from phasevis_ext.model.compiled import CompileFallbackWarning, compiled, inductor_options

COMPILED_PASS = pathlib.Path(__file__).parent / "support" / "compiled_pass.py"


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1)).eval()


def _failing_backend(graph_module, example_inputs):
    raise RuntimeError("this backend compiles nothing")


def test_a_compiled_pass_gives_the_eager_activations_and_gradients_and_keeps_the_model():
    model = _net()
    fast = compiled(model, backend="aot_eager")
    assert fast is not model and model._compiled_call_impl is None
    assert fast[0].weight is model[0].weight
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    y = x.detach().clone().requires_grad_()
    with capture(model, ["1"], need_logits=True) as cap:
        eager = cap.run(x)
    with capture(fast, ["1"], need_logits=True) as cap:  # hooks on the compiled module's layers by name
        got = cap.run(y)
    torch.testing.assert_close(got["1"], eager["1"])
    (eager["1"].sum() + eager["logits"].sum()).backward()
    (got["1"].sum() + got["logits"].sum()).backward()
    torch.testing.assert_close(y.grad, x.grad)


def test_a_model_that_does_not_compile_runs_eagerly_after_one_warning():
    model = _net()
    fast = compiled(model, backend=_failing_backend)
    x = torch.rand(2, 3, 16, 16)
    with pytest.warns(CompileFallbackWarning, match="runs eagerly"):
        first = fast(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = fast(x)
    torch.testing.assert_close(first, model(x))
    torch.testing.assert_close(second, model(x))


def test_the_model_s_own_errors_are_not_taken_for_compile_failures():
    class Refuses(nn.Module):
        def forward(self, x):
            if x.shape[-1] != 8:
                raise ValueError("wants 8 columns")
            return x

    fast = compiled(Refuses(), backend="eager")
    with pytest.raises(ValueError, match="8 columns"):
        fast(torch.rand(1, 3, 4, 4))
    fast = compiled(_net(), backend="aot_eager")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a wrong input is the caller's error, not a compile failure
        with pytest.raises(Exception, match="channels"):
            fast(torch.rand(1, 5, 8, 8))
    assert fast._compiled_call_impl is not None


def test_layer_objectives_on_a_compiled_model_run_compiled_every_pass():
    runs = []

    def counting_backend(graph_module, example_inputs):
        def run(*args):
            runs.append(1)
            return graph_module.forward(*args)
        return run

    fast = compiled(_net(), backend=counting_backend)
    x = torch.rand(2, 3, 16, 16)
    with capture(fast, ["0"]) as cap:  # no logits: the forward stops after layer 0, compiled up to there
        for _ in range(4):
            acts = cap.run(x)
    assert len(runs) >= 4  # every pass ran a compiled graph: none was thrown back to eager
    torch.testing.assert_close(acts["0"], _net()[0](x))


def test_compile_is_a_visualize_option_and_a_flag(tmp_path):
    from phasevis_ext.render.settings import RenderSettings

    assert RenderSettings().compile is False
    assert RenderSettings(compile=True).compile is True
    with pytest.raises(Exception, match="compile"):
        RenderSettings(compile="yes")
    parser = cli.build_parser()
    args = parser.parse_args(["visualize", "logit:1", "--out", str(tmp_path), "--compile"])
    assert args.compile is True


def _default_isa_is_wider_than_avx2():
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list

    widths = {isa.bit_width() for isa in valid_vec_isa_list()}
    return os.environ.get("ATEN_CPU_CAPABILITY") is None and 512 in widths and 256 in widths


def test_the_compile_options_name_the_vector_width_inductor_picks():
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    bits = pick_vec_isa().bit_width()
    assert inductor_options() == ({"cpp.simdlen": bits} if bits else {})


@pytest.mark.skipif(not _default_isa_is_wider_than_avx2(), reason="needs a CPU that inductor runs at AVX-512 and AVX2")
def test_a_graph_cached_under_one_vector_isa_is_not_replayed_under_another(tmp_path):
    # Without the width in the key, the AVX-512 graph replayed under AVX2 summed half of each
    # reduction (an infinite error here), and the reverse order corrupted the heap.
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path), "TORCHINDUCTOR_FX_GRAPH_CACHE": "1"}
    for capability in (None, "avx2"):
        run_env = dict(env) if capability is None else {**env, "ATEN_CPU_CAPABILITY": capability}
        done = subprocess.run([sys.executable, str(COMPILED_PASS)], capture_output=True, text=True, timeout=300,
                              env=run_env)
        assert done.returncode == 0, f"ATEN_CPU_CAPABILITY={capability}: {done.stdout}{done.stderr[-2000:]}"
